/**
 * Session routing: a session belongs to the principal that opened it, and its events (agent replies and deltas,
 * session history, approvals and elicitation for it) reach only the connections that joined it — by prompting in
 * it, or with an explicit join. Kernel-wide events (capsules loaded, health, onboarding) are not session-scoped
 * and go to every client. A connection may join only sessions of principals it may act for.
 */
import { AstridError } from "../protocol/errors";
import type { ConnectionId } from "./bus";

/** Topic prefixes whose events belong to one session (by `payload.session_id`, else to the message's principal). */
export const SESSION_SCOPED_PREFIXES: readonly string[] = ["agent.v1.", "session.v1.", "astrid.v1.approval", "astrid.v1.elicit"];
/** Longest session id accepted. */
export const MAX_SESSION_ID_CHARS = 256;

/** True for a topic whose events belong to a session. */
export function isSessionScoped(topic: string): boolean {
  return SESSION_SCOPED_PREFIXES.some((prefix) => topic.startsWith(prefix));
}

/** The session id a payload names, if any (any string; `checkSessionId` says whether it is acceptable). */
export function sessionIdOf(payload: unknown): string | undefined {
  if (payload === null || typeof payload !== "object") return undefined;
  const id = (payload as { session_id?: unknown }).session_id;
  return typeof id === "string" ? id : undefined;
}

/** Throws ASTRID_ERR_REQUEST_INVALID for a session id that is empty, too long or holds control characters. */
export function checkSessionId(id: string): void {
  // eslint-disable-next-line no-control-regex
  if (id.length === 0 || id.length > MAX_SESSION_ID_CHARS || /[\u0000-\u001f\u007f]/.test(id)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID",
      `session_id must be 1–${MAX_SESSION_ID_CHARS} printable characters (got ${id.length} characters)`);
  }
}

interface Session {
  owner: string;
  id: string;
  members: Set<ConnectionId>;
}

/** Sessions one connection may be in at once. */
export const MAX_SESSIONS_PER_CONNECTION = 1024;
/** Sessions the daemon routes at once (joined or remembered); past it the oldest unjoined are forgotten. */
export const MAX_SESSIONS = 65_536;

/**
 * Who may be told about what. A session is named by its owner and its id together — alice's "default" and bob's
 * "default" are two sessions — so nobody can take a session id before its owner uses it.
 */
export class SessionRouter {
  private readonly sessions = new Map<string, Session>();
  /** Sessions nobody is in, oldest first: the ones forgotten when the table is full. */
  private readonly idle = new Map<string, Session>();
  private readonly byConnection = new Map<ConnectionId, Set<string>>();

  /**
   * Joins `conn` to the session `sessionId` of `owner` (default: `principal`, the principal the connection speaks
   * as), creating it if new. Throws ASTRID_ERR_SESSION_DENIED when `mayActFor` refuses the owner,
   * ASTRID_ERR_REQUEST_INVALID for a bad id, ASTRID_ERR_RATE_LIMITED past the per-connection or total limit.
   */
  join(conn: ConnectionId, sessionId: string, principal: string, mayActFor: (principal: string) => boolean, owner = principal): string {
    checkSessionId(sessionId);
    if (!mayActFor(owner)) {
      throw new AstridError("ASTRID_ERR_SESSION_DENIED", `session ${JSON.stringify(sessionId.slice(0, 64))} of ${owner}: this connection may not act for ${owner}`);
    }
    const key = keyOf(owner, sessionId);
    let joined = this.byConnection.get(conn);
    if (joined?.has(key)) return owner;
    if ((joined?.size ?? 0) >= MAX_SESSIONS_PER_CONNECTION) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `a connection may be in at most ${MAX_SESSIONS_PER_CONNECTION} sessions; leave one first`);
    }
    let session = this.sessions.get(key);
    if (!session) {
      if (this.sessions.size >= MAX_SESSIONS) this.forgetOldestIdle();
      session = { owner, id: sessionId, members: new Set() };
      this.sessions.set(key, session);
    }
    this.idle.delete(key);
    session.members.add(conn);
    if (!joined) this.byConnection.set(conn, (joined = new Set()));
    joined.add(key);
    return owner;
  }

  /** True when `conn` is in `owner`'s session `sessionId`. */
  isMember(conn: ConnectionId, owner: string, sessionId: string): boolean {
    return this.byConnection.get(conn)?.has(keyOf(owner, sessionId)) === true;
  }

  leave(conn: ConnectionId, owner: string, sessionId: string): void {
    this.remove(conn, keyOf(owner, sessionId));
  }

  /** A connection closed: it leaves every session (the sessions are remembered until the table needs the room). */
  dropConnection(conn: ConnectionId): void {
    for (const key of [...(this.byConnection.get(conn) ?? [])]) this.remove(conn, key);
    this.byConnection.delete(conn);
  }

  /**
   * The connections a session-scoped event may reach: those in the session `sessionId` of the event's principal —
   * a capsule handling alice's prompt publishes with alice's principal, so it reaches alice's session only.
   */
  membersFor(sessionId: string, principal: string | undefined): ReadonlySet<ConnectionId> | null {
    const session = principal === undefined ? undefined : this.sessions.get(keyOf(principal, sessionId));
    return session?.members ?? null;
  }

  /** Number of sessions `conn` is in (for GetStatus). */
  joinedBy(conn: ConnectionId): number {
    return this.byConnection.get(conn)?.size ?? 0;
  }

  /** Number of sessions known (joined or remembered). */
  get size(): number {
    return this.sessions.size;
  }

  private remove(conn: ConnectionId, key: string): void {
    const session = this.sessions.get(key);
    this.byConnection.get(conn)?.delete(key);
    if (!session) return;
    session.members.delete(conn);
    if (session.members.size === 0) this.idle.set(key, session);
  }

  /** Makes room: the oldest session nobody is in goes; when every session has members, a new one is refused. */
  private forgetOldestIdle(): void {
    const oldest = this.idle.keys().next();
    if (oldest.done) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `the daemon routes at most ${MAX_SESSIONS} sessions at once, all in use`);
    }
    this.idle.delete(oldest.value);
    this.sessions.delete(oldest.value);
  }
}

function keyOf(owner: string, sessionId: string): string {
  return `${owner}\u0000${sessionId}`;
}
