/**
 * The astrid host packages a component imports (`astrid:{ipc,kv,sys,fs,http,approval,elicit}/host@1.0.0`,
 * `astrid:io/poll@1.0.0`), as jco's glue expects them: camelCase functions, resources as classes, `result` errors
 * thrown as `{ payload: <error-code variant> }`, u64 as BigInt. Every gated call is a blocking syscall the kernel
 * checks exactly as a JavaScript capsule's (manifest, principal, audit, quotas, VFS, network guard).
 */
import type { SyscallResult } from "../../protocol/capsule-messages";

/** What the imports need from the worker's host. */
export interface GuestHost {
  /** A blocking syscall into the kernel. */
  call(name: string, ...args: unknown[]): SyscallResult;
  /** A publish the kernel checks without answering (ACL-allowed topics), else a blocking syscall. */
  publish(topic: string, payload: unknown): SyscallResult;
  log(level: "debug" | "info" | "warn" | "error", message: string): void;
  env: Record<string, string>;
  capabilities: string[];
  /** Who the current invocation acts for (the message it runs on). */
  caller(): { principal?: string; sourceId: string };
  /** Registers a subscription the kernel accepted; returns its handle. */
  subscribe(pattern: string): bigint;
  /** Forgets a handle's queue. */
  unsubscribe(handle: bigint): void;
  /** Messages queued for a handle, after taking in what the kernel posted meanwhile. */
  take(handle: bigint): { messages: GuestMessage[]; dropped: bigint };
  /** Waits until the handle has messages or `ms` passed (or the run ended); true when it has some. */
  wait(handle: bigint, ms: number): boolean;
  /** Sleeps until the kernel posts an event (or `ms` passed, or the run ended: then it throws). */
  waitEvents(ms: number): void;
  /** Sleeps `ms`, waking early when the run ends. */
  sleep(ms: number): void;
  /** The manifest's interceptors as run-loop bindings. */
  bindings(): Array<{ handleId: bigint; action: string; topic: string }>;
  signalReady(): void;
}

/** A bus message as the guest sees it (`ipc-message`). */
export interface GuestMessage {
  topic: string;
  payload: string;
  sourceId: string;
  principal: { tag: "verified" | "claimed"; val: string } | { tag: "system" };
}

/** The method jco's glue calls when the guest drops a resource the host made. */
const DISPOSE: symbol = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for("dispose");

/** The thrown form jco turns into `err(payload)`. */
class Failure {
  constructor(readonly payload: { tag: string; val?: string }) {}
}

const fail = (tag: string, val?: string): never => {
  throw new Failure(val === undefined ? { tag } : { tag, val });
};

/** Maps a kernel refusal to a package's `error-code`, using `table` for codes the package has a case for. */
function check(result: SyscallResult, table: Record<string, string>): unknown {
  if (result.ok) return result.value;
  const tag = table[result.code];
  return tag ? fail(tag) : fail("unknown", `${result.code}: ${result.message}`);
}

const DENIED = { ASTRID_ERR_CAPABILITY_DENIED: "capability-denied", ASTRID_ERR_PERMISSION_DENIED: "capability-denied" };
const IPC_ERRORS = { ...DENIED, ASTRID_ERR_REQUEST_INVALID: "invalid-input", ASTRID_ERR_RATE_LIMITED: "rate-limited" };
const KV_ERRORS = { ASTRID_ERR_REQUEST_INVALID: "invalid-key", ASTRID_ERR_RATE_LIMITED: "quota" };
const FS_ERRORS = { ...DENIED, ASTRID_ERR_NOT_FOUND: "not-found", ASTRID_ERR_REQUEST_INVALID: "invalid-path" };
const HTTP_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-request",
  ASTRID_ERR_NET_ADDRESS_BLOCKED: "airlock-rejected",
  ASTRID_ERR_HTTP_FAILED: "connection-error",
  ASTRID_ERR_TIMEOUT: "timeout",
  ASTRID_ERR_HTTP_BODY_TOO_LARGE: "body-too-large",
};

const unsupported = (what: string) => () => fail("unknown", `${what} is not supported by this host`);

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

/** The import object for jco's `instantiate`, under both unversioned and `@1.0.0` names. */
export function hostImports(host: GuestHost): Record<string, Record<string, unknown>> {
  class Pollable {
    constructor(private readonly handle: bigint) {}
    ready(): boolean {
      return host.wait(this.handle, 0);
    }
    block(): void {
      while (!host.wait(this.handle, 60_000)) {
        /* keep waiting: wait() returns early only with messages or when the run ended (then it throws) */
      }
    }
  }

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
      return new Pollable(this.handle);
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
    publishAs: unsupported("publish-as"),
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
    checkCapsuleCapability: (request: { capability: string }) => ({ allowed: request.capability === "allow_prompt_injection" && host.capabilities.includes(request.capability) }),
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
  const fsHost = {
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
    readFile: (p: string) => new Uint8Array(Buffer.from(check(host.call("fs.read", p, "base64"), FS_ERRORS) as string, "base64")),
    writeFile(p: string, content: Uint8Array) {
      check(host.call("fs.write", p, Buffer.from(content).toString("base64"), "base64"), FS_ERRORS);
    },
    fsOpen: unsupported("fs-open"),
    fsAppend: unsupported("fs-append"),
    fsCopy: unsupported("fs-copy"),
    fsRename: unsupported("fs-rename"),
    fsRemoveDirAll: unsupported("fs-remove-dir-all"),
    fsCanonicalize: unsupported("fs-canonicalize"),
    fsReadLink: unsupported("fs-read-link"),
    fsHardLink: unsupported("fs-hard-link"),
  };

  const http = {
    httpRequest(request: { url: string; method: { tag: string; val?: string }; headers: Array<{ key: string; value: string }>; body?: Uint8Array }) {
      const method = request.method.tag === "other" ? String(request.method.val) : request.method.tag;
      let body: string | undefined;
      if (request.body !== undefined) {
        try {
          body = utf8.decode(request.body);
        } catch {
          return fail("invalid-request");
        }
      }
      const headers = Object.fromEntries(request.headers.map((h) => [h.key, h.value]));
      const response = check(host.call("http.request", { url: request.url, method: method.toUpperCase(), headers, ...(body !== undefined ? { body } : {}) }), HTTP_ERRORS) as {
        status: number; headers: Record<string, string>; body: string;
      };
      return { status: response.status, headers: Object.entries(response.headers).map(([key, value]) => ({ key, value })), body: encode(response.body) };
    },
    httpStreamStart: unsupported("http-stream-start"),
  };

  const approval = {
    requestApproval(request: { action: string; targetResource: string }) {
      const outcome = check(host.call("approval.request", { action: request.action, resource: request.targetResource }), { ASTRID_ERR_REQUEST_INVALID: "invalid-input", ASTRID_ERR_TIMEOUT: "timeout" }) as { approved?: boolean };
      return { decision: outcome.approved ? "approved" : "denied" };
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
      const answer = check(host.call("elicit.ask", field), { ASTRID_ERR_ELICIT_NOT_ALLOWED: "not-in-lifecycle", ASTRID_ERR_TIMEOUT: "timeout", ASTRID_ERR_REQUEST_INVALID: "invalid-input" }) as {
        value?: string; values?: string[];
      };
      if (request.kind === "secret") return { tag: "secret-stored" };
      if (Array.isArray(answer.values)) return { tag: "values", val: answer.values };
      return { tag: "value", val: String(answer.value ?? "") };
    },
    hasSecret: (key: string) => check(host.call("elicit.has_secret", key), {}) as boolean,
  };

  const poll = {
    Pollable,
    poll(pollables: Pollable[]) {
      if (pollables.length === 0) return fail("invalid-input");
      if (pollables.length > 256) return fail("too-large");
      for (;;) {
        const ready = pollables.flatMap((p, i) => (p.ready() ? [i] : []));
        if (ready.length > 0) return Uint32Array.from(ready);
        host.waitEvents(60_000);
      }
    },
  };

  const packages: Record<string, Record<string, unknown>> = {
    "astrid:ipc/host": ipc,
    "astrid:kv/host": kv,
    "astrid:sys/host": sys,
    "astrid:fs/host": fsHost,
    "astrid:http/host": http,
    "astrid:approval/host": approval,
    "astrid:elicit/host": elicit,
    "astrid:io/poll": poll,
  };
  // jco's glue looks imports up by the unversioned name; its types list the versioned one: provide both.
  for (const [name, value] of Object.entries(packages)) packages[`${name}@1.0.0`] = value;
  return packages;
}
