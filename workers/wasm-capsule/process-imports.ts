/**
 * `astrid:process/host@1.0.0`: host commands through the kernel's `process.*` calls (the manifest's `host_process`,
 * the principal's `self:process:run`, the daemon's sandbox). `spawn` runs to completion; `spawn-background` hands
 * the guest a `process-handle` whose reads, waits and kill are calls on the kernel's process id, and which stops
 * the process when the guest drops it.
 */
import { constants as osConstants } from "node:os";
import { check, DENIED, DISPOSE, fail, utf8Text } from "./guest-failure";
import type { GuestHost } from "./guest-host";

const PROCESS_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-input",
  ASTRID_ERR_VFS_PATH_INVALID: "invalid-input",
  ASTRID_ERR_VFS_PATH_ESCAPE: "boundary-escape",
  ASTRID_ERR_PROCESS_LIMIT: "quota",
  ASTRID_ERR_CAPSULE_UNAVAILABLE: "cancelled",
};
/** A background process the kernel no longer knows (stopped with the capsule's run) reads as closed. */
const HANDLE_ERRORS = { ...PROCESS_ERRORS, ASTRID_ERR_NOT_FOUND: "closed" };

/** The longest one `wait` blocks (the guest may wait again). */
const MAX_WAIT_MS = 60_000;
/** Between two looks at a background process a `wait` makes. */
const WAIT_POLL_MS = 100;

/** A kernel process's end as `exit-info`: the exit code, or the signal's number. */
function exitInfo(raw: { exit_code: number | null; signal: string | null }) {
  const signal = raw.signal === null ? undefined : (osConstants.signals as Record<string, number>)[raw.signal];
  return { exitCode: raw.exit_code ?? undefined, signal };
}

/** The package's functions and its `ProcessHandle` resource, over `host`'s blocking calls. */
export function processImports(host: GuestHost): Record<string, unknown> {
type SpawnRequest = { cmd: string; args: string[]; stdin?: Uint8Array; env: Array<{ key: string; value: string }>; cwd?: string };
type KernelLogs = { stdout: string; stderr: string; running: boolean; exit_code: number | null; signal: string | null };
/** The kernel's argv and options for a spawn request (the environment is the daemon's: a request may not set one). */
const launch = (request: SpawnRequest, background: boolean) => {
  if (request.env.length > 0) return fail("unknown", "host processes get the daemon's fixed environment here: pass configuration as arguments or stdin");
  if (background && request.stdin !== undefined) return fail("unknown", "background processes start with no stdin here: pass input to spawn");
  const options = {
    ...(request.cwd !== undefined ? { cwd: request.cwd } : {}),
    ...(request.stdin !== undefined ? { stdin: utf8Text(request.stdin, "invalid-input") } : {}),
  };
  return [[request.cmd, ...request.args], options] as const;
};

/** A background process the kernel runs for this capsule; killed when the guest drops it. */
class ProcessHandle {
  #killed = false;

  constructor(private readonly id: string, private readonly pid: number) {}

  #logs(): KernelLogs {
    return check(host.call("process.logs", this.id), HANDLE_ERRORS) as KernelLogs;
  }

  readLogs() {
    const logs = this.#logs();
    return { stdout: logs.stdout, stderr: logs.stderr, running: logs.running, exit: logs.running ? undefined : exitInfo(logs) };
  }

  kill() {
    const killed = check(host.call("process.kill", this.id), HANDLE_ERRORS) === true;
    this.#killed = true;
    const logs = this.#logs();
    return { killed, exit: logs.running ? undefined : exitInfo(logs), stdout: logs.stdout, stderr: logs.stderr };
  }

  /** Looks every WAIT_POLL_MS until the process ended, for at most `timeoutMs` (and MAX_WAIT_MS). */
  #ended(timeoutMs: bigint | undefined): KernelLogs {
    const limit = timeoutMs === undefined || timeoutMs > BigInt(MAX_WAIT_MS) ? MAX_WAIT_MS : Number(timeoutMs);
    const deadline = performance.now() + limit;
    for (;;) {
      const logs = this.#logs();
      if (!logs.running) return logs;
      const left = deadline - performance.now();
      if (left <= 0) return fail("wait-timeout");
      host.sleep(Math.min(WAIT_POLL_MS, left));
    }
  }

  wait(timeoutMs: bigint | undefined) {
    return exitInfo(this.#ended(timeoutMs));
  }

  waitWithOutput(timeoutMs: bigint | undefined) {
    const logs = this.#ended(timeoutMs);
    return { stdout: logs.stdout, stderr: logs.stderr, exit: exitInfo(logs) };
  }

  osPid(): number {
    return this.pid;
  }

  [DISPOSE](): void {
    if (this.#killed) return;
    this.#killed = true;
    const result = host.call("process.kill", this.id);
    if (!result.ok && result.code !== "ASTRID_ERR_NOT_FOUND") host.log("warn", `a dropped process handle could not be stopped: ${result.message}`);
  }
}

return {
  ProcessHandle,
  spawn(request: SpawnRequest) {
    const [argv, options] = launch(request, false);
    const result = check(host.call("process.run", argv, options), PROCESS_ERRORS) as KernelLogs;
    return { stdout: result.stdout, stderr: result.stderr, exit: exitInfo(result) };
  },
  spawnBackground(request: SpawnRequest) {
    const [argv, options] = launch(request, true);
    const started = check(host.call("process.spawn", argv, options), PROCESS_ERRORS) as { id: string; pid: number };
    return new ProcessHandle(started.id, started.pid);
  },
};
}
