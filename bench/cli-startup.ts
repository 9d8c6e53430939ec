/**
 * How long the `astrid` CLI takes as a whole process, against a bare `node -e 0` start measured in the same run:
 *
 * - `astrid --version` (parsing only; target ≤ 1.3 × node),
 * - `astrid status` against a running daemon (connect, handshake, GetStatus; target ≤ 1.6 × node),
 * - `astrid start` until it returns (spawn of the daemon with the bundled capsules → `run/system.ready`; target ≤ 4 ×
 *   node).
 *
 * Each round runs node, --version and status once each, in an order that rotates; `start` runs once per start
 * round after an untimed `astrid stop`, with a node start beside it. Medians are reported. A fresh `ASTRID_HOME` and
 * an empty workspace are used and removed at the end (the daemon is stopped on an error or Ctrl-C too).
 *
 *   node dist/bench/cli-startup.js [--rounds 15] [--starts 5] [--json]
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { count, flag, median } from "./bench-options";
import { emitRows, timeRow } from "./bench-table";

const SCRIPT = "cli-startup";
const CLI = path.join(__dirname, "..", "bin", "astrid.js");
const ROUNDS = count(SCRIPT, "rounds", 15);
const STARTS = count(SCRIPT, "starts", 5);
const JSON_OUT = flag("json");

const TARGETS = { version: 1.3, status: 1.6, start: 4 } as const;

const home = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-bench-home-"));
const workspace = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-bench-ws-"));
const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home };
// The bundled capsules as a user gets them, and nothing from the caller's own setup.
for (const key of Object.keys(env)) if (key.startsWith("ASTRID_") && key !== "ASTRID_HOME") delete env[key];

/** Runs `args` to completion; its wall time in ms. Fails the bench when it exits non-zero. */
function timed(args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { env, cwd: workspace, encoding: "utf8", timeout: 60_000 });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(" ")} exited ${String(r.status)}: ${r.stderr}`);
  return ms;
}

function astrid(...args: string[]): string[] {
  return [CLI, ...args];
}

function cleanUp(): void {
  spawnSync(process.execPath, astrid("stop"), { env, cwd: workspace, timeout: 30_000 });
  fs.rmSync(home, { recursive: true, force: true });
  fs.rmSync(workspace, { recursive: true, force: true });
}

process.once("SIGINT", () => {
  cleanUp();
  process.exit(130);
});

function main(): void {
  const times = { node: [] as number[], version: [] as number[], status: [] as number[], start: [] as number[] };
  timed(astrid("start"));
  // One untimed warm-up of each, so the first round does not pay for a cold file cache.
  timed(["-e", "0"]);
  timed(astrid("--version"));
  timed(astrid("status"));
  const steps: Array<[keyof typeof times, string[]]> = [["node", ["-e", "0"]], ["version", astrid("--version")], ["status", astrid("status")]];
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < steps.length; k++) {
      const [name, args] = steps[(round + k) % steps.length]!;
      times[name].push(timed(args));
    }
  }
  for (let run = 0; run < STARTS; run++) {
    timed(astrid("stop"));
    times.node.push(timed(["-e", "0"]));
    times.start.push(timed(astrid("start")));
  }
  const node = median(times.node);
  const rows = (["version", "status", "start"] as const).map((name) => {
    const ms = median(times[name]);
    const ratio = ms / node;
    return { name, median_ms: ms, ratio, target: TARGETS[name], pass: ratio <= TARGETS[name], runs: times[name].length };
  });
  if (JSON_OUT) {
    console.log(JSON.stringify({ node_median_ms: node, node_runs: times.node.length, rows }));
    return;
  }
  console.log(`node -e 0: median ${node.toFixed(1)} ms over ${times.node.length} runs (load average ${os.loadavg()[0]!.toFixed(2)})`);
  console.log("| command | median ms | × node -e 0 | target | result |");
  console.log("|---|---|---|---|---|");
  for (const r of rows) {
    console.log(`| astrid ${r.name} | ${r.median_ms.toFixed(1)} | ${r.ratio.toFixed(2)} | ≤ ${r.target} | ${r.pass ? "PASS" : "FAIL"} |`);
  }
  emitRows(rows.map((r) => timeRow(`astrid ${r.name} wall time (floor: node -e 0; ratio ≥ 1/${r.target})`, r.median_ms, node, "ms", 1 / r.target)));
}

try {
  main();
} finally {
  cleanUp();
}
