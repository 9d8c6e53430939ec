/**
 * The host-call namespaces of the `@astrid-os/sdk` surface (`kv`, `fs`, `process`, `env`, `time`, `runtime`,
 * `log`, `elicit`, `approval`, and the ones this daemon cannot offer; `http` has its own file), each mapped onto
 * the gated call of the capsule's own API. The reference's calls block the WASM guest; here every call that reaches
 * the kernel returns a promise (`await` it — awaiting the reference's synchronous values works too, so one source
 * serves both). Calls that are local stay synchronous: `log`, `env`, `time` (but `sleepMs`), `runtime.caller`.
 */
import { randomBytes as cryptoRandomBytes } from "node:crypto";
import { constants } from "node:os";
import type { FileStat, PersistentInfo, ProcessLogs as HostProcessLogs, ProcessSignal } from "./sdk";
import { hostCall, jsonText, parseJson, SysError, unsupported } from "./astrid-os-sdk-errors";
import { capabilitiesModule, identityModule, uplinkModule } from "./astrid-os-sdk-identity";
import type { SdkContext } from "./astrid-os-sdk-ipc";
import { netModule } from "./astrid-os-sdk-net";

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/** The reference's cap on one `randomBytes` call, and on `listKeysPage`'s page. */
const MAX_RANDOM_BYTES = 4096;
const MAX_PAGE_KEYS = 1024;
/** The reference's cap on one sleep. */
const MAX_SLEEP_MS = 60_000;

/** Bytes the capsule may keep (never a Node `Buffer`, which would hand it Node's API). */
function bytesOf(base64: string): Uint8Array {
  return new Uint8Array(Buffer.from(base64, "base64"));
}

function base64Of(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

/** The daemon keeps KV values and HTTP bodies as text: bytes must be UTF-8 to round-trip. */
export function textOf(label: string, bytes: Uint8Array): string {
  try {
    return strictDecoder.decode(bytes);
  } catch {
    throw new SysError("HostError", `${label}: values are stored as UTF-8 text here; these bytes are not`, { code: "invalid-input" });
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

/** The reference's `workspace://` scheme is the daemon's `cwd://`. */
function vfsPath(path: string): string {
  return String(path).replace(/^workspace:\/\//, "cwd://");
}

/** `log`, `env`, `time`, `runtime` — the calls that need little or nothing from the kernel. */
export function localModules(ctx: SdkContext) {
  const format = (value: unknown): string => {
    if (typeof value === "string") return value;
    if (value instanceof Error) return value.stack ?? value.message;
    try {
      return JSON.stringify(value) ?? String(value);
    } catch {
      return String(value);
    }
  };
  const log = {
    trace: (message: unknown) => ctx.log("debug", format(message)),
    debug: (message: unknown) => ctx.log("debug", format(message)),
    info: (message: unknown) => ctx.log("info", format(message)),
    warn: (message: unknown) => ctx.log("warn", format(message)),
    error: (message: unknown) => ctx.log("error", format(message)),
  };
  const CONFIG_SOCKET_PATH = "ASTRID_SOCKET_PATH";
  const tryGet = (key: string): string | undefined => (Object.hasOwn(ctx.env, key) ? ctx.env[key] : undefined);
  const env = {
    CONFIG_SOCKET_PATH,
    get: (key: string): string => tryGet(key) ?? "",
    tryGet,
    getBytes: (key: string): Uint8Array => encoder.encode(tryGet(key) ?? ""),
  };
  const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.min(Math.max(0, ms), MAX_SLEEP_MS)));
  const time = {
    now: (): Date => new Date(),
    nowMs: (): bigint => BigInt(Date.now()),
    monotonicNs: (): bigint => process.hrtime.bigint(),
    /** Waits `ms` (at most 60 s); a promise here, where the reference blocks. */
    sleepMs: (ms: number): Promise<void> => sleep(Number(ms)),
    sleepNs: (ns: bigint): Promise<void> => sleep(Number(BigInt(ns) / 1_000_000n)),
  };
  const runtime = {
    signalReady: (): void => ctx.signalReady(),
    /** The message the running handler acts on; outside one (a tool call, `@run`), an empty context. */
    caller: (): { sourceId: string; principal: string | undefined; timestamp: string } => {
      const current = ctx.caller();
      return { sourceId: current?.sourceId ?? "", principal: current?.principal, timestamp: new Date().toISOString() };
    },
    randomBytes: (length: number): Uint8Array => {
      if (!(Number(length) >= 0 && Number(length) <= MAX_RANDOM_BYTES)) {
        throw new SysError("HostError", `runtime.randomBytes(${length}): at most ${MAX_RANDOM_BYTES} bytes per call`, { code: "too-large" });
      }
      return new Uint8Array(cryptoRandomBytes(Number(length)));
    },
    /** The capsule's own socket (`net.bindUnix`), for a `net_bind` capsule; for others this throws like an unset key. */
    socketPath: (): string => {
      const value = env.get(CONFIG_SOCKET_PATH);
      if (value === "") throw SysError.api("ASTRID_SOCKET_PATH config key is empty");
      return value;
    },
  };
  return { log, env, time, runtime };
}

/** `kv`: JSON values under the capsule's (principal-scoped) KV, the keys checked against the manifest's `kv`. */
export function kvModule(ctx: SdkContext) {
  const { kv } = ctx.api;
  // `cas` compares and sets without another handler of this capsule writing the key in between (only this worker
  // writes the capsule's scope).
  const locks = new Map<string, Promise<unknown>>();
  const exclusive = <T>(key: string, run: () => Promise<T>): Promise<T> => {
    const next = (locks.get(key) ?? Promise.resolve()).then(run, run);
    const settled = next.catch(() => undefined);
    locks.set(key, settled);
    void settled.then(() => locks.get(key) === settled && locks.delete(key));
    return next;
  };
  const getText = (label: string, key: string) => hostCall(label, () => kv.get(String(key)));
  /** Sets the text `value()` makes (a JSON or UTF-8 failure rejects like a refusal). */
  const setText = (label: string, key: string, value: () => string) => {
    const done = hostCall(label, async () => kv.set(String(key), value()));
    done.catch((err: Error) => ctx.log("warn", err.message)); // see ipc.publish: the reference's set is fire-and-throw
    return done;
  };
  const listKeys = (prefix: string) => hostCall(`kv.listKeys("${prefix}")`, () => kv.list(String(prefix ?? "")));
  return {
    async getBytes(key: string): Promise<Uint8Array | undefined> {
      const value = await getText(`kv.getBytes("${key}")`, key);
      return value === null ? undefined : encoder.encode(value);
    },
    setBytes: (key: string, value: Uint8Array): Promise<void> => setText(`kv.setBytes("${key}")`, key, () => textOf(`kv.setBytes("${key}")`, value)),
    has: async (key: string): Promise<boolean> => (await getText(`kv.has("${key}")`, key)) !== null,
    async get<T = unknown>(key: string): Promise<T | undefined> {
      const value = await getText(`kv.get("${key}")`, key);
      if (value === null || value === "") return undefined;
      return parseJson<T>(`kv.get("${key}")`, value);
    },
    set: <T>(key: string, value: T): Promise<void> => setText(`kv.set("${key}")`, key, () => jsonText(`kv.set("${key}")`, value)),
    /** Deleting a missing key succeeds. */
    async del(key: string): Promise<void> {
      await hostCall(`kv.delete("${key}")`, () => kv.delete(String(key)));
    },
    listKeys,
    /** Keys after `cursor` in sorted order, `limit` (at most 1024; 0 = 1024) at a time. */
    async listKeysPage(prefix: string, cursor: string | undefined, limit = 0): Promise<{ keys: string[]; nextCursor: string | undefined }> {
      const size = limit > 0 ? Math.min(limit, MAX_PAGE_KEYS) : MAX_PAGE_KEYS;
      const after = (await listKeys(prefix)).sort().filter((k) => cursor === undefined || k > cursor);
      const keys = after.slice(0, size);
      return { keys, nextCursor: after.length > size ? keys[keys.length - 1] : undefined };
    },
    /** Deletes every key under `prefix` (the manifest's `kv` must cover the whole prefix); returns how many. */
    async clearPrefix(prefix: string): Promise<bigint> {
      let removed = 0n;
      for (const key of await listKeys(prefix)) {
        if (await hostCall(`kv.clearPrefix("${prefix}")`, () => kv.delete(key))) removed++;
      }
      return removed;
    },
    /** Writes `newValue` if the key holds `expected` (`undefined`: is absent); false when it did not. */
    cas: (key: string, expected: Uint8Array | undefined, newValue: Uint8Array): Promise<boolean> =>
      exclusive(String(key), async () => {
        const current = await getText(`kv.cas("${key}")`, key);
        const matches = expected === undefined ? current === null : current !== null && sameBytes(encoder.encode(current), expected);
        if (!matches) return false;
        await setText(`kv.cas("${key}")`, key, () => textOf(`kv.cas("${key}")`, newValue));
        return true;
      }),
  };
}

/** `fs.stat`'s answer, shaped like the reference's (and Node's) `Stats`. */
export class Stats {
  readonly size: bigint;
  readonly mode = 0;
  readonly kind: "regular" | "directory" | "unknown";
  readonly mtimeMs: number | undefined;
  readonly birthtimeMs: number | undefined = undefined;
  readonly atimeMs: number | undefined = undefined;

  constructor(stat: FileStat) {
    this.size = BigInt(stat.size);
    this.kind = stat.is_dir ? "directory" : stat.is_file ? "regular" : "unknown";
    this.mtimeMs = stat.mtime_ms;
  }

  isFile(): boolean {
    return this.kind === "regular";
  }

  isDirectory(): boolean {
    return this.kind === "directory";
  }

  isSymbolicLink(): boolean {
    return false;
  }

  isEmpty(): boolean {
    return this.size === 0n;
  }
}

/** A `readdir({ withFileTypes: true })` entry. */
export class Dirent {
  readonly path: string;

  constructor(readonly parentPath: string, readonly name: string) {
    this.path = parentPath.endsWith("/") ? parentPath + name : `${parentPath}/${name}`;
  }
}

const OPEN_MODES = ["read", "write", "append", "read-write"] as const;
/** The VFS's cap on one file. */
const MAX_FILE_BYTES = 10 * 1024 * 1024;

/** `fs.open`'s handle: the file's bytes, written back whole when synced or closed. */
export class FileHandle {
  #data: Uint8Array | null;
  #dirty = false;

  constructor(readonly path: string, readonly mode: (typeof OPEN_MODES)[number], data: Uint8Array, private readonly write: (data: Uint8Array) => Promise<void>) {
    this.#data = data;
  }

  #open(label: string): Uint8Array {
    if (this.#data === null) throw new SysError("HostError", `${label}: the handle of ${this.path} is closed`, { code: "closed" });
    return this.#data;
  }

  #writable(label: string): Uint8Array {
    const data = this.#open(label);
    if (this.mode === "read") throw new SysError("HostError", `${label}: ${this.path} was opened for reading`, { code: "access" });
    return data;
  }

  async readAt(offset: number | bigint, maxBytes: number): Promise<Uint8Array> {
    const data = this.#open("FileHandle.readAt");
    if (this.mode === "write" || this.mode === "append") throw new SysError("HostError", `FileHandle.readAt: ${this.path} was opened for writing`, { code: "access" });
    const start = Math.min(Number(offset), data.length);
    return data.slice(start, start + Math.max(0, Number(maxBytes)));
  }

  async writeAt(offset: number | bigint, bytes: Uint8Array | string): Promise<number> {
    let data = this.#writable("FileHandle.writeAt");
    const added = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
    const start = this.mode === "append" ? data.length : Number(offset);
    if (start + added.length > MAX_FILE_BYTES) throw new SysError("HostError", `FileHandle.writeAt: ${this.path} would pass 10 MiB`, { code: "too-large" });
    if (start + added.length > data.length) data = resizedBytes(data, start + added.length);
    data.set(added, start);
    this.#data = data;
    this.#dirty = true;
    return added.length;
  }

  async setLen(size: number | bigint): Promise<void> {
    const data = this.#writable("FileHandle.setLen");
    if (Number(size) > MAX_FILE_BYTES) throw new SysError("HostError", `FileHandle.setLen: ${this.path} would pass 10 MiB`, { code: "too-large" });
    this.#data = resizedBytes(data, Number(size));
    this.#dirty = true;
  }

  async syncData(): Promise<void> {
    const data = this.#open("FileHandle.syncData");
    if (!this.#dirty) return;
    await this.write(data);
    this.#dirty = false;
  }

  syncAll(): Promise<void> {
    return this.syncData();
  }

  /** The handle's size; its other fields as the file had them when last synced. */
  async size(): Promise<bigint> {
    return BigInt(this.#open("FileHandle.size").length);
  }

  /** Writes back what changed, then closes; idempotent. */
  async close(): Promise<void> {
    if (this.#data === null) return;
    await this.syncData();
    this.#data = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

function resizedBytes(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(size >= bytes.length ? bytes : bytes.subarray(0, size));
  return out;
}

/** `fs`: the daemon's VFS (`cwd://` — also spelled `workspace://` —, `home://`, `/tmp/`), `fs_read`/`fs_write` checked. */
export function fsModule(ctx: SdkContext) {
  const { fs } = ctx.api;
  const call = <T>(label: string, path: string, run: (p: string) => Promise<T>) => hostCall(`${label}("${path}")`, () => run(vfsPath(path)));
  const readBytes = async (label: string, path: string) => bytesOf(await call(label, path, (p) => fs.read(p, "base64")));
  const writeBytes = (label: string, path: string, data: string | Uint8Array) =>
    call(label, path, (p) => (typeof data === "string" ? fs.write(p, data, "utf8") : fs.write(p, base64Of(data), "base64")));
  const readdir = async (path: string, options?: { withFileTypes?: boolean }): Promise<string[] | Dirent[]> => {
    const names = await call("fs.readdir", path, (p) => fs.readdir(p));
    return options?.withFileTypes ? names.map((n) => new Dirent(path, n)) : names;
  };
  const rm = async (path: string): Promise<void> => {
    await call("fs.rm", path, (p) => fs.unlink(p));
  };
  return {
    exists: (path: string): Promise<boolean> => call("fs.exists", path, (p) => fs.exists(p)),
    stat: async (path: string): Promise<Stats> => new Stats(await call("fs.stat", path, (p) => fs.stat(p))),
    /** The VFS resolves symlinks before it answers: the same as `stat`. */
    lstat: async (path: string): Promise<Stats> => new Stats(await call("fs.lstat", path, (p) => fs.stat(p))),
    async readFile(path: string, options?: { encoding?: "utf8" }): Promise<Uint8Array | string> {
      if (options?.encoding === "utf8") return call("fs.readFile", path, (p) => fs.read(p, "utf8"));
      return readBytes("fs.readFile", path);
    },
    readTextFile: (path: string): Promise<string> => call("fs.readTextFile", path, (p) => fs.read(p, "utf8")),
    writeFile: (path: string, data: string | Uint8Array): Promise<void> => writeBytes("fs.writeFile", path, data),
    /** Read, then write the whole file (not atomic against another writer). */
    async appendFile(path: string, data: string | Uint8Array): Promise<void> {
      const before = (await call("fs.appendFile", path, (p) => fs.exists(p))) ? await readBytes("fs.appendFile", path) : new Uint8Array();
      const added = typeof data === "string" ? encoder.encode(data) : data;
      const joined = new Uint8Array(before.length + added.length);
      joined.set(before);
      joined.set(added, before.length);
      await writeBytes("fs.appendFile", path, joined);
    },
    /** Strict like `mkdir(2)`: an existing path is `already-exists`. */
    async mkdir(path: string): Promise<void> {
      if (await call("fs.mkdir", path, (p) => fs.exists(p))) throw new SysError("HostError", `fs.mkdir("${path}"): already exists`, { code: "already-exists" });
      await call("fs.mkdir", path, (p) => fs.mkdir(p));
    },
    async mkdirAll(path: string): Promise<void> {
      await call("fs.mkdirAll", path, (p) => fs.mkdir(p));
    },
    rm,
    unlink: rm,
    async copy(src: string, dst: string): Promise<void> {
      await writeBytes("fs.copy", dst, await readBytes("fs.copy", src));
    },
    /** Copy, then remove the source. */
    async rename(src: string, dst: string): Promise<void> {
      await writeBytes("fs.rename", dst, await readBytes("fs.rename", src));
      await rm(src);
    },
    readdir,
    async opendir(path: string): Promise<AsyncIterableIterator<Dirent>> {
      const entries = (await readdir(path, { withFileTypes: true })) as Dirent[];
      return (async function* () {
        yield* entries;
      })();
    },
    /**
     * A handle on a whole file: read at open (`write` truncates, creating the file; `append` and `read-write` create
     * it when missing), written back at `syncData`/`syncAll`/`close`. At most 10 MiB, like every VFS file.
     */
    async open(path: string, mode: "read" | "write" | "append" | "read-write" = "read"): Promise<FileHandle> {
      if (!OPEN_MODES.includes(mode)) throw SysError.api(`fs.open: mode must be one of ${OPEN_MODES.join(", ")}`);
      const write = (data: Uint8Array) => writeBytes("fs.FileHandle", path, data);
      if (mode === "read") return new FileHandle(path, mode, await readBytes("fs.open", path), write);
      if (mode === "write" || !(await call("fs.open", path, (p) => fs.exists(p)))) {
        await writeBytes("fs.open", path, new Uint8Array());
        return new FileHandle(path, mode, new Uint8Array(), write);
      }
      return new FileHandle(path, mode, await readBytes("fs.open", path), write);
    },
    /** Returns how many entries (files, links, directories) the directory held. */
    removeDirAll: (path: string): Promise<number> => call("fs.removeDirAll", path, (p) => fs.removeDirAll(p)),
    /** A VFS path (`cwd://…`, `home://…`, `/tmp/…`), never a host path: for display and equality only. */
    canonicalize: (path: string): Promise<string> => call("fs.canonicalize", path, (p) => fs.canonicalize(p)),
    readLink: (path: string): Promise<string> => call("fs.readLink", path, (p) => fs.readLink(p)),
    async hardLink(src: string, linkPath: string): Promise<void> {
      await call("fs.hardLink", src, (p) => fs.hardLink(p, vfsPath(linkPath)));
    },
  };
}

/** A signal name as the reference's number (`SIGKILL` → 9). */
function signalNumber(signal: string | null): number | undefined {
  return signal === null ? undefined : (constants.signals as Record<string, number>)[signal];
}

/** `process`: host commands checked against `host_process` (argv, never a shell), sandboxed by the daemon. */
export function processModule(ctx: SdkContext): Record<string, unknown> {
  const { process: proc } = ctx.api;
  type Options = { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array };
  const optionsOf = (call: string, options: Options | undefined) => ({
    ...(options?.cwd !== undefined ? { cwd: vfsPath(options.cwd) } : {}),
    ...(options?.env !== undefined ? { env: options.env } : {}),
    ...(options?.stdin !== undefined ? { stdin: textOf(call, options.stdin) } : {}),
  });
  const logsOf = (logs: HostProcessLogs) => ({ stdout: logs.stdout, stderr: logs.stderr, running: logs.running, exitCode: logs.exit_code ?? undefined, signal: signalNumber(logs.signal) });
  const exitOf = (raw: { exit_code: number | null; signal: string | null }) => ({ exitCode: raw.exit_code ?? undefined, signal: signalNumber(raw.signal) });
  /** A persistent id's call: the daemon's not-found is the WIT's `no-such-process` (one answer for every reason). */
  const byId = async <T>(label: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await hostCall(label, run);
    } catch (err) {
      if (err instanceof SysError && err.astridCode === "ASTRID_ERR_NOT_FOUND") {
        throw new SysError("HostError", err.message, { code: "no-such-process", astridCode: err.astridCode, cause: err });
      }
      throw err;
    }
  };
  /** Looks (every 100 ms) until the process ended; past `timeoutMs`, `wait-timeout`. */
  const ended = async (label: string, id: string, timeoutMs: number | undefined, call = hostCall) => {
    const deadline = timeoutMs === undefined ? Infinity : Date.now() + timeoutMs;
    for (;;) {
      const state = await call(label, () => proc.state(id));
      if (!state.running) return state;
      if (Date.now() >= deadline) throw new SysError("HostError", `${label}: still running after ${timeoutMs} ms`, { code: "wait-timeout" });
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  };
  const infoOf = (raw: PersistentInfo) => ({
    id: raw.id, label: raw.label, command: raw.command, osPid: raw.os_pid ?? undefined, phase: raw.phase,
    exit: raw.exit === null ? undefined : exitOf(raw.exit), ageMs: raw.age_ms, idleMs: raw.idle_ms,
    bufferedBytes: raw.buffered_bytes, bytesDropped: raw.bytes_dropped, stdinOpen: raw.stdin_open,
  });

  /** A background process; output is the last 1 MB of each stream, not what arrived since the previous read. */
  class BackgroundProcessHandle {
    #closed = false;

    constructor(readonly id: string, readonly pid: number) {}

    async readLogs() {
      return logsOf(await hostCall("process.readLogs", () => proc.logs(this.id)));
    }

    async kill() {
      const killed = await hostCall("process.kill", () => proc.kill(this.id));
      const logs = await this.readLogs();
      return { killed, stdout: logs.stdout, stderr: logs.stderr, exitCode: logs.exitCode, signal: logs.signal };
    }

    async wait(timeoutMs?: number) {
      return exitOf(await ended("process.wait", this.id, timeoutMs));
    }

    async waitWithOutput(timeoutMs?: number) {
      await ended("process.waitWithOutput", this.id, timeoutMs);
      const logs = await this.readLogs();
      return { stdout: logs.stdout, stderr: logs.stderr, exitCode: logs.exitCode, signal: logs.signal };
    }

    osPid(): number {
      return this.pid;
    }

    /** Answers the bytes taken (all of `data`). */
    async writeStdin(data: Uint8Array): Promise<number> {
      return hostCall("process.writeStdin", () => proc.writeStdin(this.id, base64Of(data), "base64"));
    }

    async closeStdin(): Promise<void> {
      await hostCall("process.closeStdin", () => proc.closeStdin(this.id));
    }

    async signal(sig: ProcessSignal): Promise<void> {
      if (!(await hostCall("process.signal", () => proc.signal(this.id, sig)))) throw new SysError("HostError", "process.signal: the process has exited", { code: "closed" });
    }

    close(): void {
      this.#closed = true;
    }

    [Symbol.dispose](): void {
      this.close();
    }
  }

  type PersistentSpawnOptions = Options & {
    label?: string; keepStdinOpen?: boolean; overflow?: "drop-oldest" | "backpressure"; logRingBytes?: number;
    maxLifetimeMs?: number; idleTimeoutMs?: number; exitRetentionMs?: number;
  };
  const notOffered = (name: string) => (): never => {
    throw unsupported(`process.${name}`, "the reference does not offer it either; use the id-keyed calls");
  };
  return {
    /** Runs `cmd args…` to completion. */
    async spawn(cmd: string, args: string[] = [], options?: Options) {
      const result = await hostCall(`process.spawn("${cmd}")`, () => proc.run([cmd, ...args], optionsOf("process.spawn", options)));
      return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exit_code ?? undefined, signal: signalNumber(result.signal) };
    },
    /** Starts `cmd args…` in the background; its stdin stays open for `writeStdin` (after `stdin`) until `closeStdin`. */
    async spawnBackground(cmd: string, args: string[] = [], options?: Options) {
      const started = await hostCall(`process.spawnBackground("${cmd}")`, () => proc.spawn([cmd, ...args], { ...optionsOf("process.spawnBackground", options), keep_stdin_open: true }));
      return new BackgroundProcessHandle(started.id, started.pid);
    },
    /** Starts a persistent process; answers its id (this capsule and principal only). */
    async spawnPersistent(cmd: string, args: string[] = [], options?: PersistentSpawnOptions): Promise<string> {
      const o = options ?? {};
      const started = await hostCall(`process.spawnPersistent("${cmd}")`, () => proc.spawnPersistent([cmd, ...args], {
        ...optionsOf("process.spawnPersistent", o),
        ...(o.label !== undefined ? { label: o.label } : {}),
        ...(o.keepStdinOpen !== undefined ? { keep_stdin_open: o.keepStdinOpen } : {}),
        ...(o.overflow !== undefined ? { overflow: o.overflow } : {}),
        ...(o.logRingBytes !== undefined ? { log_ring_bytes: o.logRingBytes } : {}),
        ...(o.maxLifetimeMs !== undefined ? { max_lifetime_ms: o.maxLifetimeMs } : {}),
        ...(o.idleTimeoutMs !== undefined ? { idle_timeout_ms: o.idleTimeoutMs } : {}),
        ...(o.exitRetentionMs !== undefined ? { exit_retention_ms: o.exitRetentionMs } : {}),
      }));
      return started.id;
    },
    async listProcesses(labelFilter?: string) {
      return (await hostCall("process.listProcesses", () => proc.list(labelFilter ?? null))).map(infoOf);
    },
    async status(id: string) {
      const [found] = await byId("process.status", () => proc.status([id]));
      if (!found) throw new SysError("HostError", "process.status: no persistent process with this id", { code: "no-such-process" });
      return infoOf(found);
    },
    async statusMany(ids: string[]) {
      return (await hostCall("process.statusMany", () => proc.status(ids))).map(infoOf);
    },
    async readLogs(id: string) {
      return logsOf(await byId("process.readLogs", () => proc.drain(id)));
    },
    async readSince(id: string, stream: "stdout" | "stderr", cursor: { token?: string } | undefined, maxBytes: number) {
      const chunk = await byId("process.readSince", () => proc.readSince(id, stream, cursor?.token ?? null, maxBytes));
      return { data: bytesOf(chunk.data), next: { token: chunk.next }, bytesDropped: chunk.bytes_dropped, drainedEof: chunk.drained_eof };
    },
    async writeStdin(id: string, data: Uint8Array): Promise<number> {
      return byId("process.writeStdin", () => proc.writeStdin(id, base64Of(data), "base64"));
    },
    async closeStdin(id: string): Promise<void> {
      await byId("process.closeStdin", () => proc.closeStdin(id));
    },
    async signal(id: string, sig: ProcessSignal): Promise<void> {
      await byId("process.signal", () => proc.signal(id, sig));
    },
    async wait(id: string, timeoutMs: number) {
      return exitOf(await ended("process.wait", id, Math.min(timeoutMs, 60_000), byId));
    },
    async stop(id: string, graceMs?: number) {
      return exitOf(await byId("process.stop", () => proc.stop(id, graceMs ?? null)));
    },
    async releaseProcess(id: string): Promise<void> {
      await byId("process.releaseProcess", () => proc.release(id));
    },
    attach: notOffered("attach"),
    watch: notOffered("watch"),
    unwatch: notOffered("unwatch"),
    logCursorStart: () => ({ token: undefined }),
  };
}

/** `elicit`, `approval` (people), and the namespaces this daemon has no counterpart for. */
export function peopleModules(ctx: SdkContext) {
  const { elicit: ask, approval: approve } = ctx.api;
  const key = (k: string) => {
    if (String(k).trim() === "") throw SysError.api("elicit key must not be empty");
    return String(k);
  };
  const answer = async (label: string, field: Parameters<typeof ask.ask>[0]) => hostCall(label, () => ask.ask(field)) as Promise<Record<string, unknown>>;
  const value = async (label: string, field: Parameters<typeof ask.ask>[0]): Promise<string> => {
    const got = await answer(label, field);
    if (typeof got.value !== "string") throw SysError.api(`${label}: expected 'value' response`);
    return got.value;
  };
  const elicit = {
    /** Stores a secret the operator types; the capsule never receives it. */
    async secret(k: string, description: string): Promise<void> {
      const got = await answer(`elicit.secret("${k}")`, { type: "secret", key: key(k), description });
      if (got.ok !== true) throw SysError.api("elicit.secret: expected 'secret-stored' response");
    },
    hasSecret: (k: string): Promise<boolean> => hostCall(`elicit.hasSecret("${k}")`, () => ask.hasSecret(key(k))),
    text: (k: string, description: string) => value(`elicit.text("${k}")`, { type: "text", key: key(k), description }),
    textWithDefault: (k: string, description: string, defaultValue: string) =>
      value(`elicit.text("${k}")`, { type: "text", key: key(k), description, default: defaultValue }),
    async select(k: string, description: string, options: string[]): Promise<string> {
      if (!Array.isArray(options) || options.length === 0) throw SysError.api("elicit.select requires at least one option");
      const chosen = await value(`elicit.select("${k}")`, { type: "select", key: key(k), description, options });
      if (!options.includes(chosen)) throw SysError.api(`host returned value not in provided options: ${chosen.slice(0, 64)}`);
      return chosen;
    },
    async array(k: string, description: string): Promise<string[]> {
      const got = await answer(`elicit.array("${k}")`, { type: "array", key: key(k), description });
      if (!Array.isArray(got.values)) throw SysError.api("elicit.array: expected 'values' response");
      return got.values as string[];
    },
  };
  const DECISIONS: Readonly<Record<string, string>> = { approve: "approved", approve_session: "approved-session", approve_always: "approved-always" };
  const requestDecision = async (action: string, resource: string): Promise<string> => {
    const outcome = await hostCall(`approval.request("${action}")`, () => approve.request({ action: String(action), resource: String(resource) }));
    return outcome.approved ? (DECISIONS[outcome.decision] ?? "approved") : "denied";
  };
  const approval = {
    requestDecision,
    /** True for any approval; a denial or no answer in 60 s is false. */
    request: async (action: string, resource: string): Promise<boolean> => (await requestDecision(action, resource)) !== "denied",
  };
  return {
    elicit,
    approval,
    identity: identityModule(ctx),
    uplink: uplinkModule(ctx),
    capabilities: capabilitiesModule(ctx),
    net: netModule(ctx),
  };
}
