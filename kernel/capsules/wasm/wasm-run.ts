/**
 * The kernel's side of a WebAssembly capsule (a `[[component]] file` ending in `.wasm`): what its worker is started
 * with, and the blocking host-call channel. Each call the guest makes arrives on the channel's port, goes through
 * the same syscall gate as a JavaScript capsule's (manifest, principal, audit, quotas, VFS, network guard), and its
 * answer is posted back before the shared signal wakes the guest's thread. Events posted to the worker bump the
 * signal's event counter (a guest waiting in `recv` wakes); the run's end sets `closed` and wakes every wait.
 */
import path from "node:path";
import { MessageChannel } from "node:worker_threads";
import type { KernelSyscalls, SyscallName, SyscallResult } from "../../../protocol/capsule-messages";
import { SIGNAL_CLOSED, SIGNAL_EVENTS, SIGNAL_REPLY, SIGNAL_SLOTS, WasmDescriptionSchema, type WasmControlExtra, type WasmDescription, type WasmStart } from "../../../protocol/wasm-capsule";
import type { CapsuleRun } from "../capsule-run";
import type { CapsuleRecord } from "../registry";

/**
 * How long a WebAssembly capsule's load may take: its first load verifies and transpiles the component (seconds for
 * a 12 MB ComponentizeJS guest on a loaded machine), longer than a JavaScript capsule's ready timeout.
 */
export const WASM_LOAD_TIMEOUT_MS = 120_000;

/** True when the capsule's component is a WebAssembly binary (else it is a JavaScript module). */
export function isWasmCapsule(record: CapsuleRecord): boolean {
  const component = record.manifest.component[0];
  return (component?.file ?? component?.entrypoint ?? "").toLowerCase().endsWith(".wasm");
}

/** The capabilities `enumerate-capabilities` lists: the manifest's non-empty or true entries. */
function declaredCapabilities(record: CapsuleRecord): string[] {
  return Object.entries(record.manifest.capabilities)
    .filter(([, value]) => (Array.isArray(value) ? value.length > 0 : value === true))
    .map(([name]) => name);
}

/** A WebAssembly capsule's launch: the worker's extra start data and the kernel end of its host-call channel. */
export class WasmLaunch {
  readonly start: WasmStart;
  private readonly signal: Int32Array;
  private readonly port: import("node:worker_threads").MessagePort;

  constructor(record: CapsuleRecord, homeRoot: string, maxMemoryBytes: number) {
    const { port1, port2 } = new MessageChannel();
    const shared = new SharedArrayBuffer(SIGNAL_SLOTS * Int32Array.BYTES_PER_ELEMENT);
    this.signal = new Int32Array(shared);
    this.port = port1;
    const component = record.manifest.component[0]!;
    this.start = {
      dir: record.dir,
      file: component.file ?? component.entrypoint ?? "",
      binDir: path.join(homeRoot, "bin"),
      cacheDir: path.join(homeRoot, "var", "cache", "wasm"),
      maxMemoryBytes,
      interceptors: record.manifest.interceptor.map((i) => ({ event: i.event, action: i.action })),
      capabilities: declaredCapabilities(record),
      calls: port2,
      signal: shared,
    };
  }

  /** Serves the guest's blocking calls through `syscalls` for as long as `run` lives. */
  attach(run: CapsuleRun, syscalls: KernelSyscalls): void {
    let closed = false;
    this.port.on("message", (raw: unknown) => {
      const request = raw as { call?: unknown; args?: unknown; seq?: unknown } | null;
      const valid = request !== null && typeof request === "object" && typeof request.call === "string" && Array.isArray(request.args) &&
        (request.seq === null || typeof request.seq === "number");
      const answer: Promise<SyscallResult> = valid
        ? syscalls.syscall(request.call as SyscallName, request.args as unknown[], request.seq as number | null)
        : Promise.resolve({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID", message: "malformed host call" });
      if (!valid) run.malformed("host-call channel: malformed request");
      void answer.then((result) => {
        if (closed) return;
        this.port.postMessage(result);
        Atomics.store(this.signal, SIGNAL_REPLY, 1);
        Atomics.notify(this.signal, SIGNAL_REPLY);
      });
    });
    run.posted = () => {
      Atomics.add(this.signal, SIGNAL_EVENTS, 1);
      Atomics.notify(this.signal, SIGNAL_EVENTS);
      // A guest waiting on a host call takes the event in too (and acknowledges it), so it never looks hung.
      Atomics.notify(this.signal, SIGNAL_REPLY);
    };
    // Unloading (a drain or the run's end) wakes whatever the guest waits on; its calls then fail at once.
    run.unsubscribe.push(() => {
      if (closed) return;
      closed = true;
      Atomics.store(this.signal, SIGNAL_CLOSED, 1);
      for (const slot of [SIGNAL_REPLY, SIGNAL_EVENTS, SIGNAL_CLOSED]) Atomics.notify(this.signal, slot);
      this.port.close();
    });
  }
}

/** Asks a loaded WebAssembly capsule's worker what it loaded (hash, exports, memory); null if it cannot say. */
export async function describeWasm(run: CapsuleRun, timeoutMs: number): Promise<WasmDescription | null> {
  const raw = await run.remote.call((c) => (c as unknown as WasmControlExtra).describe() as Promise<unknown>, timeoutMs);
  const parsed = WasmDescriptionSchema.nullable().safeParse(raw);
  if (!parsed.success) {
    run.malformed("control plane: malformed answer to describe");
    return null;
  }
  return parsed.data;
}
