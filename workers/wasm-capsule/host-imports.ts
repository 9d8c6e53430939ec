/**
 * The astrid host packages a component imports (`astrid:{ipc,kv,sys,fs,http,process,identity,uplink,net,approval,elicit}/host@1.0.0`,
 * `astrid:io/{poll,streams,error}@1.0.0`), as jco's glue expects them: camelCase functions, resources as classes, `result` errors
 * thrown as `{ payload: <error-code variant> }`, u64 as BigInt. Every gated call is a blocking syscall the kernel
 * checks exactly as a JavaScript capsule's (manifest, principal, audit, quotas, VFS, network guard). A file handle
 * holds the whole file here (the VFS moves whole files, at most 10 MiB), so every byte still passes the same checks.
 */
import { check, DENIED, DISPOSE, fail, type Failure } from "./guest-failure";
import type { GuestHost, GuestMessage } from "./guest-host";
import { identityImports } from "./identity-imports";
import { uplinkImports } from "./uplink-imports";
import { Pollable, pollImports } from "./pollable";
import { processImports } from "./process-imports";
import { netImports } from "./net-imports";
import { streamImports } from "./stream-imports";
import { httpImports } from "./http-imports";

export type { GuestHost, GuestMessage } from "./guest-host";

const IPC_ERRORS = { ...DENIED, ASTRID_ERR_REQUEST_INVALID: "invalid-input", ASTRID_ERR_RATE_LIMITED: "rate-limited" };
const KV_ERRORS = { ASTRID_ERR_REQUEST_INVALID: "invalid-key", ASTRID_ERR_RATE_LIMITED: "quota" };
const FS_ERRORS = {
  ...DENIED,
  ASTRID_ERR_NOT_FOUND: "not-found",
  ASTRID_ERR_REQUEST_INVALID: "invalid-path",
  ASTRID_ERR_VFS_PATH_INVALID: "invalid-path",
  ASTRID_ERR_VFS_PATH_ESCAPE: "boundary-escape",
  ASTRID_ERR_VFS_PATH_PROTECTED: "capability-denied",
  ASTRID_ERR_VFS_TOO_LARGE: "too-large",
  ASTRID_ERR_STORAGE_FULL: "quota",
  ASTRID_ERR_VFS_EXISTS: "already-exists",
  ASTRID_ERR_VFS_CROSS_ROOT: "cross-vfs",
};
/** `ASTRID_ERR_VFS_WRONG_TYPE` has two cases in the WIT; which one depends on what the call expected. */
const FS_DIR_ERRORS = { ...FS_ERRORS, ASTRID_ERR_VFS_WRONG_TYPE: "not-directory" };
const FS_FILE_ERRORS = { ...FS_ERRORS, ASTRID_ERR_VFS_WRONG_TYPE: "is-directory" };
const SYS_ERRORS = { ...DENIED };

/** The largest file a handle holds (the VFS's cap on one file). */
const MAX_FILE_BYTES = 10 * 1024 * 1024;

const utf8 = new TextDecoder("utf-8", { fatal: true });
const encode = (text: string) => new TextEncoder().encode(text);

/** KV values are bytes in the WIT; this host's store keeps UTF-8 text (what JavaScript capsules write). */
function kvText(value: Uint8Array): string {
  try {
    return utf8.decode(value);
  } catch {
    return fail("unknown", "kv values must be UTF-8 text in this host");
  }
}

/** A copy of `bytes` resized to `size` (zero-filled when it grows). */
function resized(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(size);
  out.set(size >= bytes.length ? bytes : bytes.subarray(0, size));
  return out;
}

/**
 * The versioned interfaces a component imports, read from jco's glue: jco's own list of imports drops the version
 * (and its glue looks a package up by the unversioned name), but each imported function's glue names it in full
 * (`fnName = 'astrid:http/host@1.1.0#httpRequestOpts'`).
 */
export function versionedImports(glue: string): string[] {
  return [...new Set(glue.match(/astrid:[a-z][a-z0-9-]*\/[a-z][a-z0-9-]*@\d+\.\d+\.\d+/g) ?? [])];
}

/**
 * The import object for jco's `instantiate`, under both unversioned and `@1.0.0` names (and `@1.1.0` for http).
 * `imported` is what the component imports, versioned (`versionedImports`): the unversioned name jco's glue looks
 * up is given the version the component was built against.
 */
export function hostImports(host: GuestHost, imported: readonly string[] = []): Record<string, Record<string, unknown>> {
  const poll = pollImports(host);

  class Subscription {
    constructor(private readonly handle: bigint) {}
    poll() {
      return envelope(host.take(this.handle));
    }
    recv(timeoutMs: bigint) {
      const ms = Math.min(Number(timeoutMs), 60_000);
      if (!host.wait(this.handle, ms)) return fail("timeout");
      return envelope(host.take(this.handle));
    }
    subscribeReadiness() {
      return new Pollable(host, () => host.wait(this.handle, 0));
    }
    /** The guest dropped its handle (jco calls this): its queue goes; the kernel keeps the pattern (no unsubscribe). */
    [DISPOSE](): void {
      host.unsubscribe(this.handle);
    }
  }
  const envelope = (taken: { messages: GuestMessage[]; dropped: bigint }) => ({ messages: taken.messages, dropped: taken.dropped, lagged: 0n });

  const ipc = {
    Subscription,
    publish(topic: string, payload: string) {
      let value: unknown;
      try {
        value = JSON.parse(payload);
      } catch {
        return fail("invalid-input");
      }
      check(host.publish(topic, value), IPC_ERRORS);
    },
    publishAs(topic: string, payload: string, principal: string) {
      let value: unknown;
      try {
        value = JSON.parse(payload);
      } catch {
        return fail("invalid-input");
      }
      check(host.call("ipc.publish_as", topic, value, principal), IPC_ERRORS);
    },
    subscribe(pattern: string) {
      check(host.call("ipc.subscribe", pattern), { ...IPC_ERRORS, ASTRID_ERR_REQUEST_INVALID: "invalid-input" });
      return new Subscription(host.subscribe(pattern));
    },
    getInterceptorBindings: () => host.bindings(),
  };

  const kv = {
    kvGet(key: string) {
      const value = check(host.call("kv.get", key), KV_ERRORS) as string | null;
      return value === null ? undefined : encode(value);
    },
    kvSet(key: string, value: Uint8Array) {
      check(host.call("kv.set", key, kvText(value)), KV_ERRORS);
    },
    kvDelete(key: string) {
      check(host.call("kv.delete", key), KV_ERRORS);
    },
    kvListKeys: (prefix: string) => check(host.call("kv.list", prefix), KV_ERRORS) as string[],
    kvListKeysPage(prefix: string, cursor: string | undefined, limit: number) {
      const keys = (check(host.call("kv.list", prefix), KV_ERRORS) as string[]).sort();
      const start = cursor === undefined ? 0 : keys.findIndex((k) => k > cursor);
      const size = limit === 0 ? 1024 : Math.min(limit, 1024);
      const page = start < 0 ? [] : keys.slice(start, start + size);
      const more = start >= 0 && start + size < keys.length;
      return { keys: page, nextCursor: more ? page[page.length - 1] : undefined };
    },
    kvClearPrefix(prefix: string) {
      const keys = check(host.call("kv.list", prefix), KV_ERRORS) as string[];
      let deleted = 0n;
      for (const key of keys) if (check(host.call("kv.delete", key), KV_ERRORS) === true) deleted++;
      return deleted;
    },
    kvCas(key: string, expected: Uint8Array | undefined, next: Uint8Array) {
      // One guest call at a time per worker, so read-compare-write cannot interleave with this capsule's own calls.
      const current = check(host.call("kv.get", key), KV_ERRORS) as string | null;
      const matches = expected === undefined ? current === null : current !== null && current === kvText(expected);
      if (!matches) return fail("cas-mismatch");
      check(host.call("kv.set", key, kvText(next)), KV_ERRORS);
    },
  };

  const levels = { trace: "debug", debug: "debug", info: "info", warn: "warn", error: "error" } as const;
  const sys = {
    getConfig: (key: string) => (Object.hasOwn(host.env, key) ? host.env[key] : undefined),
    getCaller() {
      const caller = host.caller();
      return { principal: caller.principal, sourceId: caller.sourceId, timestamp: new Date().toISOString() };
    },
    log(level: keyof typeof levels, message: string) {
      host.log(levels[level] ?? "info", message);
    },
    signalReady: () => host.signalReady(),
    clockMs: () => BigInt(Date.now()),
    clockMonotonicNs: () => process.hrtime.bigint(),
    sleepNs(ns: bigint) {
      host.sleep(Math.min(Number(ns / 1_000_000n), 60_000));
    },
    randomBytes(length: bigint) {
      if (length > 65_536n) return fail("too-large");
      return crypto.getRandomValues(new Uint8Array(Number(length)));
    },
    checkCapsuleCapability: (request: { sourceUuid: string; capability: string }) =>
      ({ allowed: check(host.call("sys.check_capability", request.sourceUuid, request.capability), SYS_ERRORS) === true }),
    enumerateCapabilities: () => [...host.capabilities],
  };

  const stat = (raw: { size: number; is_dir: boolean; mtime_ms: number }) => ({
    size: BigInt(raw.size),
    kind: raw.is_dir ? "directory" : "regular",
    mode: 0,
    modified: { seconds: BigInt(Math.floor(raw.mtime_ms / 1000)), nanoseconds: Math.floor((raw.mtime_ms % 1000) * 1e6) },
    created: undefined,
    accessed: undefined,
  });
  const readBytes = (p: string) => new Uint8Array(Buffer.from(check(host.call("fs.read", p, "base64"), FS_ERRORS) as string, "base64"));
  const writeBytes = (p: string, content: Uint8Array) => {
    check(host.call("fs.write", p, Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString("base64"), "base64"), FS_ERRORS);
  };
  const exists = (p: string) => check(host.call("fs.exists", p), FS_ERRORS) as boolean;

  /**
   * An open file: its bytes, read at `fs-open` and written back whole at `sync-*` and when the guest drops it (a
   * failure then is logged: a drop cannot report one). Reads and writes are checked at open: a write-only handle
   * writes the empty file there, so a refused path fails the open, not a later sync.
   */
  class FileHandle {
    #data: Uint8Array | null;
    #dirty = false;

    constructor(private readonly path: string, private readonly mode: string, data: Uint8Array) {
      this.#data = data;
    }

    #open(): Uint8Array {
      return this.#data ?? fail("closed");
    }

    readAt(offset: bigint, maxBytes: number): Uint8Array {
      const data = this.#open();
      if (this.mode === "write" || this.mode === "append") return fail("access");
      const start = Number(offset > BigInt(data.length) ? BigInt(data.length) : offset);
      return data.slice(start, start + Math.min(maxBytes, MAX_FILE_BYTES));
    }

    writeAt(offset: bigint, bytes: Uint8Array): number {
      let data = this.#open();
      if (this.mode === "read") return fail("access");
      const start = this.mode === "append" ? data.length : Number(offset > BigInt(MAX_FILE_BYTES) ? BigInt(MAX_FILE_BYTES) + 1n : offset);
      const end = start + bytes.length;
      if (end > MAX_FILE_BYTES) return fail("too-large");
      if (end > data.length) data = resized(data, end);
      data.set(bytes, start);
      this.#data = data;
      this.#dirty = true;
      return bytes.length;
    }

    syncData(): void {
      const data = this.#open();
      if (!this.#dirty) return;
      writeBytes(this.path, data);
      this.#dirty = false;
    }

    syncAll(): void {
      this.syncData();
    }

    stat() {
      const data = this.#open();
      const known = this.#dirty ? stat({ size: 0, is_dir: false, mtime_ms: Date.now() }) : fsHost.fsStat(this.path);
      return { ...known, size: BigInt(data.length), kind: "regular" };
    }

    setLen(size: bigint): void {
      const data = this.#open();
      if (this.mode === "read") return fail("access");
      if (size > BigInt(MAX_FILE_BYTES)) return fail("too-large");
      this.#data = resized(data, Number(size));
      this.#dirty = true;
    }

    /** The guest dropped the handle (jco calls this): what it wrote goes to the file. */
    [DISPOSE](): void {
      try {
        if (this.#data) this.syncData();
      } catch (err) {
        host.log("warn", `a dropped file handle of ${this.path} could not be written back: ${JSON.stringify((err as Failure).payload ?? String(err))}`);
      }
      this.#data = null;
    }
  }

  const fsHost = {
    FileHandle,
    fsOpen(p: string, mode: string) {
      if (mode === "read") return new FileHandle(p, mode, readBytes(p));
      if (mode === "write" || !exists(p)) {
        writeBytes(p, new Uint8Array());
        return new FileHandle(p, mode, new Uint8Array());
      }
      return new FileHandle(p, mode, readBytes(p));
    },
    fsExists: (p: string) => check(host.call("fs.exists", p), FS_ERRORS) as boolean,
    fsMkdir(p: string) {
      check(host.call("fs.mkdir", p), FS_ERRORS);
    },
    fsMkdirAll(p: string) {
      check(host.call("fs.mkdir", p), FS_ERRORS);
    },
    fsReaddir: (p: string) => check(host.call("fs.readdir", p), FS_ERRORS) as string[],
    fsStat: (p: string) => stat(check(host.call("fs.stat", p), FS_ERRORS) as never),
    fsStatSymlink: (p: string) => stat(check(host.call("fs.stat", p), FS_ERRORS) as never),
    fsUnlink(p: string) {
      check(host.call("fs.unlink", p), FS_ERRORS);
    },
    readFile: readBytes,
    writeFile(p: string, content: Uint8Array) {
      writeBytes(p, content);
    },
    /** Read, then write the whole file (not atomic against another writer). */
    fsAppend(p: string, content: Uint8Array) {
      const before = exists(p) ? readBytes(p) : new Uint8Array();
      if (before.length + content.length > MAX_FILE_BYTES) return fail("too-large");
      const joined = resized(before, before.length + content.length);
      joined.set(content, before.length);
      writeBytes(p, joined);
    },
    fsCopy(src: string, dst: string) {
      writeBytes(dst, readBytes(src));
    },
    /** A copy, then the source removed. */
    fsRename(src: string, dst: string) {
      writeBytes(dst, readBytes(src));
      check(host.call("fs.unlink", src), FS_ERRORS);
    },
    /** Links inside are removed as links, never followed; a directory named through a link is `not-directory`. */
    fsRemoveDirAll: (p: string) => BigInt(check(host.call("fs.remove_dir_all", p), FS_DIR_ERRORS) as number),
    /** A VFS path (`cwd://…`, `home://…`, `/tmp/…`), never a host path. */
    fsCanonicalize: (p: string) => check(host.call("fs.canonicalize", p), FS_ERRORS) as string,
    fsReadLink: (p: string) => check(host.call("fs.read_link", p), FS_ERRORS) as string,
    fsHardLink(src: string, linkPath: string) {
      check(host.call("fs.hard_link", src, linkPath), FS_FILE_ERRORS);
    },
  };

  const processHost = processImports(host);
  const byteStreams = streamImports(host);
  const http = httpImports(host, byteStreams);

  const approval = {
    requestApproval(request: { action: string; targetResource: string }) {
      const outcome = check(host.call("approval.request", { action: request.action, resource: request.targetResource }), { ASTRID_ERR_REQUEST_INVALID: "invalid-input", ASTRID_ERR_TIMEOUT: "timeout" }) as { approved?: boolean; decision?: string };
      if (!outcome.approved) return { decision: "denied" };
      return { decision: outcome.decision === "approve_session" ? "approved-session" : outcome.decision === "approve_always" ? "approved-always" : "approved" };
    },
  };

  const elicit = {
    elicit(request: { kind: string; key: string; description: string; options?: string[]; defaultValue?: string }) {
      const field = {
        key: request.key,
        type: request.kind,
        description: request.description,
        ...(request.options ? { options: request.options } : {}),
        ...(request.defaultValue !== undefined ? { default: request.defaultValue } : {}),
      };
      const answer = check(host.call("elicit.ask", field), {
        ASTRID_ERR_ELICIT_NOT_ALLOWED: "not-in-lifecycle",
        ASTRID_ERR_TIMEOUT: "timeout",
        ASTRID_ERR_REQUEST_INVALID: "invalid-input",
        ASTRID_ERR_ELICIT_CANCELLED: "cancelled",
        ASTRID_ERR_NOBODY_TO_ASK: "cancelled",
      }) as {
        value?: string; values?: string[];
      };
      if (request.kind === "secret") return { tag: "secret-stored" };
      if (Array.isArray(answer.values)) return { tag: "values", val: answer.values };
      return { tag: "value", val: String(answer.value ?? "") };
    },
    hasSecret: (key: string) => check(host.call("elicit.has_secret", key), {}) as boolean,
  };

  const packages: Record<string, Record<string, unknown>> = {
    "astrid:ipc/host": ipc,
    "astrid:kv/host": kv,
    "astrid:sys/host": sys,
    "astrid:fs/host": fsHost,
    "astrid:http/host": http.v1_0,
    "astrid:process/host": processHost,
    "astrid:identity/host": identityImports(host),
    "astrid:uplink/host": uplinkImports(host),
    "astrid:net/host": netImports(host, byteStreams),
    "astrid:io/streams": byteStreams.streams,
    "astrid:io/error": byteStreams.error,
    "astrid:approval/host": approval,
    "astrid:elicit/host": elicit,
    "astrid:io/poll": poll,
  };
  // jco's glue looks imports up by the unversioned name; its types list the versioned one: provide both.
  for (const [name, value] of Object.entries(packages)) packages[`${name}@1.0.0`] = value;
  // Later versions of a package are their own objects, under their versioned name (host.ts names the unversioned
  // one after the version the component imports).
  packages["astrid:http/host@1.1.0"] = http.v1_1;
  if (imported.includes("astrid:http/host@1.1.0") && !imported.includes("astrid:http/host@1.0.0")) packages["astrid:http/host"] = http.v1_1;
  return packages;
}
