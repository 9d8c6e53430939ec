/**
 * The VFS through a real daemon: fixture capsules (spec/fixtures/vfs/) use `api.fs` for the principal whose prompt
 * they act on. Workspace writes are staged per principal until committed (by the capsule or with `astrid vfs`);
 * hostile paths, oversized writes, missing manifest entries and principals without `self:fs:*` are refused with coded
 * errors and audited, and the daemon and its other capsules keep serving.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, ROOT, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURES = path.join(ROOT, "spec", "fixtures", "vfs");

type Outcome = { ok: true; value: any } | { ok: false; code: string; message: string };
type Step = { op: string; path?: string; data?: string; encoding?: string; mb?: number };

let d: RunningDaemon;
let c: DaemonClient;
let ws: string;
const received: IpcMessage[] = [];
const clients: Array<{ client: DaemonClient; inbox: IpcMessage[] }> = [];

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function auditTail(): AuditEntry[] {
  return cli("audit", "tail", "-n", "5000", "--json").stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

let sessions = 0;
/** Has capsule `to` run `ops` for the client's principal; resolves with one outcome per step. */
async function ops(to: string, steps: Step[], client = c, inbox = received): Promise<Outcome[]> {
  const session = `vfs-${++sessions}`;
  client.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to, ops: steps }), session_id: session });
  const reply = await until(() => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, 30_000);
  return JSON.parse(reply!.payload.text as string) as Outcome[];
}

/** A connection acting as `principal` (its profile written before the daemon started), with its own inbox. */
async function as(principal: string): Promise<{ client: DaemonClient; inbox: IpcMessage[] }> {
  const client = await connectAs(d, principal);
  const inbox: IpcMessage[] = [];
  client.on("message", (m: IpcMessage) => inbox.push(m));
  const entry = { client, inbox };
  clients.push(entry);
  return entry;
}

const codes = (outcomes: Outcome[]) => outcomes.map((o) => (o.ok ? "ok" : o.code));

beforeAll(async () => {
  ws = tempHome();
  fs.cpSync(FIXTURES, path.join(ws, ".astrid", "capsules"), { recursive: true });
  fs.mkdirSync(path.join(ws, "src"));
  fs.writeFileSync(path.join(ws, "src", "a.ts"), "export const a = 1;\n");
  fs.writeFileSync(path.join(ws, "README.md"), "# workspace\n");
  const home = tempHome();
  fs.mkdirSync(path.join(home, "etc", "profiles"), { recursive: true });
  fs.writeFileSync(path.join(home, "etc", "profiles", "bob.toml"), 'groups = ["agent"]\n');
  fs.writeFileSync(path.join(home, "etc", "profiles", "rita.toml"), 'groups = ["restricted"]\n');
  // A link inside the workspace to the daemon's keys: reading or writing through it must be refused.
  fs.symlinkSync(path.join(home, "keys"), path.join(ws, "keys-link"));
  d = await spawnDaemon({ home, args: ["--workspace", ws] });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
}, 60_000);

afterAll(async () => {
  for (const { client } of clients) await client.close();
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    await d.exited;
  }
  await cleanup();
});

describe("the VFS", () => {
  it("writes are staged, read back, and applied by fs.commit; home:// and /tmp are written directly", async () => {
    const r = await ops("vfs-user", [
      { op: "write", path: "cwd://src/a.ts", data: "export const a = 2;\n" },
      { op: "mkdir", path: "cwd://src/new" },
      { op: "write", path: "src/new/b.ts", data: "AAEC/w==", encoding: "base64" },
      { op: "read", path: "cwd://src/a.ts" },
      { op: "read", path: "src/new/b.ts", encoding: "base64" },
      { op: "readdir", path: "cwd://src" },
      { op: "stat", path: "cwd://src/new/b.ts" },
      { op: "exists", path: "cwd://nope" },
      { op: "write", path: "home://notes.md", data: "mine" },
      { op: "write", path: "/tmp/scratch.txt", data: "tmp" },
      { op: "read", path: "/tmp/scratch.txt" },
    ]);
    expect(codes(r)).toEqual(Array(11).fill("ok"));
    expect(r[3]!.ok && r[3]!.value).toBe("export const a = 2;\n");
    expect(r[4]!.ok && r[4]!.value).toBe("AAEC/w==");
    expect(r[5]!.ok && r[5]!.value).toEqual(["a.ts", "new"]);
    expect(r[6]!.ok && r[6]!.value).toMatchObject({ size: 4, is_file: true, is_dir: false });
    expect(r[7]!.ok && r[7]!.value).toBe(false);
    // Staged: the workspace is untouched; home and /tmp are not staged.
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("export const a = 1;\n");
    expect(fs.existsSync(path.join(ws, "src", "new"))).toBe(false);
    expect(fs.readFileSync(path.join(d.home, "home", "default", "notes.md"), "utf8")).toBe("mine");
    expect(fs.readFileSync(path.join(d.home, "home", "default", ".local", "tmp", "scratch.txt"), "utf8")).toBe("tmp");

    const [commit] = await ops("vfs-user", [{ op: "commit" }]);
    expect(commit).toEqual({ ok: true, value: { committed: ["cwd://src/a.ts", "cwd://src/new", "cwd://src/new/b.ts"] } });
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("export const a = 2;\n");
    expect([...fs.readFileSync(path.join(ws, "src", "new", "b.ts"))]).toEqual([0, 1, 2, 255]);
    const entry = auditTail().reverse().find((e) => e.action.type === "vfs" && e.action.change === "commit");
    expect(entry).toMatchObject({ principal: "default", action: { capsule: "vfs-user", count: 3 }, outcome: { status: "success" } });
  });

  it("a second principal does not see the first's staged writes; the operator lists, discards and commits them", async () => {
    const bob = await as("bob");
    expect(codes(await ops("vfs-user", [{ op: "write", path: "shared.txt", data: "from default" }]))).toEqual(["ok"]);
    const seen = await ops("vfs-user", [{ op: "exists", path: "shared.txt" }, { op: "write", path: "shared.txt", data: "from bob" }, { op: "read", path: "shared.txt" }], bob.client, bob.inbox);
    expect(seen).toMatchObject([{ ok: true, value: false }, { ok: true }, { ok: true, value: "from bob" }]);
    expect((await ops("vfs-user", [{ op: "read", path: "shared.txt" }]))[0]).toEqual({ ok: true, value: "from default" });
    expect(fs.existsSync(path.join(ws, "shared.txt"))).toBe(false);

    const diff = cli("vfs", "diff", "--principal", "bob", "--json");
    expect(diff.status).toBe(0);
    expect(JSON.parse(diff.stdout)).toEqual([{ path: "cwd://shared.txt", change: "added", kind: "file", size: 8 }]);
    const human = cli("vfs", "diff");
    expect(human.stdout).toMatch(/^A +12 +cwd:\/\/shared\.txt$/m);
    const discarded = cli("vfs", "discard", "--principal", "bob", "--json");
    expect(JSON.parse(discarded.stdout)).toEqual({ discarded: ["cwd://shared.txt"] });
    expect(JSON.parse(cli("vfs", "diff", "--principal", "bob", "--json").stdout)).toEqual([]);
    const committed = cli("vfs", "commit", "--json");
    expect(committed.status).toBe(0);
    expect(JSON.parse(committed.stdout)).toEqual({ committed: ["cwd://shared.txt"] });
    expect(fs.readFileSync(path.join(ws, "shared.txt"), "utf8")).toBe("from default");
    expect(JSON.parse(cli("vfs", "diff", "--json").stdout)).toEqual([]);
    // The operator's commit is audited with the paths, beside the request's own entry.
    expect(auditTail().some((e) => e.action.type === "vfs" && e.action.change === "commit" && typeof e.action.caller === "string" && (e.action.paths as string[]).includes("cwd://shared.txt"))).toBe(true);
    // An agent may not touch the operator API's staged writes (system:vfs:*).
    expect(await bob.client.request("VfsDiff", { principal: "default" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED" });
  }, 60_000);

  it("unlink whites out a workspace file for its principal only, until committed", async () => {
    const bob = await as("bob");
    expect(codes(await ops("vfs-user", [{ op: "unlink", path: "README.md" }, { op: "exists", path: "README.md" }]))).toEqual(["ok", "ok"]);
    expect((await ops("vfs-user", [{ op: "exists", path: "README.md" }]))[0]).toEqual({ ok: true, value: false });
    expect((await ops("vfs-user", [{ op: "read", path: "README.md" }], bob.client, bob.inbox))[0]).toEqual({ ok: true, value: "# workspace\n" });
    expect(JSON.parse(cli("vfs", "diff", "--json").stdout)).toEqual([{ path: "cwd://README.md", change: "deleted", kind: "file", size: 12 }]);
    expect((await ops("vfs-user", [{ op: "discard" }]))[0]).toEqual({ ok: true, value: { discarded: ["cwd://README.md"] } });
    expect(fs.existsSync(path.join(ws, "README.md"))).toBe(true);
  }, 60_000);

  it("hostile paths and sizes are refused with coded errors and audited; nothing outside the roots changes", async () => {
    const keysBefore = fs.readdirSync(path.join(d.home, "keys")).sort();
    const r = await ops("vfs-user", [
      { op: "read", path: "../../run/system.token" },
      { op: "read", path: "cwd://../keys/runtime.key" },
      { op: "read", path: "/etc/passwd" },
      { op: "read", path: "cwd://keys-link/runtime.key" },
      { op: "write", path: "cwd://keys-link/evil", data: "x" },
      { op: "exists", path: "keys-link" },
      { op: "write", path: "home://../other/x", data: "x" },
      { op: "read", path: "file:///etc/passwd" },
      { op: "write", path: "a\u0000b", data: "x" },
      { op: "write_mb", path: "big.bin", mb: 11 },
      { op: "write", path: "cwd://.astrid/capsules/vfs-narrow/index.js", data: "module.exports = {}" },
      { op: "read", path: "cwd://src" },
      { op: "write", path: "nope/x.txt", data: "x" },
    ]);
    expect(codes(r)).toEqual([
      "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_ESCAPE",
      "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_ESCAPE", "ASTRID_ERR_VFS_PATH_INVALID",
      "ASTRID_ERR_VFS_PATH_INVALID", "ASTRID_ERR_VFS_TOO_LARGE", "ASTRID_ERR_VFS_PATH_PROTECTED", "ASTRID_ERR_VFS_WRONG_TYPE",
      "ASTRID_ERR_NOT_FOUND",
    ]);
    expect((r[0] as { message: string }).message).toMatch(/climbs out of cwd:\/\//);
    expect((r[3] as { message: string }).message).toMatch(/symlink that points outside/);
    expect(fs.readdirSync(path.join(d.home, "keys")).sort()).toEqual(keysBefore);
    expect(JSON.parse(cli("vfs", "diff", "--json").stdout)).toEqual([]);
    const denied = auditTail().filter((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.capsule === "vfs-user");
    expect(denied.map((e) => e.action.path)).toEqual(expect.arrayContaining(["../../run/system.token", "/etc/passwd", "cwd://keys-link/runtime.key", "cwd://keys-link/evil"]));
    // The daemon and the capsules keep serving.
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    expect((await ops("vfs-user", [{ op: "read", path: "cwd://src/a.ts" }]))[0]).toMatchObject({ ok: true });
  }, 60_000);

  it("the operator's capsule settings (home://.config/env, API keys among them) are out of reach, even to home:// access", async () => {
    const settings = path.join(d.home, "home", "default", ".config", "env");
    fs.mkdirSync(settings, { recursive: true });
    fs.writeFileSync(path.join(settings, "other.env.json"), JSON.stringify({ API_KEY: "sk-secret" }));
    const r = await ops("vfs-user", [
      { op: "read", path: "home://.config/env/other.env.json" },
      { op: "readdir", path: "home://.config/env" },
      { op: "stat", path: "home://.config/env/other.env.json" },
      { op: "write", path: "home://.config/env/other.env.json", data: "{}" },
      { op: "write", path: "home://.config/env/new.env.json", data: "{}" },
      { op: "unlink", path: "home://.config/env/other.env.json" },
      { op: "readdir", path: "home://.config" },
      { op: "write", path: "home://.config/mine.txt", data: "ok" },
    ]);
    expect(codes(r)).toEqual([
      "ASTRID_ERR_VFS_PATH_PROTECTED", "ASTRID_ERR_VFS_PATH_PROTECTED", "ASTRID_ERR_VFS_PATH_PROTECTED", "ASTRID_ERR_VFS_PATH_PROTECTED",
      "ASTRID_ERR_VFS_PATH_PROTECTED", "ASTRID_ERR_VFS_PATH_PROTECTED", "ok", "ok",
    ]);
    expect(JSON.stringify(r)).not.toContain("sk-secret");
    expect(JSON.parse(fs.readFileSync(path.join(settings, "other.env.json"), "utf8"))).toEqual({ API_KEY: "sk-secret" });
    expect(fs.existsSync(path.join(settings, "new.env.json"))).toBe(false);
  });

  it("a path outside the manifest's entries is ASTRID_ERR_CAPABILITY_DENIED, audited; the capsule keeps serving", async () => {
    const r = await ops("vfs-narrow", [
      { op: "read", path: "cwd://README.md" },
      { op: "read", path: "cwd://srcx" },
      { op: "write", path: "cwd://src/a.ts", data: "x" },
      { op: "commit" },
      { op: "read", path: "cwd://src/a.ts" },
    ]);
    expect(codes(r)).toEqual(["ASTRID_ERR_CAPABILITY_DENIED", "ASTRID_ERR_CAPABILITY_DENIED", "ASTRID_ERR_CAPABILITY_DENIED", "ASTRID_ERR_CAPABILITY_DENIED", "ok"]);
    expect((r[0] as { message: string }).message).toMatch(/\[capabilities\] fs_read/);
    const denied = auditTail().filter((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.capsule === "vfs-narrow");
    expect(denied.map((e) => `${e.action.manifest}:${e.action.target}`)).toEqual(expect.arrayContaining(["fs_read:cwd://README.md", "fs_write:cwd://src/a.ts"]));
    // `astrid capsule permissions` turns those denials into the entries to add.
    const report = JSON.parse(cli("capsule", "permissions", "vfs-narrow", "--json").stdout) as { entries: Array<{ list: string; target: string }> };
    expect(report.entries).toEqual(expect.arrayContaining([expect.objectContaining({ list: "fs_read", target: "cwd://README.md" })]));
  }, 60_000);

  it("a principal without self:fs:* is ASTRID_ERR_PERMISSION_DENIED, audited with its capability", async () => {
    const rita = await as("rita");
    const r = await ops("vfs-user", [{ op: "write", path: "rita.txt", data: "x" }, { op: "read", path: "README.md" }, { op: "commit" }], rita.client, rita.inbox);
    expect(codes(r)).toEqual(["ASTRID_ERR_PERMISSION_DENIED", "ASTRID_ERR_PERMISSION_DENIED", "ASTRID_ERR_PERMISSION_DENIED"]);
    expect((r[0] as { message: string }).message).toMatch(/self:fs:write/);
    expect(auditTail().some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.principal === "rita" && e.action.capability === "self:fs:write")).toBe(true);
    expect(JSON.parse(cli("vfs", "diff", "--principal", "rita", "--json").stdout)).toEqual([]);
  }, 60_000);

  it("astrid vfs: usage errors exit 2; a bad principal is refused before anything is sent", () => {
    const bad = cli("vfs", "frobnicate");
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/ASTRID_ERR_INVALID_ARGUMENT/);
    const principal = cli("vfs", "diff", "--principal", "../x", "--json");
    expect(principal.status).toBe(2);
    expect(JSON.parse(principal.stdout)).toMatchObject({ error: { code: "ASTRID_ERR_INVALID_ARGUMENT" } });
    const help = cli("vfs", "--help");
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/astrid vfs diff --principal alice --json/);
  });
});
