/**
 * A capsule author's save, as the author sees it: a client streams prompts (distinct ids, every few milliseconds)
 * at a workspace capsule while its module is rewritten `--edits` times, each version answering with its tag. For
 * each edit: the time from the save to the first answer from the new version (the watcher's debounce, discovery
 * and hashing, the new worker's start beside the old one, the switch). Target: median ≤ 250 ms, reported as the
 * ratio 250 / median (higher is better, ≥ 1 passes). The prompt round trip with no reload under way, measured in the
 * same run, is printed beside it as the raw floor of any answer. Every prompt must get exactly one answer; the run
 * says how many were lost or doubled (any is a failure).
 *
 *   node dist/bench/reload-first-answer.js [--edits 20] [--gap-ms 1000] [--every-ms 5] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import type { IpcMessage } from "../protocol/ipc-message";
import { count, flag, median, percentile, sleep } from "./bench-options";
import { emitRows, timeRow } from "./bench-table";
import { stopChild } from "./processes";

const EDITS = count("reload-first-answer", "edits", 20);
/** Pause between an edit's first answer and the next save (an author's edits are seconds apart, not a storm). */
const GAP_MS = count("reload-first-answer", "gap-ms", 1000);
const EVERY_MS = count("reload-first-answer", "every-ms", 5);
const JSON_OUT = flag("json");
const TARGET_MS = 250;
/** How long one edit may take to show before the run gives up on it. */
const EDIT_DEADLINE_MS = 15_000;

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const CLI_CAPSULE = path.join(ROOT, "capsules", "astrid-capsule-cli");

function module(tag: string): string {
  return `module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (e) =>
      api.ipc.publish("agent.v1.response", { type: "agent_response", text: ${JSON.stringify(tag)} + "|" + e.payload.text, is_final: true, session_id: e.payload.session_id }));
  },
};
`;
}

const MANIFEST = `[package]\nname = "tagger"\nversion = "1.0.0"\n\n[[component]]\nfile = "index.js"\n\n` +
  `[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response"]\n`;

let child: ChildProcess | undefined;
const dirs: string[] = [];

async function cleanup(): Promise<void> {
  if (child) await stopChild(child);
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

async function boot(): Promise<{ client: DaemonClient; file: string }> {
  const home = fs.mkdtempSync("/tmp/astrid-rfa-"); // short: the socket path must stay under 108 bytes
  dirs.push(home);
  const workspace = path.join(home, "ws");
  const bundle = path.join(home, "bundled");
  fs.cpSync(CLI_CAPSULE, path.join(bundle, "astrid-capsule-cli"), { recursive: true });
  const dir = path.join(workspace, ".astrid", "capsules", "tagger");
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), MANIFEST);
  const file = path.join(dir, "index.js");
  fs.writeFileSync(file, module("v0"));
  // The burst pause of hot reload is for runaway writers; this run's edits are deliberate.
  const env = { ...process.env, ASTRID_HOME: path.join(home, "h"), ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_BUNDLED_CAPSULES_DIR: bundle, ASTRID_HOT_RELOAD_BURST: "10000" };
  child = spawn(process.execPath, [DAEMON, "--workspace", workspace], { env, stdio: ["ignore", "ignore", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const run = path.join(home, "h", "run");
  const deadline = Date.now() + 60_000;
  while (!(fs.existsSync(path.join(run, "system.token")) && fs.existsSync(path.join(run, "system.ready")))) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} during boot: ${err}`);
    if (Date.now() > deadline) throw new Error(`daemon not ready within 60 s: ${err}`);
    await sleep(10);
  }
  const client = await DaemonClient.connect({ socketPath: path.join(run, "system.sock"), token: fs.readFileSync(path.join(run, "system.token"), "utf8") });
  return { client, file };
}

async function main(): Promise<void> {
  const { client, file } = await boot();
  const sentAt: number[] = [];
  const answers = new Map<number, Array<{ tag: string; at: number }>>();
  /** When the first answer of each tag arrived. */
  const firstOf = new Map<string, number>();
  /** The `ms` of each `astrid.v1.capsule.reloaded`: the pass, from taking the change to the new version serving. */
  const passMs: number[] = [];
  client.on("message", (m: IpcMessage) => {
    if (m.topic === "astrid.v1.capsule.reloaded") passMs.push(Number(m.payload.ms));
    if (m.topic !== "agent.v1.response" || m.payload.session_id !== "bench") return;
    const at = performance.now();
    const [tag, id] = String(m.payload.text).split("|") as [string, string];
    answers.set(Number(id), [...(answers.get(Number(id)) ?? []), { tag, at }]);
    if (!firstOf.has(tag)) firstOf.set(tag, at);
  });
  const stream = setInterval(() => {
    client.publish("user.v1.prompt", { type: "user_input", text: String(sentAt.length), session_id: "bench" });
    sentAt.push(performance.now());
  }, EVERY_MS);
  const waitFor = async (tag: string) => {
    const deadline = Date.now() + EDIT_DEADLINE_MS;
    while (!firstOf.has(tag)) {
      if (Date.now() > deadline) throw new Error(`version ${tag} never answered within ${EDIT_DEADLINE_MS} ms`);
      await sleep(1);
    }
    return firstOf.get(tag)!;
  };
  const firstAnswerMs: number[] = [];
  try {
    await waitFor("v0");
    await sleep(GAP_MS);
    for (let v = 1; v <= EDITS; v++) {
      const saved = performance.now();
      fs.writeFileSync(file, module(`v${v}`));
      firstAnswerMs.push((await waitFor(`v${v}`)) - saved);
      await sleep(GAP_MS);
    }
  } finally {
    clearInterval(stream);
  }
  const settleDeadline = Date.now() + 10_000;
  while (answers.size < sentAt.length && Date.now() < settleDeadline) await sleep(20);
  await sleep(200);
  await client.close();

  let lost = 0;
  let doubled = 0;
  const roundTrips: number[] = [];
  for (let id = 0; id < sentAt.length; id++) {
    const got = answers.get(id) ?? [];
    if (got.length === 0) lost++;
    if (got.length > 1) doubled++;
    if (got.length > 0) roundTrips.push(got[0]!.at - sentAt[id]!);
  }
  const result = {
    edits: EDITS,
    prompts: sentAt.length,
    lost,
    doubled,
    first_answer_ms: { median: median(firstAnswerMs), p90: percentile(firstAnswerMs, 90), max: Math.max(...firstAnswerMs), all: firstAnswerMs.map((ms) => Math.round(ms)) },
    round_trip_ms: { median: median(roundTrips), p99: percentile(roundTrips, 99) },
    /** Of the first answer's time, the reload pass (discovery, the new worker's start, the switch). */
    pass_ms: { median: passMs.length > 0 ? median(passMs) : null },
    target_ms: TARGET_MS,
    ratio: TARGET_MS / median(firstAnswerMs),
    pass: median(firstAnswerMs) <= TARGET_MS && lost === 0 && doubled === 0,
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    console.log(`Reload, save → first answer of the new version: ${EDITS} edits ${GAP_MS} ms apart, a prompt every ${EVERY_MS} ms`);
    console.log(`  median ${result.first_answer_ms.median.toFixed(1)} ms, p90 ${result.first_answer_ms.p90.toFixed(1)} ms, max ${result.first_answer_ms.max.toFixed(1)} ms ` +
      `(target ≤ ${TARGET_MS} ms; ratio ${result.ratio.toFixed(2)})`);
    if (result.pass_ms.median !== null) console.log(`  of which the reload pass (discovery, new worker ready, switch): ${result.pass_ms.median} ms median; the watcher waits 50 ms for quiet`);
    console.log(`  raw floor: prompt round trip ${result.round_trip_ms.median.toFixed(2)} ms median, ${result.round_trip_ms.p99.toFixed(2)} ms p99`);
    console.log(`  ${sentAt.length} prompts: ${lost} lost, ${doubled} answered twice — ${result.pass ? "PASS" : "FAIL"}`);
  }
  emitRows([
    timeRow(`save → first answer of the new version, median of ${EDITS} edits (floor: the ${TARGET_MS} ms budget)`, result.first_answer_ms.median, TARGET_MS, "ms", 1),
    timeRow("prompt round trip to a workspace capsule, no reload under way (raw floor, kept for the record)", result.round_trip_ms.median, result.round_trip_ms.median, "ms", null),
  ]);
  if (lost > 0 || doubled > 0) process.exitCode = 1;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void cleanup().then(() => process.exit(130)));
main().then(cleanup, async (err: Error) => {
  console.error(`reload-first-answer: ${err.message}`);
  await cleanup();
  process.exit(1);
});
