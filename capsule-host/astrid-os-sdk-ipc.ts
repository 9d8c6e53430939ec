/**
 * The `ipc` and `interceptors` namespaces of the `@astrid-os/sdk` surface, over the capsule's gated bus calls.
 * The reference's `Subscription` is a kernel resource a capsule polls; here the kernel pushes matching events to
 * the worker, where each `Subscription` keeps its own bounded buffer that `poll`/`recv` drain. Events for these
 * buffers are handed over as they arrive, not behind the capsule's handler queue, so a handler may `await
 * sub.recv()` (or `requestResponse`) for a reply without waiting on itself.
 */
import { randomUUID } from "node:crypto";
import type { SyscallName } from "../protocol/capsule-messages";
import type { CapsuleApi, CapsuleEvent } from "./sdk";
import { hostCall, jsonText, parseJson, SysError } from "./astrid-os-sdk-errors";

/** What the SDK needs from the capsule host. */
export interface SdkContext {
  api: CapsuleApi;
  /** Resolved `[env]` values (the reference distinguishes "unset" from ""). */
  env: Readonly<Record<string, string>>;
  /** Subscribes `pattern` with the kernel (ACL-checked); matching events reach `sink` as they arrive. */
  subscribe(pattern: string, sink: (event: CapsuleEvent) => void): Promise<void>;
  /** The message the running handler acts on, if any. */
  caller(): { principal?: string; sourceId: string } | undefined;
  /** `runtime.signalReady()` of a `@run` capsule. */
  signalReady(): void;
  /** A line in the capsule's log. */
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
  /** A kernel call the capsule's own API has no method for (`ipc.publish_as`, `sys.*`): checked like any other. */
  syscall(name: SyscallName, ...args: unknown[]): Promise<unknown>;
}

/** Messages one `Subscription` holds before it drops the oldest (counted in `dropped`/`lagged`). */
const SUBSCRIPTION_BUFFER = 1024;
/** The reference's default and largest `recv` wait. */
const DEFAULT_RECV_MS = 5_000;
const MAX_RECV_MS = 60_000;

/** Who a message is attributed to, as the reference's WIT variant. */
export type PrincipalAttribution = { tag: "verified"; val: string } | { tag: "claimed"; val: string } | { tag: "system" };

/** One message as a subscriber receives it: `payload` is JSON text. */
export interface IpcMessage {
  topic: string;
  payload: string;
  sourceId: string;
  principal: PrincipalAttribution;
  json<T = unknown>(): T;
}

/** What `poll`/`recv` return. */
export interface PollResult {
  messages: IpcMessage[];
  dropped: bigint;
  lagged: bigint;
}

/** Builds the `ipc` namespace (and `interceptors`, which lists nothing here: see `bindings`). */
export function ipcModule(ctx: SdkContext): { ipc: Record<string, unknown>; interceptors: Record<string, unknown>; registered(): Promise<void> } {
  // One kernel subscription per pattern, shared by every open `Subscription` of it: the kernel caps a capsule at 128
  // and offers no unsubscribe, so closing a `Subscription` only stops its buffer.
  const patterns = new Map<string, { registered: Promise<void>; open: Set<Buffered> }>();

  interface Buffered {
    push(message: IpcMessage): void;
  }

  const message = (event: CapsuleEvent): IpcMessage => {
    const payload = JSON.stringify(event.payload ?? null);
    const principal: PrincipalAttribution = event.principal === undefined
      ? { tag: "system" }
      : { tag: event.attribution === "claimed" ? "claimed" : "verified", val: event.principal };
    return {
      topic: event.topic,
      payload,
      sourceId: event.source_id,
      principal,
      json: <T>() => parseJson<T>(`IpcMessage.json() on topic "${event.topic}"`, payload),
    };
  };

  const open = (pattern: string, buffer: Buffered): Promise<void> => {
    let entry = patterns.get(pattern);
    if (!entry) {
      const created = { registered: Promise.resolve(), open: new Set<Buffered>() };
      created.registered = hostCall(`ipc.subscribe("${pattern}")`, () =>
        ctx.subscribe(pattern, (event) => {
          if (created.open.size === 0) return;
          const received = message(event);
          for (const sub of created.open) sub.push(received);
        }));
      // A refused pattern is forgotten, so a later subscribe asks the kernel again (and sees the refusal itself).
      created.registered.catch(() => patterns.delete(pattern));
      patterns.set(pattern, created);
      entry = created;
    }
    entry.open.add(buffer);
    return entry.registered;
  };

  /** A subscription's buffer; `poll` and `recv` drain it. The kernel's refusal surfaces on the first of them. */
  class Subscription implements Buffered {
    readonly topic: string;
    #messages: IpcMessage[] = [];
    #dropped = 0n;
    #lagged = 0n;
    #closed = false;
    readonly #waiters = new Set<() => void>();
    readonly #registered: Promise<void>;

    constructor(topic: string) {
      this.topic = topic;
      this.#registered = open(topic, this);
      this.#registered.catch(() => undefined); // raised by poll/recv, not as an unhandled rejection
    }

    push(msg: IpcMessage): void {
      if (this.#closed) return;
      if (this.#messages.length >= SUBSCRIPTION_BUFFER) {
        this.#messages.shift();
        this.#dropped++;
        this.#lagged++;
      }
      this.#messages.push(msg);
      for (const wake of this.#waiters) wake();
    }

    /** What is buffered now (never waits for a message). */
    async poll(): Promise<PollResult> {
      await this.#ready();
      return this.#take();
    }

    /** Waits up to `timeoutMs` (default 5 s, at most 60 s) for a message; an empty result means the wait ran out. */
    async recv(timeoutMs: number | bigint = DEFAULT_RECV_MS): Promise<PollResult> {
      await this.#ready();
      if (this.#messages.length === 0) {
        const wait = Math.min(Math.max(0, Number(timeoutMs)), MAX_RECV_MS);
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            this.#waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, wait);
          this.#waiters.add(done);
        });
      }
      return this.#take();
    }

    /** Stops buffering (idempotent). */
    close(): void {
      if (this.#closed) return;
      this.#closed = true;
      this.#messages = [];
      patterns.get(this.topic)?.open.delete(this);
      for (const wake of this.#waiters) wake();
    }

    [Symbol.dispose](): void {
      this.close();
    }

    /** Each message until the subscription is closed. */
    async *[Symbol.asyncIterator](): AsyncIterableIterator<IpcMessage> {
      while (!this.#closed) {
        const batch = await this.recv();
        for (const msg of batch.messages) yield msg;
      }
    }

    async #ready(): Promise<void> {
      if (this.#closed) throw SysError.api(`subscription on "${this.topic}" is closed`);
      await this.#registered;
    }

    #take(): PollResult {
      const result = { messages: this.#messages, dropped: this.#dropped, lagged: this.#lagged };
      this.#messages = [];
      this.#dropped = 0n;
      return result;
    }
  }

  /** Publishes JSON text (the reference's payload is a JSON string). */
  const publish = (topic: string, payload: string): Promise<void> =>
    publishValue(`ipc.publish("${topic}")`, topic, () => parseJson(`ipc.publish("${topic}"): the payload must be JSON text`, String(payload)));

  // The reference's publish returns nothing and throws at once; here it is a promise. A capsule written for the
  // reference may not await it, so a refusal it does not await is logged instead of crashing the worker.
  const publishValue = (label: string, topic: string, value: () => unknown): Promise<void> => {
    const sent = hostCall(label, async () => ctx.api.ipc.publish(topic, value()));
    sent.catch((err: Error) => ctx.log("warn", err.message));
    return sent;
  };

  const publishAsValue = (label: string, topic: string, principal: string, value: () => unknown): Promise<void> => {
    const sent = hostCall(label, async () => {
      await ctx.syscall("ipc.publish_as", topic, value(), String(principal));
    });
    sent.catch((err: Error) => ctx.log("warn", err.message));
    return sent;
  };

  const ipc = {
    publish,
    publishJson: <T>(topic: string, payload: T): Promise<void> =>
      publishValue(`ipc.publishJson("${topic}")`, topic, () => {
        jsonText(`ipc.publishJson("${topic}")`, payload);
        return payload;
      }),
    /**
     * Publishes JSON text for `principal`, whom subscribers see as `claimed`: an uplink capsule's (`uplink = true`)
     * only, and only for a principal a platform user is linked to.
     */
    publishAs: (topic: string, payload: string, principal: string): Promise<void> =>
      publishAsValue(`ipc.publishAs("${topic}")`, topic, principal, () => parseJson(`ipc.publishAs("${topic}"): the payload must be JSON text`, String(payload))),
    publishJsonAs: <T>(topic: string, payload: T, principal: string): Promise<void> =>
      publishAsValue(`ipc.publishJsonAs("${topic}")`, topic, principal, () => {
        jsonText(`ipc.publishJsonAs("${topic}")`, payload);
        return payload;
      }),
    /** A subscription to `topicPattern` (trailing `*` only), checked against `ipc_subscribe`. */
    subscribe: (topicPattern: string): Subscription => new Subscription(String(topicPattern)),
    /**
     * Publishes `request` with a fresh `correlation_id` on `requestTopic` and waits for the reply on
     * `<responseNamespace>.<correlation_id>`. Listens on `<responseNamespace>.*`, which `ipc_subscribe` must list.
     */
    async requestResponse<Req, Resp = unknown>(requestTopic: string, responseNamespace: string, request: Req, timeoutMs: number | bigint): Promise<Resp> {
      if (typeof request !== "object" || request === null || Array.isArray(request)) {
        throw SysError.api("request_response: request payload must serialize to a JSON object so the correlation_id can be injected");
      }
      const correlationId = randomUUID();
      const replyTopic = `${responseNamespace}.${correlationId}`;
      const sub = new Subscription(`${responseNamespace}.*`);
      try {
        await sub.poll(); // registered before the request goes out, so the reply cannot be missed
        await publishValue(`requestResponse("${requestTopic}")`, requestTopic, () => ({ ...(request as object), correlation_id: correlationId }));
        const deadline = Date.now() + Math.min(Math.max(0, Number(timeoutMs)), MAX_RECV_MS);
        for (let left = deadline - Date.now(); left > 0; left = deadline - Date.now()) {
          const reply = (await sub.recv(left)).messages.find((m) => m.topic === replyTopic);
          if (reply) return parseJson<Resp>(`request_response: failed to parse reply on '${replyTopic}'`, reply.payload);
        }
        throw SysError.api(`request_response: no reply on '${replyTopic}' within ${String(timeoutMs)}ms`);
      } finally {
        sub.close();
      }
    },
    /** Interceptor events are dispatched to `@interceptor` methods here, never through subscriptions: none to list. */
    runtimeInterceptors: (): Array<{ handle: bigint; action: string; topic: string }> => [],
  };
  const interceptors = { bindings: () => ipc.runtimeInterceptors() };
  /** Resolves once every subscription asked for so far is in place with the kernel (or refused). */
  const registered = async (): Promise<void> => {
    await Promise.allSettled([...patterns.values()].map((p) => p.registered));
  };
  return { ipc, interceptors, registered };
}
