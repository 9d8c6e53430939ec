/**
 * Issue #12: the CLI as users hit it — usage errors run nothing and exit 2; `start` makes an ephemeral daemon
 * persistent; the workspace is visible; the audit log records refusals; `kv delete`; syntax errors in capsules say
 * where; the daemon logs to a piped stderr; the SDK resolves for capsules anywhere.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, ROOT, cleanup, connect, daemonLog, policyOnlyBundle, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURES = path.join(ROOT, "spec", "fixtures", "cli");
const pids: number[] = [];

afterAll(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await cleanup();
});

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the built CLI to completion (async, so the test's own daemons keep being served). */
function astrid(home: string, args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: { ...process.env, ASTRID_HOME: home, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (b: Buffer) => (out += b.toString()));
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    child.once("exit", (code) => resolve({ code, out, err }));
  });
}

/** A workspace whose `.astrid/capsules/` holds copies of the named fixtures. */
function workspaceWith(...fixtures: string[]): string {
  const ws = fs.realpathSync(tempHome());
  for (const name of fixtures) fs.cpSync(path.join(FIXTURES, name), path.join(ws, ".astrid", "capsules", name), { recursive: true });
  return ws;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2]!.startsWith("Z");
  } catch {
    return false;
  }
}

describe("issue #12: usage errors run nothing and exit 2", () => {
  it("stop --forse prints the stop help and the error, exits 2, and the daemon keeps running", async () => {
    const d = await spawnDaemon();
    const r = await astrid(d.home, ["stop", "--forse"]);
    expect(r.code).toBe(2);
    expect(r.out).toBe("");
    expect(r.err).toMatch(/^astrid stop\n[\s\S]*--help[\s\S]*\nastrid: Unknown argument: forse \[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    await sleep(300);
    expect(d.child.exitCode).toBeNull();
    expect(fs.existsSync(d.socketPath)).toBe(true);
    expect(JSON.parse((await astrid(d.home, ["status", "--json"])).out)).toMatchObject({ running: true, pid: d.child.pid });
    // Nothing was sent either: the audit log has no Shutdown.
    expect((await astrid(d.home, ["audit", "tail", "-n", "100"])).out).not.toMatch(/Shutdown/);
  });

  it("each kind of usage error: help of the (sub)command on stderr, nothing on stdout, exit 2", async () => {
    const home = tempHome();
    const cases: Array<[string[], RegExp, RegExp]> = [
      [["chat", "--bogus", "-p", "1+2"], /^astrid chat\n/, /Unknown argument: bogus/],
      [["kv"], /^astrid kv\n[\s\S]*astrid kv delete <key>/, /Name a kv action: get, set, delete or list\./],
      [["kv", "delete"], /^astrid kv delete <key>\n/, /Not enough non-option arguments/],
      [["kv", "remove", "greeting"], /^astrid kv\n/, /Unknown arguments?: remove/],
      [["kv", "set", "k"], /^astrid kv set <key> <value>\n/, /Not enough non-option arguments/],
      [["audit"], /^astrid audit\n[\s\S]*astrid audit verify/, /Name an audit action: verify, tail or anchor\./],
      [["audit", "verfy"], /^astrid audit\n/, /Unknown argument: verfy/],
      [["capsule"], /^astrid capsule\n/, /Name a capsule action/],
      [["capsule", "info"], /^astrid capsule info <name>\n/, /Not enough non-option arguments/],
      [["capsule", "install"], /^astrid capsule install <dir>\n/, /Not enough non-option arguments/],
      [["agent"], /^astrid agent\n/, /Name an action: create, delete, enable, disable or list\./],
      [["group", "lst"], /^astrid group\n/, /Unknown argument: lst/],
      [["caps"], /^astrid caps\n/, /Name an action: grant or revoke\./],
      [["quota", "get"], /^astrid quota get <principal>\n/, /Not enough non-option arguments/],
      [["frontend"], /^astrid frontend\n/, /Name a frontend command/],
      [["frontend", "add", "bot", "--platform", "web", "--bogus"], /^astrid frontend add <name>\n/, /Unknown argument: bogus/],
      [["identity", "frobnicate"], /^astrid identity\n/, /Unknown argument: frobnicate/],
      [["mcp"], /^astrid mcp <action>/, /Not enough non-option arguments/],
      [["mcp", "lst"], /^astrid mcp <action>/, /Invalid values/],
      [["status", "extra"], /^astrid status\n/, /Unknown argument: extra/],
      [["frobnicate"], /^astrid <command>/, /Unknown argument: frobnicate/],
      [[], /^astrid <command>/, /Name a command/],
    ];
    const results = await Promise.all(cases.map(([args]) => astrid(home, args)));
    cases.forEach(([args, help, message], i) => {
      const r = results[i]!;
      expect({ args, code: r.code, out: r.out }).toEqual({ args, code: 2, out: "" });
      expect(r.err).toMatch(help);
      expect(r.err).toMatch(message);
      expect(r.err).toMatch(/\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    });
    // No daemon was spawned by the rejected chat, and nothing was written.
    expect(fs.existsSync(path.join(home, "run", "system.sock"))).toBe(false);
    expect(fs.existsSync(path.join(home, "etc", "frontends", "bot.toml"))).toBe(false);
  });

  it("--json keeps the error object on stdout; explicit --help exits 0 on stdout; the exit codes are documented", async () => {
    const home = tempHome();
    const j = await astrid(home, ["kv", "get", "--json"]);
    expect(j.code).toBe(2);
    expect(JSON.parse(j.out)).toMatchObject({ error: { code: "ASTRID_ERR_INVALID_ARGUMENT" } });
    expect(await astrid(home, ["audit", "tail", "-n", "-1"])).toMatchObject({ code: 2, out: "", err: expect.stringMatching(/-n must be a whole number .*\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/) });
    const help = await astrid(home, ["kv", "--help"]);
    expect(help).toMatchObject({ code: 0, err: "" });
    expect(help.out).toMatch(/astrid kv delete <key>/);
    const top = await astrid(home, ["--help"]);
    expect(top.out).toMatch(/Exit status: 0 success[\s\S]*1 error; 2 usage error[\s\S]*53 chat got no reply/);
    expect(top.out).toMatch(/astrid restart/);
    const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
    expect(readme).toMatch(/\| `2` \| usage error/);
  });
});

describe("issue #12: start, status and the workspace", () => {
  it("start makes the ephemeral daemon of a chat persistent; it outlives the idle timeout; status shows workspace and other clients", async () => {
    const env = { ASTRID_TEST_EPHEMERAL_IDLE_SECS: "3", ASTRID_BUNDLED_CAPSULES_DIR: policyOnlyBundle() };
    const ws = workspaceWith("sdk-cjs");
    const home = tempHome();
    const control = tempHome();
    // The control: a chat's ephemeral daemon that nobody makes persistent idles out.
    const [chat, controlChat] = await Promise.all([
      astrid(home, ["chat", "-p", "cjs: hello"], { cwd: ws, env }),
      astrid(control, ["chat", "-p", "cjs: hello"], { cwd: ws, env }),
    ]);
    expect(chat).toMatchObject({ code: 0, out: "required the SDK: hello\n" });
    expect(controlChat.code).toBe(0);
    // Held open until `start` has answered, so a slow machine cannot let the 3 s idle timeout win the race first.
    const holder = await connect({ home, socketPath: path.join(home, "run", "system.sock"), token: fs.readFileSync(path.join(home, "run", "system.token"), "utf8") } as RunningDaemon);
    const before = JSON.parse((await astrid(home, ["status", "--json"])).out) as { pid: number; ephemeral: boolean; workspace: string };
    pids.push(before.pid);
    expect(before).toMatchObject({ ephemeral: true, workspace: ws });

    const start = await astrid(home, ["start"], { cwd: ws, env });
    expect(start).toMatchObject({ code: 0, out: "Astrid daemon was ephemeral (would stop when idle); it is now persistent.\n", err: "" });
    expect(JSON.parse((await astrid(home, ["start", "--json"], { cwd: ws, env })).out)).toMatchObject({ running: true, started: false, mode: "persistent", was_ephemeral: false });
    await holder.close();

    await sleep(5500);
    expect(fs.existsSync(path.join(control, "run", "system.sock"))).toBe(false);
    expect(alive(before.pid)).toBe(true);
    const status = await astrid(home, ["status"]);
    expect(status.out).toMatch(new RegExp(`\\n  Mode: +persistent\\n  Workspace: ${ws}\\n  Clients: +0 others\\n`));
    expect(JSON.parse((await astrid(home, ["status", "--json"])).out)).toMatchObject({ pid: before.pid, ephemeral: false, workspace: ws, other_clients: 0, connected_clients: 1 });
    // The audit log records the change.
    expect((await astrid(home, ["audit", "tail", "-n", "50"])).out).toMatch(/SetMode required_capability=system:mode .*params=\{"mode":"persistent"\} → ok/);

    // Another workspace: a warning saying how to switch, then restart -w switches.
    const other = fs.realpathSync(tempHome());
    const warned = await astrid(home, ["start", "-w", other], { env });
    expect(warned.code).toBe(0);
    expect(warned.err).toBe(`astrid: warning: the daemon serves workspace ${ws}; you asked for ${other} — run \`astrid restart -w ${other}\` to switch\n`);
    const chatElsewhere = await astrid(home, ["chat", "-p", "cjs: still here", "--timeout", "10"], { cwd: other, env });
    expect(chatElsewhere.err).toMatch(/the daemon serves workspace .*; you asked for .* — run `astrid restart -w /);
    const restarted = await astrid(home, ["restart", "-w", other, "--json"], { env });
    expect(restarted.code).toBe(0);
    const after = JSON.parse(restarted.out) as { pid: number; workspace: string; started: boolean };
    pids.push(after.pid);
    expect(after).toMatchObject({ started: true, workspace: other });
    expect(after.pid).not.toBe(before.pid);
    expect(JSON.parse((await astrid(home, ["status", "--json"])).out)).toMatchObject({ workspace: other, ephemeral: false });
    expect((await astrid(home, ["stop"])).code).toBe(0);
  }, 60_000);
});

describe("issue #12: kv delete and the audit outcome", () => {
  it("kv delete removes a key; a refused write is audited with its code and tail shows it; verify still passes", async () => {
    const d = await spawnDaemon();
    expect((await astrid(d.home, ["kv", "set", "greeting", "hello"])).code).toBe(0);
    expect(await astrid(d.home, ["kv", "delete", "greeting"])).toEqual({ code: 0, out: 'Deleted "greeting" from default:operator.\n', err: "" });
    expect(await astrid(d.home, ["kv", "get", "greeting"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_NOT_FOUND\]\n$/) });
    expect(await astrid(d.home, ["kv", "delete", "greeting"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_NOT_FOUND\]\n$/) });
    const refusedDelete = await astrid(d.home, ["kv", "delete", "x", "--scope", "system:capsules"]);
    expect(refusedDelete).toMatchObject({ code: 1, err: expect.stringMatching(/system scopes cannot be written.*\[ASTRID_ERR_KV_SCOPE_READONLY\]/) });
    const refusedSet = await astrid(d.home, ["kv", "set", "x", "y", "--scope", "system:capsules"]);
    expect(refusedSet).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_KV_SCOPE_READONLY\]\n$/) });
    const wrote = await astrid(d.home, ["kv", "set", "ok", "fine"]);
    expect(wrote.code).toBe(0);

    // The entries are queued for the storage batch: read them once they are there.
    const lines = await until(async () => (await astrid(d.home, ["audit", "tail", "-n", "30"])).out.split("\n"),
      (l) => l.some((x) => /method=KvSet .*"key":"ok"/.test(x)), 10_000);
    expect(lines.find((l) => /method=KvSet .*"scope":"system:capsules"/.test(l))).toMatch(/→ ASTRID_ERR_KV_SCOPE_READONLY: system:capsules belongs to the kernel/);
    expect(lines.find((l) => /method=KvDelete .*"scope":"system:capsules"/.test(l))).toMatch(/→ ASTRID_ERR_KV_SCOPE_READONLY/);
    expect(lines.find((l) => /method=KvSet .*"key":"ok"/.test(l))).toMatch(/→ ok$/);
    expect(lines.find((l) => /method=KvGet .*"key":"greeting"/.test(l))).toMatch(/→ ok$/);
    const json = (await astrid(d.home, ["audit", "tail", "-n", "30", "--json"])).out.trim().split("\n").map((l) => JSON.parse(l) as { action: { method?: string; params?: { scope?: string } }; outcome: unknown });
    expect(json.find((e) => e.action.method === "KvSet" && e.action.params?.scope === "system:capsules")!.outcome)
      .toEqual({ status: "failure", error: expect.stringContaining("system:capsules"), code: "ASTRID_ERR_KV_SCOPE_READONLY" });
    const verify = await astrid(d.home, ["audit", "verify"]);
    expect(verify).toMatchObject({ code: 0, out: expect.stringMatching(/^Audit chain intact/) });
  });
});

describe("issue #12: a capsule with a syntax error", () => {
  it("is reported as file:line:column with the line and a caret, is not retried, and loads once its file is fixed", async () => {
    const ws = workspaceWith("syntax-error");
    const d = await spawnDaemon({ args: ["--workspace", ws, "--quiet"], env: { ASTRID_CAPSULE_RESTART_BACKOFF_MS: "50" } });
    const file = path.join(ws, ".astrid", "capsules", "syntax-error", "index.js");
    const info = await until(async () => astrid(d.home, ["capsule", "info", "syntax-error", "--json"]),
      (r) => r.code === 0 && (JSON.parse(r.out) as { state: string }).state === "failed", 10_000);
    const meta = JSON.parse(info.out) as { last_error: string; restarts: number };
    expect(meta.last_error).toContain(`${file}:4:24: syntax error: Unexpected "="\n      setup(api) { let x = = 1; },\n                           ^\n`);
    expect(meta.last_error).toContain("not retried");
    const text = await astrid(d.home, ["capsule", "info", "syntax-error"]);
    expect(text.out).toContain(`${file}:4:24`);
    // With a 50 ms backoff, five retries would be long over.
    await sleep(1500);
    expect((JSON.parse((await astrid(d.home, ["capsule", "info", "syntax-error", "--json"])).out) as { restarts: number; state: string })).toMatchObject({ restarts: 0, state: "failed" });
    expect(daemonLog(d.home)).toContain(`${file}:4:24: syntax error`);
    expect(daemonLog(d.home)).not.toMatch(/"message":"restarting capsule","capsule":"syntax-error"/);

    fs.writeFileSync(file, 'const { defineCapsule } = require("astrid-daemon/capsule");\n\nmodule.exports = defineCapsule({\n  setup(api) { let x = 1; },\n});\n');
    await until(async () => JSON.parse((await astrid(d.home, ["capsule", "info", "syntax-error", "--json"])).out) as { state: string },
      (m) => m.state === "ready", 15_000);
  }, 40_000);
});

describe("issue #12: the daemon's log on a piped stderr", () => {
  it("prints its log lines (no colour off a terminal); --quiet prints none; --log-format json prints JSON lines; the file is written either way", async () => {
    const [plain, quiet, json] = await Promise.all([spawnDaemon(), spawnDaemon({ args: ["--quiet"] }), spawnDaemon({ args: ["--log-format", "json"] })]);
    for (const d of [plain, quiet, json]) {
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      expect(daemonLog(d.home)).toMatch(/"message":"daemon ready"/);
    }
    expect(plain.stderr()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  daemon booting /m);
    expect(plain.stderr()).toMatch(/ INFO  daemon ready /);
    expect(plain.stderr()).not.toContain("\x1b[");
    expect(quiet.stderr()).toBe("");
    const lines = json.stderr().trim().split("\n");
    expect(lines.length).toBeGreaterThan(3);
    const parsed = lines.map((l) => JSON.parse(l) as { level: string; message: string; timestamp: string });
    expect(parsed.map((p) => p.message)).toContain("daemon ready");
    expect(parsed.every((p) => typeof p.level === "string" && typeof p.timestamp === "string")).toBe(true);
    // A bad value is a config error naming the flag.
    const bad = spawnSync(process.execPath, [path.join(ROOT, "dist", "bin", "astrid-daemon.js"), "--log-format", "xml"], { env: { ...process.env, ASTRID_HOME: tempHome() }, encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--log-format must be pretty or json.*\[ASTRID_ERR_CONFIG_INVALID\]/);
  });
});

describe("issue #12: the SDK resolves for a capsule anywhere", () => {
  it("require and import of astrid-daemon/capsule work from a workspace capsule and from a home capsule", async () => {
    const ws = workspaceWith("sdk-esm");
    const home = tempHome();
    fs.cpSync(path.join(FIXTURES, "sdk-cjs"), path.join(home, "home", "default", ".local", "capsules", "sdk-cjs"), { recursive: true });
    const env = { ASTRID_BUNDLED_CAPSULES_DIR: policyOnlyBundle() };
    const start = await astrid(home, ["start", "--json"], { cwd: ws, env });
    expect(start.code).toBe(0);
    pids.push((JSON.parse(start.out) as { pid: number }).pid);
    const [esm, cjs] = await Promise.all([
      astrid(home, ["chat", "-p", "esm: from the workspace", "--timeout", "10"], { cwd: ws, env }),
      astrid(home, ["chat", "-p", "cjs: from home", "--timeout", "10"], { cwd: ws, env }),
    ]);
    expect(esm).toMatchObject({ code: 0, out: "imported the SDK: from the workspace\n" });
    expect(cjs).toMatchObject({ code: 0, out: "required the SDK: from home\n" });
    expect((await astrid(home, ["stop"])).code).toBe(0);
  }, 40_000);
});
