/**
 * The `process.*` host calls: a capsule runs a host command (`run`, to completion) or starts one in the background
 * (`spawn`, then `logs` and `kill`). argv is an array — never a shell line — whose leading words must match an
 * entry of the manifest's `host_process` (and of the principal's `[process] allow`, when that is not empty); the
 * principal must hold `self:process:run`. The kernel resolves the command on a fixed PATH, starts it in the
 * workspace with a minimal environment (plus the variables the call adds, kernel/processes/process-env.ts),
 * sandboxed with bubblewrap when it can be (ASTRID_PROCESS_SANDBOX), and keeps the last 1 MB of each output stream.
 * A background process may keep a stdin pipe (`write_stdin`, `close_stdin`) and be signalled. Every process of a
 * capsule run is stopped when the run ends and when the daemon stops; each start and end is audited. The persistent
 * tier (`spawn_persistent` and the id-keyed calls after it) lives in host-process-persistent.ts.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import { argvCovered, commandLine } from "../processes/command-match";
import { processEnv, resolveCwd, resolveExecutable } from "../processes/launch-paths";
import { ManagedProcess, PROCESS_SIGNALS, type LaunchSpec, type ProcessSignalName } from "../processes/managed-process";
import { checkEnv } from "../processes/process-env";
import { ProcessTable } from "../processes/process-table";
import { bwrapArgv, isWithin, probeBwrap, readHostLayout, type HostLayout, type SandboxMode, type SandboxSetting } from "../processes/sandbox";
import type { CapsuleRun } from "./capsule-run";
import { PersistentProcesses } from "./host-process-persistent";
import { parseCallArg, type HostCall, type HostContext, type HostService } from "./host-call";

/** `process.run`'s deadline when the call names none. */
export const DEFAULT_RUN_TIMEOUT_MS = 30_000;
/** The longest `timeout_ms` a call may ask for (the principal's max_timeout_secs may lower it). */
export const MAX_RUN_TIMEOUT_MS = 300_000;
/** Between SIGTERM and SIGKILL when a process is stopped. */
export const STOP_GRACE_MS = 2000;
/** Largest stdin a `process.run` (or a spawn's prelude) may pass, and one `write_stdin` call. */
export const MAX_STDIN_BYTES = 1024 * 1024;
/** The longest a `write_stdin` waits for a process that does not read (under the capsule's 30 s call deadline). */
export const WRITE_STDIN_TIMEOUT_MS = 20_000;
/** Largest argv, all elements together. */
const MAX_ARGV_BYTES = 256 * 1024;

const noNul = (s: string) => !s.includes("\0");
const Argv = z
  .array(z.string().max(MAX_ARGV_BYTES).refine(noNul, "an argument holds a NUL byte"), { error: "argv must be an array of strings" })
  .min(1, "argv must name a command")
  .max(4096, "argv has more than 4096 elements")
  .refine((argv) => argv[0] !== "", "argv[0] must not be empty")
  .refine((argv) => argv.reduce((n, a) => n + Buffer.byteLength(a), 0) <= MAX_ARGV_BYTES, `argv is larger than ${MAX_ARGV_BYTES} bytes`);
const Cwd = z.string().max(4096).optional();
const Stdin = z.string().refine((s) => Buffer.byteLength(s) <= MAX_STDIN_BYTES, `stdin is larger than ${MAX_STDIN_BYTES} bytes`).optional();
/** Checked apart (checkEnv), for a message that names the refused key. */
const Env = z.unknown().optional();
const RunOptions = z.strictObject({
  cwd: Cwd,
  env: Env,
  stdin: Stdin,
  timeout_ms: z.number().int("timeout_ms must be a whole number").min(1, "timeout_ms must be at least 1").max(MAX_RUN_TIMEOUT_MS, `timeout_ms must be at most ${MAX_RUN_TIMEOUT_MS}`).optional(),
});
const SpawnOptions = z.strictObject({ cwd: Cwd, env: Env, stdin: Stdin, keep_stdin_open: z.boolean().optional() });
const Id = z.string().min(1).max(128);
const Signal = z.enum(Object.keys(PROCESS_SIGNALS) as [ProcessSignalName, ...ProcessSignalName[]], { error: `signal must be one of ${Object.keys(PROCESS_SIGNALS).join(", ")}` });
const Encoding = z.enum(["utf8", "base64"], { error: 'encoding must be "utf8" or "base64"' }).optional();
/** `write_stdin`'s data before decoding: base64 of MAX_STDIN_BYTES. */
const StdinData = z.string().max(Math.ceil(MAX_STDIN_BYTES / 3) * 4, `data is larger than ${MAX_STDIN_BYTES} bytes`);

/** How a process is to start, as the calls give it (checked by their schemas). */
export interface LaunchOptions {
  cwd?: string | undefined;
  env?: unknown;
  stdin?: string | undefined;
  keep_stdin_open?: boolean | undefined;
  /** Ring capacity per stream (the persistent tier's `log_ring_bytes`). */
  outputBytes?: number;
}

/** What host processes run under, decided once. */
type SandboxState =
  | { mode: "bwrap"; bwrap: string; layout: HostLayout }
  | { mode: "none" }
  | { mode: "unavailable"; reason: string };

/** A checked, resolved launch: what the call asked for and where it will run. */
export interface Prepared {
  argv: string[];
  mode: SandboxMode;
  spec: LaunchSpec;
  quotas: { max_timeout_secs: number; max_background_processes: number };
}

/** The audit record of an argv: at most 64 elements of at most 256 characters. */
function auditedArgv(argv: readonly string[]): string[] {
  return argv.slice(0, 64).map((a) => (a.length > 256 ? `${a.slice(0, 255)}…` : a));
}

/** ProcessService: the `process` family of capsule calls. */
export class ProcessService implements HostService {
  /** Owners are capsule runs, and one key object per capsule for its persistent processes. */
  readonly table = new ProcessTable<object>();
  /** Processes being stopped (a run ended): the daemon's stop waits for them too. */
  private readonly stopping = new Set<ManagedProcess>();
  private sandboxState: Promise<SandboxState> | undefined;

  private readonly persistent: PersistentProcesses<Prepared>;

  constructor(readonly host: HostContext) {
    this.persistent = new PersistentProcesses(this);
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    switch (call.call) {
      case "process.run":
        return this.run(call, parseCallArg(Argv, args[0], call.call), parseCallArg(RunOptions, args[1] ?? {}, call.call));
      case "process.spawn":
        return this.spawn(call, parseCallArg(Argv, args[0], call.call), parseCallArg(SpawnOptions, args[1] ?? {}, call.call));
      case "process.logs":
        return this.logs(call, parseCallArg(Id, args[0], call.call));
      case "process.kill":
        return this.kill(call, parseCallArg(Id, args[0], call.call));
      case "process.state":
        return this.state(call, parseCallArg(Id, args[0], call.call));
      case "process.write_stdin":
        return this.writeStdin(call, parseCallArg(Id, args[0], call.call), parseCallArg(StdinData, args[1], call.call), parseCallArg(Encoding, args[2], call.call) ?? "utf8");
      case "process.close_stdin":
        return this.closeStdin(call, parseCallArg(Id, args[0], call.call));
      case "process.signal":
        return this.signal(call, parseCallArg(Id, args[0], call.call), parseCallArg(Signal, args[1], call.call));
      case "process.spawn_persistent":
      case "process.list":
      case "process.status":
      case "process.drain":
      case "process.read_since":
      case "process.stop":
      case "process.release":
        return this.persistent.handle(call, args);
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown process call ${call.call}`);
    }
  }

  endRun(run: CapsuleRun): void {
    for (const proc of this.table.takeAll(run)) this.stopInBackground(proc, "the capsule stopped");
    this.persistent.endRun(run);
  }

  async close(): Promise<void> {
    this.persistent.close();
    for (const proc of this.table.closeAll()) this.stopInBackground(proc, "the daemon is stopping");
    // Bounded: SIGKILL follows SIGTERM after the grace, and the pipes are cut a second after the exit.
    await Promise.race([
      Promise.all([...this.stopping].map((p) => p.finished)),
      new Promise((r) => setTimeout(r, STOP_GRACE_MS + 3000)),
    ]);
  }

  /** The sandbox in use (probing bubblewrap on first use; `auto` falls back to `none` with one warning). */
  sandbox(): Promise<SandboxState> {
    this.sandboxState ??= this.decideSandbox(this.host.processSandbox ?? "auto");
    return this.sandboxState;
  }

  private async decideSandbox(setting: SandboxSetting): Promise<SandboxState> {
    if (setting === "none") {
      this.host.logger.info("host processes run without a sandbox (ASTRID_PROCESS_SANDBOX=none)");
      return { mode: "none" };
    }
    const bwrap = await resolveExecutable("bwrap").catch(() => null);
    const probe = bwrap === null ? { ok: false as const, reason: "bwrap (bubblewrap) is not installed" } : await probeBwrap(bwrap);
    if (probe.ok) {
      this.host.logger.info("host processes run sandboxed with bubblewrap", { bwrap });
      return { mode: "bwrap", bwrap: bwrap!, layout: await readHostLayout() };
    }
    if (setting === "bwrap") {
      this.host.logger.error("ASTRID_PROCESS_SANDBOX=bwrap but bubblewrap cannot run here; host processes are refused", { reason: probe.reason });
      return { mode: "unavailable", reason: probe.reason };
    }
    this.host.logger.warn("bubblewrap cannot run here: host processes run WITHOUT a sandbox (as the daemon's user; see docs/processes.md)", { reason: probe.reason });
    return { mode: "none" };
  }

  /** The checks and resolution every start goes through: manifest, capability, profile allow-list, paths, env. */
  async prepare(call: HostCall, argv: string[], options: LaunchOptions): Promise<Prepared> {
    const env = checkEnv(options.env, call.call);
    const { run, principal } = call;
    await call.permit({
      kind: "host_process",
      target: commandLine(argv),
      allowedByManifest: argvCovered(run.record.manifest.capabilities.host_process, argv),
      capability: CAPSULE_HOST_CAPABILITIES.process,
    });
    const profile = await this.host.principals.profile(principal);
    if (profile.process.allow.length > 0 && !argvCovered(profile.process.allow, argv)) {
      const detail = `principal ${principal}'s [process] allow does not cover ${JSON.stringify(argv[0])}`;
      this.host.audit.capsule("denied", run.record.name, {
        call: call.call, principal, capability: CAPSULE_HOST_CAPABILITIES.process, manifest: "host_process", target: commandLine(argv), detail,
      });
      throw new AstridError("ASTRID_ERR_PERMISSION_DENIED", `${run.record.name}: ${call.call} of ${JSON.stringify(commandLine(argv, 200))}: ${detail}`);
    }
    const sandbox = await this.sandbox();
    if (sandbox.mode === "unavailable") {
      throw new AstridError("ASTRID_ERR_PROCESS_START_FAILED", `ASTRID_PROCESS_SANDBOX=bwrap, but bubblewrap cannot run here (${sandbox.reason}); install bubblewrap or set ASTRID_PROCESS_SANDBOX=auto`);
    }
    const executable = await resolveExecutable(argv[0]!);
    const cwd = await resolveCwd(options.cwd, this.host.workspace);
    const quotas = profile.quotas;
    const stdinPart = {
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
      ...(options.keep_stdin_open ? { keepStdinOpen: true } : {}),
      ...(options.outputBytes !== undefined ? { outputBytes: options.outputBytes } : {}),
    };
    if (sandbox.mode === "bwrap") {
      if (isWithin(executable, this.host.home.root)) {
        throw new AstridError("ASTRID_ERR_PROCESS_START_FAILED", `${executable} lies under $ASTRID_HOME, which sandboxed processes cannot see`);
      }
      const workspace = await fs.realpath(this.host.workspace);
      const args = bwrapArgv({ layout: sandbox.layout, workspace, astridHome: this.host.home.root, cwd, executable, args: argv.slice(1) });
      return { argv, mode: "bwrap", quotas, spec: { file: sandbox.bwrap, args, cwd, env: { ...processEnv("/tmp"), ...env }, sandboxed: true, ...stdinPart } };
    }
    // Unsandboxed, HOME is the principal's scratch directory (the VFS's /tmp/ for it).
    const scratch = path.join(this.host.home.principalHome(principal), ".local", "tmp");
    await fs.mkdir(scratch, { recursive: true, mode: 0o700 });
    return { argv, mode: "none", quotas, spec: { file: executable, args: argv.slice(1), cwd, env: { ...processEnv(scratch), ...env }, ...stdinPart } };
  }

  private async run(call: HostCall, argv: string[], options: z.output<typeof RunOptions>) {
    const prepared = await this.prepare(call, argv, options);
    const timeoutMs = Math.min(options.timeout_ms ?? DEFAULT_RUN_TIMEOUT_MS, MAX_RUN_TIMEOUT_MS, prepared.quotas.max_timeout_secs * 1000);
    const slot = this.reserve(call, prepared, false);
    const proc = await this.start(call, prepared, "run", () => this.table.release(call.run, slot));
    this.table.addForeground(call.run, slot, proc);
    let timedOut = false;
    const deadline = setTimeout(() => {
      timedOut = true;
      proc.stop(`timeout after ${timeoutMs} ms`, STOP_GRACE_MS);
    }, timeoutMs);
    try {
      await proc.finished;
    } finally {
      clearTimeout(deadline);
    }
    this.audit(call, prepared, "run", proc);
    return {
      exit_code: proc.exitCode,
      signal: proc.signal,
      stdout: proc.stdout.text(),
      stderr: proc.stderr.text(),
      stdout_truncated: proc.stdout.truncated,
      stderr_truncated: proc.stderr.truncated,
      timed_out: timedOut,
      duration_ms: proc.durationMs,
    };
  }

  private async spawn(call: HostCall, argv: string[], options: z.output<typeof SpawnOptions>) {
    const prepared = await this.prepare(call, argv, options);
    const slot = this.reserve(call, prepared, true);
    const proc = await this.start(call, prepared, "spawn", () => this.table.release(call.run, slot));
    const entry = this.table.addBackground(call.run, slot, proc, argv);
    // A guest waiting on it (a pollable, `wait`) wakes when it prints or exits.
    proc.onActivity(() => call.run.posted?.());
    this.audit(call, prepared, "spawn", proc, entry.id);
    void proc.finished.then(() => this.audit(call, prepared, "exit", proc, entry.id));
    return { id: entry.id, pid: proc.pid };
  }

  /** A background process of this run, or a persistent one of this capsule and principal; else ASTRID_ERR_NOT_FOUND. */
  find(call: HostCall, id: string): ManagedProcess {
    const proc = this.table.get(call.run, id)?.proc ?? this.persistent.touch(call, id)?.proc;
    if (!proc) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${call.call}: no background process ${JSON.stringify(id.slice(0, 64))} in this capsule (ids come from process.spawn and process.spawn_persistent)`);
    return proc;
  }

  /** What a waiting guest looks at: running or not, how far each stream got, whether stdin is open. No text. */
  private state(call: HostCall, id: string) {
    const proc = this.find(call, id);
    return {
      running: proc.running,
      exit_code: proc.exitCode,
      signal: proc.signal,
      pid: proc.pid,
      stdout_end: proc.stdout.end,
      stderr_end: proc.stderr.end,
      stdin_open: proc.stdinWritable,
    };
  }

  private async writeStdin(call: HostCall, id: string, data: string, encoding: "utf8" | "base64"): Promise<number> {
    const proc = this.find(call, id);
    if (encoding === "base64" && (data.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(data))) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: data is not valid base64`);
    }
    const bytes = Buffer.from(data, encoding);
    if (bytes.length > MAX_STDIN_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: data is larger than ${MAX_STDIN_BYTES} bytes`);
    const written = await proc.writeStdin(bytes, WRITE_STDIN_TIMEOUT_MS);
    this.persistent.audited(call, id, "write_stdin", { bytes: written });
    return written;
  }

  private closeStdin(call: HostCall, id: string): boolean {
    const was = this.find(call, id).closeStdin();
    this.persistent.audited(call, id, "close_stdin", { was_open: was });
    return was;
  }

  private async signal(call: HostCall, id: string, signal: ProcessSignalName): Promise<boolean> {
    const delivered = await this.find(call, id).sendSignal(signal);
    this.persistent.audited(call, id, "signal", { signal: PROCESS_SIGNALS[signal], delivered });
    return delivered;
  }

  private logs(call: HostCall, id: string) {
    const entry = this.table.get(call.run, id);
    if (!entry) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${call.call}: no background process ${JSON.stringify(id.slice(0, 64))} in this capsule (ids come from process.spawn; exited ones are released by kill)`);
    const { proc } = entry;
    return {
      stdout: proc.stdout.text(),
      stderr: proc.stderr.text(),
      running: proc.running,
      exit_code: proc.exitCode,
      signal: proc.signal,
      stdout_truncated: proc.stdout.truncated,
      stderr_truncated: proc.stderr.truncated,
    };
  }

  /**
   * Stops a background process (SIGTERM, SIGKILL after the grace) and waits for it; false if it was not running
   * (unknown, or already exited). Its logs stay readable until newer exited processes push them out.
   */
  private async kill(call: HostCall, id: string): Promise<boolean> {
    const entry = this.table.get(call.run, id);
    if (!entry) return false;
    const wasRunning = entry.proc.running;
    if (wasRunning) {
      entry.proc.stop("process.kill", STOP_GRACE_MS);
      await entry.proc.finished;
    }
    return wasRunning;
  }

  /**
   * A place in the table, taken in the same tick as the check that the run still lives: the run may have ended
   * while the call was being checked, and its processes have been taken already (nothing would stop a new one).
   */
  reserve(call: HostCall, prepared: Prepared, background: boolean, owner: object = call.run) {
    if (call.run.ended) throw new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    return this.table.reserve(owner, call.run.record.name, call.principal, background, prepared.quotas.max_background_processes);
  }

  /** Starts a prepared process; a failure gives the slot back and is audited. */
  async start(call: HostCall, prepared: Prepared, operation: "run" | "spawn", release: () => void): Promise<ManagedProcess> {
    try {
      return await ManagedProcess.start(prepared.spec);
    } catch (err) {
      release();
      const e = err as AstridError;
      this.host.audit.process({
        capsule: call.run.record.name, principal: call.principal, operation, argv: auditedArgv(prepared.argv), sandbox: prepared.mode,
        error: e.message, code: e.code,
      });
      throw err;
    }
  }

  private audit(call: HostCall, prepared: Prepared, operation: "run" | "spawn" | "exit", proc: ManagedProcess, id?: string): void {
    const ended = operation !== "spawn";
    this.host.audit.process({
      capsule: call.run.record.name,
      principal: call.principal,
      operation,
      argv: auditedArgv(prepared.argv),
      sandbox: prepared.mode,
      pid: proc.pid,
      ...(id !== undefined ? { id } : {}),
      ...(ended ? { exit_code: proc.exitCode, signal: proc.signal, duration_ms: proc.durationMs ?? 0 } : {}),
      ...(ended && proc.stopReason !== null ? { stop_reason: proc.stopReason } : {}),
    });
  }

  stopInBackground(proc: ManagedProcess, reason: string): void {
    this.stopping.add(proc);
    proc.stop(reason, STOP_GRACE_MS);
    void proc.finished.then(() => this.stopping.delete(proc));
  }
}
