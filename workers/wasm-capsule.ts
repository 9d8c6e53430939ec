/**
 * Thread entry point of one WebAssembly capsule: boots `workers/wasm-capsule/host.ts` with the data the kernel passed
 * in. The guest is confined by WebAssembly itself (it reaches nothing but its imports), so no SES here.
 */
import { parentPort, workerData } from "node:worker_threads";
import type { WasmWorkerData } from "../protocol/wasm-capsule";
import { runWasmCapsule } from "./wasm-capsule/host";

if (!parentPort) throw new Error("workers/wasm-capsule must run in a worker thread");
runWasmCapsule(parentPort, workerData as WasmWorkerData);
