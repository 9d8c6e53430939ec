/**
 * Runs inside a capsule's worker thread: loads the capsule module, hands it its `CapsuleApi`, delivers events in
 * order, and turns API calls into syscalls the kernel checks. Nothing here is trusted by the kernel.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import { pathToFileURL } from "node:url";
import type { MessagePort } from "node:worker_threads";
import * as Comlink from "comlink";
import type {
  CapsuleControl,
  CapsuleEventMessage,
  CapsuleWorkerData,
  FromCapsule,
  InterceptResult,
  KernelSyscalls,
  SetupOutcome,
  StepOutcome,
  SyscallName,
  SyscallResult,
  ToCapsule,
  ToolOutcome,
} from "../protocol/capsule-messages";
import {
  CAPSULE_STATS_INTERVAL_MS,
  MAX_CAPSULE_PUBLISH_BYTES_PER_SEC,
  MAX_CAPSULE_TEXT_CHARS,
} from "../protocol/capsule-limits";
import { BoundedRemote, rpcChannel } from "../protocol/rpc-channel";
import { busTopicMatches, exactSegmentMatches, topicProblem } from "../protocol/topic-match";
import type { AstridOsSdk } from "./astrid-os-sdk";
import { ASTRID_OS_SDK_SPECIFIERS } from "./astrid-os-sdk-names";
import { loadConfined } from "./confined-modules";
import { capsuleGlobals } from "./endowments";
import * as sdk from "./sdk";
import { resolveDefinition, type CapsuleApi, type CapsuleDefinition, type CapsuleEvent, type FinalResult } from "./sdk";

/** Largest payload sent on the reply-less publish path; bigger ones take the syscall (the clone dominates anyway). */
const FAST_PUBLISH_MAX_BYTES = 64 * 1024;

/** Longest an ack of handled events waits for a publish to ride on. */
const ACK_DELAY_MS = 5;

/** Log lines a capsule may send the kernel per second (the kernel enforces the same budget on its side). */
const LOG_LINES_PER_SEC = 200;

/** Deadline for one syscall's reply. */
const SYSCALL_TIMEOUT_MS = 30_000;
/** Calls that wait on people or the outside world, a little past the kernel's own deadline for them. */
const LONG_SYSCALL_TIMEOUT_MS: Partial<Record<SyscallName, number>> = {
  "http.request": 35_000,
  "http.stream_open": 35_000,
  // The kernel's wait for a stream's next piece (HTTP_STREAM_READ_WAIT_MS, 20 s) and a margin.
  "http.stream_read": 30_000,
  "process.run": 305_000,
  "approval.request": 65_000,
  "elicit.ask": 125_000,
  // The kernel's MCP deadline (ASTRID_MCP_REQUEST_TIMEOUT_MS, 60 s) plus a wait for a server still starting (30 s).
  "mcp.tools": 125_000,
  "mcp.call": 125_000,
  "mcp.resources": 125_000,
  "mcp.read_resource": 125_000,
  "mcp.prompts": 125_000,
  "mcp.get_prompt": 125_000,
  // The kernel's long poll of a model stream (MODEL_READ_WAIT_MS, 20 s) and a margin.
  "model.stream_read": 30_000,
};

/** A coded error from the kernel, as the capsule sees it. */
export class CapsuleCallError extends Error {
  constructor(readonly code: string, message: string) {
    super(message);
    this.name = "CapsuleCallError";
  }
}

/** Text of a thrown value, cut to what the kernel accepts. */
function messageOf(err: unknown): string {
  return String((err as Error)?.message ?? err).slice(0, MAX_CAPSULE_TEXT_CHARS);
}

/** Boots the capsule: `port` is the worker's parentPort (data plane), `data.control` the control plane. */
export function runCapsule(port: MessagePort, data: CapsuleWorkerData): void {
  const send = (message: FromCapsule) => port.postMessage(message);
  // Acks of handled events ride on the next reply-less publish (a chat turn's reply is the next message anyway),
  // else go alone within ACK_DELAY_MS: one message per event fewer on the kernel's thread, and the kernel's view of
  // what is outstanding is at most that late.
  let unacked = 0;
  let ackTimer: NodeJS.Timeout | undefined;
  const takeAcks = (): number => {
    const n = unacked;
    unacked = 0;
    if (ackTimer) clearTimeout(ackTimer);
    ackTimer = undefined;
    return n;
  };
  const ack = () => {
    unacked++;
    ackTimer ??= setTimeout(() => send({ t: "ack", n: takeAcks() }), ACK_DELAY_MS);
  };
  // The message each piece of capsule code runs for, followed across its awaits: every call names it, so the kernel
  // applies that message's principal (interleaved handlers, tools and interceptors each keep their own).
  const acting = new AsyncLocalStorage<number>();
  const channel = rpcChannel(data.control);
  const kernel = new BoundedRemote<KernelSyscalls>(channel.caller, "kernel");
  const call = async (name: SyscallName, ...args: unknown[]): Promise<unknown> => {
    const seq = acting.getStore() ?? null;
    const result = await kernel.call<SyscallResult>((k) => k.syscall(name, args, seq) as Promise<SyscallResult>,
      LONG_SYSCALL_TIMEOUT_MS[name] ?? SYSCALL_TIMEOUT_MS);
    if (result.ok) return result.value;
    throw new CapsuleCallError(result.code, result.message);
  };

  const subscriptions: Array<{ pattern: string; handler: (e: CapsuleEvent) => unknown }> = [];
  // Subscriptions of the reference SDK's surface: buffers its `recv` drains, fed as events arrive (never queued
  // behind a handler, which may itself be waiting in `recv`). `seq` skips a second delivery of one message.
  const sinks: Array<{ pattern: string; sink: (e: CapsuleEvent) => void; seq: number }> = [];
  // What this capsule published in the current one-second window, both paths together. The reply-less path is taken
  // only for publishes the kernel will accept: a valid topic in ipc_publish, a small payload, and this second's
  // reply-less bytes and messages under half the kernel's limits (its window can span two of ours). Everything else is
  // a syscall, so refusals still come back as coded errors (and denials as audit entries) — except a publish past
  // the whole byte limit, refused here so a flood of large payloads is never copied to the kernel just to be refused.
  const window = { start: 0, bytes: 0, fastBytes: 0, fastCount: 0 };
  const publish = async (topic: string, payload: unknown): Promise<void> => {
    let size: number | null;
    try {
      size = Buffer.byteLength(JSON.stringify(payload ?? null));
    } catch {
      size = null; // the kernel refuses it with its coded error
    }
    const now = performance.now();
    if (now - window.start >= 1000) Object.assign(window, { start: now, bytes: 0, fastBytes: 0, fastCount: 0 });
    if (size !== null) {
      if (window.bytes + size > MAX_CAPSULE_PUBLISH_BYTES_PER_SEC) {
        throw new CapsuleCallError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${data.name} may publish at most 10 MiB per second`);
      }
      window.bytes += size;
      const fast = size <= FAST_PUBLISH_MAX_BYTES && typeof topic === "string" && topicProblem(topic) === null &&
        data.publishAcl.some((p) => exactSegmentMatches(p, topic)) &&
        window.fastBytes + size <= MAX_CAPSULE_PUBLISH_BYTES_PER_SEC / 2 && window.fastCount + 1 <= data.maxPublishesPerSec / 2;
      if (fast) {
        window.fastBytes += size;
        window.fastCount++;
        const seq = acting.getStore();
        const acks = takeAcks();
        const message: FromCapsule = seq === undefined ? { t: "publish", topic, payload } : { t: "publish", topic, payload, seq };
        send(acks > 0 ? { ...message, ack: acks } : message);
        return;
      }
    }
    await call("ipc.publish", topic, payload);
  };
  // The kernel keeps at most LOG_LINES_PER_SEC lines a second; lines past that are dropped here, before they are
  // copied across to the kernel (a log flood would otherwise cost the daemon the memory of every line).
  let logWindow = 0;
  let logLines = 0;
  let logDropped = 0;
  const log = (level: "debug" | "info" | "warn" | "error") => (message: string) => {
    const now = performance.now();
    if (now - logWindow >= 1000) {
      if (logDropped > 0) send({ t: "log", level: "warn", message: `${logDropped} log lines dropped (more than ${LOG_LINES_PER_SEC} a second)` });
      logWindow = now;
      logLines = 0;
      logDropped = 0;
    }
    if (++logLines > LOG_LINES_PER_SEC) {
      logDropped++;
      return;
    }
    send({ t: "log", level, message: String(message).slice(0, MAX_CAPSULE_TEXT_CHARS) });
  };
  const api: CapsuleApi = {
    name: data.name,
    ipc: {
      publish,
      subscribe: async (pattern, handler) => {
        await call("ipc.subscribe", pattern);
        subscriptions.push({ pattern, handler });
      },
    },
    kv: {
      get: (key) => call("kv.get", key) as Promise<string | null>,
      set: async (key, value) => {
        await call("kv.set", key, value);
      },
      delete: (key) => call("kv.delete", key) as Promise<boolean>,
      list: (prefix = "") => call("kv.list", prefix) as Promise<string[]>,
    },
    fs: {
      read: (path, encoding) => call("fs.read", path, encoding ?? "utf8") as Promise<string>,
      write: async (path, content, encoding) => {
        await call("fs.write", path, content, encoding ?? "utf8");
      },
      exists: (path) => call("fs.exists", path) as Promise<boolean>,
      stat: (path) => call("fs.stat", path) as Promise<sdk.FileStat>,
      readdir: (path) => call("fs.readdir", path) as Promise<string[]>,
      mkdir: async (path) => {
        await call("fs.mkdir", path);
      },
      unlink: async (path) => {
        await call("fs.unlink", path);
      },
      removeDirAll: (path) => call("fs.remove_dir_all", path) as Promise<number>,
      canonicalize: (path) => call("fs.canonicalize", path) as Promise<string>,
      readLink: (path) => call("fs.read_link", path) as Promise<string>,
      hardLink: async (src, linkPath) => {
        await call("fs.hard_link", src, linkPath);
      },
      commit: () => call("fs.commit") as Promise<{ committed: string[] }>,
      discard: () => call("fs.discard") as Promise<{ discarded: string[] }>,
    },
    http: { request: (request) => call("http.request", request) as Promise<sdk.HttpResponse> },
    process: {
      run: (argv, options) => call("process.run", argv, options ?? {}) as Promise<sdk.ProcessResult>,
      spawn: (argv, options) => call("process.spawn", argv, options ?? {}) as Promise<{ id: string; pid: number }>,
      logs: (id) => call("process.logs", id) as Promise<sdk.ProcessLogs>,
      state: (id) => call("process.state", id) as Promise<sdk.ProcessState>,
      writeStdin: (id, data, encoding) => call("process.write_stdin", id, data, encoding ?? "utf8") as Promise<number>,
      closeStdin: (id) => call("process.close_stdin", id) as Promise<boolean>,
      signal: (id, signal) => call("process.signal", id, signal) as Promise<boolean>,
      spawnPersistent: (argv, options) => call("process.spawn_persistent", argv, options ?? {}) as Promise<{ id: string; pid: number }>,
      list: (filter) => call("process.list", filter ?? null) as Promise<sdk.PersistentInfo[]>,
      status: (ids) => call("process.status", ids) as Promise<sdk.PersistentInfo[]>,
      drain: (id) => call("process.drain", id) as Promise<sdk.ProcessLogs>,
      readSince: (id, stream, cursor, maxBytes) => call("process.read_since", id, stream, cursor, maxBytes) as Promise<{ data: string; next: string; bytes_dropped: number; drained_eof: boolean }>,
      stop: (id, graceMs) => call("process.stop", id, graceMs ?? null) as Promise<{ exit_code: number | null; signal: string | null }>,
      release: (id) => call("process.release", id) as Promise<boolean>,
      kill: (id) => call("process.kill", id) as Promise<boolean>,
    },
    approval: { request: (request) => call("approval.request", request) as Promise<sdk.ApprovalOutcome> },
    elicit: {
      ask: (field) => call("elicit.ask", field) as Promise<sdk.ElicitAnswer>,
      hasSecret: (key) => call("elicit.has_secret", key) as Promise<boolean>,
      secret: (key) => call("elicit.secret", key) as Promise<string | null>,
    },
    mcp: {
      servers: () => call("mcp.servers") as Promise<sdk.McpServerEntry[]>,
      tools: (server) => call("mcp.tools", server) as Promise<sdk.McpToolInfo[]>,
      call: (server, tool, args) => call("mcp.call", server, tool, args ?? {}) as Promise<sdk.McpCallResult>,
      resources: (server) => call("mcp.resources", server) as Promise<unknown[]>,
      readResource: (server, uri) => call("mcp.read_resource", server, uri) as Promise<{ contents: unknown[] }>,
      prompts: (server) => call("mcp.prompts", server) as Promise<unknown[]>,
      getPrompt: (server, prompt, args) => call("mcp.get_prompt", server, prompt, args ?? {}) as Promise<{ messages: unknown[]; description?: string }>,
    },
    model: {
      info: () => call("model.info") as Promise<sdk.ModelInfo>,
      tools: () => call("model.tools") as Promise<sdk.ModelToolInfo[]>,
      open: (request) => call("model.stream_open", request) as Promise<{ id: string; model: string }>,
      read: (id) => call("model.stream_read", id) as Promise<sdk.ModelStreamRead>,
      close: (id) => call("model.stream_close", id) as Promise<boolean>,
    },
    log: { debug: log("debug"), info: log("info"), warn: log("warn"), error: log("error") },
    env: { get: (key) => (Object.hasOwn(data.env, key) ? data.env[key]! : "") },
  };
  // Handed to capsule code: frozen, so a capsule cannot swap a method under the host (or another handler).
  if (data.modules) harden(api);

  let definition: CapsuleDefinition | undefined;
  let ready = false;
  // Events are handled one at a time, in arrival order; each handled event is acknowledged.
  const queue: CapsuleEventMessage[] = [];
  let draining = false;
  const drain = async () => {
    if (draining || !ready) return;
    draining = true;
    while (queue.length > 0) {
      const message = queue.shift()!;
      const event: CapsuleEvent = { topic: message.topic, payload: message.payload, source_id: message.source_id, seq: message.seq };
      if (message.principal !== undefined) event.principal = message.principal;
      if (message.attribution !== undefined) event.attribution = message.attribution;
      try {
        // An interceptor delivery runs that interceptor only; a subscription delivery runs the matching handlers.
        await acting.run(message.seq, async () => {
          if (message.action !== undefined) await definition?.interceptors?.[message.action]?.(event, api);
          else for (const sub of subscriptions) if (busTopicMatches(sub.pattern, event.topic)) await sub.handler(event);
        });
      } catch (err) {
        // A throwing handler is the capsule's problem, not the kernel's: report it and go on.
        log("error")(`handler for ${event.topic} threw: ${(err as Error)?.stack ?? String(err)}`);
      }
      ack();
    }
    draining = false;
  };

  port.on("message", (message: ToCapsule) => {
    if (message.t !== "event") return;
    if (message.action === undefined && sinks.length > 0) {
      const event: CapsuleEvent = { topic: message.topic, payload: message.payload, source_id: message.source_id, seq: message.seq };
      if (message.principal !== undefined) event.principal = message.principal;
      if (message.attribution !== undefined) event.attribution = message.attribution;
      for (const s of sinks) {
        if (s.seq < message.seq && busTopicMatches(s.pattern, message.topic)) {
          s.seq = message.seq;
          s.sink(event);
        }
      }
      if (!subscriptions.some((sub) => busTopicMatches(sub.pattern, message.topic))) {
        ack();
        return;
      }
    }
    queue.push(message);
    void drain();
  });

  // The control plane: the kernel drives loading step by step and calls interceptors of a chain and tools here.
  const control: CapsuleControl = {
    async load(): Promise<StepOutcome> {
      try {
        // Confined: the capsule's modules run in a Compartment whose globals are the endowments only.
        // The reference SDK's surface is built (and its modules loaded) only for a capsule that requires it.
        let astridOs: AstridOsSdk | undefined;
        const hostModule = (specifier: string): object | undefined => {
          if (!ASTRID_OS_SDK_SPECIFIERS.some((name) => specifier === name || specifier.startsWith(`${name}/`))) return undefined;
          astridOs ??= (require("./astrid-os-sdk") as typeof import("./astrid-os-sdk")).createAstridOsSdk({
            api,
            env: data.env,
            subscribe: async (pattern, sink) => {
              await call("ipc.subscribe", pattern);
              sinks.push({ pattern, sink, seq: -Infinity });
            },
            syscall: (name, ...args) => call(name, ...args),
          });
          return astridOs.modules[specifier];
        };
        const loaded = (data.modules
          ? loadConfined(data.name, data.modules, capsuleGlobals({ log: (level, message) => log(level)(message) }), sdk, hostModule)
          : await import(pathToFileURL(data.file).href)) as { default?: unknown };
        // A capsule written for the reference SDK declares a @capsule class there, whatever its module exports.
        const def = astridOs?.definition() ??
          resolveDefinition((loaded.default as { default?: unknown } | undefined)?.default ?? loaded.default ?? loaded, data.file);
        const missing = data.actions.filter((a) => typeof def.interceptors?.[a] !== "function");
        if (missing.length > 0) throw new Error(`interceptor action(s) declared in Capsule.toml but not exported: ${missing.join(", ")}`);
        definition = def;
        return { ok: true };
      } catch (err) {
        return { ok: false, message: messageOf(err) };
      }
    },
    async runHook(lifecycle): Promise<StepOutcome> {
      try {
        if (lifecycle.hook === "install") await definition?.install?.(api);
        else await definition?.upgrade?.(api, lifecycle.from);
        return { ok: true };
      } catch (err) {
        return { ok: false, message: `${lifecycle.hook} hook failed: ${messageOf(err)}` };
      }
    },
    async setup(): Promise<SetupOutcome> {
      if (!definition) return { ok: false, message: "setup before load" };
      try {
        await definition.setup?.(api);
      } catch (err) {
        return { ok: false, message: messageOf(err) };
      }
      ready = true;
      void drain();
      const tools = Object.entries(definition.tools ?? {}).map(([name, tool]) => ({
        name,
        description: String(tool.description ?? "No description"),
        ...(tool.inputSchema !== undefined ? { input_schema: tool.inputSchema } : {}),
      }));
      return { ok: true, tools };
    },
    async intercept(action, event): Promise<InterceptResult> {
      const handler = definition?.interceptors?.[action];
      if (!handler) return { action: "continue" };
      try {
        const out = await acting.run(event.seq, () => handler(event, api));
        if (out !== null && typeof out === "object" && (out as FinalResult).__astrid === "final") return { action: "final", data: (out as FinalResult).data };
        return out === undefined ? { action: "continue" } : { action: "continue", data: out };
      } catch (err) {
        return { action: "deny", reason: messageOf(err) };
      }
    },
    async executeTool(name, args, seq): Promise<ToolOutcome> {
      const tool = definition?.tools?.[name];
      if (!tool) return { content: `no tool named ${name}`, is_error: true };
      try {
        const content = await acting.run(seq, () => tool.execute(args, api));
        return { content: content === undefined ? null : content, is_error: false };
      } catch (err) {
        return { content: messageOf(err), is_error: true };
      }
    },
  };
  Comlink.expose(control, channel.callee);

  // Memory outside the V8 heap (ArrayBuffers, external memory) escapes the worker's heap limit: report it, so the
  // kernel can hold the capsule to its quota. This timer is the host's, outside the capsule's Compartment.
  const stats = setInterval(() => {
    const usage = process.memoryUsage();
    send({ t: "stats", heap_used: usage.heapUsed, external: usage.external + usage.arrayBuffers });
  }, CAPSULE_STATS_INTERVAL_MS);
  stats.unref();
}
