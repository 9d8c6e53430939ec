/**
 * `astrid audit verify|tail`: read `var/state.db` directly (read-only), so both work with the daemon stopped.
 */
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import type { AuditEntry, VerifyReport } from "../../protocol/storage-messages";
import type { AstridHome } from "../../kernel/home";
import { readRuntimeKey } from "../../kernel/runtime-key";
import { entriesAfter, publicKeyFromSeed, tailEntries, verifyChain } from "../../storage/audit-chain";
import { readAnchor, type AuditAnchor } from "../../storage/audit-head";
import { openStateDatabaseReadOnly } from "../../storage/database";

/** Entries a follower reads per query while catching up. */
const FOLLOW_PAGE = 1000;

/** Verifies the whole chain with the public half of keys/runtime.key, and against the anchor in var/. */
export function verifyAuditLog(home: AstridHome): VerifyReport {
  const key = publicKeyFromSeed(readRuntimeKey(path.join(home.keysDir, "runtime.key")));
  // The anchor first: a running daemon writes it only after the commit it names, so the log read next is never
  // older than it.
  const anchor = readAnchor(home.stateDbPath, key);
  const db = openStateDatabaseReadOnly(home.stateDbPath);
  try {
    return verifyChain(db, key, { anchor });
  } finally {
    db.close();
  }
}

/**
 * The signed head in var/audit-head.json, checked against keys/runtime.key: what to copy elsewhere (a notary, another
 * host) so that a log cut back to an earlier head can be recognised later.
 */
export function readAuditAnchor(home: AstridHome): AuditAnchor {
  const key = publicKeyFromSeed(readRuntimeKey(path.join(home.keysDir, "runtime.key")));
  const read = readAnchor(home.stateDbPath, key);
  if (read.state === "absent") {
    throw new AstridError("ASTRID_ERR_AUDIT_NO_ANCHOR",
      `${path.join(path.dirname(home.stateDbPath), "audit-head.json")} does not exist yet: a daemon writes it after its first verified boot`);
  }
  if (read.state === "invalid") throw new AstridError("ASTRID_ERR_AUDIT_BROKEN", `the audit head file cannot be trusted: ${read.problem}`);
  return read.anchor;
}

/** The anchor as one line a person can copy. */
export function describeAnchor(anchor: AuditAnchor): string {
  return `Audit head: entry ${anchor.seq}, sha256 ${anchor.hash}, signed ${anchor.written_at}\nsignature ${anchor.signature}`;
}

/** The human lines for a report; throws ASTRID_ERR_AUDIT_BROKEN when it is not intact. */
export function describeReport(report: VerifyReport): string {
  if (report.intact) return `Audit chain intact: ${report.entries} entries, signed through entry ${report.signed_through}.`;
  const b = report.broken!;
  throw new AstridError("ASTRID_ERR_AUDIT_BROKEN",
    `Audit chain broken at entry ${b.seq}${b.id ? ` (id ${b.id})` : ""}: ${b.reason}. ${report.entries} entries before it verified.`);
}

/** One readable line for an entry. */
export function formatEntry(e: AuditEntry): string {
  const { type, coalesced, first_at, last_at, ...rest } = e.action;
  // Repeated read-only requests of one connection, counted in one entry.
  const times = typeof coalesced === "number" ? ` ×${coalesced} more (${String(first_at)} … ${String(last_at)})` : "";
  const detail = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  // A failure shows its code first (entries written before codes were recorded show FAILED).
  const outcome = e.outcome.status === "success" ? "ok" : `${e.outcome.code ?? "FAILED"}: ${e.outcome.error}`;
  return `#${e.seq} ${e.timestamp} ${e.principal ?? "-"} ${type}${detail ? ` ${detail}` : ""}${times} → ${outcome}`;
}

/** Prints the newest `limit` entries, then (with `follow`) new ones as they are committed, until interrupted. */
export async function tailAuditLog(home: AstridHome, limit: number, json: boolean, follow: boolean, write: (line: string) => void): Promise<void> {
  const db = openStateDatabaseReadOnly(home.stateDbPath);
  try {
    let last = 0;
    const show = (entries: AuditEntry[]) => {
      for (const e of entries) {
        write(json ? JSON.stringify(e) : formatEntry(e));
        last = e.seq;
      }
    };
    // Read first: with `-n 0 --follow` nothing is shown, and following starts after what exists now.
    const head = db.prepare("SELECT coalesce(max(seq), 0) FROM audit").pluck().get() as number;
    show(tailEntries(db, limit, 0));
    if (!follow) return;
    last = Math.max(last, head);
    // Stop on Ctrl-C, kill or a closed terminal alike, so the database is closed (no -wal/-shm left behind).
    let stop = false;
    for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, () => (stop = true));
    while (!stop) {
      await new Promise((r) => setTimeout(r, 250));
      // Oldest first, in pages, until caught up: a follower that fell behind skips nothing.
      for (let page = entriesAfter(db, last, FOLLOW_PAGE); page.length > 0 && !stop; page = entriesAfter(db, last, FOLLOW_PAGE)) show(page);
    }
  } finally {
    db.close();
  }
}
