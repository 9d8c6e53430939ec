/**
 * Thread entry point of one capsule: boots `capsule-host/` with the data the kernel passed in — at creation, or,
 * for a spare started ahead of need (kernel/capsules/spare-workers.ts), in the first message it receives.
 */
// Hardened JavaScript first: every intrinsic is frozen before any other module runs (tsc keeps this order).
import "../capsule-host/lockdown";
import { parentPort, workerData } from "node:worker_threads";
import { runCapsule } from "../capsule-host/host";
import type { AssignMessage, CapsuleWorkerData } from "../protocol/capsule-messages";

if (!parentPort) throw new Error("workers/capsule must run in a worker thread");
const port = parentPort;
if ((workerData as { spare?: boolean } | null)?.spare === true) {
  port.once("message", (message: AssignMessage) => runCapsule(port, message.data));
} else {
  runCapsule(port, workerData as CapsuleWorkerData);
}
