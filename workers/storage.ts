/**
 * The storage worker: the one thread that owns `var/state.db`. Piscina runs it; each task is one batch of
 * operations, executed in one transaction, so every caller's promise resolves only after its batch commits.
 */
import { randomUUID, type KeyObject } from "node:crypto";
import { workerData } from "node:worker_threads";
import type Database from "better-sqlite3";
import { isAstridError } from "../protocol/errors";
import { nowRfc3339 } from "../protocol/timestamp";
import { checkKv, type OpResult, type StorageOp, type StorageTask, type TaskResult } from "../protocol/storage-messages";
import { contentHash, entryText, GENESIS_HASH, privateKeyFromSeed, publicKeyFromSeed, readCheckpoint, tailEntries, verifyChain } from "../storage/audit-chain";
import { readAnchor, signAuditHead, writeAnchor } from "../storage/audit-head";
import { checkAuditBodies, signHash } from "./storage/audit-chain";
import { openStateDatabase } from "./storage/database";

/** What the kernel hands the worker at start. */
export interface StorageWorkerData {
  dbPath: string;
  /** The 32-byte Ed25519 seed of keys/runtime.key. */
  seed: Uint8Array;
  /** Accept the `crash` op (tests only). */
  allowFaultInjection: boolean;
}

const config = workerData as StorageWorkerData;

interface State {
  db: Database.Database;
  signingKey: KeyObject;
  verifyKey: KeyObject;
  headSeq: number;
  headHash: string;
  /** The newest entry that carries a signature (every batch ends signed; so does any read of the chain). */
  signedSeq: number;
  stmts: ReturnType<typeof prepare>;
  /**
   * The chain was verified since this worker opened it: `intact` lets the checkpoint move forward over what this
   * worker appends on top; `broken` stops it. Until a verification ran, neither the checkpoint nor the anchor moves
   * (an anchor rewritten before boot compared the log with it would hide a cut tail).
   */
  trust: "unverified" | "intact" | "broken";
  checkpointSeq: number;
  /** The head last written to var/audit-head.json, and when. */
  anchoredSeq: number;
  anchoredAt: number;
  anchorTimer: NodeJS.Timeout | undefined;
}

/** Entries appended on top of a verified chain before the checkpoint moves up to the head. */
const CHECKPOINT_EVERY_ENTRIES = 10_000;
/** The anchor file is rewritten at most this often (and at close). */
const ANCHOR_INTERVAL_MS = 1000;
let state: State | undefined;

function prepare(db: Database.Database) {
  return {
    get: db.prepare("SELECT value FROM kv WHERE scope = ? AND key = ?").pluck(),
    set: db.prepare("INSERT INTO kv (scope, key, value) VALUES (?, ?, ?) ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value"),
    del: db.prepare("DELETE FROM kv WHERE scope = ? AND key = ?"),
    // LIMIT -1 is SQLite's "no limit".
    listRange: db.prepare("SELECT key FROM kv WHERE scope = ? AND key >= ? AND key < ? ORDER BY key LIMIT ?").pluck(),
    listFrom: db.prepare("SELECT key FROM kv WHERE scope = ? AND key >= ? ORDER BY key LIMIT ?").pluck(),
    clearAll: db.prepare("DELETE FROM kv WHERE scope = ?"),
    clearRange: db.prepare("DELETE FROM kv WHERE scope = ? AND key >= ? AND key < ?"),
    clearFrom: db.prepare("DELETE FROM kv WHERE scope = ? AND key >= ?"),
    append: db.prepare("INSERT INTO audit (seq, content, hash, signature) VALUES (?, ?, ?, NULL)"),
    sign: db.prepare("UPDATE audit SET signature = ? WHERE seq = ?"),
    setHead: db.prepare("INSERT INTO meta (key, value) VALUES ('audit_head', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
    setCheckpoint: db.prepare("INSERT INTO meta (key, value) VALUES ('audit_checkpoint', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"),
  };
}

function open(): State {
  if (state) return state;
  const db = openStateDatabase(config.dbPath);
  const last = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Buffer } | undefined;
  state = {
    db,
    signingKey: privateKeyFromSeed(config.seed),
    verifyKey: publicKeyFromSeed(config.seed),
    headSeq: last?.seq ?? 0,
    headHash: last ? last.hash.toString("hex") : GENESIS_HASH,
    signedSeq: last?.seq ?? 0,
    stmts: prepare(db),
    trust: "unverified",
    checkpointSeq: 0,
    anchoredSeq: -1,
    anchoredAt: 0,
    anchorTimer: undefined,
  };
  return state;
}

/** Keys are stored as UTF-8 bytes so prefix ranges compare bytewise, whatever characters they hold. */
const keyBytes = (key: string) => Buffer.from(key, "utf8");

/** The smallest byte string greater than every string starting with `prefix`, or null when there is none. */
function prefixEnd(prefix: Buffer): Buffer | null {
  const end = Buffer.from(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.subarray(0, i + 1);
    }
  }
  return null;
}

/** Keys of `scope` starting with `prefix`, in byte order, after the key `after` (a page's cursor), at most `limit`. */
function listKeys(s: State, scope: string, prefix: string, after?: string, limit = -1): Buffer[] {
  let start = keyBytes(prefix);
  const end = prefix === "" ? null : prefixEnd(start);
  if (after !== undefined) {
    // The first key greater than `after` is `after` + 0x00; a cursor before the prefix starts at the prefix.
    const next = Buffer.concat([keyBytes(after), Buffer.from([0])]);
    if (Buffer.compare(next, start) > 0) start = next;
  }
  return (end ? s.stmts.listRange.all(scope, start, end, limit) : s.stmts.listFrom.all(scope, start, limit)) as Buffer[];
}

function clearPrefix(s: State, scope: string, prefix: string): number {
  if (prefix === "") return s.stmts.clearAll.run(scope).changes;
  const start = keyBytes(prefix);
  const end = prefixEnd(start);
  return (end ? s.stmts.clearRange.run(scope, start, end) : s.stmts.clearFrom.run(scope, start)).changes;
}

function run(s: State, op: StorageOp): unknown {
  switch (op.op) {
    case "kv.get": {
      checkKv(op.scope, op.key);
      const value = s.stmts.get.get(op.scope, keyBytes(op.key)) as Buffer | undefined;
      return value === undefined ? null : new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    }
    case "kv.set":
      checkKv(op.scope, op.key, op.value);
      s.stmts.set.run(op.scope, keyBytes(op.key), Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength));
      return null;
    case "kv.delete":
      checkKv(op.scope, op.key);
      return s.stmts.del.run(op.scope, keyBytes(op.key)).changes > 0;
    case "kv.list":
      checkKv(op.scope, op.prefix, undefined, true);
      return listKeys(s, op.scope, op.prefix, op.after, op.limit).map((k) => k.toString("utf8"));
    case "kv.clear":
      checkKv(op.scope, op.prefix, undefined, true);
      return clearPrefix(s, op.scope, op.prefix);
    case "audit.append": {
      checkAuditBodies(op.bodies);
      let last = { seq: s.headSeq, id: "" };
      op.bodies.forEach((body) => {
        const seq = s.headSeq + 1;
        const id = randomUUID();
        const content = entryText(seq, id, nowRfc3339(), s.headHash, body);
        const hash = contentHash(content);
        s.stmts.append.run(seq, content, hash);
        s.headSeq = seq;
        s.headHash = hash.toString("hex");
        last = { seq, id };
      });
      return last;
    }
    case "audit.verify": {
      signHead(s);
      const from = op.from_checkpoint ? readCheckpoint(s.db, s.verifyKey) : undefined;
      const report = verifyChain(s.db, s.verifyKey, { ...(from ? { from } : {}), anchor: readAnchor(config.dbPath, s.verifyKey) });
      if (report.intact) {
        if (s.trust !== "broken") {
          s.trust = "intact";
          recordCheckpoint(s);
        }
      } else s.trust = "broken";
      return report;
    }
    case "audit.distrust":
      s.trust = "broken";
      return null;
    case "audit.tail":
      signHead(s);
      return tailEntries(s.db, op.limit, op.afterSeq);
    case "crash":
      if (config.allowFaultInjection) process.exit(70);
      throw new Error("fault injection is disabled");
  }
}

/**
 * Signs the newest entry, which vouches for every entry before it, and records the head. Runs at the end of each
 * batch that appended, and before a read of the chain in the middle of one (it must not see an unsigned tail).
 */
function signHead(s: State): void {
  if (s.headSeq === s.signedSeq) return;
  s.stmts.sign.run(signHash(s.signingKey, Buffer.from(s.headHash, "hex")), s.headSeq);
  s.stmts.setHead.run(String(s.headSeq));
  s.signedSeq = s.headSeq;
  if (s.trust === "intact" && s.headSeq - s.checkpointSeq >= CHECKPOINT_EVERY_ENTRIES) recordCheckpoint(s);
}

/** Moves the signed checkpoint to the (signed) head; only over a chain verified intact, plus what we appended. */
function recordCheckpoint(s: State): void {
  if (s.headSeq === 0) return;
  s.stmts.setCheckpoint.run(JSON.stringify(signAuditHead(s.signingKey, "checkpoint", s.headSeq, s.headHash)));
  s.checkpointSeq = s.headSeq;
}

/**
 * Rewrites var/audit-head.json with the committed, signed head: now when the last write is a second old, else
 * by a timer. Only after this worker verified the chain, so a boot compares the log with the anchor the previous
 * daemon left. A failure (a full disk) is retried with the next batch; it never fails the batch.
 */
function anchorHead(s: State, force = false): void {
  // An empty chain has no head to anchor (a signed head starts at entry 1; a seq-0 anchor read as invalid).
  if (s.trust === "unverified" || s.anchoredSeq === s.signedSeq || s.signedSeq === 0) return;
  const wait = s.anchoredAt + ANCHOR_INTERVAL_MS - Date.now();
  if (wait > 0 && !force) {
    s.anchorTimer ??= setTimeout(() => {
      s.anchorTimer = undefined;
      if (state === s) anchorHead(s);
    }, wait).unref();
    return;
  }
  clearTimeout(s.anchorTimer);
  s.anchorTimer = undefined;
  s.anchoredAt = Date.now();
  try {
    writeAnchor(config.dbPath, { ...signAuditHead(s.signingKey, "anchor", s.signedSeq, s.headHash), written_at: nowRfc3339() });
    s.anchoredSeq = s.signedSeq;
  } catch {
    // Retried after the next commit; the chain itself is safe in state.db.
  }
}

/** One batch: all ops in one transaction; a bad op fails alone, a database error fails the batch. */
export default function runBatch(task: StorageTask | { close: true }): TaskResult {
  if ("close" in task) {
    if (state) {
      // The next boot verifies from here: everything up to the head is the verified chain plus our own appends.
      if (state.trust === "intact" && state.checkpointSeq !== state.signedSeq) {
        try {
          recordCheckpoint(state);
        } catch {
          // A full disk: the next boot verifies from the older checkpoint instead.
        }
      }
      anchorHead(state, true);
    }
    state?.db.close();
    state = undefined;
    return { results: [] };
  }
  let s: State;
  try {
    s = open();
  } catch (err) {
    return { fatal: { code: isAstridError(err) ? err.code : "ASTRID_ERR_STORAGE_CORRUPT", message: (err as Error).message } };
  }
  const before = { seq: s.headSeq, hash: s.headHash, signed: s.signedSeq };
  try {
    const results = s.db.transaction(() => {
      const out: OpResult[] = task.ops.map((op) => {
        try {
          return { ok: true, value: run(s, op) };
        } catch (err) {
          if (!isAstridError(err)) throw err;
          return { ok: false, code: err.code, message: err.message };
        }
      });
      signHead(s);
      return out;
    })();
    anchorHead(s);
    return { results };
  } catch (err) {
    // The transaction rolled back: so does the in-memory chain head.
    s.headSeq = before.seq;
    s.headHash = before.hash;
    s.signedSeq = before.signed;
    // A full disk: the writes of the batch are refused with a code that says so, and its reads still answer
    // (a read must not fail because an audit entry queued beside it could not be stored). SQLite rolled back.
    if ((err as { code?: unknown }).code === "SQLITE_FULL") {
      const message = `the disk holding ${config.dbPath} is full: the write was not stored (free some space; reads keep working)`;
      return {
        results: task.ops.map((op): OpResult => {
          if (op.op !== "kv.get" && op.op !== "kv.list") return { ok: false, code: "ASTRID_ERR_STORAGE_FULL", message };
          try {
            return { ok: true, value: run(s, op) };
          } catch (readErr) {
            return isAstridError(readErr)
              ? { ok: false, code: readErr.code, message: readErr.message }
              : { ok: false, code: "ASTRID_ERR_STORAGE_UNAVAILABLE", message: `storage read failed: ${(readErr as Error).message}` };
          }
        }),
      };
    }
    return { fatal: { code: "ASTRID_ERR_STORAGE_UNAVAILABLE", message: `storage batch failed: ${(err as Error).message}` } };
  }
}
