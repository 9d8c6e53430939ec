/**
 * The lifecycle of capsule workers: start (spawn, load, lifecycle hook, setup), failure, restart with backoff
 * (2 s doubling to 120 s, 5 attempts, then failed and visible), the hung-handler watchdog, stop. Each way a
 * capsule can fail — throw at load, exit, hang, run out of memory, send malformed messages — marks it failed with
 * its reason and announces it on `astrid.v1.health.failed`. Syscalls are checked by `syscall-gate.ts`; events,
 * interceptors and tools are routed by `event-dispatch.ts`.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { SetupOutcomeSchema, StepOutcomeSchema, type CapsuleModules, type CapsuleWorkerData, type FromCapsule, type LifecycleHook } from "../../protocol/capsule-messages";
import { AstridError, isAstridError, type ErrorCode } from "../../protocol/errors";
import { NIL_UUID } from "../../protocol/ipc-message";
import { HEALTH_FAILED_TOPIC, ONBOARDING_REQUIRED_TOPIC } from "../../protocol/topics";
import type { AuditLog } from "../audit-log";
import type { EventBus } from "../bus";
import type { Logger } from "../logger";
import type { StorageClient } from "../storage-client";
import type { ResolvedEnv } from "./capsule-env";
import { CapsuleRun, MAX_CAPSULE_LOG_LINES_PER_SEC, MAX_MALFORMED_MESSAGES } from "./capsule-run";
import { EventDispatch } from "./event-dispatch";
import { hookFor, readInstallRecord, writeInstallRecord, type InstallRecord } from "./install-records";
import type { CapsuleRecord } from "./registry";
import { PrincipalQuotas, type QuotaSource } from "./principal-quotas";
import { PermissionGate, type HostContext, type HostService } from "./host-call";
import { AskService } from "./host-ask";
import { FsService } from "./host-fs";
import { SysService } from "./host-sys";
import { HookTrigger } from "./hook-trigger";
import { IdentityService } from "./host-identity";
import { UplinkService } from "./host-uplink";
import { HttpService } from "./host-http";
import { NetService } from "./host-net";
import { McpService } from "./host-mcp";
import { ModelService, type OfferedTool } from "./host-model";
import { MODEL_AGENT_CAPSULE } from "../model/model-endpoint";
import { AgentSelection } from "./agent-selection";
import { ProcessService } from "./host-process";
import { SpareWorkers } from "./spare-workers";
import { SyscallGate, type HostServices } from "./syscall-gate";
import { describeWasm, isWasmCapsule, WASM_LOAD_TIMEOUT_MS, WasmLaunch } from "./wasm/wasm-run";

/** What a capsule's start needs from the filesystem (read by the capsule loader). */
export interface CapsulePreparation {
  env: ResolvedEnv;
  /** Its module files for the confined load; absent: the capsule runs unconfined (tests only). */
  modules?: CapsuleModules;
}

/** Restart policy (reference §2.8). */
export const RESTART_BACKOFF_MS = 2000;
export const RESTART_BACKOFF_MAX_MS = 120_000;
export const MAX_RESTARTS = 5;

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
  /** Most messages one capsule may publish per second. */
  maxPublishesPerSec: number;
}

/** The supervisor's part of the daemon config (`ASTRID_CAPSULE_*`, checked and defaulted in kernel/config.ts). */
export function supervisorSettings(
  config: Pick<import("../config").DaemonConfig, "capsuleReadyTimeoutMs" | "capsuleHookTimeoutMs" | "capsuleHandlerTimeoutMs" | "capsuleRestartBackoffMs" | "capsuleMaxHeapMb" | "capsuleMaxPublishesPerSec">,
): SupervisorSettings {
  return {
    readyTimeoutMs: config.capsuleReadyTimeoutMs,
    hookTimeoutMs: config.capsuleHookTimeoutMs,
    handlerTimeoutMs: config.capsuleHandlerTimeoutMs,
    backoffMs: config.capsuleRestartBackoffMs,
    maxHeapMb: config.capsuleMaxHeapMb,
    maxPublishesPerSec: config.capsuleMaxPublishesPerSec,
  };
}

/** A blue/green reload's switch: called in the same synchronous step that routes the capsule to its next run. */
export interface Handover {
  /**
   * Asked once the next run is ready, just before the switch: whether it still is the capsule's files. False (they
   * changed while it loaded: it may hold a save caught halfway) drops it unswitched; the serving run carries on.
   */
  stillCurrent?(): Promise<boolean>;
  /** Registers the next run's record (GetCapsuleMetadata, the socket policy) in place of the serving one. */
  onSwitch(): void;
}

/** Starts, watches and restarts capsule workers. */
export class CapsuleSupervisor {
  /** The run that serves each capsule (routing goes to it alone). */
  private readonly runs = new Map<string, CapsuleRun>();
  /** A blue/green reload's next run, loading beside the serving one until it is ready. */
  private readonly staging = new Map<string, CapsuleRun>();
  /** Runs replaced by a reload, finishing what they were given before they stop. */
  private readonly retiring = new Set<CapsuleRun>();
  private readonly restartTimers = new Map<string, NodeJS.Timeout>();
  /** Per capsule name, bumped by every start and forget: a start compares it after each await. */
  private readonly generations = new Map<string, number>();
  private readonly watchdog: NodeJS.Timeout;
  private readonly dispatch: EventDispatch;
  private readonly gate: SyscallGate;
  /** `sys.trigger_hook`: fan-outs to other capsules' interceptors. */
  private readonly hooks: HookTrigger;
  /** The host services behind fs, http, process, approval and elicit calls. */
  private readonly services: HostServices;
  /** Capsules' sockets (the `net` calls); also says where a capsule's own Unix socket lives. */
  private readonly net: NetService;
  /** Quotas of the principals capsules act for. */
  private readonly quotas: PrincipalQuotas;
  /** Which agent capsule answers each prompt (exactly one per session). */
  readonly agents: AgentSelection;
  private stopping = false;
  /** ASTRID_HOME (a WebAssembly capsule's `bin/` and transpile cache live under it). */
  private readonly homeRoot: string;
  /** Spawns take turns, one per event-loop turn (see start). */
  private spawnTurn: Promise<void> = Promise.resolve();
  /** Capsule workers started ahead of need: one waits once the first capsule has started. */
  private readonly spares: SpareWorkers;

  constructor(
    private readonly bus: EventBus,
    private readonly storage: StorageClient,
    private readonly logger: Logger,
    private readonly audit: AuditLog,
    private readonly settings: SupervisorSettings,
    private readonly prepare: (record: CapsuleRecord) => Promise<CapsulePreparation>,
    quotaSource: QuotaSource | undefined,
    host: HostContext,
  ) {
    this.quotas = new PrincipalQuotas(quotaSource);
    this.homeRoot = host.home.root;
    this.spares = new SpareWorkers(settings.maxHeapMb, 1);
    this.net = new NetService(host);
    const ask = new AskService(host);
    const model = new ModelService(host, () => this.offeredTools(), (run, topic, payload, principal) => this.gate.publish(run, "model.stream_open", topic, payload, principal));
    this.services = { fs: new FsService(host), http: new HttpService(host), process: new ProcessService(host), approval: ask, elicit: ask, mcp: new McpService(host), model,
      sys: new SysService((sourceId) => this.runBySource(sourceId), () => this.hooks), identity: new IdentityService(host),
      uplink: new UplinkService(host, (run, topic, payload, principal) => this.gate.publish(run, "uplink.send", topic, payload, principal, "claimed", "uplink")),
      net: this.net };
    this.agents = new AgentSelection(bus, logger, host.model, () => this.readyAgents(), randomUUID(), () => model.configured(MODEL_AGENT_CAPSULE));
    this.dispatch = new EventDispatch(bus, logger, settings.handlerTimeoutMs, this.quotas, (run, reason) => run.malformed(reason),
      (run, what) => this.fail(run, `${what} ran past its deadline (hung?)`));
    this.hooks = new HookTrigger({
      readyRuns: () => this.runs.values(),
      deadlineFor: (principal) => Math.min(settings.handlerTimeoutMs, this.quotas.get(principal).max_timeout_secs * 1000),
      timedOut: (run, what) => this.fail(run, `${what} ran past its deadline (hung?)`),
      malformed: (run, reason) => run.malformed(reason),
      logger,
      audit,
    });
    this.gate = new SyscallGate(bus, storage, (run, event) => {
      if (this.agents.admits(run, event)) this.dispatch.deliver(run, event);
    }, this.quotas, settings.maxPublishesPerSec,
      new PermissionGate(host), this.services);
    this.watchdog = setInterval(() => this.checkHung(), Math.min(1000, settings.handlerTimeoutMs / 2));
    this.watchdog.unref();
  }

  /**
   * Starts a capsule; resolves once it is ready or has failed (its record says which). A capsule never installed
   * runs its `install` hook first, one whose version changed its `upgrade` hook; the version is recorded only once
   * the hook succeeded, so a failed hook runs again on the next attempt.
   *
   * With `handover` it is a blue/green reload of a serving capsule: `record` (its changed files, not registered)
   * starts beside the serving run, which keeps every route until the new one is ready; then routing switches in
   * one synchronous step (see switchTo) and the old run drains. A next version that fails to load ends alone — no
   * restart, no health event — and `record` says why (state `failed`, `lastError`); the old one serves on.
   */
  async start(record: CapsuleRecord, handover?: Handover): Promise<void> {
    record.state = "loading";
    // A start that forget() or stopAll() overtook while it awaited must not spawn or mark anything.
    const generation = this.bumpGeneration(record.name);
    const current = () => !this.stopping && this.generations.get(record.name) === generation;
    let installed: InstallRecord | undefined;
    let prepared: CapsulePreparation;
    let ownerQuotas!: { max_memory_bytes: number };
    try {
      installed = await readInstallRecord(this.storage, this.logger, record.name);
      prepared = await this.prepare(record);
      ownerQuotas = await this.quotas.load(record.owner);
    } catch (err) {
      // A syntax error or a bad manifest/entry fails the same way every time: no retries with backoff; the
      // hot-reload watcher starts it again once its files change.
      const deterministic = isAstridError(err) && DETERMINISTIC_LOAD_FAILURES.has(err.code);
      const reason = `cannot prepare its start: ${(err as Error).message}`;
      if (current() && handover) this.rejectReload(record, reason);
      else if (current()) this.markFailed(record, reason, current, deterministic);
      return;
    }
    // A worker's spawn costs the main thread a few milliseconds: a pass that starts many capsules at once gives the
    // socket a turn between spawns instead of stalling every client for all of them together.
    // (An immediate queued from another immediate runs on the next loop turn, after the socket's I/O.)
    const turn = this.spawnTurn.then(() => new Promise<void>((resolve) => setImmediate(resolve)));
    this.spawnTurn = turn;
    await turn;
    if (!current()) return;
    const lifecycle = hookFor(installed, record.version);
    const { env } = prepared;
    if (env.onboarding.length > 0) {
      // Reference §6.5: one event per load listing what the operator must provide; the keys read as "" meanwhile.
      this.bus.publish({
        topic: ONBOARDING_REQUIRED_TOPIC,
        payload: { type: "onboarding_required", capsule_id: record.name, fields: env.onboarding },
        source_id: NIL_UUID,
      });
    }
    const component = record.manifest.component[0]!;
    const data: Omit<CapsuleWorkerData, "control"> = {
      name: record.name,
      file: path.resolve(record.dir, component.file ?? component.entrypoint ?? ""),
      // A capsule that may bind its socket is told where it is (reference: ASTRID_SOCKET_PATH, for net_bind only).
      env: record.manifest.capabilities.net_bind.some((e) => e.trim() !== "") ? { ...env.values, ASTRID_SOCKET_PATH: this.net.socketPath(record.name) } : env.values,
      actions: [...new Set(record.manifest.interceptor.map((i) => i.action))],
      publishAcl: record.manifest.capabilities.ipc_publish,
      maxPublishesPerSec: this.settings.maxPublishesPerSec,
      ...(prepared.modules ? { modules: prepared.modules } : {}),
    };
    let run!: CapsuleRun;
    // A WebAssembly component runs in its own kind of worker, its linear memory capped at the owner's max_memory_bytes.
    const wasm = isWasmCapsule(record) ? new WasmLaunch(record, this.homeRoot, ownerQuotas.max_memory_bytes) : undefined;
    const syscalls = this.gate.forRun(() => (run.ended ? undefined : run));
    run = new CapsuleRun(record, wasm ? Object.assign({ wasm: wasm.start }, data) : data, {
      // The owner's max_memory_bytes caps the worker's heap, never above ASTRID_CAPSULE_MAX_HEAP_MB.
      maxHeapMb: Math.max(8, Math.min(this.settings.maxHeapMb, Math.floor(ownerQuotas.max_memory_bytes / (1024 * 1024)))),
      maxExternalBytes: ownerQuotas.max_memory_bytes,
      owner: record.owner,
      spares: this.spares,
      ...(wasm ? { entry: "wasm-capsule" as const, transfer: [wasm.start.calls] } : {}),
    }, syscalls, {
      message: (r, message) => this.onMessage(r, message),
      // Whatever the run held in the host (processes, pending questions, staged streams) goes with it.
      ended: (r) => {
        for (const service of this.uniqueServices()) service.endRun?.(r);
      },
      malformed: (r, reason, count) => this.onMalformed(r, reason, count),
    });
    wasm?.attach(run, syscalls);
    (handover ? this.staging : this.runs).set(record.name, run);
    // The worker's death ends its start at once (pending calls reject); the reason is the exit's, not the call's.
    let died: string | undefined;
    run.worker.on("error", (err: Error & { code?: string }) => {
      died ??= err.code === "ERR_WORKER_OUT_OF_MEMORY" ? "ran out of memory (worker resource limit)" : `crashed: ${err.message}`;
      this.fail(run, died);
    });
    run.worker.on("exit", (code) => {
      died ??= `exited with code ${code}`;
      this.fail(run, died);
    });
    const { readyTimeoutMs, hookTimeoutMs } = this.settings;
    try {
      await this.step(run, "load", StepOutcomeSchema, (c) => c.load(), wasm ? Math.max(readyTimeoutMs, WASM_LOAD_TIMEOUT_MS) : readyTimeoutMs, "did not become ready", "failed to load");
      if (wasm) record.wasm = (await describeWasm(run, readyTimeoutMs)) ?? undefined;
      // What the capsule brings into the host (its own MCP servers) starts before its hooks and setup can use it.
      for (const service of this.uniqueServices()) await service.beginRun?.(run);
      if (lifecycle) {
        // Elicitation is allowed only while the install or upgrade hook runs (reference §6.10).
        run.inLifecycleHook = true;
        try {
          await this.step(run, lifecycle.hook, StepOutcomeSchema, (c) => c.runHook(lifecycle), hookTimeoutMs, `its ${lifecycle.hook} hook did not finish`, "failed to load");
        } finally {
          run.inLifecycleHook = false;
        }
        // Ready only counts once the install record is durable; a record that cannot be written fails the load.
        try {
          await writeInstallRecord(this.storage, record.name, record.version, installed);
        } catch (err) {
          throw new StartFailure(`cannot record its ${lifecycle.hook}: ${(err as Error).message}`);
        }
        this.recordedHook(record, lifecycle);
      }
      const setup = await this.step(run, "setup", SetupOutcomeSchema, (c) => c.setup(), readyTimeoutMs,
        lifecycle ? "did not become ready after its lifecycle hook" : "did not become ready", "failed to load");
      if (run.ended) return;
      if (handover?.stillCurrent && !(await handover.stillCurrent())) {
        if (!run.ended) this.dropSuperseded(run);
        return;
      }
      if (run.ended) return;
      if (handover) this.switchTo(run, setup.ok ? setup.tools : [], handover);
      else this.onReady(run, setup.ok ? setup.tools : []);
    } catch (err) {
      if (run.ended) return; // its exit or a newer start already accounted for it
      if (err instanceof StartFailure) this.fail(run, err.message, err.deterministic);
      else this.fail(run, died ?? (err as Error).message);
    }
  }

  /** One control-plane step of a start: its answer validated, a timeout or a refusal turned into a StartFailure. */
  private async step<T extends { ok: boolean }>(
    run: CapsuleRun,
    what: string,
    schema: { safeParse(v: unknown): { success: true; data: T } | { success: false } },
    invoke: (c: import("comlink").Remote<import("../../protocol/capsule-messages").CapsuleControl>) => Promise<unknown>,
    timeoutMs: number,
    timeoutReason: string,
    refusedPrefix: string,
  ): Promise<T> {
    let raw: unknown;
    try {
      raw = await run.remote.call(invoke, timeoutMs);
    } catch (err) {
      if (isAstridError(err) && err.code === "ASTRID_ERR_TIMEOUT") throw new StartFailure(`${timeoutReason} within ${timeoutMs} ms`);
      throw err;
    }
    const parsed = schema.safeParse(raw);
    if (!parsed.success) {
      run.malformed(`control plane: malformed answer to ${what}`);
      throw new StartFailure(`${refusedPrefix}: malformed answer to ${what}`);
    }
    const outcome = parsed.data as T & { message?: string; deterministic?: true };
    if (!outcome.ok) throw new StartFailure(`${refusedPrefix}: ${outcome.message ?? what}`, outcome.deterministic === true);
    return parsed.data;
  }

  private onReady(run: CapsuleRun, tools: CapsuleRecord["tools"]): void {
    const { record } = run;
    record.state = "ready";
    delete record.lastError;
    record.tools = tools ?? [];
    this.logger.info("capsule ready", { capsule: record.name, version: record.version });
    this.audit.capsule(record.restarts > 0 ? "restart" : "load", record.name, { version: record.version });
    // A run-loop WebAssembly capsule drains its own subscriptions; the hook-trigger path is not its (reference).
    // Only the single world has a call that reads an interceptor handle: a per-domain guest would never drain them.
    if (!run.record.wasm?.exports.includes("run")) this.dispatch.bindInterceptors(run);
    else if (run.record.wasm.abi === "astrid:capsule@0.1.0") this.dispatch.bindRunLoopInterceptors(run);
    this.dispatch.bindTools(run);
  }

  /**
   * The switch of a blue/green reload, one synchronous step (the bus delivers synchronously, so no event falls
   * between): the next run becomes ready and binds its interceptors and tools — its own subscriptions, made
   * during setup, admit events from now on — while every route of the old run goes. An event matched before the
   * switch stays the old run's (it handles it while it drains); one matched after is the new run's: exactly once.
   */
  private switchTo(run: CapsuleRun, tools: CapsuleRecord["tools"], handover: Handover): void {
    const name = run.record.name;
    const old = this.runs.get(name);
    this.staging.delete(name);
    this.runs.set(name, run);
    if (old) for (const off of old.unsubscribe.splice(0)) off();
    this.onReady(run, tools);
    handover.onSwitch();
    if (old && !old.ended) void this.retire(old);
  }

  /**
   * A replaced run finishes what it was given — no unacknowledged event, no call or syscall in flight — for at most
   * the handler timeout, then stops. Whatever the host held for it (processes, questions) goes with it.
   */
  private async retire(run: CapsuleRun): Promise<void> {
    this.retiring.add(run);
    const deadline = Date.now() + this.settings.handlerTimeoutMs;
    while (!run.ended && (run.outstanding > 0 || run.remote.inflight > 0 || run.inflightSyscalls > 0) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (!run.ended && Date.now() >= deadline) {
      this.logger.warn("replaced capsule version still busy after the handler timeout; stopping it", { capsule: run.record.name, version: run.record.version });
    }
    await run.end("replaced by its new version");
    this.retiring.delete(run);
  }

  /**
   * A blue/green reload's next run that loaded files which changed meanwhile: it ends without taking a route (no
   * failure: the watcher's next pass loads the files as they are then) and the serving run carries on.
   */
  private dropSuperseded(run: CapsuleRun): void {
    const { record } = run;
    if (this.staging.get(record.name) === run) this.staging.delete(record.name);
    record.state = "failed";
    record.lastError = "its files changed while this version loaded";
    this.logger.info("capsule's files changed while its new version loaded; the previous version keeps serving", { capsule: record.name, version: record.version });
    void run.end("its files changed while it loaded");
  }

  /** A blue/green reload's next version did not load: it is dropped and the serving version carries on. */
  private rejectReload(record: CapsuleRecord, reason: string): void {
    record.state = "failed";
    record.lastError = reason;
    this.logger.error("capsule's changed files did not load; the previous version keeps serving", { capsule: record.name, version: record.version, reason });
    this.audit.capsule("fail", record.name, { reason, version: record.version });
  }

  /** Says in the log and the audit trail that a lifecycle hook succeeded and was recorded. */
  private recordedHook(record: CapsuleRecord, lifecycle: LifecycleHook): void {
    const detail = lifecycle.hook === "upgrade" ? { from: lifecycle.from, to: record.version } : { version: record.version };
    this.logger.info(`capsule ${lifecycle.hook} hook done`, { capsule: record.name, ...detail });
    this.audit.capsule(lifecycle.hook, record.name, detail);
  }

  /** A valid data-plane message from a capsule: a log line, its memory report, or a reply-less publish. */
  private onMessage(run: CapsuleRun, message: Exclude<FromCapsule, { t: "ack" }>): void {
    if (message.t === "stats") {
      if (message.external > run.maxExternalBytes) {
        this.fail(run, `held ${Math.round(message.external / 1048576)} MB outside the V8 heap (ArrayBuffers, external memory); its quota is ${Math.round(run.maxExternalBytes / 1048576)} MB`);
      }
      return;
    }
    if (message.t === "log") {
      const admitted = run.admitLogLine();
      if (admitted === "first-drop") {
        this.logger.warn("capsule log lines dropped: more than the per-second budget (the count comes with its next line)", {
          capsule: run.record.name, lines_per_sec: MAX_CAPSULE_LOG_LINES_PER_SEC,
        });
      }
      if (admitted !== "write") return;
      const dropped = run.droppedLogLines;
      run.droppedLogLines = 0;
      this.logger.log(message.level, message.message.slice(0, 16_384), { capsule: run.record.name, ...(dropped > 0 ? { dropped_log_lines: dropped } : {}) });
      return;
    }
    try {
      this.gate.publish(run, "ipc.publish", message.topic, message.payload, run.principalFor(message.seq));
    } catch (err) {
      // One warning per second and capsule at most, with the count: a flood of refused publishes must not flood the log.
      const code: ErrorCode = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
      const now = performance.now();
      if (now - run.refusedLoggedAt >= 1000) {
        this.logger.warn("capsule publish refused and dropped", {
          capsule: run.record.name, code, error: (err as Error).message, ...(run.refusedSinceLog > 0 ? { also_refused: run.refusedSinceLog } : {}),
        });
        run.refusedLoggedAt = now;
        run.refusedSinceLog = 0;
      } else run.refusedSinceLog++;
    }
  }

  /** A malformed message: logged and audited once per run, and the capsule failed after MAX_MALFORMED_MESSAGES. */
  private onMalformed(run: CapsuleRun, reason: string, count: number): void {
    if (count === 1) {
      this.logger.warn("capsule sent a malformed message; dropped (logged once per run)", { capsule: run.record.name, reason });
      this.audit.capsule("protocol_violation", run.record.name, { reason });
    }
    if (count >= MAX_MALFORMED_MESSAGES) this.fail(run, `sent ${count} malformed messages (first or latest: ${reason})`);
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

  /**
   * The operator's call of one capsule's tool (`CallTool`): refused with ASTRID_ERR_NOT_FOUND when the capsule is
   * not ready or offers no such tool; otherwise the outcome, `is_error` for the tool's own failure.
   */
  async callTool(capsule: string, tool: string, args: unknown, principal: string, seq: number): Promise<{ content: unknown; is_error: boolean }> {
    const run = this.runs.get(capsule);
    if (!run || run.ended || run.record.state !== "ready") {
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `no ready capsule named ${JSON.stringify(capsule)} (see astrid capsule list)`);
    }
    if (!(run.record.tools ?? []).some((t) => t.name === tool)) {
      const offered = (run.record.tools ?? []).map((t) => t.name);
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `${capsule} offers no tool ${JSON.stringify(tool)} (it offers ${offered.length > 0 ? offered.join(", ") : "none"}; see astrid tool list)`);
    }
    return this.dispatch.executeTool(run, tool, args, seq, principal);
  }

  /**
   * Stops routing new events, interceptor calls and tool calls to a capsule (its state becomes `unloading`) and
   * waits until what it was given is handled — no unacknowledged event, no call or syscall in flight — or
   * `timeoutMs` passed. Resolves with whether it drained in time; the caller then forgets it.
   */
  async drain(name: string, timeoutMs: number): Promise<boolean> {
    const run = this.runs.get(name);
    if (!run || run.ended) return true;
    run.record.state = "unloading";
    for (const unsubscribe of run.unsubscribe.splice(0)) unsubscribe();
    const deadline = Date.now() + timeoutMs;
    while (!run.ended && (run.outstanding > 0 || run.remote.inflight > 0 || run.inflightSyscalls > 0)) {
      if (Date.now() >= deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return true;
  }

  /** Forgets a capsule (ReloadCapsules drops failed ones): cancels its pending restart and ends its worker. */
  async forget(name: string): Promise<void> {
    this.bumpGeneration(name);
    clearTimeout(this.restartTimers.get(name));
    this.restartTimers.delete(name);
    const run = this.runs.get(name);
    const staged = this.staging.get(name);
    this.runs.delete(name);
    this.staging.delete(name);
    await Promise.all([run?.end("its worker stopped"), staged?.end("its worker stopped")]);
  }

  /** The live run (serving, staged or retiring) whose bus source id is `sourceId`. */
  private runBySource(sourceId: string): CapsuleRun | undefined {
    for (const run of [...this.runs.values(), ...this.staging.values(), ...this.retiring]) if (run.sourceId === sourceId && !run.ended) return run;
    return undefined;
  }

  /** Tests only (kernel/test-faults.ts): ends a capsule's worker as a crash would; false when none runs. */
  crashForTest(name: string): boolean {
    const run = this.runs.get(name);
    if (!run || run.ended) return false;
    void run.worker.terminate();
    return true;
  }

  /** Stops every capsule (shutdown): no restarts, workers terminated. */
  async stopAll(): Promise<void> {
    this.stopping = true;
    clearInterval(this.watchdog);
    for (const timer of this.restartTimers.values()) clearTimeout(timer);
    this.restartTimers.clear();
    await Promise.all([...this.staging.values(), ...this.retiring].map((run) => run.end("the daemon is shutting down")));
    await Promise.all([...this.runs.values()].map(async (run) => {
      if (run.ended) return;
      await run.end("the daemon is shutting down");
      this.audit.capsule("unload", run.record.name, { reason: "shutdown" });
    }));
    await Promise.all(this.uniqueServices().map((service) => service.close?.()));
    await this.spares.close();
  }

  /** The daemon is ready: spare workers for later starts and reloads may now take CPU. */
  booted(): void {
    this.spares.release();
  }

  /** The ready capsules marked as agents (`[package] agent = true`). */
  private readyAgents(): string[] {
    const names: string[] = [];
    for (const run of this.runs.values()) if (!run.ended && run.record.state === "ready" && run.record.manifest.package.agent === true) names.push(run.record.name);
    return names;
  }

  /** The tools ready capsules offer, for the model agent (names usable as function names only). */
  private offeredTools(): OfferedTool[] {
    const tools: OfferedTool[] = [];
    for (const run of this.runs.values()) {
      if (run.ended || run.record.state !== "ready") continue;
      for (const tool of run.record.tools ?? []) {
        if (!/^[A-Za-z0-9_-]{1,64}$/.test(tool.name)) continue;
        tools.push({ capsule: run.record.name, name: tool.name, description: tool.description, ...(tool.input_schema !== undefined ? { input_schema: tool.input_schema } : {}) });
      }
    }
    return tools;
  }

  /** Each host service once (approval and elicit share one). */
  private uniqueServices(): HostService[] {
    return [...new Set(Object.values(this.services))];
  }

  /** Marks a capsule failed once per run, announces it, and schedules a restart if attempts remain. */
  private fail(run: CapsuleRun, reason: string, deterministic = false): void {
    if (run.ended || this.stopping) {
      void run.end(reason);
      return;
    }
    void run.end(reason);
    if (this.staging.get(run.record.name) === run) {
      this.staging.delete(run.record.name);
      this.rejectReload(run.record, reason);
      return;
    }
    if (this.retiring.has(run)) return; // replaced: its successor serves
    this.markFailed(run.record, reason, () => this.runs.get(run.record.name) === run, deterministic);
  }

  /** Records a failure, announces it, and schedules a restart while `current()` still holds and attempts remain. */
  private markFailed(record: CapsuleRecord, reason: string, current: () => boolean, deterministic = false): void {
    if (this.stopping) return;
    record.state = "failed";
    record.lastError = reason;
    this.logger.error("capsule failed", { capsule: record.name, reason, restarts: record.restarts });
    this.audit.capsule("fail", record.name, { reason });
    this.bus.publish({ topic: HEALTH_FAILED_TOPIC, payload: { type: "custom", data: { capsule_id: record.name, reason } }, source_id: randomUUID() });
    if (deterministic) {
      record.lastError = `${reason}\n(not retried: it loads again when its files change)`;
      return;
    }
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
}

/** Load failures that repeat until the capsule's files change (so a restart with backoff cannot help). */
const DETERMINISTIC_LOAD_FAILURES: ReadonlySet<string> = new Set(["ASTRID_ERR_CAPSULE_SYNTAX", "ASTRID_ERR_MANIFEST_INVALID"]);

/** A start that failed for a reason the user should read as is; `deterministic` when retrying cannot help. */
class StartFailure extends Error {
  constructor(message: string, readonly deterministic = false) {
    super(message);
  }
}
