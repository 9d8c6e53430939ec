/**
 * Issue #2 benchmark. GetStatus round trips through the real daemon (socket → handshake-authenticated connection →
 * ingress policy → bus → management router → egress to the requester) versus a raw socket server answering the same
 * frames on its main thread, both measured in this run, at 1 sequential client and 32 concurrent clients.
 * Also: daemon spawn → run/system.ready wall time and `astrid status` wall time, medians of N runs.
 *
 *   node dist/bench/status-roundtrip.js [--seconds 2] [--rounds 3] [--runs 10] [--json]
 *
 * Absolute numbers vary between machines and runs; the ratios are the figures to compare. The load generator is
 * one Node process; at 32 clients it can be the bottleneck on 2 cores, so the server CPU per round trip (from
 * /proc) is printed too: it says how much more work the daemon does per request, independent of the client.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import { flag, median, option, sleep } from "./bench-options";

const SECONDS = option("seconds", 2);
const ROUNDS = option("rounds", 3);
const RUNS = option("runs", 10);
const JSON_OUT = flag("json");

const DIST = path.resolve(__dirname, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const CLI = path.join(DIST, "bin", "astrid.js");
const RAW = path.join(__dirname, "raw-server.js");


function tempHome(): string {
  return fs.mkdtempSync("/tmp/astrid-bench-");
}

async function waitFor(file: string, child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (child.exitCode !== null) throw new Error(`${file}: process exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${file}`);
    await sleep(2);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux). */
function cpuSeconds(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** One measurement: round trips per second, and the server's CPU microseconds per round trip. */
interface Rate {
  perSec: number;
  serverCpuUs: number;
}

/** Round trips per second with `clients` connections each issuing requests back to back for SECONDS. */
async function throughput(socketPath: string, token: string, clients: number, serverPid: number): Promise<Rate> {
  const conns = await Promise.all(Array.from({ length: clients }, () => DaemonClient.connect({ socketPath, token })));
  // Warm up the JIT and the connections.
  await Promise.all(conns.map(async (c) => {
    for (let i = 0; i < 200; i++) await c.request("GetStatus", undefined, { topicSuffix: "status" });
  }));
  let count = 0;
  const cpuBefore = cpuSeconds(serverPid);
  const end = Date.now() + SECONDS * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(conns.map(async (c) => {
    while (Date.now() < end) {
      const r = await c.request("GetStatus", undefined, { topicSuffix: "status" });
      if (r.status !== "Status") throw new Error(`unexpected reply ${JSON.stringify(r)}`);
      count++;
    }
  }));
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  const serverCpuUs = ((cpuSeconds(serverPid) - cpuBefore) * 1e6) / count;
  await Promise.all(conns.map((c) => c.close()));
  return { perSec: count / secs, serverCpuUs };
}

async function main(): Promise<void> {
  const home = tempHome();
  const env = { ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0" };
  const daemon = spawn(process.execPath, [DAEMON], { env, stdio: "ignore" });
  await waitFor(path.join(home, "run", "system.ready"), daemon);
  const token = fs.readFileSync(path.join(home, "run", "system.token"), "utf8");
  const rawSock = path.join(home, "raw.sock");
  const raw = spawn(process.execPath, [RAW, rawSock], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => raw.stdout!.once("data", () => resolve()));

  const results: Record<string, { raw: number; daemon: number; ratio: number; raw_cpu_us: number; daemon_cpu_us: number; cpu_ratio: number }> = {};
  for (const clients of [1, 32]) {
    const rawRates: Rate[] = [];
    const daemonRates: Rate[] = [];
    // Alternate so drift on a noisy machine hits both sides alike.
    for (let round = 0; round < ROUNDS; round++) {
      rawRates.push(await throughput(rawSock, token, clients, raw.pid!));
      daemonRates.push(await throughput(path.join(home, "run", "system.sock"), token, clients, daemon.pid!));
    }
    const r = median(rawRates.map((x) => x.perSec));
    const d = median(daemonRates.map((x) => x.perSec));
    const rc = median(rawRates.map((x) => x.serverCpuUs));
    const dc = median(daemonRates.map((x) => x.serverCpuUs));
    results[`${clients} client${clients > 1 ? "s" : ""}`] = { raw: r, daemon: d, ratio: d / r, raw_cpu_us: rc, daemon_cpu_us: dc, cpu_ratio: rc / dc };
  }
  await stop(raw);

  // `astrid status` wall time against the running daemon.
  const statusTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [CLI, "status"], { env, encoding: "utf8" });
    statusTimes.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (r.status !== 0) throw new Error(`astrid status failed: ${r.stderr}`);
  }
  await stop(daemon);
  fs.rmSync(home, { recursive: true, force: true });

  // Spawn → ready, each on a fresh home.
  const readyTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const h = tempHome();
    const t = process.hrtime.bigint();
    const child = spawn(process.execPath, [DAEMON], { env: { ...process.env, ASTRID_HOME: h }, stdio: "ignore" });
    await waitFor(path.join(h, "run", "system.ready"), child);
    readyTimes.push(Number(process.hrtime.bigint() - t) / 1e6);
    await stop(child);
    fs.rmSync(h, { recursive: true, force: true });
  }
  // A bare `node -e 0` start for scale: the floor any Node daemon pays.
  const nodeTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    spawnSync(process.execPath, ["-e", "0"]);
    nodeTimes.push(Number(process.hrtime.bigint() - t) / 1e6);
  }

  const summary = {
    seconds_per_measurement: SECONDS,
    rounds: ROUNDS,
    roundtrips_per_sec: results,
    spawn_to_ready_ms_median: median(readyTimes),
    astrid_status_ms_median: median(statusTimes),
    node_startup_ms_median: median(nodeTimes),
    runs: RUNS,
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
    return;
  }
  console.log(`GetStatus round trips (median of ${ROUNDS} alternating rounds of ${SECONDS} s; target ratio ≥ 0.80)`);
  for (const [name, r] of Object.entries(results)) {
    console.log(`  ${name.padEnd(10)} raw ${r.raw.toFixed(0).padStart(7)}/s   daemon ${r.daemon.toFixed(0).padStart(7)}/s   ratio ${r.ratio.toFixed(2)} ${r.ratio >= 0.8 ? "(meets target)" : "(BELOW TARGET)"}`);
    console.log(`  ${"".padEnd(10)} server CPU per round trip: raw ${r.raw_cpu_us.toFixed(1)} µs, daemon ${r.daemon_cpu_us.toFixed(1)} µs (raw/daemon ${r.cpu_ratio.toFixed(2)})`);
  }
  console.log(`spawn → ready:  median ${summary.spawn_to_ready_ms_median.toFixed(0)} ms over ${RUNS} runs (node -e 0: ${summary.node_startup_ms_median.toFixed(0)} ms)`);
  console.log(`astrid status:  median ${summary.astrid_status_ms_median.toFixed(0)} ms over ${RUNS} runs`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
