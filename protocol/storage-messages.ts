/**
 * Messages between the kernel's storage client and the storage worker (one piscina task = one batch = one
 * transaction), the KV limits both sides enforce, and the audit entry shapes the CLI prints.
 */
import { AstridError, type ErrorCode } from "./errors";

/** Longest scope, in UTF-8 bytes. */
export const MAX_KV_SCOPE_BYTES = 256;
/** Longest key or prefix, in UTF-8 bytes. */
export const MAX_KV_KEY_BYTES = 1024;
/** Largest value, in bytes (8 MiB). */
export const MAX_KV_VALUE_BYTES = 8 * 1024 * 1024;

/** One storage operation. */
export type StorageOp =
  | { op: "kv.get"; scope: string; key: string }
  | { op: "kv.set"; scope: string; key: string; value: Uint8Array }
  | { op: "kv.delete"; scope: string; key: string }
  /** `after`: list only keys greater than it (the last key of the previous page); `limit`: at most this many. */
  | { op: "kv.list"; scope: string; prefix: string; after?: string; limit?: number }
  | { op: "kv.clear"; scope: string; prefix: string }
  /**
   * Appends entries in order; each body is `auditBody(input)`, serialised by the kernel so the batch crosses to
   * the worker as strings, not object graphs. Resolves with the seq and id of the last one.
   */
  | { op: "audit.append"; bodies: string[] }
  /**
   * `from_checkpoint`: start after the signed checkpoint (boot). A walk that finds the chain intact records a new
   * checkpoint at the head and lets the writer keep checkpointing; one that finds a break stops it.
   */
  | { op: "audit.verify"; from_checkpoint?: boolean }
  /** The background walk found a break: the writer stops moving the checkpoint forward. */
  | { op: "audit.distrust" }
  | { op: "audit.tail"; limit: number; afterSeq: number }
  /** Fault injection for tests; refused unless the pool was created with it enabled. */
  | { op: "crash" };

/** A batch: what one piscina task carries. */
export interface StorageTask {
  ops: StorageOp[];
}

/**
 * A failure as it crosses back from the worker: an AstridError does not survive structured cloning (its class and
 * brand are lost), so its registry code and message travel and the client rebuilds it with `storageError`.
 */
export interface StorageFailure {
  code: ErrorCode;
  message: string;
}

/** The outcome of one op. */
export type OpResult = { ok: true; value: unknown } | ({ ok: false } & StorageFailure);

/** What one task returns: per-op results, or a fatal error that failed the whole batch (e.g. an unopenable db). */
export type TaskResult = { results: OpResult[] } | { fatal: StorageFailure };

/** The coded error a failure from the storage worker stands for. */
export function storageError(failure: StorageFailure): AstridError {
  return new AstridError(failure.code, failure.message);
}

/** What the kernel asks to record; the worker adds seq, id, timestamp and the chain fields. */
export interface AuditInput {
  session_id: string;
  principal?: string;
  /** What happened, tagged by `type` (snake_case), e.g. `{"type":"admin_request","method":"GetStatus",…}`. */
  action: { type: string; [field: string]: unknown };
  /** Why it was allowed, tagged by `type`, e.g. `{"type":"not_required","reason":"…"}`. */
  authorization: { type: string; [field: string]: unknown };
  /** `code` (an `ASTRID_ERR_*`, when the failure had one) was added later: older entries lack it. */
  outcome: { status: "success"; details?: string | null } | { status: "failure"; error: string; code?: string };
}

/**
 * The JSON text of an entry's kernel-supplied fields, in the stored key order (session_id, principal, action,
 * authorization, outcome). The worker splices it between the fields it adds; see `entryContent`.
 */
export function auditBody(input: AuditInput): string {
  // The same text as JSON.stringify of {session_id, principal?, action, authorization, outcome}, without building
  // that object (this runs for every management request). Shapes are checked, so nothing serialises as `undefined`.
  const { session_id, principal, action, authorization, outcome } = input;
  if (typeof session_id !== "string") throw new TypeError("session_id must be a string");
  if (principal !== undefined && typeof principal !== "string") throw new TypeError("principal must be a string");
  const prefix = `{"session_id":${JSON.stringify(session_id)}${principal === undefined ? "" : `,"principal":${JSON.stringify(principal)}`}`;
  return `${prefix},"action":${objectJson(action)},"authorization":${objectJson(authorization)},"outcome":${objectJson(outcome)}}`;
}

/** JSON of a required object field; throws where JSON.stringify would drop the field or emit `null`. */
function objectJson(value: unknown): string {
  const json = typeof value === "object" && value !== null ? JSON.stringify(value) : undefined;
  if (json === undefined || json === "null") throw new TypeError("action, authorization and outcome must be JSON objects");
  return json;
}

/** True when `body` has the shape `auditBody` gives (a JSON object text that starts with the session id). */
export function isAuditBody(body: unknown): body is string {
  return typeof body === "string" && body.startsWith('{"session_id":') && body.endsWith("}");
}

/** `action.type` of the entry a daemon writes when boot verification finds the chain broken. */
export const CHAIN_BROKEN_ACTION = "audit_chain_broken";

/** A stored audit entry as the CLI shows it. */
export interface AuditEntry extends AuditInput {
  seq: number;
  id: string;
  timestamp: string;
  /** Hex SHA-256 of the previous entry (64 zeros for the first). */
  previous_hash: string;
  /** Hex SHA-256 of this entry. */
  hash: string;
  /** Base64 Ed25519 signature over `hash`, on the last entry of each committed batch. */
  signature?: string;
}

/** The result of verifying the chain. */
export interface VerifyReport {
  intact: boolean;
  entries: number;
  /** Highest seq covered by a valid signature. */
  signed_through: number;
  /**
   * Set when the walk started after a signed checkpoint instead of at entry 1: the entries up to it were verified
   * earlier (boot checks only what came after; the whole chain is walked in the background).
   */
  checkpoint_seq?: number;
  /** The first problem, when not intact. */
  broken?: { seq: number; id: string | null; reason: string };
  /**
   * True when an `audit_chain_broken` entry already records this break: a daemon found it at boot and wrote that
   * entry before extending the chain, so signing later entries on top can never make the log verify again.
   */
  marked?: boolean;
}

/** What the kernel hands the background audit verifier (workers/audit-verifier.ts). */
export interface BackgroundVerifyData {
  dbPath: string;
  /** The runtime key's public half (SPKI DER): the verifier can check signatures, never make them. */
  publicKeyDer: Uint8Array;
}

/** The verifier's one message: the whole chain's report, or why it could not walk it. */
export type BackgroundVerifyResult = { ok: true; report: VerifyReport; ms: number } | { ok: false; message: string };

/** A UTF-16 surrogate without its pair (with the `u` flag a proper pair is one code point, not `Cs`). */
const LONE_SURROGATE = /\p{Cs}/u;

/** Throws the coded error for a scope, key or value outside the limits. */
export function checkKv(scope: string, key: string | null, value?: Uint8Array, keyIsPrefix = false): void {
  // A lone surrogate has no UTF-8 form: two such keys would both be stored as U+FFFD and collide.
  if (scope.length === 0 || scope.includes("\0") || LONE_SURROGATE.test(scope) || Buffer.byteLength(scope) > MAX_KV_SCOPE_BYTES) {
    throw new AstridError("ASTRID_ERR_KV_SCOPE_INVALID", `KV scope must be 1–${MAX_KV_SCOPE_BYTES} bytes of Unicode text without NUL`);
  }
  if (key !== null) {
    if ((!keyIsPrefix && key.length === 0) || key.includes("\0") || LONE_SURROGATE.test(key) || Buffer.byteLength(key) > MAX_KV_KEY_BYTES) {
      throw new AstridError("ASTRID_ERR_KV_KEY_INVALID",
        `KV ${keyIsPrefix ? "prefix" : "key"} must be ${keyIsPrefix ? "0" : "1"}–${MAX_KV_KEY_BYTES} bytes of Unicode text without NUL`);
    }
  }
  if (value !== undefined && value.byteLength > MAX_KV_VALUE_BYTES) {
    throw new AstridError("ASTRID_ERR_KV_VALUE_TOO_LARGE", `KV value of ${value.byteLength} bytes exceeds the limit of ${MAX_KV_VALUE_BYTES} bytes`);
  }
}
