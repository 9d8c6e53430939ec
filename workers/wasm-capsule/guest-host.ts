/**
 * What the astrid host packages (host-imports.ts and the packages beside it) need from a WebAssembly capsule's
 * worker: blocking kernel calls, its subscriptions' queues, and the context of the current invocation.
 */
import type { SyscallResult } from "../../protocol/capsule-messages";

/** What the imports need from the worker's host. */
export interface GuestHost {
  /** A blocking syscall into the kernel. */
  call(name: string, ...args: unknown[]): SyscallResult;
  /** A publish the kernel checks without answering (ACL-allowed topics), else a blocking syscall. */
  publish(topic: string, payload: unknown): SyscallResult;
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
  env: Record<string, string>;
  capabilities: string[];
  /** Who the current invocation acts for (the message it runs on). */
  caller(): { principal?: string; sourceId: string };
  /** Registers a subscription the kernel accepted; returns its handle. */
  subscribe(pattern: string): bigint;
  /** Forgets a handle's queue. */
  unsubscribe(handle: bigint): void;
  /** Messages queued for a handle, after taking in what the kernel posted meanwhile. */
  take(handle: bigint): { messages: GuestMessage[]; dropped: bigint };
  /** Waits until the handle has messages or `ms` passed (or the run ended); true when it has some. */
  wait(handle: bigint, ms: number): boolean;
  /**
   * Sleeps until the kernel posts an event (or `ms` passed, or the run ended: then it throws). With `since` (an
   * `eventMark()` taken before looking at readiness), an event posted after that mark ends the wait at once: one
   * posted while the look's own host call ran is not lost.
   */
  waitEvents(ms: number, since?: number): void;
  /** The kernel's event count now, for `waitEvents(ms, since)` (absent in a host without events). */
  eventMark?(): number;
  /** Sleeps `ms`, waking early when the run ends. */
  sleep(ms: number): void;
  /** The manifest's interceptors as run-loop bindings. */
  bindings(): Array<{ handleId: bigint; action: string; topic: string }>;
  signalReady(): void;
}

/** A bus message as the guest sees it (`ipc-message`). */
export interface GuestMessage {
  topic: string;
  payload: string;
  sourceId: string;
  principal: { tag: "verified" | "claimed"; val: string } | { tag: "system" };
}
