/**
 * The audit chain: each entry's stored JSON text carries the previous entry's SHA-256, and its own hash is the
 * SHA-256 of that text, so any changed byte, removed row or reordering breaks a link. The last entry of every
 * committed batch carries an Ed25519 signature over its hash, which vouches for every entry before it.
 * Here: the format, hashing, verification and reads, shared by the storage worker, the kernel and `astrid audit`;
 * appending and signing belong to the worker (workers/storage/audit-chain.ts).
 */
import crypto, { createHash, createPrivateKey, createPublicKey, verify, type KeyObject } from "node:crypto";
import type Database from "better-sqlite3";
import { CHAIN_BROKEN_ACTION, type AuditEntry, type VerifyReport } from "../protocol/storage-messages";
import { ANCHOR_FILE, checkAuditHead, type AnchorRead, type AuditHead } from "./audit-head";

/** `previous_hash` of the first entry. */
export const GENESIS_HASH = "0".repeat(64);

// PKCS#8 DER prefix of an Ed25519 private key; the 32-byte seed follows it.
const ED25519_PKCS8_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");

/** The signing key from a 32-byte seed. */
export function privateKeyFromSeed(seed: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([ED25519_PKCS8_PREFIX, Buffer.from(seed)]), format: "der", type: "pkcs8" });
}

/** The verifying key for a seed. */
export function publicKeyFromSeed(seed: Uint8Array): KeyObject {
  return createPublicKey(privateKeyFromSeed(seed));
}

/**
 * The text that is stored and hashed for an entry: the worker's fields, the kernel's `auditBody`, then the previous
 * hash — the same bytes as `JSON.stringify` of the whole entry in that key order, built without re-serialising the
 * body. `id`, `timestamp` and `previousHash` never need escaping (a UUID, RFC 3339, hex).
 */
export function entryText(seq: number, id: string, timestamp: string, previousHash: string, body: string): string {
  return `{"seq":${seq},"id":"${id}","timestamp":"${timestamp}",${body.slice(1, -1)},"previous_hash":"${previousHash}"}`;
}

/** SHA-256 of an entry's stored text (the one-shot `crypto.hash` is about twice as fast as a Hash object). */
export function contentHash(content: string): Buffer {
  return hashOnce ? (hashOnce("sha256", content, "buffer") as Buffer) : createHash("sha256").update(content).digest();
}

// `crypto.hash` exists from Node 20.12; the type definitions for Node 20 may not declare it.
const hashOnce = (crypto as unknown as { hash?: (alg: string, data: string, enc: string) => Buffer | string }).hash;

interface Row {
  seq: number;
  content: string;
  hash: Buffer;
  signature: Buffer | null;
}

/**
 * Walks the whole chain in seq order and reports the first broken link, naming its seq, id and why. One read
 * transaction: a daemon committing meanwhile cannot make the rows and the recorded head disagree. A break that a
 * daemon recorded at boot (an `audit_chain_broken` entry) stays reported however many signed entries follow it.
 */
export function verifyChain(db: Database.Database, publicKey: KeyObject, options: WalkOptions = {}): VerifyReport {
  return db.transaction(() => walkChain(db, publicKey, options))();
}

/** Where a walk may start, and the head it must reach. */
export interface WalkOptions {
  /** Start after this checkpoint (`readCheckpoint`) when its entry is still there with its hash; else at entry 1. */
  from?: AuditHead;
  /** The anchor file as read (`readAnchor`): the chain must reach its head, with its hash. */
  anchor?: AnchorRead;
}

/** The signed checkpoint recorded in `meta`, when there is one and it is signed with this key. */
export function readCheckpoint(db: Database.Database, publicKey: KeyObject): AuditHead | undefined {
  const row = db.prepare("SELECT value FROM meta WHERE key = 'audit_checkpoint'").get() as { value: string } | undefined;
  if (!row) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.value);
  } catch {
    return undefined;
  }
  const head = checkAuditHead(parsed, publicKey, "checkpoint");
  return "problem" in head ? undefined : head;
}

interface Marker {
  seq: number;
  id: string | null;
  reason: string;
}

/**
 * The breaks earlier boots recorded, by the seq they name. Only a marker the daemon wrote counts: the daemon writes
 * it alone in its batch, so its own row carries a valid signature over its own hash. A marker forged into the
 * file (unsigned; a later signature on top does not sign that row) is ignored, so it can neither hide a break
 * from boot nor choose which break is reported.
 */
function recordedBreaks(db: Database.Database, publicKey: KeyObject, afterSeq: number): Map<number, Marker & { at: number }> {
  const markers = new Map<number, Marker & { at: number }>();
  const rows = db.prepare("SELECT seq, content, hash, signature FROM audit WHERE seq > ? AND content LIKE ?")
    .all(afterSeq, `%"type":"${CHAIN_BROKEN_ACTION}"%`) as Row[];
  for (const row of rows) {
    try {
      if (typeof row.content !== "string" || !Buffer.isBuffer(row.hash) || !Buffer.isBuffer(row.signature)) continue;
      if (!contentHash(row.content).equals(row.hash) || !verify(null, row.hash, publicKey, row.signature)) continue;
      const action = (JSON.parse(row.content) as { action?: { type?: unknown; broken_seq?: unknown; broken_id?: unknown; reason?: unknown } }).action;
      if (action?.type !== CHAIN_BROKEN_ACTION || typeof action.broken_seq !== "number") continue;
      if (!markers.has(action.broken_seq)) {
        markers.set(action.broken_seq, {
          seq: action.broken_seq, id: typeof action.broken_id === "string" ? action.broken_id : null, reason: String(action.reason ?? ""), at: row.seq,
        });
      }
    } catch {
      // An unparsable row is reported by the walk itself.
    }
  }
  return markers;
}

function walkChain(db: Database.Database, publicKey: KeyObject, options: WalkOptions): VerifyReport {
  const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('audit', 'meta')").pluck().all() as string[];
  if (tables.length < 2) {
    return { intact: false, entries: 0, signed_through: 0, broken: { seq: 1, id: null, reason: "the audit log's tables are missing (removed)" } };
  }
  const start = startAfter(db, options.from);
  // Markers are written after the break they name, so one recorded before the checkpoint cannot exist: a
  // checkpoint is only ever recorded over a chain found intact (see workers/storage.ts).
  const markers = recordedBreaks(db, publicKey, start?.seq ?? 0);
  let expected = start ? start.seq + 1 : 1;
  let previous = start ? start.hash : GENESIS_HASH;
  let signedThrough = start?.seq ?? 0;
  let last: Row | undefined;
  let lastId: string | null = null;
  const from = start ? { checkpoint_seq: start.seq } : {};
  const broken = (seq: number, id: string | null, reason: string): VerifyReport => ({
    intact: false, entries: expected - 1, signed_through: signedThrough, broken: { seq, id, reason }, marked: markers.has(seq), ...from,
  });
  for (const row of db.prepare("SELECT seq, content, hash, signature FROM audit WHERE seq >= ? ORDER BY seq").iterate(expected) as IterableIterator<Row>) {
    if (row.seq !== expected) {
      return broken(expected, null, `entry ${expected} is missing: the chain jumps from entry ${expected - 1} to entry ${row.seq}`);
    }
    // Column types are checked before use: a tampered row must be named, not crash the walk.
    if (typeof row.content !== "string") return broken(row.seq, null, "its stored content is not text (altered)");
    if (!Buffer.isBuffer(row.hash) || row.hash.length !== 32) return broken(row.seq, null, "its stored hash is not 32 bytes (altered)");
    if (row.signature !== null && !Buffer.isBuffer(row.signature)) return broken(row.seq, null, "its stored signature is not bytes (altered)");
    let parsed: { seq?: unknown; id?: unknown; previous_hash?: unknown };
    try {
      parsed = JSON.parse(row.content) as typeof parsed;
    } catch {
      return broken(row.seq, null, "its stored content is not valid JSON (altered)");
    }
    const id = typeof parsed.id === "string" ? parsed.id : null;
    if (!contentHash(row.content).equals(row.hash)) return broken(row.seq, id, "its content does not match its hash (altered)");
    if (parsed.seq !== row.seq) return broken(row.seq, id, `its content says seq ${String(parsed.seq)} (moved)`);
    if (parsed.previous_hash !== previous) {
      return broken(row.seq, id, `its previous_hash does not match entry ${row.seq - 1} (a link is broken)`);
    }
    if (row.signature) {
      if (!verify(null, row.hash, publicKey, row.signature)) return broken(row.seq, id, "its signature is invalid (wrong key or altered)");
      signedThrough = row.seq;
    }
    previous = row.hash.toString("hex");
    last = row;
    lastId = id;
    expected++;
  }
  if (last && !last.signature) return broken(last.seq, lastId, "the newest entry is not signed (entries after it were removed?)");
  const cut = anchorProblem(db, options.anchor, expected - 1);
  if (cut) return broken(cut.seq, null, cut.reason);
  const head = db.prepare("SELECT value FROM meta WHERE key = 'audit_head'").get() as { value: string } | undefined;
  if (head && !/^\d+$/.test(String(head.value))) {
    return broken(expected, null, `the recorded head of the log (${JSON.stringify(String(head.value).slice(0, 32))}) is not a number (altered)`);
  }
  const headSeq = head ? Number(head.value) : 0;
  if (headSeq > expected - 1) {
    return broken(expected, null, `entries ${expected}–${headSeq} are missing: the log was written up to ${headSeq}`);
  }
  const first = [...markers.values()].sort((a, b) => a.seq - b.seq)[0];
  if (first) {
    return {
      intact: false, entries: expected - 1, signed_through: signedThrough, marked: true, ...from,
      broken: { seq: first.seq, id: first.id, reason: `${first.reason} (found at boot; recorded by entry ${first.at})` },
    };
  }
  return { intact: true, entries: expected - 1, signed_through: signedThrough, ...from };
}

/** The checkpoint to start after, when its entry is still there, unaltered; otherwise the walk starts at entry 1. */
function startAfter(db: Database.Database, from: AuditHead | undefined): AuditHead | undefined {
  if (!from) return undefined;
  const row = db.prepare("SELECT content, hash FROM audit WHERE seq = ?").get(from.seq) as Pick<Row, "content" | "hash"> | undefined;
  if (!row || typeof row.content !== "string" || !Buffer.isBuffer(row.hash)) return undefined;
  const hash = row.hash.toString("hex");
  return hash === from.hash && contentHash(row.content).toString("hex") === hash ? from : undefined;
}

/** Why the chain (`lastSeq` entries, walked intact) disagrees with the anchor file, if it does. */
function anchorProblem(db: Database.Database, anchor: AnchorRead | undefined, lastSeq: number): { seq: number; reason: string } | undefined {
  if (!anchor || anchor.state === "absent") return undefined;
  if (anchor.state === "invalid") return { seq: lastSeq + 1, reason: `the head file var/${ANCHOR_FILE} cannot be trusted: ${anchor.problem}` };
  const { seq, hash } = anchor.anchor;
  if (seq > lastSeq) {
    const missing = seq === lastSeq + 1 ? `entry ${seq} is` : `entries ${lastSeq + 1}–${seq} are`;
    return { seq: lastSeq + 1, reason: `${missing} missing: var/${ANCHOR_FILE} records a signed head at entry ${seq} (the tail was cut)` };
  }
  const row = db.prepare("SELECT hash FROM audit WHERE seq = ?").get(seq) as { hash: Buffer } | undefined;
  if (!row || !Buffer.isBuffer(row.hash) || row.hash.toString("hex") !== hash) {
    return { seq, reason: `it does not match the signed head recorded in var/${ANCHOR_FILE} (the log was rewritten from there)` };
  }
  return undefined;
}

/** The newest `limit` entries with seq > `afterSeq`, oldest first. */
export function tailEntries(db: Database.Database, limit: number, afterSeq: number): AuditEntry[] {
  const rows = db
    .prepare("SELECT seq, content, hash, signature FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?")
    .all(afterSeq, limit) as Row[];
  return rows.reverse().map(toEntry);
}

/** The oldest `limit` entries with seq > `afterSeq` (a follower catching up reads these, skipping none). */
export function entriesAfter(db: Database.Database, afterSeq: number, limit: number): AuditEntry[] {
  const rows = db.prepare("SELECT seq, content, hash, signature FROM audit WHERE seq > ? ORDER BY seq LIMIT ?").all(afterSeq, limit) as Row[];
  return rows.map(toEntry);
}

/**
 * Every `capsule_lifecycle` entry about capsule `name` whose change is one of `changes`, oldest first. The text
 * filter only narrows the scan; each candidate is parsed and checked exactly.
 */
export function capsuleEntries(db: Database.Database, name: string, changes: readonly string[]): AuditEntry[] {
  const rows = db
    .prepare("SELECT seq, content, hash, signature FROM audit WHERE content LIKE ? ORDER BY seq")
    .all(`%"capsule":${JSON.stringify(name).replace(/[%_]/g, "")}%`) as Row[];
  return rows.map(toEntry).filter((e) => {
    const action = e.action as { type?: unknown; capsule?: unknown; change?: unknown };
    return action.type === "capsule_lifecycle" && action.capsule === name && changes.includes(String(action.change));
  });
}

/** A stored row as an entry; a row whose text is not JSON (tampered) is shown as such instead of failing the read. */
function toEntry(row: Row): AuditEntry {
  let entry: AuditEntry;
  try {
    entry = JSON.parse(row.content) as AuditEntry;
  } catch {
    const error = "its stored content is not valid JSON (altered; see astrid audit verify)";
    entry = {
      seq: row.seq, id: "", timestamp: "", session_id: "", previous_hash: "", hash: "",
      action: { type: "unreadable" }, authorization: { type: "unknown" }, outcome: { status: "failure", error },
    };
  }
  entry.seq = row.seq;
  entry.hash = Buffer.isBuffer(row.hash) ? row.hash.toString("hex") : String(row.hash);
  if (Buffer.isBuffer(row.signature)) entry.signature = row.signature.toString("base64");
  return entry;
}
