/**
 * The socket server: accepts frontends on `run/system.sock`, runs the handshake (the operator's session token, or
 * a frontend's own credential), applies the ingress allowlist, stamps each message with the principal it acts for
 * (never one the client sent), publishes it onto the bus, and writes to each client what it should receive:
 * replies only to the connection that asked, session events only to the connections in that session, kernel-wide
 * events to every client. Flow control lives in `client-connection.ts`, session ownership in `session-router.ts`.
 */
import fs from "node:fs";
import net from "node:net";
import { z } from "zod";
import { DisplayNameSchema, PlatformSchema, PlatformUserIdSchema } from "../protocol/identity-names";
import { AstridError, isAstridError, type ErrorCode } from "../protocol/errors";
import { encodeFrame, MAX_CLIENT_FRAME_BYTES, parseFrameJson } from "../protocol/framing";
import {
  AUTH_FAILED_REASON,
  HandshakeRequestSchema,
  protocolMismatchReason,
  tokenMatches,
  type HandshakeResponse,
} from "../protocol/handshake";
import { isJsonObject, normalizePayload, rawJson, type IpcMessage, type IpcPayload } from "../protocol/ipc-message";
import {
  ADMIN_RESPONSE_TOPIC_PREFIX,
  ADMIN_TOPIC_PREFIX,
  CLIENT_CONNECTED_TOPIC,
  CLIENT_DISCONNECT_TOPIC,
  CLIENT_ERROR_TOPIC,
  REQUEST_TOPIC_PREFIX,
  RESPONSE_TOPIC_PREFIX,
  SESSION_JOIN_TOPIC,
  SESSION_JOINED_TOPIC,
  SESSION_LEAVE_TOPIC,
  isAnswerTopic,
} from "../protocol/topics";
import { memoTopicPredicate } from "../protocol/topic-cache";
import { MAX_TOPIC_BYTES, topicProblem } from "../protocol/topic-match";
import { DAEMON_VERSION, PROTOCOL_VERSION } from "../protocol/version";
import type { Attribution, BusEvent, ConnectionId, EventBus } from "./bus";
import { ClientConnection, type ConnectionIdentity } from "./client-connection";
import { isSessionScoped, sessionIdOf, SessionRouter } from "./session-router";
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
  /** Principal of the operator's own connections, the ones that present the session token (`default`). */
  principal: string;
  /** Where connects, failed authentications and disconnects are recorded. */
  audit?: AuditLog;
  /** How long a client over its egress budget may take no byte before it is disconnected (default 30 s). */
  stallTimeoutMs?: number;
  /** Frontend credentials: a handshake token that is not the session token is looked up here. */
  frontends?: FrontendAuth;
  /** Resolves the platform user a frontend's message speaks for to a principal. */
  users?: PlatformUserResolver;
}

/** What a frontend credential allows. */
export interface FrontendGrant {
  name: string;
  platforms: readonly string[];
}

/** Looks a handshake token up among the frontend credentials. */
export interface FrontendAuth {
  match(token: string): Promise<FrontendGrant | undefined>;
}

/** A platform user a frontend's message speaks for (the frame's `user` field). */
export interface PlatformUser {
  platform: string;
  platform_user_id: string;
  display_name?: string;
}

/** Resolves a frontend's platform user to a principal; throws a coded error when the user may not act. */
export interface PlatformUserResolver {
  resolve(frontend: string, user: PlatformUser): Promise<string>;
}

/** The frame's `user` field: who on the frontend's platform a message speaks for. */
const PlatformUserSchema = z.strictObject({
  platform: PlatformSchema,
  platform_user_id: PlatformUserIdSchema,
  display_name: DisplayNameSchema.optional(),
});

type Phase = ClientConnection["phase"];
type Connection = ClientConnection;

/** Per-connection facts GetStatus shows. */
export interface ClientInfo {
  connection: ConnectionId;
  principal: string;
  via: ConnectionIdentity["via"];
  frontend?: string;
  client_name?: string;
  connected_secs: number;
  /** Principals it acts for besides its own: a frontend's platform users (as resolved; linked users may share one). */
  users: number;
  /** Sessions it is in. */
  sessions: number;
  /** Bytes received from it and sent to it. */
  bytes_in: number;
  bytes_out: number;
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
  /** Who is in which session. */
  readonly sessions = new SessionRouter();
  /** Connections waiting on an asynchronous step; their frames are processed once it is done. */
  private readonly busy = new Set<ConnectionId>();
  /** The frontend credential each frontend connection presented. */
  private readonly frontendGrants = new Map<ConnectionId, FrontendGrant>();
  /** Unread egress of every connection together, as of the last count (see totalEgress). */
  private egressTotal = 0;
  private egressCountedAt = 0;

  constructor(private readonly options: SocketServerOptions) {
    this.policy = options.policy;
    this.server = net.createServer((socket) => this.accept(socket));
    this.server.on("error", (err) => options.logger.error("socket server error", { error: err.message }));
  }

  /** Authenticated connections right now. */
  get clientCount(): number {
    return this.open.size;
  }

  /** How many open connections act for `principal` (elicitation asks the owner's connections). */
  actingFor(principal: string): number {
    let n = 0;
    for (const conn of this.open.values()) if (conn.actsFor.has(principal)) n++;
    return n;
  }

  /** True when the open connection `id` acts for `principal` (an answer to a question must come from one). */
  connectionActsFor(id: ConnectionId, principal: string): boolean {
    return this.open.get(id)?.actsFor.has(principal) === true;
  }

  /** Tells one open connection that a frame it sent was not taken (an `astrid.v1.error` frame, to it only). */
  tellConnection(id: ConnectionId, code: ErrorCode, message: string): void {
    this.open.get(id)?.send(this.errorFrame(code, message));
  }

  /** Who is connected, for GetStatus. */
  clients(): ClientInfo[] {
    const now = Date.now();
    return [...this.open.values()].map((conn) => ({
      connection: conn.id,
      principal: conn.identity!.principal,
      via: conn.identity!.via,
      ...(conn.identity!.frontend !== undefined ? { frontend: conn.identity!.frontend } : {}),
      ...(conn.identity!.clientName !== undefined ? { client_name: conn.identity!.clientName } : {}),
      connected_secs: Math.floor((now - conn.connectedAt) / 1000),
      users: conn.actsFor.size - (conn.actsFor.has(conn.identity!.principal) ? 1 : 0),
      sessions: this.sessions.joinedBy(conn.id),
      bytes_in: conn.socket.bytesRead,
      bytes_out: conn.socket.bytesWritten,
    }));
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
    const conn = new ClientConnection(this.nextId++, socket, {
      totalEgress: () => this.totalEgress(),
      stallTimeoutMs: this.options.stallTimeoutMs ?? 30_000,
      stalled: (c, reason) => {
        this.options.logger.warn("client does not read its messages; disconnecting it", { connection: c.id, reason });
        this.closeWith(c, this.errorFrame("ASTRID_ERR_SLOW_CONSUMER", `disconnected: the client ${reason}`));
      },
    });
    this.connections.set(conn.id, conn);
    socket.setNoDelay(true);
    conn.handshakeTimer = setTimeout(() => {
      this.options.logger.debug("handshake timed out", { connection: conn.id });
      socket.destroy();
    }, HANDSHAKE_TIMEOUT_MS);
    conn.resumeFrames = () => this.processFrames(conn);
    socket.on("data", (chunk: Buffer) => this.onData(conn, chunk));
    socket.on("error", (err) => this.options.logger.debug("client socket error", { connection: conn.id, error: err.message }));
    socket.on("close", () => this.onClose(conn));
  }

  private onData(conn: Connection, chunk: Buffer): void {
    // A connection we are closing gets no more buffering, whatever its peer keeps sending.
    if (conn.phase === "closed") return;
    conn.decoder.push(chunk);
    this.processFrames(conn);
  }

  /** Handles the complete frames in the decoder, in order, until it is empty, the client closed or paused. */
  private processFrames(conn: Connection): void {
    // (The handlers below may close or pause it: both are read afresh each time.)
    while ((conn.phase as Phase) !== "closed" && !conn.paused && !this.busy.has(conn.id)) {
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
    const clientName = typeof request.client_name === "string" ? request.client_name.slice(0, 64) : undefined;
    if (tokenMatches(this.options.token.bytes, request.token)) {
      return this.admit(conn, { principal: this.options.principal, via: "session_token", ...(clientName ? { clientName } : {}) }, request.client_version);
    }
    // Not the operator's token: perhaps a frontend's credential (looked up asynchronously, frames wait meanwhile).
    const frontends = this.options.frontends;
    const lookup = frontends ? frontends.match(request.token) : Promise.resolve(undefined);
    this.whileBusy(conn, lookup.then(
      (grant) => {
        if (conn.phase !== "handshake") return;
        if (!grant) return this.authFailed(conn);
        this.frontendGrants.set(conn.id, grant);
        this.admit(conn, { principal: grant.name, via: "frontend", frontend: grant.name, ...(clientName ? { clientName } : {}) }, request.client_version);
      },
      (err: Error) => {
        this.options.logger.error("frontend credential lookup failed", { connection: conn.id, error: err.message });
        if (conn.phase === "handshake") this.authFailed(conn);
      },
    ));
  }

  private authFailed(conn: Connection): void {
    this.options.logger.warn("client authentication failed", { connection: conn.id });
    this.options.audit?.client("client_auth_failed", conn.id, { reason: AUTH_FAILED_REASON });
    this.refuse(conn, "ASTRID_ERR_AUTH_FAILED", AUTH_FAILED_REASON);
  }

  /** A handshake that authenticated: check the client limit, answer, and open the connection. */
  private admit(conn: Connection, identity: ConnectionIdentity, clientVersion: string | undefined): void {
    if (this.open.size >= this.options.maxClients) {
      this.options.logger.warn("client refused: at the client limit", { connection: conn.id, max_clients: this.options.maxClients });
      return this.refuse(conn, "ASTRID_ERR_TOO_MANY_CLIENTS",
        `too many clients: the daemon serves at most ${this.options.maxClients} (set ASTRID_MAX_CLIENTS to raise it)`);
    }
    const ok: HandshakeResponse = { status: "ok", protocol_version: PROTOCOL_VERSION, server_version: DAEMON_VERSION };
    conn.socket.write(encodeFrame(ok));
    conn.phase = "open";
    conn.identity = identity;
    conn.actsFor.add(identity.principal);
    conn.decoder.setLimit(MAX_CLIENT_FRAME_BYTES);
    this.open.set(conn.id, conn);
    const detail = {
      client_version: (clientVersion ?? "").slice(0, 64),
      principal: identity.principal,
      via: identity.via,
      ...(identity.clientName !== undefined ? { client_name: identity.clientName } : {}),
    };
    this.options.logger.info("client connected", { connection: conn.id, ...detail, clients: this.open.size });
    this.options.audit?.client("client_connected", conn.id, detail);
    this.flushOfflineBacklog(conn);
    this.publish(conn, CLIENT_CONNECTED_TOPIC, { type: "connect" }, identity.principal);
  }

  /**
   * Runs an asynchronous step of one connection (a credential lookup, a platform user's resolution): its frames
   * wait, in order, and its socket is paused so nothing piles up meanwhile.
   */
  private whileBusy(conn: Connection, work: Promise<void>): void {
    this.busy.add(conn.id);
    conn.socket.pause();
    void work.finally(() => {
      this.busy.delete(conn.id);
      if (conn.phase === "closed") return;
      if (!conn.paused) conn.socket.resume();
      this.processFrames(conn);
    });
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
    if (value.user !== undefined) return this.onUserFrame(conn, topic, value.payload, value.user);
    this.deliver(conn, topic, value.payload, conn.identity!.principal);
  }

  /**
   * A frame that speaks for a platform user: only a frontend may send one, only for a platform its credential
   * allows; the user resolves (through the identity links, asynchronously) to the principal the message carries.
   */
  private onUserFrame(conn: Connection, topic: string, payload: unknown, rawUser: unknown): void {
    const grant = this.frontendGrants.get(conn.id);
    if (!grant) {
      return this.reject(conn, new AstridError("ASTRID_ERR_PLATFORM_DENIED",
        "only a frontend credential may speak for platform users; the session token speaks for the operator"));
    }
    const parsed = PlatformUserSchema.safeParse(rawUser);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      return this.reject(conn, new AstridError("ASTRID_ERR_MESSAGE_INVALID", `user.${issue?.path.join(".") ?? ""}: ${issue?.message ?? "invalid"}`));
    }
    const user = parsed.data;
    if (!grant.platforms.includes(user.platform)) {
      this.options.logger.warn("frontend claimed a platform it was not allowed", { connection: conn.id, frontend: grant.name, platform: user.platform });
      this.options.audit?.client("client_claim_denied", conn.id, { frontend: grant.name, platform: user.platform });
      return this.reject(conn, new AstridError("ASTRID_ERR_PLATFORM_DENIED",
        `frontend ${grant.name} may not speak for ${user.platform} users (allowed: ${grant.platforms.join(", ") || "none"})`));
    }
    const resolver = this.options.users;
    if (!resolver) return this.reject(conn, new AstridError("ASTRID_ERR_IDENTITY_UNLINKED", "platform users are not resolved by this daemon"));
    this.whileBusy(conn, resolver.resolve(grant.name, user).then(
      (principal) => {
        if (conn.phase !== "open") return;
        conn.actsFor.add(principal);
        this.deliver(conn, topic, payload, principal, "claimed");
      },
      (err: unknown) => {
        if (conn.phase === "open") this.reject(conn, err);
      },
    ));
  }

  /**
   * Publishes a client's message as `principal`, after its session rules: a message naming a session (or the
   * `default` one a prompt without a `session_id` stands for) joins the connection to `principal`'s session of that
   * id, creating it when new. Requests count against the connection's in-flight bound.
   */
  private deliver(conn: Connection, topic: string, payload: unknown, principal: string, attribution: Attribution = "verified"): void {
    if (topic === SESSION_JOIN_TOPIC || topic === SESSION_LEAVE_TOPIC) return this.onSessionControl(conn, topic, payload, principal);
    const normalized = normalizePayload(payload);
    const sessionId = sessionIdOf(normalized);
    if (sessionId !== undefined && !this.sessions.isMember(conn.id, principal, sessionId)) {
      try {
        this.sessions.join(conn.id, sessionId, principal, (owner) => conn.actsFor.has(owner));
      } catch (err) {
        return this.reject(conn, err);
      }
    }
    if (isRequestTopic(topic)) conn.requestSent();
    this.publish(conn, topic, normalized, principal, attribution);
  }

  /**
   * `client.v1.session.join` / `.leave` with `{session_id, owner?}` (owner: the principal whose session it is, by
   * default the one this connection speaks as): answered on `client.v1.session.joined` (or an error). Joining a
   * session of a principal this connection may not act for is ASTRID_ERR_SESSION_DENIED, and audited.
   */
  private onSessionControl(conn: Connection, topic: string, payload: unknown, principal: string): void {
    const sessionId = sessionIdOf(payload);
    const ownerField = payload !== null && typeof payload === "object" ? (payload as { owner?: unknown }).owner : undefined;
    if (sessionId === undefined || (ownerField !== undefined && typeof ownerField !== "string")) {
      return this.reject(conn, new AstridError("ASTRID_ERR_MESSAGE_INVALID", `${topic} needs a payload with a string session_id (and optionally a string owner)`));
    }
    const owner = (ownerField as string | undefined) ?? principal;
    if (topic === SESSION_LEAVE_TOPIC) return this.sessions.leave(conn.id, owner, sessionId);
    try {
      this.sessions.join(conn.id, sessionId, principal, (p) => conn.actsFor.has(p), owner);
    } catch (err) {
      if (isAstridError(err) && err.code === "ASTRID_ERR_SESSION_DENIED") {
        this.options.audit?.client("client_session_denied", conn.id, { principal, owner: owner.slice(0, 64), session_id: sessionId.slice(0, 64) });
      }
      return this.reject(conn, err);
    }
    conn.send(this.kernelFrame(SESSION_JOINED_TOPIC, { session_id: sessionId, owner }));
  }

  /** Publishes a payload already normalised (the session rules read it in that form first). */
  private publish(conn: Connection, topic: string, payload: IpcPayload, principal: string, attribution: Attribution = "verified"): void {
    this.options.bus.publish({
      topic,
      payload,
      source_id: this.options.proxySourceId,
      principal,
      origin: conn.id,
      attribution,
    });
  }

  /** Tells one client a frame was refused; the connection stays open. */
  private reject(conn: Connection, err: unknown): void {
    const code = isAstridError(err) ? err.code : "ASTRID_ERR_MESSAGE_INVALID";
    const message = err instanceof Error ? err.message : String(err);
    conn.send(this.errorFrame(code, message));
  }

  private errorFrame(code: ErrorCode, message: string): Buffer {
    return this.kernelFrame(CLIENT_ERROR_TOPIC, { code, message });
  }

  /** A frame from the kernel to one client only (never on the bus). */
  private kernelFrame(topic: string, data: Record<string, unknown>): Buffer {
    const frame: IpcMessage = {
      topic,
      payload: rawJson(data),
      signature: null,
      source_id: this.options.kernelSourceId,
      timestamp: nowRfc3339(),
      seq: 0,
    };
    return encodeFrame(frame);
  }

  private forward(event: BusEvent): void {
    if (event.internal) return;
    const { message } = event;
    if (event.target !== undefined) {
      const conn = this.open.get(event.target);
      if (!conn) return;
      const reply = isReplyTopic(message.topic);
      if (reply) conn.replyWritten();
      conn.send(encodeFrame(message), reply);
      return;
    }
    // A person's answer (maybe an elicited secret) is for the kernel only, never echoed to other clients.
    if (isAnswerTopic(message.topic)) return;
    if (isSessionScoped(message.topic)) return this.forwardToSession(event);
    const frame = encodeFrame(message);
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

  /**
   * A session event reaches the connections in its session (and only when its principal owns the session); one
   * without a session id field at all (an approval, say) reaches the connections acting for its principal. Nothing
   * else sees it.
   */
  private forwardToSession(event: BusEvent): void {
    const { message } = event;
    const sessionId = sessionIdOf(message.payload);
    let frame: Buffer | undefined;
    const send = (conn: Connection | undefined) => {
      if (!conn) return;
      frame ??= encodeFrame(message);
      conn.send(frame);
    };
    if (sessionId !== undefined) {
      for (const id of this.sessions.membersFor(sessionId, message.principal) ?? []) send(this.open.get(id));
      return;
    }
    if (message.principal === undefined) return;
    for (const conn of this.open.values()) if (conn.actsFor.has(message.principal)) send(conn);
  }

  /** Unread egress of all connections, recounted at most every 100 ms (the global budget needs no more). */
  private totalEgress(): number {
    const now = Date.now();
    if (now - this.egressCountedAt >= 100) {
      this.egressCountedAt = now;
      let total = 0;
      for (const conn of this.open.values()) total += conn.socket.writableLength;
      this.egressTotal = total;
    }
    return this.egressTotal;
  }

  private flushOfflineBacklog(conn: Connection): void {
    if (this.offlineDropped > 0) {
      this.options.logger.warn("offline backlog overflowed before the first client connected", { dropped: this.offlineDropped });
      this.offlineDropped = 0;
    }
    for (const frame of this.offlineBacklog.splice(0)) conn.send(frame);
  }

  private closeWith(conn: Connection, frame: Buffer): void {
    conn.dispose();
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
    conn.dispose();
    this.connections.delete(conn.id);
    conn.phase = "closed";
    this.markClosed(conn);
  }

  /** Removes an authenticated connection once and publishes its disconnect. */
  private markClosed(conn: Connection): void {
    this.busy.delete(conn.id);
    if (!this.open.delete(conn.id)) return;
    this.sessions.dropConnection(conn.id);
    this.frontendGrants.delete(conn.id);
    this.options.logger.info("client disconnected", { connection: conn.id, clients: this.open.size });
    this.options.audit?.client("client_disconnected", conn.id);
    this.options.bus.publish({
      topic: CLIENT_DISCONNECT_TOPIC,
      payload: { type: "disconnect", reason: "stream_closed" },
      source_id: this.options.proxySourceId,
      principal: conn.identity?.principal ?? this.options.principal,
      origin: conn.id,
    });
  }
}

/** True for a management or admin request topic (not a response). */
function isRequestTopic(topic: string): boolean {
  return topic.startsWith(REQUEST_TOPIC_PREFIX) || (topic.startsWith(ADMIN_TOPIC_PREFIX) && !topic.startsWith(ADMIN_RESPONSE_TOPIC_PREFIX));
}

/** True for a reply to a management or admin request. */
function isReplyTopic(topic: string): boolean {
  return topic.startsWith(RESPONSE_TOPIC_PREFIX) || topic.startsWith(ADMIN_RESPONSE_TOPIC_PREFIX);
}
