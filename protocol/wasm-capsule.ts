/**
 * What the kernel and a WebAssembly capsule's worker exchange beyond a JavaScript capsule's messages: the worker's
 * start data, the blocking host-call channel, and the description the worker gives of the component it loaded.
 *
 * A component's host calls are synchronous (WIT functions return values), while the kernel answers asynchronously
 * on the main thread. So each call goes out on its own port and the guest's thread waits with `Atomics.wait` on a
 * shared signal the kernel sets once the answer is posted; it reads the answer with `receiveMessageOnPort`. The same
 * signal counts events posted to the worker (so `recv` can sleep until one arrives) and says when the run ended.
 */
import { z } from "zod";
import type { CapsuleWorkerData } from "./capsule-messages";

/** Slots of the shared signal (an Int32Array). */
export const SIGNAL_REPLY = 0;
/** Incremented by the kernel after each event it posts to the worker. */
export const SIGNAL_EVENTS = 1;
/** 1 once the run ended: every wait returns at once. */
export const SIGNAL_CLOSED = 2;
export const SIGNAL_SLOTS = 4;

/** The component's description of where it comes from and what the guest needs. */
export interface WasmStart {
  /** The capsule directory (the binary and meta.json are looked up there). */
  dir: string;
  /** The component file as the manifest names it, relative to `dir`. */
  file: string;
  /** `$ASTRID_HOME/bin`: where a binary missing beside the manifest is found by its hash. */
  binDir: string;
  /** `$ASTRID_HOME/var/cache/wasm`: transpiled components, one directory per content hash. */
  cacheDir: string;
  /** The most linear memory the guest may have (bytes): the owner's max_memory_bytes. */
  maxMemoryBytes: number;
  /** The manifest's `[[interceptor]]` entries (a run-loop capsule's bindings). */
  interceptors: Array<{ event: string; action: string }>;
  /** What `check-capsule-capability` / `enumerate-capabilities` answer. */
  capabilities: string[];
  /** The blocking host-call port (worker → kernel requests, kernel → worker answers). */
  calls: import("node:worker_threads").MessagePort;
  /** The shared signal (SIGNAL_SLOTS Int32 slots). */
  signal: SharedArrayBuffer;
}

/** A WebAssembly capsule worker's start data. */
export interface WasmWorkerData extends CapsuleWorkerData {
  wasm: WasmStart;
}

/** One blocking host call, worker → kernel. */
export interface WasmCallRequest {
  call: string;
  args: unknown[];
  seq: number | null;
}

/** What the worker reports about the component once loaded. */
export const WasmDescriptionSchema = z.strictObject({
  /** BLAKE3 of the binary as installed (meta.json's wasm_hash). */
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  /** Where the binary was read: beside the manifest, or `$ASTRID_HOME/bin`. */
  source: z.enum(["capsule", "bin"]),
  /** The guest exports the component has (`astrid-hook-trigger`, `run`, …). */
  exports: z.array(z.string().max(256)).max(64),
  /** The host packages it imports (unversioned names). */
  imports: z.array(z.string().max(256)).max(64),
  /** The host ABI it was built for: the older single world `astrid:capsule@0.1.0`, or the per-domain packages. */
  abi: z.enum(["astrid:capsule@0.1.0", "astrid:*/host@1.0.0"]),
  /** The linear memory ceiling applied (bytes). */
  max_memory_bytes: z.number().int().positive(),
  /** Whether this load transpiled it (false: the cache had it). */
  transpiled: z.boolean(),
  /** How long verifying, transpiling and instantiating took (ms). */
  load_ms: z.number().min(0),
});
export type WasmDescription = z.infer<typeof WasmDescriptionSchema>;

/** The control plane of a WebAssembly capsule worker: a JavaScript capsule's, plus its description. */
export interface WasmControlExtra {
  describe(): Promise<WasmDescription | null>;
}
