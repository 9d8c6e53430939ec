/**
 * Issue #2 benchmark. GetStatus round trips through the real daemon (socket → handshake-authenticated connection →
 * ingress policy → bus → management router → egress to the requester) versus a raw socket server answering the same
 * frames on its main thread, both measured in this run, at 1 sequential client and 32 concurrent clients.
 * A third server, the raw one recording every request through the daemon's own audit code (issue #3: one chained,
 * signed entry per management request, in a storage worker), shows what the audit costs any server, apart from
 * what the kernel adds. Also: daemon spawn → run/system.ready wall time and `astrid status` wall time, medians of N
 * runs.
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
import { cpuSeconds, settle } from "./processes";
import { emitRows, rateRow } from "./bench-table";

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
  // Audit writes are fire-and-forget: let the server finish what the round queued, so its CPU counts here and
  // none of it spills into the next server's round.
  await settle(serverPid, { timeoutMs: 5000, pollMs: 50 });
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
  const startRaw = async (name: string, extra: string[]) => {
    const socketDir = fs.mkdtempSync(path.join(home, `${name}-`));
    const child = spawn(process.execPath, [RAW, path.join(socketDir, "raw.sock"), ...extra], { stdio: ["ignore", "pipe", "inherit"] });
    await new Promise<void>((resolve) => child.stdout!.once("data", () => resolve()));
    return { child, socketPath: path.join(socketDir, "raw.sock") };
  };
  const raw = await startRaw("raw", []);
  // The same raw server recording each request through the daemon's own audit code: what issue #3 adds to any server.
  const rawAudit = await startRaw("raw-audit", ["--audit"]);

  type Row = { raw: number; raw_audit: number; daemon: number; ratio: number; ratio_to_audit_floor: number; raw_cpu_us: number; raw_audit_cpu_us: number; daemon_cpu_us: number };
  const results: Record<string, Row> = {};
  for (const clients of [1, 32]) {
    const rates: Record<"raw" | "rawAudit" | "daemon", Rate[]> = { raw: [], rawAudit: [], daemon: [] };
    // Alternate so drift on a noisy machine hits every side alike.
    for (let round = 0; round < ROUNDS; round++) {
      rates.raw.push(await throughput(raw.socketPath, token, clients, raw.child.pid!));
      rates.rawAudit.push(await throughput(rawAudit.socketPath, token, clients, rawAudit.child.pid!));
      rates.daemon.push(await throughput(path.join(home, "run", "system.sock"), token, clients, daemon.pid!));
    }
    const perSec = (xs: Rate[]) => median(xs.map((x) => x.perSec));
    const cpu = (xs: Rate[]) => median(xs.map((x) => x.serverCpuUs));
    results[`${clients} client${clients > 1 ? "s" : ""}`] = {
      raw: perSec(rates.raw),
      raw_audit: perSec(rates.rawAudit),
      daemon: perSec(rates.daemon),
      ratio: perSec(rates.daemon) / perSec(rates.raw),
      ratio_to_audit_floor: perSec(rates.daemon) / perSec(rates.rawAudit),
      raw_cpu_us: cpu(rates.raw),
      raw_audit_cpu_us: cpu(rates.rawAudit),
      daemon_cpu_us: cpu(rates.daemon),
    };
  }
  await Promise.all([stop(raw.child), stop(rawAudit.child)]);

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
    console.log(`  ${name.padEnd(10)} raw ${r.raw.toFixed(0).padStart(7)}/s   daemon ${r.daemon.toFixed(0).padStart(7)}/s   ratio ${r.ratio.toFixed(3)} ${r.ratio >= 0.8 ? "(meets target)" : "(BELOW TARGET)"}`);
    console.log(`  ${"".padEnd(10)} raw + audit ${r.raw_audit.toFixed(0).padStart(7)}/s   daemon / (raw + audit) ${r.ratio_to_audit_floor.toFixed(3)}`);
    console.log(`  ${"".padEnd(10)} server CPU per round trip: raw ${r.raw_cpu_us.toFixed(1)} µs, raw + audit ${r.raw_audit_cpu_us.toFixed(1)} µs, daemon ${r.daemon_cpu_us.toFixed(1)} µs`);
  }
  console.log(`spawn → ready:  median ${summary.spawn_to_ready_ms_median.toFixed(0)} ms over ${RUNS} runs (node -e 0: ${summary.node_startup_ms_median.toFixed(0)} ms)`);
  console.log(`astrid status:  median ${summary.astrid_status_ms_median.toFixed(0)} ms over ${RUNS} runs`);
  emitRows(Object.entries(results).flatMap(([name, r]) => [
    rateRow(`GetStatus round trips, ${name} (floor: raw socket server)`, r.daemon, r.raw, "/s", 0.8),
    rateRow(`GetStatus round trips, ${name} (floor: raw server + the same audit)`, r.daemon, r.raw_audit, "/s", 0.9),
  ]));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
