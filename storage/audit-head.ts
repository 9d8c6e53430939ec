/**
 * Signed heads of the audit chain: a statement "entry N has hash H", signed with the runtime key. Two uses:
 *
 * - the **checkpoint** (in `meta`, key `audit_checkpoint`): a head the daemon verified (or wrote itself on top of a
 *   verified chain). Boot verifies from it instead of from entry 1, so its cost follows what was written since, not
 *   the size of the log; the whole chain is still walked, in the background, and by `astrid audit verify`.
 * - the **anchor** (`var/audit-head.json`, outside the database): the newest signed head, rewritten at most once a
 *   second after commits and at shutdown. A log whose tail was cut back to an earlier signed entry still verifies on
 *   its own; against the anchor it does not. `astrid audit anchor` prints it, to keep a copy elsewhere.
 */
import fs from "node:fs";
import path from "node:path";
import { sign, verify, type KeyObject } from "node:crypto";

/** A signed head: entry `seq` has SHA-256 `hash` (hex). */
export interface AuditHead {
  seq: number;
  hash: string;
  /** Ed25519 over `astrid-audit-<kind>:v1:<seq>:<hash>`, base64. */
  signature: string;
}

/** The anchor file's content. */
export interface AuditAnchor extends AuditHead {
  /** When it was written (RFC 3339). */
  written_at: string;
}

export type HeadKind = "checkpoint" | "anchor";

/** The anchor's file name, beside state.db in var/. */
export const ANCHOR_FILE = "audit-head.json";

/** The anchor file of a state database. */
export function anchorPath(dbPath: string): string {
  return path.join(path.dirname(dbPath), ANCHOR_FILE);
}

function message(kind: HeadKind, seq: number, hash: string): Buffer {
  return Buffer.from(`astrid-audit-${kind}:v1:${seq}:${hash}`, "utf8");
}

/** Signs a head. */
export function signAuditHead(key: KeyObject, kind: HeadKind, seq: number, hash: string): AuditHead {
  return { seq, hash, signature: sign(null, message(kind, seq, hash), key).toString("base64") };
}

/** The head in `value` when it is well formed and signed by `publicKey`; otherwise why not. */
export function checkAuditHead(value: unknown, publicKey: KeyObject, kind: HeadKind): AuditHead | { problem: string } {
  const v = value as Partial<AuditHead> | null;
  if (typeof v !== "object" || v === null || !Number.isSafeInteger(v.seq) || (v.seq as number) < 1 ||
      typeof v.hash !== "string" || !/^[0-9a-f]{64}$/.test(v.hash) || typeof v.signature !== "string") {
    return { problem: "it is not a signed head ({seq, hash, signature})" };
  }
  const head = { seq: v.seq as number, hash: v.hash, signature: v.signature };
  let valid = false;
  try {
    valid = verify(null, message(kind, head.seq, head.hash), publicKey, Buffer.from(head.signature, "base64"));
  } catch {
    valid = false;
  }
  return valid ? head : { problem: "its signature is not this daemon's (altered, or written with another key)" };
}

/** The anchor file as found: absent, a signed head, or unreadable/unsigned (with why). */
export type AnchorRead = { state: "absent" } | { state: "ok"; anchor: AuditAnchor } | { state: "invalid"; problem: string };

/** Reads and checks the anchor file next to `dbPath`. */
export function readAnchor(dbPath: string, publicKey: KeyObject): AnchorRead {
  let text: string;
  try {
    text = fs.readFileSync(anchorPath(dbPath), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { state: "absent" };
    return { state: "invalid", problem: `it cannot be read (${(err as Error).message})` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { state: "invalid", problem: "it is not JSON (altered)" };
  }
  const head = checkAuditHead(parsed, publicKey, "anchor");
  if ("problem" in head) return { state: "invalid", problem: head.problem };
  const writtenAt = (parsed as { written_at?: unknown }).written_at;
  return { state: "ok", anchor: { ...head, written_at: typeof writtenAt === "string" ? writtenAt : "" } };
}

/**
 * Writes the anchor durably: a temporary file, fsync, rename over the old one, fsync of the directory. A crash
 * leaves the old anchor or the new one, never half of either.
 */
export function writeAnchor(dbPath: string, anchor: AuditAnchor): void {
  const file = anchorPath(dbPath);
  const tmp = `${file}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeSync(fd, `${JSON.stringify(anchor)}\n`);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  const dir = fs.openSync(path.dirname(file), "r");
  try {
    fs.fsyncSync(dir);
  } finally {
    fs.closeSync(dir);
  }
}
