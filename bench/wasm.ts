/**
 * What running a capsule as a WebAssembly component costs, in the same run:
 * 1. Interceptor round trip (prompt → capsule's interceptor → its reply on agent.v1.response → client), one prompt
 *    at a time, for the minimal WASM capsule (spec/fixtures/wasm/minimal.wat: republishes the prompt) against the
 *    same capsule written in JavaScript, daemons alternating by round. Ratio = JS time / WASM time; target ≥ 0.5.
 * 2. First load (verify BLAKE3, componentize the core module, transpile with jco, instantiate) and cached load
 *    (verify, instantiate from var/cache/wasm), as the capsule's worker timed them; for the record.
 * 3. RSS per idle WASM capsule worker: (daemon RSS with N idle WASM capsules − with none) / N, beside the same
 *    for N idle JavaScript capsules (confined); for the record.
 *
 *   node dist/bench/wasm.js [--rounds 3] [--prompts 300] [--idle 8] [--json]
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import type { IpcMessage } from "../protocol/ipc-message";
import { count, flag, median, sleep } from "./bench-options";
import { emitRows, timeRow, type BenchRow } from "./bench-table";
import { rssBytes, settle, stopChild } from "./processes";

const ROUNDS = count("wasm", "rounds", 3);
const PROMPTS = count("wasm", "prompts", 300);
const IDLE = count("wasm", "idle", 8);
const JSON_OUT = flag("json");
const ROUND_TRIP_TARGET = 0.5;
const BOOT_DEADLINE_MS = 120_000;

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const FIXTURES = path.join(ROOT, "spec", "fixtures", "wasm");
const CLI_CAPSULE = path.join(ROOT, "capsules", "astrid-capsule-cli");

const JS_ECHO = `// The minimal capsule in JavaScript: republishes each prompt on agent.v1.response from its interceptor.
module.exports = {
  interceptors: {
    echo: (event, api) => api.ipc.publish("agent.v1.response", event.payload),
  },
};
`;
const manifest = (name: string, file: string) =>
  `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "${file}"\n\n[capabilities]\nipc_publish = ["agent.v1.response"]\n\n` +
  `[[interceptor]]\nevent = "user.v1.prompt"\naction = "echo"\n`;

const owned = new Set<string>();
const children = new Set<ChildProcess>();
function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(`/tmp/${prefix}`);
  owned.add(dir);
  return dir;
}
async function cleanup(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
  for (const dir of owned) fs.rmSync(dir, { recursive: true, force: true });
  owned.clear();
}

type Kind = "wasm" | "js";
let built = "";

/** Writes `n` capsules of `kind` into a fresh workspace (names echo-0…). */
function workspace(kind: Kind, n: number): string {
  const ws = tempDir("astrid-bench-wws-");
  fs.cpSync(CLI_CAPSULE, path.join(ws, "bundled", "astrid-capsule-cli"), { recursive: true });
  const hash = (JSON.parse(fs.readFileSync(path.join(built, "hashes.json"), "utf8")) as Record<string, string>)["minimal.core.wasm"]!;
  for (let i = 0; i < n; i++) {
    const dir = path.join(ws, ".astrid", "capsules", `echo-${i}`);
    fs.mkdirSync(dir, { recursive: true });
    if (kind === "wasm") {
      fs.writeFileSync(path.join(dir, "Capsule.toml"), manifest(`echo-${i}`, "minimal.wasm"));
      fs.copyFileSync(path.join(built, "minimal.core.wasm"), path.join(dir, "minimal.wasm"));
      fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: hash }));
    } else {
      fs.writeFileSync(path.join(dir, "Capsule.toml"), manifest(`echo-${i}`, "index.js"));
      fs.writeFileSync(path.join(dir, "index.js"), JS_ECHO);
    }
  }
  return ws;
}

interface Running { child: ChildProcess; client: DaemonClient; home: string }

/** Boots a daemon on `ws` (and `home`, kept when given) until its capsules are all ready. */
async function boot(ws: string, names: string[], home = tempDir("astrid-bench-wh-")): Promise<Running> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("ASTRID_")) env[k] = v;
  Object.assign(env, { ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_BUNDLED_CAPSULES_DIR: path.join(ws, "bundled"), ASTRID_CAPSULE_BOOT_WAIT_MS: String(BOOT_DEADLINE_MS) });
  const child = spawn(process.execPath, [DAEMON, "--no-watch", "--workspace", ws], { env, stdio: ["ignore", "ignore", "pipe"] });
  children.add(child);
  child.once("exit", () => children.delete(child));
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const ready = path.join(home, "run", "system.ready");
  const deadline = Date.now() + BOOT_DEADLINE_MS;
  while (!fs.existsSync(ready)) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} during boot: ${err}`);
    if (Date.now() > deadline) throw new Error(`daemon not ready within ${BOOT_DEADLINE_MS} ms: ${err}`);
    await sleep(5);
  }
  const client = await DaemonClient.connect({ socketPath: path.join(home, "run", "system.sock"), token: fs.readFileSync(path.join(home, "run", "system.token"), "utf8") });
  const meta = await client.request("GetCapsuleMetadata");
  const states = new Map((meta.data as Array<{ name: string; state: string; last_error?: string }>).map((m) => [m.name, m]));
  const down = names.filter((n) => states.get(n)?.state !== "ready");
  if (down.length > 0) throw new Error(`capsules not ready: ${down.map((n) => `${n}=${states.get(n)?.state} ${states.get(n)?.last_error ?? ""}`).join(", ")}`);
  return { child, client, home };
}

async function stop(r: Running): Promise<void> {
  await r.client.close();
  await stopChild(r.child);
}

/** Mean µs per prompt → reply, `PROMPTS` in a row after a warm-up of 30. */
async function roundTrips(r: Running): Promise<number> {
  let waiting: ((m: IpcMessage) => void) | undefined;
  r.client.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") waiting?.(m);
  });
  const one = (i: number) => new Promise<void>((resolve, reject) => {
    const session = `b${i}`;
    const timer = setTimeout(() => reject(new Error(`no reply to prompt ${i}`)), 10_000);
    waiting = (m) => {
      if (m.payload.session_id !== session) return;
      clearTimeout(timer);
      resolve();
    };
    r.client.publish("user.v1.prompt", { type: "user_input", text: "ping", session_id: session });
  });
  for (let i = 0; i < 30; i++) await one(-i - 1);
  const t = process.hrtime.bigint();
  for (let i = 0; i < PROMPTS; i++) await one(i);
  return Number(process.hrtime.bigint() - t) / 1e3 / PROMPTS;
}

/** The WASM capsule's load as its worker timed it. */
async function loadMs(r: Running, name: string): Promise<{ ms: number; transpiled: boolean }> {
  const meta = await r.client.request("GetCapsuleMetadata");
  const wasm = (meta.data as Array<{ name: string; wasm?: { load_ms: number; transpiled: boolean } }>).find((m) => m.name === name)?.wasm;
  if (!wasm) throw new Error(`${name} has no wasm description`);
  return { ms: wasm.load_ms, transpiled: wasm.transpiled };
}

async function idleRss(kind: Kind | "none"): Promise<number> {
  const n = kind === "none" ? 0 : IDLE;
  const ws = workspace(kind === "none" ? "js" : kind, n);
  const names = Array.from({ length: n }, (_, i) => `echo-${i}`);
  const home = tempDir("astrid-bench-wh-");
  // Steady state: the transpile cache exists (a first boot made it), as on every boot after an install.
  if (kind === "wasm") await stop(await boot(ws, names, home));
  const r = await boot(ws, names, home);
  try {
    await settle(r.child.pid!);
    return rssBytes(r.child.pid!);
  } finally {
    await stop(r);
  }
}

async function main(): Promise<void> {
  built = tempDir("astrid-bench-wfx-");
  execFileSync(process.execPath, ["--import", path.join(FIXTURES, "register.mjs"), path.join(FIXTURES, "build.mjs"), built, "--no-js"], { stdio: "pipe" });

  const wasmTimes: number[] = [];
  const jsTimes: number[] = [];
  const firstLoads: number[] = [];
  const cachedLoads: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // A fresh home: the first boot transpiles; the second boot on the same home finds the cache.
    const ws = workspace("wasm", 1);
    const home = tempDir("astrid-bench-wh-");
    let r = await boot(ws, ["echo-0"], home);
    const first = await loadMs(r, "echo-0");
    if (!first.transpiled) throw new Error("first load did not transpile (a stale cache?)");
    firstLoads.push(first.ms);
    await stop(r);
    r = await boot(ws, ["echo-0"], home);
    const cached = await loadMs(r, "echo-0");
    if (cached.transpiled) throw new Error("second load transpiled again: the cache was not used");
    cachedLoads.push(cached.ms);
    wasmTimes.push(await roundTrips(r));
    await stop(r);
    const js = await boot(workspace("js", 1), ["echo-0"]);
    jsTimes.push(await roundTrips(js));
    await stop(js);
  }
  const rssNone = await idleRss("none");
  const rssWasm = (await idleRss("wasm")) - rssNone;
  const rssJs = (await idleRss("js")) - rssNone;

  const wasmUs = median(wasmTimes);
  const jsUs = median(jsTimes);
  const rows: BenchRow[] = [
    timeRow("WASM interceptor round trip vs the same capsule in JS", round1(wasmUs), round1(jsUs), "µs", ROUND_TRIP_TARGET),
    timeRow("WASM first load (verify+componentize+transpile+instantiate) vs cached load", round1(median(firstLoads)), round1(median(cachedLoads)), "ms", null),
    timeRow(`RSS per idle WASM capsule worker vs JS capsule worker (${IDLE} each)`, round1(rssWasm / IDLE / 1048576), round1(rssJs / IDLE / 1048576), "MiB", null),
  ];
  if (!JSON_OUT) {
    console.log(`interceptor round trip: WASM ${wasmUs.toFixed(1)} µs, JS ${jsUs.toFixed(1)} µs (median of ${ROUNDS} rounds × ${PROMPTS} prompts); ratio ${(jsUs / wasmUs).toFixed(2)} (target ≥ ${ROUND_TRIP_TARGET})`);
    console.log(`load: first ${median(firstLoads).toFixed(1)} ms, cached ${median(cachedLoads).toFixed(1)} ms (as the worker timed them)`);
    console.log(`idle RSS per worker: WASM ${(rssWasm / IDLE / 1048576).toFixed(1)} MiB, JS ${(rssJs / IDLE / 1048576).toFixed(1)} MiB`);
    console.log("(figures are noisy while other work runs on this machine)");
  }
  emitRows(rows);
}

const round1 = (x: number) => Math.round(x * 10) / 10;

main().then(cleanup, async (err: unknown) => {
  console.error(err);
  await cleanup();
  process.exit(1);
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void cleanup().then(() => process.exit(130)));
