/**
 * Issue #3 benchmark.
 * 1. Audit appends per second through the storage worker (StorageClient → piscina → better-sqlite3), chained and
 *    signed, with 256 appends in flight, against in-thread batched inserts (256 per transaction) with the same
 *    SHA-256 chain on the bench's own thread, measured in this run. Target ratio ≥ 0.5.
 * 2. KV get and set latency from the main thread (one call in flight), p50/p99, beside the same calls made
 *    in-thread on better-sqlite3 for scale.
 *
 *   node dist/bench/storage.js [--entries 50000] [--rounds 3] [--json]
 */
import { randomBytes, randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { AuditInput } from "../protocol/storage-messages";
import { StorageClient } from "../kernel/storage-client";
import { contentHash, GENESIS_HASH } from "../storage/audit-chain";
import { entryContent } from "../workers/storage/audit-chain";
import { openStateDatabase } from "../workers/storage/database";
import { flag, median, option, percentile } from "./bench-options";
import { emitRows, rateRow } from "./bench-table";

const ENTRIES = option("entries", 50_000);
const ROUNDS = option("rounds", 3);
const IN_FLIGHT = 256;
const silent = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} } as never;

const entry: AuditInput = {
  session_id: "00000000-0000-0000-0000-000000000000",
  principal: "default",
  action: { type: "admin_request", method: "GetStatus", required_capability: "system:status", caller: "conn:1" },
  authorization: { type: "not_required", reason: "capability profiles are not enforced yet" },
  outcome: { status: "success", details: null },
};


async function throughWorker(dir: string): Promise<number> {
  const client = await StorageClient.open({ dbPath: path.join(dir, "worker.db"), seed: randomBytes(32), logger: silent });
  let next = 0;
  const run = async (n: number) => {
    next = 0;
    await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
      while (next++ < n) await client.appendAudit(entry);
    }));
  };
  await run(5000); // warm-up
  const t = process.hrtime.bigint();
  await run(ENTRIES);
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  await client.close();
  return ENTRIES / secs;
}

function inThread(dir: string): number {
  const db = openStateDatabase(path.join(dir, "inline.db"));
  const insert = db.prepare("INSERT INTO audit (seq, content, hash, signature) VALUES (?, ?, ?, NULL)");
  let seq = 0;
  let previous = GENESIS_HASH;
  const batch = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) {
      seq++;
      const content = entryContent(seq, randomUUID(), new Date().toISOString(), previous, entry);
      const hash = contentHash(content);
      insert.run(seq, content, hash);
      previous = hash.toString("hex");
    }
  });
  const run = (n: number) => {
    for (let done = 0; done < n; done += IN_FLIGHT) batch(Math.min(IN_FLIGHT, n - done));
  };
  run(5000);
  const t = process.hrtime.bigint();
  run(ENTRIES);
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  db.close();
  return ENTRIES / secs;
}

async function kvLatency(dir: string) {
  const client = await StorageClient.open({ dbPath: path.join(dir, "kv.db"), seed: randomBytes(32), logger: silent });
  const value = randomBytes(256);
  const sets: number[] = [];
  const gets: number[] = [];
  for (let i = 0; i < 3000; i++) {
    const t = process.hrtime.bigint();
    await client.set("default:capsule:bench", `key-${i % 500}`, value);
    sets.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  for (let i = 0; i < 3000; i++) {
    const t = process.hrtime.bigint();
    await client.get("default:capsule:bench", `key-${i % 500}`);
    gets.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  await client.close();
  const db = openStateDatabase(path.join(dir, "kv-inline.db"));
  const set = db.prepare("INSERT INTO kv (scope, key, value) VALUES (?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value");
  const get = db.prepare("SELECT value FROM kv WHERE scope = ? AND key = ?");
  const rawSets: number[] = [];
  const rawGets: number[] = [];
  for (let i = 0; i < 3000; i++) {
    const t = process.hrtime.bigint();
    set.run("s", Buffer.from(`key-${i % 500}`), value);
    rawSets.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  for (let i = 0; i < 3000; i++) {
    const t = process.hrtime.bigint();
    get.get("s", Buffer.from(`key-${i % 500}`));
    rawGets.push(Number(process.hrtime.bigint() - t) / 1e3);
  }
  db.close();
  const skip = (xs: number[]) => xs.slice(500); // warm-up
  return {
    set: { p50: percentile(skip(sets), 50), p99: percentile(skip(sets), 99) },
    get: { p50: percentile(skip(gets), 50), p99: percentile(skip(gets), 99) },
    inline_set: { p50: percentile(skip(rawSets), 50), p99: percentile(skip(rawSets), 99) },
    inline_get: { p50: percentile(skip(rawGets), 50), p99: percentile(skip(rawGets), 99) },
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync("/tmp/astrid-bench-storage-");
  try {
    const worker: number[] = [];
    const inline: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f));
      inline.push(inThread(dir));
      worker.push(await throughWorker(dir));
    }
    const latency = await kvLatency(dir);
    const result = {
      audit_appends_per_sec: { worker_signed: median(worker), in_thread_chain: median(inline), ratio: median(worker) / median(inline) },
      kv_latency_us: latency,
      entries: ENTRIES,
      rounds: ROUNDS,
    };
    if (flag("json")) {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    const a = result.audit_appends_per_sec;
    console.log(`Audit appends/s, ${IN_FLIGHT} in flight (median of ${ROUNDS} rounds of ${ENTRIES}; target ratio ≥ 0.50)`);
    console.log(`  in-thread batched + SHA-256 chain ${a.in_thread_chain.toFixed(0).padStart(8)}/s`);
    console.log(`  storage worker, chained + signed  ${a.worker_signed.toFixed(0).padStart(8)}/s   ratio ${a.ratio.toFixed(2)} ${a.ratio >= 0.5 ? "(meets target)" : "(BELOW TARGET)"}`);
    const l = latency;
    console.log("KV latency from the main thread, one call in flight (µs):");
    console.log(`  set  p50 ${l.set.p50.toFixed(0).padStart(6)}  p99 ${l.set.p99.toFixed(0).padStart(6)}   (in-thread better-sqlite3, autocommit: p50 ${l.inline_set.p50.toFixed(0)}, p99 ${l.inline_set.p99.toFixed(0)})`);
    console.log(`  get  p50 ${l.get.p50.toFixed(0).padStart(6)}  p99 ${l.get.p99.toFixed(0).padStart(6)}   (in-thread better-sqlite3: p50 ${l.inline_get.p50.toFixed(1)}, p99 ${l.inline_get.p99.toFixed(1)})`);
    emitRows([rateRow("Audit appends, storage worker chained + signed (floor: in-thread chained)", a.worker_signed, a.in_thread_chain, "/s", 0.5)]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
