/**
 * Issue #9: principals against the real daemon — boot seeding, and every management request authorized for the
 * caller's profile, with the decision in the audit log. The operator's connection is `default`; `connectAs` makes
 * a connection act as another principal (a frontend credential of that name).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { adminRequest } from "../../protocol/admin-request";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, daemonLog, spawnDaemon, tempHome, type RunningDaemon } from "../helpers/daemon";

afterAll(cleanup);

function astrid(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function auditTail(home: string): AuditEntry[] {
  const r = astrid(home, ["audit", "tail", "-n", "1000", "--json"]);
  expect(r.code).toBe(0);
  return r.out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** A home whose etc/profiles/<principal>.toml files are written before the daemon boots. */
function homeWith(profiles: Record<string, string>, groups?: string): string {
  const home = tempHome();
  fs.mkdirSync(path.join(home, "etc", "profiles"), { recursive: true, mode: 0o700 });
  for (const [p, text] of Object.entries(profiles)) fs.writeFileSync(path.join(home, "etc", "profiles", `${p}.toml`), text, { mode: 0o600 });
  if (groups !== undefined) fs.writeFileSync(path.join(home, "etc", "groups.toml"), groups);
  return home;
}

async function stop(d: RunningDaemon): Promise<void> {
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
}

describe("issue #9: principals in the real daemon", () => {
  it("issue #9: boot seeds default with group admin in etc/profiles/default.toml (0600), so the operator keeps every capability", async () => {
    const d = await spawnDaemon();
    const file = path.join(d.home, "etc", "profiles", "default.toml");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(file, "utf8")).toMatch(/^groups = \[ "admin" \]$/m);
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    await c.close();
    await stop(d);
    const entry = auditTail(d.home).find((e) => e.action.type === "admin_request" && e.action.method === "GetStatus")!;
    expect(entry.authorization).toEqual({ type: "system", reason: "policy allow: default holds system:status", via: 'group admin ("*")' });
  });

  it("issue #9: a restricted principal is refused ReloadCapsules and the deny is in `astrid audit tail --json`", async () => {
    const d = await spawnDaemon({ home: homeWith({ default: 'groups = ["restricted"]\n' }) });
    const c = await connect(d);
    expect(await c.request("ReloadCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: "permission denied for principal default: missing capability self:capsule:reload",
    });
    await c.close();
    // Not re-seeded: the profile names a group.
    expect(fs.readFileSync(path.join(d.home, "etc", "profiles", "default.toml"), "utf8")).toBe('groups = ["restricted"]\n');
    expect(astrid(d.home, ["status"])).toMatchObject({ code: 1, err: expect.stringMatching(/missing capability system:status \[ASTRID_ERR_PERMISSION_DENIED\]/) });
    await stop(d);
    const denied = auditTail(d.home).filter((e) => e.action.type === "admin_request" && e.action.method === "ReloadCapsules");
    expect(denied).toEqual([expect.objectContaining({
      principal: "default",
      action: expect.objectContaining({ required_capability: "self:capsule:reload" }),
      authorization: { type: "denied", reason: "permission denied for principal default: missing capability self:capsule:reload" },
      outcome: { status: "failure", error: "permission denied for principal default: missing capability self:capsule:reload", code: "ASTRID_ERR_PERMISSION_DENIED" },
    })]);
  });

  it("issue #9: a revoked capability beats the admin group", async () => {
    const d = await spawnDaemon({ home: homeWith({ default: 'groups = ["admin"]\nrevokes = ["self:capsule:reload"]\n' }) });
    const c = await connect(d);
    expect(await c.request("ReloadCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: 'permission denied for principal default: capability self:capsule:reload is revoked via "self:capsule:reload"',
    });
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    await c.close();
    await stop(d);
  });

  it("issue #9: a profile with an unknown key denies that principal's requests, naming the file and line", async () => {
    const d = await spawnDaemon({ home: homeWith({ default: 'groups = ["admin"]\nshell = "/bin/sh"\n' }) });
    const file = path.join(d.home, "etc", "profiles", "default.toml");
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PROFILE_INVALID",
      data: `permission denied for principal default: missing capability system:status (its profile cannot be used: ${file}:2: unknown key shell (see docs/principals.md for the fields))`,
    });
    expect(astrid(d.home, ["status"])).toMatchObject({ code: 1, err: expect.stringContaining(`${file}:2: unknown key shell`) });
    expect(daemonLog(d.home)).toMatch(/default principal's profile is invalid; it is not seeded/);
    // Failures are never cached: fixing the file is enough.
    fs.writeFileSync(file, 'groups = ["admin"]\n');
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    await c.close();
    await stop(d);
  });

  it("issue #9: a profile with malformed TOML denies that principal's requests, naming the file and line", async () => {
    const d = await spawnDaemon({ home: homeWith({ default: 'groups = ["admin"\n' }) });
    const c = await connect(d);
    expect(await c.request("ListCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PROFILE_INVALID",
      data: expect.stringMatching(new RegExp(`^permission denied for principal default: missing capability self:capsule:list \\(its profile cannot be used: ${path.join(d.home, "etc", "profiles", "default.toml")}:\\d+:\\d+: TOML syntax error: `)),
    });
    await c.close();
    await stop(d);
  });

  it("issue #9: broken profiles of other principals leave default unaffected (AgentList skips them)", async () => {
    const d = await spawnDaemon({ home: homeWith({ alice: 'groups = ["agent"]\nshell = "x"\n', bob: "groups = [", carol: 'groups = ["agent"]\n' }) });
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    const list = await adminRequest(c, "AgentList");
    expect(list).toMatchObject({ status: "AgentList" });
    expect((list.data as Array<{ principal: string }>).map((a) => a.principal)).toEqual(["carol", "default"]);
    await c.close();
    await stop(d);
    expect(daemonLog(d.home)).toMatch(/AgentList skips an unreadable profile/);
  });

  it("issue #9: a malformed etc/groups.toml stops boot with the line, leaving no socket or token", async () => {
    const home = homeWith({}, '[groups.ops]\ncapabilities = ["system:status"]\ncolour = "red"\n');
    const d = await spawnDaemon({ home, waitReady: false });
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toContain(`${path.join(home, "etc", "groups.toml")}:3: unknown key groups.ops.colour`);
    expect(d.stderr()).toContain("[ASTRID_ERR_GROUPS_INVALID]");
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
  });

  it("issue #9: custom groups from etc/groups.toml gate requests", async () => {
    const d = await spawnDaemon({ home: homeWith({ default: 'groups = ["watchers"]\n' }, '[groups.watchers]\ncapabilities = ["system:status"]\n') });
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    expect(await c.request("ListCapsules")).toMatchObject({ status: "Error", data: "permission denied for principal default: missing capability self:capsule:list" });
    await c.close();
    await stop(d);
  });

  // A connection acting as another principal: a frontend credential of that name (spec/helpers/daemon.ts).
  it("issue #9: a restricted principal is refused ReloadCapsules, and the deny is audited as that principal", async () => {
    const d = await spawnDaemon({ home: homeWith({ rita: 'groups = ["restricted"]\n' }) });
    const rita = await connectAs(d, "rita");
    expect(await rita.request("ReloadCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: "permission denied for principal rita: missing capability self:capsule:reload",
    });
    await rita.close();
    const denied = auditTail(d.home).filter((e) => e.principal === "rita" && (e.action as { method?: string }).method === "ReloadCapsules");
    expect(denied).toHaveLength(1);
    expect(denied[0]!.outcome).toMatchObject({ status: "failure" });
    await stop(d);
  });

  it("issue #9: a profile with an unknown key is denied with the file and line, while default keeps working", async () => {
    const d = await spawnDaemon({ home: homeWith({ bent: 'groups = ["admin"]\ncolour = "red"\n' }) });
    const bent = await connectAs(d, "bent");
    const reply = await bent.request("GetStatus");
    expect(reply).toMatchObject({ status: "Error" });
    expect(String(reply.data)).toContain(`${path.join(d.home, "etc", "profiles", "bent.toml")}:2`);
    const op = await connect(d);
    expect(await op.request("GetStatus")).toMatchObject({ status: "Status" });
    await Promise.all([bent.close(), op.close()]);
    await stop(d);
  });

  it("issue #9: an agent may list capsules but not ask for the daemon's status or shut it down; a revoke beats admin", async () => {
    const d = await spawnDaemon({ home: homeWith({ alice: 'groups = ["agent"]\n', root2: 'groups = ["admin"]\nrevokes = ["system:shutdown"]\n' }) });
    const alice = await connectAs(d, "alice");
    expect(await alice.request("ListCapsules")).toMatchObject({ status: "Success" });
    expect(await alice.request("GetStatus")).toMatchObject({ status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED" });
    expect(await alice.request("Shutdown", { reason: "no" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED" });
    const root2 = await connectAs(d, "root2");
    expect(await root2.request("GetStatus")).toMatchObject({ status: "Status" });
    expect(await root2.request("Shutdown", { reason: "no" })).toMatchObject({
      status: "Error", data: expect.stringContaining('capability system:shutdown is revoked via "system:shutdown"'),
    });
    await Promise.all([alice.close(), root2.close()]);
    await stop(d);
  });
});
