/**
 * The persistent tier of the `process.*` calls: `spawn_persistent` starts a host process that outlives the capsule
 * run that started it (a hot reload, a worker restart) — never the daemon — and hands back an opaque id; `list`,
 * `status`, `drain`, `read_since`, `stop` and `release` (and the shared `state`, `write_stdin`, `close_stdin`,
 * `signal`) find it again. Each lookup takes the calling capsule and principal: another capsule's id, another
 * principal's, a released or reaped one all answer ASTRID_ERR_NOT_FOUND, alike. Only a sandboxed process persists
 * (bubblewrap's --die-with-parent takes it down with the daemon, even a killed one). Every call is audited with a
 * hash of the id, never the id, the env, stdin or output.
 */
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import {
  EXIT_RETENTION_MS, IDLE_TIMEOUT_MS, MAX_LIFETIME_MS, PERSISTENT_RING, PersistentEntry, PersistentRegistry,
  type LogStream, type PersistentOptions,
} from "../processes/persistent-registry";
import type { ManagedProcess } from "../processes/managed-process";
import type { ProcessTable } from "../processes/process-table";
import type { CapsuleRun } from "./capsule-run";
import { parseCallArg, type HostCall, type HostContext } from "./host-call";

/** What the persistent tier uses of the process service (host-process.ts, which owns it and hands itself in). */
export interface ProcessLauncher<Prepared extends { mode: string; argv: string[] }> {
  readonly host: HostContext;
  readonly table: ProcessTable<object>;
  prepare(call: HostCall, argv: string[], options: { cwd?: string; env?: unknown; stdin?: string; keep_stdin_open?: boolean; outputBytes?: number }): Promise<Prepared>;
  reserve(call: HostCall, prepared: Prepared, background: boolean, owner: object): ReturnType<ProcessTable<object>["reserve"]>;
  start(call: HostCall, prepared: Prepared, operation: "spawn", release: () => void): Promise<ManagedProcess>;
}

/** Between SIGTERM and SIGKILL for `stop` when the call names no grace; the most it may name (a capsule's call waits 30 s). */
export const STOP_GRACE = { default: 2000, max: 20_000 };
/** The most one `read_since` hands out. */
export const MAX_READ_BYTES = 1024 * 1024;
/** Longest label kept (longer ones are cut), and the longest a request may send. */
const LABEL_BYTES = 128;

const Id = z.string().min(1).max(128);
const Ms = (name: string) => z.number({ error: `${name} must be a number` }).int(`${name} must be a whole number`);
const PersistOptions = z.strictObject({
  cwd: z.string().max(4096).optional(),
  env: z.unknown().optional(),
  stdin: z.string().refine((s) => Buffer.byteLength(s) <= 1024 * 1024, "stdin is larger than 1048576 bytes").optional(),
  keep_stdin_open: z.boolean().optional(),
  label: z.string().max(4096).optional(),
  overflow: z.enum(["drop-oldest", "backpressure"], { error: 'overflow must be "drop-oldest" or "backpressure"' }).optional(),
  log_ring_bytes: Ms("log_ring_bytes").min(1, "log_ring_bytes must be at least 1").optional(),
  max_lifetime_ms: Ms("max_lifetime_ms").min(1, "max_lifetime_ms must be at least 1").optional(),
  idle_timeout_ms: Ms("idle_timeout_ms").min(1, "idle_timeout_ms must be at least 1 (0 would reap it at once)").optional(),
  exit_retention_ms: Ms("exit_retention_ms").min(0, "exit_retention_ms must not be negative").optional(),
});
const Argv = z.array(z.string()).min(1);
const Stream = z.enum(["stdout", "stderr"], { error: 'stream must be "stdout" or "stderr"' });
const Cursor = z.string().max(64).nullable();
const MaxBytes = Ms("max_bytes").min(0, "max_bytes must not be negative");
const Grace = Ms("grace_ms").min(0, "grace_ms must not be negative").nullable().optional();
const Filter = z.string().max(LABEL_BYTES * 4).nullable().optional();

/** A label as kept: no control characters, at most LABEL_BYTES bytes. */
function cleanLabel(label: string): string {
  // eslint-disable-next-line no-control-regex
  let out = label.replace(/[\u0000-\u001f\u007f-\u009f]/g, "");
  while (Buffer.byteLength(out) > LABEL_BYTES) out = out.slice(0, -1);
  return out;
}

/** `none`/absent: the default; else clamped into [min, max]. */
const clamp = (value: number | undefined, fallback: number, min: number, max: number) => Math.min(Math.max(value ?? fallback, min), max);

/** The persistent tier, for ProcessService. */
export class PersistentProcesses<Prepared extends { mode: string; argv: string[] }> {
  private readonly registry = new PersistentRegistry();
  /** The table owner of each capsule's persistent processes (their concurrent slots count against its quotas). */
  private readonly owners = new Map<string, object>();
  /** The runs that touched each entry: woken (`posted`) when it prints or exits. */
  private readonly watchers = new Map<PersistentEntry, Set<CapsuleRun>>();
  private closed = false;

  constructor(private readonly service: ProcessLauncher<Prepared>) {}

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    switch (call.call) {
      case "process.spawn_persistent":
        return this.spawn(call, parseCallArg(Argv, args[0], call.call), parseCallArg(PersistOptions, args[1] ?? {}, call.call));
      case "process.list":
        return this.list(call, parseCallArg(Filter, args[0], call.call) ?? null);
      case "process.status":
        return this.status(call, parseCallArg(z.array(Id).max(256, "at most 256 ids"), args[0], call.call));
      case "process.drain":
        return this.drain(call, parseCallArg(Id, args[0], call.call));
      case "process.read_since":
        return this.readSince(call, parseCallArg(Id, args[0], call.call), parseCallArg(Stream, args[1], call.call), parseCallArg(Cursor, args[2] ?? null, call.call), parseCallArg(MaxBytes, args[3], call.call));
      case "process.stop":
        return this.stop(call, parseCallArg(Id, args[0], call.call), parseCallArg(Grace, args[1], call.call) ?? undefined);
      case "process.release":
        return this.release(call, parseCallArg(Id, args[0], call.call));
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown process call ${call.call}`);
    }
  }

  /** The entry `id` names for the calling capsule and principal (touched: its idle deadline restarts), if any. */
  touch(call: HostCall, id: string): PersistentEntry | undefined {
    const entry = this.registry.find(id, call.run.record.name, call.principal);
    if (!entry) return undefined;
    entry.touch();
    let runs = this.watchers.get(entry);
    if (!runs) this.watchers.set(entry, (runs = new Set()));
    if (!call.run.ended) runs.add(call.run);
    return entry;
  }

  /** The entry, or ASTRID_ERR_NOT_FOUND saying nothing of why (unknown, someone else's, reaped look the same). */
  private need(call: HostCall, id: string): PersistentEntry {
    const entry = this.touch(call, id);
    if (!entry) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${call.call}: no persistent process with this id for ${call.run.record.name} and ${call.principal}`);
    return entry;
  }

  /** Audits a shared call (`write_stdin`, `close_stdin`, `signal`) made on a persistent id, or on a background one. */
  audited(call: HostCall, id: string, operation: "write_stdin" | "close_stdin" | "signal", detail: Record<string, string | number | boolean | null>): void {
    const entry = this.registry.find(id, call.run.record.name, call.principal);
    this.service.host.audit.process({
      capsule: call.run.record.name, principal: call.principal, operation,
      ...(entry ? { tier: "persistent" as const, id_hash: entry.idHash } : { id }),
      detail,
    });
  }

  private audit(call: HostCall, operation: Parameters<HostContext["audit"]["process"]>[0]["operation"], entry: PersistentEntry | null, detail?: Record<string, string | number | boolean | null>): void {
    this.service.host.audit.process({
      capsule: call.run.record.name, principal: call.principal, operation, tier: "persistent",
      ...(entry ? { id_hash: entry.idHash } : {}),
      ...(detail ? { detail } : {}),
    });
  }

  private async spawn(call: HostCall, argv: string[], options: z.output<typeof PersistOptions>) {
    const capsule = call.run.record.name;
    const ringBytes = clamp(options.log_ring_bytes, PERSISTENT_RING.default, PERSISTENT_RING.min, PERSISTENT_RING.max);
    const lifetimeMs = clamp(options.max_lifetime_ms, MAX_LIFETIME_MS, 1, MAX_LIFETIME_MS);
    const persistent: PersistentOptions = {
      label: cleanLabel(options.label ?? argv[0]!.split("/").pop()!) || cleanLabel(argv[0]!),
      command: argv.join(" ").slice(0, 4096),
      overflow: options.overflow ?? "drop-oldest",
      ringBytes,
      lifetimeMs,
      idleMs: clamp(options.idle_timeout_ms, IDLE_TIMEOUT_MS.default, 1, IDLE_TIMEOUT_MS.max),
      retentionMs: clamp(options.exit_retention_ms, EXIT_RETENTION_MS.default, 0, EXIT_RETENTION_MS.max),
      keepStdinOpen: options.keep_stdin_open === true,
    };
    const prepared = await this.service.prepare(call, argv, {
      cwd: options.cwd, env: options.env, stdin: options.stdin, keep_stdin_open: persistent.keepStdinOpen,
      outputBytes: PersistentEntry.ringCapacity(persistent),
    });
    if (prepared.mode !== "bwrap") {
      throw new AstridError("ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED", `${call.call}: persistent processes need the bubblewrap sandbox (it takes them down with the daemon); host processes run without it here`);
    }
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping; no new host processes");
    this.registry.checkRoom(capsule, call.principal);
    let owner = this.owners.get(capsule);
    if (!owner) this.owners.set(capsule, (owner = { capsule }));
    const slot = this.service.reserve(call, prepared, true, owner);
    const proc = await this.service.start(call, prepared, "spawn", () => this.service.table.release(owner, slot));
    this.service.table.addBackground(owner, slot, proc, argv);
    // Checked again: another spawn may have taken the last place (or the daemon began to stop) while it started.
    try {
      if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping; no new host processes");
      this.registry.checkRoom(capsule, call.principal);
    } catch (err) {
      proc.destroy("refused as it started");
      throw err;
    }
    const { id, entry } = this.registry.add(capsule, call.principal, proc, persistent);
    this.watchers.set(entry, new Set(call.run.ended ? [] : [call.run]));
    proc.onActivity(() => {
      entry.balance("stdout");
      entry.balance("stderr");
      for (const run of this.watchers.get(entry) ?? []) run.posted?.();
    });
    entry.after(lifetimeMs, () => proc.stop(`max lifetime of ${lifetimeMs} ms`, STOP_GRACE.default));
    entry.touch(() => this.reap(entry, "idle", () => proc.stop(`idle for ${persistent.idleMs} ms`, STOP_GRACE.default)));
    void proc.finished.then(() => {
      entry.finished = true;
      entry.touch();
      this.service.host.audit.process({
        capsule, principal: call.principal, operation: "exit", tier: "persistent", id_hash: entry.idHash,
        detail: { exit_code: proc.exitCode, signal: proc.signal, duration_ms: proc.durationMs ?? 0, stop_reason: proc.stopReason },
      });
      if (this.registry.find(id, capsule, call.principal)) entry.after(persistent.retentionMs, () => this.reap(entry, "exit retention"));
    });
    this.service.host.audit.process({
      capsule, principal: call.principal, operation: "spawn", tier: "persistent", id_hash: entry.idHash,
      argv: prepared.argv.slice(0, 64).map((a) => (a.length > 256 ? `${a.slice(0, 255)}…` : a)), sandbox: prepared.mode, pid: proc.pid,
      detail: { label: persistent.label, overflow: persistent.overflow, log_ring_bytes: ringBytes, max_lifetime_ms: lifetimeMs, idle_timeout_ms: persistent.idleMs, exit_retention_ms: persistent.retentionMs },
    });
    return { id, pid: proc.pid };
  }

  /** Drops an entry the kernel gave up on (idle, exit retention), stopping it first when `stop` says how. */
  private reap(entry: PersistentEntry, reason: string, stop?: () => void): void {
    if (!this.registry.remove(entry)) return;
    this.watchers.delete(entry);
    stop?.();
    this.service.host.audit.process({ capsule: entry.capsule, principal: entry.principal, operation: "reap", tier: "persistent", id_hash: entry.idHash, detail: { reason } });
  }

  private info(entry: PersistentEntry) {
    const { proc } = entry;
    const unread = (s: LogStream) => proc[s].end - Math.max(entry.drained[s], proc[s].start);
    return {
      id: entry.id,
      label: entry.options.label,
      command: entry.options.command,
      os_pid: proc.running ? proc.pid : null,
      phase: proc.running ? "running" : "exited",
      exit: proc.running ? null : { exit_code: proc.exitCode, signal: proc.signal },
      age_ms: entry.ageMs,
      idle_ms: entry.idleForMs,
      buffered_bytes: unread("stdout") + unread("stderr"),
      bytes_dropped: proc.stdout.dropped + proc.stderr.dropped,
      stdin_open: proc.stdinWritable,
    };
  }

  private list(call: HostCall, filter: string | null) {
    const entries = this.registry.owned(call.run.record.name, call.principal).filter((e) => filter === null || e.options.label.includes(filter));
    this.audit(call, "list", null, { count: entries.length });
    return entries.map((e) => this.info(e));
  }

  private status(call: HostCall, ids: string[]) {
    // Unknown ids are left out, as the WIT says; no touch for them, and no count of them in the audit.
    const found = ids.map((id) => this.touch(call, id)).filter((e): e is PersistentEntry => e !== undefined);
    this.audit(call, "status", found.length === 1 ? found[0]! : null, { count: found.length });
    return found.map((e) => this.info(e));
  }

  /** The output since the previous drain, as UTF-8 (lossy on other bytes; `read_since` is byte-exact). */
  private drain(call: HostCall, id: string) {
    const entry = this.need(call, id);
    const { proc } = entry;
    const take = (s: LogStream) => {
      const bytes = proc[s].since(entry.drained[s], proc[s].capacity);
      entry.drained[s] = proc[s].end;
      entry.consume(s, proc[s].end);
      return bytes.toString("utf8");
    };
    const out = { stdout: take("stdout"), stderr: take("stderr"), running: proc.running, exit_code: proc.exitCode, signal: proc.signal };
    this.audit(call, "drain", entry);
    return out;
  }

  private readSince(call: HostCall, id: string, stream: LogStream, token: string | null, maxBytes: number) {
    const entry = this.need(call, id);
    const ring = entry.proc[stream];
    const at = entry.parseCursor(stream, token);
    const from = Math.max(at.offset, ring.start);
    const dropped = at.dropped + (from - at.offset);
    const data = ring.since(from, Math.min(maxBytes, MAX_READ_BYTES));
    const next = from + data.length;
    entry.consume(stream, next);
    this.audit(call, "read_since", entry, { stream, bytes: data.length });
    return {
      data: data.toString("base64"),
      next: entry.cursor(stream, next, dropped),
      bytes_dropped: dropped,
      drained_eof: entry.finished && next >= ring.end,
    };
  }

  /** SIGTERM, SIGKILL after the grace; the id goes (its slots are free again). */
  private async stop(call: HostCall, id: string, graceMs: number | undefined) {
    const entry = this.need(call, id);
    const { proc } = entry;
    this.registry.remove(entry);
    this.watchers.delete(entry);
    proc.stop("process.stop", Math.min(graceMs ?? STOP_GRACE.default, STOP_GRACE.max));
    await proc.finished;
    this.audit(call, "stop", entry, { exit_code: proc.exitCode, signal: proc.signal });
    return { exit_code: proc.exitCode, signal: proc.signal };
  }

  private release(call: HostCall, id: string): boolean {
    const entry = this.touch(call, id);
    // Idempotent: a released (or unknown) id is released.
    if (!entry) return false;
    if (entry.proc.running) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: the process is still running; stop it with process.stop`);
    this.registry.remove(entry);
    this.watchers.delete(entry);
    this.audit(call, "release", entry);
    return true;
  }

  /** A run ended: it no longer waits on anything (its processes stay; a later run finds them by id). */
  endRun(run: CapsuleRun): void {
    for (const runs of this.watchers.values()) runs.delete(run);
  }

  /** The daemon is stopping: every persistent process goes (ProcessService's close stops them with the rest). */
  close(): void {
    this.closed = true;
    // Their processes are in the service's table too, which stops them (and waits for them) with the rest.
    this.registry.takeAll();
    this.watchers.clear();
  }
}
