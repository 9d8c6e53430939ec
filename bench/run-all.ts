/**
 * `npm run bench`: every benchmark in turn, each in its own process (so one's daemons and heap never colour the
 * next), its own output streamed as it runs; then one table of every row the scripts reported — figure, floor
 * measured in the same run, ratio (higher is better), target, verdict — written also as JSON under bench/results/.
 * Usage: node dist/bench/run-all.js [--only name,name] [--list]
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { BENCH_JSON_PREFIX, type BenchRow } from "./bench-table";

/** Each script with options that keep the whole table within ~25 minutes on 2 cores. */
const BENCHES: Array<{ name: string; args: string[] }> = [
  { name: "status-roundtrip", args: ["--seconds", "2", "--rounds", "3", "--runs", "3"] },
  { name: "storage", args: [] },
  { name: "chat-path", args: ["--seconds", "2", "--rounds", "3", "--runs", "3"] },
  { name: "confinement", args: ["--rounds", "3", "--no-chat"] },
  { name: "reload-under-load", args: [] },
  { name: "reload-first-answer", args: [] },
  { name: "frontends", args: [] },
  { name: "mcp", args: [] },
  { name: "web-latency", args: [] },
  { name: "agent-first-delta", args: ["--prompts", "40"] },
  { name: "wasm", args: [] },
  { name: "cli-startup", args: ["--rounds", "10", "--starts", "3"] },
  { name: "boot-audit", args: [] },
];

interface ScriptResult { bench: string; ok: boolean; seconds: number; rows: BenchRow[]; error?: string }

function runOne(name: string, args: string[]): Promise<ScriptResult> {
  const file = path.join(__dirname, `${name}.js`);
  const started = Date.now();
  if (!fs.existsSync(file)) return Promise.resolve({ bench: name, ok: false, seconds: 0, rows: [], error: `${file} is missing (run npm run build)` });
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file, ...args], { stdio: ["ignore", "pipe", "inherit"] });
    const rows: BenchRow[] = [];
    let pending = "";
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      pending += chunk;
      for (let nl = pending.indexOf("\n"); nl >= 0; nl = pending.indexOf("\n")) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        if (line.startsWith(BENCH_JSON_PREFIX)) rows.push(...(JSON.parse(line.slice(BENCH_JSON_PREFIX.length)) as { rows: BenchRow[] }).rows);
        else process.stdout.write(`  ${line}\n`);
      }
    });
    child.on("close", (code, signal) => {
      const seconds = (Date.now() - started) / 1000;
      const ok = code === 0 && rows.length > 0;
      resolve({ bench: name, ok, seconds, rows, ...(ok ? {} : { error: signal ? `killed by ${signal}` : code === 0 ? "reported no rows" : `exit code ${String(code)}` }) });
    });
  });
}

const verdict = (r: BenchRow) => (r.target === null ? "—" : r.ratio >= r.target ? "met" : "NOT MET");
const figure = (x: number) => (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(x >= 10 ? 1 : 2));

function printTable(results: ScriptResult[]): void {
  const header = ["benchmark", "figure", "floor", "ratio", "target", "verdict"];
  const lines = results.flatMap((s) => s.ok
    ? s.rows.map((r) => [r.name, `${figure(r.figure)} ${r.unit}`, `${figure(r.floor)} ${r.unit}`, r.ratio.toFixed(2), r.target === null ? "—" : `≥ ${r.target.toFixed(2)}`, verdict(r)])
    : [[`${s.bench}: FAILED (${s.error ?? "?"})`, "", "", "", "", "FAILED"]]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  console.log(`\nBench table (${os.cpus().length} cores, load average ${os.loadavg()[0]!.toFixed(2)}; ratios are higher-is-better, each against a floor measured in the same run)`);
  for (const l of [header, ...lines]) console.log(l.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--list")) {
    for (const b of BENCHES) console.log(`${b.name} ${b.args.join(" ")}`);
    return;
  }
  const onlyAt = argv.indexOf("--only");
  const only = onlyAt >= 0 ? new Set((argv[onlyAt + 1] ?? "").split(",")) : undefined;
  const unknown = [...(only ?? [])].filter((n) => !BENCHES.some((b) => b.name === n));
  if (unknown.length > 0) {
    console.error(`run-all: unknown benchmark ${unknown.join(", ")} (see --list)`);
    process.exit(2);
  }
  const results: ScriptResult[] = [];
  for (const b of BENCHES.filter((x) => !only || only.has(x.name))) {
    console.log(`\n== ${b.name} ${b.args.join(" ")}`);
    results.push(await runOne(b.name, b.args));
  }
  printTable(results);
  const dir = path.resolve(__dirname, "..", "..", "bench", "results");
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  const rows = results.flatMap((s): Array<Record<string, unknown>> => (s.ok
    ? s.rows.map((r) => ({ bench: s.bench, ...r, verdict: verdict(r) }))
    : [{ bench: s.bench, name: s.bench, ratio: null, target: null, verdict: "FAILED", error: s.error }]));
  fs.writeFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), cores: os.cpus().length, load_average: os.loadavg(), scripts: results.map(({ rows: _, ...s }) => s), rows }, null, 2)}\n`);
  console.log(`\nwritten to ${path.relative(process.cwd(), file)}`);
  if (results.some((s) => !s.ok)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
