/**
 * Allowances: approval decisions a person asked the kernel to remember, so the same question is not asked again.
 * An allowance is keyed by principal, capsule, action and resource — alice's "always" never answers for bob, nor
 * for another capsule asking the same thing.
 *
 * - Session allowances (`approve_session`) live in memory, per session of that principal, until the daemon stops.
 * - Always allowances (`approve_always`) are kept in `$ASTRID_HOME/var/allowances.json` (0600, written to a temp
 *   file, fsynced, renamed). One made for a workspace capsule matches only a daemon serving that workspace. An
 *   entry may carry `max_uses` (consumed one per answered request; gone at 0) and `expires_at` (gone after it);
 *   both are checked, and spent or expired entries pruned, at lookup.
 *
 * Lookups and consumption run synchronously on the loaded list, so a `max_uses = 1` allowance answers exactly one
 * of any number of simultaneous requests. The file is read once (lazily) and rewritten after each change; a file
 * that does not parse is left untouched (never overwritten) and grants nothing until it is fixed.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import type { Logger } from "../logger";

/** What an allowance answers for. */
export interface AllowanceKey {
  principal: string;
  capsule: string;
  action: string;
  resource: string;
}

/** Most session allowances held at once (all sessions together); past it the oldest is forgotten. */
export const MAX_SESSION_ALLOWANCES = 4096;
/** Most always allowances kept (all principals together); past it `approve_always` approves once, unremembered. */
export const MAX_ALWAYS_ALLOWANCES = 4096;
/** Most always allowances of one principal. */
export const MAX_ALWAYS_ALLOWANCES_PER_PRINCIPAL = 512;

const keyText = (k: AllowanceKey, sessionId: string) => JSON.stringify([k.principal, sessionId, k.capsule, k.action, k.resource]);

/** `approve_session` decisions, in memory. */
export class SessionAllowances {
  /** Insertion order is age order: the first key is the oldest. */
  private readonly keys = new Set<string>();

  constructor(private readonly limit = MAX_SESSION_ALLOWANCES) {}

  has(key: AllowanceKey, sessionId: string): boolean {
    return this.keys.has(keyText(key, sessionId));
  }

  add(key: AllowanceKey, sessionId: string): void {
    const text = keyText(key, sessionId);
    this.keys.delete(text);
    if (this.keys.size >= this.limit) this.keys.delete(this.keys.values().next().value!);
    this.keys.add(text);
  }

  get size(): number {
    return this.keys.size;
  }

  clear(): void {
    this.keys.clear();
  }
}

/** One always allowance as the file stores it. */
const StoredAllowanceSchema = z.object({
  principal: z.string().min(1).max(64),
  capsule: z.string().min(1).max(128),
  action: z.string().min(1).max(256),
  resource: z.string().max(1024),
  /** Absolute workspace root: the allowance matches only a daemon serving it. Absent: any workspace. */
  workspace: z.string().min(1).max(4096).optional(),
  /** Uses left; absent: unlimited. */
  max_uses: z.number().int().min(1).optional(),
  /** RFC 3339; past it the allowance is gone. */
  expires_at: z.string().refine((t) => !Number.isNaN(Date.parse(t)), "an RFC 3339 time").optional(),
  created_at: z.string(),
});
/** One always allowance. */
export type StoredAllowance = z.infer<typeof StoredAllowanceSchema>;

const FileSchema = z.object({ version: z.literal(1), allowances: z.array(StoredAllowanceSchema) });

/** `approve_always` decisions, persisted. */
export class AlwaysAllowances {
  private list: StoredAllowance[] | undefined;
  private loading: Promise<void> | undefined;
  /** Set when the file could not be read or parsed: nothing is granted from it and it is never overwritten. */
  private broken = false;
  /** Writes run one after another; each writes the whole list as it is when it starts. */
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly file: string, private readonly logger: Logger) {}

  /** Reads the file once; later calls wait for that read. */
  load(): Promise<void> {
    this.loading ??= this.read();
    return this.loading;
  }

  /**
   * The allowance answering `key` in `workspace`, consuming one use of it; null when none does. Call after load().
   * Expired and spent entries met on the way are pruned (and the file rewritten).
   */
  take(key: AllowanceKey, workspace: string, now = Date.now()): StoredAllowance | null {
    if (!this.list) return null;
    let changed = false;
    let found: StoredAllowance | null = null;
    this.list = this.list.filter((a) => {
      if (a.expires_at !== undefined && Date.parse(a.expires_at) <= now) {
        changed = true;
        return false;
      }
      if (found || a.principal !== key.principal || a.capsule !== key.capsule || a.action !== key.action || a.resource !== key.resource) return true;
      if (a.workspace !== undefined && a.workspace !== workspace) return true;
      found = { ...a };
      if (a.max_uses === undefined) return true;
      changed = true;
      if (a.max_uses <= 1) return false;
      a.max_uses--;
      return true;
    });
    if (changed) void this.persist();
    return found;
  }

  /**
   * Remembers a decision; false (and a warning) when it cannot be kept — the file is broken or a limit is reached.
   * An identical allowance is replaced, not duplicated.
   */
  add(key: AllowanceKey, workspace: string | undefined): boolean {
    if (!this.list || this.broken) {
      this.logger.warn("approve_always not remembered: the allowances file is unreadable", { file: this.file });
      return false;
    }
    const same = (a: StoredAllowance) => a.principal === key.principal && a.capsule === key.capsule && a.action === key.action && a.resource === key.resource && a.workspace === workspace;
    this.list = this.list.filter((a) => !same(a));
    const mine = this.list.filter((a) => a.principal === key.principal).length;
    if (this.list.length >= MAX_ALWAYS_ALLOWANCES || mine >= MAX_ALWAYS_ALLOWANCES_PER_PRINCIPAL) {
      this.logger.warn("approve_always not remembered: too many allowances", { principal: key.principal, total: this.list.length, principal_total: mine });
      return false;
    }
    this.list.push({ ...key, ...(workspace !== undefined ? { workspace } : {}), created_at: new Date().toISOString() });
    void this.persist();
    return true;
  }

  /** The allowances held (a copy), for tests and listings. */
  entries(): StoredAllowance[] {
    return (this.list ?? []).map((a) => ({ ...a }));
  }

  /** Resolves once every change so far is on disk. */
  flush(): Promise<void> {
    return this.writing;
  }

  private async read(): Promise<void> {
    let text: string;
    try {
      text = await fs.readFile(this.file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") {
        this.list = [];
        return;
      }
      this.broken = true;
      this.list = [];
      this.logger.error("cannot read the allowances file; no approve_always allowance applies until it is fixed", { file: this.file, error: (err as Error).message });
      return;
    }
    let parsed: ReturnType<typeof FileSchema.safeParse>;
    try {
      parsed = FileSchema.safeParse(JSON.parse(text));
    } catch (err) {
      parsed = { success: false, error: err } as never;
    }
    if (!parsed.success) {
      this.broken = true;
      this.list = [];
      const issue = (parsed.error as z.ZodError).issues?.[0];
      const where = issue ? `${issue.path.join(".")}: ${issue.message}` : String((parsed.error as Error).message);
      this.logger.error("the allowances file is malformed; no approve_always allowance applies until it is fixed (it is not overwritten)", { file: this.file, problem: where });
      return;
    }
    this.list = parsed.data.allowances;
  }

  private persist(): Promise<void> {
    this.writing = this.writing.then(() => this.write()).catch((err: unknown) => {
      this.logger.error("cannot write the allowances file", { file: this.file, error: (err as Error).message });
    });
    return this.writing;
  }

  private async write(): Promise<void> {
    if (this.broken || !this.list) return;
    const text = `${JSON.stringify({ version: 1, allowances: this.list }, null, 2)}\n`;
    const dir = path.dirname(this.file);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${randomUUID()}.tmp`;
    const handle = await fs.open(tmp, "wx", 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.rename(tmp, this.file);
    } catch (err) {
      await fs.rm(tmp, { force: true });
      throw err;
    }
    // The rename is durable only once the directory is.
    const d = await fs.open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
