/**
 * One host process as the kernel holds it: started in its own process group (so a stop reaches whatever it
 * started), its stdout and stderr kept in ring buffers, stopped with SIGTERM and then, after a grace, SIGKILL.
 * Output is read at most OUTPUT_BYTES_PER_SEC per stream: past that the stream is paused until the second ends, so
 * a process printing as fast as it can blocks on its own writes instead of keeping the daemon's thread busy.
 */
import { spawn, type ChildProcess } from "node:child_process";
import type { Readable } from "node:stream";
import { AstridError } from "../../protocol/errors";
import { PROCESS_OUTPUT_BYTES, RingBuffer } from "./ring-buffer";

/** Most output bytes read per stream per second. */
export const OUTPUT_BYTES_PER_SEC = 32 * 1024 * 1024;
/** How long after the process exits its pipes may stay open (a leftover child holding them) before they are cut. */
const DRAIN_AFTER_EXIT_MS = 1000;

/** What to start. */
export interface LaunchSpec {
  /** The executable (absolute): the command itself, or bwrap. */
  file: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  stdin?: string;
  outputBytes?: number;
}

/** A restartable named deadline (one timer, one owner). */
class Deadline {
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly onExpire: () => void) {}
  start(ms: number): void {
    this.clear();
    this.timer = setTimeout(this.onExpire, ms);
  }
  clear(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/** A started host process. */
export class ManagedProcess {
  readonly stdout: RingBuffer;
  readonly stderr: RingBuffer;
  /** performance.now() at start. */
  readonly startedAt = performance.now();
  exitCode: number | null = null;
  signal: string | null = null;
  /** Set once the process has exited. */
  durationMs: number | null = null;
  /** Why the kernel stopped it (a timeout, a kill, the capsule's end), if it did. */
  stopReason: string | null = null;
  /** Resolves once the process has exited and its output is read (or cut). */
  readonly finished: Promise<void>;
  private readonly killLater = new Deadline(() => this.signalGroup("SIGKILL"));
  private exited = false;

  private constructor(private readonly child: ChildProcess, readonly pid: number, outputBytes: number) {
    this.stdout = new RingBuffer(outputBytes);
    this.stderr = new RingBuffer(outputBytes);
    this.read(child.stdout!, this.stdout);
    this.read(child.stderr!, this.stderr);
    this.finished = new Promise((resolve) => {
      const cut = new Deadline(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve();
      });
      child.once("exit", (code, signal) => {
        this.exited = true;
        this.exitCode = code;
        this.signal = signal;
        this.durationMs = Math.round(performance.now() - this.startedAt);
        this.killLater.clear();
        // Whatever it left behind in its group goes with it (in bwrap, its namespace dies with it anyway).
        this.signalGroup("SIGKILL", true);
        cut.start(DRAIN_AFTER_EXIT_MS);
      });
      child.once("close", () => {
        cut.clear();
        resolve();
      });
    });
  }

  /** Starts a process in a new process group; rejects with ASTRID_ERR_PROCESS_START_FAILED when it cannot start. */
  static start(spec: LaunchSpec): Promise<ManagedProcess> {
    return new Promise((resolve, reject) => {
      let child: ChildProcess;
      try {
        child = spawn(spec.file, [...spec.args], {
          cwd: spec.cwd,
          env: spec.env,
          detached: true,
          stdio: [spec.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
        });
      } catch (err) {
        reject(new AstridError("ASTRID_ERR_PROCESS_START_FAILED", `cannot start ${spec.file}: ${(err as Error).message}`, { cause: err }));
        return;
      }
      let started = false;
      // Kept for the process's life: a later 'error' (a failed kill) must not go unhandled.
      child.on("error", (err) => {
        if (!started) reject(new AstridError("ASTRID_ERR_PROCESS_START_FAILED", `cannot start ${spec.file}: ${err.message}`, { cause: err }));
      });
      child.once("spawn", () => {
        started = true;
        const proc = new ManagedProcess(child, child.pid!, spec.outputBytes ?? PROCESS_OUTPUT_BYTES);
        if (spec.stdin !== undefined) {
          // A process that exits without reading its input must not fail the call (EPIPE).
          child.stdin!.on("error", () => {});
          child.stdin!.end(spec.stdin);
        }
        resolve(proc);
      });
    });
  }

  get running(): boolean {
    return !this.exited;
  }

  /** SIGTERM to its process group now, SIGKILL after `graceMs` if it is still there. */
  stop(reason: string, graceMs: number): void {
    if (this.exited) return;
    this.stopReason ??= reason;
    this.signalGroup("SIGTERM");
    this.killLater.start(graceMs);
  }

  /** SIGKILL to its process group now. */
  destroy(reason: string): void {
    if (this.exited) return;
    this.stopReason ??= reason;
    this.signalGroup("SIGKILL");
  }

  private signalGroup(signal: NodeJS.Signals, afterExit = false): void {
    if (this.exited && !afterExit) return;
    try {
      process.kill(-this.pid, signal);
    } catch {
      // ESRCH: the group is gone already.
    }
  }

  /** Reads a stream into its buffer, at most OUTPUT_BYTES_PER_SEC (paused for the rest of the second past it). */
  private read(stream: Readable, into: RingBuffer): void {
    let windowStart = performance.now();
    let windowBytes = 0;
    const resume = new Deadline(() => stream.resume());
    stream.on("data", (chunk: Buffer) => {
      into.write(chunk);
      const now = performance.now();
      if (now - windowStart >= 1000) {
        windowStart = now;
        windowBytes = 0;
      }
      windowBytes += chunk.length;
      if (windowBytes >= OUTPUT_BYTES_PER_SEC) {
        stream.pause();
        resume.start(Math.max(1, 1000 - (now - windowStart)));
      }
    });
    stream.once("close", () => resume.clear());
    stream.on("error", () => {});
  }
}
