/**
 * Boot steps 3–4 (reference §2.2): the runtime key, the storage worker (KV + audit in var/state.db), and the
 * audit chain's verification — with the decisions about a key or database that went missing. Runs once, before
 * the socket is bound, so its few synchronous file checks stall nobody.
 */
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../protocol/errors";
import { CHAIN_BROKEN_ACTION, type VerifyReport } from "../protocol/storage-messages";
import { publicKeyFromSeed } from "../storage/audit-chain";
import { anchorPath } from "../storage/audit-head";
import { startBackgroundVerify, type BackgroundVerify } from "./audit-background";
import { AuditLog } from "./audit-log";
import type { AstridHome } from "./home";
import type { Logger } from "./logger";
import { loadOrCreateRuntimeKey, tightenRuntimeKeyMode } from "./runtime-key";
import { StorageClient } from "./storage-client";

/** The opened storage, its audit log, and what verification found. */
export interface BootStorage {
  storage: StorageClient;
  audit: AuditLog;
  report: VerifyReport;
  /**
   * Starts the whole-chain walk that boot left to the background (it verified from a checkpoint); the daemon calls
   * it once ready, so the walk does not compete with the boot for the CPU, and closes it at shutdown.
   */
  startBackgroundWalk?: () => BackgroundVerify;
}

/** Opens storage and verifies the audit chain; a broken chain is recorded in the chain before anything is signed. */
export async function openBootStorage(home: AstridHome, sessionId: string, logger: Logger, allowFaultInjection: boolean): Promise<BootStorage> {
  const keyPath = path.join(home.keysDir, "runtime.key");
  // A key without a database means an earlier audit log was removed: say so, in the log and in the new chain.
  const logRemoved = fs.existsSync(keyPath) && !fs.existsSync(home.stateDbPath);
  // The anchor of a removed log would make the new one look cut back: keep it (evidence), out of the way.
  const anchor = anchorPath(home.stateDbPath);
  if (logRemoved && fs.existsSync(anchor)) fs.renameSync(anchor, `${anchor}.removed-${Date.now()}`);
  // A database without its key: a new key could never verify the old log, and the next boot would mark it broken
  // for good. Refuse instead, so the operator can restore the key.
  if (!fs.existsSync(keyPath) && fs.existsSync(home.stateDbPath) && holdsSignedAudit(home.stateDbPath)) {
    throw new AstridError("ASTRID_ERR_RUNTIME_KEY_INVALID",
      `${keyPath} is missing (or a dangling link) but ${home.stateDbPath} holds an audit log signed with it. ` +
        "Restore the key; to start a new signing identity and a new log, move state.db aside first.");
  }
  const seed = loadOrCreateRuntimeKey(keyPath);
  const looseMode = tightenRuntimeKeyMode(keyPath);
  if (looseMode !== null) {
    logger.warn("the runtime key was readable by others; its mode is 0600 again (whoever read it can sign audit entries)", {
      key: keyPath, mode: `0${looseMode.toString(8)}`,
    });
  }
  const storage = await StorageClient.open({ dbPath: home.stateDbPath, seed, logger, allowFaultInjection });
  try {
    const audit = new AuditLog(storage, sessionId);
    if (logRemoved) {
      logger.error("var/state.db is missing although keys/runtime.key exists: the earlier audit log and KV were removed; starting new ones", { db: home.stateDbPath });
      await audit.boot({ type: "audit_log_created", note: "keys/runtime.key predates this log: an earlier var/state.db was removed" });
    }
    // Boot time follows what was written since the last signed checkpoint, not the size of the log; the whole chain
    // is walked in the background (and by `astrid audit verify`).
    const report = await storage.verifyAudit({ fromCheckpoint: true });
    const startBackgroundWalk = report.checkpoint_seq === undefined ? undefined : () => startBackgroundVerify({
      data: { dbPath: home.stateDbPath, publicKeyDer: publicKeyFromSeed(seed).export({ type: "spki", format: "der" }) },
      storage, audit, logger,
    });
    if (report.intact) logger.info("audit chain verified", { entries: report.entries, from_checkpoint: report.checkpoint_seq });
    // Reference §2.2 step 4: problems are logged at error level and never block boot.
    else {
      logger.error("audit chain is broken", { entries: report.entries, ...report.broken });
      // Before anything is signed on top of it (a signature vouches for every entry before it), the break goes
      // into the chain itself, so that no later boot can make a tampered log verify again.
      if (!report.marked && report.broken) {
        const { seq, id, reason } = report.broken;
        await audit.boot({ type: CHAIN_BROKEN_ACTION, broken_seq: seq, broken_id: id, reason }, reason);
      }
    }
    return { storage, audit, report, startBackgroundWalk };
  } catch (err) {
    await storage.close();
    throw err;
  }
}

/** True when the (healthy) state database has signed audit entries; a damaged one throws STORAGE_CORRUPT. */
function holdsSignedAudit(dbPath: string): boolean {
  // Loaded here only: the main thread needs the native SQLite addon on this rare path alone (the storage worker
  // owns the database), and it costs every boot ~20 ms to load.
  const { openStateDatabaseReadOnly } = require("../storage/database") as typeof import("../storage/database");
  const db = openStateDatabaseReadOnly(dbPath);
  try {
    return db.prepare("SELECT 1 FROM audit WHERE signature IS NOT NULL LIMIT 1").get() !== undefined;
  } finally {
    db.close();
  }
}
