/**
 * Issue #4 benchmark.
 * 1. The chat path: a `user.v1.prompt` frame from a socket client → bus → the echo capsule in its worker thread →
 *    bus → `agent.v1.response` back out (to every client, as the reference does), at 1 and 32 clients, against
 *    bench/raw-server answering the same frames on its main thread, in the same run. Target ratio ≥ 0.5.
 * 2. Boot to ready with 16 capsule workers, against boot with none.
 * 3. RSS per idle capsule worker: (RSS with 16 idle capsules − RSS with none) / 16. Target ≤ 12 MB.
 *
 *   node dist/bench/chat-path.js [--seconds 2] [--rounds 3] [--runs 5]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import type { IpcMessage } from "../protocol/ipc-message";
import { median, option, sleep } from "./bench-options";
import { rssBytes } from "./processes";
import { emitRows, rateRow } from "./bench-table";

const SECONDS = option("seconds", 2);
const ROUNDS = option("rounds", 3);
const RUNS = option("runs", 5);

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const RAW = path.join(__dirname, "raw-server.js");
const ECHO = path.join(ROOT, "spec", "fixtures", "capsules", "echo");


/** The data path only: the fixture's echo also writes KV on every prompt, which is not what this measures. */
const PURE_ECHO = `export default {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (event) =>
      api.ipc.publish("agent.v1.response", { type: "agent_response", text: "echo: " + event.payload.text, is_final: true, session_id: event.payload.session_id }));
  },
};
`;

/**
 * A workspace with `n` copies of the echo capsule (distinct names), and under `bundled/` a bundle holding only the
 * CLI policy capsule, so no built-in capsule answers the prompts too.
 */
function workspace(n: number): string {
  const dir = fs.mkdtempSync("/tmp/astrid-bench-ws-");
  fs.cpSync(path.join(ROOT, "capsules", "astrid-capsule-cli"), path.join(dir, "bundled", "astrid-capsule-cli"), { recursive: true });
  for (let i = 0; i < n; i++) {
    const target = path.join(dir, ".astrid", "capsules", `echo-${i}`);
    fs.cpSync(ECHO, target, { recursive: true });
    fs.writeFileSync(path.join(target, "echo.mjs"), PURE_ECHO);
    const toml = path.join(target, "Capsule.toml");
    fs.writeFileSync(toml, fs.readFileSync(toml, "utf8").replace('name = "echo"', `name = "echo-${i}"`).replace(/\[\[command\]\][\s\S]*$/, ""));
  }
  return dir;
}

async function boot(capsules: number): Promise<{ child: ChildProcess; home: string; ws: string; ms: number }> {
  const home = fs.mkdtempSync("/tmp/astrid-bench-");
  const ws = workspace(capsules);
  const t = process.hrtime.bigint();
  const child = spawn(process.execPath, [DAEMON, "--workspace", ws], {
    // The per-capsule message-rate limit is a guard against floods, not part of the path measured here: one echo
    // capsule answers every client, faster than the default allows.
    env: {
      ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_BUNDLED_CAPSULES_DIR: path.join(ws, "bundled"),
      ASTRID_CAPSULE_MAX_PUBLISHES_PER_SEC: "1000000",
    },
    stdio: "ignore",
  });
  const ready = path.join(home, "run", "system.ready");
  while (!fs.existsSync(ready)) {
    if (child.exitCode !== null) throw new Error("daemon exited during boot");
    await sleep(2);
  }
  return { child, home, ws, ms: Number(process.hrtime.bigint() - t) / 1e6 };
}

async function stop(d: { child: ChildProcess; home: string; ws: string }): Promise<void> {
  const exited = new Promise((r) => d.child.once("exit", r));
  d.child.kill("SIGTERM");
  await exited;
  fs.rmSync(d.home, { recursive: true, force: true });
  fs.rmSync(d.ws, { recursive: true, force: true });
}


/** Prompts answered per second: each client sends a prompt and waits for the reply to its own session. */
async function chatRate(socketPath: string, token: string, clients: number): Promise<number> {
  const conns = await Promise.all(Array.from({ length: clients }, () => DaemonClient.connect({ socketPath, token })));
  // Every reply reaches every client; a waiter is keyed by the prompt's unique text so that only the reply to
  // that very prompt releases the next one (keying by session would let a late copy release a newer prompt).
  const waiters = new Map<string, () => void>();
  for (const c of conns) {
    c.on("message", (m: IpcMessage) => {
      if (m.topic !== "agent.v1.response") return;
      const key = String(m.payload.text);
      const waiter = waiters.get(key);
      if (waiter) {
        waiters.delete(key);
        waiter();
      }
    });
  }
  // A reply that never comes (refused, dropped) fails the run after 10 s instead of hanging it.
  const ask = (c: DaemonClient, session: string, i: number) =>
    new Promise<void>((resolve, reject) => {
      const text = `${session}#${i}`;
      const timer = setTimeout(() => {
        waiters.delete(`echo: ${text}`);
        reject(new Error(`no reply to prompt ${text} within 10 s`));
      }, 10_000);
      waiters.set(`echo: ${text}`, () => {
        clearTimeout(timer);
        resolve();
      });
      c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
    });
  const loop = async (until: number) => {
    let n = 0;
    await Promise.all(conns.map(async (c, k) => {
      for (let i = 0; Date.now() < until; i++, n++) await ask(c, `s${k}`, i);
    }));
    return n;
  };
  await loop(Date.now() + 300); // warm-up
  const t = process.hrtime.bigint();
  const n = await loop(Date.now() + SECONDS * 1000);
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  await Promise.all(conns.map((c) => c.close()));
  return n / secs;
}

async function main(): Promise<void> {
  const one = await boot(1);
  const token = fs.readFileSync(path.join(one.home, "run", "system.token"), "utf8");
  const rawSock = path.join(one.home, "raw.sock");
  const raw = spawn(process.execPath, [RAW, rawSock], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => raw.stdout!.once("data", () => resolve()));
  const portsSock = path.join(one.home, "ports.sock");
  const ports = spawn(process.execPath, [RAW, portsSock, "--ports"], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => ports.stdout!.once("data", () => resolve()));
  const rows: Array<[string, number, number, number]> = [];
  for (const clients of [1, 32]) {
    const r: number[] = [];
    const p: number[] = [];
    const d: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      r.push(await chatRate(rawSock, token, clients));
      p.push(await chatRate(portsSock, token, clients));
      d.push(await chatRate(path.join(one.home, "run", "system.sock"), token, clients));
    }
    rows.push([`${clients} client${clients > 1 ? "s" : ""}`, median(r), median(p), median(d)]);
  }
  raw.kill("SIGTERM");
  ports.kill("SIGTERM");
  await stop(one);

  const boot0: number[] = [];
  const boot16: number[] = [];
  const rss0: number[] = [];
  const rss16: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const none = await boot(0);
    boot0.push(none.ms);
    await sleep(500);
    rss0.push(rssBytes(none.child.pid!));
    await stop(none);
    const many = await boot(16);
    boot16.push(many.ms);
    await sleep(500);
    rss16.push(rssBytes(many.child.pid!));
    await stop(many);
  }
  const perWorker = (median(rss16) - median(rss0)) / 16 / (1024 * 1024);

  console.log(`Chat path, prompt → echo capsule (worker) → reply (median of ${ROUNDS} alternating rounds of ${SECONDS} s; target ratio ≥ 0.50)`);
  for (const [name, r, p, d] of rows) {
    console.log(`  ${name.padEnd(10)} raw ${r.toFixed(0).padStart(7)}/s   daemon ${d.toFixed(0).padStart(7)}/s   ratio ${(d / r).toFixed(3)} ${d / r >= 0.5 ? "(meets target)" : "(BELOW TARGET)"}` +
      `   | raw ports ${p.toFixed(0).padStart(7)}/s = ${(p / r).toFixed(2)} of raw; daemon = ${(d / p).toFixed(2)} of raw ports`);
  }
  console.log("  (raw ports: the same raw server with one postMessage round trip through a worker per prompt — the ceiling of any off-main-thread capsule)");
  console.log(`Boot to ready: 16 capsules ${median(boot16).toFixed(0)} ms, none ${median(boot0).toFixed(0)} ms (median of ${RUNS})`);
  console.log(`RSS per idle capsule worker: ${perWorker.toFixed(1)} MB (target ≤ 12 MB; daemon without capsules ${(median(rss0) / 1048576).toFixed(0)} MB)`);
  emitRows(rows.flatMap(([name, r, p, d]) => [
    rateRow(`Chat path, ${name} (floor: raw socket server)`, d, r, "prompts/s", 0.5),
    rateRow(`Chat path, ${name} (floor: raw server + one worker hop)`, d, p, "prompts/s", 0.9),
  ]));
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
