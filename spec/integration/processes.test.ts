/**
 * Host processes: a real daemon runs a fixture capsule (spec/fixtures/processes/proc-user) that runs and spawns
 * commands through its API. One daemon uses the default sandbox (`auto`: bubblewrap, which works in CI), one
 * ASTRID_PROCESS_SANDBOX=none. argv is matched word by word against `host_process` and never reaches a shell;
 * principals need self:process:run (and their `[process] allow`); time, output and background processes are
 * bounded; every process of a capsule goes with its run and with the daemon.
 */
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { spawnSync } from "node:child_process";
import { CLI_BIN, cleanup, connect, connectAs, daemonLog, ROOT, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

/**
 * The first digits of every `sleep` these tests start, different in each run: processes are found by their command
 * line, and one left behind by an earlier run on the same machine must not be taken for this run's.
 */
const SLEEP = String(500 + Math.floor(Math.random() * 400));

const FIXTURE = path.join(ROOT, "spec", "fixtures", "processes", "proc-user");

type Reply = { ok: true; value: any } | { ok: false; code: string; message: string };

interface Setup {
  d: RunningDaemon;
  c: DaemonClient;
  inbox: IpcMessage[];
  workspace: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of live processes whose command line contains `needle` (scanning /proc, so a sandbox's processes too). */
function pidsOf(needle: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      const state = fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0];
      if (cmdline.includes(needle) && state !== "Z" && !cmdline.includes("jest")) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function boot(env: Record<string, string> = {}, profiles: Record<string, string> = {}, homeInWorkspace = false): Promise<Setup> {
  const workspace = fs.realpathSync(tempHome());
  fs.cpSync(FIXTURE, path.join(workspace, ".astrid", "capsules", "proc-user"), { recursive: true });
  fs.mkdirSync(path.join(workspace, "sub"));
  fs.symlinkSync("/etc", path.join(workspace, "out"));
  fs.writeFileSync(path.join(workspace, "victim.txt"), "still here");
  const home = homeInWorkspace ? path.join(workspace, "astrid-home") : tempHome();
  fs.mkdirSync(path.join(home, "etc", "profiles"), { recursive: true });
  for (const [name, text] of Object.entries(profiles)) fs.writeFileSync(path.join(home, "etc", "profiles", `${name}.toml`), text);
  const d = await spawnDaemon({ home, args: ["--workspace", workspace], env: { ASTRID_CAPSULE_RESTART_BACKOFF_MS: "60000", ...env } });
  const c = await connect(d);
  const inbox: IpcMessage[] = [];
  c.on("message", (m: IpcMessage) => inbox.push(m));
  await until(() => c.request("GetCapsuleMetadata").then((r) => (r.data as Array<{ name: string; state: string }>).find((m) => m.name === "proc-user")?.state), (s) => s === "ready");
  return { d, c, inbox, workspace };
}

let sessions = 0;
/** Runs one command in the fixture capsule and waits for its answer. */
async function ask(s: Setup, cmd: Record<string, unknown>, timeoutMs = 30_000, client = s.c, inbox = s.inbox): Promise<Reply> {
  const session = `proc-${++sessions}`;
  client.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to: "proc-user", ...cmd }), session_id: session });
  const reply = await until(() => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, timeoutMs);
  return JSON.parse(reply!.payload.text as string) as Reply;
}

const run = (s: Setup, argv: unknown, options?: Record<string, unknown>) => ask(s, { op: "run", argv, ...(options ? { options } : {}) });
const value = (r: Reply) => {
  if (!r.ok) throw new Error(`expected success, got ${r.code}: ${r.message}`);
  return r.value;
};

function auditTail(d: RunningDaemon): AuditEntry[] {
  const r = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "5000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 60_000 });
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

async function stopDaemon(s: Setup): Promise<void> {
  await s.c.close().catch(() => undefined);
  s.d.child.kill("SIGTERM");
  await s.d.exited;
}

afterAll(async () => {
  await cleanup();
});

describe("with the default sandbox (bubblewrap)", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await boot({}, {
      "proc-bob": `grants = ["self:process:run"]\n[process]\nallow = ["echo"]\n`,
    });
  }, 60_000);
  afterAll(async () => {
    if (s && s.d.child.exitCode === null) await stopDaemon(s);
  });

  it("runs echo and returns its output; the run is audited with argv, exit code, duration and sandbox", async () => {
    const r = value(await run(s, ["echo", "hello", "world"]));
    expect(r).toMatchObject({ exit_code: 0, signal: null, stdout: "hello world\n", stderr: "", timed_out: false, stdout_truncated: false });
    expect(daemonLog(s.d.home)).toMatch(/host processes run sandboxed with bubblewrap/);
    const entry = auditTail(s.d).reverse().find((e) => e.action.type === "host_process" && e.action.operation === "run");
    expect(entry).toMatchObject({
      principal: "default",
      action: { capsule: "proc-user", argv: ["echo", "hello", "world"], exit_code: 0, sandbox: "bwrap", duration_ms: expect.any(Number) },
      outcome: { status: "success" },
    });
  });

  it("argv never reaches a shell: a command line in argv[0] matches nothing, is refused and audited; nothing is removed", async () => {
    const victim = path.join(s.workspace, "victim.txt");
    const injected = await run(s, ["ls; rm -f victim.txt"]);
    expect(injected).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    // "sh -c" as one element is not the entry's two words, even though the joined line starts with "sh -c ".
    expect(await run(s, ["sh -c", "rm -f victim.txt"])).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    expect(await run(s, ["lsx"])).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    expect(await run(s, ["rm", "-f", victim])).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    // An allowed command gets the metacharacters as a plain argument.
    expect(value(await run(s, ["echo", "hi; rm -f victim.txt"])).stdout).toBe("hi; rm -f victim.txt\n");
    expect(fs.readFileSync(victim, "utf8")).toBe("still here");
    const denied = auditTail(s.d).filter((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.manifest === "host_process");
    expect(denied.map((e) => e.action.target)).toEqual(expect.arrayContaining(["ls; rm -f victim.txt", "sh -c rm -f victim.txt"]));
    expect(denied.every((e) => e.action.capability === "self:process:run")).toBe(true);
  });

  it("bad arguments are refused with ASTRID_ERR_REQUEST_INVALID", async () => {
    for (const [argv, options] of [
      ["echo hi", undefined],
      [[], undefined],
      [["echo", 5], undefined],
      [["echo", "a\u0000b"], undefined],
      [["echo"], { timeout_ms: 0 }],
      [["echo"], { timeout_ms: 300_001 }],
      [["echo"], { timeout_ms: 1.5 }],
      [["echo"], { bogus: 1 }],
      [["echo"], { stdin: 5 }],
    ] as Array<[unknown, Record<string, unknown> | undefined]>) {
      expect([argv, options, await run(s, argv, options)]).toEqual([argv, options, expect.objectContaining({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID" })]);
    }
    expect(await ask(s, { op: "logs", id: "no-such-id" })).toMatchObject({ ok: false, code: "ASTRID_ERR_NOT_FOUND" });
    expect(value(await ask(s, { op: "kill", id: "no-such-id" }))).toBe(false);
  });

  it("a principal without self:process:run is refused (ASTRID_ERR_PERMISSION_DENIED), and audited", async () => {
    const alice = await connectAs(s.d, "proc-alice");
    const inbox: IpcMessage[] = [];
    alice.on("message", (m: IpcMessage) => inbox.push(m));
    try {
      const r = await ask(s, { op: "run", argv: ["echo", "x"] }, 30_000, alice, inbox);
      expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_PERMISSION_DENIED" });
      expect((r as { message: string }).message).toMatch(/self:process:run/);
    } finally {
      await alice.close();
    }
    expect(auditTail(s.d).some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.principal === "proc-alice" && e.action.capability === "self:process:run")).toBe(true);
  });

  it("a principal's [process] allow narrows what its capsules may run", async () => {
    const bob = await connectAs(s.d, "proc-bob");
    const inbox: IpcMessage[] = [];
    bob.on("message", (m: IpcMessage) => inbox.push(m));
    try {
      expect(value(await ask(s, { op: "run", argv: ["echo", "bob"] }, 30_000, bob, inbox)).stdout).toBe("bob\n");
      const r = await ask(s, { op: "run", argv: ["cat", "/etc/hostname"] }, 30_000, bob, inbox);
      expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_PERMISSION_DENIED" });
      expect((r as { message: string }).message).toMatch(/\[process\] allow/);
    } finally {
      await bob.close();
    }
    expect(auditTail(s.d).some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.principal === "proc-bob" && e.action.target === "cat /etc/hostname")).toBe(true);
  });

  it("cwd is a workspace path; escapes and other roots are refused", async () => {
    expect(value(await run(s, ["pwd"], { cwd: "cwd://sub" })).stdout).toBe(`${path.join(s.workspace, "sub")}\n`);
    expect(value(await run(s, ["pwd"], { cwd: "sub" })).stdout).toBe(`${path.join(s.workspace, "sub")}\n`);
    expect(value(await run(s, ["pwd"])).stdout).toBe(`${s.workspace}\n`);
    expect(await run(s, ["pwd"], { cwd: "../" })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_PATH_ESCAPE" });
    expect(await run(s, ["pwd"], { cwd: "cwd://sub/../.." })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_PATH_ESCAPE" });
    expect(await run(s, ["pwd"], { cwd: "out" })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_PATH_ESCAPE" });
    expect(await run(s, ["pwd"], { cwd: "/etc" })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_PATH_INVALID" });
    expect(await run(s, ["pwd"], { cwd: "home://x" })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_PATH_INVALID" });
    expect(await run(s, ["pwd"], { cwd: "missing" })).toMatchObject({ ok: false, code: "ASTRID_ERR_NOT_FOUND" });
    expect(await run(s, ["pwd"], { cwd: "victim.txt" })).toMatchObject({ ok: false, code: "ASTRID_ERR_VFS_WRONG_TYPE" });
  });

  it("the environment is minimal: nothing of the daemon's (no ASTRID_*), HOME in the sandbox's /tmp", async () => {
    const env = value(await run(s, ["env"])).stdout as string;
    const names = env.trim().split("\n").map((l) => l.split("=")[0]).sort();
    // PWD is bubblewrap's (its --chdir).
    expect(names).toEqual(["HOME", "LANG", "PATH", "PWD", "TMPDIR"]);
    expect(env).toMatch(/^HOME=\/tmp$/m);
    expect(env).not.toMatch(/ASTRID/);
  });

  it("the sandbox hides $ASTRID_HOME, has no network but loopback, and a read-only workspace", async () => {
    const token = value(await run(s, ["cat", path.join(s.d.home, "run", "system.token")]));
    expect(token.exit_code).not.toBe(0);
    expect(token.stderr).toMatch(/No such file or directory/);
    expect(token.stdout).toBe("");
    const ls = value(await run(s, ["ls", s.d.home]));
    expect(ls.exit_code).not.toBe(0);
    const net = value(await run(s, ["cat", "/proc/net/dev"]));
    const interfaces = (net.stdout as string).split("\n").filter((l) => l.includes(":")).map((l) => l.split(":")[0]!.trim());
    expect(interfaces).toEqual(["lo"]);
    const write = value(await run(s, ["sh", "-c", "echo x > written.txt"]));
    expect(write.exit_code).not.toBe(0);
    expect(write.stderr).toMatch(/Read-only file system/);
    expect(fs.existsSync(path.join(s.workspace, "written.txt"))).toBe(false);
    // Its own /tmp is writable and empty at each start, but for the mount point of the workspace (which lies in /tmp
    // here): the daemon's home, beside it in the real /tmp, is not there.
    expect(value(await run(s, ["sh", "-c", "echo y > /tmp/f && cat /tmp/f"])).stdout).toBe("y\n");
    expect(value(await run(s, ["ls", "-A", "/tmp"])).stdout).toBe(`${path.basename(s.workspace)}\n`);
  });

  it("stdin is passed; output over 1 MB keeps its tail and says it was truncated", async () => {
    expect(value(await run(s, ["cat"], { stdin: "from stdin" })).stdout).toBe("from stdin");
    const big = value(await run(s, ["sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x; echo END; echo err >&2"]));
    expect(big.exit_code).toBe(0);
    expect(big.stdout_truncated).toBe(true);
    expect(big.stdout.length).toBe(1024 * 1024);
    expect(big.stdout.tail).toMatch(/xxxEND\n$/);
    expect(big).toMatchObject({ stderr: "err\n", stderr_truncated: false });
  });

  it("a run past its timeout is stopped, with what it printed; the daemon kept serving meanwhile", async () => {
    const started = Date.now();
    const pending = run(s, ["sh", "-c", `echo before; sleep ${SLEEP}30`], { timeout_ms: 800 });
    for (let i = 0; i < 3; i++) expect((await s.c.request("GetStatus")).status).toBe("Status");
    const r = value(await pending);
    expect(r).toMatchObject({ timed_out: true, exit_code: null, stdout: "before\n" });
    expect(["SIGTERM", "SIGKILL"]).toContain(r.signal);
    expect(Date.now() - started).toBeLessThan(6000);
    expect(pidsOf(`sleep ${SLEEP}30`)).toEqual([]);
  });

  it("spawn: logs while running, kill stops it; the 9th background process is refused; kill frees a place", async () => {
    const first = value(await ask(s, { op: "spawn", argv: ["sh", "-c", `echo started; echo oops >&2; sleep ${SLEEP}01`] }));
    expect(first).toEqual({ id: expect.any(String), pid: expect.any(Number) });
    const logs = await until(() => ask(s, { op: "logs", id: first.id }), (r) => r.ok && r.value.stdout === "started\n");
    expect(value(logs)).toMatchObject({ running: true, exit_code: null, stderr: "oops\n" });
    const ids = [first.id];
    for (let i = 1; i < 8; i++) ids.push(value(await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}01`] })).id);
    const ninth = await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}01`] });
    expect(ninth).toMatchObject({ ok: false, code: "ASTRID_ERR_PROCESS_LIMIT" });
    expect((ninth as { message: string }).message).toMatch(/8 background processes/);
    expect((await s.c.request("GetStatus")).status).toBe("Status");
    expect(value(await ask(s, { op: "kill", id: first.id }))).toBe(true);
    expect(value(await ask(s, { op: "logs", id: first.id }))).toMatchObject({ running: false, stdout: "started\n" });
    expect(value(await ask(s, { op: "kill", id: first.id }))).toBe(false);
    ids.push(value(await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}01`] })).id);
    for (const id of ids.slice(1)) expect(value(await ask(s, { op: "kill", id }))).toBe(true);
    await until(() => pidsOf(`sleep ${SLEEP}01`), (p) => p.length === 0);
    const spawned = auditTail(s.d).filter((e) => e.action.type === "host_process" && e.action.operation === "spawn");
    expect(spawned.length).toBeGreaterThanOrEqual(9);
    const exits = auditTail(s.d).filter((e) => e.action.type === "host_process" && e.action.operation === "exit" && e.action.id === first.id);
    expect(exits[0]).toMatchObject({ action: { stop_reason: "process.kill", duration_ms: expect.any(Number) } });
  });

  it("a process flooding its output keeps its last 1 MB; the daemon answers meanwhile", async () => {
    const flood = value(await ask(s, { op: "spawn", argv: ["sh", "-c", "yes flood"] }));
    const logs = value(await until(() => ask(s, { op: "logs", id: flood.id }), (r) => r.ok && r.value.stdout_truncated === true));
    // Read while it writes: the snapshot may begin and end inside a line.
    expect(logs.stdout).toMatchObject({ length: 1024 * 1024, tail: expect.stringMatching(/^[flod]*\n(flood\n)+[flod]*$/) });
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      expect((await s.c.request("GetStatus")).status).toBe("Status");
      latencies.push(performance.now() - t);
    }
    expect(Math.max(...latencies)).toBeLessThan(500);
    expect(value(await ask(s, { op: "kill", id: flood.id }))).toBe(true);
    expect(value(await ask(s, { op: "logs", id: flood.id }))).toMatchObject({ running: false });
  });

  it("env adds variables (LD_PRELOAD and the like refused, naming the key); a background stdin is written, closed, signalled", async () => {
    const r = value(await run(s, ["sh", "-c", "echo $GREETING"], { env: { GREETING: "hello" } }));
    expect(r.stdout).toBe("hello\n");
    const refused = await run(s, ["env"], { env: { LD_PRELOAD: "/tmp/x.so" } });
    expect(refused).toMatchObject({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID" });
    expect((refused as { message: string }).message).toContain("LD_PRELOAD");
    const { id } = value(await ask(s, { op: "spawn", argv: ["cat"], options: { keep_stdin_open: true, stdin: "first\n" } }));
    expect(value(await ask(s, { op: "write_stdin", id, data: Buffer.from("second\n").toString("base64"), encoding: "base64" }))).toBe(7);
    expect(value(await ask(s, { op: "close_stdin", id }))).toBe(true);
    await until(() => ask(s, { op: "state", id }), (st) => st.ok && st.value.running === false, 10_000);
    expect(value(await ask(s, { op: "logs", id }))).toMatchObject({ stdout: "first\nsecond\n", exit_code: 0 });
    expect(await ask(s, { op: "write_stdin", id, data: "late" })).toMatchObject({ ok: false, code: "ASTRID_ERR_PROCESS_STDIN_CLOSED" });
    expect(value(await ask(s, { op: "signal", id, signal: "term" }))).toBe(false);
    // A process started without keep_stdin_open has no stdin to write to.
    const closed = value(await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}1`] }));
    expect(await ask(s, { op: "write_stdin", id: closed.id, data: "x" })).toMatchObject({ ok: false, code: "ASTRID_ERR_PROCESS_STDIN_CLOSED" });
    expect(value(await ask(s, { op: "signal", id: closed.id, signal: "term" }))).toBe(true);
    // Inside bubblewrap the signal reaches the command, whose end bubblewrap reports as an exit code of 128 + 15.
    await until(() => ask(s, { op: "state", id: closed.id }), (st) => st.ok && st.value.running === false && st.value.exit_code === 143, 10_000);
  }, 60_000);

  it("the persistent tier from a JavaScript capsule: an id, status, read_since, drain, stop; a garbage id is not found", async () => {
    const started = value(await ask(s, { op: "spawn_persistent", argv: ["cat"], options: { keep_stdin_open: true, label: "js-cat" } }));
    expect(started.id).toMatch(/^[a-z2-7]{52}$/);
    expect(value(await ask(s, { op: "write_stdin", id: started.id, data: "hi\n" }))).toBe(3);
    const chunk = await until(() => ask(s, { op: "read_since", id: started.id, stream: "stdout", max: 1024 }), (r) => r.ok && r.value.data !== "", 10_000);
    expect(Buffer.from(value(chunk).data, "base64").toString()).toBe("hi\n");
    expect(value(await ask(s, { op: "drain", id: started.id }))).toMatchObject({ stdout: "hi\n", running: true });
    // (The fixture's answer turns a list into an object of its items.)
    expect(Object.values(value(await ask(s, { op: "list" }))).map((p: any) => p.label)).toContain("js-cat");
    expect(Object.values(value(await ask(s, { op: "status", ids: [started.id, "nope"] })))).toHaveLength(1);
    expect(value(await ask(s, { op: "stop", id: started.id, grace: 200 }))).toMatchObject({ signal: expect.any(String) });
    expect(await ask(s, { op: "drain", id: started.id })).toMatchObject({ ok: false, code: "ASTRID_ERR_NOT_FOUND" });
    expect(await ask(s, { op: "drain", id: "x".repeat(52) })).toMatchObject({ ok: false, code: "ASTRID_ERR_NOT_FOUND" });
  }, 60_000);

  it("processes die with the daemon: a spawned sleep is gone once the daemon stops", async () => {
    const r = value(await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}02`] }));
    await until(() => pidsOf(`sleep ${SLEEP}02`), (p) => p.length >= 1);
    expect(alive(r.pid)).toBe(true);
    await stopDaemon(s);
    await until(() => pidsOf(`sleep ${SLEEP}02`), (p) => p.length === 0, 5000);
    expect(alive(r.pid)).toBe(false);
  });
});

describe("a daemon killed with SIGKILL (bubblewrap)", () => {
  it("takes its sandboxed processes with it (--die-with-parent)", async () => {
    const s = await boot();
    value(await ask(s, { op: "spawn", argv: ["sleep", `${SLEEP}08`] }));
    await until(() => pidsOf(`sleep ${SLEEP}08`), (p) => p.length >= 1);
    s.d.child.kill("SIGKILL");
    await s.d.exited;
    await until(() => pidsOf(`sleep ${SLEEP}08`), (p) => p.length === 0, 5000);
    await s.c.close().catch(() => undefined);
  }, 30_000);
});

describe("a home inside the workspace (bubblewrap)", () => {
  it("is covered: the workspace is visible, the home in it is empty", async () => {
    const s = await boot({}, {}, true);
    try {
      const r = value(await run(s, ["sh", "-c", "cat victim.txt; echo; ls -A astrid-home; cat astrid-home/run/system.token"]));
      expect(r.stdout).toBe("still here\n");
      expect(r.stderr).toMatch(/No such file or directory/);
      expect(r.stdout + r.stderr).not.toContain(s.d.token);
    } finally {
      await stopDaemon(s);
    }
  }, 30_000);
});

describe("with ASTRID_PROCESS_SANDBOX=none", () => {
  let s: Setup;
  beforeAll(async () => {
    s = await boot({ ASTRID_PROCESS_SANDBOX: "none" });
  }, 60_000);
  afterAll(async () => {
    if (s && s.d.child.exitCode === null) await stopDaemon(s);
  });

  it("still runs, unsandboxed (audited as such), with HOME in the principal's scratch directory", async () => {
    const r = value(await run(s, ["sh", "-c", "echo $HOME; cat /proc/net/dev | grep -c :"]));
    const [home] = (r.stdout as string).split("\n");
    expect(home).toBe(path.join(s.d.home, "home", "default", ".local", "tmp"));
    expect(daemonLog(s.d.home)).toMatch(/ASTRID_PROCESS_SANDBOX=none/);
    const entry = auditTail(s.d).reverse().find((e) => e.action.type === "host_process" && e.action.operation === "run");
    expect(entry).toMatchObject({ action: { sandbox: "none", exit_code: 0 } });
    expect(value(await run(s, ["env"])).stdout).not.toMatch(/ASTRID/);
  });

  it("a process that ignores SIGTERM is killed 2 s after its timeout", async () => {
    const started = Date.now();
    const r = value(await run(s, ["sh", "-c", `trap '' TERM; echo trapped; sleep ${SLEEP}03`], { timeout_ms: 300 }));
    expect(r).toMatchObject({ timed_out: true, signal: "SIGKILL", stdout: "trapped\n" });
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(2000);
    expect(took).toBeLessThan(6000);
    await until(() => pidsOf(`sleep ${SLEEP}03`), (p) => p.length === 0, 3000);
  });

  it("a capsule's processes end with its run (a reload), its children too", async () => {
    value(await ask(s, { op: "spawn", argv: ["sh", "-c", `sleep ${SLEEP}04 & sleep ${SLEEP}05`] }));
    await until(() => pidsOf(`sleep ${SLEEP}0`), (p) => p.length >= 2);
    fs.appendFileSync(path.join(s.workspace, ".astrid", "capsules", "proc-user", "index.js"), "\n// changed\n");
    await s.c.request("ReloadCapsules");
    await until(() => [...pidsOf(`sleep ${SLEEP}04`), ...pidsOf(`sleep ${SLEEP}05`)], (p) => p.length === 0, 10_000);
    await until(() => s.c.request("GetCapsuleMetadata").then((m) => (m.data as Array<{ name: string; state: string }>).find((x) => x.name === "proc-user")?.state), (st) => st === "ready");
  });

  it("a persistent process is refused without the sandbox (ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED)", async () => {
    expect(await ask(s, { op: "spawn_persistent", argv: ["sleep", `${SLEEP}3`] })).toMatchObject({ ok: false, code: "ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED" });
  });

  it("processes die with the daemon, including what they started", async () => {
    const r = value(await ask(s, { op: "spawn", argv: ["sh", "-c", `sleep ${SLEEP}06 & sleep ${SLEEP}07`] }));
    await until(() => [pidsOf(`sleep ${SLEEP}06`).length, pidsOf(`sleep ${SLEEP}07`).length], (p) => p[0]! >= 1 && p[1]! >= 1);
    await stopDaemon(s);
    await until(() => [...pidsOf(`sleep ${SLEEP}06`), ...pidsOf(`sleep ${SLEEP}07`)], (p) => p.length === 0, 5000);
    expect(alive(r.pid)).toBe(false);
  });
});
