/**
 * Runs inside a WebAssembly capsule's worker thread: loads its component (verified, transpiled once per hash,
 * memory capped), serves the kernel's control plane (load, lifecycle hooks, setup, interceptor calls) by calling
 * the guest's exports, and gives the guest its host imports. The guest's host calls are synchronous: each waits on
 * the shared signal for the kernel's answer (protocol/wasm-capsule.ts), so the thread sleeps, never spins.
 */
import { pathToFileURL } from "node:url";
import fs from "node:fs/promises";
import path from "node:path";
import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import * as Comlink from "comlink";
import type {
  CapsuleControl,
  CapsuleEventMessage,
  FromCapsule,
  InterceptResult,
  SetupOutcome,
  StepOutcome,
  SyscallResult,
  ToolOutcome,
} from "../../protocol/capsule-messages";
import { MAX_CAPSULE_TEXT_CHARS } from "../../protocol/capsule-limits";
import { rpcChannel } from "../../protocol/rpc-channel";
import { busTopicMatches, exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import {
  SIGNAL_CLOSED,
  SIGNAL_EVENTS,
  SIGNAL_REPLY,
  type WasmCallRequest,
  type WasmControlExtra,
  type WasmDescription,
  type WasmWorkerData,
} from "../../protocol/wasm-capsule";
import { ENTRY, prepareComponent, WasmLoadError } from "./component-cache";
import { hostImports, versionedImports, type GuestHost, type GuestMessage } from "./host-imports";
import { hostImportsV0, importsV0, V0_ABI, V0_PROVIDED } from "./host-imports-v0";
import { mapResult } from "./hook-result";
import { capMemories } from "./memory-limit";

/** The host packages this worker provides (unversioned, as jco names them). */
const PROVIDED = ["astrid:ipc/host", "astrid:kv/host", "astrid:sys/host", "astrid:fs/host", "astrid:http/host", "astrid:process/host", "astrid:identity/host", "astrid:uplink/host", "astrid:net/host", "astrid:approval/host", "astrid:elicit/host", "astrid:io/poll", "astrid:io/streams", "astrid:io/error"];
/** Messages one subscription holds before older ones are dropped (and counted in `dropped`). */
const SUBSCRIPTION_BUFFER = 1024;
/** Messages whose principal the guest may still ask about (`get-caller`). */
const RECENT_MESSAGES = 1024;
/** Reply-less publishes only for payloads this small (larger ones take the syscall, which reports refusals). */
const FAST_PUBLISH_MAX_BYTES = 64 * 1024;
/** Most payload bytes one poll/recv answer carries (the reference's cap); the rest waits for the next call. */
export const MAX_DRAIN_PAYLOAD_BYTES = 10 * 1024 * 1024;
/** Most `[[interceptor]]`s a run-loop capsule may declare: each is a subscription it drains by handle (reference). */
export const MAX_RUN_LOOP_INTERCEPTORS = 64;

/** The guest's exports, as jco names them. */
interface GuestExports {
  astridHookTrigger?: (action: string, payload: Uint8Array) => { action: string; data?: string };
  run?: () => void;
  astridInstall?: () => void;
  astridUpgrade?: () => void;
}

/** The engine's WebAssembly API (this project's TypeScript lib has no DOM types for it). */
const wasmApi = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<unknown> } }).WebAssembly;

const kebab = (name: string) => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const messageOf = (err: unknown) => String((err as Error)?.message ?? err).slice(0, 2000);

/** Boots the capsule's worker: `port` is the data plane, `data.control` the control plane. */
export function runWasmCapsule(port: MessagePort, data: WasmWorkerData): void {
  const send = (message: FromCapsule) => port.postMessage(message);
  const signal = new Int32Array(data.wasm.signal);
  const calls = data.wasm.calls;
  const closed = () => Atomics.load(signal, SIGNAL_CLOSED) === 1;
  const log = (level: "debug" | "info" | "warn" | "error", message: string) => send({ t: "log", level, message: String(message).slice(0, MAX_CAPSULE_TEXT_CHARS) });

  /** The message the guest currently acts on (its principal's scope applies), or null. */
  let acting: number | null = null;
  const recent = new Map<number, { principal?: string; sourceId: string }>();

  const call = (name: string, ...args: unknown[]): SyscallResult => {
    if (closed()) return { ok: false, code: "ASTRID_ERR_CAPSULE_UNAVAILABLE", message: "the capsule is stopping" };
    Atomics.store(signal, SIGNAL_REPLY, 0);
    calls.postMessage({ call: name, args, seq: acting } satisfies WasmCallRequest);
    for (;;) {
      const answer = receiveMessageOnPort(calls);
      if (answer) return answer.message as SyscallResult;
      if (closed()) return { ok: false, code: "ASTRID_ERR_CAPSULE_UNAVAILABLE", message: "the capsule is stopping" };
      // Woken by the answer, or by an event the kernel posted meanwhile: taken in (and acknowledged) while waiting,
      // so a long call (an approval) never looks like a hung handler.
      pump();
      Atomics.wait(signal, SIGNAL_REPLY, 0);
    }
  };

  // Subscriptions are the worker's own queues: the kernel delivers what they match (its ACL checked at subscribe).
  const subscriptions = new Map<bigint, { pattern: string; queue: GuestMessage[]; seqs: number[]; dropped: bigint }>();
  let nextHandle = 1n;
  const hooks: CapsuleEventMessage[] = [];
  /** A run-loop capsule's interceptors: the kernel subscribes them for it; their queues are handles 1..n. */
  let runLoop = false;
  /** The last event routed to subscriptions: overlapping kernel subscriptions deliver one event back to back. */
  let lastRouted = -1;

  const accept = (message: CapsuleEventMessage) => {
    if (message.t !== "event") return;
    if (message.action === undefined && message.seq === lastRouted) {
      send({ t: "ack", n: 1 });
      return;
    }
    recent.set(message.seq, { ...(message.principal !== undefined ? { principal: message.principal } : {}), sourceId: message.source_id });
    if (recent.size > RECENT_MESSAGES) recent.delete(recent.keys().next().value!);
    if (message.action !== undefined) {
      hooks.push(message);
      setImmediate(() => void drainHooks());
      return;
    }
    lastRouted = message.seq;
    const guest: GuestMessage = {
      topic: message.topic,
      payload: JSON.stringify(message.payload ?? null),
      sourceId: message.source_id,
      principal: message.principal === undefined ? { tag: "system" } : { tag: message.attribution === "claimed" ? "claimed" : "verified", val: message.principal },
    };
    for (const sub of subscriptions.values()) {
      if (!busTopicMatches(sub.pattern, message.topic)) continue;
      sub.queue.push(guest);
      sub.seqs.push(message.seq);
      if (sub.queue.length > SUBSCRIPTION_BUFFER) {
        sub.queue.shift();
        sub.seqs.shift();
        sub.dropped++;
      }
    }
    send({ t: "ack", n: 1 });
  };
  /** Takes in what the kernel posted while the thread was busy in the guest. */
  const pump = () => {
    for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) accept(m.message as CapsuleEventMessage);
  };
  /** Sleeps until the event counter moves from `seen`, `ms` pass, or the run ends. */
  const sleepUntilEvent = (seen: number, ms: number) => {
    if (ms > 0 && !closed()) Atomics.wait(signal, SIGNAL_EVENTS, seen, ms);
  };

  let ready = false;
  const guestHost: GuestHost = {
    call,
    publish(topic, payload) {
      let size = Infinity;
      try {
        size = Buffer.byteLength(JSON.stringify(payload));
      } catch {
        // the syscall reports it
      }
      if (size <= FAST_PUBLISH_MAX_BYTES && topicProblem(topic) === null && data.publishAcl.some((p) => exactSegmentMatches(p, topic))) {
        send(acting === null ? { t: "publish", topic, payload } : { t: "publish", topic, payload, seq: acting });
        return { ok: true, value: null };
      }
      return call("ipc.publish", topic, payload);
    },
    log,
    env: data.env,
    capabilities: data.wasm.capabilities,
    caller() {
      const known = acting === null ? undefined : recent.get(acting);
      return known ?? { sourceId: "" };
    },
    subscribe(pattern) {
      const handle = nextHandle++;
      subscriptions.set(handle, { pattern, queue: [], seqs: [], dropped: 0n });
      return handle;
    },
    unsubscribe(handle) {
      subscriptions.delete(handle);
    },
    take(handle) {
      pump();
      const sub = subscriptions.get(handle);
      if (!sub) return { messages: [], dropped: 0n };
      // At most MAX_DRAIN_PAYLOAD_BYTES of payload, but always the first message (a publish is at most 5 MiB).
      let count = 0;
      for (let bytes = 0; count < sub.queue.length; count++) {
        bytes += Buffer.byteLength(sub.queue[count]!.payload);
        if (count > 0 && bytes > MAX_DRAIN_PAYLOAD_BYTES) break;
      }
      const messages = sub.queue.splice(0, count);
      const seqs = sub.seqs.splice(0, count);
      // What the guest does next acts for the first message's principal (the reference's invocation context).
      if (seqs.length > 0) acting = seqs[0]!;
      const dropped = sub.dropped;
      sub.dropped = 0n;
      return { messages, dropped };
    },
    wait(handle, ms) {
      const deadline = performance.now() + ms;
      for (;;) {
        const seen = Atomics.load(signal, SIGNAL_EVENTS);
        pump();
        if ((subscriptions.get(handle)?.queue.length ?? 0) > 0) return true;
        if (closed()) throw new Error("the capsule is stopping");
        const left = deadline - performance.now();
        if (left <= 0) return false;
        sleepUntilEvent(seen, left);
      }
    },
    waitEvents(ms, since) {
      if (closed()) throw new Error("the capsule is stopping");
      sleepUntilEvent(since ?? Atomics.load(signal, SIGNAL_EVENTS), ms);
      pump();
    },
    eventMark: () => Atomics.load(signal, SIGNAL_EVENTS),
    sleep(ms) {
      const deadline = performance.now() + ms;
      for (let left = ms; left > 0 && !closed(); left = deadline - performance.now()) {
        const seen = Atomics.load(signal, SIGNAL_EVENTS);
        pump();
        sleepUntilEvent(seen, left);
      }
    },
    bindings: () => (runLoop ? data.wasm.interceptors.map((i, index) => ({ handleId: BigInt(index + 1), action: i.action, topic: i.event })) : []),
    signalReady() {
      log("debug", "signalled ready");
    },
  };

  let guest: GuestExports = {};
  let description: WasmDescription | null = null;
  /** Instantiates the component afresh (its compiled core modules are kept). */
  let instantiate: (() => Promise<GuestExports>) | undefined;
  /** A trap poisons a component instance (every later call fails): the next call gets a new one. */
  let poisoned = false;
  const renew = async () => {
    if (!poisoned || !instantiate) return;
    guest = await instantiate();
    poisoned = false;
    log("warn", "a new instance replaced the one that trapped (its memory starts over)");
  };

  /** Calls the guest for one interceptor delivery or chain link; a trap fails only this invocation. */
  const trigger = (action: string, payload: unknown, seq: number): InterceptResult => {
    const hook = guest.astridHookTrigger;
    if (!hook) return { action: "continue" };
    const previous = acting;
    acting = seq;
    try {
      const out = hook(action, new TextEncoder().encode(JSON.stringify(payload ?? null)));
      return mapResult(out);
    } catch (err) {
      poisoned = true;
      throw err;
    } finally {
      acting = previous;
    }
  };

  let draining = false;
  async function drainHooks(): Promise<void> {
    if (draining || !ready) return;
    draining = true;
    try {
      while (hooks.length > 0) {
        const message = hooks.shift()!;
        try {
          await renew();
          trigger(message.action!, message.payload, message.seq);
        } catch (err) {
          log("error", `interceptor ${message.action} failed (the invocation is dropped): ${messageOf(err)}`);
        }
        send({ t: "ack", n: 1 });
      }
    } finally {
      draining = false;
    }
  }

  port.on("message", (message: CapsuleEventMessage) => accept(message));

  const channel = rpcChannel(data.control);
  const control: CapsuleControl & WasmControlExtra = {
    async load(): Promise<StepOutcome> {
      const started = performance.now();
      try {
        const prepared = await prepareComponent({ name: data.name, dir: data.wasm.dir, file: data.wasm.file, binDir: data.wasm.binDir, cacheDir: data.wasm.cacheDir });
        const foreign = prepared.imports.filter((i) => ![...PROVIDED, ...V0_PROVIDED].includes(i.replace(/@[^@/]+$/, "")));
        if (foreign.length > 0) {
          throw new WasmLoadError(`the component imports ${foreign.join(", ")}, which this host does not provide (it provides ${PROVIDED.join(", ")} and the world ${V0_ABI})`);
        }
        // Which host ABI it was built for: the older single world, or the per-domain packages (also for no imports).
        const v0 = importsV0(prepared.imports);
        const worlds = v0 ? `world astrid:capsule/capsule@0.1.0` : "worlds astrid:guest/interceptor@1.0.0, astrid:guest/background@1.0.0";
        const exported = new Set(prepared.exports);
        runLoop = exported.has("run");
        if (data.actions.length > 0 && !runLoop && !exported.has("astridHookTrigger")) {
          throw new WasmLoadError(`Capsule.toml declares interceptors (${data.actions.join(", ")}) but the component does not export astrid-hook-trigger (${worlds})`);
        }
        if (runLoop && data.wasm.interceptors.length > MAX_RUN_LOOP_INTERCEPTORS) {
          throw new WasmLoadError(`Capsule.toml declares ${data.wasm.interceptors.length} interceptors, more than the ${MAX_RUN_LOOP_INTERCEPTORS} a run-loop capsule (it exports run) may have: each is a subscription it drains by handle`);
        }
        if (!runLoop && !exported.has("astridHookTrigger")) {
          throw new WasmLoadError(`the component exports neither astrid-hook-trigger nor run: it is not an astrid capsule (${worlds})`);
        }
        // The run loop drains its interceptors by handle (get-interceptor-handles): their queues exist before it runs.
        if (runLoop) for (const [index, i] of data.wasm.interceptors.entries()) subscriptions.set(BigInt(index + 1), { pattern: i.event, queue: [], seqs: [], dropped: 0n });
        nextHandle = BigInt(subscriptions.size + 1);
        const glue = (await import(pathToFileURL(path.join(prepared.dir, ENTRY)).href)) as {
          instantiate(getCoreModule: (file: string) => Promise<unknown>, imports: unknown): Promise<GuestExports>;
        };
        const maxMemory = data.wasm.maxMemoryBytes;
        const compiled = new Map<string, Promise<unknown>>();
        const imports = v0 ? hostImportsV0(guestHost) : hostImports(guestHost, versionedImports(await fs.readFile(path.join(prepared.dir, ENTRY), "utf8")));
        instantiate = () => glue.instantiate((file) => {
          let module = compiled.get(file);
          if (!module) compiled.set(file, (module = fs.readFile(path.join(prepared.dir, file)).then((bytes) => wasmApi.compile(capMemories(bytes, maxMemory)))));
          return module;
        }, imports);
        guest = await instantiate();
        description = {
          hash: prepared.hash,
          source: prepared.source,
          exports: prepared.exports.map(kebab),
          imports: prepared.imports,
          abi: v0 ? V0_ABI : "astrid:*/host@1.0.0",
          max_memory_bytes: maxMemory,
          transpiled: prepared.transpiled,
          load_ms: Math.round((performance.now() - started) * 10) / 10,
        };
        return { ok: true };
      } catch (err) {
        // A refusal of the component itself (hash, world, exports, manifest) repeats until its files change.
        return { ok: false, message: messageOf(err), ...(err instanceof WasmLoadError ? { deterministic: true as const } : {}) };
      }
    },
    async runHook(lifecycle): Promise<StepOutcome> {
      const hook = lifecycle.hook === "install" ? guest.astridInstall : guest.astridUpgrade;
      try {
        hook?.();
        return { ok: true };
      } catch (err) {
        poisoned = true;
        return { ok: false, message: `astrid-${lifecycle.hook} failed: ${messageOf(err)}` };
      }
    },
    async setup(): Promise<SetupOutcome> {
      ready = true;
      const run = guest.run;
      if (run) {
        // After this answer is on its way: from then on the thread belongs to the guest's loop.
        setImmediate(() => {
          try {
            run();
            log("info", "run returned");
          } catch (err) {
            // A trapped loop cannot be resumed: the worker ends, and the supervisor fails and restarts the capsule.
            log("error", `run failed: ${messageOf(err)}`);
            setImmediate(() => process.exit(1));
          }
        });
      } else setImmediate(() => void drainHooks());
      return { ok: true, tools: [] };
    },
    async intercept(action, event): Promise<InterceptResult> {
      try {
        await renew();
        return trigger(action, event.payload, event.seq);
      } catch (err) {
        return { action: "deny", reason: `astrid-hook-trigger failed: ${messageOf(err)}`.slice(0, MAX_CAPSULE_TEXT_CHARS) };
      }
    },
    async executeTool(name): Promise<ToolOutcome> {
      return { content: `${data.name} is a WebAssembly capsule: tool ${name} is not served by this host`, is_error: true };
    },
    async describe() {
      return description;
    },
  };
  Comlink.expose(control, channel.callee);
}
