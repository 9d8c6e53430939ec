/**
 * The event bus: every message gets a monotonically increasing `seq` at publish time and reaches, in publish
 * order, every subscriber whose bus pattern matches (reference §7). Delivery runs from a queue, so a handler
 * that publishes never sees its own message overtake the one it is handling.
 */
import { memoTopicPredicate } from "../protocol/topic-cache";
import { busTopicMatches } from "../protocol/topic-match";
import type { IpcMessage, IpcPayload } from "../protocol/ipc-message";
import { nowRfc3339 } from "../protocol/timestamp";

/** Identifies one socket connection, for replies that must reach only the client that asked. */
export type ConnectionId = number;

/** A message on the bus plus the kernel-only routing facts that never go on the wire. */
export interface BusEvent {
  message: IpcMessage;
  /** For a prompt: the agent capsule chosen to answer it (agent-selection.ts decides once per event). */
  agent?: string | null;
  /** The connection that published it, when a socket client did. */
  origin?: ConnectionId;
  /** When set, socket egress delivers it to this connection only. */
  target?: ConnectionId;
  /** Never forwarded to socket clients (a reply to a capsule's management request). */
  internal?: true;
  /**
   * How the kernel knows the message's principal, for a client's message: `verified` (the connection's own
   * credential: the operator's session token or a frontend's) or `claimed` (a platform user a frontend speaks for).
   */
  attribution?: Attribution;
}

/** How the kernel knows who a client's message is from. */
export type Attribution = "verified" | "claimed";

/** What a publisher supplies; the bus stamps `seq` and, unless given, `timestamp` and `signature`. */
export interface PublishInput {
  topic: string;
  payload: IpcPayload;
  source_id: string;
  principal?: string;
  origin?: ConnectionId;
  target?: ConnectionId;
  internal?: true;
  attribution?: Attribution;
}

type Handler = (event: BusEvent) => void;
interface Subscription {
  matches: (topic: string) => boolean;
  handler: Handler;
}

/** Reports a subscriber's exception without letting it stop delivery to the others. */
export type BusErrorSink = (err: unknown, event: BusEvent) => void;

/** The kernel's in-process event bus. */
export class EventBus {
  private seq = 0;
  private readonly subscriptions = new Set<Subscription>();
  private readonly queue: BusEvent[] = [];
  private draining = false;

  constructor(private readonly onHandlerError: BusErrorSink = () => {}) {}

  /** The last `seq` stamped (0 before the first publish). */
  get lastSeq(): number {
    return this.seq;
  }

  /**
   * Calls `handler` for every message whose topic matches any of `patterns` (bus matcher unless another is given,
   * e.g. the exact-segment matcher for interceptors); returns the unsubscribe function.
   */
  subscribe(
    patterns: string | readonly string[],
    handler: Handler,
    matcher: (pattern: string, topic: string) => boolean = busTopicMatches,
  ): () => void {
    const list = typeof patterns === "string" ? [patterns] : [...patterns];
    const sub: Subscription = { matches: memoTopicPredicate((topic) => list.some((p) => matcher(p, topic))), handler };
    this.subscriptions.add(sub);
    return () => this.subscriptions.delete(sub);
  }

  /** Stamps and delivers a message; never blocks and succeeds with no subscribers. Returns the stamped message. */
  publish(input: PublishInput): IpcMessage {
    const message: IpcMessage = {
      topic: input.topic,
      payload: input.payload,
      signature: null,
      source_id: input.source_id,
      timestamp: nowRfc3339(),
      seq: ++this.seq,
    };
    if (input.principal !== undefined) message.principal = input.principal;
    const event: BusEvent = { message };
    if (input.origin !== undefined) event.origin = input.origin;
    if (input.target !== undefined) event.target = input.target;
    if (input.internal) event.internal = true;
    if (input.attribution !== undefined) event.attribution = input.attribution;
    this.queue.push(event);
    if (!this.draining) this.drain();
    return message;
  }

  private drain(): void {
    this.draining = true;
    try {
      for (let event = this.queue.shift(); event !== undefined; event = this.queue.shift()) {
        const topic = event.message.topic;
        for (const sub of this.subscriptions) {
          if (!sub.matches(topic)) continue;
          try {
            sub.handler(event);
          } catch (err) {
            this.onHandlerError(err, event);
          }
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
