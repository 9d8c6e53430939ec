/**
 * What capsule confinement (SES `lockdown()` in every capsule worker, the capsule's modules evaluated in a
 * Compartment from sources the kernel passes in) costs, in the same run, in alternating rounds:
 * 1. RSS per idle capsule worker: (daemon RSS with 16 idle capsules − with none) / 16, confined vs unconfined
 *    (`ASTRID_TEST_UNCONFINED_CAPSULES`, the worker imports the file natively; lockdown still runs), beside a bare
 *    `new Worker()` in a tiny node process (RSS delta / 16). Target: confined ≤ 2.5 × unconfined.
 * 2. Spawn → ready per capsule: (boot to ready with 16 capsules − with none) / 16, the same three ways (bare:
 *    16 workers started at once until each posted its first message, / 16). Target: confined ≤ 3 × unconfined.
 * 3. Boot to ready with 16 confined capsules, median ms (for the record).
 * 4. The chat path with confinement on: bench/chat-path run as it is (a child process), its daemon/raw ratio
 *    against the target ≥ 0.45.
 *
 *   node dist/bench/confinement.js [--rounds 5] [--capsules 16] [--chat-seconds 2] [--chat-rounds 3] [--no-chat] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import { count, flag, median, option, sleep } from "./bench-options";
import { rssBytes, settle, stopChild } from "./processes";
import { emitRows, rateRow, timeRow } from "./bench-table";


const ROUNDS = count("confinement", "rounds", 5);
const CAPSULES = count("confinement", "capsules", 16);
const CHAT_SECONDS = count("confinement", "chat-seconds", 2);
const CHAT_ROUNDS = count("confinement", "chat-rounds", 3);
const CHAT = !flag("no-chat");
const JSON_OUT = flag("json");

const RSS_TARGET = 2.5;
const SPAWN_TARGET = 3;
const CHAT_TARGET = 0.45;
/** Deadlines: a boot (all capsules up), a tiny worker process. */
const BOOT_DEADLINE_MS = 60_000;
const TINY_DEADLINE_MS = 60_000;
/**
 * The chat-path child: 3 × its expected length (2 client counts × 3 servers × rounds × (seconds + warm-up and
 * connects), plus its boots). Its closed loop has no deadline of its own: a prompt never answered stalls it forever.
 */
const CHAT_DEADLINE_MS = 3 * (2 * 3 * CHAT_ROUNDS * (CHAT_SECONDS + 0.5) + 20) * 1000;
/** A capsule publish the kernel refused for its rate, as the daemon logs it (syscall-gate.ts). */
const REFUSED_PUBLISH = /ipc\.publish: [\w.-]+ may publish at most \d+ [a-z ]+ per second/;
const STOP_GRACE_MS = 15_000;
/** Where the benches' temp dirs live; the only dirs this bench ever removes for the chat-path child. */
const TMP_PREFIX = "/tmp/astrid-bench-";

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const CHAT_PATH = path.join(__dirname, "chat-path.js");
const LOCKDOWN = path.join(DIST, "capsule-host", "lockdown.js");
const CLI_CAPSULE = path.join(ROOT, "capsules", "astrid-capsule-cli");

/** The idle capsule: CommonJS, subscribes and would answer prompts, but is never sent one. */
const CAPSULE_SOURCE = `// Idle bench capsule: answers prompts, is never sent one.
module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (event) =>
      api.ipc.publish("agent.v1.response", { type: "agent_response", text: "ok", is_final: true, session_id: event.payload.session_id }));
  },
};
`;

function manifest(name: string): string {
  return `[package]\nname = "${name}"\nversion = "1.0.0"\ndescription = "confinement bench capsule"\n\n` +
    `[[component]]\nfile = "index.js"\n\n[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response"]\n`;
}

const capsuleName = (i: number) => `idle-${String(i).padStart(2, "0")}`;

/**
 * The tiny process of the bare-worker baseline: RSS before, `n` workers started at once (each posts one message,
 * then idles on its port), the time until all have posted, RSS after. With `lockdown` set each worker first runs
 * the capsule worker's own lockdown module. Both RSS reads wait until the process's CPU is quiet, as the daemon's do.
 */
const TINY = String.raw`
const { Worker } = require("node:worker_threads");
const fs = require("node:fs");
const { n, lockdown } = JSON.parse(process.argv[1]);
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync("/proc/self/status", "utf8"))[1]) * 1024;
const cpu = () => { const f = fs.readFileSync("/proc/self/stat", "utf8").split(") ")[1].split(" "); return Number(f[11]) + Number(f[12]); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function quiet() {
  const deadline = Date.now() + 10000;
  let last = cpu();
  for (let still = 0; still < 2 && Date.now() < deadline;) { await sleep(100); const now = cpu(); still = now === last ? still + 1 : 0; last = now; }
}
const body = (lockdown ? "require(" + JSON.stringify(lockdown) + ");\n" : "") +
  "const { parentPort } = require('node:worker_threads'); parentPort.on('message', () => {}); parentPort.postMessage('ready');";
(async () => {
  await quiet();
  const before = rss();
  const workers = [];
  const t = process.hrtime.bigint();
  await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const w = new Worker(body, { eval: true });
    workers.push(w);
    w.once("message", resolve);
    w.once("error", reject);
    w.once("exit", (code) => reject(new Error("worker exited with " + code)));
  })));
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await quiet();
  const after = rss();
  process.stdout.write(JSON.stringify({ before, after, ms }));
  await Promise.all(workers.map((w) => w.terminate()));
})().catch((err) => { console.error(err); process.exit(1); });
`;

// ---------------------------------------------------------------------------------------------------------------
// Ownership: everything this run creates is removed and stopped by `cleanup`, on success, error or signal alike.

const ownedDirs = new Set<string>();
const ownedChildren = new Set<ChildProcess>();
/** Process groups of detached children (chat-path) whose own children (daemons) may outlive them. */
const ownedGroups = new Set<number>();

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(`/tmp/${prefix}`); // short: the socket path must stay under 108 bytes
  ownedDirs.add(dir);
  return dir;
}

function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  ownedDirs.delete(dir);
}

function own(child: ChildProcess): ChildProcess {
  ownedChildren.add(child);
  child.once("exit", () => ownedChildren.delete(child));
  return child;
}


/** The pids in process group `pgid` (Linux, from /proc). */
function groupMembers(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = fs.readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

/** The bench temp dirs a daemon in the group uses (its ASTRID_HOME and --workspace), so they can be removed. */
function daemonDirs(pid: number): string[] {
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    const home = env.find((e) => e.startsWith("ASTRID_HOME="))?.slice("ASTRID_HOME=".length);
    const ws = argv[argv.indexOf("--workspace") + 1];
    return [home, argv.includes("--workspace") ? ws : undefined].filter((d): d is string => !!d && d.startsWith(TMP_PREFIX));
  } catch {
    return [];
  }
}

/** The first refusal of a capsule publish for its rate in the log of a daemon in the group, if any. */
function refusedPublish(pgid: number): string | undefined {
  for (const dir of groupMembers(pgid).flatMap(daemonDirs)) {
    const logDir = path.join(dir, "log");
    let files: string[] = [];
    try {
      files = fs.readdirSync(logDir);
    } catch {
      continue; // a workspace, or a home without logs yet
    }
    for (const file of files) {
      try {
        const refusal = REFUSED_PUBLISH.exec(fs.readFileSync(path.join(logDir, file), "utf8"));
        if (refusal) return `the daemon refused the echo capsule's reply ("${refusal[0]}"); chat-path waits for it forever`;
      } catch {
        // rotated or removed meanwhile
      }
    }
  }
  return undefined;
}

/**
 * Stops whatever is left in a detached child's process group (chat-path leaves its daemons running when it fails)
 * and removes their temp dirs. A dir chat-path made but no daemon had been started with yet is not found.
 */
async function stopGroup(pgid: number): Promise<void> {
  const dirs = groupMembers(pgid).flatMap(daemonDirs);
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pgid, s);
    } catch {
      // ESRCH: the group is empty
    }
  };
  if (groupMembers(pgid).length > 0) {
    signal("SIGTERM");
    const deadline = Date.now() + STOP_GRACE_MS;
    while (groupMembers(pgid).length > 0 && Date.now() < deadline) await sleep(100);
    signal("SIGKILL");
    while (groupMembers(pgid).length > 0) await sleep(50);
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  ownedGroups.delete(pgid);
}

let cleaning: Promise<void> | undefined;
/** Stops every process this run started and removes every temp dir it made; idempotent. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await Promise.all([...ownedChildren].map((c) => stopChild(c)));
    await Promise.all([...ownedGroups].map((g) => stopGroup(g)));
    for (const dir of [...ownedDirs]) removeDir(dir);
  })();
  return cleaning;
}

// ---------------------------------------------------------------------------------------------------------------
// /proc readings


/** RSS of the child processes of `pid` and theirs (the loader's esbuild service, when it runs). */
function descendantsRss(pid: number): number {
  let total = 0;
  for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
    let children: string[] = [];
    try {
      children = fs.readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").trim().split(/\s+/).filter(Boolean);
    } catch {
      continue;
    }
    for (const child of children) {
      try {
        total += rssBytes(Number(child)) + descendantsRss(Number(child));
      } catch {
        // exited meanwhile
      }
    }
  }
  return total;
}



// ---------------------------------------------------------------------------------------------------------------
// Measurements

type DaemonMode = "none" | "confined" | "unconfined";
type TinyMode = "bare" | "bare+lockdown";
type Mode = DaemonMode | TinyMode;
const MODES: readonly Mode[] = ["none", "confined", "unconfined", "bare", "bare+lockdown"];

/** One sample: for a daemon, RSS after boot and boot → ready; for a tiny process, RSS before/after and spawn time. */
interface Sample {
  mode: Mode;
  rss_bytes: number;
  /** Daemon: RSS of its child processes (esbuild). Tiny: RSS before the workers. */
  base_bytes: number;
  ms: number;
}

/** The daemon env: nothing inherited that the daemon reads (a stray ASTRID_TEST_UNCONFINED_CAPSULES would lie). */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ASTRID_")) env[k] = v;
  return { ...env, ...extra };
}

/** Boots a daemon with `n` idle capsules until every one is up; RSS once its CPU went quiet; stops it. */
async function daemonSample(mode: DaemonMode): Promise<Sample> {
  const n = mode === "none" ? 0 : CAPSULES;
  const home = tempDir("astrid-bench-");
  const ws = tempDir("astrid-bench-ws-");
  fs.cpSync(CLI_CAPSULE, path.join(ws, "bundled", "astrid-capsule-cli"), { recursive: true });
  const names = Array.from({ length: n }, (_, i) => capsuleName(i));
  for (const name of names) {
    const dir = path.join(ws, ".astrid", "capsules", name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), manifest(name));
    fs.writeFileSync(path.join(dir, "index.js"), CAPSULE_SOURCE);
  }
  const env = cleanEnv({
    ASTRID_HOME: home,
    ASTRID_IDLE_TIMEOUT_SECS: "0",
    ASTRID_BUNDLED_CAPSULES_DIR: path.join(ws, "bundled"),
    // Boot waits for every capsule, so system.ready marks all of them started (default: serve after 5 s).
    ASTRID_CAPSULE_BOOT_WAIT_MS: String(BOOT_DEADLINE_MS),
    ...(mode === "unconfined" ? { ASTRID_TEST_UNCONFINED_CAPSULES: names.join(",") } : {}),
  });
  const t = process.hrtime.bigint();
  const child = own(spawn(process.execPath, [DAEMON, "--no-watch", "--workspace", ws], { env, stdio: ["ignore", "ignore", "pipe"] }));
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  try {
    const ready = path.join(home, "run", "system.ready");
    const deadline = Date.now() + BOOT_DEADLINE_MS;
    while (!fs.existsSync(ready)) {
      if (child.exitCode !== null) throw new Error(`daemon (${mode}) exited with ${child.exitCode} during boot: ${err}`);
      if (Date.now() > deadline) throw new Error(`daemon (${mode}) not ready within ${BOOT_DEADLINE_MS} ms: ${err}`);
      await sleep(2);
    }
    const ms = Number(process.hrtime.bigint() - t) / 1e6;
    await checkCapsules(home, mode, names);
    await settle(child.pid!);
    return { mode, rss_bytes: rssBytes(child.pid!), base_bytes: descendantsRss(child.pid!), ms };
  } finally {
    await stopChild(child);
    removeDir(home);
    removeDir(ws);
  }
}

/**
 * Every capsule is ready, and ran the way the mode says: the kernel caches the prepared modules of a confined
 * capsule under var/cache/capsules and prepares none for an unconfined one (checked from outside: a mode that
 * silently fell back would make the comparison meaningless).
 */
async function checkCapsules(home: string, mode: DaemonMode, names: string[]): Promise<void> {
  const socketPath = path.join(home, "run", "system.sock");
  const c = await DaemonClient.connect({ socketPath, token: fs.readFileSync(path.join(home, "run", "system.token"), "utf8") });
  try {
    const r = await c.request("GetCapsuleMetadata");
    const states = new Map(r.status === "CapsuleMetadata" ? r.data.map((m) => [m.name, m.state]) : []);
    const down = names.filter((name) => states.get(name) !== "ready");
    if (down.length > 0) throw new Error(`daemon (${mode}): capsules not ready: ${down.map((d) => `${d}=${String(states.get(d))}`).join(", ")}`);
  } finally {
    await c.close();
  }
  const cacheDir = path.join(home, "var", "cache", "capsules");
  const cached = fs.existsSync(cacheDir) ? fs.readdirSync(cacheDir).filter((f) => f.startsWith("idle-")).length : 0;
  const expected = mode === "confined" ? names.length : 0;
  if (cached !== expected) throw new Error(`daemon (${mode}): ${cached} capsules had their modules prepared, expected ${expected}`);
}

/** A tiny node process starting `CAPSULES` bare workers (with the capsule worker's lockdown, or without). */
async function tinySample(mode: TinyMode): Promise<Sample> {
  const config = JSON.stringify({ n: CAPSULES, lockdown: mode === "bare+lockdown" ? LOCKDOWN : null });
  const child = own(spawn(process.execPath, ["-e", TINY, config], { stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const timer = setTimeout(() => child.kill("SIGKILL"), TINY_DEADLINE_MS);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  clearTimeout(timer);
  if (code !== 0) throw new Error(`tiny worker process (${mode}) exited with ${String(code)}: ${err}`);
  const r = JSON.parse(out) as { before: number; after: number; ms: number };
  return { mode, rss_bytes: r.after, base_bytes: r.before, ms: r.ms };
}

/** One chat-path figure, read from its output. */
interface ChatRow {
  clients: number;
  raw_per_s: number;
  raw_ports_per_s: number;
  daemon_per_s: number;
  daemon_over_raw: number;
  pass: boolean;
}

/** What became of the chat-path run: its figures, or why there are none. */
type ChatResult = { rows: ChatRow[]; stalled: null } | { rows: null; stalled: string };

/**
 * bench/chat-path as it is, in its own process group (it leaves its daemons running when it fails, and has no
 * signal handling), with nothing inherited that turns confinement off. Its boot/RSS part runs once (`--runs 1`):
 * this bench measures those itself. A publish the kernel refuses is a reply chat-path's closed loop waits for
 * forever, so the daemon's log is watched for one and the run stopped at the first, with that line as the reason.
 */
async function chatPath(): Promise<ChatResult> {
  const args = [CHAT_PATH, "--seconds", String(CHAT_SECONDS), "--rounds", String(CHAT_ROUNDS), "--runs", "1"];
  const child = own(spawn(process.execPath, args, { env: cleanEnv({}), stdio: ["ignore", "pipe", "pipe"], detached: true }));
  ownedGroups.add(child.pid!);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const deadline = Date.now() + CHAT_DEADLINE_MS;
  let stalled: string | undefined;
  while (child.exitCode === null && child.signalCode === null) {
    await Promise.race([exited, sleep(500)]);
    if (child.exitCode !== null || child.signalCode !== null) break;
    stalled = refusedPublish(child.pid!) ?? (Date.now() > deadline ? `no result within ${Math.round(CHAT_DEADLINE_MS / 1000)} s` : undefined);
    if (stalled) break;
  }
  if (stalled) await stopChild(child);
  const code = await exited;
  await stopGroup(child.pid!);
  if (stalled) return { rows: null, stalled };
  if (code !== 0) throw new Error(`chat-path exited with ${String(code)}: ${err}${out}`);
  const rows: ChatRow[] = [];
  const line = /^\s*(\d+) clients?\s+raw\s+(\d+)\/s\s+daemon\s+(\d+)\/s\s+ratio [\d.]+.*raw ports\s+(\d+)\/s/gm;
  for (let m = line.exec(out); m; m = line.exec(out)) {
    const [raw, daemon] = [Number(m[2]), Number(m[3])];
    rows.push({ clients: Number(m[1]), raw_per_s: raw, raw_ports_per_s: Number(m[4]), daemon_per_s: daemon, daemon_over_raw: daemon / raw, pass: daemon / raw >= CHAT_TARGET });
  }
  if (rows.length === 0) throw new Error(`chat-path printed no figures this bench can read:\n${out}`);
  return { rows, stalled: null };
}

// ---------------------------------------------------------------------------------------------------------------
// Summary

interface PerWorker {
  /** RSS per idle worker, MB: median over rounds of (RSS with 16 − RSS without) / 16. */
  rss_mb: number;
  /** The same with the daemon's child processes counted (the loader's esbuild service); bare: as rss_mb. */
  rss_with_children_mb: number;
  /** Spawn → ready per worker, ms: median over rounds of (time with 16 − time without) / 16. */
  spawn_ms: number;
}

const MB = 1024 * 1024;

function summarise(samples: Sample[]): { perWorker: Record<Exclude<Mode, "none">, PerWorker>; boot: Record<DaemonMode, number>; children: Record<DaemonMode, number> } {
  const byMode = (mode: Mode) => samples.filter((s) => s.mode === mode);
  const none = byMode("none");
  const perWorker = {} as Record<Exclude<Mode, "none">, PerWorker>;
  for (const mode of ["confined", "unconfined"] as const) {
    const many = byMode(mode);
    // Paired by round: the none-daemon of the same round is the baseline.
    perWorker[mode] = {
      rss_mb: median(many.map((s, i) => (s.rss_bytes - none[i]!.rss_bytes) / CAPSULES / MB)),
      rss_with_children_mb: median(many.map((s, i) => (s.rss_bytes + s.base_bytes - none[i]!.rss_bytes - none[i]!.base_bytes) / CAPSULES / MB)),
      spawn_ms: median(many.map((s, i) => (s.ms - none[i]!.ms) / CAPSULES)),
    };
  }
  for (const mode of ["bare", "bare+lockdown"] as const) {
    const tiny = byMode(mode);
    const rss = median(tiny.map((s) => (s.rss_bytes - s.base_bytes) / CAPSULES / MB));
    perWorker[mode] = {
      rss_mb: rss,
      rss_with_children_mb: rss,
      spawn_ms: median(tiny.map((s) => s.ms / CAPSULES)),
    };
  }
  const boot = { none: median(none.map((s) => s.ms)), confined: median(byMode("confined").map((s) => s.ms)), unconfined: median(byMode("unconfined").map((s) => s.ms)) };
  const children = {
    none: median(none.map((s) => s.base_bytes)) / MB,
    confined: median(byMode("confined").map((s) => s.base_bytes)) / MB,
    unconfined: median(byMode("unconfined").map((s) => s.base_bytes)) / MB,
  };
  return { perWorker, boot, children };
}

function printTable(s: ReturnType<typeof summarise>, daemonRss0: number, chat: ChatResult | null): void {
  const w = s.perWorker;
  const f1 = (x: number) => x.toFixed(1);
  const ratio = (a: number, b: number) => (a / b).toFixed(2);
  const rssRatio = w.confined.rss_mb / w.unconfined.rss_mb;
  const treeRatio = w.confined.rss_with_children_mb / w.unconfined.rss_with_children_mb;
  const spawnRatio = w.confined.spawn_ms / w.unconfined.spawn_ms;
  console.log(`Confinement: ${CAPSULES} idle capsule workers per daemon, medians of ${ROUNDS} alternating rounds (ratios are the figures)`);
  const header = ["per worker", "bare", "bare+lockdown", "unconfined", "confined", "confined/unconfined", "target", "result", "confined/bare"];
  const rows = [
    ["RSS, MB", f1(w.bare.rss_mb), f1(w["bare+lockdown"].rss_mb), f1(w.unconfined.rss_mb), f1(w.confined.rss_mb), rssRatio.toFixed(2), `≤ ${RSS_TARGET}`, rssRatio <= RSS_TARGET ? "PASS" : "FAIL", ratio(w.confined.rss_mb, w.bare.rss_mb)],
    ["RSS + child processes, MB", f1(w.bare.rss_with_children_mb), f1(w["bare+lockdown"].rss_with_children_mb), f1(w.unconfined.rss_with_children_mb), f1(w.confined.rss_with_children_mb),
      treeRatio.toFixed(2), `≤ ${RSS_TARGET}`, treeRatio <= RSS_TARGET ? "PASS" : "FAIL", ratio(w.confined.rss_with_children_mb, w.bare.rss_with_children_mb)],
    ["spawn → ready, ms", f1(w.bare.spawn_ms), f1(w["bare+lockdown"].spawn_ms), f1(w.unconfined.spawn_ms), f1(w.confined.spawn_ms), spawnRatio.toFixed(2), `≤ ${SPAWN_TARGET}`, spawnRatio <= SPAWN_TARGET ? "PASS" : "FAIL", ratio(w.confined.spawn_ms, w.bare.spawn_ms)],
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) console.log("  " + r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
  console.log("  (bare: new Worker() in a tiny node process, 16 at once, + lockdown: the capsule worker's lockdown module first;");
  console.log("   daemon: (with 16 − with none) / 16, paired by round; child processes: the loader's esbuild service, started to prepare confined modules)");
  console.log(`Boot to ready, median ms: ${CAPSULES} confined ${s.boot.confined.toFixed(0)}, ${CAPSULES} unconfined ${s.boot.unconfined.toFixed(0)}, none ${s.boot.none.toFixed(0)}` +
    ` (daemon RSS without capsules ${f1(daemonRss0)} MB; its child processes ${f1(s.children.none)} / ${f1(s.children.unconfined)} / ${f1(s.children.confined)} MB none / unconfined / confined)`);
  if (chat) console.log(`Chat path with confinement on (bench/chat-path --seconds ${CHAT_SECONDS} --rounds ${CHAT_ROUNDS}; target daemon/raw ≥ ${CHAT_TARGET})`);
  if (chat?.stalled) {
    console.log(`  NOT MEASURED  FAIL   chat-path stalled and was stopped: ${chat.stalled}`);
  } else if (chat?.rows) {
    for (const c of chat.rows) {
      console.log(`  ${String(c.clients).padStart(2)} client${c.clients > 1 ? "s" : " "}  raw ${c.raw_per_s.toFixed(0).padStart(6)}/s  daemon ${c.daemon_per_s.toFixed(0).padStart(6)}/s  ` +
        `daemon/raw ${c.daemon_over_raw.toFixed(3)}  ${c.pass ? "PASS" : "FAIL"}   (raw ports ${c.raw_ports_per_s.toFixed(0)}/s; daemon/raw ports ${ratio(c.daemon_per_s, c.raw_ports_per_s)})`);
    }
  }
}

async function main(): Promise<void> {
  const samples: Sample[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Rotate the order each round so no mode always runs first (or right after the heaviest one).
    const order = MODES.map((_, i) => MODES[(i + round) % MODES.length]!);
    for (const mode of order) {
      samples.push(mode === "bare" || mode === "bare+lockdown" ? await tinySample(mode) : await daemonSample(mode));
    }
  }
  const summary = summarise(samples);
  const daemonRss0 = median(samples.filter((s) => s.mode === "none").map((s) => s.rss_bytes)) / MB;
  const chat = CHAT ? await chatPath() : null;
  const w = summary.perWorker;
  const ratios = {
    rss_confined_over_unconfined: w.confined.rss_mb / w.unconfined.rss_mb,
    rss_with_children_confined_over_unconfined: w.confined.rss_with_children_mb / w.unconfined.rss_with_children_mb,
    spawn_confined_over_unconfined: w.confined.spawn_ms / w.unconfined.spawn_ms,
    rss_confined_over_bare: w.confined.rss_mb / w.bare.rss_mb,
    spawn_confined_over_bare: w.confined.spawn_ms / w.bare.spawn_ms,
  };
  const pass = {
    rss: ratios.rss_confined_over_unconfined <= RSS_TARGET,
    rss_with_children: ratios.rss_with_children_confined_over_unconfined <= RSS_TARGET,
    spawn: ratios.spawn_confined_over_unconfined <= SPAWN_TARGET,
    chat: chat ? chat.rows?.every((c) => c.pass) ?? false : null,
  };
  if (JSON_OUT) {
    const config = { rounds: ROUNDS, capsules: CAPSULES, chat_seconds: CHAT ? CHAT_SECONDS : null, chat_rounds: CHAT ? CHAT_ROUNDS : null };
    const targets = { rss_confined_over_unconfined_max: RSS_TARGET, spawn_confined_over_unconfined_max: SPAWN_TARGET, chat_daemon_over_raw_min: CHAT_TARGET };
    const report = {
      config, targets, per_worker: w, ratios,
      boot_to_ready_ms: summary.boot, daemon_rss_without_capsules_mb: daemonRss0, child_processes_rss_mb: summary.children,
      chat_path: chat && { rows: chat.rows, stalled: chat.stalled }, pass, samples,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    printTable(summary, daemonRss0, chat);
    emitRows([
      timeRow("Idle confined capsule worker RSS (floor: unconfined worker; ratio ≥ 1/2.5)", w.confined.rss_mb, w.unconfined.rss_mb, "MB", 1 / RSS_TARGET),
      timeRow("Confined capsule worker spawn → ready (floor: unconfined; ratio ≥ 1/3)", w.confined.spawn_ms, w.unconfined.spawn_ms, "ms", 1 / SPAWN_TARGET),
      ...(chat?.rows ?? []).map((c) => rateRow(`Chat path with confinement, ${c.clients} client${c.clients > 1 ? "s" : ""} (floor: raw socket server)`, c.daemon_per_s, c.raw_per_s, "prompts/s", CHAT_TARGET)),
    ]);
  }
}

/** Set on SIGINT/SIGTERM: the measurement the signal cut short fails, and that is not worth printing. */
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    interrupted = true;
    void cleanup().finally(() => process.exit(130));
  });
}

main()
  .then(() => cleanup())
  .catch(async (err: unknown) => {
    if (!interrupted) console.error(err);
    await cleanup();
    process.exit(1);
  });
