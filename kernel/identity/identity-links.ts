/**
 * Platform identity links (reference §6.10 `identity-*`, §8.2 `system:identity`): which principal a platform's user
 * (a Discord account, a web login) acts as. Kept in the kernel's KV scope `system:identity`:
 *
 *   link:<platform>:<platform_user_id>               → JSON `IdentityLink`
 *   principal:<principal>:<platform>:<platform_user_id> → "" (index: the links of one principal)
 *
 * A platform and a principal id contain no `:`, so the user id is everything after the second (or third) `:`. The
 * primary key alone decides `resolve`; the index only serves listings by principal and is checked against it.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { DisplayNameSchema, isDisplayName, isPlatform, isPlatformUserId, isPrincipalId, PlatformSchema, PlatformUserIdSchema, PrincipalIdSchema } from "../../protocol/identity-names";
import type { StorageClient } from "../storage-client";

/** The kernel's KV scope for identity (reference §8.2). */
export const IDENTITY_SCOPE = "system:identity";

/** How a link came about: made by the kernel itself, claimed by a frontend for its user, or made by an admin. */
export const LINK_METHODS = ["system", "claimed", "admin"] as const;
/** One of `LINK_METHODS`. */
export type LinkMethod = (typeof LINK_METHODS)[number];

/** Listing page size unless asked otherwise, and the most one page may hold. */
export const DEFAULT_LIST_LIMIT = 100;
/** The most links one `list` call returns. */
export const MAX_LIST_LIMIT = 1000;

/** One platform user's link to a principal. */
export interface IdentityLink {
  platform: string;
  platform_user_id: string;
  principal: string;
  method: LinkMethod;
  display_name?: string;
  /** RFC 3339, when the link was (last) made. */
  linked_at: string;
}

/** What a platform user resolves to. */
export interface ResolvedIdentity {
  principal: string;
  method: LinkMethod;
}

/** The outcome of `link`: the link as stored, and the one it replaced if any. */
export interface LinkOutcome {
  link: IdentityLink;
  previous?: IdentityLink;
}

/** Which links to list: all, one platform's, or one principal's (optionally on one platform), a page at a time. */
export interface ListOptions {
  platform?: string;
  principal?: string;
  /** `next_cursor` of the previous page. */
  cursor?: string;
  /** 1 to MAX_LIST_LIMIT; default DEFAULT_LIST_LIMIT. */
  limit?: number;
}

/** One page of links, in key order; `next_cursor` is present when more may follow. */
export interface LinkPage {
  links: IdentityLink[];
  next_cursor?: string;
}

/** The KV calls this module makes (a StorageClient, or a fake in tests). */
export type IdentityKv = Pick<StorageClient, "get" | "set" | "delete" | "listKeys">;

const StoredLinkSchema = z.strictObject({
  platform: PlatformSchema,
  platform_user_id: PlatformUserIdSchema,
  principal: PrincipalIdSchema,
  method: z.enum(LINK_METHODS),
  display_name: DisplayNameSchema.optional(),
  linked_at: z.string(),
});

const LINK_PREFIX = "link:";
const PRINCIPAL_PREFIX = "principal:";
const EMPTY = new Uint8Array(0);

function linkKey(platform: string, id: string): string {
  return `${LINK_PREFIX}${platform}:${id}`;
}

function indexKey(principal: string, platform: string, id: string): string {
  return `${PRINCIPAL_PREFIX}${principal}:${platform}:${id}`;
}

/** The primary key an index key stands for. */
function linkKeyOfIndex(key: string): string {
  const rest = key.slice(PRINCIPAL_PREFIX.length);
  return LINK_PREFIX + rest.slice(rest.indexOf(":") + 1);
}

function invalid(message: string): AstridError {
  return new AstridError("ASTRID_ERR_REQUEST_INVALID", message);
}

function checkPlatform(platform: string): void {
  if (!isPlatform(platform)) throw invalid(`platform ${JSON.stringify(platform)} must be 1-32 characters of [a-z0-9_-]`);
}

function checkUserId(id: string): void {
  if (!isPlatformUserId(id)) throw invalid(`platform_user_id ${JSON.stringify(id)} must be 1-256 printable characters (no control characters or line breaks)`);
}

function checkPrincipal(principal: string): void {
  if (!isPrincipalId(principal)) throw invalid(`principal ${JSON.stringify(principal)} must be 1-64 characters of [A-Za-z0-9_-]`);
}

/** Links of platform users to principals, in the KV store. */
export class IdentityLinks {
  /** One chain of pending updates per platform user, so two links of one user never interleave. */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(
    private readonly kv: IdentityKv,
    /** Clock, for tests. */
    private readonly now: () => Date = () => new Date(),
  ) {}

  /**
   * Links `platformUserId` on `platform` to `principal`, replacing any link it had (`previous` tells which).
   * Validation failures are ASTRID_ERR_REQUEST_INVALID. Whether the principal exists is the caller's question.
   */
  link(platform: string, platformUserId: string, principal: string, method: LinkMethod, displayName?: string): Promise<LinkOutcome> {
    checkPlatform(platform);
    checkUserId(platformUserId);
    checkPrincipal(principal);
    if (!(LINK_METHODS as readonly string[]).includes(method)) throw invalid(`method must be one of ${LINK_METHODS.join(", ")}`);
    if (displayName !== undefined && !isDisplayName(displayName)) {
      throw invalid("display_name must be 1-256 printable characters (no control characters or line breaks)");
    }
    const key = linkKey(platform, platformUserId);
    return this.serialised(key, async () => {
      const previous = await this.read(key);
      const link: IdentityLink = { platform, platform_user_id: platformUserId, principal, method, linked_at: this.now().toISOString() };
      if (displayName !== undefined) link.display_name = displayName;
      // Issued in one tick, the writes travel in one storage batch: one transaction.
      const writes = [this.kv.set(IDENTITY_SCOPE, key, Buffer.from(JSON.stringify(link), "utf8")), this.kv.set(IDENTITY_SCOPE, indexKey(principal, platform, platformUserId), EMPTY)];
      if (previous !== undefined && previous.principal !== principal) {
        writes.push(this.kv.delete(IDENTITY_SCOPE, indexKey(previous.principal, platform, platformUserId)).then(() => undefined));
      }
      await Promise.all(writes);
      return previous === undefined ? { link } : { link, previous };
    });
  }

  /** Removes the link of `platformUserId` on `platform`; resolves with the link removed, or undefined if none. */
  unlink(platform: string, platformUserId: string): Promise<IdentityLink | undefined> {
    checkPlatform(platform);
    checkUserId(platformUserId);
    const key = linkKey(platform, platformUserId);
    return this.serialised(key, async () => {
      const previous = await this.read(key);
      if (previous === undefined) {
        // A record that does not read as a link is removed all the same (it linked nobody).
        await this.kv.delete(IDENTITY_SCOPE, key);
        return undefined;
      }
      await Promise.all([this.kv.delete(IDENTITY_SCOPE, key), this.kv.delete(IDENTITY_SCOPE, indexKey(previous.principal, platform, platformUserId))]);
      return previous;
    });
  }

  /** The principal `platformUserId` on `platform` acts as, or undefined when it has no (readable) link. */
  async resolve(platform: string, platformUserId: string): Promise<ResolvedIdentity | undefined> {
    checkPlatform(platform);
    checkUserId(platformUserId);
    const link = await this.read(linkKey(platform, platformUserId));
    return link === undefined ? undefined : { principal: link.principal, method: link.method };
  }

  /**
   * One page of links. Listing by principal reads its index and keeps only the entries its links confirm. The
   * store lists keys without a limit, so a page costs one key listing of the prefix plus at most `limit` reads.
   */
  async list(options: ListOptions = {}): Promise<LinkPage> {
    const limit = options.limit ?? DEFAULT_LIST_LIMIT;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) throw invalid(`limit must be a whole number from 1 to ${MAX_LIST_LIMIT}`);
    if (options.platform !== undefined) checkPlatform(options.platform);
    if (options.principal !== undefined) checkPrincipal(options.principal);
    const byPrincipal = options.principal !== undefined;
    const prefix = byPrincipal
      ? `${PRINCIPAL_PREFIX}${options.principal}:${options.platform === undefined ? "" : `${options.platform}:`}`
      : `${LINK_PREFIX}${options.platform === undefined ? "" : `${options.platform}:`}`;
    let after: Buffer | undefined;
    if (options.cursor !== undefined) {
      const key = Buffer.from(options.cursor, "base64url").toString("utf8");
      if (!key.startsWith(prefix) || Buffer.from(key, "utf8").toString("base64url") !== options.cursor) {
        throw invalid("cursor is not one this listing gave out (pass next_cursor back with the same platform and principal)");
      }
      after = Buffer.from(key, "utf8");
    }
    // Byte order, as the store keeps keys, whatever order they came in.
    const keys = (await this.kv.listKeys(IDENTITY_SCOPE, prefix))
      .map((key) => ({ key, bytes: Buffer.from(key, "utf8") }))
      .filter((k) => after === undefined || Buffer.compare(k.bytes, after) > 0)
      .sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    const page = keys.slice(0, limit);
    const links = await Promise.all(page.map(({ key }) => this.read(byPrincipal ? linkKeyOfIndex(key) : key)));
    const result: LinkPage = {
      links: links.filter((l): l is IdentityLink => l !== undefined && (!byPrincipal || l.principal === options.principal)),
    };
    if (keys.length > limit) result.next_cursor = page[page.length - 1]!.bytes.toString("base64url");
    return result;
  }

  /** Every link of `principal`, e.g. to remove them with the principal. */
  async linksOf(principal: string): Promise<IdentityLink[]> {
    const links: IdentityLink[] = [];
    let cursor: string | undefined;
    do {
      const page = await this.list({ principal, cursor, limit: MAX_LIST_LIMIT });
      links.push(...page.links);
      cursor = page.next_cursor;
    } while (cursor !== undefined);
    return links;
  }

  private async read(key: string): Promise<IdentityLink | undefined> {
    const raw = await this.kv.get(IDENTITY_SCOPE, key);
    if (raw === null) return undefined;
    try {
      const parsed = StoredLinkSchema.safeParse(JSON.parse(Buffer.from(raw).toString("utf8")));
      // A record that is not ours, or not for this key, links nobody.
      if (parsed.success && linkKey(parsed.data.platform, parsed.data.platform_user_id) === key) return parsed.data;
    } catch {
      // fall through
    }
    return undefined;
  }

  private serialised<T>(key: string, work: () => Promise<T>): Promise<T> {
    const prior = this.locks.get(key) ?? Promise.resolve();
    const run = prior.then(work, work);
    const tail = run.catch(() => undefined);
    this.locks.set(key, tail);
    void tail.then(() => {
      if (this.locks.get(key) === tail) this.locks.delete(key);
    });
    return run;
  }
}

/** Hex characters of the hash that ends every provisioned principal id (64 bits). */
const PROVISIONED_HASH_CHARS = 16;

/**
 * The principal id a platform user with no link acts as when its frontend's policy is `agent`:
 * `<platform>-<user id with every character outside [A-Za-z0-9_-] made "_", cut to fit>-<16 hex>`, at most 64
 * characters, where the hex is the start of SHA-256(`<platform>` NUL `<platform_user_id>`). Deterministic: the same
 * user always gets the same principal. The hash is always there, not only when something was cut or replaced:
 * without it, web user `alice.smith` (→ `web-alice_smith-…`) could be impersonated by a user who picks the id
 * `alice_smith-<that hash>`, and `a`/`b-c` would collide with `a-b`/`c`. With it, two users share a principal
 * only if SHA-256 collides in 64 bits. It never equals `default` (it contains `-`).
 */
export function provisionedPrincipalFor(platform: string, platformUserId: string): string {
  checkPlatform(platform);
  checkUserId(platformUserId);
  const hash = createHash("sha256").update(`${platform}\0${platformUserId}`, "utf8").digest("hex").slice(0, PROVISIONED_HASH_CHARS);
  const room = 64 - platform.length - PROVISIONED_HASH_CHARS - 2;
  const readable = Array.from(platformUserId, (c) => (/^[A-Za-z0-9_-]$/.test(c) ? c : "_")).join("").slice(0, room);
  return `${platform}-${readable}-${hash}`;
}
