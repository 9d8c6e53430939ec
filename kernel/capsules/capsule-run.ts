/**
 * One running (or starting) capsule worker, seen from the kernel: its two ports, its event queue accounting, and
 * the validation of everything it sends. The worker runs the capsule's code, so each message from it is parsed
 * with the schemas of `protocol/capsule-messages.ts`; a malformed one is dropped and counted, and a worker that
 * keeps sending them is failed (and restarted with backoff) by the supervisor.
 */
import { randomUUID } from "node:crypto";
import { MessageChannel, Worker } from "node:worker_threads";
import * as Comlink from "comlink";
import { z } from "zod";
import {
  CAPSULE_QUEUE_LIMIT,
  KERNEL_SYSCALL_METHODS,
  parseFromCapsule,
  type CapsuleControl,
  type CapsuleWorkerData,
  type FromCapsule,
  type KernelSyscalls,
  type ToCapsule,
} from "../../protocol/capsule-messages";
import { BoundedRemote, rpcChannel, type RpcChannel } from "../../protocol/rpc-channel";
import { comlinkGuard } from "../../protocol/rpc-guard";
import { workerEntry } from "../worker-entry";
import { capsuleWorkerOptions, type SpareWorkers } from "./spare-workers";
import type { CapsuleRecord } from "./registry";

/** What the kernel remembers of a message it gave a capsule: whose it was and its session. */
interface MessageContext {
  principal: string | undefined;
  sessionId?: string;
}

/** Messages given to a capsule whose principals it may still act for (by seq). */
const RECENT_MESSAGES = 4096;
/** Malformed messages a worker may send before it is failed (the first is logged and audited). */
export const MAX_MALFORMED_MESSAGES = 8;
/** Log lines a capsule may write per second; the rest are dropped and counted. */
export const MAX_CAPSULE_LOG_LINES_PER_SEC = 200;

/** How a worker is spawned. */
export interface SpawnOptions {
  maxHeapMb: number;
  /** Memory outside the V8 heap the capsule may hold (its owner's max_memory_bytes). */
  maxExternalBytes: number;
  /** The capsule's owner principal. */
  owner: string;
  /** The worker's entry (default `capsule`, a JavaScript capsule); `wasm-capsule` runs a WebAssembly component. */
  entry?: "capsule" | "wasm-capsule";
  /** Ports inside `data` that move to the worker (a WebAssembly capsule's host-call port). */
  transfer?: import("node:worker_threads").MessagePort[];
  /** Spare workers a JavaScript capsule may start in. */
  spares?: SpareWorkers;
}

/** What the run reports to its supervisor. */
export interface RunEvents {
  /** A valid data-plane message (acks are accounted here and not passed on). */
  message(run: CapsuleRun, message: Exclude<FromCapsule, { t: "ack" }>): void;
  /** A malformed message: `count` so far in this run; `reason` says what was wrong. */
  malformed(run: CapsuleRun, reason: string, count: number): void;
  /** The run ended (whatever the reason): release what the host holds for it. */
  ended(run: CapsuleRun): void;
}

/** One capsule worker and its accounting. */
export class CapsuleRun {
  /** The bus source id of everything this run publishes. */
  readonly sourceId = randomUUID();
  readonly worker: Worker;
  /** Calls into the capsule (load, hooks, setup, interceptors, tools), each with a deadline. */
  readonly remote: BoundedRemote<CapsuleControl>;
  private readonly channel: RpcChannel;
  /** Events delivered and not yet acknowledged (never more than CAPSULE_QUEUE_LIMIT). */
  outstanding = 0;
  /** Events dropped because the queue was full. */
  dropped = 0;
  /** When the oldest unacknowledged event was delivered (or the last ack arrived). */
  oldestUnacked = 0;
  readonly unsubscribe: Array<() => void> = [];
  subscriptions = 0;
  ended = false;
  /** Syscalls answered-to-be: bounded so a capsule cannot make the kernel hold unbounded work. */
  inflightSyscalls = 0;
  /** Publish throughput per principal acted for: bytes published in the one-second window that began at `start`. */
  readonly publishWindows = new Map<string, { start: number; bytes: number }>();
  private malformedCount = 0;
  private logWindowStart = 0;
  private logLines = 0;
  /**
   * The principal of each message recently given to the capsule, by its bus `seq` (`undefined`: it had none): the
   * last RECENT_MESSAGES deliveries and calls. A capsule names the message it acts on (its host tracks that per
   * async context); the kernel honours only a message it gave the capsule, so a capsule can act only for a principal
   * whose message it was handed — and never by guessing from the order of two ports (which Node does not keep).
   */
  private readonly recentMessages = new Map<number, MessageContext>();
  /** True while the capsule's install or upgrade hook runs (the only time it may elicit). */
  inLifecycleHook = false;
  /** Who the capsule belongs to: the principal whose capsules directory it was installed in. */
  readonly owner: string;
  /** Memory outside the V8 heap it may hold before it is failed. */
  readonly maxExternalBytes: number;
  /** When a refused reply-less publish was last logged, and how many were refused since (logged with the next). */
  refusedLoggedAt = -Infinity;
  refusedSinceLog = 0;
  /** Topics this run was allowed to publish on (valid, in its ipc_publish): not checked again (syscall-gate.ts). */
  readonly publishTopicsAllowed = new Set<string>();
  /** Publishes in the current one-second window (all principals together). */
  publishCount = 0;
  publishCountStart = 0;
  /** Log lines dropped by the per-second limit since the last line written (reported with the next one). */
  droppedLogLines = 0;
  /** Called after each event posted (a WebAssembly guest blocked in `recv` is woken by it). */
  posted: (() => void) | undefined;

  constructor(
    readonly record: CapsuleRecord,
    data: Omit<CapsuleWorkerData, "control">,
    options: SpawnOptions,
    syscalls: KernelSyscalls,
    private readonly events: RunEvents,
  ) {
    this.owner = options.owner;
    this.maxExternalBytes = options.maxExternalBytes;
    const { port1, port2 } = new MessageChannel();
    const workerData = { ...data, control: port2 };
    const transferList = [port2, ...(options.transfer ?? [])];
    const entry = options.entry ?? "capsule";
    // A JavaScript capsule takes a spare worker when one waits (it has already run lockdown and loaded the host).
    this.worker = (entry === "capsule" ? options.spares?.take(options.maxHeapMb, workerData, transferList) : undefined) ??
      new Worker(workerEntry(entry), { ...capsuleWorkerOptions(options.maxHeapMb), workerData, transferList });
    this.channel = rpcChannel(port1, comlinkGuard(KERNEL_SYSCALL_METHODS, (reason) => this.malformed(`control plane: ${reason}`)));
    this.remote = new BoundedRemote<CapsuleControl>(this.channel.caller, `capsule ${record.name}`);
    exposeSyscalls(syscalls, this.channel);
    this.worker.on("message", (raw: unknown) => this.receive(raw));
  }

  /** Sends a data-plane message (an event) unless the worker has ended. */
  post(message: ToCapsule): void {
    if (this.ended) return;
    this.worker.postMessage(message);
    this.posted?.();
  }

  /** Counts one more event delivered: message `seq`, on behalf of `principal` (the message's, if it had one). */
  delivered(seq: number, principal: string | undefined, sessionId?: string): void {
    if (this.outstanding === 0) this.oldestUnacked = Date.now();
    this.outstanding++;
    this.remember(seq, principal, sessionId);
  }

  /** Remembers that message `seq` (of `principal`, in session `sessionId`) was given to the capsule (a delivery, a tool or interceptor call). */
  remember(seq: number, principal: string | undefined, sessionId?: string): void {
    this.recentMessages.delete(seq);
    this.recentMessages.set(seq, sessionId === undefined ? { principal } : { principal, sessionId });
    if (this.recentMessages.size > RECENT_MESSAGES) this.recentMessages.delete(this.recentMessages.keys().next().value!);
  }

  /**
   * The principal the capsule acts for when it says it acts on message `seq` (reference: the invoking message's
   * principal, else the capsule owner's): that message's, if the kernel gave it the message; else the owner's.
   */
  principalFor(seq: unknown): string {
    return this.callerFor(seq).principal;
  }

  /** Whom the capsule acts for on message `seq`, and the session that message belongs to (when it names one). */
  callerFor(seq: unknown): { principal: string; sessionId?: string } {
    const known = typeof seq === "number" ? this.recentMessages.get(seq) : undefined;
    if (known === undefined) return { principal: this.owner };
    const principal = known.principal ?? this.owner;
    return known.sessionId === undefined ? { principal } : { principal, sessionId: known.sessionId };
  }

  /** True when the queue is full. */
  get queueFull(): boolean {
    return this.outstanding >= CAPSULE_QUEUE_LIMIT;
  }

  /**
   * Whether a log line may be written now (at most MAX_CAPSULE_LOG_LINES_PER_SEC): `write`, `drop`, or
   * `first-drop` for the first line dropped in a window (the supervisor says so once).
   */
  admitLogLine(): "write" | "drop" | "first-drop" {
    const now = performance.now();
    if (now - this.logWindowStart >= 1000) {
      this.logWindowStart = now;
      this.logLines = 0;
    }
    if (this.logLines >= MAX_CAPSULE_LOG_LINES_PER_SEC) return this.droppedLogLines++ === 0 ? "first-drop" : "drop";
    this.logLines++;
    return "write";
  }

  /** Ends the run: pending calls reject at once, subscriptions go, the worker is terminated. */
  async end(reason: string): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    this.remote.close(reason);
    this.channel.close();
    for (const off of this.unsubscribe.splice(0)) off();
    this.events.ended(this);
    await this.worker.terminate();
  }

  private receive(raw: unknown): void {
    if (this.ended) return;
    const parsed = parseFromCapsule(raw);
    if (!parsed.success) return this.malformed(`data plane: ${describe(parsed.error, raw)}`);
    const message = parsed.data;
    if (message.t !== "ack") {
      this.events.message(this, message);
      // A publish may carry the ack of the events handled before it.
      if (message.t === "publish" && message.ack !== undefined) this.acked(message.ack);
      return;
    }
    this.acked(message.n);
  }

  private acked(n: number): void {
    // An ack of more events than were delivered cannot be honest; it would also hide a hung handler.
    if (n > this.outstanding) return this.malformed(`data plane: ack of ${n} events with ${this.outstanding} outstanding`);
    this.outstanding -= n;
    this.oldestUnacked = Date.now();
  }

  /** Counts a malformed message or answer from the worker and reports it. */
  malformed(reason: string): void {
    if (this.ended) return;
    this.events.malformed(this, reason, ++this.malformedCount);
  }
}

/** Serves the capsule's syscalls on the channel; the guard has already checked the message's shape. */
function exposeSyscalls(syscalls: KernelSyscalls, channel: RpcChannel): void {
  // Only `syscall` is reachable: the guard refuses GET/SET/other paths before comlink sees them.
  Comlink.expose(syscalls, channel.callee);
}

/** A short, safe description of why `raw` is not a capsule message (never the message itself: it may be huge). */
function describe(error: z.ZodError, raw: unknown): string {
  if (typeof raw !== "object" || raw === null) return `not a message object (${typeof raw})`;
  const issue = error.issues[0];
  return issue ? `${issue.path.join(".") || "message"}: ${issue.message}`.slice(0, 200) : "invalid";
}
