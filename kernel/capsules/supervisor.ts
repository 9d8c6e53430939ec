/**
 * Runs each capsule with code in its own worker thread, answers its syscalls after checking them against its
 * manifest, delivers its events (one-way port messages, at most 256 unacknowledged, the rest dropped and
 * counted), and contains every way a capsule can fail: throw at load, exit, hang, run out of memory. A failed
 * capsule is marked with its reason, announced on `astrid.v1.health.failed`, and restarted with backoff
 * (2 s doubling to 120 s, 5 attempts), then stays failed and visible.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { MessageChannel, Worker } from "node:worker_threads";
import { AstridError, isAstridError, type ErrorCode } from "../../protocol/errors";
import {
  CAPSULE_QUEUE_LIMIT,
  MAX_CAPSULE_PAYLOAD_BYTES,
  MAX_CAPSULE_PUBLISH_BYTES_PER_SEC,
  type CapsuleControl,
  type CapsuleWorkerData,
  type FromCapsule,
  type InterceptResult,
  type LifecycleHook,
  type ToCapsule,
  type ToolOutcome,
} from "../../protocol/capsule-messages";
import { guestView, NIL_UUID, normalizePayload } from "../../protocol/ipc-message";
import { exactSegmentMatches, topicProblem } from "../../protocol/topic-match";
import { HEALTH_FAILED_TOPIC, ONBOARDING_REQUIRED_TOPIC, TOOL_EXECUTE_PREFIX } from "../../protocol/topics";
import type { AuditLog } from "../audit-log";
import type { BusEvent, EventBus } from "../bus";
import type { Logger } from "../logger";
import { BoundedRemote } from "../rpc";
import { workerEntry } from "../worker-entry";
import type { StorageClient } from "../storage-client";
import type { ResolvedEnv } from "./capsule-env";
import type { CapsuleRecord } from "./registry";

/** Restart policy (reference §2.8). */
export const RESTART_BACKOFF_MS = 2000;
export const RESTART_BACKOFF_MAX_MS = 120_000;
export const MAX_RESTARTS = 5;
/** Most subscriptions one capsule may hold. */
export const MAX_CAPSULE_SUBSCRIPTIONS = 128;
/** KV scope of the install records: key = capsule name, value = JSON `InstallRecord`. */
export const INSTALL_SCOPE = "system:capsules";

/** What the daemon remembers about a capsule whose install or upgrade hook succeeded. */
export interface InstallRecord {
  version: string;
  installed_at: string;
  updated_at: string;
}

/** Tunables, read once from the environment (tests shorten them). */
export interface SupervisorSettings {
  /** How long a capsule may take from spawn to ready (its lifecycle hook aside). */
  readyTimeoutMs: number;
  /** How long an install or upgrade hook may run. */
  hookTimeoutMs: number;
  /** How long an event may stay unacknowledged before the capsule counts as hung and is restarted. */
  handlerTimeoutMs: number;
  /** First restart delay; doubles per attempt up to RESTART_BACKOFF_MAX_MS. */
  backoffMs: number;
  /** V8 old-generation limit per capsule worker. */
  maxHeapMb: number;
}

/** Settings from `ASTRID_CAPSULE_*` variables, with defaults. */
export function supervisorSettings(env: NodeJS.ProcessEnv): SupervisorSettings {
  const num = (name: string, fallback: number) => {
    const v = Number(env[name]);
    return env[name] !== undefined && Number.isFinite(v) && v > 0 ? v : fallback;
  };
  return {
    readyTimeoutMs: num("ASTRID_CAPSULE_READY_TIMEOUT_MS", 10_000),
    hookTimeoutMs: num("ASTRID_CAPSULE_HOOK_TIMEOUT_MS", 60_000),
    handlerTimeoutMs: num("ASTRID_CAPSULE_HANDLER_TIMEOUT_MS", 30_000),
    backoffMs: num("ASTRID_CAPSULE_RESTART_BACKOFF_MS", RESTART_BACKOFF_MS),
    maxHeapMb: num("ASTRID_CAPSULE_MAX_HEAP_MB", 64),
  };
}

/** One running (or starting) capsule worker. */
class CapsuleRun {
  readonly sourceId = randomUUID();
  remote!: BoundedRemote<CapsuleControl>;
  outstanding = 0;
  dropped = 0;
  oldestUnacked = 0;
  readonly unsubscribe: Array<() => void> = [];
  subscriptions = 0;
  ended = false;
  /** Publish throughput: bytes published in the fixed one-second window that began at `windowStart`. */
  windowStart = 0;
  windowBytes = 0;

  constructor(readonly record: CapsuleRecord, readonly worker: Worker) {}

  post(message: ToCapsule): void {
    if (!this.ended) this.worker.postMessage(message);
  }
}

/** Starts, watches and restarts capsule workers. */
export class CapsuleSupervisor {
  private readonly runs = new Map<string, CapsuleRun>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  /** Per capsule name, bumped by every start and forget: a start compares it after each await. */
  private readonly generations = new Map<string, number>();
  /** Interceptor matches of bus events collected in the current delivery pass. */
  private readonly chains = new Map<BusEvent, Array<{ run: CapsuleRun; action: string; priority: number }>>();
  private readonly watchdog: NodeJS.Timeout;
  private stopping = false;

  constructor(
    private readonly bus: EventBus,
    private readonly storage: StorageClient,
    private readonly logger: Logger,
    private readonly audit: AuditLog,
    private readonly settings: SupervisorSettings,
    private readonly env: (record: CapsuleRecord) => ResolvedEnv,
  ) {
    this.watchdog = setInterval(() => this.checkHung(), Math.min(1000, settings.handlerTimeoutMs / 2));
    this.watchdog.unref();
  }

  /**
   * Starts a capsule; resolves once it is ready or has failed (its record says which). A capsule never installed
   * runs its `install` hook first, one whose version changed its `upgrade` hook; the version is recorded only once
   * the hook succeeded, so a failed hook runs again on the next attempt.
   */
  async start(record: CapsuleRecord): Promise<void> {
    record.state = "loading";
    // A start that forget() or stopAll() overtook while it awaited storage must not spawn anything.
    const generation = this.bumpGeneration(record.name);
    const current = () => !this.stopping && this.generations.get(record.name) === generation;
    let installed: InstallRecord | undefined;
    try {
      installed = await this.installRecord(record.name);
    } catch (err) {
      if (current()) this.markFailed(record, `cannot read its install record: ${(err as Error).message}`, current);
      return;
    }
    if (!current()) return;
    const lifecycle: LifecycleHook | undefined =
      installed === undefined ? { hook: "install" } : installed.version !== record.version ? { hook: "upgrade", from: installed.version } : undefined;
    const component = record.manifest.component[0]!;
    const file = path.resolve(record.dir, component.file ?? component.entrypoint ?? "");
    const env = this.env(record);
    if (env.onboarding.length > 0) {
      // Reference §6.5: one event per load listing what the operator must provide; the keys read as "" meanwhile.
      this.bus.publish({
        topic: ONBOARDING_REQUIRED_TOPIC,
        payload: { type: "onboarding_required", capsule_id: record.name, fields: env.onboarding },
        source_id: NIL_UUID,
      });
    }
    const data: Omit<CapsuleWorkerData, "control"> = {
      name: record.name,
      file,
      env: env.values,
      actions: [...new Set(record.manifest.interceptor.map((i) => i.action))],
      publishAcl: record.manifest.capabilities.ipc_publish,
    };
    if (lifecycle) data.lifecycle = lifecycle;
    const channel = new MessageChannel();
    const worker = new Worker(workerEntry("capsule"), {
      workerData: { ...data, control: channel.port2 },
      transferList: [channel.port2],
      resourceLimits: { maxOldGenerationSizeMb: this.settings.maxHeapMb, maxYoungGenerationSizeMb: 16 },
      stdout: false,
      stderr: false,
    });
    const run = new CapsuleRun(record, worker);
    run.remote = new BoundedRemote<CapsuleControl>(channel.port1, `capsule ${record.name}`);
    this.runs.set(record.name, run);
    return new Promise<void>((resolve) => {
      let settled = false;
      // The install record's write, settled with its error (never rejected) so a failure cannot go unhandled.
      let recorded: Promise<Error | undefined> = Promise.resolve(undefined);
      // A lifecycle hook is announced once and finishes once; anything else a capsule posts about it is ignored.
      let hookPhase: "pending" | "started" | "done" = "pending";
      const settle = () => {
        if (settled) return;
        settled = true;
        clearTimeout(readyTimer);
        resolve();
      };
      let readyTimer: NodeJS.Timeout;
      const deadline = (ms: number, what: string) => {
        if (settled) return;
        clearTimeout(readyTimer);
        readyTimer = setTimeout(() => {
          this.fail(run, `${what} within ${ms} ms`);
          settle();
        }, ms);
      };
      deadline(this.settings.readyTimeoutMs, "did not become ready");
      worker.on("message", (message: FromCapsule) => {
        if (message.t === "lifecycle") {
          if (!lifecycle || settled) return;
          if (message.phase === "started" && hookPhase === "pending") {
            hookPhase = "started";
            deadline(this.settings.hookTimeoutMs, `its ${lifecycle.hook} hook did not finish`);
          } else if (message.phase === "done" && hookPhase === "started") {
            hookPhase = "done";
            deadline(this.settings.readyTimeoutMs, "did not become ready after its lifecycle hook");
            recorded = this.recordInstall(record, installed, lifecycle).then(() => undefined, (err: Error) => err);
          }
          return;
        }
        if (message.t === "ready") {
          // Ready only counts once the install record is durable; a record that cannot be written fails the load.
          void recorded.then((err) => {
            if (err === undefined) return this.onReady(run, message.tools, settle);
            this.fail(run, `cannot record its ${lifecycle?.hook ?? "install"}: ${err.message}`);
            settle();
          });
          return;
        }
        if (message.t === "failed") {
          this.fail(run, `failed to load: ${message.message}`);
          settle();
        } else this.onMessage(run, message);
      });
      worker.on("error", (err: Error & { code?: string }) => {
        const reason = err.code === "ERR_WORKER_OUT_OF_MEMORY" ? "ran out of memory (worker resource limit)" : `crashed: ${err.message}`;
        this.fail(run, reason);
        settle();
      });
      worker.on("exit", (code) => {
        this.fail(run, `exited with code ${code}`);
        settle();
      });
    });
  }

  private onReady(run: CapsuleRun, tools: unknown, settle: () => void): void {
    if (run.ended) return;
    const { record } = run;
    record.state = "ready";
    delete record.lastError;
    record.tools = Array.isArray(tools) ? (tools as CapsuleRecord["tools"]) : [];
    this.logger.info("capsule ready", { capsule: record.name, version: record.version });
    this.audit.capsule(record.restarts > 0 ? "restart" : "load", record.name, { version: record.version });
    this.bindInterceptors(record);
    this.bindTools(run);
    settle();
  }

  /** The install record of `name`, if its install hook ever succeeded. A record that is not ours reads as absent. */
  private async installRecord(name: string): Promise<InstallRecord | undefined> {
    const raw = await this.storage.get(INSTALL_SCOPE, name);
    if (raw === null) return undefined;
    try {
      const parsed = JSON.parse(Buffer.from(raw).toString("utf8")) as InstallRecord;
      if (typeof parsed.version === "string") return parsed;
    } catch {
      // fall through: an unreadable record is reported and treated as "never installed"
    }
    this.logger.warn("unreadable capsule install record; running its install hook again", { capsule: name });
    return undefined;
  }

  /** Stores the version whose hook just succeeded, and says so in the log and the audit trail. */
  private async recordInstall(record: CapsuleRecord, previous: InstallRecord | undefined, lifecycle: LifecycleHook): Promise<void> {
    const now = new Date().toISOString();
    const next: InstallRecord = { version: record.version, installed_at: previous?.installed_at ?? now, updated_at: now };
    await this.storage.set(INSTALL_SCOPE, record.name, Buffer.from(JSON.stringify(next), "utf8"));
    const detail = lifecycle.hook === "upgrade" ? { from: lifecycle.from, to: record.version } : { version: record.version };
    this.logger.info(`capsule ${lifecycle.hook} hook done`, { capsule: record.name, ...detail });
    this.audit.capsule(lifecycle.hook, record.name, detail);
  }

  private bumpGeneration(name: string): number {
    const next = (this.generations.get(name) ?? 0) + 1;
    this.generations.set(name, next);
    return next;
  }

  /** Number of events dropped for a capsule because its queue was full. */
  droppedEvents(name: string): number {
    return this.runs.get(name)?.dropped ?? 0;
  }

  /** Forgets a capsule (ReloadCapsules drops failed ones): cancels its pending restart and ends its worker. */
  async forget(name: string): Promise<void> {
    this.bumpGeneration(name);
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const run = this.runs.get(name);
    this.runs.delete(name);
    if (run) await this.end(run);
  }

  /** Stops every capsule (shutdown): no restarts, workers terminated. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    this.restartTimers.clear();
    await Promise.all([...this.runs.values()].map(async (run) => {
      if (run.ended) return;
      await this.end(run);
      this.audit.capsule("unload", run.record.name, { reason: "shutdown" });
    }));
  }

  private async end(run: CapsuleRun): Promise<void> {
    if (run.ended) return;
    run.ended = true;
    run.remote.close("its worker stopped");
    for (const off of run.unsubscribe.splice(0)) off();
    await run.worker.terminate();
  }

  /** Marks a capsule failed once per run, announces it, and schedules a restart if attempts remain. */
  private fail(run: CapsuleRun, reason: string): void {
    if (run.ended || this.stopping) {
      void this.end(run);
      return;
    }
    void this.end(run);
    this.markFailed(run.record, reason, () => this.runs.get(run.record.name) === run);
  }

  /** Records a failure, announces it, and schedules a restart while `current()` still holds and attempts remain. */
  private markFailed(record: CapsuleRecord, reason: string, current: () => boolean): void {
    if (this.stopping) return;
    record.state = "failed";
    record.lastError = reason;
    this.logger.error("capsule failed", { capsule: record.name, reason, restarts: record.restarts });
    this.audit.capsule("fail", record.name, { reason });
    this.bus.publish({ topic: HEALTH_FAILED_TOPIC, payload: { type: "custom", data: { capsule_id: record.name, reason } }, source_id: randomUUID() });
    if (record.restarts >= MAX_RESTARTS) {
      record.lastError = `${reason} (gave up after ${MAX_RESTARTS} restarts)`;
      return;
    }
    const delay = Math.min(this.settings.backoffMs * 2 ** record.restarts, RESTART_BACKOFF_MAX_MS);
    const timer = setTimeout(() => {
      this.restartTimers.delete(record.name);
      if (this.stopping || !current()) return;
      record.restarts++;
      this.logger.info("restarting capsule", { capsule: record.name, attempt: record.restarts });
      void this.start(record);
    }, delay);
    this.restartTimers.set(record.name, timer);
  }

  private checkHung(): void {
    const now = Date.now();
    for (const run of this.runs.values()) {
      if (!run.ended && run.outstanding > 0 && now - run.oldestUnacked > this.settings.handlerTimeoutMs) {
        this.fail(run, `an event handler ran longer than ${this.settings.handlerTimeoutMs} ms (hung?)`);
      }
    }
  }

  private deliver(run: CapsuleRun, event: BusEvent, action?: string): void {
    if (run.ended || run.record.state !== "ready") return;
    if (run.outstanding >= CAPSULE_QUEUE_LIMIT) {
      if (run.dropped++ % 1000 === 0) this.logger.warn("capsule queue full; dropping events", { capsule: run.record.name, dropped: run.dropped });
      return;
    }
    if (run.outstanding === 0) run.oldestUnacked = Date.now();
    run.outstanding++;
    const { message } = event;
    const out: ToCapsule = { t: "event", topic: message.topic, payload: guestView(message.payload), source_id: message.source_id, seq: message.seq };
    if (message.principal !== undefined) out.principal = message.principal;
    if (action !== undefined) out.action = action;
    run.post(out);
  }

  private onMessage(run: CapsuleRun, message: FromCapsule): void {
    switch (message.t) {
      case "log":
        this.logger.log(message.level, String(message.message).slice(0, 16_384), { capsule: run.record.name });
        return;
      case "ack":
        run.outstanding = Math.max(0, run.outstanding - message.n);
        run.oldestUnacked = Date.now();
        return;
      case "publish":
        try {
          this.publish(run, "ipc.publish", message.topic, message.payload);
        } catch (err) {
          const code: ErrorCode = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
          this.logger.warn("capsule publish refused and dropped", { capsule: run.record.name, code, error: (err as Error).message });
        }
        return;
      case "syscall":
        this.syscall(run, message.id, message.call, Array.isArray(message.args) ? message.args : []).then(
          (value) => run.post({ t: "reply", id: message.id, ok: true, value }),
          (err: unknown) => {
            const code: ErrorCode = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
            run.post({ t: "reply", id: message.id, ok: false, code, message: (err as Error).message });
          },
        );
        return;
      default:
        return;
    }
  }

  /** Every capsule call, checked against the manifest here in the main thread. */
  private async syscall(run: CapsuleRun, id: number, call: string, args: unknown[]): Promise<unknown> {
    const { record } = run;
    const caps = record.manifest.capabilities;
    const scope = `default:capsule:${record.name}`;
    const str = (v: unknown, name: string) => {
      if (typeof v !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: ${name} must be a string`);
      return v;
    };
    switch (call) {
      case "ipc.publish":
        this.publish(run, call, args[0], args[1]);
        return null;
      case "ipc.subscribe": {
        const pattern = str(args[0], "pattern");
        const segments = pattern.split(".");
        if (Buffer.byteLength(pattern) > 256 || segments.length > 8 || segments.some((s, i) => s === "" || (s === "*" && i !== segments.length - 1))) {
          throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: pattern must be ≤ 256 bytes, ≤ 8 non-empty segments, `*` only last");
        }
        if (!caps.ipc_subscribe.some((p) => exactSegmentMatches(p, pattern))) throw this.denied(run, call, `may not subscribe to ${pattern} (not in ipc_subscribe)`);
        if (run.subscriptions >= MAX_CAPSULE_SUBSCRIPTIONS) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "ipc.subscribe: at most 128 subscriptions");
        run.subscriptions++;
        run.unsubscribe.push(this.bus.subscribe(pattern, (event) => {
          // A capsule never receives its own publications back through its subscriptions.
          if (event.message.source_id !== run.sourceId) this.deliver(run, event);
        }));
        return null;
      }
      case "kv.get": {
        const value = await this.storage.get(scope, str(args[0], "key"));
        return value === null ? null : Buffer.from(value).toString("utf8");
      }
      case "kv.set":
        await this.storage.set(scope, str(args[0], "key"), Buffer.from(str(args[1], "value"), "utf8"));
        return null;
      case "kv.delete":
        return this.storage.delete(scope, str(args[0], "key"));
      case "kv.list":
        return this.storage.listKeys(scope, str(args[0] ?? "", "prefix"));
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${JSON.stringify(call)} (id ${id})`);
    }
  }

  /** Audits a call the manifest does not allow and returns the coded error for it. */
  private denied(run: CapsuleRun, call: string, what: string): AstridError {
    this.audit.capsule("denied", run.record.name, { call, detail: what });
    return new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `${run.record.name}: ${what}`);
  }

  /** A capsule's publish, checked here whichever way it came (syscall or reply-less): topic, ACL, size, rate. */
  private publish(run: CapsuleRun, call: string, topicArg: unknown, raw: unknown): void {
    const { record } = run;
    if (typeof topicArg !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: topic must be a string`);
    const topic = topicArg;
    const problem = topicProblem(topic);
    if (problem) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: ${problem}`);
    if (!record.manifest.capabilities.ipc_publish.some((p) => exactSegmentMatches(p, topic))) {
      throw this.denied(run, call, `may not publish on ${topic} (not in ipc_publish)`);
    }
    const size = Buffer.byteLength(JSON.stringify(raw ?? null));
    if (size > MAX_CAPSULE_PAYLOAD_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `ipc.publish: payload of ${size} bytes exceeds 5 MiB`);
    const now = performance.now(); // monotonic: a wall-clock step cannot freeze the window
    if (now - run.windowStart >= 1000) {
      run.windowStart = now;
      run.windowBytes = 0;
    }
    if (run.windowBytes + size > MAX_CAPSULE_PUBLISH_BYTES_PER_SEC) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `ipc.publish: ${record.name} may publish at most 10 MiB per second`);
    }
    run.windowBytes += size;
    const payload = raw !== null && typeof raw === "object" && !Array.isArray(raw) && typeof (raw as { type?: unknown }).type !== "string"
      ? { type: "raw_json", ...(raw as Record<string, unknown>) }
      : normalizePayload(raw);
    this.bus.publish({ topic, payload, source_id: run.sourceId, principal: "default" });
  }

  /**
   * Subscribes a ready capsule's `[[interceptor]]` events (exact-segment matcher). Every match of one bus event is
   * collected first (the bus calls all subscribers of an event in one synchronous pass), then dispatched once.
   */
  bindInterceptors(record: CapsuleRecord): void {
    const run = this.runs.get(record.name);
    if (!run) return;
    for (const interceptor of record.manifest.interceptor) {
      run.unsubscribe.push(this.bus.subscribe(interceptor.event, (event) => {
        if (event.message.source_id === run.sourceId) return;
        let matches = this.chains.get(event);
        if (!matches) {
          matches = [];
          this.chains.set(event, matches);
          queueMicrotask(() => void this.dispatch(event));
        }
        matches.push({ run, action: interceptor.action, priority: interceptor.priority });
      }, exactSegmentMatches));
    }
  }

  /**
   * Serves a ready capsule's tools: a `tool_execute_request` on `tool.v1.execute.<name>` runs the tool in the
   * capsule's worker (comlink, handler deadline) and the outcome is published as a `tool_execute_result` on
   * `tool.v1.execute.<name>.result`. A dead or slow capsule yields `is_error: true`, never silence.
   */
  private bindTools(run: CapsuleRun): void {
    for (const tool of run.record.tools ?? []) {
      const topic = `${TOOL_EXECUTE_PREFIX}${tool.name}`;
      if (topicProblem(topic)) {
        this.logger.warn("tool name cannot form a topic; not served", { capsule: run.record.name, tool: tool.name });
        continue;
      }
      run.unsubscribe.push(this.bus.subscribe(topic, (event) => void this.runTool(run, tool.name, event), exactSegmentMatches));
    }
  }

  private async runTool(run: CapsuleRun, name: string, event: BusEvent): Promise<void> {
    const request = event.message.payload;
    if (request.type !== "tool_execute_request") return;
    const callId = String(request.call_id);
    let outcome: ToolOutcome;
    try {
      outcome = await run.remote.call<ToolOutcome>((r) => r.executeTool(name, request.arguments) as Promise<ToolOutcome>, this.settings.handlerTimeoutMs);
    } catch (err) {
      outcome = { content: (err as Error).message, is_error: true };
    }
    this.bus.publish({
      topic: `${TOOL_EXECUTE_PREFIX}${name}.result`,
      payload: { type: "tool_execute_result", call_id: callId, result: { call_id: callId, content: outcome.content, is_error: outcome.is_error } },
      source_id: run.sourceId,
      principal: "default",
    });
  }

  /**
   * Reference §6.7: one match goes onto that capsule's ordered queue; several run as a chain by ascending priority,
   * each call bounded by the handler deadline — a returned payload replaces the event's for the next interceptor,
   * `final` or a denial stops the chain, an error or a dead capsule skips that link.
   */
  private async dispatch(event: BusEvent): Promise<void> {
    const matches = this.chains.get(event) ?? [];
    this.chains.delete(event);
    if (matches.length === 1) return this.deliver(matches[0]!.run, event, matches[0]!.action);
    matches.sort((a, b) => a.priority - b.priority);
    const { message } = event;
    let payload = guestView(message.payload);
    for (const link of matches) {
      if (link.run.ended || link.run.record.state !== "ready") continue;
      const input = { topic: message.topic, payload, source_id: message.source_id, seq: message.seq, ...(message.principal !== undefined ? { principal: message.principal } : {}) };
      let result: InterceptResult;
      try {
        result = await link.run.remote.call<InterceptResult>((r) => r.intercept(link.action, input) as Promise<InterceptResult>, this.settings.handlerTimeoutMs);
      } catch (err) {
        this.logger.warn("interceptor skipped", { capsule: link.run.record.name, action: link.action, error: (err as Error).message });
        continue;
      }
      if (result.action === "deny") {
        this.logger.info("interceptor denied an event", { capsule: link.run.record.name, topic: message.topic, reason: result.reason });
        return;
      }
      if (result.data !== undefined) payload = result.data;
      if (result.action === "final") return;
    }
  }
}
