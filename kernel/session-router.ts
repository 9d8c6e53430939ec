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
/** Sessions remembered without a member (their owner must survive a reconnect); the oldest are forgotten first. */
export const MAX_IDLE_SESSIONS = 65_536;

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
  members: Set<ConnectionId>;
}

/** Who may be told about what. */
export class SessionRouter {
  private readonly sessions = new Map<string, Session>();
  private readonly byConnection = new Map<ConnectionId, Set<string>>();
  /** Session events that found no recipient allowed to see them (no such session, or a foreign principal). */
  undeliverable = 0;

  /**
   * Joins `conn` to `sessionId` on behalf of `principal` (creating the session, owned by `principal`, if new).
   * Throws ASTRID_ERR_SESSION_DENIED when the session belongs to a principal `mayActFor` refuses.
   */
  join(conn: ConnectionId, sessionId: string, principal: string, mayActFor: (principal: string) => boolean): string {
    checkSessionId(sessionId);
    let session = this.sessions.get(sessionId);
    if (session && !mayActFor(session.owner)) {
      throw new AstridError("ASTRID_ERR_SESSION_DENIED", `session ${JSON.stringify(sessionId.slice(0, 64))} belongs to another principal`);
    }
    if (!session) {
      session = { owner: principal, members: new Set() };
      this.sessions.set(sessionId, session);
      this.forgetIdle();
    }
    session.members.add(conn);
    let joined = this.byConnection.get(conn);
    if (!joined) this.byConnection.set(conn, (joined = new Set()));
    joined.add(sessionId);
    return session.owner;
  }

  /** The owner of a session, if it is known. */
  ownerOf(sessionId: string): string | undefined {
    return this.sessions.get(sessionId)?.owner;
  }

  /** True when `conn` joined `sessionId`. */
  isMember(conn: ConnectionId, sessionId: string): boolean {
    return this.sessions.get(sessionId)?.members.has(conn) === true;
  }

  leave(conn: ConnectionId, sessionId: string): void {
    this.sessions.get(sessionId)?.members.delete(conn);
    this.byConnection.get(conn)?.delete(sessionId);
  }

  /** A connection closed: it leaves every session (the sessions and their owners are remembered). */
  dropConnection(conn: ConnectionId): void {
    for (const id of this.byConnection.get(conn) ?? []) this.sessions.get(id)?.members.delete(conn);
    this.byConnection.delete(conn);
  }

  /**
   * The connections a session-scoped event may reach: the members of its session when the event's principal (if
   * any) owns that session — a capsule handling alice's prompt cannot publish into bob's session — or, without a
   * session id, undefined (the caller routes by principal).
   */
  membersFor(sessionId: string, principal: string | undefined): ReadonlySet<ConnectionId> | null {
    const session = this.sessions.get(sessionId);
    if (!session || (principal !== undefined && principal !== session.owner)) {
      this.undeliverable++;
      return null;
    }
    return session.members;
  }

  /** Number of sessions known (joined or remembered). */
  get size(): number {
    return this.sessions.size;
  }

  private forgetIdle(): void {
    if (this.sessions.size <= MAX_IDLE_SESSIONS) return;
    for (const [id, session] of this.sessions) {
      if (session.members.size > 0) continue;
      this.sessions.delete(id);
      if (this.sessions.size <= MAX_IDLE_SESSIONS) return;
    }
  }
}
