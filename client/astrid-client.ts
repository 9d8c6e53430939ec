/**
 * The client SDK: one connection to the daemon with requests matched to their replies, prompts as async iterators
 * of their turn's events, session join/leave, topic listeners, approval and elicitation answers, and (optionally)
 * reconnection with backoff that re-joins the sessions it was in. Every failure is a coded AstridError.
 */
import { randomUUID } from "node:crypto";
import { DaemonClient, type KernelReply } from "../protocol/client";
import { AstridError, isAstridError, isErrorCode } from "../protocol/errors";
import { MAX_CLIENT_FRAME_BYTES } from "../protocol/framing";
import { isPlatform, isPlatformUserId } from "../protocol/identity-names";
import type { IpcMessage, IpcPayload } from "../protocol/ipc-message";
import type { KernelMethod } from "../protocol/kernel-request";
import { CLIENT_ERROR_TOPIC, SESSION_JOIN_TOPIC, SESSION_JOINED_TOPIC, SESSION_LEAVE_TOPIC } from "../protocol/topics";
import { resolveOptions, type ClientOptions, type ResolvedOptions } from "./connect-options";
import { Turn } from "./turn";
import { APPROVAL_DECISIONS, sessionOf, turnEventOf, turnIdOf, type ApprovalDecision } from "./turn-events";

/** A platform user a frontend speaks for (frontend credentials only). */
export interface PlatformUser {
  platform: string;
  platform_user_id: string;
  display_name?: string;
}

/** What `onConnection` listeners hear. */
export type ConnectionEvent =
  | { state: "disconnected"; error: AstridError }
  | { state: "reconnected"; attempts: number }
  | { state: "closed"; error?: AstridError };

/** Options of `prompt`. */
export interface PromptOptions {
  /** The platform user the prompt speaks for (frontends). */
  user?: PlatformUser;
  /** Deadline for the final response (ms, default 120 000, as `astrid chat`). */
  timeoutMs?: number;
  /** Send `text` (`/name args`) as a slash command on `cli.v1.command.execute` instead of a prompt. */
  command?: boolean;
}

/** Sessions a client re-joins after a reconnect; past it the oldest is left. The daemon allows 1024 per connection. */
export const MAX_REMEMBERED_SESSIONS = 1000;
/** Room left in a frame for the envelope around a payload. */
const ENVELOPE_SLACK_BYTES = 4096;

interface PendingJoin {
  kind: "join";
  session: string;
  resolve: (v: { session_id: string; owner: string }) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

type Awaiting = Turn | PendingJoin;

function userKeyOf(user: PlatformUser | undefined): string {
  return user === undefined ? "" : `${user.platform}\u0000${user.platform_user_id}`;
}

function checkUser(user: PlatformUser | undefined): void {
  if (user === undefined) return;
  if (user === null || typeof user !== "object" || !isPlatform(user.platform) || !isPlatformUserId(user.platform_user_id)) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "user must be {platform: [a-z0-9_-]{1,32}, platform_user_id: 1–256 printable characters, display_name?}");
  }
}

function checkSession(session: unknown): asserts session is string {
  // eslint-disable-next-line no-control-regex
  if (typeof session !== "string" || session.length === 0 || session.length > 256 || /[\u0000-\u001f\u007f]/.test(session)) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "a session id must be 1–256 printable characters (a UUID is best)");
  }
}

function closedError(): AstridError {
  return new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the connection to the daemon is closed (it stopped, restarted or crashed)");
}

/** A connection to the daemon. Create with `connect()`. */
export class AstridClient {
  private conn: DaemonClient | null = null;
  private readonly topicListeners = new Map<string, Set<(m: IpcMessage) => void>>();
  private readonly connectionListeners = new Set<(e: ConnectionEvent) => void>();
  private readonly turns = new Set<Turn>();
  private readonly awaiting: Awaiting[] = [];
  private readonly remembered = new Map<string, { session: string; user?: PlatformUser }>();
  private closing = false;
  private finished = false;
  private reconnectTimer: NodeJS.Timeout | undefined;

  private constructor(private readonly options: ResolvedOptions) {}

  /** Connects and handshakes; rejects with ASTRID_ERR_DAEMON_NOT_RUNNING, ASTRID_ERR_AUTH_FAILED, ASTRID_ERR_TIMEOUT, … */
  static async connect(options: ClientOptions = {}): Promise<AstridClient> {
    const client = new AstridClient(resolveOptions(options));
    client.attach(await client.open());
    return client;
  }

  /** True while a connection is up (false while reconnecting and after close). */
  get connected(): boolean {
    return this.conn !== null;
  }

  /** The daemon's version from the last handshake. */
  get serverVersion(): string | undefined {
    return this.conn?.serverVersion;
  }

  /**
   * A management request (`GetStatus`, `ListCapsules`, …) answered by its reply. A `status: "Error"` reply rejects
   * with its code; no reply within `timeoutMs` is ASTRID_ERR_TIMEOUT.
   */
  async request(method: KernelMethod, params?: Record<string, unknown>, options: { timeoutMs?: number; topicSuffix?: string } = {}): Promise<KernelReply> {
    const conn = this.live();
    const reply = await conn.request(method, params, { timeoutMs: options.timeoutMs ?? this.options.timeoutMs, ...(options.topicSuffix ? { topicSuffix: options.topicSuffix } : {}) });
    if (reply.status === "Error") {
      const code = (reply as { code?: unknown }).code;
      throw new AstridError(isErrorCode(code) ? code : "ASTRID_ERR_INTERNAL", `${method}: ${String(reply.data)}`);
    }
    return reply;
  }

  /** Publishes one message as given (`payload.type` included); `user` speaks for a platform user. */
  publish(topic: string, payload: IpcPayload, options: { user?: PlatformUser } = {}): void {
    checkUser(options.user);
    const conn = this.live();
    // A frame over the daemon's limit would make it drop this whole connection (every session on it): refuse here.
    const bytes = Buffer.byteLength(JSON.stringify(payload)) + ENVELOPE_SLACK_BYTES;
    if (bytes > MAX_CLIENT_FRAME_BYTES) {
      throw new AstridError("ASTRID_ERR_MESSAGE_TOO_LARGE", `a message of about ${bytes} bytes exceeds the daemon's ${MAX_CLIENT_FRAME_BYTES}-byte frame limit; nothing was sent`);
    }
    conn.publish(topic, payload, options.user === undefined ? {} : { user: options.user });
  }

  /**
   * Sends `text` in `session` and returns its turn: an async iterator of the turn's events that ends after the final
   * response, or throws the error that ended it. Replies are matched by session (and by turn id when the agent echoes
   * it); use a fresh session id (a UUID) per conversation.
   */
  prompt(session: string, text: string, options: PromptOptions = {}): Turn {
    checkSession(session);
    if (typeof text !== "string") throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "prompt text must be a string");
    checkUser(options.user);
    const timeoutMs = options.timeoutMs ?? 120_000;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "timeoutMs must be a whole number ≥ 1");
    const id = randomUUID();
    // Sent before the turn exists: a publish that throws (not connected, too large) leaves no turn and no timer behind,
    // and no reply can arrive before this returns (replies are read on a later turn of the event loop).
    this.publish(options.command === true ? "cli.v1.command.execute" : "user.v1.prompt", { type: "user_input", text, session_id: session, context: { turn_id: id } }, options.user ? { user: options.user } : {});
    const turn = new Turn(session, id, userKeyOf(options.user), timeoutMs, (t) => this.forget(t));
    this.turns.add(turn);
    this.awaiting.push(turn);
    this.remember(session, options.user);
    return turn;
  }

  /** Joins `session` (of the user's principal, or `owner`'s) so its events reach this client; re-joined on reconnect. */
  join(session: string, options: { user?: PlatformUser; owner?: string; timeoutMs?: number } = {}): Promise<{ session_id: string; owner: string }> {
    checkSession(session);
    checkUser(options.user);
    const timeoutMs = options.timeoutMs ?? this.options.timeoutMs;
    return new Promise((resolve, reject) => {
      const pending: PendingJoin = {
        kind: "join", session, resolve, reject,
        timer: setTimeout(() => this.settleJoin(pending, new AstridError("ASTRID_ERR_TIMEOUT", `joining session ${session} got no answer within ${timeoutMs} ms`)), timeoutMs),
      };
      try {
        this.publish(SESSION_JOIN_TOPIC, { type: "raw_json", session_id: session, ...(options.owner ? { owner: options.owner } : {}) }, options);
      } catch (err) {
        clearTimeout(pending.timer);
        reject(err as Error);
        return;
      }
      this.awaiting.push(pending);
      if (options.owner === undefined) this.remember(session, options.user);
    });
  }

  /** Leaves `session`: its events no longer reach this client. */
  leave(session: string, options: { user?: PlatformUser } = {}): void {
    checkSession(session);
    this.remembered.delete(`${userKeyOf(options.user)}\u0000${session}`);
    this.publish(SESSION_LEAVE_TOPIC, { type: "raw_json", session_id: session }, options);
  }

  /** Answers an approval request (`approval_required` event) with one of its options. */
  answerApproval(requestId: string, decision: ApprovalDecision, options: { user?: PlatformUser; reason?: string } = {}): void {
    if (typeof requestId !== "string" || !/^[A-Za-z0-9_-]{1,128}$/.test(requestId)) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "requestId must be the request's id ([A-Za-z0-9_-], at most 128)");
    if (!(APPROVAL_DECISIONS as readonly string[]).includes(decision)) {
      throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `decision must be one of ${APPROVAL_DECISIONS.join(", ")} (got ${JSON.stringify(decision)})`);
    }
    this.publish(`astrid.v1.approval.response.${requestId}`, { type: "approval_response", request_id: requestId, decision, ...(options.reason ? { reason: options.reason } : {}) }, options);
  }

  /** Answers an elicitation (`elicit_request` event): `{value}`, `{values}`, or `{}` to cancel. */
  answerElicit(requestId: string, answer: { value?: string; values?: string[] }, options: { user?: PlatformUser } = {}): void {
    if (typeof requestId !== "string" || !/^[A-Za-z0-9_-]{1,128}$/.test(requestId)) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "requestId must be the request's id ([A-Za-z0-9_-], at most 128)");
    const body: Record<string, unknown> = { type: "elicit_response", request_id: requestId };
    if (typeof answer?.value === "string") body.value = answer.value;
    else if (Array.isArray(answer?.values) && answer.values.every((v) => typeof v === "string")) body.values = answer.values;
    this.publish(`astrid.v1.elicit.response.${requestId}`, body as IpcPayload, options);
  }

  /**
   * Calls `fn` for each message on `topic` (exact, `prefix.*` for one or more segments after it, or `*` for all).
   * Returns the function that removes it.
   */
  on(topic: string, fn: (message: IpcMessage) => void): () => void {
    if (typeof topic !== "string" || topic === "" || typeof fn !== "function") throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "on(topic, fn) needs a topic string and a function");
    let set = this.topicListeners.get(topic);
    if (!set) this.topicListeners.set(topic, (set = new Set()));
    set.add(fn);
    return () => {
      set!.delete(fn);
      if (set!.size === 0) this.topicListeners.delete(topic);
    };
  }

  /** Calls `fn` when the connection drops, comes back, or closes for good. Returns the remover. */
  onConnection(fn: (event: ConnectionEvent) => void): () => void {
    this.connectionListeners.add(fn);
    return () => this.connectionListeners.delete(fn);
  }

  /** Closes the connection (idempotent): open turns and requests end with ASTRID_ERR_CONNECTION_CLOSED. */
  async close(): Promise<void> {
    if (this.finished) return;
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const conn = this.conn;
    if (conn) await Promise.race([conn.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
    this.finish();
  }

  /** Aborts at once: turns and requests end with `err` (default ASTRID_ERR_CONNECTION_CLOSED). */
  destroy(err: AstridError = closedError()): void {
    if (this.finished) return;
    this.closing = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.failAll(err);
    void this.conn?.close();
    this.finish(err);
  }

  private live(): DaemonClient {
    if (this.conn === null) {
      throw this.finished ? closedError() : new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "not connected to the daemon right now (reconnecting)");
    }
    return this.conn;
  }

  private async open(): Promise<DaemonClient> {
    const token = await this.options.readToken();
    return DaemonClient.connect({
      socketPath: this.options.socketPath,
      token,
      timeoutMs: this.options.timeoutMs,
      ...(this.options.clientName === undefined ? {} : { clientName: this.options.clientName }),
    });
  }

  private attach(conn: DaemonClient): void {
    this.conn = conn;
    conn.on("message", (m: IpcMessage) => this.dispatch(m));
    conn.once("close", () => this.onConnectionLost(conn));
  }

  private dispatch(message: IpcMessage): void {
    const payload = message.payload as Record<string, unknown>;
    if (message.topic === SESSION_JOINED_TOPIC) {
      const i = this.awaiting.findIndex((a) => !(a instanceof Turn) && a.session === payload.session_id);
      if (i >= 0) this.settleJoin(this.awaiting[i] as PendingJoin, undefined, { session_id: String(payload.session_id), owner: String(payload.owner) });
    } else if (message.topic === CLIENT_ERROR_TOPIC) {
      // The daemon's refusal names no request: it answers the oldest operation still waiting for its first answer
      // (the daemon handles one connection's frames in order).
      const first = this.awaiting.shift();
      const code = isErrorCode(payload.code) ? payload.code : "ASTRID_ERR_INTERNAL";
      const err = new AstridError(code, String(payload.message ?? "the daemon refused a message"));
      if (first instanceof Turn) first.fail(err);
      else if (first) this.settleJoin(first, err);
    } else {
      this.routeToTurn(message);
    }
    this.emitTopic(message);
  }

  private routeToTurn(message: IpcMessage): void {
    const event = turnEventOf(message);
    if (!event) return;
    const session = sessionOf(message);
    if (session === undefined) return;
    const turnId = turnIdOf(message);
    let target: Turn | undefined;
    for (const turn of this.turns) {
      if (turn.session !== session) continue;
      if (turnId !== undefined && turnId === turn.id) {
        target = turn;
        break;
      }
      // Without a turn id the oldest open turn of the session gets it (replies to one session come in order).
      if (turnId === undefined && target === undefined) target = turn;
    }
    if (!target) return;
    const i = this.awaiting.indexOf(target);
    if (i >= 0) this.awaiting.splice(i, 1);
    target.push(event);
  }

  private emitTopic(message: IpcMessage): void {
    const call = (set: Set<(m: IpcMessage) => void> | undefined) => {
      for (const fn of [...(set ?? [])]) {
        try {
          fn(message);
        } catch {
          // a listener's failure is its own; the others still hear the message
        }
      }
    };
    call(this.topicListeners.get(message.topic));
    call(this.topicListeners.get("*"));
    const segments = message.topic.split(".");
    for (let i = 1; i < segments.length; i++) call(this.topicListeners.get(`${segments.slice(0, i).join(".")}.*`));
  }

  private settleJoin(pending: PendingJoin, err?: Error, value?: { session_id: string; owner: string }): void {
    clearTimeout(pending.timer);
    const i = this.awaiting.indexOf(pending);
    if (i >= 0) this.awaiting.splice(i, 1);
    if (err) pending.reject(err);
    else pending.resolve(value!);
  }

  private forget(turn: Turn): void {
    this.turns.delete(turn);
    const i = this.awaiting.indexOf(turn);
    if (i >= 0) this.awaiting.splice(i, 1);
  }

  private remember(session: string, user: PlatformUser | undefined): void {
    const key = `${userKeyOf(user)}\u0000${session}`;
    this.remembered.delete(key);
    this.remembered.set(key, { session, ...(user ? { user } : {}) });
    if (this.remembered.size > MAX_REMEMBERED_SESSIONS) {
      const [oldestKey, oldest] = this.remembered.entries().next().value as [string, { session: string; user?: PlatformUser }];
      this.remembered.delete(oldestKey);
      try {
        this.publish(SESSION_LEAVE_TOPIC, { type: "raw_json", session_id: oldest.session }, oldest.user ? { user: oldest.user } : {});
      } catch {
        // not connected: nothing to leave
      }
    }
  }

  private failAll(err: AstridError): void {
    for (const turn of [...this.turns]) turn.fail(err);
    for (const a of this.awaiting.splice(0)) if (!(a instanceof Turn)) this.settleJoin(a, err);
  }

  private onConnectionLost(conn: DaemonClient): void {
    if (this.conn !== conn) return;
    this.conn = null;
    const err = closedError();
    this.failAll(err);
    if (this.closing || this.finished) return this.finish();
    this.emitConnection({ state: "disconnected", error: err });
    if (!this.options.reconnect) return this.finish(err);
    this.scheduleReconnect(1, this.options.reconnect.initialDelayMs);
  }

  /** One named timer owns the reconnect: attempt `attempt` after `delayMs`, doubling up to the maximum. */
  private scheduleReconnect(attempt: number, delayMs: number): void {
    const policy = this.options.reconnect!;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.open().then(
        async (conn) => {
          if (this.closing) return void conn.close();
          this.attach(conn);
          await this.rejoin();
          this.emitConnection({ state: "reconnected", attempts: attempt });
        },
        (cause: unknown) => {
          if (this.closing) return;
          if (attempt >= policy.maxAttempts) {
            const err = isAstridError(cause) ? cause : new AstridError("ASTRID_ERR_CONNECTION_CLOSED", String(cause));
            return this.finish(new AstridError(err.code, `gave up reconnecting after ${attempt} attempts: ${err.message}`, { cause }));
          }
          this.scheduleReconnect(attempt + 1, Math.min(delayMs * 2, policy.maxDelayMs));
        },
      );
    }, delayMs);
  }

  private async rejoin(): Promise<void> {
    const joins = [...this.remembered.values()].map((r) => this.join(r.session, r.user ? { user: r.user } : {}).catch(() => undefined));
    await Promise.all(joins);
  }

  private finish(err?: AstridError): void {
    if (this.finished) return;
    this.finished = true;
    this.closing = true;
    this.conn = null;
    this.failAll(err ?? closedError());
    this.emitConnection(err ? { state: "closed", error: err } : { state: "closed" });
  }

  private emitConnection(event: ConnectionEvent): void {
    for (const fn of [...this.connectionListeners]) {
      try {
        fn(event);
      } catch {
        // a listener's failure is its own
      }
    }
  }
}
