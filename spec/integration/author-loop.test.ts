/**
 * The capsule author's loop against the real daemon and CLI: `astrid capsule new` (JavaScript and TypeScript)
 * loading at once, its slash command and tool, `astrid tool list|call`, reload events in `astrid chat`,
 * `astrid capsule remove` (also mid-request), `astrid logs` (filters, following across the daily rotation) and
 * shell completion — with the bad inputs of the issue: a scaffold into an existing directory, a bad name, removing
 * a bundled capsule, removing a capsule while a call to it runs.
 */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, daemonLog, ROOT, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

/** Runs `astrid` in `cwd` (the workspace) against `home`, to completion. */
function astrid(home: string, args: string[], cwd = process.cwd()) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { cwd, env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 60_000 });
}

/** Starts `astrid` without waiting; resolves with its output once it exits. */
function astridAsync(home: string, args: string[], cwd = process.cwd()) {
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd, env: { ...process.env, ASTRID_HOME: home }, stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number>((resolve) => child.once("exit", (code) => resolve(code ?? 128)));
  return { child, out: () => stdout, err: () => stderr, exited };
}

/** The audit entries' actions, as `astrid audit tail --json` prints them. */
function auditActions(home: string): Array<Record<string, unknown>> {
  const r = astrid(home, ["audit", "tail", "-n", "5000", "--json"]);
  expect(r.status).toBe(0);
  return r.stdout.trim().split("\n").filter((l) => l).map((l) => (JSON.parse(l) as { action: Record<string, unknown> }).action);
}

/** The tools a capsule offers now (empty while it is not ready), through the library client. */
async function toolsOf(capsule: string): Promise<string[]> {
  const all = (await c.request("GetCapsuleMetadata", undefined)).data as Array<{ name: string; state: string; tools?: Array<{ name: string }> }>;
  const found = all.find((x) => x.name === capsule && x.state === "ready");
  return (found?.tools ?? []).map((t) => t.name);
}

let d: RunningDaemon;
let c: DaemonClient;
let workspace: string;
const events: IpcMessage[] = [];
const capsulesDir = () => path.join(workspace, ".astrid", "capsules");

beforeAll(async () => {
  workspace = tempHome();
  d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "8000" } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic.startsWith("astrid.v1.capsule.")) events.push(m);
  });
}, 30_000);

afterAll(async () => {
  await c?.close();
  d?.child.kill("SIGTERM");
  expect(await d?.exited).toBe(0);
  await cleanup();
});

describe("astrid capsule new", () => {
  it("scaffolds a JavaScript capsule that the running daemon loads at once, with a passing test of its own", async () => {
    const r = astrid(d.home, ["capsule", "new", "greeter"], workspace);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^Created greeter \(javascript\) in .*\.astrid\/capsules\/greeter; it is ready\. Try \/greeter in astrid chat/);
    for (const f of ["Capsule.toml", "index.js", "README.md", "test/greet.test.js"]) expect(fs.existsSync(path.join(capsulesDir(), "greeter", f))).toBe(true);
    const own = spawnSync(process.execPath, ["--test", "test/"], { cwd: path.join(capsulesDir(), "greeter"), encoding: "utf8", timeout: 30_000 });
    expect(own.stdout).toMatch(/# pass 3/);
    expect(own.status).toBe(0);
  });

  it("its slash command answers in astrid chat", () => {
    const r = spawnSync(process.execPath, [CLI_BIN, "chat", "--repl", "--timeout", "10"], {
      cwd: workspace, env: { ...process.env, ASTRID_HOME: d.home }, input: "/greeter Ada\n", encoding: "utf8", timeout: 30_000,
    });
    expect(r.stdout).toBe("Hello, Ada! (from greeter)\n");
    expect(r.status).toBe(0);
  });

  it("refuses to scaffold into an existing directory, and writes nothing", () => {
    const file = path.join(capsulesDir(), "greeter", "index.js");
    const before = fs.readFileSync(file, "utf8");
    const r = astrid(d.home, ["capsule", "new", "greeter"], workspace);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/greeter already exists; nothing was written .*\[ASTRID_ERR_CAPSULE_EXISTS\]\n$/);
    expect(fs.readFileSync(file, "utf8")).toBe(before);
    const json = astrid(d.home, ["capsule", "new", "greeter", "--json"], workspace);
    expect(JSON.parse(json.stdout)).toMatchObject({ error: { code: "ASTRID_ERR_CAPSULE_EXISTS" } });
  });

  it('refuses "bad name!" (and other names the daemon would not load) as a usage error: exit 2, nothing written', () => {
    for (const name of ["bad name!", "a/b", "x".repeat(65)]) {
      const r = astrid(d.home, ["capsule", "new", name], workspace);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/is not a capsule name: .*\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    }
    expect(fs.readdirSync(capsulesDir()).sort()).toEqual(["greeter"]);
    const both = astrid(d.home, ["capsule", "new", "other", "--workspace", "--home"], workspace);
    expect(both.status).toBe(2);
    expect(fs.existsSync(path.join(capsulesDir(), "other"))).toBe(false);
  });

  it("--home puts it among the operator's own capsules", () => {
    const r = astrid(d.home, ["capsule", "new", "homely", "--home", "--json"], workspace);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "homely", dir: path.join(d.home, "home", "default", ".local", "capsules", "homely"), state: "ready", tool: "homely_greet" });
  });

  it("--ts scaffolds a TypeScript @capsule that loads at once, and its documented build (tsc) is what the daemon reloads", async () => {
    const r = astrid(d.home, ["capsule", "new", "typed", "--ts"], workspace);
    expect(r.stdout).toMatch(/^Created typed \(typescript\) in .*; it is ready\./);
    const dir = path.join(capsulesDir(), "typed");
    expect(fs.readFileSync(path.join(dir, "README.md"), "utf8")).toContain("npm run build");
    expect(astrid(d.home, ["tool", "call", "typed.typed_greet", "--args", '{"name":"TS"}']).stdout).toBe("Hello, TS! (from typed)\n");
    // What `npm install` gives the project: the SDK package (its types) and the compiler.
    fs.mkdirSync(path.join(dir, "node_modules"));
    fs.symlinkSync(ROOT, path.join(dir, "node_modules", "astrid-daemon"), "dir");
    fs.symlinkSync(path.join(ROOT, "node_modules", "typescript"), path.join(dir, "node_modules", "typescript"), "dir");
    const own = spawnSync(process.execPath, ["--test", "test/"], { cwd: dir, encoding: "utf8", timeout: 30_000 });
    expect(own.stdout).toMatch(/# pass 3\n# fail 0/);
    const src = path.join(dir, "src", "index.ts");
    fs.writeFileSync(src, fs.readFileSync(src, "utf8").replace("Hello, ${who}!", "Howdy, ${who}!"));
    // `npm run build` is `tsc -p tsconfig.json`.
    const build = spawnSync(process.execPath, [path.join(dir, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], { cwd: dir, encoding: "utf8", timeout: 60_000 });
    expect(build.stdout + build.stderr).toBe("");
    expect(build.status).toBe(0);
    // The built file changed: the daemon reloads it (polled through the library client, the CLI checks it once).
    await until(async () => (await c.request("CallTool", { capsule: "typed", tool: "typed_greet", arguments: { name: "TS" } })).data, (r) => (r as { content?: string })?.content === "Howdy, TS! (from typed)", 15_000);
    expect(astrid(d.home, ["tool", "call", "typed.typed_greet", "--args", '{"name":"TS"}']).stdout).toBe("Howdy, TS! (from typed)\n");
  }, 60_000);
});

describe("astrid tool list|call and capsule info", () => {
  it("lists every ready capsule's tools", () => {
    const r = astrid(d.home, ["tool", "list", "--json"]);
    expect(JSON.parse(r.stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ capsule: "greeter", name: "greeter_greet", description: "Greets someone by name" })]));
    expect(astrid(d.home, ["tool", "list"]).stdout).toMatch(/^TOOL +DESCRIPTION\n(.*\n)*greeter\.greeter_greet +Greets someone by name\n/);
  });

  it("calls a tool as the operator, audited with its arguments' hash, never the arguments", () => {
    const r = astrid(d.home, ["tool", "call", "greeter.greeter_greet", "--args", '{"name":"secret-name-xyz"}']);
    expect(r.stderr).toBe("");
    expect(r.stdout).toBe("Hello, secret-name-xyz! (from greeter)\n");
    expect(JSON.parse(astrid(d.home, ["tool", "call", "greeter.greeter_greet", "--json"]).stdout)).toEqual({ content: "Hello, world! (from greeter)", is_error: false });
    const actions = auditActions(d.home);
    expect(actions).toContainEqual(expect.objectContaining({ type: "admin_request", method: "CallTool", required_capability: "system:tool:call", params: { capsule: "greeter", tool: "greeter_greet" } }));
    expect(actions).toContainEqual(expect.objectContaining({ type: "capsule_lifecycle", change: "tool_call", capsule: "greeter", tool: "greeter_greet", is_error: false, args_sha256: expect.stringMatching(/^[0-9a-f]{64}$/) }));
    expect(JSON.stringify(actions)).not.toContain("secret-name-xyz");
  });

  it("refuses bad targets and arguments (usage errors), and names what exists for an unknown tool", () => {
    for (const args of [["tool", "call", "greeter"], ["tool", "call", "greeter.greeter_greet", "--args", "{not json"]]) {
      const r = astrid(d.home, args);
      expect(r.status).toBe(2);
      expect(r.stderr).toMatch(/\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    }
    const unknown = astrid(d.home, ["tool", "call", "greeter.nope"]);
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toBe('astrid: greeter offers no tool "nope" (it offers greeter_greet; see astrid tool list) [ASTRID_ERR_NOT_FOUND]\n');
    expect(astrid(d.home, ["tool", "call", "ghost.t"]).stderr).toMatch(/no ready capsule named "ghost".*\[ASTRID_ERR_NOT_FOUND\]/);
  });

  it("capsule info lists the tools in its text form", () => {
    expect(astrid(d.home, ["capsule", "info", "greeter"]).stdout).toMatch(/\n {2}Commands: +greeter\n {2}Tools: +greeter_greet\n/);
  });
});

describe("reload events", () => {
  it("a changed capsule announces astrid.v1.capsule.reloaded (old/new version, ms), and astrid chat prints it on stderr", async () => {
    const chat = astridAsync(d.home, ["chat", "--repl", "--timeout", "10"], workspace);
    await until(() => chat.err(), (e) => e.includes("Astrid chat"), 15_000);
    const manifest = path.join(capsulesDir(), "greeter", "Capsule.toml");
    fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace('version = "0.1.0"', 'version = "0.2.0"'));
    const event = await until(() => events.find((e) => e.topic === "astrid.v1.capsule.reloaded" && e.payload.name === "greeter"), (e) => e !== undefined, 15_000);
    expect(event!.payload).toMatchObject({ name: "greeter", old_version: "0.1.0", new_version: "0.2.0" });
    expect(typeof event!.payload.ms).toBe("number");
    await until(() => chat.err(), (e) => /astrid: reloaded greeter 0\.1\.0 → 0\.2\.0 in \d+ ms\n/.test(e), 10_000);
    chat.child.stdin.write("/greeter again\n");
    await until(() => chat.out(), (o) => o === "Hello, again! (from greeter)\n", 10_000);
    chat.child.stdin.end();
    expect(await chat.exited).toBe(0);
  }, 40_000);

  it("a save with a syntax error announces astrid.v1.capsule.reload_failed with the file and line", async () => {
    const chat = astridAsync(d.home, ["chat", "--repl", "--timeout", "10"], workspace);
    await until(() => chat.err(), (e) => e.includes("Astrid chat"), 15_000);
    const file = path.join(capsulesDir(), "greeter", "index.js");
    const good = fs.readFileSync(file, "utf8");
    const lines = good.split("\n").length;
    fs.writeFileSync(file, `${good}\nthis is not javascript (\n`);
    const event = await until(() => events.find((e) => e.topic === "astrid.v1.capsule.reload_failed" && e.payload.name === "greeter"), (e) => e !== undefined, 15_000);
    expect(event!.payload).toMatchObject({ name: "greeter", line: lines + 1 });
    expect(fs.realpathSync(String(event!.payload.file))).toBe(fs.realpathSync(file));
    expect(String(event!.payload.message)).toMatch(/syntax error/);
    await until(() => chat.err(), (e) => /astrid: reload of greeter failed \(.*index\.js:\d+\): .*syntax error/.test(e), 10_000);
    chat.child.stdin.end();
    await chat.exited;
    // Fixed: it loads again (and says so).
    const before = events.length;
    fs.writeFileSync(file, good);
    await until(() => events.slice(before).find((e) => e.topic === "astrid.v1.capsule.reloaded" && e.payload.name === "greeter"), (e) => e !== undefined, 15_000);
  }, 40_000);
});

describe("astrid capsule remove", () => {
  it("refuses a bundled capsule", () => {
    const r = astrid(d.home, ["capsule", "remove", "astrid-capsule-cli"]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/astrid-capsule-cli ships with the daemon .*bundled capsules cannot be removed \[ASTRID_ERR_CAPSULE_BUNDLED\]\n$/);
    expect(astrid(d.home, ["capsule", "remove", "ghost"]).stderr).toMatch(/\[ASTRID_ERR_NOT_FOUND\]\n$/);
  });

  it("removing a capsule mid-request drains it: the call in flight gets its answer, then it is unloaded and deleted", async () => {
    const dir = path.join(capsulesDir(), "slowpoke");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), '[package]\nname = "slowpoke"\nversion = "1.0.0"\n[[component]]\nfile = "index.js"\n');
    fs.writeFileSync(path.join(dir, "index.js"), `module.exports = { tools: { nap: { execute: (args, api) => { api.log.info("napping"); return new Promise((r) => setTimeout(() => r("rested"), 1500)); } } } };\n`);
    await until(() => toolsOf("slowpoke"), (tools) => tools.includes("nap"), 15_000);
    const call = astridAsync(d.home, ["tool", "call", "slowpoke.nap"]);
    // The call is in flight once the tool has started (it says so in the log).
    await until(() => daemonLog(d.home), (log) => log.includes('"message":"napping"'), 15_000);
    const started = Date.now();
    const r = astrid(d.home, ["capsule", "remove", "slowpoke", "--json"]);
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "slowpoke", version: "1.0.0", drained: true });
    expect(Date.now() - started).toBeGreaterThan(300); // it waited for the nap
    expect(await call.exited).toBe(0);
    expect(call.err()).toBe("");
    expect(call.out()).toBe("rested\n");
    expect(fs.existsSync(dir)).toBe(false);
    const list = JSON.parse(astrid(d.home, ["capsule", "list", "--json"]).stdout) as Array<{ name: string }>;
    expect(list.map((x) => x.name)).not.toContain("slowpoke");
    expect(auditActions(d.home)).toContainEqual(expect.objectContaining({ change: "remove", capsule: "slowpoke", drained: true }));
    // New calls are refused at once.
    expect(astrid(d.home, ["tool", "call", "slowpoke.nap"]).stderr).toMatch(/\[ASTRID_ERR_NOT_FOUND\]/);
  }, 40_000);

  it("removes a scaffolded capsule: its command no longer answers", () => {
    const r = astrid(d.home, ["capsule", "remove", "homely"]);
    expect(r.stdout).toMatch(/^Removed homely 0\.1\.0 \(.*homely\)\.\n$/);
    expect(fs.existsSync(path.join(d.home, "home", "default", ".local", "capsules", "homely"))).toBe(false);
  });
});

describe("astrid logs", () => {
  it("shows the daemon's log readable, filtered by capsule and level, or as JSON lines", () => {
    const r = astrid(d.home, ["logs", "--capsule", "greeter", "--since", "10m"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO  \[greeter\] greeter is ready$/m);
    for (const line of r.stdout.trim().split("\n")) expect(line).toMatch(/\[greeter\]|"name":"greeter"|"capsule_id":"greeter"/);
    const errors = astrid(d.home, ["logs", "--level", "error", "--json", "--since", "1h"]);
    const lines = errors.stdout.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l) as { level: string });
    expect(lines.length).toBeGreaterThan(0); // the syntax error above failed a load
    expect(lines.every((l) => l.level === "error")).toBe(true);
    expect(astrid(d.home, ["logs", "-n", "3"]).stdout.trim().split("\n")).toHaveLength(3);
    expect(astrid(d.home, ["logs", "--since", "yesterday-ish"]).status).toBe(2);
  });

  it("-f follows the log across the daily rotation, with no daemon running", async () => {
    const home = tempHome();
    const logDir = path.join(home, "log");
    fs.mkdirSync(logDir);
    const line = (message: string, extra: Record<string, unknown> = {}) => `${JSON.stringify({ level: "info", message, timestamp: new Date().toISOString(), ...extra })}\n`;
    fs.writeFileSync(path.join(logDir, "astrid.2026-01-01.log"), line("old news"));
    const follow = astridAsync(home, ["logs", "-f", "-n", "0", "--capsule", "c1"]);
    // -n 0: only lines written once it runs; a ping shows up once it does.
    await until(() => {
      fs.appendFileSync(path.join(logDir, "astrid.2026-01-01.log"), line("ping", { capsule: "c1" }));
      return follow.out();
    }, (o) => o.includes("ping"), 15_000);
    fs.appendFileSync(path.join(logDir, "astrid.2026-01-01.log"), line("day one", { capsule: "c1" }) + line("not mine", { capsule: "c2" }));
    await until(() => follow.out(), (o) => o.includes("day one"), 10_000);
    fs.writeFileSync(path.join(logDir, "astrid.2026-01-02.log"), line("day two", { capsule: "c1" }));
    await until(() => follow.out(), (o) => o.includes("day two"), 10_000);
    fs.appendFileSync(path.join(logDir, "astrid.2026-01-02.log"), line("still day two", { capsule: "c1" }));
    await until(() => follow.out(), (o) => o.includes("still day two"), 10_000);
    follow.child.kill("SIGTERM");
    await follow.exited;
    expect(follow.out()).not.toContain("old news");
    expect(follow.out()).not.toContain("not mine");
    expect(follow.out().trim().split("\n").map((l) => l.replace(/^.* INFO {2}\[c1\] /, "")).filter((l) => l !== "ping")).toEqual(["day one", "day two", "still day two"]);
  }, 30_000);
});

describe("astrid completion", () => {
  it("prints a completion script, and completes capsule names and tools from the running daemon", () => {
    expect(astrid(d.home, ["completion"]).stdout).toContain("###-begin-astrid-completions-###");
    const names = astrid(d.home, ["--get-yargs-completions", "capsule", "info", "gr"]).stdout.trim().split("\n");
    expect(names).toEqual(["greeter"]);
    const tools = astrid(d.home, ["--get-yargs-completions", "tool", "call", ""]).stdout.trim().split("\n");
    expect(tools).toEqual(expect.arrayContaining(["greeter.greeter_greet", "typed.typed_greet"]));
    expect(astrid(d.home, ["--get-yargs-completions", "lo"]).stdout.split("\n")).toContain("logs");
  });
});
