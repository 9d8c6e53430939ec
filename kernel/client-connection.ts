/**
 * One client connection and the memory it may make the daemon hold. Two bounds, both applied by pausing the
 * client's ingress (never by dropping a client that reads):
 * - at most MAX_INFLIGHT_REQUESTS management/admin requests awaiting their reply;
 * - at most EGRESS_BUDGET_BYTES written and not yet taken by the client (and all clients together at most
 *   GLOBAL_EGRESS_BUDGET_BYTES).
 * A client whose egress stays over budget for the stall timeout (ASTRID_CLIENT_STALL_TIMEOUT_MS) without taking anything is disconnected with a coded
 * error frame; one that keeps reading, however slowly, is not. Events it did not ask for that would take it past
 * EGRESS_HARD_LIMIT_BYTES disconnect it at once; replies it asked for never do (they are bounded by the in-flight
 * limit instead).
 */
import type net from "node:net";
import { FrameDecoder, MAX_HANDSHAKE_BYTES } from "../protocol/framing";
import type { ConnectionId } from "./bus";

/**
 * Requests one connection may have waiting for their replies before its ingress pauses. Replies a client asked
 * for are never refused (it would lose them), so this times the largest reply bounds what one client can make the
 * daemon hold for it.
 */
export const MAX_INFLIGHT_REQUESTS = 4;
/** A request older than this no longer counts as in flight (a reply that never comes must not pause a client forever). */
const INFLIGHT_EXPIRY_MS = 120_000;
/** Egress bytes one client may leave unread before its ingress pauses. */
export const EGRESS_BUDGET_BYTES = 4 * 1024 * 1024;
/** Egress bytes of all clients together before every congested client's ingress pauses. */
export const GLOBAL_EGRESS_BUDGET_BYTES = 128 * 1024 * 1024;
/** Unread egress past which a client is disconnected at once. */
export const EGRESS_HARD_LIMIT_BYTES = 64 * 1024 * 1024;

type Phase = "handshake" | "open" | "closed";

/** Who a connection is, once its handshake succeeded. */
export interface ConnectionIdentity {
  /** The principal its own messages carry: `default` for the session token, the frontend's name for a frontend. */
  principal: string;
  /** How the daemon knows: the operator's session token (`verified`) or a frontend credential. */
  via: "session_token" | "frontend";
  /** The frontend's name (its credential), when `via` is `frontend`. */
  frontend?: string;
  /** What the client calls itself in its handshake (`client_name`), shown in GetStatus. */
  clientName?: string;
}

/** What a connection tells the server about its flow control. */
export interface FlowHooks {
  /** Total unread egress over every connection (for the global budget). */
  totalEgress(): number;
  /** How long egress may stay over budget with no byte taken before the client is disconnected. */
  stallTimeoutMs: number;
  /** The client has been over its egress budget too long (or past the hard limit): disconnect it. */
  stalled(conn: ClientConnection, reason: string): void;
}

/** One client connection. */
export class ClientConnection {
  phase: Phase = "handshake";
  readonly decoder = new FrameDecoder(MAX_HANDSHAKE_BYTES);
  readonly connectedAt = Date.now();
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Deadline of the frame being received (open phase), and when that frame began and what it was allowed. */
  frameTimer: NodeJS.Timeout | undefined;
  frameStartedAt = 0;
  frameBudgetMs = 0;
  identity: ConnectionIdentity | undefined;
  /** Principals this connection may act for: its own, and those of the platform users it has spoken for. */
  readonly actsFor = new Set<string>();
  /** Send times of requests awaiting their replies, oldest first. */
  private readonly inflight: number[] = [];
  private stallTimer: NodeJS.Timeout | undefined;
  private stallSince = 0;
  private stallBytesWritten = 0;
  /** Why ingress is paused, if it is (the socket is paused while any reason holds). */
  private pausedFor: "requests" | "egress" | undefined;
  /** Frames waiting in the decoder while ingress is paused are processed by this on resume. */
  resumeFrames: (() => void) | undefined;

  constructor(
    readonly id: ConnectionId,
    readonly socket: net.Socket,
    private readonly hooks: FlowHooks,
  ) {}

  /** True while the client's frames are not being read. */
  get paused(): boolean {
    return this.pausedFor !== undefined;
  }

  /** Requests awaiting replies right now. */
  get inflightRequests(): number {
    this.expireInflight();
    return this.inflight.length;
  }

  /** A management or admin request went out on the bus for this client. */
  requestSent(): void {
    this.inflight.push(Date.now());
    if (this.inflight.length >= MAX_INFLIGHT_REQUESTS) this.pause("requests");
  }

  /** A reply to one of its requests is being written. */
  replyWritten(): void {
    this.inflight.shift();
    if (this.pausedFor === "requests" && this.inflightRequests < MAX_INFLIGHT_REQUESTS) this.resume();
  }

  /**
   * Writes a complete frame; false when the connection is closed (or was just closed for not reading). `reply`:
   * the client asked for this frame (a reply to its request), so it is written whatever is pending.
   */
  send(frame: Buffer, reply = false): boolean {
    if (this.phase === "closed" || this.socket.destroyed) return false;
    if (!reply && this.socket.writableLength + frame.length > EGRESS_HARD_LIMIT_BYTES) {
      this.hooks.stalled(this, `more than ${EGRESS_HARD_LIMIT_BYTES >> 20} MiB of messages left unread`);
      return false;
    }
    this.socket.write(frame);
    this.checkEgress();
    return true;
  }

  /** Pauses ingress while egress is over the client's budget or the clients' total is over the global one. */
  private checkEgress(): void {
    const pending = this.socket.writableLength;
    const over = pending > EGRESS_BUDGET_BYTES || (pending > EGRESS_BUDGET_BYTES / 8 && this.hooks.totalEgress() > GLOBAL_EGRESS_BUDGET_BYTES);
    if (!over || this.stallTimer !== undefined) return;
    this.pause("egress");
    this.stallSince = Date.now();
    this.stallBytesWritten = this.socket.bytesWritten;
    const check = () => {
      this.stallTimer = undefined;
      if (this.phase === "closed") return;
      if (this.socket.writableLength <= EGRESS_BUDGET_BYTES / 2) return this.egressDrained();
      // Taking bytes, however slowly, is reading: it gets more time. Only a client that took nothing is dropped.
      if (this.socket.bytesWritten > this.stallBytesWritten) {
        this.stallBytesWritten = this.socket.bytesWritten;
        this.stallSince = Date.now();
      } else if (Date.now() - this.stallSince >= this.hooks.stallTimeoutMs) {
        this.hooks.stalled(this, `did not read its messages for ${this.hooks.stallTimeoutMs} ms (${this.socket.writableLength} bytes waiting)`);
        return;
      }
      this.stallTimer = setTimeout(check, 250);
    };
    this.stallTimer = setTimeout(check, 250);
    this.socket.once("drain", () => {
      if (this.stallTimer !== undefined && this.socket.writableLength <= EGRESS_BUDGET_BYTES / 2) this.egressDrained();
    });
  }

  private egressDrained(): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (this.pausedFor === "egress") this.resume();
  }

  private pause(reason: "requests" | "egress"): void {
    if (this.pausedFor === undefined) this.socket.pause();
    this.pausedFor = reason;
  }

  private resume(): void {
    // Still over the other bound: stay paused for that one.
    if (this.inflightRequests >= MAX_INFLIGHT_REQUESTS) {
      this.pausedFor = "requests";
      return;
    }
    if (this.socket.writableLength > EGRESS_BUDGET_BYTES) {
      this.pausedFor = "egress";
      this.checkEgress(); // starts the stall watch if none runs
      return;
    }
    this.pausedFor = undefined;
    if (this.phase === "closed") return;
    this.socket.resume();
    this.resumeFrames?.();
  }

  private expireInflight(): void {
    const cutoff = Date.now() - INFLIGHT_EXPIRY_MS;
    while (this.inflight.length > 0 && this.inflight[0]! < cutoff) this.inflight.shift();
  }

  /** Clears the connection's timers (it closed). */
  dispose(): void {
    clearTimeout(this.handshakeTimer);
    clearTimeout(this.frameTimer);
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
  }
}
