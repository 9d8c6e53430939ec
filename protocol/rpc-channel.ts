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
import { AstridError } from "./errors";

/** Comlink's endpoint shape (its types need DOM names; this is what its node adapter provides). */
type Endpoint = Parameters<typeof Comlink.expose>[1] & object;
type Listener = ((event: { data: unknown }) => void) | { handleEvent(event: { data: unknown }): void };

/** Request message types comlink sends; anything else with an id is a reply. */
const REQUEST_TYPES: ReadonlySet<string> = new Set(["GET", "SET", "APPLY", "CONSTRUCT", "ENDPOINT", "RELEASE"]);

/** A check of one incoming comlink message: the (cleaned) message, or why it is refused. */
export type WireCheck = { ok: true; message: { id: string } } | { ok: false; reason: string };

/**
 * What a guarded side accepts and how it reports the rest. The checks live in `rpc-guard.ts` (zod), so the
 * unguarded side — a capsule worker — loads no schema library.
 */
export interface ChannelGuard {
  /** Checks a request from the peer. */
  request(data: unknown): WireCheck;
  /** Checks a reply from the peer (its id is then matched against the calls this side made). */
  reply(data: unknown): WireCheck;
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

  const emit = (listeners: Set<Listener>, data: unknown) => {
    for (const listener of listeners) {
      if (typeof listener === "function") listener({ data });
      else listener.handleEvent({ data });
    }
  };
  const onMessage = (data: unknown) => {
    const type = typeof data === "object" && data !== null ? (data as { type?: unknown }).type : undefined;
    if (typeof type === "string" && REQUEST_TYPES.has(type)) {
      if (!guard) return emit(calleeListeners, data);
      const checked = guard.request(data);
      return checked.ok ? emit(calleeListeners, checked.message) : guard.onInvalid(`malformed request (${checked.reason})`);
    }
    if (!guard) return emit(callerListeners, data);
    const checked = guard.reply(data);
    if (!checked.ok) return guard.onInvalid(`malformed message (${checked.reason})`);
    if (!awaiting.delete(checked.message.id)) return guard.onInvalid("a reply to a call that was never made (or already answered)");
    emit(callerListeners, checked.message);
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

  /** Calls waiting for their answer (a drain waits for none). */
  get inflight(): number {
    return this.pending.size;
  }

  /** The peer is gone: reject everything pending and every later call with ASTRID_ERR_CAPSULE_UNAVAILABLE. */
  close(reason: string): void {
    if (this.gone) return;
    this.gone = new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${this.label}: ${reason}`);
    for (const reject of [...this.pending]) reject(this.gone);
    this.pending.clear();
    // comlink registers the proxy in a FinalizationRegistry whose held value is the endpoint, and the endpoint's
    // closures reach back to the proxy's owner: the proxy stays reachable through the registry and is never
    // finalized — every ended capsule run (its worker, its schemas) was kept. Releasing unregisters it.
    try {
      this.remote[Comlink.releaseProxy]();
    } catch {
      // Its RELEASE message goes to a port that may be closed already: nothing to release there.
    }
  }
}
