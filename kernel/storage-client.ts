/**
 * The kernel's side of the storage worker. Every call made during one tick is sent as one piscina task (one
 * transaction); each caller's promise resolves after that transaction commits (group commit). At most one batch is
 * in flight, so a call waits behind at most one other batch. If the worker dies, the calls of its batch reject with
 * ASTRID_ERR_STORAGE_UNAVAILABLE and piscina starts a fresh worker for the next batch.
 */
import { Piscina } from "piscina";
import { AstridError } from "../protocol/errors";
import {
  auditBody,
  checkKv,
  storageError,
  type AuditEntry,
  type AuditInput,
  type StorageOp,
  type TaskResult,
  type VerifyReport,
} from "../protocol/storage-messages";
import type { Logger } from "./logger";
import { workerEntry } from "./worker-entry";

/**
 * How long audit-only work may wait for company. A batch costs ~0.5 ms of CPU whatever its size (task hand-off,
 * commit and fsync, one signature), so unawaited audit records are gathered for up to this long; any awaited
 * call, or 1024 pending entries, flushes at once. Nobody awaits the kernel's audit writes, so the linger delays no
 * reply; a crash loses at most this window of entries, and the chain stays whole (a batch commits or not at all).
 * Measured with bench/status-roundtrip (A/B, two pairs): 5 ms / 64 cost ~2× the audit CPU per request of
 * 10 ms / 256, and 50 ms / 1024 took the daemon from 42–47 to 33–35 µs of CPU per request at 32 clients.
 */
export const AUDIT_LINGER_MS = 50;
/** Pending audit entries that flush without waiting for the linger. */
export const AUDIT_FLUSH_AT = 1024;
/**
 * The worker rewrites var/audit-head.json at most once a second (workers/storage.ts), but piscina parks its thread
 * between tasks, so a timer of its own never fires: this long after the last write, an empty batch lets it catch up.
 */
const ANCHOR_FOLLOW_UP_MS = 1100;

/** A call someone awaits, or (a bare string) the body of an audit entry recorded without a reply. */
type Pending = { op: StorageOp; resolve: (value: unknown) => void; reject: (err: Error) => void } | string;

/** An entry's body for the worker; a coded error when it cannot be one (e.g. a BigInt or a cycle in `action`). */
function serialise(entry: AuditInput): string {
  try {
    return auditBody(entry);
  } catch (err) {
    throw new AstridError("ASTRID_ERR_INTERNAL", `an audit entry cannot be serialised: ${(err as Error).message}`, { cause: err });
  }
}

/** How to open storage. */
export interface StorageOptions {
  dbPath: string;
  seed: Uint8Array;
  logger: Logger;
  /** Lets tests crash the worker on purpose. */
  allowFaultInjection?: boolean;
  /** Deadline for one batch (default 60 s). */
  batchTimeoutMs?: number;
}

/** Storage as the kernel sees it: KV and the audit log, all calls async and group-committed. */
export class StorageClient {
  private pending: Pending[] = [];
  private inFlight = false;
  /** Audit entries that could not be stored (a full disk, a failed batch) and are not yet recorded as lost. */
  private lostAudit: { count: number; since: string; error: string } | undefined;
  /** Whether the last batch that wrote anything committed (space has returned after a full disk). */
  private writesCommit = true;
  private scheduled = false;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** A pending op other than an audit append: someone is waiting on it. */
  private urgent = false;
  private closing: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  /** The follow-up batch that brings the anchor up to the head, and when the last write committed. */
  private anchorTimer: NodeJS.Timeout | undefined;
  private lastWriteAt = 0;

  private constructor(
    private readonly pool: Piscina,
    private readonly options: StorageOptions,
  ) {}

  /** Starts the worker and opens the database; rejects with ASTRID_ERR_STORAGE_CORRUPT naming the file. */
  static async open(options: StorageOptions): Promise<StorageClient> {
    const pool = new Piscina({
      filename: workerEntry("storage"),
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      workerData: { dbPath: options.dbPath, seed: options.seed, allowFaultInjection: options.allowFaultInjection ?? false },
    });
    const client = new StorageClient(pool, options);
    try {
      await client.submit({ op: "kv.list", scope: "system:storage", prefix: "" });
    } catch (err) {
      await pool.destroy();
      throw err;
    }
    return client;
  }

  /** A value, or null when absent. */
  get(scope: string, key: string): Promise<Uint8Array | null> {
    return this.checked(() => checkKv(scope, key), { op: "kv.get", scope, key }) as Promise<Uint8Array | null>;
  }

  /** Stores a value; resolves once committed. */
  set(scope: string, key: string, value: Uint8Array): Promise<void> {
    return this.checked(() => checkKv(scope, key, value), { op: "kv.set", scope, key, value }) as Promise<void>;
  }

  /** Deletes a key; true when it existed. */
  delete(scope: string, key: string): Promise<boolean> {
    return this.checked(() => checkKv(scope, key), { op: "kv.delete", scope, key }) as Promise<boolean>;
  }

  /** Keys in `scope` starting with `prefix`, in byte order. */
  listKeys(scope: string, prefix = "", page: { after?: string; limit?: number } = {}): Promise<string[]> {
    const op = { op: "kv.list" as const, scope, prefix, ...(page.after !== undefined ? { after: page.after } : {}), ...(page.limit !== undefined ? { limit: page.limit } : {}) };
    return this.checked(() => checkKv(scope, prefix, undefined, true), op) as Promise<string[]>;
  }

  /** Deletes the keys in `scope` starting with `prefix`; resolves with how many. */
  clearPrefix(scope: string, prefix: string): Promise<number> {
    return this.checked(() => checkKv(scope, prefix, undefined, true), { op: "kv.clear", scope, prefix }) as Promise<number>;
  }

  /** Appends an audit entry; resolves with its seq and id once committed and chained. */
  appendAudit(entry: AuditInput): Promise<{ seq: number; id: string }> {
    let body: string;
    try {
      body = serialise(entry);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.submit({ op: "audit.append", bodies: [body] }) as Promise<{ seq: number; id: string }>;
  }

  /**
   * Queues an audit entry nobody waits for (the kernel's own records): no promise, no reply crosses back, and
   * the entries of one batch travel as one op. A failed write is logged here, once per batch.
   */
  /**
   * The audit entries lost since the last call, once writes commit again (after a full disk): the audit log records
   * their count, so that a gap is never silent. Undefined while none were lost, or while writes still fail.
   */
  takeLostAudit(): { count: number; since: string; error: string } | undefined {
    if (!this.lostAudit || !this.writesCommit) return undefined;
    const lost = this.lostAudit;
    this.lostAudit = undefined;
    return lost;
  }

  recordAudit(entry: AuditInput): void {
    if (this.closing) {
      this.options.logger.error("audit entry dropped: storage is closing", { action: String(entry.action?.type) });
      return;
    }
    let body: string;
    try {
      body = serialise(entry);
    } catch (err) {
      // Recording never throws into the kernel code that reports an event.
      this.options.logger.error("audit entry dropped", { action: String(entry.action?.type), error: (err as Error).message });
      return;
    }
    this.pending.push(body);
    this.schedule();
  }

  /**
   * Verifies the audit chain: all of it, or (`fromCheckpoint`, at boot) what came after the signed checkpoint. An
   * intact result lets the writer move the checkpoint forward; a broken one stops it.
   */
  verifyAudit(options: { fromCheckpoint?: boolean } = {}): Promise<VerifyReport> {
    return this.submit({ op: "audit.verify", ...(options.fromCheckpoint ? { from_checkpoint: true } : {}) }) as Promise<VerifyReport>;
  }

  /** A walk elsewhere (the background verifier) found the chain broken: stop moving the checkpoint. */
  distrustAudit(): Promise<unknown> {
    return this.submit({ op: "audit.distrust" });
  }

  /** The newest entries after `afterSeq`. */
  tailAudit(limit: number, afterSeq = 0): Promise<AuditEntry[]> {
    return this.submit({ op: "audit.tail", limit, afterSeq }) as Promise<AuditEntry[]>;
  }

  /** Test hook: makes the worker exit mid-batch. */
  crashForTest(): Promise<unknown> {
    return this.submit({ op: "crash" });
  }

  /** Drains every pending call, closes the database (no -wal left to replay) and stops the worker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.urgent = true;
      clearTimeout(this.anchorTimer);
      this.schedule();
      await this.whenIdle();
      try {
        await this.pool.run({ close: true });
      } catch (err) {
        this.options.logger.warn("storage worker did not close cleanly", { error: (err as Error).message });
      }
      await this.pool.destroy();
    })();
    return this.closing;
  }

  private checked(check: () => void, op: StorageOp): Promise<unknown> {
    try {
      check();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.submit(op);
  }

  private submit(op: StorageOp): Promise<unknown> {
    if (this.closing) return Promise.reject(new AstridError("ASTRID_ERR_SHUTTING_DOWN", "storage is closing"));
    return new Promise((resolve, reject) => {
      this.pending.push({ op, resolve, reject });
      // Someone awaits every call made here (an awaited audit append too); only unawaited records linger.
      this.urgent = true;
      this.schedule();
    });
  }

  /** Plans the next flush: now-ish when a caller waits on KV or the batch is big, after the linger otherwise. */
  private schedule(): void {
    if (this.inFlight || this.scheduled || this.pending.length === 0) return;
    if (this.urgent || this.pending.length >= AUDIT_FLUSH_AT) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    } else {
      this.lingerTimer ??= setTimeout(() => this.flush(), AUDIT_LINGER_MS);
    }
  }

  private flush(): void {
    this.scheduled = false;
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.inFlight || this.pending.length === 0) {
      if (!this.inFlight) this.notifyIdle();
      return;
    }
    // Everything pending goes: a call never waits behind more than the one batch in flight, however long the
    // queue grew meanwhile.
    const batch = this.pending.splice(0);
    this.urgent = false;
    this.inFlight = true;
    // Unawaited audit bodies next to each other travel as one op; `callers[i]` is who awaits op i, if anyone.
    const ops: StorageOp[] = [];
    const callers: Array<Exclude<Pending, string> | undefined> = [];
    let unawaited = 0;
    for (const p of batch) {
      if (typeof p !== "string") {
        ops.push(p.op);
        callers.push(p);
        continue;
      }
      unawaited++;
      const last = ops.at(-1);
      if (last?.op === "audit.append" && callers.at(-1) === undefined) last.bodies.push(p);
      else {
        ops.push({ op: "audit.append", bodies: [p] });
        callers.push(undefined);
      }
    }
    const lost = (error: string, entries = unawaited) => {
      this.options.logger.error("audit write failed", { entries, error });
      this.writesCommit = false;
      if (this.lostAudit) this.lostAudit.count += entries;
      else this.lostAudit = { count: entries, since: new Date().toISOString(), error };
    };
    const writes = ops.some((op) => op.op === "audit.append" || op.op === "kv.set" || op.op === "kv.delete");
    // Verifying walks the whole log (~10 µs per entry): it gets no deadline, or a long log would fail boot.
    const signal = ops.some((op) => op.op === "audit.verify") ? undefined : AbortSignal.timeout(this.options.batchTimeoutMs ?? 60_000);
    this.pool
      .run({ ops }, signal ? { signal } : {})
      .then(
        (result: TaskResult) => {
          if ("fatal" in result) {
            for (const caller of callers) caller?.reject(storageError(result.fatal));
            if (unawaited > 0) lost(result.fatal.message);
            return;
          }
          let failedWrite = false;
          result.results.forEach((r, i) => {
            const caller = callers[i];
            if (!r.ok && ops[i]!.op !== "kv.get" && ops[i]!.op !== "kv.list") failedWrite = true;
            if (r.ok) caller?.resolve(r.value);
            else if (caller) caller.reject(storageError(r));
            else lost(r.message, (ops[i] as Extract<StorageOp, { op: "audit.append" }>).bodies.length);
          });
          if (writes && !failedWrite) this.writesCommit = true;
          if (writes) this.anchorSoon();
        },
        (err: Error) => {
          this.options.logger.error("storage worker failed; a fresh one takes the next batch", { error: err.message, ops: batch.length });
          for (const caller of callers) {
            caller?.reject(new AstridError("ASTRID_ERR_STORAGE_UNAVAILABLE", `the storage worker stopped before committing: ${err.message}`, { cause: err }));
          }
          if (unawaited > 0) lost(err.message);
          // The fresh worker trusts no chain it did not verify: until it has, neither the checkpoint nor the anchor
          // moves (a cut tail would go unseen). Verifying from the checkpoint costs what was written since.
          if (!this.closing && !ops.some((op) => op.op === "audit.verify")) this.verifyAudit({ fromCheckpoint: true }).catch(() => undefined);
        },
      )
      .finally(() => {
        this.inFlight = false;
        if (this.pending.length > 0) this.schedule();
        else this.notifyIdle();
      });
  }

  /** Arms (once) the empty batch that runs ANCHOR_FOLLOW_UP_MS after the last write; later writes push it back. */
  private anchorSoon(): void {
    this.lastWriteAt = Date.now();
    if (this.anchorTimer) return;
    const fire = () => {
      const left = this.lastWriteAt + ANCHOR_FOLLOW_UP_MS - Date.now();
      if (left > 0) {
        this.anchorTimer = setTimeout(fire, left).unref();
        return;
      }
      this.anchorTimer = undefined;
      if (!this.closing) this.pool.run({ ops: [] }).catch(() => undefined);
    };
    this.anchorTimer = setTimeout(fire, ANCHOR_FOLLOW_UP_MS).unref();
  }

  private whenIdle(): Promise<void> {
    if (!this.inFlight && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private notifyIdle(): void {
    for (const resolve of this.idleWaiters.splice(0)) resolve();
  }
}
