/**
 * The whole-chain walk that boot leaves to the background when it verified only what came after the signed
 * checkpoint. It runs in a thread of its own (workers/audit-verifier.ts) on a read-only connection; a break it
 * finds is handled as boot handles one: logged at error level, recorded in the chain (so that no later boot can
 * make the log verify again), and the checkpoint stops moving.
 */
import { Worker } from "node:worker_threads";
import { CHAIN_BROKEN_ACTION, type BackgroundVerifyData, type BackgroundVerifyResult } from "../protocol/storage-messages";
import type { AuditLog } from "./audit-log";
import type { Logger } from "./logger";
import type { StorageClient } from "./storage-client";
import { workerEntry } from "./worker-entry";

/** A running background walk; `close()` stops it (at shutdown) and is idempotent. */
export interface BackgroundVerify {
  /** Settles when the walk ended and its outcome was handled (tests and shutdown wait on it). */
  readonly done: Promise<void>;
  /** True once the walk found the chain broken (GetStatus reports it from then on). */
  readonly broken: boolean;
  close(): Promise<void>;
}

export function startBackgroundVerify(options: {
  data: BackgroundVerifyData;
  storage: StorageClient;
  audit: AuditLog;
  logger: Logger;
}): BackgroundVerify {
  const { storage, audit, logger } = options;
  const worker = new Worker(workerEntry("audit-verifier"), { workerData: options.data, stdout: false, stderr: false });
  let stopped = false;
  let broken = false;
  const done = new Promise<void>((resolve) => {
    let answered = false;
    worker.once("message", (result: BackgroundVerifyResult) => {
      answered = true;
      if (stopped) return resolve();
      void handle(result).finally(resolve);
    });
    worker.once("error", (err) => {
      if (!stopped) logger.error("background audit verification failed", { error: err.message });
    });
    worker.once("exit", () => {
      if (!answered) resolve();
    });
  });

  async function handle(result: BackgroundVerifyResult): Promise<void> {
    if (!result.ok) {
      logger.error("background audit verification could not read the log", { error: result.message });
      return;
    }
    const { report, ms } = result;
    if (report.intact) {
      logger.info("audit chain verified in full (background)", { entries: report.entries, ms });
      return;
    }
    broken = true;
    logger.error("audit chain is broken (found by the background verification)", { entries: report.entries, ms, ...report.broken });
    await storage.distrustAudit();
    if (!report.marked && report.broken) {
      const { seq, id, reason } = report.broken;
      await audit.boot({ type: CHAIN_BROKEN_ACTION, broken_seq: seq, broken_id: id, reason }, reason);
    }
  }

  return {
    done,
    get broken() {
      return broken;
    },
    async close() {
      stopped = true;
      await worker.terminate();
      await done;
    },
  };
}
