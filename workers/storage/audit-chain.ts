/**
 * The writer's half of the audit chain: what the storage worker checks before appending, and signing. The format,
 * hashing and verification every reader shares are in storage/audit-chain.ts.
 */
import { sign, type KeyObject } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import { auditBody, isAuditBody, type AuditInput } from "../../protocol/storage-messages";
import { entryText } from "../../storage/audit-chain";

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

/** Signs an entry hash. */
export function signHash(key: KeyObject, hash: Buffer): Buffer {
  return sign(null, hash, key);
}
