/**
 * MCP servers in the kernel: a real daemon reads a servers.toml written here and runs real servers —
 * `@modelcontextprotocol/server-everything`, `@modelcontextprotocol/server-filesystem` rooted in a temp dir, and a
 * fixture server (spec/fixtures/mcp/fixture-server.js) that exits at start, never answers, hangs, floods stderr,
 * crashes mid-call and answers with 50 MB. Capsules use them through their API (spec/fixtures/mcp/*), operators
 * through `astrid mcp`. Every bad input gets a coded error, denials are audited, and the daemon keeps serving.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, daemonLog, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURES = path.join(ROOT, "spec", "fixtures", "mcp");
const FIXTURE_SERVER = path.join(FIXTURES, "fixture-server.js");
const EVERYTHING = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
const FILESYSTEM = require.resolve("@modelcontextprotocol/server-filesystem/dist/index.js");
const NODE = process.execPath;
const sha256 = (data: string | Buffer) => createHash("sha256").update(data).digest("hex");

let d: RunningDaemon;
/** server-everything in streamable-HTTP mode, for a `transport = "http"` server. */
let remote: ChildProcess | undefined;
const REMOTE_PORT = 20_000 + (process.pid % 20_000);
let c: DaemonClient;
let fsRoot: string;
let workspace: string;
const received: IpcMessage[] = [];

interface Server { name: string; owner: string | null; state: string; pid: number | null; tools: number; restarts: number; last_error?: string }
type Reply = { ok: true; value: any } | { ok: false; code: string; message: string };

function servers(): Promise<Record<string, Server>> {
  return c.request("McpList").then((r) => Object.fromEntries((r.data as Server[]).map((s) => [s.name, s])));
}

function cli(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(NODE, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function auditTail(): AuditEntry[] {
  return cli("audit", "tail", "-n", "5000", "--json").stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

let sessions = 0;
/** Runs one command in capsule `to` (spec/fixtures/mcp/mcp-user/index.js) and waits for its answer. */
async function ask(to: string, cmd: Record<string, unknown>, timeoutMs = 30_000, client = c, inbox = received): Promise<Reply> {
  const session = `mcp-${++sessions}`;
  client.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to, ...cmd }), session_id: session });
  const reply = await until(() => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, timeoutMs);
  return JSON.parse(reply!.payload.text as string) as Reply;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resolves once something listens on 127.0.0.1:`port`. */
async function listening(port: number): Promise<void> {
  await until(() => new Promise<boolean>((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => (socket.end(), resolve(true)));
    socket.on("error", () => resolve(false));
  }), (ok) => ok, 20_000);
}

beforeAll(async () => {
  remote = spawn(NODE, [EVERYTHING, "streamableHttp"], { env: { ...process.env, PORT: String(REMOTE_PORT) }, stdio: "ignore" });
  await listening(REMOTE_PORT);
  workspace = tempHome();
  fsRoot = tempHome();
  fs.writeFileSync(path.join(fsRoot, "hello.txt"), "hello from the filesystem server");
  const capsules = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(FIXTURES, capsules, { recursive: true, filter: (src) => !src.endsWith("fixture-server.js") });
  const owner = path.join(capsules, "mcp-owner", "Capsule.toml");
  fs.writeFileSync(owner, fs.readFileSync(owner, "utf8").replaceAll("@FIXTURE_SERVER@", FIXTURE_SERVER));
  const home = tempHome();
  fs.mkdirSync(path.join(home, "etc"), { recursive: true });
  const q = JSON.stringify;
  fs.writeFileSync(path.join(home, "etc", "servers.toml"), [
    `[servers.everything]`, `command = ${q(NODE)}`, `args = [${q(EVERYTHING)}, "stdio"]`, `description = "server-everything"`,
    `[servers.fs]`, `command = ${q(NODE)}`, `args = [${q(FILESYSTEM)}, ${q(fsRoot)}]`,
    `[servers.fixture]`, `command = ${q(NODE)}`, `args = [${q(FIXTURE_SERVER)}, "--ignore-sigterm"]`, `restart_policy = { on_failure = { max_retries = 5 } }`,
    `[servers.crashy]`, `command = ${q(NODE)}`, `args = [${q(FIXTURE_SERVER)}, "--exit-at-start"]`, `restart_policy = { on_failure = { max_retries = 2 } }`,
    `[servers.mute]`, `command = ${q(NODE)}`, `args = [${q(FIXTURE_SERVER)}, "--no-initialize"]`, `restart_policy = "never"`,
    `[servers.ghost]`, `command = "no-such-mcp-server-command"`, `restart_policy = "never"`,
    `[servers.tampered]`, `command = ${q(NODE)}`, `args = [${q(EVERYTHING)}, "stdio"]`, `binary_hash = "${"0".repeat(64)}"`, `restart_policy = "never"`,
    `[servers.hashed]`, `command = ${q(NODE)}`, `args = [${q(EVERYTHING)}, "stdio"]`, `binary_hash = "${sha256(fs.readFileSync(NODE))}"`,
    `[servers.remote]`, `transport = "http"`, `url = "http://127.0.0.1:${REMOTE_PORT}/mcp"`,
    `[servers.lazy]`, `command = ${q(NODE)}`, `args = [${q(EVERYTHING)}, "stdio"]`, `auto_start = false`,
  ].join("\n"));
  d = await spawnDaemon({ home, args: ["--workspace", workspace], env: {
    ASTRID_MCP_RESTART_BACKOFF_MS: "200",
    ASTRID_MCP_START_TIMEOUT_MS: "8000",
    ASTRID_MCP_REQUEST_TIMEOUT_MS: "4000",
    ASTRID_MCP_STOP_GRACE_MS: "1000",
    ASTRID_CAPSULE_RESTART_BACKOFF_MS: "60000",
  } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(servers, (s) => s.everything?.state === "running" && s.fs?.state === "running" && s.fixture?.state === "running", 30_000);
}, 90_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    await d.exited;
  }
  remote?.kill("SIGKILL");
  await cleanup();
});

describe("MCP servers from etc/servers.toml", () => {
  it("start with the daemon; `astrid mcp list` shows state, pid, tool count and restarts", async () => {
    const s = await servers();
    expect(s.everything).toMatchObject({ owner: null, state: "running", tools: 13, restarts: 0 });
    expect(alive(s.everything!.pid!)).toBe(true);
    expect(s.lazy).toMatchObject({ state: "stopped", pid: null });
    // auto_start = false: the first request starts it.
    expect(cli("mcp", "tools", "lazy", "--json").status).toBe(0);
    expect((await servers()).lazy).toMatchObject({ state: "running", tools: 13 });
    const listed = JSON.parse(cli("mcp", "list", "--json").stdout) as Server[];
    expect(listed.find((x) => x.name === "fs")).toMatchObject({ state: "running", tools: expect.any(Number) });
    const table = cli("mcp", "list").stdout;
    expect(table).toMatch(/^NAME\s+OWNER\s+STATE\s+PID\s+TOOLS\s+RESTARTS/);
    expect(table).toMatch(new RegExp(`everything\\s+-\\s+running\\s+${s.everything!.pid}\\s+13\\s+0`));
  });

  it("a streamable-HTTP server is reached by its URL", async () => {
    const s = await until(servers, (x) => x.remote?.state === "running");
    expect(s.remote).toMatchObject({ transport: "http", pid: null, tools: 13 });
    expect(cli("mcp", "call", "remote", "echo", "--args", '{"message":"over http"}').stdout.trim()).toBe("Echo: over http");
  });

  it("GetStatus counts them", async () => {
    const status = (await c.request("GetStatus")).data as { mcp_servers: { total: number; running: number; failed: number } };
    expect(status.mcp_servers.total).toBeGreaterThanOrEqual(9);
    expect(status.mcp_servers.running).toBeGreaterThanOrEqual(4);
  });

  it("`astrid mcp tools` and `astrid mcp call` work for operators, and the call is audited with the arguments' hash", () => {
    const tools = JSON.parse(cli("mcp", "tools", "everything", "--json").stdout) as Array<{ name: string }>;
    expect(tools.map((t) => t.name)).toContain("echo");
    const args = '{"message":"hi from the operator"}';
    const r = cli("mcp", "call", "everything", "echo", "--args", args);
    expect(r.stdout.trim()).toBe("Echo: hi from the operator");
    const entry = auditTail().reverse().find((e) => e.action.type === "mcp_call" && e.action.server === "everything" && e.action.caller !== undefined);
    expect(entry).toMatchObject({
      principal: "default",
      action: { operation: "call_tool", target: "echo", args_sha256: sha256(args), duration_ms: expect.any(Number) },
      outcome: { status: "success" },
    });
    const bad = cli("mcp", "call", "everything", "echo", "--args", "[1]");
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--args must be a JSON object.*\[ASTRID_ERR_INVALID_ARGUMENT\]/);
  });

  it("a server whose command does not exist is failed with the reason, and calls to it say so", async () => {
    const s = await until(servers, (x) => x.ghost?.state === "failed");
    expect(s.ghost!.last_error).toMatch(/command "no-such-mcp-server-command" was not found on PATH/);
    const r = cli("mcp", "call", "ghost", "x");
    expect(r.stderr).toMatch(/not found on PATH.*\[ASTRID_ERR_MCP_SERVER_UNAVAILABLE\]/);
  });

  it("a wrong binary_hash keeps the server from starting; the right one lets it start", async () => {
    const s = await until(servers, (x) => x.tampered?.state === "failed" && x.hashed?.state === "running");
    expect(s.tampered!.last_error).toMatch(/binary_hash mismatch for .*node.*expected 0{64}, found [0-9a-f]{64}; not started/);
    expect(s.tampered!.pid).toBeNull();
  });

  it("a server that exits right after start is restarted with backoff, then stays failed", async () => {
    const s = await until(servers, (x) => x.crashy?.state === "failed", 20_000);
    expect(s.crashy).toMatchObject({ restarts: 2, pid: null });
    expect(s.crashy!.last_error).toMatch(/exited with code 1 during start \(gave up after 2 restarts\)/);
    await sleep(1500);
    expect((await servers()).crashy).toMatchObject({ state: "failed", restarts: 2 });
    expect(daemonLog(d.home)).toMatch(/"delay_ms":400.*"mcp_server":"crashy"|"mcp_server":"crashy".*"delay_ms":400/);
  });

  it("a server that never answers initialize fails at the start deadline (restart policy never)", async () => {
    const s = await until(servers, (x) => x.mute?.state === "failed", 20_000);
    expect(s.mute!.last_error).toMatch(/did not answer initialize within 8000 ms/);
  });

  it("stderr lines reach the daemon log under the server's name, rate-limited when flooded", async () => {
    const r = cli("mcp", "call", "fixture", "flood", "--args", '{"lines":50000}');
    expect(r.stdout.trim()).toBe("wrote 50000 lines");
    await until(() => daemonLog(d.home), (log) => /"dropped":\d+.*"mcp_server":"fixture"|"mcp_server":"fixture".*"dropped":\d+/.test(log));
    const log = daemonLog(d.home);
    const lines = log.split("\n").filter((l) => l.includes("fixture flood line") && l.includes('"mcp_server":"fixture"'));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.length).toBeLessThan(5000);
    // The daemon stayed responsive throughout.
    expect((await c.request("GetStatus")).status).toBe("Status");
  });
});

describe("capsules and MCP servers", () => {
  it("a capsule lists, calls and reads servers its manifest names (server-everything)", async () => {
    const listed = await ask("mcp-user", { op: "servers" });
    expect(listed.ok && listed.value.map((s: { id: string; state: string }) => `${s.id}:${s.state}`)).toEqual(["everything:running", "fs:running", "fixture:running"]);
    const echo = await ask("mcp-user", { op: "call", server: "everything", tool: "echo", args: { message: "from a capsule" } });
    expect(echo).toEqual({ ok: true, value: { content: [{ type: "text", text: "Echo: from a capsule" }] } });
    const resources = await ask("mcp-user", { op: "resources", server: "everything" });
    expect(resources.ok && resources.value.length).toBeGreaterThan(0);
    const uri = (resources as { value: Array<{ uri: string }> }).value[0]!.uri;
    const read = await ask("mcp-user", { op: "read", server: "everything", uri });
    expect(read.ok && read.value.contents[0].uri).toBe(uri);
    const prompt = await ask("mcp-user", { op: "prompt", server: "everything", prompt: "simple-prompt", args: {} });
    expect(prompt.ok && prompt.value.messages.length).toBeGreaterThan(0);
    const audited = auditTail().filter((e) => e.action.type === "mcp_call" && e.action.capsule === "mcp-user");
    expect(audited.map((e) => e.action.operation)).toEqual(expect.arrayContaining(["call_tool", "read_resource", "get_prompt"]));
  });

  it("server-filesystem serves files inside its root and refuses the rest", async () => {
    const inside = await ask("mcp-user", { op: "call", server: "fs", tool: "read_text_file", args: { path: path.join(fsRoot, "hello.txt") } });
    expect(inside.ok && inside.value.content[0].text).toBe("hello from the filesystem server");
    const outside = await ask("mcp-user", { op: "call", server: "fs", tool: "read_text_file", args: { path: "/etc/passwd" } });
    expect(outside.ok && outside.value.isError).toBe(true);
    expect(JSON.stringify(outside)).toMatch(/outside allowed directories|Access denied/i);
  });

  it("a capsule calling a server it neither owns nor names is refused and audited", async () => {
    const r = await ask("mcp-owner", { op: "call", server: "everything", tool: "echo", args: { message: "x" } });
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    expect((r as { message: string }).message).toMatch(/\[capabilities\] mcp/);
    const stolen = await ask("mcp-user", { op: "call", server: "capsule:mcp-owner:fx", tool: "echo", args: { message: "x" } });
    expect(stolen).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    const denied = auditTail().filter((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.manifest === "mcp");
    expect(denied.map((e) => `${e.action.capsule}:${e.action.target}`)).toEqual(expect.arrayContaining(["mcp-owner:everything", "mcp-user:capsule:mcp-owner:fx"]));
  });

  it("a capsule acting for a principal without self:mcp:use is refused, and audited", async () => {
    const alice = await connectAs(d, "mcp-alice");
    const inbox: IpcMessage[] = [];
    alice.on("message", (m: IpcMessage) => inbox.push(m));
    try {
      const r = await ask("mcp-user", { op: "call", server: "everything", tool: "echo", args: { message: "x" } }, 30_000, alice, inbox);
      expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_PERMISSION_DENIED" });
      expect((r as { message: string }).message).toMatch(/self:mcp:use/);
    } finally {
      await alice.close();
    }
    expect(auditTail().some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.principal === "mcp-alice" && e.action.capability === "self:mcp:use")).toBe(true);
  });

  it("a capsule's own [[mcp_server]] runs with it, under its name", async () => {
    const s = await until(servers, (x) => x["capsule:mcp-owner:fx"]?.state === "running");
    expect(s["capsule:mcp-owner:fx"]).toMatchObject({ owner: "mcp-owner", tools: 6 });
    const r = await ask("mcp-owner", { op: "call", server: "fx", tool: "echo", args: { message: "own" } });
    expect(r).toEqual({ ok: true, value: { content: [{ type: "text", text: "fixture: own" }] } });
  });

  it("a [[mcp_server]] command outside host_process fails the load with the reference's message, audited", async () => {
    const meta = await until(() => c.request("GetCapsuleMetadata").then((r) => (r.data as Array<{ name: string; state: string; last_error?: string }>).find((m) => m.name === "mcp-outsider")),
      (m) => m?.state === "failed");
    expect(meta!.last_error).toBe("Security Check Failed: host_process capability for 'python3' was not declared in the manifest.");
    expect(auditTail().some((e) => e.action.type === "capsule_lifecycle" && e.action.capsule === "mcp-outsider" && e.action.change === "denied" && e.action.target === "python3")).toBe(true);
    expect(Object.keys(await servers()).some((n) => n.startsWith("capsule:mcp-outsider"))).toBe(false);
  });

  it("5 MiB of tool arguments are refused with a coded error, from a capsule and from an operator", async () => {
    const r = await ask("mcp-user", { op: "call_big", server: "everything", tool: "echo", bytes: 5 * 1024 * 1024 });
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID" });
    expect((r as { message: string }).message).toMatch(/more than the 1048576 allowed/);
    const reply = await c.request("McpCall", { server: "everything", tool: "echo", arguments: { message: "x".repeat(5 * 1024 * 1024) } }, { timeoutMs: 30_000 });
    expect(reply).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect((await ask("mcp-user", { op: "call", server: "everything", tool: "echo", args: { message: "still fine" } })).ok).toBe(true);
  });

  it("a tool that would take 10 minutes meets the deadline; the server keeps serving", async () => {
    const started = Date.now();
    const r = await ask("mcp-user", { op: "call", server: "fixture", tool: "slow", args: { ms: 600_000 } });
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_TIMEOUT" });
    expect((r as { message: string }).message).toMatch(/tool slow on MCP server fixture: no answer within 4000 ms/);
    expect(Date.now() - started).toBeLessThan(15_000);
    const after = await ask("mcp-user", { op: "call", server: "fixture", tool: "echo", args: { message: "after" } });
    expect(after).toEqual({ ok: true, value: { content: [{ type: "text", text: "fixture: after" }] } });
    const entry = auditTail().reverse().find((e) => e.action.type === "mcp_call" && e.action.target === "slow");
    expect(entry).toMatchObject({ outcome: { status: "failure" }, action: { code: "ASTRID_ERR_TIMEOUT", capsule: "mcp-user" } });
  });

  it("a 50 MB result is refused without stalling the daemon; the server keeps serving", async () => {
    const huge = ask("mcp-user", { op: "call", server: "fixture", tool: "huge", args: { mb: 50 } });
    // While the server writes 50 MB, the main thread answers at once.
    const t = Date.now();
    for (let i = 0; i < 5; i++) await c.request("GetStatus");
    expect(Date.now() - t).toBeLessThan(2000);
    const r = await huge;
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_MCP_RESULT_TOO_LARGE" });
    expect((r as { message: string }).message).toMatch(/the answer is \d+ bytes, more than the \d+ allowed/);
    const small = await ask("mcp-user", { op: "call", server: "fixture", tool: "huge", args: { mb: 2 } });
    expect(small.ok && small.value).toMatchObject({ summarized: true, text_length: 2 * 1024 * 1024 });
    expect((await servers()).fixture).toMatchObject({ state: "running", restarts: 0 });
  });

  it("tool-list changes are published on astrid.v1.mcp.tools_changed", async () => {
    const r = await ask("mcp-user", { op: "call", server: "fixture", tool: "add_tool" });
    expect(r.ok).toBe(true);
    const events = await until(() => ask("mcp-user", { op: "events" }), (e) => e.ok && e.value.some((x: { server: string; tools: string[] }) => x.server === "fixture" && x.tools.includes("late_tool")));
    expect(events.ok).toBe(true);
    const tools = await ask("mcp-user", { op: "tools", server: "fixture" });
    expect(tools.ok && tools.value.map((t: { name: string }) => t.name)).toContain("late_tool");
  });

  it("a server that crashes mid-call fails that call and is restarted per its policy", async () => {
    const before = (await servers()).fixture!;
    const r = await ask("mcp-user", { op: "call", server: "fixture", tool: "crash" });
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_MCP_SERVER_UNAVAILABLE" });
    const s = await until(servers, (x) => x.fixture?.state === "running" && x.fixture.restarts === before.restarts + 1);
    expect(s.fixture!.pid).not.toBe(before.pid);
    expect(alive(before.pid!)).toBe(false);
    const after = await ask("mcp-user", { op: "call", server: "fixture", tool: "echo", args: { message: "again" } });
    expect(after.ok).toBe(true);
  });

  it("a capsule's server restarts with the capsule and dies with it", async () => {
    const first = (await servers())["capsule:mcp-owner:fx"]!;
    const dir = path.join(workspace, ".astrid", "capsules", "mcp-owner");
    fs.appendFileSync(path.join(dir, "index.js"), "\n// changed\n");
    await c.request("ReloadCapsules", undefined, { timeoutMs: 30_000 });
    const s = await until(servers, (x) => x["capsule:mcp-owner:fx"]?.state === "running" && x["capsule:mcp-owner:fx"]?.pid !== first.pid);
    await until(() => alive(first.pid!), (a) => !a);
    const second = s["capsule:mcp-owner:fx"]!;
    fs.rmSync(dir, { recursive: true });
    await c.request("ReloadCapsules", undefined, { timeoutMs: 30_000 });
    await until(servers, (x) => x["capsule:mcp-owner:fx"] === undefined);
    await until(() => alive(second.pid!), (a) => !a);
  });

  it("shutdown stops every server, killing one that ignores SIGTERM after the grace", async () => {
    const pids = Object.values(await servers()).map((s) => s.pid).filter((p): p is number => p !== null);
    expect(pids.length).toBeGreaterThanOrEqual(4);
    const started = Date.now();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // The fixture ignored SIGTERM: the daemon waited ASTRID_MCP_STOP_GRACE_MS (1 s), then killed it.
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(pids.filter(alive)).toEqual([]);
    expect(daemonLog(d.home)).toMatch(/fixture: ignoring SIGTERM/);
  });
});

describe("a malformed etc/servers.toml", () => {
  it("fails the boot with ASTRID_ERR_MCP_CONFIG_INVALID naming the file and line", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "etc"), { recursive: true });
    const file = path.join(home, "etc", "servers.toml");
    fs.writeFileSync(file, '[servers.ok]\ncommand = "node"\n\n[servers.bad]\ncommand = "node"\nrestart_policy = "sometimes"\n');
    const bad = await spawnDaemon({ home, waitReady: false });
    expect(await bad.exited).toBe(1);
    expect(bad.stderr()).toContain(`${file}:6: servers.bad.restart_policy: must be "never", "always", "on_failure" or { on_failure = { max_retries = N } } [ASTRID_ERR_MCP_CONFIG_INVALID]`);
    expect(fs.existsSync(path.join(home, "run", "system.sock"))).toBe(false);
    fs.writeFileSync(file, "[servers.\"bad name!\"]\ncommand = \"node\"\n");
    const badName = await spawnDaemon({ home, waitReady: false });
    expect(await badName.exited).toBe(1);
    expect(badName.stderr()).toMatch(/servers\.toml:1: servers\.bad name!: server names are 1–64 of A-Z a-z 0-9 _ - \[ASTRID_ERR_MCP_CONFIG_INVALID\]/);
  }, 30_000);
});
