/**
 * astrid:process/host from a WebAssembly guest, against the real daemon (default sandbox: bubblewrap): `env` on a
 * spawn (and the refused names), background processes with stdin, signals, waits and pollables woken by the kernel,
 * and the persistent tier — found again after a hot reload, owner-checked (another capsule's guess is
 * no-such-process), bounded (registry-full, rings, lifetime, idle), audited without its id or stdin, and gone with
 * the daemon. The guest (spec/fixtures/wasm/process-guest.js) is built with ComponentizeJS into a temp directory;
 * two capsules run it under different names.
 */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const SOURCES = path.join(ROOT, "spec", "fixtures", "wasm");
/** In every command line these tests start, so their processes are found in /proc (and no other run's are). */
const MARK = `m${String(Math.floor(Math.random() * 1e9))}`;

type Reply = { ok: true; value: any } | { ok: false; err: string };

let d: RunningDaemon;
let c: DaemonClient;
let built: string;
let root: string;
const received: IpcMessage[] = [];

const CAPABILITIES = [
  'ipc_subscribe = ["user.v1.prompt", "wasm.v1.never"]',
  'ipc_publish = ["agent.v1.response"]',
  'host_process = ["printenv", "cat", "sh", "sleep", "echo", "yes"]',
].join("\n");

function capsuleToml(name: string, extra = ""): string {
  return `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "guest.wasm"\n\n[capabilities]\n${CAPABILITIES}\n\n[env.NAME]\ntype = "text"\ndefault = "${name}"\n${extra}`;
}

function wasmCapsule(name: string): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), capsuleToml(name));
  fs.copyFileSync(path.join(built, "process.wasm"), path.join(dir, "guest.wasm"));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: fs.readFileSync(path.join(built, "process.hash"), "utf8") }));
}

/** Pids of live processes whose command line contains `needle` (scanning /proc, so a sandbox's processes too). */
function pidsOf(needle: string): number[] {
  const found: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
      const state = fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]?.[0];
      // Not bubblewrap itself (its argv holds the command too): the command it runs.
      if (cmdline.includes(needle) && state !== "Z" && !cmdline.includes("jest") && path.basename(cmdline.split(" ")[0]!) !== "bwrap") found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** The /proc state letter of a pid (R, S, T, …). */
const procState = (pid: number) => fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];

function auditTail(): AuditEntry[] {
  const r = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "5000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 60_000 });
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** The daemon's resident memory in MiB. */
function daemonRssMiB(): number {
  const line = fs.readFileSync(`/proc/${d.child.pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) / 1024;
}

let sessions = 0;
/** Sends a command to capsule `to`; resolves with its reply (and how long it took). */
async function ask(cmd: Record<string, unknown>, to = "wasm-proc", timeoutMs = 30_000, client = c, inbox = received): Promise<Reply & { ms: number }> {
  const session = `wp${++sessions}`;
  const started = performance.now();
  client.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to, ...cmd }), session_id: session });
  const reply = await until(async () => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, timeoutMs);
  return { ...(JSON.parse(String(reply!.payload.text)) as Reply), ms: performance.now() - started };
}
const value = (r: Reply) => {
  if (!r.ok) throw new Error(`expected success, got ${r.err}`);
  return r.value;
};
const err = (r: Reply) => (r.ok ? `ok: ${JSON.stringify(r.value)}` : r.err.split("(")[0]);

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, ["--import", path.join(SOURCES, "register.mjs"), path.join(SOURCES, "build-process.mjs"), built], { stdio: "pipe", timeout: 240_000 });
  const workspace = tempHome();
  root = path.join(workspace, ".astrid", "capsules");
  wasmCapsule("wasm-proc");
  wasmCapsule("wasm-other");
  const home = tempHome();
  fs.mkdirSync(path.join(home, "etc", "profiles"), { recursive: true });
  fs.writeFileSync(path.join(home, "etc", "profiles", "wp-bob.toml"), 'grants = ["self:process:run"]\n');
  d = await spawnDaemon({ home, args: ["--workspace", workspace], env: { ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000" } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  const metadata = async () => Object.fromEntries(((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));
  await until(metadata, (m) => m["wasm-proc"] === "ready" && m["wasm-other"] === "ready", 120_000);
}, 400_000);

afterAll(async () => {
  await c?.close().catch(() => undefined);
  if (d && d.child.exitCode === null) {
    d.child.kill("SIGTERM");
    await d.exited;
  }
  await cleanup();
});

describe("env on spawn requests", () => {
  it("passes the variables a request adds, beside the fixed ones, and nothing of the daemon's", async () => {
    const r = value(await ask({ op: "run", cmd: "printenv", env: { GREETING: "hi there", lc_mine: "x" } }));
    expect(r.exit.exitCode).toBe(0);
    const vars = Object.fromEntries(String(r.stdout).trim().split("\n").map((l: string) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    expect(vars).toMatchObject({ GREETING: "hi there", lc_mine: "x", HOME: "/tmp", LANG: "C.UTF-8" });
    expect(Object.keys(vars).filter((k) => k.startsWith("ASTRID_"))).toEqual([]);
  });

  it("refuses loader, interpreter and kernel variables by name (any case) with invalid-input, before anything runs", async () => {
    for (const key of ["LD_PRELOAD", "ld_preload", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "NODE_OPTIONS", "PATH", "HOME", "BASH_ENV", "GIT_SSH_COMMAND", "GIT_CONFIG_COUNT", "ASTRID_HOME", "GLIBC_TUNABLES"]) {
      expect([key, err(await ask({ op: "run", cmd: "printenv", env: { [key]: "/tmp/evil.so" } }))]).toEqual([key, "invalid-input"]);
    }
    // Not a variable name at all.
    expect(err(await ask({ op: "run", cmd: "printenv", env: { "A=B": "1" } }))).toBe("invalid-input");
    expect(err(await ask({ op: "bg", name: "envbg", cmd: "sleep", args: ["1"], env: { LD_PRELOAD: "x" } }))).toBe("invalid-input");
    expect(err(await ask({ op: "persist", cmd: "sleep", args: ["1"], env: { LD_AUDIT: "x" } }))).toBe("invalid-input");
  });

  it("bounds the count and the size: 65 variables, a 40 KiB value, 200 KiB in all are invalid-input; 64 small ones pass", async () => {
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "x"]));
    expect(err(await ask({ op: "run", cmd: "printenv", env: many }))).toBe("invalid-input");
    expect(err(await ask({ op: "run", cmd: "printenv", env: { BIG: "x".repeat(40 * 1024) } }))).toBe("invalid-input");
    const wide = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`W${i}`, "y".repeat(25 * 1024)]));
    expect(err(await ask({ op: "run", cmd: "printenv", env: wide }))).toBe("invalid-input");
    const ok = value(await ask({ op: "run", cmd: "printenv", args: ["V63"], env: Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`V${i}`, `v${i}`])) }));
    expect(ok.stdout).toBe("v63\n");
  });
});

/** Appends a comment to a capsule's manifest: the daemon's watcher reloads it (a new run of the same capsule). */
async function hotReload(name: string): Promise<void> {
  const file = path.join(root, name, "Capsule.toml");
  fs.appendFileSync(file, `# reload ${Date.now()}\n`);
  // The new run is up when a handle of the old one is unknown to it.
  await until(() => ask({ op: "bg.pid", name: "nothing-here" }, name, 5000).catch(() => null), (r) => r !== null && !r.ok && r.err.startsWith("thrown"), 120_000);
}

describe("background processes: stdin, signals, waits, pollables", () => {
  it("write-stdin answers the bytes taken; close-stdin ends a reader; afterwards writes, signals and os-pid are closed", async () => {
    expect(value(await ask({ op: "bg", name: "cat1", cmd: "cat" }))).toBeGreaterThan(0);
    expect(value(await ask({ op: "bg.write", name: "cat1", text: "hello\n" }))).toBe(6);
    // subscribe-logs: ready once output arrived that read-logs has not shown.
    expect(value(await ask({ op: "bg.block", name: "cat1", kind: "logs" }))).toMatchObject({ after: true });
    expect(value(await ask({ op: "bg.logs", name: "cat1" }))).toMatchObject({ stdout: "hello\n", running: true });
    expect(value(await ask({ op: "bg.write", name: "cat1", text: "again\n" }))).toBe(6);
    expect(value(await ask({ op: "bg.close", name: "cat1" }))).toBe("ok");
    expect(value(await ask({ op: "bg.wwo", name: "cat1", ms: 5000 }))).toEqual({ stdout: "hello\nagain\n", stderr: "", exit: { exitCode: 0 } });
    expect(err(await ask({ op: "bg.write", name: "cat1", text: "late\n" }))).toBe("closed");
    expect(err(await ask({ op: "bg.signal", name: "cat1", sig: "term" }))).toBe("closed");
    expect(err(await ask({ op: "bg.pid", name: "cat1" }))).toBe("closed");
    // More than 1 MiB in one write: too-large, before it reaches the kernel.
    expect(value(await ask({ op: "bg", name: "cat2", cmd: "cat" }))).toBeGreaterThan(0);
    expect(err(await ask({ op: "bg.write", name: "cat2", size: 1024 * 1024 + 1 }))).toBe("too-large");
    expect(value(await ask({ op: "bg.kill", name: "cat2" }))).toMatchObject({ killed: true });
  }, 60_000);

  it("signal reaches the command inside the sandbox: usr1 is trapped, stop pauses it, cont resumes it, term ends it", async () => {
    const script = `trap 'echo usr1' USR1; trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done; : ${MARK}-sig`;
    expect(value(await ask({ op: "bg", name: "sig1", cmd: "sh", args: ["-c", script] }))).toBeGreaterThan(0);
    await until(() => ask({ op: "bg.logs", name: "sig1" }), (r) => r.ok && String(r.value.stdout).includes("ready"), 10_000);
    expect(value(await ask({ op: "bg.signal", name: "sig1", sig: "usr1" }))).toBe("ok");
    await until(() => ask({ op: "bg.logs", name: "sig1" }), (r) => r.ok && String(r.value.stdout).includes("usr1"), 10_000);
    const [shell] = pidsOf(`${MARK}-sig`).filter((pid) => path.basename(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]!) === "sh");
    expect(shell).toBeDefined();
    expect(value(await ask({ op: "bg.signal", name: "sig1", sig: "stop" }))).toBe("ok");
    await until(async () => procState(shell!), (st) => st === "T", 5000);
    expect(value(await ask({ op: "bg.signal", name: "sig1", sig: "cont" }))).toBe("ok");
    await until(async () => procState(shell!), (st) => st !== "T", 5000);
    expect(value(await ask({ op: "bg.signal", name: "sig1", sig: "term" }))).toBe("ok");
    const end = value(await ask({ op: "bg.wwo", name: "sig1", ms: 10_000 }));
    expect(end.exit).toEqual({ exitCode: 7 });
    expect(end.stdout).toMatch(/^ready\n(usr1\n)+term\n$/);
  }, 60_000);

  it("poll over several pollables answers the ready ones, woken by the kernel (well inside the 5 s look interval)", async () => {
    value(await ask({ op: "bg", name: "long", cmd: "sh", args: ["-c", `sleep 30; : ${MARK}-long`] }));
    value(await ask({ op: "bg", name: "short", cmd: "sleep", args: ["0.5"] }));
    const exited = await ask({ op: "poll", items: [["long", "exit"], ["short", "exit"]], sub: true });
    expect(value(exited)).toEqual([1]);
    expect(exited.ms).toBeLessThan(3000);
    value(await ask({ op: "bg", name: "printer", cmd: "sh", args: ["-c", `sleep 0.5; echo hi; sleep 30; : ${MARK}-printer`] }));
    const printed = await ask({ op: "poll", items: [["long", "exit"], ["printer", "logs"]] });
    expect(value(printed)).toEqual([1]);
    expect(printed.ms).toBeLessThan(3000);
    // Both ready at once: both indices.
    value(await ask({ op: "bg.kill", name: "long" }));
    expect(value(await ask({ op: "poll", items: [["long", "exit"], ["printer", "logs"], ["short", "exit"]] }))).toEqual([0, 1, 2]);
    value(await ask({ op: "bg.kill", name: "printer" }));
  }, 60_000);

  it("a capsule reloading while its guest blocks in wait, then in poll: the run ends at once, its processes go", async () => {
    value(await ask({ op: "bg", name: "u1", cmd: "sh", args: ["-c", `sleep 60; : ${MARK}-u1`] }));
    void ask({ op: "bg.wait", name: "u1", ms: 60_000 }, "wasm-proc", 5000).catch(() => null);
    await sleep(1000);
    const started = performance.now();
    await hotReload("wasm-proc");
    expect(performance.now() - started).toBeLessThan(30_000);
    await until(async () => pidsOf(`${MARK}-u1`), (p) => p.length === 0, 10_000);
    value(await ask({ op: "bg", name: "u2", cmd: "sh", args: ["-c", `sleep 60; : ${MARK}-u2`] }));
    void ask({ op: "poll", items: [["u2", "exit"]] }, "wasm-proc", 5000).catch(() => null);
    await sleep(1000);
    await hotReload("wasm-proc");
    await until(async () => pidsOf(`${MARK}-u2`), (p) => p.length === 0, 10_000);
  }, 300_000);
});

describe("the persistent tier", () => {
  const repl = `echo started; while read l; do echo "got:$l"; done; echo bye; exit 3; : ${MARK}-repl`;
  let id = "";

  it("spawn-persistent hands out an opaque id; status, list, write-stdin, read-since (non-draining) and read-logs (draining)", async () => {
    id = value(await ask({ op: "persist", cmd: "sh", args: ["-c", repl], keep: true, label: `repl\u0007-${MARK}` }));
    expect(id).toMatch(/^[a-z2-7]{52}$/);
    const info = value(await ask({ op: "status", id }));
    expect(info).toMatchObject({ id, label: `repl-${MARK}`, phase: "running", stdinOpen: true });
    expect(info.osPid).toBeGreaterThan(0);
    expect(value(await ask({ op: "write", id, text: "one\n" }))).toBe(4);
    const first = await until(() => ask({ op: "since", id }), (r) => r.ok && r.value.data === "started\ngot:one\n", 10_000);
    const again = value(await ask({ op: "since", id }));
    expect(again.data).toBe("started\ngot:one\n");
    const after = value(await ask({ op: "since", id, token: value(first).next }));
    expect(after).toMatchObject({ data: "", dropped: 0, eof: false });
    expect(value(await ask({ op: "logs", id }))).toMatchObject({ stdout: "started\ngot:one\n", running: true });
    expect(value(await ask({ op: "logs", id }))).toMatchObject({ stdout: "", running: true });
    const listed = value(await ask({ op: "list" }));
    expect(listed.map((p: { id: string }) => p.id)).toContain(id);
    expect(value(await ask({ op: "list", filter: "no-such-label" }))).toEqual([]);
    expect(value(await ask({ op: "status-many", ids: [id, "a".repeat(52), "garbage"] })).map((p: { id: string }) => p.id)).toEqual([id]);
  }, 60_000);

  it("another capsule guessing (or holding) the id gets no-such-process for every call, like a garbage id", async () => {
    for (const op of ["status", "write", "close", "logs", "since", "stop"]) {
      expect([op, err(await ask({ op, id, text: "x\n", sig: "term", ms: 100 }, "wasm-other"))]).toEqual([op, "no-such-process"]);
    }
    expect(err(await ask({ op: "signal", id, sig: "term" }, "wasm-other"))).toBe("no-such-process");
    expect(err(await ask({ op: "wait", id, ms: 100 }, "wasm-other"))).toBe("no-such-process");
    expect(value(await ask({ op: "list" }, "wasm-other"))).toEqual([]);
    expect(err(await ask({ op: "status", id: "abc" }))).toBe("no-such-process");
    expect(err(await ask({ op: "status", id: id.replace(/.$/, (ch) => (ch === "a" ? "b" : "a")) }))).toBe("no-such-process");
    // release is idempotent (an unknown id is released already), and it did not release another's.
    expect(value(await ask({ op: "release", id }, "wasm-other"))).toBe("ok");
    // It is still there for its owner, untouched.
    expect(value(await ask({ op: "status", id }))).toMatchObject({ phase: "running" });
  }, 60_000);

  it("another principal, through the same capsule, gets no-such-process for the id, and lists only its own", async () => {
    const bob = await connectAs(d, "wp-bob");
    const inbox: IpcMessage[] = [];
    bob.on("message", (m: IpcMessage) => inbox.push(m));
    try {
      const asBob = (cmd: Record<string, unknown>) => ask(cmd, "wasm-proc", 30_000, bob, inbox);
      expect(err(await asBob({ op: "status", id }))).toBe("no-such-process");
      expect(err(await asBob({ op: "write", id, text: "bob\n" }))).toBe("no-such-process");
      expect(err(await asBob({ op: "signal", id, sig: "term" }))).toBe("no-such-process");
      const own = value(await asBob({ op: "persist", cmd: "sleep", args: ["30"], label: "bobs" }));
      expect(value(await asBob({ op: "list" })).map((p: { id: string }) => p.id)).toEqual([own]);
      expect(value(await ask({ op: "list" })).map((p: { id: string }) => p.id)).not.toContain(own);
      expect(err(await ask({ op: "stop", id: own }))).toBe("no-such-process");
      value(await asBob({ op: "stop", id: own, grace: 100 }));
    } finally {
      await bob.close();
    }
    expect(value(await ask({ op: "status", id }))).toMatchObject({ phase: "running" });
  }, 60_000);

  it("survives a hot reload of its capsule: the new run finds it by id, writes, closes, waits; then exited, released, gone", async () => {
    await hotReload("wasm-proc");
    expect(value(await ask({ op: "status", id }))).toMatchObject({ phase: "running", stdinOpen: true });
    expect(value(await ask({ op: "write", id, text: "two\n" }))).toBe(4);
    expect(value(await ask({ op: "close", id }))).toBe("ok");
    expect(value(await ask({ op: "wait", id, ms: 10_000 }))).toEqual({ exitCode: 3 });
    const tail = await until(() => ask({ op: "since", id, max: 1 << 20 }), (r) => r.ok && r.value.eof === true, 10_000);
    expect(value(tail).data).toBe("started\ngot:one\ngot:two\nbye\n");
    expect(value(await ask({ op: "status", id }))).toMatchObject({ phase: "exited", exit: { exitCode: 3 }, stdinOpen: false });
    expect(err(await ask({ op: "write", id, text: "late\n" }))).toBe("closed");
    expect(value(await ask({ op: "release", id }))).toBe("ok");
    expect(err(await ask({ op: "status", id }))).toBe("no-such-process");
    expect(err(await ask({ op: "signal", id, sig: "term" }))).toBe("no-such-process");
    expect(err(await ask({ op: "write", id, text: "x" }))).toBe("no-such-process");
    // Idempotent.
    expect(value(await ask({ op: "release", id }))).toBe("ok");
  }, 200_000);

  it("release refuses a running process; stop sends SIGTERM (SIGKILL after the grace) and forgets the id", async () => {
    const sleeper = value(await ask({ op: "persist", cmd: "sh", args: ["-c", `sleep 30; : ${MARK}-stop`] }));
    expect(err(await ask({ op: "release", id: sleeper }))).toBe("invalid-input");
    const stopped = value(await ask({ op: "stop", id: sleeper, grace: 500 }));
    expect(stopped.exitCode ?? stopped.signal).toBeDefined();
    expect(err(await ask({ op: "status", id: sleeper }))).toBe("no-such-process");
    await until(async () => pidsOf(`${MARK}-stop`), (p) => p.length === 0, 5000);
  }, 60_000);

  it("lifetime and idle deadlines: a process past max-lifetime is stopped (and kept, exited); an untouched one is reaped", async () => {
    const short = value(await ask({ op: "persist", cmd: "sh", args: ["-c", `sleep 30; : ${MARK}-life`], life: 800 }));
    const idle = value(await ask({ op: "persist", cmd: "sh", args: ["-c", `sleep 30; : ${MARK}-idle`], idle: 800 }));
    await sleep(3500);
    expect(value(await ask({ op: "status", id: short }))).toMatchObject({ phase: "exited" });
    expect(err(await ask({ op: "status", id: idle }))).toBe("no-such-process");
    expect(pidsOf(`${MARK}-life`)).toEqual([]);
    expect(pidsOf(`${MARK}-idle`)).toEqual([]);
    expect(value(await ask({ op: "release", id: short }))).toBe("ok");
    expect(err(await ask({ op: "persist", cmd: "sleep", args: ["1"], idle: 0 }))).toBe("invalid-input");
  }, 60_000);

  it("registry-full past 8 kept per capsule and principal (exited ones count until released)", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) ids.push(value(await ask({ op: "persist", cmd: "echo", args: [`${i}`] }, "wasm-other")));
    expect(err(await ask({ op: "persist", cmd: "echo", args: ["9"] }, "wasm-other"))).toBe("registry-full");
    // Another capsule has its own room.
    const mine = value(await ask({ op: "persist", cmd: "echo", args: ["mine"] }));
    await until(() => ask({ op: "status", id: ids[0] }, "wasm-other"), (r) => r.ok && r.value.phase === "exited", 10_000);
    expect(value(await ask({ op: "release", id: ids[0] }, "wasm-other"))).toBe("ok");
    ids.push(value(await ask({ op: "persist", cmd: "echo", args: ["9"] }, "wasm-other")));
    for (const one of ids.slice(1)) {
      await until(() => ask({ op: "status", id: one }, "wasm-other"), (r) => r.ok && r.value.phase === "exited", 10_000);
      expect(value(await ask({ op: "release", id: one }, "wasm-other"))).toBe("ok");
    }
    await until(() => ask({ op: "status", id: mine }), (r) => r.ok && r.value.phase === "exited", 10_000);
    value(await ask({ op: "release", id: mine }));
  }, 120_000);

  it("a process flooding stdout: the ring stays bounded (bytes-dropped counted), the daemon's memory stays flat; backpressure drops nothing", async () => {
    const rssBefore = daemonRssMiB();
    const flood = value(await ask({ op: "persist", cmd: "sh", args: ["-c", `yes ${MARK}-flood`], ring: 4096 }));
    await sleep(3000);
    const info = value(await ask({ op: "status", id: flood }));
    expect(info.bufferedBytes).toBeLessThanOrEqual(2 * 4096);
    expect(info.bytesDropped).toBeGreaterThan(10 * 1024 * 1024);
    const chunk = value(await ask({ op: "since", id: flood, max: 1 << 20 }));
    expect(chunk.size).toBeLessThanOrEqual(4096);
    expect(chunk.dropped).toBeGreaterThan(0);
    expect(daemonRssMiB() - rssBefore).toBeLessThan(150);
    value(await ask({ op: "stop", id: flood, grace: 100 }));

    const held = value(await ask({ op: "persist", cmd: "sh", args: ["-c", `yes ${MARK}-held`], ring: 4096, overflow: "backpressure" }));
    await sleep(1500);
    const heldInfo = value(await ask({ op: "status", id: held }));
    expect(heldInfo.bytesDropped).toBe(0);
    expect(heldInfo.bufferedBytes).toBeLessThanOrEqual(4096 + 64 * 1024);
    // Reading lets it go on, still without a loss.
    let token: string | undefined;
    let total = 0;
    for (let i = 0; i < 5; i++) {
      const part = value(await ask({ op: "since", id: held, token, max: 1 << 20 }));
      expect(part.dropped).toBe(0);
      total += part.size;
      token = part.next;
    }
    expect(total).toBeGreaterThan(4096);
    value(await ask({ op: "stop", id: held, grace: 100 }));
  }, 90_000);

  it("attach and watch are not offered (unknown), as in the reference", async () => {
    expect(err(await ask({ op: "attach", id: "a".repeat(52) }))).toBe("unknown");
    expect(err(await ask({ op: "watch", id: "a".repeat(52) }))).toBe("unknown");
  });

  it("is audited with a hash of the id: never the id, the env, stdin or output", async () => {
    const secretId = value(await ask({ op: "persist", cmd: "cat", keep: true, env: { TOKEN_LIKE: `env-${MARK}` } }));
    value(await ask({ op: "write", id: secretId, text: `stdin-${MARK}\n` }));
    await until(() => ask({ op: "since", id: secretId }), (r) => r.ok && String(r.value.data).includes("stdin-"), 10_000);
    value(await ask({ op: "stop", id: secretId, grace: 100 }));
    await sleep(1500);
    const entries = auditTail().filter((e) => e.action.type === "host_process" && (e.action as { tier?: string }).tier === "persistent");
    const ops = entries.map((e) => String(e.action.operation));
    expect(ops).toEqual(expect.arrayContaining(["spawn", "write_stdin", "read_since", "stop", "exit", "status", "list", "release", "reap"]));
    expect(entries.every((e) => typeof (e.action as { id_hash?: unknown }).id_hash === "string" || ["list", "status"].includes(String(e.action.operation)))).toBe(true);
    const text = JSON.stringify(auditTail());
    expect(text).not.toContain(secretId);
    expect(text).not.toContain(`env-${MARK}`);
    expect(text).not.toContain(`stdin-${MARK}`);
  }, 60_000);

  it("goes with the daemon: a stop leaves no persistent process behind", async () => {
    value(await ask({ op: "persist", cmd: "sh", args: ["-c", `sleep 60; : ${MARK}-last`] }));
    expect(pidsOf(`${MARK}-last`).length).toBeGreaterThan(0);
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    await until(async () => pidsOf(MARK), (p) => p.length === 0, 10_000);
  }, 60_000);
});
