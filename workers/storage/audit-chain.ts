/**
 * The audit chain: each entry's stored JSON text carries the previous entry's SHA-256, and its own hash is the
 * SHA-256 of that text, so any changed byte, removed row or reordering breaks a link. The last entry of every
 * committed batch carries an Ed25519 signature over its hash, which vouches for every entry before it.
 */
import crypto, { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";
import type Database from "better-sqlite3";
import { AstridError } from "../../protocol/errors";
import { auditBody, isAuditBody, type AuditEntry, type AuditInput, type VerifyReport } from "../../protocol/storage-messages";

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

/** Refuses bodies that `auditBody` did not make, before any of a batch's entries is written. */
export function checkAuditBodies(bodies: readonly string[]): void {
  for (const body of bodies) {
    if (!isAuditBody(body)) {
      throw new AstridError("ASTRID_ERR_INTERNAL", "an audit body must be the JSON object auditBody() makes");
    }
  }
}

/** `entryText` for an entry given as an object (the in-thread baseline of bench/storage, tests). */
export function entryContent(seq: number, id: string, timestamp: string, previousHash: string, input: AuditInput): string {
  return entryText(seq, id, timestamp, previousHash, auditBody(input));
}

/** SHA-256 of an entry's stored text (the one-shot `crypto.hash` is about twice as fast as a Hash object). */
export function contentHash(content: string): Buffer {
  return hashOnce ? (hashOnce("sha256", content, "buffer") as Buffer) : createHash("sha256").update(content).digest();
}

// `crypto.hash` exists from Node 20.12; the type definitions for Node 20 may not declare it.
const hashOnce = (crypto as unknown as { hash?: (alg: string, data: string, enc: string) => Buffer | string }).hash;

/** Signs an entry hash. */
export function signHash(key: KeyObject, hash: Buffer): Buffer {
  return sign(null, hash, key);
}

interface Row {
  seq: number;
  content: string;
  hash: Buffer;
  signature: Buffer | null;
}

/** Walks the whole chain in seq order and reports the first broken link, naming its seq, id and why. */
export function verifyChain(db: Database.Database, publicKey: KeyObject): VerifyReport {
  let expected = 1;
  let previous = GENESIS_HASH;
  let signedThrough = 0;
  let last: Row | undefined;
  let lastId: string | null = null;
  const broken = (seq: number, id: string | null, reason: string): VerifyReport => ({
    intact: false, entries: expected - 1, signed_through: signedThrough, broken: { seq, id, reason },
  });
  for (const row of db.prepare("SELECT seq, content, hash, signature FROM audit ORDER BY seq").iterate() as IterableIterator<Row>) {
    if (row.seq !== expected) {
      return broken(expected, null, `entry ${expected} is missing: the chain jumps from entry ${expected - 1} to entry ${row.seq}`);
    }
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
  const head = db.prepare("SELECT value FROM meta WHERE key = 'audit_head'").get() as { value: string } | undefined;
  const headSeq = head ? Number(head.value) : 0;
  if (headSeq > expected - 1) {
    return broken(expected, null, `entries ${expected}–${headSeq} are missing: the log was written up to ${headSeq}`);
  }
  return { intact: true, entries: expected - 1, signed_through: signedThrough };
}

/** The newest `limit` entries with seq > `afterSeq`, oldest first. */
export function tailEntries(db: Database.Database, limit: number, afterSeq: number): AuditEntry[] {
  const rows = db
    .prepare("SELECT seq, content, hash, signature FROM audit WHERE seq > ? ORDER BY seq DESC LIMIT ?")
    .all(afterSeq, limit) as Row[];
  return rows.reverse().map((row) => {
    const entry = JSON.parse(row.content) as AuditEntry;
    entry.hash = row.hash.toString("hex");
    if (row.signature) entry.signature = row.signature.toString("base64");
    return entry;
  });
}
