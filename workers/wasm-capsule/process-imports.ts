/**
 * `astrid:process/host@1.0.0`: host commands through the kernel's `process.*` calls (the manifest's `host_process`,
 * the principal's `self:process:run`, the daemon's sandbox). `spawn` runs to completion; `spawn-background` hands
 * the guest a `process-handle` whose reads, stdin, signals, waits and kill are calls on the kernel's process id, and
 * which stops the process when the guest drops it. `spawn-persistent` starts one the kernel keeps past this run; the
 * id-keyed functions find it again (`attach`, `watch` and `unwatch` are not offered, as in the reference). A wait or
 * a pollable sleeps on the worker's event signal, which the kernel moves when a process prints or exits.
 */
import { constants as osConstants } from "node:os";
import { check, DENIED, DISPOSE, fail, utf8Text } from "./guest-failure";
import type { GuestHost } from "./guest-host";
import { Pollable } from "./pollable";

const PROCESS_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-input",
  ASTRID_ERR_VFS_PATH_INVALID: "invalid-input",
  ASTRID_ERR_VFS_PATH_ESCAPE: "boundary-escape",
  ASTRID_ERR_PROCESS_LIMIT: "quota",
  ASTRID_ERR_PROCESS_REGISTRY_FULL: "registry-full",
  ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED: "persist-unsupported",
  ASTRID_ERR_PROCESS_STDIN_CLOSED: "closed",
  ASTRID_ERR_CAPSULE_UNAVAILABLE: "cancelled",
  ASTRID_ERR_SHUTTING_DOWN: "cancelled",
};
/** A background process the kernel no longer knows (stopped with the capsule's run) reads as closed. */
const HANDLE_ERRORS = { ...PROCESS_ERRORS, ASTRID_ERR_NOT_FOUND: "closed" };
/** A persistent id the kernel does not know for this capsule and principal: one answer for every reason. */
const ID_ERRORS = { ...PROCESS_ERRORS, ASTRID_ERR_NOT_FOUND: "no-such-process" };

/** The longest one `wait` blocks (the guest may wait again). */
const MAX_WAIT_MS = 60_000;
/**
 * The longest a waiting guest sleeps between two looks. The kernel wakes it when the process prints or exits, so this
 * is only the backstop for a wake that came between a look and the sleep.
 */
const LOOK_MS = 5000;
/** Largest `write-stdin` (and spawn `stdin`). */
const MAX_STDIN_BYTES = 1024 * 1024;

/** A kernel process's end as `exit-info`: the exit code, or the signal's number. */
function exitInfo(raw: { exit_code: number | null; signal: string | null }) {
  const signal = raw.signal === null ? undefined : (osConstants.signals as Record<string, number>)[raw.signal];
  return { exitCode: raw.exit_code ?? undefined, signal };
}

/** A u64 from the guest as a number of milliseconds the kernel takes (past 2^53: the largest it takes). */
const ms = (value: bigint | undefined) => (value === undefined ? undefined : Number(value > BigInt(Number.MAX_SAFE_INTEGER) ? BigInt(Number.MAX_SAFE_INTEGER) : value));

type SpawnRequest = {
  cmd: string;
  args: string[];
  stdin?: Uint8Array;
  env: Array<{ key: string; value: string }>;
  cwd?: string;
  fileInjections?: unknown[];
  label?: string;
  keepStdinOpen?: boolean;
  overflow?: "drop-oldest" | "backpressure";
  logRingBytes?: number;
  maxLifetimeMs?: bigint;
  idleTimeoutMs?: bigint;
  exitRetentionMs?: bigint;
};
type KernelState = { running: boolean; exit_code: number | null; signal: string | null; pid: number; stdout_end: number; stderr_end: number; stdin_open: boolean };
type KernelLogs = { stdout: string; stderr: string; running: boolean; exit_code: number | null; signal: string | null };
type KernelInfo = {
  id: string; label: string; command: string; os_pid: number | null; phase: "running" | "exited"; exit: { exit_code: number | null; signal: string | null } | null;
  age_ms: number; idle_ms: number; buffered_bytes: number; bytes_dropped: number; stdin_open: boolean;
};

/** The package's functions and its `ProcessHandle` resource, over `host`'s blocking calls. */
export function processImports(host: GuestHost): Record<string, unknown> {
/** The kernel's argv and options for a spawn request; `persistent` adds the persistent tier's fields. */
const launch = (request: SpawnRequest, tier: "run" | "background" | "persistent") => {
  if ((request.fileInjections?.length ?? 0) > 0) return fail("unknown", "file injections are not supported by this host");
  const env: Record<string, string> = {};
  for (const { key, value } of request.env) {
    if (Object.prototype.hasOwnProperty.call(env, key)) return fail("invalid-input");
    env[key] = value;
  }
  if (request.stdin !== undefined && request.stdin.length > MAX_STDIN_BYTES) return fail("too-large");
  const options: Record<string, unknown> = {
    ...(request.cwd !== undefined ? { cwd: request.cwd } : {}),
    ...(request.env.length > 0 ? { env } : {}),
    ...(request.stdin !== undefined ? { stdin: utf8Text(request.stdin, "invalid-input") } : {}),
  };
  // A background process keeps its stdin open for write-stdin (`keep-stdin-open` is the persistent tier's field).
  if (tier === "background") options.keep_stdin_open = true;
  if (tier === "persistent") {
    if (request.idleTimeoutMs === 0n) return fail("invalid-input");
    Object.assign(options, {
      ...(request.label !== undefined ? { label: request.label } : {}),
      ...(request.keepStdinOpen !== undefined ? { keep_stdin_open: request.keepStdinOpen } : {}),
      ...(request.overflow !== undefined ? { overflow: request.overflow } : {}),
      ...(request.logRingBytes !== undefined ? { log_ring_bytes: Math.max(1, request.logRingBytes) } : {}),
      ...(request.maxLifetimeMs !== undefined ? { max_lifetime_ms: Math.max(1, ms(request.maxLifetimeMs)!) } : {}),
      ...(request.idleTimeoutMs !== undefined ? { idle_timeout_ms: ms(request.idleTimeoutMs) } : {}),
      ...(request.exitRetentionMs !== undefined ? { exit_retention_ms: ms(request.exitRetentionMs) } : {}),
    });
  }
  return [[request.cmd, ...request.args], options] as const;
};

const stateOf = (id: string, errors: Record<string, string>) => check(host.call("process.state", id), errors) as KernelState;

/** Looks until the process ended, sleeping on the event signal between looks, for at most `timeoutMs` (and MAX_WAIT_MS). */
const ended = (id: string, errors: Record<string, string>, timeoutMs: number | undefined): KernelState => {
  const limit = timeoutMs === undefined || timeoutMs > MAX_WAIT_MS ? MAX_WAIT_MS : timeoutMs;
  const deadline = performance.now() + limit;
  for (;;) {
    const state = stateOf(id, errors);
    if (!state.running) return state;
    const left = deadline - performance.now();
    if (left <= 0) return fail("wait-timeout");
    // Throws when the capsule is stopping: a guest waiting here does not outlive its run.
    host.waitEvents(Math.min(LOOK_MS, left));
  }
};

const writeStdin = (id: string, data: Uint8Array, errors: Record<string, string>): number => {
  if (data.length > MAX_STDIN_BYTES) return fail("too-large");
  return check(host.call("process.write_stdin", id, Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString("base64"), "base64"), errors) as number;
};

/** A background process the kernel runs for this capsule; killed when the guest drops it. */
class ProcessHandle {
  #killed = false;
  /** How far each stream had got at the last `read-logs` (what `subscribe-logs` waits past). */
  #seen = 0;

  constructor(private readonly id: string, private readonly pid: number) {}

  #logs(): KernelLogs {
    return check(host.call("process.logs", this.id), HANDLE_ERRORS) as KernelLogs;
  }

  readLogs() {
    const state = stateOf(this.id, HANDLE_ERRORS);
    const logs = this.#logs();
    this.#seen = state.stdout_end + state.stderr_end;
    return { stdout: logs.stdout, stderr: logs.stderr, running: logs.running, exit: logs.running ? undefined : exitInfo(logs) };
  }

  writeStdin(data: Uint8Array): number {
    return writeStdin(this.id, data, HANDLE_ERRORS);
  }

  closeStdin(): void {
    check(host.call("process.close_stdin", this.id), HANDLE_ERRORS);
  }

  signal(sig: string): void {
    // Not delivered: the process has exited (or its sandbox is already gone).
    if (check(host.call("process.signal", this.id, sig), HANDLE_ERRORS) !== true) fail("closed");
  }

  kill() {
    const killed = check(host.call("process.kill", this.id), HANDLE_ERRORS) === true;
    this.#killed = true;
    const logs = this.#logs();
    return { killed, exit: logs.running ? undefined : exitInfo(logs), stdout: logs.stdout, stderr: logs.stderr };
  }

  wait(timeoutMs: bigint | undefined) {
    return exitInfo(ended(this.id, HANDLE_ERRORS, ms(timeoutMs)));
  }

  waitWithOutput(timeoutMs: bigint | undefined) {
    ended(this.id, HANDLE_ERRORS, ms(timeoutMs));
    const logs = this.#logs();
    return { stdout: logs.stdout, stderr: logs.stderr, exit: exitInfo(logs) };
  }

  osPid(): number {
    if (!stateOf(this.id, HANDLE_ERRORS).running) return fail("closed");
    return this.pid;
  }

  /** Ready once the process exited (or the kernel no longer has it: a wait would not end otherwise). */
  subscribeExit(): Pollable {
    return new Pollable(host, () => {
      const result = host.call("process.state", this.id);
      return !result.ok || !(result.value as KernelState).running;
    }, LOOK_MS);
  }

  /** Ready once output arrived that `read-logs` has not shown yet, or the process exited. */
  subscribeLogs(): Pollable {
    return new Pollable(host, () => {
      const result = host.call("process.state", this.id);
      if (!result.ok) return true;
      const state = result.value as KernelState;
      return !state.running || state.stdout_end + state.stderr_end > this.#seen;
    }, LOOK_MS);
  }

  [DISPOSE](): void {
    if (this.#killed) return;
    this.#killed = true;
    const result = host.call("process.kill", this.id);
    if (!result.ok && result.code !== "ASTRID_ERR_NOT_FOUND") host.log("warn", `a dropped process handle could not be stopped: ${result.message}`);
  }
}

const info = (raw: KernelInfo) => ({
  id: raw.id,
  label: raw.label,
  command: raw.command,
  osPid: raw.os_pid ?? undefined,
  phase: raw.phase,
  exit: raw.exit === null ? undefined : exitInfo(raw.exit),
  ageMs: BigInt(raw.age_ms),
  idleMs: BigInt(raw.idle_ms),
  bufferedBytes: BigInt(raw.buffered_bytes),
  bytesDropped: BigInt(raw.bytes_dropped),
  stdinOpen: raw.stdin_open,
  cpuMs: undefined,
  memBytesPeak: undefined,
});
const notOffered = (what: string) => (): never => fail("unknown", `${what} is not supported by this host (nor by the reference); use the id-keyed functions`);

return {
  ProcessHandle,
  spawn(request: SpawnRequest) {
    const [argv, options] = launch(request, "run");
    const result = check(host.call("process.run", argv, options), PROCESS_ERRORS) as KernelLogs;
    return { stdout: result.stdout, stderr: result.stderr, exit: exitInfo(result) };
  },
  spawnBackground(request: SpawnRequest) {
    const [argv, options] = launch(request, "background");
    const started = check(host.call("process.spawn", argv, options), PROCESS_ERRORS) as { id: string; pid: number };
    return new ProcessHandle(started.id, started.pid);
  },
  spawnPersistent(request: SpawnRequest): string {
    const [argv, options] = launch(request, "persistent");
    return (check(host.call("process.spawn_persistent", argv, options), PROCESS_ERRORS) as { id: string }).id;
  },
  attach: notOffered("attach"),
  watch: notOffered("watch"),
  unwatch: notOffered("unwatch"),
  listProcesses(labelFilter: string | undefined) {
    return (check(host.call("process.list", labelFilter ?? null), ID_ERRORS) as KernelInfo[]).map(info);
  },
  status(id: string) {
    const [found] = check(host.call("process.status", [id]), ID_ERRORS) as KernelInfo[];
    return found === undefined ? fail("no-such-process") : info(found);
  },
  statusMany(ids: string[]) {
    if (ids.length > 256) return fail("too-large");
    return (check(host.call("process.status", ids), ID_ERRORS) as KernelInfo[]).map(info);
  },
  readLogs(id: string) {
    const logs = check(host.call("process.drain", id), ID_ERRORS) as KernelLogs;
    return { stdout: logs.stdout, stderr: logs.stderr, running: logs.running, exit: logs.running ? undefined : exitInfo(logs) };
  },
  readSince(id: string, stream: "stdout" | "stderr", cursor: { token?: string }, maxBytes: number) {
    const chunk = check(host.call("process.read_since", id, stream, cursor.token ?? null, maxBytes), ID_ERRORS) as
      { data: string; next: string; bytes_dropped: number; drained_eof: boolean };
    const data = Buffer.from(chunk.data, "base64");
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), next: { token: chunk.next }, bytesDropped: BigInt(chunk.bytes_dropped), drainedEof: chunk.drained_eof };
  },
  writeStdin(id: string, data: Uint8Array) {
    return writeStdin(id, data, ID_ERRORS);
  },
  closeStdin(id: string) {
    check(host.call("process.close_stdin", id), ID_ERRORS);
  },
  signal(id: string, sig: string) {
    // Fire-and-forget: an exited process's signal goes nowhere.
    check(host.call("process.signal", id, sig), ID_ERRORS);
  },
  wait(id: string, timeoutMs: bigint) {
    return exitInfo(ended(id, ID_ERRORS, ms(timeoutMs)));
  },
  stop(id: string, graceMs: bigint | undefined) {
    return exitInfo(check(host.call("process.stop", id, ms(graceMs) ?? null), ID_ERRORS) as { exit_code: number | null; signal: string | null });
  },
  releaseProcess(id: string) {
    check(host.call("process.release", id), ID_ERRORS);
  },
};
}
