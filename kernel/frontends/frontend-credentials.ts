/**
 * The daemon's view of `etc/frontends/*.toml`: which tokens belong to which frontend. Files are read
 * asynchronously and re-read when the directory changes, so `astrid frontend add` and `astrid frontend remove`
 * take effect on a running daemon without a restart.
 *
 * Freshness: a token that matches nothing is checked against a view at most 500 ms old (one async `stat` of the
 * directory per 500 ms, however many wrong tokens arrive). A token that matches is re-checked against the
 * directory as it is now before it is granted, so a removed credential admits no new handshake, not even within
 * those 500 ms. Adding and removing through the CLI (temp file + rename, unlink) changes the directory's mtime;
 * a file edited in place does not, so a hand edit is seen only with the next change to the directory.
 */
import { timingSafeEqual } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { decodeToken } from "../../protocol/handshake";
import { isAstridError } from "../../protocol/errors";
import { FRONTEND_FILE_EXTENSION, parseFrontendFile, tokenDigest, type UnlinkedPolicy } from "./frontend-file";

/** What a frontend's token grants the connection that presents it. */
export interface FrontendGrant {
  /** The frontend's name, also the principal id it acts as itself. */
  name: string;
  /** Platforms whose users it may speak for. */
  platforms: string[];
  /** What happens to its users who have no identity link. */
  unlinked: UnlinkedPolicy;
}

/** The logger calls this module makes. */
export interface CredentialsLogger {
  warn(message: string, meta: Record<string, unknown>): unknown;
}

/** How to load the credentials. */
export interface FrontendCredentialsOptions {
  /** `etc/frontends` of the home (see `AstridHome.frontendsDir`); it need not exist. */
  dir: string;
  logger: CredentialsLogger;
  /** Least time between two checks of the directory for a token that matched nothing (default 0: every miss). */
  recheckMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

/**
 * Default least time between two checks of the directory on a miss. A check is one asynchronous stat (coalesced
 * while one runs), so every miss may afford one: a credential `astrid frontend add` just wrote is accepted at once.
 */
export const FRONTEND_RECHECK_MS = 0;

/**
 * A directory whose mtime is this close to the time it was read may change again within the same mtime tick
 * (1–2 s on coarse filesystems): until its mtime is older than this, every check re-reads it (git's "racy clean").
 */
const RACY_WINDOW_MS = 2000;

interface Entry {
  grant: FrontendGrant;
  digest: Buffer;
}

/** The frontend credentials of one home, kept in step with its `etc/frontends/` directory. */
export class FrontendCredentials {
  private entries: Entry[] = [];
  /** The directory's identity and mtime when last read; undefined before the first read. */
  private stamp: string | undefined;
  private racy = false;
  /** How many checks have started, and when the last one did. */
  private started = 0;
  private lastCheckAt = Number.NEGATIVE_INFINITY;
  private inFlight: Promise<void> | undefined;
  /** The last warning per file, so a file that stays broken is reported once, not at every re-read. */
  private warned = new Map<string, string>();
  private readonly recheckMs: number;
  private readonly now: () => number;

  constructor(private readonly options: FrontendCredentialsOptions) {
    this.recheckMs = options.recheckMs ?? FRONTEND_RECHECK_MS;
    this.now = options.now ?? Date.now;
  }

  /** Reads the directory now (boot calls this once so the first handshake does not wait for it). */
  async load(): Promise<void> {
    await this.checkStartedAfter(this.started);
  }

  /**
   * The grant of the frontend whose token is `tokenHex` (64 hex chars, trimmed, either case), or undefined.
   * Every credential is compared (SHA-256 digests, `timingSafeEqual`), so the time taken does not depend on which
   * one matched or how much of a wrong token was right.
   */
  async match(tokenHex: string): Promise<FrontendGrant | undefined> {
    const before = this.started;
    const token = decodeToken(tokenHex);
    if (token === null) return undefined;
    const digest = Buffer.from(tokenDigest(token), "hex");
    if (this.inFlight) await this.inFlight;
    else if (this.now() - this.lastCheckAt >= this.recheckMs) await this.checkStartedAfter(this.started);
    let hit = this.find(digest);
    // A grant is only ever given on a view read after this call began: a credential removed a moment ago is gone.
    if (hit !== undefined && this.started <= before) {
      await this.checkStartedAfter(before);
      hit = this.find(digest);
    }
    return hit === undefined ? undefined : { ...hit.grant, platforms: [...hit.grant.platforms] };
  }

  /** The credentials as last read, sorted by name. */
  list(): FrontendGrant[] {
    return this.entries.map((e) => ({ ...e.grant, platforms: [...e.grant.platforms] }));
  }

  private find(digest: Buffer): Entry | undefined {
    let found: Entry | undefined;
    // No early exit: every candidate costs one constant-time comparison.
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry;
    }
    return found;
  }

  /** Resolves once a check that started after check number `after` has finished. */
  private async checkStartedAfter(after: number): Promise<void> {
    while (this.started <= after) {
      if (this.inFlight) await this.inFlight;
      else this.startCheck();
    }
    if (this.inFlight) await this.inFlight;
  }

  private startCheck(): void {
    this.started++;
    this.lastCheckAt = this.now();
    this.inFlight = this.check().finally(() => (this.inFlight = undefined));
  }

  private async check(): Promise<void> {
    const readAt = this.now();
    let stamp: string;
    let mtimeMs = 0;
    try {
      const st = await fs.stat(this.options.dir);
      stamp = `${st.dev}:${st.ino}:${st.mtimeMs}:${st.ctimeMs}`;
      mtimeMs = st.mtimeMs;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") return this.failClosed(err as Error);
      stamp = "absent";
    }
    if (stamp === this.stamp && !this.racy) return;
    this.entries = stamp === "absent" ? [] : await this.readAll();
    this.stamp = stamp;
    this.racy = stamp !== "absent" && readAt - mtimeMs < RACY_WINDOW_MS;
  }

  /** An unreadable directory grants nothing (and is re-read at the next check). */
  private failClosed(err: Error): void {
    this.entries = [];
    this.stamp = undefined;
    this.warnOnce(this.options.dir, `cannot read the frontend credentials directory: ${err.message}; no frontend token is accepted until it can be read`);
  }

  private async readAll(): Promise<Entry[]> {
    let names: string[];
    try {
      names = (await fs.readdir(this.options.dir)).filter((n) => n.endsWith(FRONTEND_FILE_EXTENSION)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.failClosed(err as Error);
      return [];
    }
    this.warned.delete(this.options.dir);
    const entries: Entry[] = [];
    const bySha = new Map<string, string>();
    const present = new Set<string>();
    for (const name of names) {
      const file = path.join(this.options.dir, name);
      present.add(file);
      let text: string;
      try {
        text = await fs.readFile(file, "utf8");
      } catch (err) {
        // Removed between readdir and read: simply gone.
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") this.warnOnce(file, `${file}: cannot read: ${(err as Error).message}`);
        continue;
      }
      try {
        const record = parseFrontendFile(text, file, name.slice(0, -FRONTEND_FILE_EXTENSION.length));
        const other = bySha.get(record.token_sha256);
        if (other !== undefined) {
          this.warnOnce(file, `${file}: field token_sha256: the same token as frontend ${JSON.stringify(other)}; this file is skipped`);
          continue;
        }
        bySha.set(record.token_sha256, record.name);
        entries.push({ grant: { name: record.name, platforms: record.platforms, unlinked: record.unlinked }, digest: Buffer.from(record.token_sha256, "hex") });
        this.warned.delete(file);
      } catch (err) {
        if (!isAstridError(err)) throw err;
        this.warnOnce(file, err.message);
      }
    }
    for (const file of this.warned.keys()) if (!present.has(file)) this.warned.delete(file);
    return entries;
  }

  private warnOnce(file: string, message: string): void {
    if (this.warned.get(file) === message) return;
    this.warned.set(file, message);
    this.options.logger.warn("frontend credential skipped", { file, error: message });
  }
}
