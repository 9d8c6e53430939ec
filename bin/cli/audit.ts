/**
 * `astrid audit verify|tail`: read `var/state.db` directly (read-only), so both work with the daemon stopped.
 */
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import type { AuditEntry, VerifyReport } from "../../protocol/storage-messages";
import type { AstridHome } from "../../kernel/home";
import { readRuntimeKey } from "../../kernel/runtime-key";
import { entriesAfter, publicKeyFromSeed, tailEntries, verifyChain } from "../../storage/audit-chain";
import { openStateDatabaseReadOnly } from "../../storage/database";

/** Entries a follower reads per query while catching up. */
const FOLLOW_PAGE = 1000;

/** Verifies the chain with the public half of keys/runtime.key. */
export function verifyAuditLog(home: AstridHome): VerifyReport {
  const key = publicKeyFromSeed(readRuntimeKey(path.join(home.keysDir, "runtime.key")));
  const db = openStateDatabaseReadOnly(home.stateDbPath);
  try {
    return verifyChain(db, key);
  } finally {
    db.close();
  }
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
  const { type, ...rest } = e.action;
  const detail = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
  const outcome = e.outcome.status === "success" ? "ok" : `FAILED: ${e.outcome.error}`;
  return `#${e.seq} ${e.timestamp} ${e.principal ?? "-"} ${type}${detail ? ` ${detail}` : ""} → ${outcome}`;
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
