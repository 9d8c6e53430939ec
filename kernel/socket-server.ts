/**
 * The socket server: accepts frontends on `run/system.sock`, runs the handshake, applies the ingress allowlist,
 * publishes what clients send onto the bus, and writes to each client the messages it should receive — replies
 * only to the connection that asked, everything else in the egress set to every client.
 */
import fs from "node:fs";
import net from "node:net";
import { AstridError, isAstridError, type ErrorCode } from "../protocol/errors";
import { encodeFrame, FrameDecoder, MAX_CLIENT_FRAME_BYTES, MAX_HANDSHAKE_BYTES, parseFrameJson } from "../protocol/framing";
import {
  AUTH_FAILED_REASON,
  HandshakeRequestSchema,
  protocolMismatchReason,
  tokenMatches,
  type HandshakeResponse,
} from "../protocol/handshake";
import { isJsonObject, normalizePayload, rawJson, type IpcMessage } from "../protocol/ipc-message";
import { CLIENT_CONNECTED_TOPIC, CLIENT_DISCONNECT_TOPIC, CLIENT_ERROR_TOPIC } from "../protocol/topics";
import { memoTopicPredicate } from "../protocol/topic-cache";
import { MAX_TOPIC_BYTES, topicProblem } from "../protocol/topic-match";
import { DAEMON_VERSION, PROTOCOL_VERSION } from "../protocol/version";
import type { BusEvent, ConnectionId, EventBus } from "./bus";
import type { SocketPolicy } from "./ingress-policy";
import type { AuditLog } from "./audit-log";
import type { Logger } from "./logger";
import type { SessionToken } from "./session-token";
import { nowRfc3339 } from "../protocol/timestamp";

/** Default limit on authenticated clients (the reference hard-codes 8). */
export const DEFAULT_MAX_CLIENTS = 256;
/** A client that has not completed its handshake by then is dropped silently. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/**
 * A frame begun after the handshake must be complete within this plus 1 ms per KiB it declares (reference §3.1):
 * a client that stops mid-frame is dropped instead of holding its buffer forever.
 */
export const FRAME_READ_TIMEOUT_MS = 5000;
/** After its deadline, a frame still receiving bytes gets this much more each time it made progress. */
const FRAME_PROGRESS_GRACE_MS = 1000;
/** How long a connection we closed may take to read our last frame before it is destroyed. */
const CLOSE_LINGER_MS = 1000;
/** A client that lets this much egress pile up unread is dropped, so one slow reader never stalls the rest. */
export const MAX_EGRESS_BACKLOG_BYTES = 64 * 1024 * 1024;
/** Messages kept for the first client while none is connected (the TUI relies on the boot-time backlog). */
export const OFFLINE_BACKLOG_LIMIT = 1024;

/** What the server needs from the kernel. */
export interface SocketServerOptions {
  socketPath: string;
  token: SessionToken;
  bus: EventBus;
  policy: SocketPolicy;
  logger: Logger;
  maxClients: number;
  /** `source_id` stamped on what clients publish (the socket proxy's id, as the reference's proxy capsule). */
  proxySourceId: string;
  /** `source_id` of the daemon's own frames (the kernel session id). */
  kernelSourceId: string;
  /** Principal of every socket client (the reference's proxy always publishes as `default`). */
  principal: string;
  /** Where connects, failed authentications and disconnects are recorded. */
  audit?: AuditLog;
}

type Phase = "handshake" | "open" | "closed";

/** One client connection. */
class Connection {
  phase: Phase = "handshake";
  readonly decoder = new FrameDecoder(MAX_HANDSHAKE_BYTES);
  handshakeTimer: NodeJS.Timeout | undefined;
  /** Deadline of the frame being received (open phase), and when that frame began and what it was allowed. */
  frameTimer: NodeJS.Timeout | undefined;
  frameStartedAt = 0;
  frameBudgetMs = 0;

  constructor(
    readonly id: ConnectionId,
    readonly socket: net.Socket,
  ) {}

  /** Writes a complete frame; drops the client when it stops reading. Returns false when it was dropped. */
  send(frame: Buffer): boolean {
    if (this.phase === "closed" || this.socket.destroyed) return false;
    if (this.socket.writableLength > MAX_EGRESS_BACKLOG_BYTES) {
      this.socket.destroy(new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "client stopped reading its messages"));
      return false;
    }
    this.socket.write(frame);
    return true;
  }
}

/** The daemon's Unix socket server. */
export class SocketServer {
  private readonly server: net.Server;
  private readonly connections = new Map<ConnectionId, Connection>();
  private readonly open = new Map<ConnectionId, Connection>();
  private readonly offlineBacklog: Buffer[] = [];
  private offlineDropped = 0;
  private nextId = 1;
  private boundInode: number | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Topics that pass the publish rules, remembered (only short ones are ever asked: longer ones fail first). */
  private readonly validTopic = memoTopicPredicate((topic) => topicProblem(topic) === null);
  /** The CLI capsule's ingress/egress rules in force (replaced by a hot reload of that capsule). */
  private policy: SocketPolicy;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: SocketServerOptions) {
    this.policy = options.policy;
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on("error", (err) => options.logger.error("socket server error", { error: err.message }));
  }

  /** Authenticated connections right now. */
  get clientCount(): number {
    return this.open.size;
  }

  /** Binds the (prepared) socket path and starts forwarding the egress set. */
  async listen(): Promise<void> {
    const { socketPath, bus } = this.options;
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        reject(new AstridError("ASTRID_ERR_SOCKET_UNAVAILABLE", `cannot bind ${socketPath}: ${err.message}`, { cause: err }));
      };
      this.server.once("error", onError);
      this.server.listen(socketPath, () => {
        this.server.off("error", onError);
        resolve();
      });
    });
    this.boundInode = (await fs.promises.stat(socketPath)).ino;
    this.unsubscribe = bus.subscribe(this.policy.egress, (event) => this.forward(event));
  }

  /** The ingress/egress rules the socket applies now. */
  get policyInForce(): SocketPolicy {
    return this.policy;
  }

  /**
   * Swaps in a new ingress/egress policy (the CLI capsule's manifest was edited): the next frame is judged by it and
   * the next bus message forwarded by it; connections stay open.
   */
  setPolicy(policy: SocketPolicy): void {
    this.policy = policy;
    if (this.unsubscribe === undefined) return;
    this.unsubscribe();
    this.unsubscribe = this.options.bus.subscribe(policy.egress, (event) => this.forward(event));
  }

  /**
   * Stops accepting, lets every client's pending frames drain (up to `timeoutMs`), then destroys what remains and
   * removes the socket file — only if it is still the one we bound. Idempotent.
   */
  close(timeoutMs = 2000): Promise<void> {
    this.closing ??= this.doClose(timeoutMs);
    return this.closing;
  }

  private async doClose(timeoutMs: number): Promise<void> {
    this.unsubscribe?.();
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    const drained = [...this.connections.values()].map(
      (conn) =>
        new Promise<void>((resolve) => {
          // `closed`, not `destroyed`: a destroyed socket still emits "close" (and its disconnect) a tick later.
          if (conn.socket.closed) return resolve();
          conn.socket.once("close", () => resolve());
          conn.socket.end();
        }),
    );
    const timer = setTimeout(() => {
      for (const conn of this.connections.values()) conn.socket.destroy();
    }, timeoutMs);
    await Promise.all(drained);
    clearTimeout(timer);
    await serverClosed;
    await this.removeSocketFile();
  }

  private async removeSocketFile(): Promise<void> {
    const { socketPath } = this.options;
    try {
      if (this.boundInode !== undefined && (await fs.promises.stat(socketPath)).ino === this.boundInode) await fs.promises.unlink(socketPath);
    } catch {
      // Already gone (Node unlinks it on close); nothing to do.
    }
  }

  private accept(socket: net.Socket): void {
    const conn = new Connection(this.nextId++, socket);
    this.connections.set(conn.id, conn);
    socket.setNoDelay(true);
    conn.handshakeTimer = setTimeout(() => {
      this.options.logger.debug("handshake timed out", { connection: conn.id });
      socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("error", (err) => this.options.logger.debug("client socket error", { connection: conn.id, error: err.message }));
    socket.on("close", () => this.onClose(conn));
  }

  private onData(conn: Connection, chunk: Buffer): void {
    // A connection we are closing gets no more buffering, whatever its peer keeps sending.
    if (conn.phase === "closed") return;
    conn.decoder.push(chunk);
    // (The handlers below may close it: the phase is read afresh each time.)
    while ((conn.phase as Phase) !== "closed") {
      let body: Buffer | null;
      try {
        body = conn.decoder.next();
      } catch (err) {
        this.onOversize(conn, err as AstridError);
        return;
      }
      if (body === null) {
        this.watchPartialFrame(conn);
        return;
      }
      clearTimeout(conn.frameTimer);
      conn.frameTimer = undefined;
      if (conn.phase === "handshake") this.onHandshake(conn, body);
      else this.onFrame(conn, body);
    }
  }

  /** Starts (or, once the length prefix is known, stretches) the deadline of a frame still being received. */
  private watchPartialFrame(conn: Connection): void {
    if (conn.phase !== "open" || conn.decoder.pendingBytes === 0) return;
    const budget = FRAME_READ_TIMEOUT_MS + Math.ceil((conn.decoder.declaredLength ?? 0) / 1024);
    if (conn.frameTimer !== undefined && budget === conn.frameBudgetMs) return;
    if (conn.frameTimer === undefined) conn.frameStartedAt = Date.now();
    clearTimeout(conn.frameTimer);
    conn.frameBudgetMs = budget;
    const expire = () => {
      // Timers run before the loop reads sockets: when the daemon itself was busy, the rest of the frame may be
      // waiting unread. Read first (setImmediate runs after the poll phase); drop only a client that sent nothing.
      const timer = conn.frameTimer;
      const seen = conn.decoder.pendingBytes;
      setImmediate(() => {
        if (conn.frameTimer !== timer || conn.phase !== "open") return; // completed, replaced or closed meanwhile
        // Still arriving: a little more time, but never past twice the budget (a trickle is not progress forever).
        if (conn.decoder.pendingBytes !== seen && Date.now() - conn.frameStartedAt < 2 * budget) {
          conn.frameTimer = setTimeout(expire, FRAME_PROGRESS_GRACE_MS);
          return;
        }
        const message = `a frame was not completed within ${budget} ms (${conn.decoder.pendingBytes} bytes received)`;
        this.options.logger.warn("client stalled mid-frame; dropping client", { connection: conn.id, error: message });
        this.closeWith(conn, this.errorFrame("ASTRID_ERR_TIMEOUT", message));
      });
    };
    conn.frameTimer = setTimeout(expire, Math.max(0, conn.frameStartedAt + budget - Date.now()));
  }

  private onOversize(conn: Connection, err: AstridError): void {
    this.options.logger.warn("client frame too large; dropping client", { connection: conn.id, error: err.message });
    if (conn.phase === "open") {
      // The stream cannot be resynchronised after a bogus length prefix: tell the client why, then close.
      this.closeWith(conn, this.errorFrame(err.code, err.message));
    } else {
      // Reference §3.2: an oversized handshake gets no reply.
      this.drop(conn);
    }
  }

  private onHandshake(conn: Connection, body: Buffer): void {
    clearTimeout(conn.handshakeTimer);
    let value: unknown;
    try {
      value = parseFrameJson(body);
    } catch {
      return this.drop(conn); // Reference §3.2: invalid JSON gets no reply.
    }
    const parsed = HandshakeRequestSchema.safeParse(value);
    if (!parsed.success) {
      return this.refuse(conn, "ASTRID_ERR_HANDSHAKE_INVALID",
        'invalid handshake: expected {"token":"<64 hex>","protocol_version":1,"client_version":"…"}');
    }
    const request = parsed.data;
    if (request.protocol_version !== PROTOCOL_VERSION) {
      return this.refuse(conn, "ASTRID_ERR_PROTOCOL_MISMATCH", protocolMismatchReason(request.protocol_version));
    }
    if (!tokenMatches(this.options.token.bytes, request.token)) {
      this.options.logger.warn("client authentication failed", { connection: conn.id });
      this.options.audit?.client("client_auth_failed", conn.id, { reason: AUTH_FAILED_REASON });
      return this.refuse(conn, "ASTRID_ERR_AUTH_FAILED", AUTH_FAILED_REASON);
    }
    if (this.open.size >= this.options.maxClients) {
      this.options.logger.warn("client refused: at the client limit", { connection: conn.id, max_clients: this.options.maxClients });
      return this.refuse(conn, "ASTRID_ERR_TOO_MANY_CLIENTS",
        `too many clients: the daemon serves at most ${this.options.maxClients} (set ASTRID_MAX_CLIENTS to raise it)`);
    }
    const ok: HandshakeResponse = { status: "ok", protocol_version: PROTOCOL_VERSION, server_version: DAEMON_VERSION };
    conn.socket.write(encodeFrame(ok));
    conn.phase = "open";
    conn.decoder.setLimit(MAX_CLIENT_FRAME_BYTES);
    this.open.set(conn.id, conn);
    this.options.logger.info("client connected", {
      connection: conn.id,
      client_version: (request.client_version ?? "").slice(0, 64),
      clients: this.open.size,
    });
    this.options.audit?.client("client_connected", conn.id, { client_version: (request.client_version ?? "").slice(0, 64) });
    this.flushOfflineBacklog(conn);
    this.publish(conn, CLIENT_CONNECTED_TOPIC, { type: "connect" });
  }

  private refuse(conn: Connection, code: ErrorCode, reason: string): void {
    const reply: HandshakeResponse = { status: "error", protocol_version: PROTOCOL_VERSION, server_version: DAEMON_VERSION, reason, code };
    this.closeWith(conn, encodeFrame(reply));
  }

  private onFrame(conn: Connection, body: Buffer): void {
    let value: unknown;
    try {
      value = parseFrameJson(body);
    } catch (err) {
      return this.reject(conn, err);
    }
    if (!isJsonObject(value)) {
      return this.reject(conn, new AstridError("ASTRID_ERR_MESSAGE_INVALID", "a frame must hold a JSON object with a string \"topic\""));
    }
    const topic = value.topic;
    if (typeof topic !== "string") {
      return this.reject(conn, new AstridError("ASTRID_ERR_MESSAGE_INVALID", 'message has no string "topic"'));
    }
    // Reference §6.8's publish rules (≤ 256 bytes, ≤ 8 segments, none empty, no `*`) apply to clients too; they
    // also bound what the topic-match caches can hold.
    const problem = topic.length > MAX_TOPIC_BYTES || !this.validTopic(topic) ? topicProblem(topic) : null;
    if (problem !== null) {
      return this.reject(conn, new AstridError("ASTRID_ERR_MESSAGE_INVALID", `${problem}: ${JSON.stringify(topic.slice(0, 64))}${topic.length > 64 ? "…" : ""}`));
    }
    if (!this.policy.mayPublish(topic)) {
      this.options.logger.warn("client publish denied", { connection: conn.id, topic: topic.slice(0, 256) });
      return this.reject(conn, new AstridError("ASTRID_ERR_TOPIC_DENIED", `clients may not publish on ${JSON.stringify(topic.slice(0, 256))}`));
    }
    if (topic === CLIENT_DISCONNECT_TOPIC) {
      // A goodbye: close this connection; onClose publishes the single disconnect the tracker counts.
      conn.socket.end();
      return;
    }
    this.publish(conn, topic, value.payload);
  }

  private publish(conn: Connection, topic: string, payload: unknown): void {
    this.options.bus.publish({
      topic,
      payload: normalizePayload(payload),
      source_id: this.options.proxySourceId,
      principal: this.options.principal,
      origin: conn.id,
    });
  }

  /** Tells one client a frame was refused; the connection stays open. */
  private reject(conn: Connection, err: unknown): void {
    const code = isAstridError(err) ? err.code : "ASTRID_ERR_MESSAGE_INVALID";
    const message = err instanceof Error ? err.message : String(err);
    conn.send(this.errorFrame(code, message));
  }

  private errorFrame(code: ErrorCode, message: string): Buffer {
    const frame: IpcMessage = {
      topic: CLIENT_ERROR_TOPIC,
      payload: rawJson({ code, message }),
      signature: null,
      source_id: this.options.kernelSourceId,
      timestamp: nowRfc3339(),
      seq: 0,
    };
    return encodeFrame(frame);
  }

  private forward(event: BusEvent): void {
    if (event.internal) return;
    const frame = encodeFrame(event.message);
    if (event.target !== undefined) {
      this.open.get(event.target)?.send(frame);
      return;
    }
    if (this.open.size === 0) {
      this.offlineBacklog.push(frame);
      if (this.offlineBacklog.length > OFFLINE_BACKLOG_LIMIT) {
        this.offlineBacklog.shift();
        this.offlineDropped++;
      }
      return;
    }
    for (const conn of this.open.values()) conn.send(frame);
  }

  private flushOfflineBacklog(conn: Connection): void {
    if (this.offlineDropped > 0) {
      this.options.logger.warn("offline backlog overflowed before the first client connected", { dropped: this.offlineDropped });
      this.offlineDropped = 0;
    }
    for (const frame of this.offlineBacklog.splice(0)) conn.send(frame);
  }

  private closeWith(conn: Connection, frame: Buffer): void {
    clearTimeout(conn.handshakeTimer);
    clearTimeout(conn.frameTimer);
    const wasOpen = conn.phase === "open";
    conn.phase = "closed";
    if (wasOpen) this.markClosed(conn);
    conn.decoder.clear();
    conn.socket.end(frame);
    // `end` closes our half only: a peer that never closes its half would keep the socket open for good.
    setTimeout(() => conn.socket.destroy(), CLOSE_LINGER_MS).unref();
  }

  private drop(conn: Connection): void {
    conn.phase = "closed";
    conn.socket.destroy();
  }

  private onClose(conn: Connection): void {
    clearTimeout(conn.handshakeTimer);
    clearTimeout(conn.frameTimer);
    this.connections.delete(conn.id);
    conn.phase = "closed";
    this.markClosed(conn);
  }

  /** Removes an authenticated connection once and publishes its disconnect. */
  private markClosed(conn: Connection): void {
    if (!this.open.delete(conn.id)) return;
    this.options.logger.info("client disconnected", { connection: conn.id, clients: this.open.size });
    this.options.audit?.client("client_disconnected", conn.id);
    this.options.bus.publish({
      topic: CLIENT_DISCONNECT_TOPIC,
      payload: { type: "disconnect", reason: "stream_closed" },
      source_id: this.options.proxySourceId,
      principal: this.options.principal,
      origin: conn.id,
    });
  }
}
