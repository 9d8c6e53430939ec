/**
 * One host process as the kernel holds it: started in its own process group (so a stop reaches whatever it
 * started), its stdout and stderr kept in ring buffers, stopped with SIGTERM and then, after a grace, SIGKILL.
 * Output is read at most OUTPUT_BYTES_PER_SEC per stream: past that the stream is paused until the second ends, so
 * a process printing as fast as it can blocks on its own writes instead of keeping the daemon's thread busy.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFile } from "node:fs/promises";
import type { Readable } from "node:stream";
import { AstridError } from "../../protocol/errors";
import { PROCESS_OUTPUT_BYTES, RingBuffer } from "./ring-buffer";

/** Most output bytes read per stream per second. */
export const OUTPUT_BYTES_PER_SEC = 32 * 1024 * 1024;
/** The least time between two output notifications of one process (`onActivity`). */
const NOTIFY_INTERVAL_MS = 20;
/** How long after the process exits its pipes may stay open (a leftover child holding them) before they are cut. */
const DRAIN_AFTER_EXIT_MS = 1000;

/** What to start. */
export interface LaunchSpec {
  /** The executable (absolute): the command itself, or bwrap. */
  file: string;
  args: readonly string[];
  cwd: string;
  env: Record<string, string>;
  /** Written to stdin, which is then closed (unless `keepStdinOpen`); without either, stdin is /dev/null. */
  stdin?: string | Buffer;
  /** Keep a stdin pipe open after `stdin` for `writeStdin` (a background process's). */
  keepStdinOpen?: boolean;
  outputBytes?: number;
  /** The command runs inside bubblewrap: a signal other than a stop goes to the command's group inside it. */
  sandboxed?: boolean;
}

/** Signals a capsule may send to its process (`kill` and the stop are separate). */
export const PROCESS_SIGNALS = { term: "SIGTERM", hup: "SIGHUP", usr1: "SIGUSR1", usr2: "SIGUSR2", int: "SIGINT", stop: "SIGSTOP", cont: "SIGCONT" } as const;
export type ProcessSignalName = keyof typeof PROCESS_SIGNALS;

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
  private stdinOpen: boolean;
  /** Called when output arrives and when the process exits (a waiting guest is woken by it). */
  private readonly listeners = new Set<() => void>();
  /** Streams paused because their reader asked (backpressure), not by the rate limit. */
  private readonly held = new Set<Readable>();

  private constructor(private readonly child: ChildProcess, readonly pid: number, outputBytes: number, private readonly sandboxed: boolean) {
    this.stdinOpen = child.stdin !== null;
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
        this.stdinOpen = false;
        // A kept stdin pipe goes with the process (its fd is not held until the handle is collected).
        child.stdin?.destroy();
        this.notify(true);
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
          stdio: [spec.stdin === undefined && !spec.keepStdinOpen ? "ignore" : "pipe", "pipe", "pipe"],
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
        const proc = new ManagedProcess(child, child.pid!, spec.outputBytes ?? PROCESS_OUTPUT_BYTES, spec.sandboxed === true);
        if (child.stdin) {
          // A process that exits without reading its input must not fail the call (EPIPE).
          child.stdin.on("error", () => {
            proc.stdinOpen = false;
          });
          if (spec.keepStdinOpen) {
            if (spec.stdin !== undefined) child.stdin.write(spec.stdin);
          } else {
            proc.stdinOpen = false;
            child.stdin.end(spec.stdin);
          }
        }
        resolve(proc);
      });
    });
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Whether `writeStdin` can still reach the process. */
  /** A `writeStdin` is under way. */
  private stdinBusy = false;

  get stdinWritable(): boolean {
    return this.stdinOpen && !this.exited;
  }

  /** Calls `listener` whenever output arrives or the process exits; returns its removal. */
  onActivity(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Tells the listeners, at most once per NOTIFY_INTERVAL_MS for output (a flood would otherwise wake a waiting
   * guest for every 64 KiB read); an exit is told at once.
   */
  private notify(now = false): void {
    if (!now && this.notifyLater !== undefined) return;
    if (!now && performance.now() - this.notifiedAt < NOTIFY_INTERVAL_MS) {
      this.notifyLater = setTimeout(() => this.notify(true), NOTIFY_INTERVAL_MS);
      return;
    }
    if (this.notifyLater !== undefined) clearTimeout(this.notifyLater);
    this.notifyLater = undefined;
    this.notifiedAt = performance.now();
    for (const listener of this.listeners) listener();
  }
  private notifiedAt = -Infinity;
  private notifyLater: NodeJS.Timeout | undefined;

  /**
   * Writes `data` to stdin; resolves once the pipe took all of it (a process that does not read holds the call
   * until the pipe drains, at most `timeoutMs`). ASTRID_ERR_PROCESS_STDIN_CLOSED when stdin is closed, the process
   * exited, the pipe broke on the way, or the process read too little for too long (then a prefix may have reached
   * it, and stdin is closed from then on: the stream is torn).
   */
  writeStdin(data: Buffer, timeoutMs: number): Promise<number> {
    const stdin = this.child.stdin;
    if (!stdin || !this.stdinWritable) return Promise.reject(stdinClosed());
    // One write at a time: concurrent writes to a process that does not read would each hold their bytes here.
    if (this.stdinBusy) return Promise.reject(new AstridError("ASTRID_ERR_RATE_LIMITED", "a write to this process's stdin is still under way; wait for it before the next"));
    this.stdinBusy = true;
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (err: Error | null | undefined) => {
        if (settled) return;
        settled = true;
        this.stdinBusy = false;
        deadline.clear();
        this.child.removeListener("exit", onExit);
        if (err) {
          this.stdinOpen = false;
          stdin.destroy();
          reject(stdinClosed(err.message));
        } else resolve(data.length);
      };
      const deadline = new Deadline(() => settle(new Error(`the process did not read it within ${timeoutMs} ms`)));
      // The process exiting with the write still queued: nothing will take it.
      const onExit = () => settle(new Error("the process exited"));
      this.child.once("exit", onExit);
      deadline.start(timeoutMs);
      stdin.write(data, settle);
    });
  }

  /** Closes stdin (the process reads EOF); true when it was open. */
  closeStdin(): boolean {
    const was = this.stdinOpen;
    this.stdinOpen = false;
    this.child.stdin?.end();
    return was;
  }

  /**
   * Sends `signal` to the process's group. Inside bubblewrap that is the command's group (bubblewrap does not pass
   * signals on, and its own default action would end the sandbox); false when that group cannot be found (the
   * sandbox is not up yet, or already gone).
   */
  async sendSignal(name: ProcessSignalName): Promise<boolean> {
    if (this.exited) return false;
    const signal = PROCESS_SIGNALS[name];
    const target = this.sandboxed ? await sandboxedGroup(this.pid) : this.pid;
    if (target === null || this.exited) return false;
    try {
      process.kill(-target, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** Stops reading `which` stream (its pipe fills, and the process blocks on its writes) until `release`. */
  hold(which: "stdout" | "stderr"): void {
    const stream = this.child[which];
    if (!stream || this.held.has(stream)) return;
    this.held.add(stream);
    stream.pause();
  }

  /** Reads `which` stream again after `hold`. */
  release(which: "stdout" | "stderr"): void {
    const stream = this.child[which];
    if (!stream || !this.held.delete(stream)) return;
    stream.resume();
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
    const resume = new Deadline(() => {
      if (!this.held.has(stream)) stream.resume();
    });
    stream.on("data", (chunk: Buffer) => {
      into.write(chunk);
      this.notify();
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

/** ASTRID_ERR_PROCESS_STDIN_CLOSED. */
function stdinClosed(why?: string): AstridError {
  return new AstridError("ASTRID_ERR_PROCESS_STDIN_CLOSED", why === undefined
    ? "the process's stdin is closed (closed by the capsule, never kept open, or the process exited)"
    : `the write to the process's stdin failed (${why}); stdin is closed now, and part of the data may have reached it`);
}

/**
 * The process group of the command bubblewrap runs: bubblewrap's one child (the namespace's init, which starts a
 * session of its own for the command with --new-session), read from /proc.
 */
async function sandboxedGroup(bwrapPid: number): Promise<number | null> {
  try {
    const children = (await readFile(`/proc/${bwrapPid}/task/${bwrapPid}/children`, "utf8")).trim().split(/\s+/).filter(Boolean);
    const child = Number(children[0]);
    return Number.isInteger(child) && child > 0 ? child : null;
  } catch {
    return null;
  }
}
