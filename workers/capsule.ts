/**
 * Thread entry point of one capsule: boots `capsule-host/` with the data the kernel passed in.
 */
// Hardened JavaScript first: every intrinsic is frozen before any other module runs (tsc keeps this order).
import "../capsule-host/lockdown";
import { parentPort, workerData } from "node:worker_threads";
import { runCapsule } from "../capsule-host/host";
import type { CapsuleWorkerData } from "../protocol/capsule-messages";

if (!parentPort) throw new Error("workers/capsule must run in a worker thread");
runCapsule(parentPort, workerData as CapsuleWorkerData);
