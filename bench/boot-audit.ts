/**
 * Boot time against the size of the audit log. A log of `--entries` chained, signed entries (300 000 by default,
 * about where `astrid start` used to time out) is written straight into a fresh home's state.db with the daemon's
 * own format, then the daemon is booted on it:
 *
 * 1. the first boot finds no checkpoint and walks the whole chain (what every boot did before checkpoints);
 * 2. later boots verify from the signed checkpoint the first one recorded, and walk the whole chain in the
 *    background after `run/system.ready`.
 *
 * Each is a ratio to spawn → ready on an empty home measured in the same run (target for 2.: ≤ 1.5×, i.e. boot
 * cost no longer follows the size of the log). The background walk's duration is read from the daemon log.
 *
 *   node dist/bench/boot-audit.js [--entries 300000] [--runs 5] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AuditInput } from "../protocol/storage-messages";
import { contentHash, GENESIS_HASH, privateKeyFromSeed } from "../storage/audit-chain";
import { entryContent, signHash } from "../workers/storage/audit-chain";
import { openStateDatabase } from "../workers/storage/database";
import { count, flag, median, sleep } from "./bench-options";
import { emitRows, timeRow } from "./bench-table";

const ENTRIES = count("boot-audit", "entries", 300_000);
const RUNS = count("boot-audit", "runs", 5);
/** Entries per committed batch in the generated log: the last of each is signed, as the worker does. */
const BATCH = 256;
const DAEMON = path.join(__dirname, "..", "bin", "astrid-daemon.js");

const entry: AuditInput = {
  session_id: "00000000-0000-0000-0000-000000000000",
  principal: "default",
  action: { type: "admin_request", method: "GetStatus", required_capability: "system:status", caller: "conn:1" },
  authorization: { type: "allowed", reason: "default has system:status" },
  outcome: { status: "success", details: null },
};

function tempHome(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "astrid-bench-boot-"));
}

/** A home whose keys/runtime.key signed a log of `n` entries in var/state.db. */
function homeWithLog(n: number): string {
  const home = tempHome();
  const seed = randomBytes(32);
  fs.mkdirSync(path.join(home, "keys"), { mode: 0o700 });
  fs.writeFileSync(path.join(home, "keys", "runtime.key"), seed, { mode: 0o600 });
  fs.mkdirSync(path.join(home, "var"), { mode: 0o700 });
  const db = openStateDatabase(path.join(home, "var", "state.db"));
  const key = privateKeyFromSeed(seed);
  const insert = db.prepare("INSERT INTO audit (seq, content, hash, signature) VALUES (?, ?, ?, ?)");
  let previous = GENESIS_HASH;
  const timestamp = new Date().toISOString();
  const batch = db.transaction((from: number, to: number) => {
    for (let seq = from; seq <= to; seq++) {
      const content = entryContent(seq, randomUUID(), timestamp, previous, entry);
      const hash = contentHash(content);
      insert.run(seq, content, hash, seq === to ? signHash(key, hash) : null);
      previous = hash.toString("hex");
    }
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('audit_head', ?)").run(String(to));
  });
  for (let from = 1; from <= n; from += BATCH) batch(from, Math.min(n, from + BATCH - 1));
  db.close();
  return home;
}

async function waitFor(file: string, child: ChildProcess, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fs.existsSync(file)) {
    if (child.exitCode !== null) throw new Error(`${file}: the daemon exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${file}`);
    await sleep(2);
  }
}

/** Spawn → run/system.ready on `home`, in ms; `afterReady` runs before the daemon is stopped. */
async function boot(home: string, afterReady: () => Promise<void> = async () => {}): Promise<number> {
  const t = process.hrtime.bigint();
  const child = spawn(process.execPath, [DAEMON, "--quiet"], { env: { ...process.env, ASTRID_HOME: home }, stdio: "ignore" });
  await waitFor(path.join(home, "run", "system.ready"), child);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  await afterReady();
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
  return ms;
}

interface LogLine { message: string; ms?: number; entries?: number; from_checkpoint?: number }

function logLines(home: string): LogLine[] {
  const dir = path.join(home, "log");
  return fs.readdirSync(dir).filter((f) => f.startsWith("astrid.")).flatMap((f) =>
    fs.readFileSync(path.join(dir, f), "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as LogLine));
}

/** Resolves when the background walk has logged its end (or after `timeoutMs`). */
async function backgroundDone(home: string, after: number, timeoutMs = 120_000): Promise<LogLine | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const line = logLines(home).slice(after).find((l) => l.message.startsWith("audit chain verified in full") || l.message.startsWith("audit chain is broken"));
    if (line) return line;
    await sleep(50);
  }
  return undefined;
}

async function main(): Promise<void> {
  const json = flag("json");
  const log = (s: string) => !json && console.log(s);
  log(`writing a log of ${ENTRIES} entries…`);
  const t = Date.now();
  const big = homeWithLog(ENTRIES);
  log(`  ${Date.now() - t} ms`);

  const empty: number[] = [];
  const checkpointed: number[] = [];
  let background: number | undefined;
  const full = await boot(big);
  const fullLine = logLines(big).find((l) => l.message === "audit chain verified");
  for (let i = 0; i < RUNS; i++) {
    const h = tempHome();
    empty.push(await boot(h));
    fs.rmSync(h, { recursive: true, force: true });
    const seen = logLines(big).length;
    checkpointed.push(await boot(big, async () => {
      // Measured once: how long the whole walk takes in the background (the daemon serves meanwhile).
      if (background === undefined) background = (await backgroundDone(big, seen))?.ms;
    }));
  }
  const verified = logLines(big).filter((l) => l.message === "audit chain verified");
  const fromCheckpoint = verified.at(-1)?.from_checkpoint;
  fs.rmSync(big, { recursive: true, force: true });

  const floor = median(empty);
  const rows = [
    { name: "boot, whole-chain walk (first boot, no checkpoint)", ms: full, ratio: full / floor },
    { name: "boot from checkpoint", ms: median(checkpointed), ratio: median(checkpointed) / floor, target: 1.5 },
  ];
  const summary = {
    entries: ENTRIES, runs: RUNS, empty_home_ready_ms: floor, rows,
    first_boot_walked: fullLine?.entries, later_boots_from_checkpoint: fromCheckpoint, background_walk_ms: background,
  };
  if (json) {
    console.log(JSON.stringify(summary));
    return;
  }
  console.log(`\nspawn → ready on an empty home (floor): median ${floor.toFixed(0)} ms over ${RUNS}`);
  for (const r of rows) {
    console.log(`${r.name}: ${r.ms.toFixed(0)} ms, ×${r.ratio.toFixed(2)} the floor${r.target ? ` (target ≤ ${r.target}: ${r.ratio <= r.target ? "met" : "NOT met"})` : ""}`);
  }
  console.log(`later boots verified from entry ${String(fromCheckpoint)}; the whole walk in the background took ${background === undefined ? "?" : `${background} ms`}`);
  emitRows([timeRow(`Boot with ${ENTRIES} audit entries, from the checkpoint (floor: empty home; ratio ≥ 1/1.5)`, median(checkpointed), floor, "ms", 1 / 1.5)]);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
