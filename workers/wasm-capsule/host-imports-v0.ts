/**
 * The older single-package world `astrid:capsule@0.1.0` (wit/legacy/capsule.wit) as jco's glue expects it: a thin
 * adapter over the per-domain imports `hostImports` builds, so every call takes the same kernel path (manifest,
 * principal, audit, quotas, VFS, network guard). A per-domain function is looked up when the guest calls, so one
 * added to host-imports.ts later serves this world too; until then the call answers
 * `err("<function> is not supported by this host")`.
 *
 * This world's errors are strings. A refusal carries the kernel's code and message (`ASTRID_ERR_…: …`), which the
 * per-domain error cases would lose. Results are returned as jco's `{ tag: "ok" | "err" }` form (its glue takes a
 * returned result as is), so no thrown value has to carry them.
 */
import type { SyscallResult } from "../../protocol/capsule-messages";
import { hostImports, type GuestHost, type GuestMessage } from "./host-imports";

/** The 0.1.0 world's package, as a component's import names start (jco drops the version). */
export const V0_PACKAGE = "astrid:capsule";
/** Its interfaces (`types` holds only types; jco's glue may still ask for it). */
const V0_INTERFACES = ["types", "fs", "ipc", "uplink", "kv", "net", "http", "sys", "process", "elicit", "approval", "identity"] as const;
/** The world's name as `astrid capsule info` shows it. */
export const V0_ABI = "astrid:capsule@0.1.0";

/** True when a component imports any interface of the 0.1.0 world (jco's unversioned import names). */
export function importsV0(imports: readonly string[]): boolean {
  return imports.some((i) => i.startsWith(`${V0_PACKAGE}/`));
}
/** The 0.1.0 import names this host provides (unversioned, as jco names them). */
export const V0_PROVIDED: readonly string[] = V0_INTERFACES.map((i) => `${V0_PACKAGE}/${i}`);

type Result = { tag: "ok"; val: unknown } | { tag: "err"; val: string };
type Fn = (...args: never[]) => unknown;
/** A per-domain package's members as the adapter reaches them (functions and resource classes). */
type Package = Record<string, unknown> | undefined;

const ok = (val?: unknown): Result => ({ tag: "ok", val });
const err = (val: string): Result => ({ tag: "err", val: val.slice(0, 2000) });
const unsupported = (fn: string) => err(`${fn} is not supported by this host`);
/** Most recv may wait, as the reference caps it. */
const MAX_RECV_MS = 60_000;

/** A thrown per-domain error case (`{ payload: { tag, val? } }`), or undefined for anything else (a trap). */
function caseOf(thrown: unknown): { tag: string; val?: unknown } | undefined {
  const payload = (thrown as { payload?: unknown } | null)?.payload;
  return payload !== null && typeof payload === "object" && typeof (payload as { tag?: unknown }).tag === "string" ? (payload as { tag: string; val?: unknown }) : undefined;
}

/** The import object for a 0.1.0 component: the per-domain packages (both names) plus the 0.1.0 interfaces. */
export function hostImportsV0(host: GuestHost): Record<string, Record<string, unknown>> {
  // The kernel's refusal behind the per-domain error case a call threw (that case alone drops the message).
  let refusal: SyscallResult | null = null;
  /** Read through a function: the narrowing after `refusal = null` cannot see the calls that set it. */
  const lastRefusal = (): SyscallResult | null => refusal;
  const recording: GuestHost = Object.assign(Object.create(host) as GuestHost, {
    call(name: string, ...args: unknown[]) {
      const result = host.call(name, ...args);
      if (!result.ok) refusal = result;
      return result;
    },
    publish(topic: string, payload: unknown) {
      const result = host.publish(topic, payload);
      if (!result.ok) refusal = result;
      return result;
    },
  });
  const domain = hostImports(recording);
  const pkg = (name: string): Package => domain[`astrid:${name}/host`];
  /** The per-domain function `name` of package `p`, if the per-domain builder has it. */
  const member = <F extends Fn>(p: string, name: string): F | undefined => {
    const value = pkg(p)?.[name];
    return typeof value === "function" ? (value as F) : undefined;
  };

  /** Runs `body` as the 0.1.0 function `fn`: its value becomes ok, a per-domain error case a string error. */
  const attempt = (fn: string, body: () => unknown): Result => {
    refusal = null;
    try {
      return ok(body());
    } catch (thrown) {
      const failure = caseOf(thrown);
      if (!failure) throw thrown; // a trap, or the run ending: not the guest's to handle
      const refused = lastRefusal();
      if (refused && !refused.ok) return err(`${refused.code}: ${refused.message}`);
      if (typeof failure.val === "string") return err(failure.val);
      return err(`${fn}: ${failure.tag.replace(/-/g, " ")}`);
    }
  };
  /** Forwards `fn` to per-domain `p`.`name` with `args`, mapping its value with `map`; unsupported if it is absent. */
  const forward = (fn: string, p: string, name: string, args: unknown[], map: (v: never) => unknown = (v) => v): Result => {
    const target = member<(...a: unknown[]) => unknown>(p, name);
    if (!target) return unsupported(fn);
    return attempt(fn, () => map(target(...args) as never));
  };

  /** Host-made resources the guest names by number (streams, processes, listeners). */
  class Handles<T> {
    private readonly items = new Map<bigint, T>();
    private next = 1n;
    add(item: T): bigint {
      const id = this.next++;
      this.items.set(id, item);
      return id;
    }
    get(id: bigint): T | undefined {
      return this.items.get(id);
    }
    /** Forgets the handle and releases the resource (jco's dispose), if it is one. */
    drop(id: bigint): void {
      const item = this.items.get(id);
      this.items.delete(id);
      const dispose = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for("dispose");
      const release = (item as Record<symbol, unknown> | undefined)?.[dispose];
      if (typeof release === "function") (release as () => void).call(item);
    }
  }
  /** Calls method `name` of the resource behind `id`, or answers why it cannot. */
  const onResource = <T>(fn: string, table: Handles<T>, id: bigint, name: string, args: unknown[], map: (v: never) => unknown = (v) => v): Result => {
    const item = table.get(id) as Record<string, unknown> | undefined;
    if (!item) return err(`${fn}: handle ${id} not found`);
    const method = item[name];
    if (typeof method !== "function") return unsupported(fn);
    return attempt(fn, () => map((method as (...a: unknown[]) => unknown).apply(item, args) as never));
  };

  // ---- fs ----
  const fs = {
    fsExists: (path: string) => forward("fs-exists", "fs", "fsExists", [path]),
    fsMkdir: (path: string) => (member("fs", "fsMkdirAll") ? forward("fs-mkdir", "fs", "fsMkdirAll", [path]) : forward("fs-mkdir", "fs", "fsMkdir", [path])),
    fsReaddir: (path: string) => forward("fs-readdir", "fs", "fsReaddir", [path]),
    fsStat: (path: string) =>
      forward("fs-stat", "fs", "fsStat", [path], (s: { size: bigint; kind: string; modified?: { seconds: bigint } }) => ({
        size: s.size,
        isDir: s.kind === "directory",
        mtime: s.modified?.seconds,
      })),
    fsUnlink: (path: string) => forward("fs-unlink", "fs", "fsUnlink", [path]),
    readFile: (path: string) => forward("read-file", "fs", "readFile", [path]),
    writeFile: (path: string, content: Uint8Array) => forward("write-file", "fs", "writeFile", [path, content]),
  };

  // ---- ipc ----
  // Guest subscriptions by the handle this world gives out; the interceptor handles are the worker's own queues
  // (numbered from 1 by `bindings`), so guest handles start after them.
  interface Drainable {
    poll(): { messages: GuestMessage[]; dropped: bigint; lagged?: bigint };
    recv(timeoutMs: bigint): { messages: GuestMessage[]; dropped: bigint; lagged?: bigint };
  }
  const subscriptions = new Map<bigint, Drainable>();
  let interceptorHandles: Set<bigint> | undefined;
  let nextSubscription = 1n;
  const bindings = () => {
    if (!interceptorHandles) {
      interceptorHandles = new Set(host.bindings().map((b) => b.handleId));
      for (const id of interceptorHandles) if (id >= nextSubscription) nextSubscription = id + 1n;
    }
    return interceptorHandles;
  };
  const envelope = (taken: { messages: GuestMessage[]; dropped: bigint; lagged?: bigint }) => ({
    messages: taken.messages.map((m) => ({ topic: m.topic, payload: m.payload, sourceId: m.sourceId })),
    dropped: taken.dropped,
    lagged: taken.lagged ?? 0n,
  });
  const EMPTY = { messages: [], dropped: 0n, lagged: 0n };
  /** An interceptor handle drained straight from the worker's queue (the kernel subscribed it; no ACL applies). */
  const interceptorQueue = (handle: bigint): Drainable => ({
    poll: () => host.take(handle),
    recv: (timeoutMs) => (host.wait(handle, Number(timeoutMs)) ? host.take(handle) : EMPTY),
  });
  const drainable = (handle: bigint): Drainable | undefined => (bindings().has(handle) ? interceptorQueue(handle) : subscriptions.get(handle));

  const ipc = {
    ipcPublish: (topic: string, payload: string) => forward("ipc-publish", "ipc", "publish", [topic, payload]),
    ipcSubscribe(pattern: string): Result {
      bindings();
      return forward("ipc-subscribe", "ipc", "subscribe", [pattern], (subscription: Drainable) => {
        const handle = nextSubscription++;
        subscriptions.set(handle, subscription);
        return handle;
      });
    },
    ipcUnsubscribe(handle: bigint): Result {
      if (bindings().has(handle)) return err(`ipc-unsubscribe: handle ${handle} is an interceptor handle the host owns; it cannot be unsubscribed`);
      const subscription = subscriptions.get(handle);
      if (!subscription) return err(`ipc-unsubscribe: subscription handle ${handle} not found`);
      subscriptions.delete(handle);
      const dispose = (Symbol as { dispose?: symbol }).dispose ?? Symbol.for("dispose");
      const release = (subscription as unknown as Record<symbol, unknown>)[dispose];
      if (typeof release === "function") (release as () => void).call(subscription);
      return ok();
    },
    ipcPoll(handle: bigint): Result {
      const source = drainable(handle);
      if (!source) return err(`ipc-poll: subscription handle ${handle} not found`);
      return attempt("ipc-poll", () => envelope(source.poll()));
    },
    ipcRecv(handle: bigint, timeoutMs: bigint): Result {
      const source = drainable(handle);
      if (!source) return err(`ipc-recv: subscription handle ${handle} not found`);
      const ms = timeoutMs > BigInt(MAX_RECV_MS) ? BigInt(MAX_RECV_MS) : timeoutMs;
      refusal = null;
      try {
        return ok(envelope(source.recv(ms)));
      } catch (thrown) {
        // The reference answers a recv that waited in vain with an empty envelope, not an error.
        if (caseOf(thrown)?.tag === "timeout") return ok(EMPTY);
        const failure = caseOf(thrown);
        if (!failure) throw thrown;
        return err(`ipc-recv: ${failure.tag}`);
      }
    },
    getInterceptorHandles: () => forward("get-interceptor-handles", "ipc", "getInterceptorBindings", [], (list: Array<{ handleId: bigint; action: string; topic: string }>) =>
      list.map((b) => ({ handleId: b.handleId, action: b.action, topic: b.topic }))),
  };

  // ---- uplink ----
  const uplink = {
    uplinkRegister: (name: string, platform: string, profile: string) => forward("uplink-register", "uplink", "uplinkRegister", [name, platform, profile]),
    uplinkSend: (id: string, platformUserId: string, content: string) => forward("uplink-send", "uplink", "uplinkSend", [id, platformUserId, content]),
  };

  // ---- kv ----
  const kv = {
    kvGet: (key: string) => forward("kv-get", "kv", "kvGet", [key]),
    kvSet: (key: string, value: Uint8Array) => forward("kv-set", "kv", "kvSet", [key, value]),
    kvDelete: (key: string) => forward("kv-delete", "kv", "kvDelete", [key]),
    kvListKeys: (prefix: string) => forward("kv-list-keys", "kv", "kvListKeys", [prefix]),
    kvClearPrefix: (prefix: string) => forward("kv-clear-prefix", "kv", "kvClearPrefix", [prefix]),
  };

  // ---- net: the per-domain unix listener and its streams, by number ----
  const listeners = new Handles<unknown>();
  const streams = new Handles<unknown>();
  let listener: bigint | undefined;
  const net = {
    netBindUnix(): Result {
      // One pre-bound listener per capsule: the argument is ignored, a second bind answers the same handle.
      if (listener !== undefined) return ok(listener);
      return forward("net-bind-unix", "net", "bindUnix", [], (made: unknown) => (listener = listeners.add(made)));
    },
    netAccept: (handle: bigint) => onResource("net-accept", listeners, handle, "accept", [], (s: unknown) => streams.add(s)),
    netPollAccept: (handle: bigint) => onResource("net-poll-accept", listeners, handle, "pollAccept", [10n], (s: unknown) => (s === undefined ? undefined : streams.add(s))),
    netRead: (handle: bigint) => onResource("net-read", streams, handle, "read", []),
    netWrite: (handle: bigint, data: Uint8Array) => onResource("net-write", streams, handle, "write", [data]),
    netCloseStream(handle: bigint): Result {
      streams.drop(handle); // idempotent: an unknown handle is already closed
      return ok();
    },
  };

  // ---- http ----
  const METHODS = new Set(["get", "head", "post", "put", "delete", "connect", "options", "trace", "patch"]);
  const request = (r: { url: string; method: string; headers: Array<{ key: string; value: string }>; body?: string }) => {
    const verb = r.method.toLowerCase();
    return {
      url: r.url,
      method: METHODS.has(verb) ? { tag: verb } : { tag: "other", val: r.method },
      headers: r.headers,
      body: r.body === undefined ? undefined : new TextEncoder().encode(r.body),
    };
  };
  type HttpStream = { status(): number; headers(): Array<{ key: string; value: string }> };
  const httpStreams = new Handles<HttpStream>();
  const http = {
    httpRequest: (r: Parameters<typeof request>[0]) => forward("http-request", "http", "httpRequest", [request(r)]),
    httpStreamStart: (r: Parameters<typeof request>[0]) =>
      forward("http-stream-start", "http", "httpStreamStart", [request(r)], (s: HttpStream) => ({ handle: httpStreams.add(s), status: s.status(), headers: s.headers() })),
    httpStreamRead: (handle: bigint) => onResource("http-stream-read", httpStreams, handle, "readChunk", []),
    httpStreamClose(handle: bigint): Result {
      if (!httpStreams.get(handle)) return ok(); // idempotent
      const closed = onResource("http-stream-close", httpStreams, handle, "close", []);
      httpStreams.drop(handle);
      return closed.tag === "err" && closed.val.endsWith("is not supported by this host") ? ok() : closed;
    },
  };

  // ---- sys ----
  const sysDomain = () => pkg("sys") ?? {};
  const sys = {
    getConfig: (key: string) => forward("get-config", "sys", "getConfig", [key], (v: string | undefined) => v ?? ""),
    getCaller: () => forward("get-caller", "sys", "getCaller", []),
    // Not in the per-domain sys package: straight to the kernel, which fans it out (kernel/capsules/hook-trigger.ts).
    triggerHook: (requestJson: string): Result => {
      const answer = host.call("sys.trigger_hook", requestJson);
      return answer.ok ? ok(String(answer.value)) : err(`${answer.code}: ${answer.message}`);
    },
    log: (level: string, message: string) => void (sysDomain().log as (l: string, m: string) => void)(level, message),
    signalReady: () => void (sysDomain().signalReady as () => void)(),
    clockMs: () => (sysDomain().clockMs as () => bigint)(),
    checkCapsuleCapability: (r: { sourceUuid: string; capability: string }) => forward("check-capsule-capability", "sys", "checkCapsuleCapability", [r]),
  };

  // ---- process: spawn-background's handles by number ----
  type ExitInfo = { exitCode?: number; signal?: number };
  const processes = new Handles<unknown>();
  const spawnRequest = (r: { cmd: string; args: string[] }) => ({ cmd: r.cmd, args: r.args, stdin: undefined, env: [], cwd: undefined });
  const processApi = {
    spawn: (r: { cmd: string; args: string[] }) =>
      forward("spawn", "process", "spawn", [spawnRequest(r)], (out: { stdout: string; stderr: string; exit: ExitInfo }) => ({
        stdout: out.stdout,
        stderr: out.stderr,
        exitCode: out.exit.exitCode ?? -1,
      })),
    spawnBackground: (r: { cmd: string; args: string[] }) => forward("spawn-background", "process", "spawnBackground", [spawnRequest(r)], (h: unknown) => ({ id: processes.add(h) })),
    readLogs: (id: bigint) =>
      onResource("read-logs", processes, id, "readLogs", [], (logs: { stdout: string; stderr: string; running: boolean; exit?: ExitInfo }) => ({
        stdout: logs.stdout,
        stderr: logs.stderr,
        running: logs.running,
        exitCode: logs.exit?.exitCode,
      })),
    kill(id: bigint): Result {
      const killed = onResource("kill", processes, id, "kill", [], (k: { killed: boolean; exit?: ExitInfo; stdout: string; stderr: string }) => ({
        killed: k.killed,
        exitCode: k.exit?.exitCode,
        stdout: k.stdout,
        stderr: k.stderr,
      }));
      if (killed.tag === "ok") processes.drop(id);
      return killed;
    },
  };

  // ---- elicit: this world answers JSON text ----
  const elicit = {
    elicit: (r: { elicitType: string; key: string; description: string; options?: string[]; defaultValue?: string }) =>
      forward("elicit", "elicit", "elicit", [{ kind: r.elicitType, key: r.key, description: r.description, options: r.options, defaultValue: r.defaultValue }],
        (answer: { tag: string; val?: unknown }) =>
          JSON.stringify(answer.tag === "values" ? { values: answer.val } : answer.tag === "secret-stored" ? { ok: true } : { value: answer.val })),
    hasSecret: (key: string) => forward("has-secret", "elicit", "hasSecret", [key]),
  };

  // ---- approval ----
  const approval = {
    requestApproval: (r: { action: string; targetResource: string }) =>
      forward("request-approval", "approval", "requestApproval", [r], (answer: { decision: string }) => ({ approved: answer.decision !== "denied" })),
  };

  // ---- identity: this world's answers are records with `ok` / `found` flags ----
  const identity = {
    identityResolve(r: { platform: string; platformUserId: string }): Result {
      const answer = forward("identity-resolve", "identity", "identityResolve", [r], (found: { userId: string; displayName?: string }) => ({
        found: true,
        userId: found.userId,
        displayName: found.displayName,
        error: undefined,
      }));
      // Not found is an answer in this world, not an error.
      return answer.tag === "err" && /user.not.found/.test(answer.val) ? ok({ found: false, userId: undefined, displayName: undefined, error: undefined }) : answer;
    },
    identityLink: (r: unknown) => forward("identity-link", "identity", "identityLink", [r], () => ({ ok: true })),
    identityUnlink: (r: unknown) => forward("identity-unlink", "identity", "identityUnlink", [r], () => ({ ok: true, removed: true })),
    identityCreateUser: (r: unknown) => forward("identity-create-user", "identity", "identityCreateUser", [r], (made: { userId: string }) => ({ ok: true, userId: made.userId })),
    identityListLinks: (r: { astridUserId: string }) =>
      forward("identity-list-links", "identity", "identityListLinks", [r.astridUserId], (links: unknown[]) => ({ ok: true, linksJson: JSON.stringify(links) })),
  };

  const v0: Record<string, Record<string, unknown>> = { types: {}, fs, ipc, uplink, kv, net, http, sys, process: processApi, elicit, approval, identity };
  const packages: Record<string, Record<string, unknown>> = { ...domain };
  // jco's glue looks imports up by the unversioned name; provide the versioned one too, as the per-domain builder does.
  for (const [name, value] of Object.entries(v0)) {
    packages[`${V0_PACKAGE}/${name}`] = value;
    packages[`${V0_PACKAGE}/${name}@0.1.0`] = value;
  }
  return packages;
}
