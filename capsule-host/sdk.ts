/**
 * The capsule authoring SDK (`astrid-daemon/capsule`). A capsule module exports (default or `module.exports`) the
 * object `defineCapsule` returns. Plain JavaScript works; TypeScript gets the types. A capsule never imports
 * kernel internals: everything it can do goes through the `CapsuleApi` it is handed.
 */

/** A message delivered to a capsule: the guest view of the payload (raw_json/custom untagged). */
export interface CapsuleEvent {
  topic: string;
  payload: unknown;
  source_id: string;
  principal?: string;
  seq: number;
}

/** What a capsule can do; every call is checked by the kernel against the capsule's manifest. */
export interface CapsuleApi {
  /** The capsule's package name. */
  readonly name: string;
  ipc: {
    /** Publishes on `topic` (must match `ipc_publish`). `payload` is any JSON; objects become raw_json. */
    publish(topic: string, payload: unknown): Promise<void>;
    /** Receives messages matching `pattern` (the pattern must be allowed by `ipc_subscribe`). */
    subscribe(pattern: string, handler: (event: CapsuleEvent) => void | Promise<void>): Promise<void>;
  };
  /** The capsule's own KV scope (`default:capsule:<name>`); values are strings here, bytes in storage. */
  kv: {
    get(key: string): Promise<string | null>;
    set(key: string, value: string): Promise<void>;
    delete(key: string): Promise<boolean>;
    list(prefix?: string): Promise<string[]>;
  };
  /** Lines in the daemon's log, tagged with the capsule's name. */
  log: Record<"debug" | "info" | "warn" | "error", (message: string) => void>;
  /** Resolved `[env]` values; a missing key reads as "". */
  env: { get(key: string): string };
}

/** A tool other capsules can run by publishing `tool.v1.execute.<name>` (a `tool_execute_request`). */
export interface ToolDefinition {
  description?: string;
  /** JSON Schema of `args`, reported to whoever lists the tools. */
  inputSchema?: unknown;
  /** Runs the tool; the return value is the result's `content`, a throw makes `is_error: true`. */
  execute(args: unknown, api: CapsuleApi): unknown;
}

/** A capsule definition. */
export interface CapsuleDefinition {
  /** Tools by name. The result is published on `tool.v1.execute.<name>.result`. */
  tools?: Record<string, ToolDefinition>;
  /**
   * Runs once, before `setup`, the first time the daemon loads this capsule (no version recorded yet). A throw
   * fails the load; nothing is recorded, so the hook runs again on the next attempt.
   */
  install?(api: CapsuleApi): void | Promise<void>;
  /**
   * Runs once, before `setup`, when the manifest's version differs from the one recorded at the last successful
   * install or upgrade; `previousVersion` is that recorded version. A throw fails the load and keeps the old record.
   */
  upgrade?(api: CapsuleApi, previousVersion: string): void | Promise<void>;
  /** Runs once after load; subscribe here. The capsule is ready when it resolves. */
  setup?(api: CapsuleApi): void | Promise<void>;
  /**
   * `[[interceptor]] action` → handler, called for each matching event. In a chain (several capsules intercept
   * the same event, run by ascending priority) returning a value passes it on as the next payload, returning
   * `undefined` passes the payload on unchanged, `final(x)` stops the chain, and throwing denies the event.
   */
  interceptors?: Record<string, (event: CapsuleEvent, api: CapsuleApi) => unknown>;
}

/** What an interceptor returns to stop the chain with a final value (later interceptors do not run). */
export interface FinalResult {
  __astrid: "final";
  data?: unknown;
}

/** Ends the interceptor chain here with `data`. Throwing from an interceptor denies instead. */
export function final(data?: unknown): FinalResult {
  return { __astrid: "final", data };
}

/** Declares a capsule; returns the definition unchanged (it exists for the types). */
export function defineCapsule<T extends CapsuleDefinition>(definition: T): T {
  return definition;
}
