/**
 * Messages between the kernel and one capsule worker. Events flow one way (kernel → worker) as plain port
 * messages — no reply, no proxy — and the worker acknowledges them in batches so the kernel can bound the queue.
 * Capsule calls (syscalls) carry an id and get exactly one reply; the kernel checks each against the manifest.
 */

/** What the worker needs to start. */
export interface CapsuleWorkerData {
  name: string;
  /** Absolute path of the capsule's JavaScript module (checked to lie inside the capsule directory). */
  file: string;
  /** Resolved `[env]` values. */
  env: Record<string, string>;
  /** Interceptor actions declared in the manifest, so the host can check the module implements them. */
  actions: string[];
  /** The manifest's `ipc_publish`, so the host can tell which publishes will pass (the kernel checks them all). */
  publishAcl: string[];
  /** The lifecycle hook to run before setup: first load ever, or a version other than the one last installed. */
  lifecycle?: LifecycleHook;
  /** The port the kernel's control-plane calls (comlink) arrive on. */
  control: import("node:worker_threads").MessagePort;
}

/** `install` on a capsule's first load; `upgrade` (with the previously installed version) when its version changed. */
export type LifecycleHook = { hook: "install" } | { hook: "upgrade"; from: string };

/** What an interceptor decided (reference §6.7): go on (optionally with a new payload), stop, or refuse. */
export type InterceptResult = { action: "continue"; data?: unknown } | { action: "final"; data?: unknown } | { action: "deny"; reason: string };

/** The control plane a capsule worker exposes to the kernel (comlink). */
export interface CapsuleControl {
  /** Runs the interceptor `action` on an event and reports its decision. */
  intercept(action: string, event: { topic: string; payload: unknown; source_id: string; principal?: string; seq: number }): Promise<InterceptResult>;
  /** Runs tool `name` with `args`; a throw becomes `is_error: true` with its message. */
  executeTool(name: string, args: unknown): Promise<ToolOutcome>;
}

/** Kernel → worker. */
export type ToCapsule =
  | { t: "event"; topic: string; payload: unknown; source_id: string; principal?: string; seq: number; action?: string }
  | { t: "reply"; id: number; ok: true; value: unknown }
  | { t: "reply"; id: number; ok: false; code: string; message: string };

/** Calls a capsule can make; every one is checked in the main thread. */
export type SyscallName = "ipc.publish" | "ipc.subscribe" | "kv.get" | "kv.set" | "kv.delete" | "kv.list";

/** Worker → kernel. */
/** A tool a capsule offers, as it describes itself when ready. */
export interface ToolDescriptor {
  name: string;
  description: string;
  input_schema?: unknown;
}

/** What a tool run produced: `content` is the tool's return value (or the error message). */
export interface ToolOutcome {
  content: unknown;
  is_error: boolean;
}

export type FromCapsule =
  | { t: "ready"; tools: ToolDescriptor[] }
  | { t: "failed"; message: string }
  /** The lifecycle hook began (the kernel switches to the hook deadline) or finished (the kernel records the version). */
  | { t: "lifecycle"; phase: "started" | "done" }
  | { t: "syscall"; id: number; call: SyscallName; args: unknown[] }
  /**
   * A publish the host expects to pass (topic valid, in `ipc_publish`, within the size and rate limits): sent
   * without an id and never answered, which saves a message per publish. The kernel checks it like the syscall;
   * a refusal (a host that lied, or a rate window that drifted) is dropped, audited when denied, and logged.
   */
  | { t: "publish"; topic: string; payload: unknown }
  | { t: "log"; level: "debug" | "info" | "warn" | "error"; message: string }
  | { t: "ack"; n: number };

/** Largest payload a capsule may publish (reference §6.8). */
export const MAX_CAPSULE_PAYLOAD_BYTES = 5 * 1024 * 1024;
/** Most payload bytes one capsule may publish in a one-second window (reference §6.8 `max_ipc_throughput_bytes`). */
export const MAX_CAPSULE_PUBLISH_BYTES_PER_SEC = 10 * 1024 * 1024;

/** Events a capsule may have delivered but not yet handled before new ones are dropped (and counted). */
export const CAPSULE_QUEUE_LIMIT = 256;
