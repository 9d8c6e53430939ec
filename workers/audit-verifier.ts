/**
 * Thread entry point of the background audit verification: walks the whole chain on a read-only connection of its
 * own (WAL lets it read while the storage worker writes), then reports and exits. Boot verified only what came
 * after the signed checkpoint; this closes the gap without holding the writer or the socket up.
 */
import { createPublicKey } from "node:crypto";
import { parentPort, workerData } from "node:worker_threads";
import { verifyChain } from "../storage/audit-chain";
import { readAnchor } from "../storage/audit-head";
import { openStateDatabaseReadOnly } from "../storage/database";
import type { BackgroundVerifyData, BackgroundVerifyResult } from "../protocol/storage-messages";

if (!parentPort) throw new Error("workers/audit-verifier must run in a worker thread");

const { dbPath, publicKeyDer } = workerData as BackgroundVerifyData;
let result: BackgroundVerifyResult;
const started = performance.now();
try {
  const key = createPublicKey({ key: Buffer.from(publicKeyDer), format: "der", type: "spki" });
  const db = openStateDatabaseReadOnly(dbPath);
  try {
    result = { ok: true, report: verifyChain(db, key, { anchor: readAnchor(dbPath, key) }), ms: Math.round(performance.now() - started) };
  } finally {
    db.close();
  }
} catch (err) {
  result = { ok: false, message: (err as Error).message };
}
parentPort.postMessage(result);
