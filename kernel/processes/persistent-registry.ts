/**
 * The persistent tier's registry: host processes that outlive the capsule run that started them (a hot reload, a
 * restart of its worker) but not the daemon. Each is found by an opaque id — 256 random bits, lowercase base32 —
 * looked up by a keyed hash, and only for the capsule and principal that started it: every
 * lookup takes both, and a wrong owner, an unknown id, a released or reaped one all look the same (absent). Each
 * entry keeps its output in bounded rings with stream offsets, so a drain (`drain`) and any number of cursors
 * (`readSince`) read one stream; and it has three deadlines: its lifetime, an idle time (no call touched it), and
 * how long it is kept after it exits.
 */
import { createHmac, randomBytes } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import type { ManagedProcess } from "./managed-process";

/** Persistent processes one capsule keeps per principal (running, or exited and not yet released). */
export const MAX_PERSISTENT_PER_OWNER = 8;
/** Bytes of output kept per stream when the request names none; the least and most it may name. */
export const PERSISTENT_RING = { default: 1024 * 1024, min: 4 * 1024, max: 4 * 1024 * 1024 };
/** The longest a persistent process lives (a request may only shorten it). */
export const MAX_LIFETIME_MS = 60 * 60 * 1000;
/** Reaped after this long untouched, unless the request names a shorter (or, up to the lifetime, longer) time. */
export const IDLE_TIMEOUT_MS = { default: 10 * 60 * 1000, max: MAX_LIFETIME_MS };
/** Kept this long after it exits, unless the request names another time (at most the max). */
export const EXIT_RETENTION_MS = { default: 5 * 60 * 1000, max: 60 * 60 * 1000 };
/** Room past the ring's size for the one chunk a paused pipe may still hand over (backpressure loses nothing). */
const PIPE_CHUNK_BYTES = 64 * 1024;

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** 256 random bits as lowercase base32, no padding (52 characters; a valid IPC topic segment). */
function mintId(): string {
  const bytes = randomBytes(32);
  let bits = 0;
  let value = 0;
  let out = "";
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += BASE32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
  return out;
}

export type LogStream = "stdout" | "stderr";
export type OverflowPolicy = "drop-oldest" | "backpressure";

/** What a persistent spawn asked for, already checked and clamped. */
export interface PersistentOptions {
  label: string;
  command: string;
  overflow: OverflowPolicy;
  ringBytes: number;
  lifetimeMs: number;
  idleMs: number;
  retentionMs: number;
  keepStdinOpen: boolean;
}

/** One persistent process. */
export class PersistentEntry {
  readonly startedAt = performance.now();
  touchedAt = performance.now();
  /** Set once the process exited and its pipes are read to the end. */
  finished = false;
  /** Where the draining read (`drain`) has got to, per stream. */
  readonly drained = { stdout: 0, stderr: 0 };
  /** The furthest any read got to, per stream (what backpressure waits for). */
  private readonly consumed = { stdout: 0, stderr: 0 };
  /** Distinguishes this process's cursors from any other's. */
  readonly nonce = randomBytes(6).toString("hex");
  private readonly timers: NodeJS.Timeout[] = [];
  private idle: NodeJS.Timeout | undefined;

  constructor(
    /** The id itself, held in memory only (`list` hands it back); never logged or audited. */
    readonly id: string,
    readonly key: string,
    /** A short hash of the id, for the audit log (the id itself is never written down). */
    readonly idHash: string,
    readonly capsule: string,
    readonly principal: string,
    readonly proc: ManagedProcess,
    readonly options: PersistentOptions,
  ) {}

  /** Milliseconds since spawn, and since the last call that touched it. */
  get ageMs(): number {
    return Math.round(performance.now() - this.startedAt);
  }
  get idleForMs(): number {
    return Math.round(performance.now() - this.touchedAt);
  }

  /** Notes a read, so backpressure lets the stream flow again once the reader caught up. */
  consume(stream: LogStream, upTo: number): void {
    if (upTo > this.consumed[stream]) this.consumed[stream] = upTo;
    this.balance(stream);
  }

  /** With `backpressure`: holds a stream whose unread bytes fill the ring, and releases it once read. */
  balance(stream: LogStream): void {
    if (this.options.overflow !== "backpressure") return;
    const ring = this.proc[stream];
    const unread = ring.end - Math.max(this.consumed[stream], this.drained[stream]);
    if (unread >= this.options.ringBytes) this.proc.hold(stream);
    else this.proc.release(stream);
  }

  /** The ring capacity to start the process with: room for one more pipe chunk when it must not drop. */
  static ringCapacity(options: PersistentOptions): number {
    return options.overflow === "backpressure" ? options.ringBytes + PIPE_CHUNK_BYTES : options.ringBytes;
  }

  /** Runs `fn` after `ms`; cleared when the entry goes. */
  after(ms: number, fn: () => void): void {
    const timer = setTimeout(fn, ms);
    timer.unref();
    this.timers.push(timer);
  }

  /** Restarts the idle deadline (`onIdle` runs when nothing touched it for `idleMs`). */
  touch(onIdle?: () => void): void {
    this.touchedAt = performance.now();
    if (onIdle) this.idleAction = onIdle;
    if (this.idle) clearTimeout(this.idle);
    if (this.finished || !this.idleAction) return;
    this.idle = setTimeout(this.idleAction, this.options.idleMs);
    this.idle.unref();
  }
  private idleAction: (() => void) | undefined;

  clearTimers(): void {
    for (const t of this.timers) clearTimeout(t);
    if (this.idle) clearTimeout(this.idle);
    this.idle = undefined;
  }

  /** An opaque cursor for `stream` at stream offset `offset`, having seen `dropped` bytes dropped before it. */
  cursor(stream: LogStream, offset: number, dropped: number): string {
    return `${this.nonce}.${stream === "stdout" ? "o" : "e"}.${offset.toString(36)}.${dropped.toString(36)}`;
  }

  /** The offset and drop count a cursor holds; ASTRID_ERR_REQUEST_INVALID for one not made for this stream here. */
  parseCursor(stream: LogStream, token: string | null): { offset: number; dropped: number } {
    if (token === null) return { offset: this.proc[stream].start, dropped: this.proc[stream].start };
    const m = /^([0-9a-f]{12})\.([oe])\.([0-9a-z]{1,11})\.([0-9a-z]{1,11})$/.exec(token);
    if (!m || m[1] !== this.nonce || m[2] !== (stream === "stdout" ? "o" : "e")) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "process.read_since: the cursor is not one this process's stream handed out");
    }
    const offset = parseInt(m[3]!, 36);
    const dropped = parseInt(m[4]!, 36);
    if (offset > this.proc[stream].end) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "process.read_since: the cursor lies past the stream's end");
    return { offset, dropped };
  }
}

/** The persistent processes of the daemon, by keyed hash of their id. */
export class PersistentRegistry {
  /** Keys the id hashes: a dump of the registry's keys does not give the ids back. */
  private readonly secret = randomBytes(32);
  private readonly entries = new Map<string, PersistentEntry>();

  private keyOf(id: string): string {
    return createHmac("sha256", this.secret).update(id).digest("hex");
  }

  /** Entries of `capsule` for `principal`. */
  owned(capsule: string, principal: string): PersistentEntry[] {
    return [...this.entries.values()].filter((e) => e.capsule === capsule && e.principal === principal);
  }

  /** Throws ASTRID_ERR_PROCESS_REGISTRY_FULL when `capsule` keeps its maximum for `principal`. */
  checkRoom(capsule: string, principal: string): void {
    if (this.owned(capsule, principal).length >= MAX_PERSISTENT_PER_OWNER) {
      throw new AstridError("ASTRID_ERR_PROCESS_REGISTRY_FULL", `${capsule} already keeps ${MAX_PERSISTENT_PER_OWNER} persistent processes for ${principal} (running or exited and not released); release or stop one`);
    }
  }

  /** Registers a started process; returns its new id and entry. */
  add(capsule: string, principal: string, proc: ManagedProcess, options: PersistentOptions): { id: string; entry: PersistentEntry } {
    const id = mintId();
    const key = this.keyOf(id);
    const entry = new PersistentEntry(id, key, key.slice(0, 16), capsule, principal, proc, options);
    this.entries.set(key, entry);
    return { id, entry };
  }

  /** The entry `id` names for this capsule and principal, or undefined (unknown, reaped, or someone else's). */
  find(id: string, capsule: string, principal: string): PersistentEntry | undefined {
    // Obvious garbage is not hashed; the answer is the same as for an unknown id.
    if (id.length !== 52 || !/^[a-z2-7]+$/.test(id)) return undefined;
    const entry = this.entries.get(this.keyOf(id));
    return entry && entry.capsule === capsule && entry.principal === principal ? entry : undefined;
  }

  /** Forgets an entry (its timers too); true when it was there. */
  remove(entry: PersistentEntry): boolean {
    entry.clearTimers();
    return this.entries.delete(entry.key);
  }

  /** Every entry, for the daemon's stop; the registry is emptied. */
  takeAll(): PersistentEntry[] {
    const all = [...this.entries.values()];
    for (const e of all) this.remove(e);
    return all;
  }
}

