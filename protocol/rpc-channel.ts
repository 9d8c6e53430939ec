/**
 * One RPC channel per worker, used in both directions: comlink runs over a single MessagePort, on which each side
 * both exposes an object (it receives requests) and wraps the other side's (it receives replies). Requests and
 * replies are told apart by comlink's message type, so the two comlink endpoints never see each other's traffic.
 *
 * The side that does not trust its peer (the kernel, facing a capsule worker) passes a guard: every request must be
 * a plain APPLY of one of the exposed methods with raw arguments, and every reply must answer a call this side
 * made and is still waiting for, as a raw value. Anything else — comlink's GET/SET/CONSTRUCT (which would let a
 * capsule read or overwrite the kernel's object), proxies, transferred ports, thrown values, replies to calls never
 * made — is dropped before comlink sees it, and reported.
 */
import type { MessagePort } from "node:worker_threads";
import * as Comlink from "comlink";
import { z } from "zod";
import { AstridError } from "./errors";

/** Comlink's endpoint shape (its types need DOM names; this is what its node adapter provides). */
type Endpoint = Parameters<typeof Comlink.expose>[1] & object;
type Listener = ((event: { data: unknown }) => void) | { handleEvent(event: { data: unknown }): void };

/** Request message types comlink sends; anything else with an id is a reply. */
const REQUEST_TYPES: ReadonlySet<string> = new Set(["GET", "SET", "APPLY", "CONSTRUCT", "ENDPOINT", "RELEASE"]);

/** Most arguments an exposed method takes across the channel. */
const MAX_ARGUMENTS = 8;
const MessageId = z.string().min(1).max(128);
const RawWireValue = z.strictObject({ type: z.literal("RAW"), value: z.unknown() });

/** What a guarded side accepts and how it reports the rest. */
export interface ChannelGuard {
  /** The methods this side exposes; a request for anything else is refused. */
  methods: readonly string[];
  /** Called once per dropped message with a short reason (the caller counts, logs and audits). */
  onInvalid(reason: string): void;
}

/** The two comlink endpoints of one port. */
export interface RpcChannel {
  /** Where comlink's `expose` listens: requests from the peer, replies going back. */
  callee: Endpoint;
  /** Where comlink's `wrap` listens: calls to the peer, their replies coming back. */
  caller: Endpoint;
  /** Stops listening on the port. */
  close(): void;
}

/** Splits `port` into a callee and a caller endpoint; with a guard, both directions are validated on receipt. */
export function rpcChannel(port: MessagePort, guard?: ChannelGuard): RpcChannel {
  const calleeListeners = new Set<Listener>();
  const callerListeners = new Set<Listener>();
  // Ids of calls this side made and still waits for: a reply to anything else is refused.
  const awaiting = new Set<string>();
  const requestSchema = guard ? requestSchemaFor(guard.methods) : undefined;

  const emit = (listeners: Set<Listener>, data: unknown) => {
    for (const listener of listeners) {
      if (typeof listener === "function") listener({ data });
      else listener.handleEvent({ data });
    }
  };
  const onMessage = (data: unknown) => {
    const type = typeof data === "object" && data !== null ? (data as { type?: unknown }).type : undefined;
    if (typeof type === "string" && REQUEST_TYPES.has(type)) {
      if (!requestSchema) return emit(calleeListeners, data);
      const parsed = requestSchema.safeParse(data);
      if (!parsed.success) return guard!.onInvalid(`malformed request (${describe(parsed.error)})`);
      return emit(calleeListeners, parsed.data);
    }
    if (!guard) return emit(callerListeners, data);
    const parsed = ReplySchema.safeParse(data);
    if (!parsed.success) return guard.onInvalid(`malformed message (${describe(parsed.error)})`);
    if (!awaiting.delete(parsed.data.id)) return guard.onInvalid("a reply to a call that was never made (or already answered)");
    emit(callerListeners, parsed.data);
  };
  port.on("message", onMessage);

  const endpoint = (listeners: Set<Listener>, outgoing?: (message: { id?: unknown }) => void): Endpoint => ({
    postMessage(message: { id?: unknown }, transfer?: unknown[]) {
      outgoing?.(message);
      port.postMessage(message, transfer as never);
    },
    addEventListener(_type: string, listener: Listener) {
      listeners.add(listener);
    },
    removeEventListener(_type: string, listener: Listener) {
      listeners.delete(listener);
    },
  });
  return {
    callee: endpoint(calleeListeners),
    caller: endpoint(callerListeners, (message) => {
      if (guard && typeof message.id === "string") awaiting.add(message.id);
    }),
    close() {
      port.off("message", onMessage);
      calleeListeners.clear();
      callerListeners.clear();
      awaiting.clear();
    },
  };
}

/** A reply the guarded side accepts: a raw value answering one of its calls. */
const ReplySchema = z.strictObject({ id: MessageId, type: z.literal("RAW"), value: z.unknown() });

function requestSchemaFor(methods: readonly string[]) {
  return z.discriminatedUnion("type", [
    z.strictObject({
      id: MessageId,
      type: z.literal("APPLY"),
      path: z.tuple([z.enum(methods as [string, ...string[]])]),
      argumentList: z.array(RawWireValue).max(MAX_ARGUMENTS),
    }),
    z.strictObject({ id: MessageId, type: z.literal("RELEASE"), path: z.array(z.string()).max(0).optional() }),
  ]);
}

function describe(error: z.ZodError): string {
  const issue = error.issues[0];
  return issue ? `${issue.path.join(".") || "message"}: ${issue.message}`.slice(0, 200) : "invalid";
}

/**
 * A comlink proxy to the peer whose calls are bounded by a deadline and by the peer's life — what comlink lacks:
 * a call to a worker that exited would otherwise never settle.
 */
export class BoundedRemote<T extends object> {
  private readonly remote: Comlink.Remote<T>;
  private readonly pending = new Set<(err: Error) => void>();
  private gone: Error | undefined;

  constructor(endpoint: Endpoint, private readonly label: string) {
    this.remote = Comlink.wrap<T>(endpoint);
  }

  /** Runs `invoke`; rejects with ASTRID_ERR_TIMEOUT after `timeoutMs`, or at once once the peer is gone. */
  call<R>(invoke: (remote: Comlink.Remote<T>) => Promise<R>, timeoutMs: number): Promise<R> {
    if (this.gone) return Promise.reject(this.gone);
    return new Promise<R>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        this.pending.delete(onGone);
      };
      const timer = setTimeout(() => {
        settle();
        reject(new AstridError("ASTRID_ERR_TIMEOUT", `${this.label}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onGone = (err: Error) => {
        settle();
        reject(err);
      };
      this.pending.add(onGone);
      invoke(this.remote).then(
        (value) => {
          settle();
          resolve(value);
        },
        (err: unknown) => {
          settle();
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /** The peer is gone: reject everything pending and every later call with ASTRID_ERR_CAPSULE_UNAVAILABLE. */
  close(reason: string): void {
    if (this.gone) return;
    this.gone = new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${this.label}: ${reason}`);
    for (const reject of [...this.pending]) reject(this.gone);
    this.pending.clear();
  }
}
