/**
 * Who may use the page: one-time login tokens (printed by `astrid web`, as Jupyter does) are exchanged for a
 * random cookie, and each cookie is one visitor — one platform identity (`platform = "web"`). Tokens and cookies
 * are compared by their SHA-256 in constant time; both tables are bounded.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** The cookie's name. */
export const COOKIE_NAME = "astrid_web";
/** Visitors remembered at once; past it the one seen least recently is forgotten (and must log in again). */
export const MAX_VISITORS = 1024;
/** Unused login tokens kept at once; past it the oldest is void. */
export const MAX_LOGIN_TOKENS = 64;
/** How long an unused login token stays valid. */
export const LOGIN_TOKEN_TTL_MS = 24 * 60 * 60 * 1000;

/** A logged-in browser. */
export interface Visitor {
  /** The platform user id the daemon sees (`web` platform): random, stable for the cookie's life. */
  id: string;
  createdAt: number;
  lastSeen: number;
}

const digest = (text: string) => createHash("sha256").update(text).digest();

/** Finds `text` among `table`'s keys by digest, comparing every entry (timing says nothing about which matched). */
function lookup<T>(table: Map<string, T>, text: string): [string, T] | undefined {
  const want = digest(text);
  let found: [string, T] | undefined;
  for (const [key, value] of table) {
    if (timingSafeEqual(Buffer.from(key, "hex"), want) && !found) found = [key, value];
  }
  return found;
}

/** The login tokens and visitor cookies of one `astrid web` process (in memory: a restart logs everyone out). */
export class LoginGate {
  private readonly tokens = new Map<string, number>();
  private readonly visitors = new Map<string, Visitor>();

  /** A fresh one-time login token (43 base64url characters). */
  issueToken(now = Date.now()): string {
    const token = randomBytes(32).toString("base64url");
    this.tokens.set(digest(token).toString("hex"), now);
    while (this.tokens.size > MAX_LOGIN_TOKENS) this.tokens.delete(this.tokens.keys().next().value as string);
    return token;
  }

  /** Spends a login token: a new visitor and its cookie value, or null when the token is unknown, used or expired. */
  redeem(token: unknown, now = Date.now()): { cookie: string; visitor: Visitor } | null {
    if (typeof token !== "string" || !/^[A-Za-z0-9_-]{43}$/.test(token)) return null;
    const hit = lookup(this.tokens, token);
    if (!hit) return null;
    this.tokens.delete(hit[0]);
    if (now - hit[1] > LOGIN_TOKEN_TTL_MS) return null;
    const cookie = randomBytes(32).toString("base64url");
    const visitor: Visitor = { id: `v-${randomBytes(12).toString("hex")}`, createdAt: now, lastSeen: now };
    this.visitors.set(digest(cookie).toString("hex"), visitor);
    while (this.visitors.size > MAX_VISITORS) this.visitors.delete(this.visitors.keys().next().value as string);
    return { cookie, visitor };
  }

  /** The visitor a `Cookie` header names, or null (absent, malformed, forged or forgotten). */
  visitorOf(cookieHeader: string | undefined, now = Date.now()): Visitor | null {
    const value = cookieValue(cookieHeader);
    if (value === null || !/^[A-Za-z0-9_-]{43}$/.test(value)) return null;
    const hit = lookup(this.visitors, value);
    if (!hit) return null;
    // Most recently seen last, so the table forgets the one idle longest.
    this.visitors.delete(hit[0]);
    this.visitors.set(hit[0], hit[1]);
    hit[1].lastSeen = now;
    return hit[1];
  }

  /** The `Set-Cookie` header for a visitor's cookie: HttpOnly, SameSite=Strict, the whole site. */
  static setCookie(value: string): string {
    return `${COOKIE_NAME}=${value}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${30 * 24 * 3600}`;
  }
}

/** Our cookie's value in a `Cookie` header (the first one of that name). */
function cookieValue(header: string | undefined): string | null {
  if (typeof header !== "string" || header.length > 8192) return null;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === COOKIE_NAME) return part.slice(eq + 1).trim();
  }
  return null;
}
