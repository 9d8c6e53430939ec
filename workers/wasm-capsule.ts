/**
 * Thread entry point of one WebAssembly capsule: boots `workers/wasm-capsule/host.ts` with the data the kernel passed
 * in. The guest is confined by WebAssembly itself (it reaches nothing but its imports); the thread is locked down
 * (SES) all the same, before jco's glue and the host imports load, so a flaw in the glue or in our imports cannot be
 * turned into a change of the shared intrinsics.
 */
// Hardened JavaScript first: every intrinsic is frozen before any other module runs (tsc keeps this order).
import "../capsule-host/lockdown";
import { parentPort, workerData } from "node:worker_threads";
import type { WasmWorkerData } from "../protocol/wasm-capsule";
import { runWasmCapsule } from "./wasm-capsule/host";

if (!parentPort) throw new Error("workers/wasm-capsule must run in a worker thread");
runWasmCapsule(parentPort, workerData as WasmWorkerData);
