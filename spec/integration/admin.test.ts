/**
 * Issue #9: the admin API (reference §5.4) through the real socket — reachable now (the reference's proxy dropped it)
 * — and the `astrid agent|group|caps|quota` commands, as the `default` operator (group admin after boot seeding).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { adminRequest } from "../../protocol/admin-request";
import type { DaemonClient } from "../../protocol/client";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, RawClient, sleep, spawnDaemon, tempHome, type RunningDaemon } from "../helpers/daemon";

function astrid(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const json = (home: string, args: string[]) => {
  const r = astrid(home, [...args, "--json"]);
  expect({ args, code: r.code, err: r.err, out: r.code === 0 ? "" : r.out }).toEqual({ args, code: 0, err: "", out: "" });
  return JSON.parse(r.out) as unknown;
};
function auditTail(home: string): AuditEntry[] {
  return astrid(home, ["audit", "tail", "-n", "2000", "--json"]).out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

let d: RunningDaemon;
let c: DaemonClient;
beforeAll(async () => {
  d = await spawnDaemon();
  c = await connect(d);
});
afterAll(async () => {
  await c.close();
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

describe("issue #9: admin API over the socket", () => {
  it("every agent method: create, list, disable, enable, delete", async () => {
    expect(await adminRequest(c, "AgentCreate", { name: "alice" })).toEqual({
      request_id: expect.any(String), status: "Success", data: { principal: "alice", astrid_user_id: expect.stringMatching(/^[0-9a-f-]{36}$/) },
    });
    const file = path.join(d.home, "etc", "profiles", "alice.toml");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(await adminRequest(c, "AgentList")).toMatchObject({
      status: "AgentList",
      data: [{ principal: "alice", enabled: true, groups: ["agent"], grants: [], revokes: [] }, { principal: "default", enabled: true, groups: ["admin"], grants: [], revokes: [] }],
    });
    expect(await adminRequest(c, "AgentDisable", { principal: "alice" })).toMatchObject({ status: "Success", data: { principal: "alice", enabled: false, changed: true } });
    expect(fs.readFileSync(file, "utf8")).toMatch(/^enabled = false$/m);
    expect(await adminRequest(c, "AgentEnable", { principal: "alice" })).toMatchObject({ status: "Success", data: { principal: "alice", enabled: true, changed: true } });
    expect(await adminRequest(c, "AgentDelete", { principal: "alice" })).toMatchObject({ status: "Success", data: { principal: "alice" } });
    expect(fs.existsSync(file)).toBe(false);
  });

  it("quotas, groups and caps", async () => {
    await adminRequest(c, "AgentCreate", { name: "bob", groups: ["restricted"] });
    expect(await adminRequest(c, "QuotaSet", { principal: "bob", quotas: { max_timeout_secs: 42 } })).toMatchObject({ status: "Success", data: { principal: "bob" } });
    expect(await adminRequest(c, "QuotaGet", { principal: "bob" })).toMatchObject({ status: "Quotas", data: { max_timeout_secs: 42, max_memory_bytes: 67108864 } });
    expect(await adminRequest(c, "GroupCreate", { name: "ops", capabilities: ["system:status"], description: "Ops" })).toMatchObject({ status: "Success", data: { status: "ok" } });
    expect(fs.statSync(path.join(d.home, "etc", "groups.toml")).mode & 0o777).toBe(0o600);
    expect(await adminRequest(c, "GroupModify", { name: "ops", capabilities: ["system:status", "self:capsule:list"] })).toMatchObject({ status: "Success" });
    expect((await adminRequest(c, "GroupList")).data).toContainEqual({ name: "ops", capabilities: ["system:status", "self:capsule:list"], description: "Ops", unsafe_admin: false, builtin: false });
    expect(await adminRequest(c, "CapsGrant", { principal: "bob", capabilities: ["system:status"] })).toMatchObject({ status: "Success", data: { principal: "bob", capabilities: ["system:status"] } });
    expect(await adminRequest(c, "CapsRevoke", { principal: "bob", capabilities: ["system:status"] })).toMatchObject({ status: "Success", data: { principal: "bob", capabilities: ["system:status"] } });
    expect(await adminRequest(c, "GroupDelete", { name: "ops" })).toMatchObject({ status: "Success" });
    expect((await adminRequest(c, "GroupList")).data).not.toContainEqual(expect.objectContaining({ name: "ops" }));
  });

  it("issue #9: GroupModify with \"description\": null clears the description", async () => {
    await adminRequest(c, "GroupCreate", { name: "docs", capabilities: [], description: "to be cleared" });
    expect(await adminRequest(c, "GroupModify", { name: "docs", description: null })).toMatchObject({ status: "Success" });
    const docs = ((await adminRequest(c, "GroupList")).data as Array<{ name: string }>).find((g) => g.name === "docs");
    expect(docs).toEqual({ name: "docs", capabilities: [], unsafe_admin: false, builtin: false });
    expect(fs.readFileSync(path.join(d.home, "etc", "groups.toml"), "utf8")).not.toMatch(/to be cleared/);
  });

  it("issue #9: the reference's error texts, with codes", async () => {
    const profile = path.join(d.home, "etc", "profiles", "ghost.toml");
    expect(await adminRequest(c, "QuotaGet", { principal: "ghost" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_PRINCIPAL_NOT_FOUND", data: `principal ghost does not exist (no profile.toml at ${profile})` });
    expect(await adminRequest(c, "AgentCreate", { name: "default" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_PRINCIPAL_RESERVED", data: 'principal "default" is reserved for single-tenant bootstrap' });
    await adminRequest(c, "AgentCreate", { name: "dup" });
    expect(await adminRequest(c, "AgentCreate", { name: "dup" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_PRINCIPAL_EXISTS", data: "principal dup already exists" });
    expect(await adminRequest(c, "AgentDelete", { principal: "default" })).toMatchObject({ status: "Error", data: expect.stringMatching(/^cannot delete the `default` principal — /) });
    expect(await adminRequest(c, "AgentDisable", { principal: "default" })).toMatchObject({ status: "Error", data: expect.stringMatching(/^cannot disable the `default` principal — /) });
    expect(await adminRequest(c, "CapsGrant", { principal: "dup", capabilities: [] })).toMatchObject({ status: "Error", code: "ASTRID_ERR_CAPABILITY_INVALID", data: "capabilities must not be empty" });
    expect(await adminRequest(c, "CapsGrant", { principal: "dup", capabilities: ["x y"] })).toMatchObject({ status: "Error", code: "ASTRID_ERR_CAPABILITY_INVALID", data: expect.stringMatching(/^capability "x y" rejected: /) });
    expect(await adminRequest(c, "QuotaSet", { principal: "dup", quotas: { max_timeout_secs: 99999 } })).toMatchObject({ status: "Error", code: "ASTRID_ERR_QUOTAS_INVALID", data: "quotas rejected: max_timeout_secs must be 1..86400" });
    expect(await adminRequest(c, "GroupCreate", { name: "agent", capabilities: [] })).toMatchObject({ status: "Error", code: "ASTRID_ERR_GROUP_REJECTED", data: expect.stringMatching(/^group\.create rejected: /) });
    expect(await adminRequest(c, "GroupDelete", { name: "admin" })).toMatchObject({ status: "Error", data: expect.stringMatching(/^group\.delete rejected: /) });
    expect(await adminRequest(c, "GroupModify", { name: "nope" })).toMatchObject({ status: "Error", data: expect.stringMatching(/^group\.modify rejected: /) });
  });

  it("issue #9: CapsRevoke of default is refused, and default keeps its capabilities", async () => {
    expect(await adminRequest(c, "CapsRevoke", { principal: "default", capabilities: ["system:shutdown"] })).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PRINCIPAL_RESERVED", data: expect.stringMatching(/^cannot revoke capabilities from the `default` principal — /),
    });
    expect(fs.readFileSync(path.join(d.home, "etc", "profiles", "default.toml"), "utf8")).toMatch(/^revokes = \[\]$/m);
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
  });

  it("issue #9: a malformed admin payload, an invalid principal string or an unknown method gets a coded Error", async () => {
    const raw = await RawClient.authenticated(d);
    await sleep(20);
    while (raw.buffered > 0) await raw.next();
    raw.publish("astrid.v1.admin.agent.delete", { type: "raw_json", request_id: "bad1", method: "AgentDelete", params: { principal: "no spaces allowed" } });
    expect((await raw.nextOn("astrid.v1.admin.response.agent.delete")).payload).toEqual({
      type: "raw_json", request_id: "bad1", status: "Error", code: "ASTRID_ERR_REQUEST_INVALID",
      data: expect.stringMatching(/^AgentDelete params are invalid: principal: must be a principal id/),
    });
    raw.publish("astrid.v1.admin.agent.list", { type: "raw_json", request_id: "bad2", method: "AgentList", params: {} });
    expect((await raw.nextOn("astrid.v1.admin.response.agent.list")).payload).toMatchObject({ request_id: "bad2", status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    raw.publish("astrid.v1.admin.agent.frob", { type: "raw_json", method: "Frob" });
    expect((await raw.nextOn("astrid.v1.admin.response.agent.frob")).payload).toMatchObject({ status: "Error", code: "ASTRID_ERR_UNKNOWN_METHOD" });
    raw.publish("astrid.v1.admin.agent.text", { type: "user_input", text: "hello" });
    expect((await raw.nextOn("astrid.v1.admin.response.agent.text")).payload).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    raw.destroy();
  });

  it("replies reach the asking connection only, and clients may not publish on the response topics", async () => {
    const asker = await RawClient.authenticated(d);
    const bystander = await RawClient.authenticated(d);
    await sleep(50);
    while (asker.buffered > 0) await asker.next();
    while (bystander.buffered > 0) await bystander.next();
    asker.publish("astrid.v1.admin.group.list", { type: "raw_json", request_id: "mine", method: "GroupList" });
    expect((await asker.nextOn("astrid.v1.admin.response.group.list")).payload).toMatchObject({ request_id: "mine", status: "GroupList" });
    // A forged reply would otherwise be broadcast to every client.
    asker.publish("astrid.v1.admin.response.group.list", { type: "raw_json", request_id: "forged", status: "Success", data: {} });
    expect((await asker.nextOn("astrid.v1.error")).payload).toMatchObject({ code: "ASTRID_ERR_TOPIC_DENIED" });
    await sleep(200);
    expect(bystander.buffered).toBe(0);
    asker.destroy();
    bystander.destroy();
  });

  it("every admin request is audited with its label, target_principal and the authorization", async () => {
    await adminRequest(c, "AgentCreate", { name: "audited" });
    await adminRequest(c, "CapsRevoke", { principal: "default", capabilities: ["x"] });
    await sleep(200);
    const admin = auditTail(d.home).filter((e) => e.action.type === "admin_request" && String(e.action.method).startsWith("admin."));
    expect(admin.find((e) => e.action.method === "admin.agent.create" && e.action.target_principal === "audited")).toMatchObject({
      principal: "default",
      action: { required_capability: "agent:create", params: { method: "AgentCreate", params: { name: "audited", groups: [], grants: [] } } },
      authorization: { type: "system", reason: "policy allow: default holds agent:create" },
      outcome: { status: "success" },
    });
    // Authorized, then refused by the handler: the entry records the admission (reference §5.4: before the handler).
    expect(admin.find((e) => e.action.method === "admin.caps.revoke" && e.action.target_principal === "default")).toMatchObject({ authorization: { type: "system" } });
    // A malformed request is audited as refused, under the method it named.
    expect(admin.find((e) => e.action.method === "admin.AgentList")).toMatchObject({ outcome: { status: "failure", error: expect.stringMatching(/takes no params/) } });
  });
});

describe("issue #9: the astrid agent|group|caps|quota commands", () => {
  it("drive every admin method, with --json", () => {
    const home = d.home;
    expect(json(home, ["agent", "create", "cli-a", "--group", "restricted", "--grant", "system:status"])).toMatchObject({ principal: "cli-a", astrid_user_id: expect.any(String) });
    expect(json(home, ["agent", "list"])).toContainEqual({ principal: "cli-a", enabled: true, groups: ["restricted"], grants: ["system:status"], revokes: [] });
    expect(json(home, ["agent", "disable", "cli-a"])).toEqual({ principal: "cli-a", enabled: false, changed: true });
    expect(json(home, ["agent", "enable", "cli-a"])).toEqual({ principal: "cli-a", enabled: true, changed: true });
    expect(json(home, ["caps", "grant", "cli-a", "self:capsule:list", "agent:list"])).toEqual({ principal: "cli-a", capabilities: ["system:status", "self:capsule:list", "agent:list"] });
    expect(json(home, ["caps", "revoke", "cli-a", "agent:list"])).toEqual({ principal: "cli-a", capabilities: ["agent:list"] });
    expect(json(home, ["quota", "set", "cli-a", "--max-timeout-secs", "60", "--max-background-processes", "2"])).toEqual({ principal: "cli-a", quotas: { max_timeout_secs: 60, max_background_processes: 2 } });
    expect(json(home, ["quota", "get", "cli-a"])).toMatchObject({ max_timeout_secs: 60, max_background_processes: 2, max_memory_bytes: 67108864 });
    expect(json(home, ["group", "create", "cli-g", "--cap", "system:status,self:capsule:list", "--description", "CLI group"])).toEqual({ name: "cli-g", created: true });
    expect(json(home, ["group", "modify", "cli-g", "--clear-description", "--cap", "system:status"])).toEqual({ name: "cli-g", modified: true });
    expect(json(home, ["group", "list"])).toContainEqual({ name: "cli-g", capabilities: ["system:status"], unsafe_admin: false, builtin: false });
    expect(json(home, ["group", "delete", "cli-g"])).toEqual({ name: "cli-g", deleted: true });
    expect(json(home, ["agent", "delete", "cli-a"])).toEqual({ principal: "cli-a" });
  });

  it("print readable tables and lines", () => {
    expect(astrid(d.home, ["agent", "create", "cli-b"])).toMatchObject({ code: 0, out: "Created agent cli-b (groups: agent).\n" });
    expect(astrid(d.home, ["agent", "list"]).out).toMatch(/^PRINCIPAL\s+ENABLED\s+GROUPS\s+GRANTS\s+REVOKES\n(.*\n)*cli-b\s+yes\s+agent\s+-\s+-\n/m);
    expect(astrid(d.home, ["group", "list"]).out).toMatch(/^agent\s+yes\s+no\s+self:\*,self:quota:get,self:agent:list,delegate:self:\*\s+An agent acting for itself$/m);
    expect(astrid(d.home, ["quota", "get", "cli-b"]).out).toMatch(/^Quotas of cli-b:\n\s+max_memory_bytes\s+67108864\s+\(default\)$/m);
  });

  it("exit 1 with the daemon's code on a refused request", () => {
    expect(astrid(d.home, ["caps", "revoke", "default", "system:shutdown"])).toMatchObject({ code: 1, err: expect.stringMatching(/^astrid: cannot revoke capabilities from the `default` principal — .*\[ASTRID_ERR_PRINCIPAL_RESERVED\]\n$/) });
    expect(astrid(d.home, ["quota", "get", "nobody"])).toMatchObject({ code: 1, err: expect.stringMatching(/principal nobody does not exist .*\[ASTRID_ERR_PRINCIPAL_NOT_FOUND\]/) });
    expect(JSON.parse(astrid(d.home, ["agent", "delete", "default", "--json"]).out)).toMatchObject({ error: { code: "ASTRID_ERR_PRINCIPAL_RESERVED" } });
  });

  it("exit 2 on usage errors, before anything is sent", () => {
    for (const args of [["agent"], ["agent", "frob"], ["agent", "create"], ["agent", "create", "bad name"], ["caps", "grant", "x"], ["caps", "grant", "x", "a b"], ["quota", "set", "x"], ["group", "modify", "g"], ["agent", "list", "--bogus"]]) {
      const r = astrid(d.home, args);
      expect({ args, code: r.code, err: r.err }).toEqual({ args, code: 2, err: expect.stringMatching(/\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/) });
    }
    expect(fs.existsSync(path.join(d.home, "etc", "profiles", "bad name.toml"))).toBe(false);
  });

  it("explain themselves with --help", () => {
    const help = astrid(d.home, ["quota", "set", "--help"]);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/--max-timeout-secs\s+longest call, 1-86400/);
    expect(astrid(d.home, ["--help"]).out).toMatch(/astrid agent\s+Create, delete, enable, disable or list agents/);
  });

  it("say so when no daemon runs", () => {
    expect(astrid(tempHome(), ["agent", "list"])).toMatchObject({ code: 1, err: expect.stringMatching(/No Astrid daemon is running.*\[ASTRID_ERR_DAEMON_NOT_RUNNING\]/) });
  });
});

describe("issue #9: admin requests without the capability", () => {
  it("issue #9: are denied and the deny is audited with target_principal", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "etc", "profiles"), { recursive: true });
    fs.writeFileSync(path.join(home, "etc", "profiles", "default.toml"), 'groups = ["agent"]\n');
    const agent = await spawnDaemon({ home });
    const client = await connect(agent);
    expect(await adminRequest(client, "AgentCreate", { name: "mallory" })).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: "permission denied for principal default: missing capability agent:create",
    });
    // `self:*` holds self:quota:set, which no longer lets an agent raise its own quotas.
    expect(await adminRequest(client, "QuotaSet", { principal: "default", quotas: { max_memory_bytes: 1e12 } })).toMatchObject({
      status: "Error", data: "permission denied for principal default: missing capability quota:set",
    });
    expect(await adminRequest(client, "QuotaGet", { principal: "default" })).toMatchObject({ status: "Quotas" });
    expect(await adminRequest(client, "AgentList")).toMatchObject({ status: "AgentList", data: [{ principal: "default" }] });
    expect(astrid(home, ["agent", "create", "mallory"])).toMatchObject({ code: 1, err: expect.stringMatching(/missing capability agent:create \[ASTRID_ERR_PERMISSION_DENIED\]/) });
    await client.close();
    agent.child.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    expect(fs.existsSync(path.join(home, "etc", "profiles", "mallory.toml"))).toBe(false);
    const denied = auditTail(home).filter((e) => e.action.method === "admin.agent.create");
    expect(denied.length).toBe(2);
    expect(denied[0]).toMatchObject({
      principal: "default",
      action: { type: "admin_request", required_capability: "agent:create", target_principal: "mallory" },
      authorization: { type: "denied", reason: "permission denied for principal default: missing capability agent:create" },
      outcome: { status: "failure" },
    });
  });

  it("issue #9: an agent connection is refused every admin change and lists only itself", async () => {
    expect(await adminRequest(c, "AgentCreate", { name: "agatha" })).toMatchObject({ status: "Success" });
    expect(await adminRequest(c, "AgentCreate", { name: "bystander" })).toMatchObject({ status: "Success" });
    const agatha = await connectAs(d, "agatha");
    for (const [method, params] of [
      ["GroupCreate", { name: "mine", capabilities: ["system:status"] }],
      ["CapsGrant", { principal: "agatha", capabilities: ["system:shutdown"] }],
      ["AgentDelete", { principal: "bystander" }],
      ["QuotaSet", { principal: "agatha", quotas: { max_timeout_secs: 10 } }],
    ] as const) {
      expect(await adminRequest(agatha, method, params)).toMatchObject({ status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED" });
    }
    const list = await adminRequest(agatha, "AgentList");
    expect(list).toMatchObject({ status: "AgentList" });
    expect((list.data as Array<{ principal: string }>).map((a) => a.principal)).toEqual(["agatha"]);
    await agatha.close();
  });
});
