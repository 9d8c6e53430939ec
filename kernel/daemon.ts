/**
 * Boot and shutdown of the kernel, in the reference's order (§2.2, §2.9). The main thread owns the socket, the
 * session token and the checks; everything a boot step creates on disk is removed again on shutdown, and on a
 * boot that fails after binding.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../protocol/errors";
import type { DaemonStatus } from "../protocol/kernel-request";
import { CHAIN_BROKEN_ACTION } from "../protocol/storage-messages";
import { CAPSULES_LOADED_TOPIC, KERNEL_SHUTDOWN_TOPIC } from "../protocol/topics";
import { rawJson } from "../protocol/ipc-message";
import { DAEMON_VERSION } from "../protocol/version";
import { EventBus } from "./bus";
import { capsuleHash } from "./capsules/content-hash";
import { discoverCapsules } from "./capsules/discovery";
import { installCapsule } from "./capsules/installer";
import { MANIFEST_FILE } from "./capsules/manifest";
import { CapsuleRegistry, type CapsuleRecord } from "./capsules/registry";
import { capsuleEnv, operatorEnvDir, operatorEnvFile } from "./capsules/capsule-env";
import { loadOrder } from "./capsules/load-order";
import { CapsuleSupervisor, supervisorSettings } from "./capsules/supervisor";
import { CapsuleWatcher } from "./capsules/watcher";
import { ConnectionTracker } from "./connection-tracker";
import { resolveHome, type AstridHome } from "./home";
import { IdleMonitor, idleSettings } from "./idle-monitor";
import { openStateDatabaseReadOnly } from "../workers/storage/database";
import { acquireHomeLock, type ReleaseLock } from "./home-lock";
import { CLI_CAPSULE_NAME, SocketPolicy } from "./ingress-policy";
import { closeLogger, createLogger, type Logger } from "./logger";
import { ManagementRouter } from "./management-router";
import { SessionToken } from "./session-token";
import { checkSocketPathLength, isSymlink, prepareSocketPath, probeSocket } from "./socket-prepare";
import { SocketServer } from "./socket-server";
import { AuditLog } from "./audit-log";
import { loadOrCreateRuntimeKey, tightenRuntimeKeyMode } from "./runtime-key";
import { StorageClient } from "./storage-client";

/** How long boot waits for its capsules before it serves anyway (`ASTRID_CAPSULE_BOOT_WAIT_MS`). */
const BOOT_CAPSULE_WAIT_MS = 5000;

/** Hot reload pauses for a capsule changed more than this many times within the window (see reconcile). */
const RELOAD_BURST = 30;
const RELOAD_BURST_WINDOW_MS = 60_000;

/** The capsules shipped with the daemon (`<package>/capsules`), from source and from dist/ alike. */
export const BUNDLED_CAPSULES_DIR = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? "../.." : "..", "capsules");

/** How to run the daemon (from the command line and the environment). */
export interface DaemonOptions {
  sessionId: string;
  workspace: string;
  ephemeral: boolean;
  verbose: boolean;
  /** Print readable log lines to stderr too. */
  console: boolean;
  maxClients: number;
  env: NodeJS.ProcessEnv;
  /** Where bundled capsules live; `ASTRID_BUNDLED_CAPSULES_DIR` overrides it. */
  bundledCapsulesDir: string;
  /** Hot reload: watch the capsule directories and reload capsules whose files change. */
  watch: boolean;
}

/** A booted daemon. `exited` resolves with the process exit code once shutdown has finished. */
export class Daemon {
  private readonly startedAt = Date.now();
  private stopping: Promise<void> | undefined;
  private reloadChain: Promise<void> = Promise.resolve();
  /** Why the CLI capsule cannot give the socket a policy now (logged once per distinct reason). */
  private socketPolicyProblem: string | undefined;
  private installChain: Promise<unknown> = Promise.resolve();
  private readonly reloadTimes = new Map<string, number[]>();
  private readonly reloadPaused = new Set<string>();
  private watcher: CapsuleWatcher | undefined;
  private resolveExit!: (code: number) => void;
  /** Resolves with the exit code once shutdown completes. */
  readonly exited = new Promise<number>((resolve) => (this.resolveExit = resolve));

  private constructor(
    readonly home: AstridHome,
    private readonly options: DaemonOptions,
    private readonly logger: Logger,
    private readonly bus: EventBus,
    private readonly registry: CapsuleRegistry,
    private readonly server: SocketServer,
    private readonly tracker: ConnectionTracker,
    private readonly router: ManagementRouter,
    private readonly idle: IdleMonitor,
    private readonly storage: StorageClient,
    private readonly audit: AuditLog,
    private readonly auditIntact: boolean,
    private readonly supervisor: CapsuleSupervisor,
    private readonly releaseLock: ReleaseLock,
  ) {}

  /** Boots the kernel; on failure nothing it created is left behind and the error says what to do. */
  static async boot(options: DaemonOptions): Promise<Daemon> {
    // 1–2. Home, then logging. A live daemon is detected before anything on disk is touched.
    const home = resolveHome(options.env);
    checkSocketPathLength(home.socketPath);
    // A symlink at the path is never our socket (reference §2.3 removes it first); probing it would follow it.
    if (!isSymlink(home.socketPath) && (await probeSocket(home.socketPath)) === "live") {
      throw new AstridError("ASTRID_ERR_ALREADY_RUNNING", `Another kernel instance is already running on this socket: ${home.socketPath}`);
    }
    const settings = idleSettings(options.ephemeral, options.env);
    home.ensure();
    const releaseLock = await acquireHomeLock(home.lockPath);
    let logger: Logger;
    try {
      logger = createLogger({ logDir: home.logDir, level: options.verbose ? "debug" : "info", console: options.console });
    } catch (err) {
      releaseLock();
      throw err;
    }
    logger.info("daemon booting", { version: DAEMON_VERSION, pid: process.pid, home: home.root, session: options.sessionId, workspace: options.workspace, ephemeral: options.ephemeral });
    const bus = new EventBus((err, event) => logger.error("bus subscriber failed", { topic: event.message.topic, error: String(err) }));
    const registry = new CapsuleRegistry();

    let server: SocketServer | undefined;
    let token: SessionToken | undefined;
    let storage: StorageClient | undefined;
    try {
      // 3–4. The storage worker (KV + audit, var/state.db), signed with keys/runtime.key; verify the chain.
      const keyPath = path.join(home.keysDir, "runtime.key");
      // A key without a database means an earlier audit log was removed: say so, in the log and in the new chain.
      const logRemoved = fs.existsSync(keyPath) && !fs.existsSync(home.stateDbPath);
      // A database without its key: a new key could never verify the old log, and the next boot would mark it broken
      // for good. Refuse instead, so the operator can restore the key.
      if (!fs.existsSync(keyPath) && fs.existsSync(home.stateDbPath) && holdsSignedAudit(home.stateDbPath)) {
        throw new AstridError("ASTRID_ERR_RUNTIME_KEY_INVALID",
          `${keyPath} is missing (or a dangling link) but ${home.stateDbPath} holds an audit log signed with it. ` +
            "Restore the key; to start a new signing identity and a new log, move state.db aside first.");
      }
      const seed = loadOrCreateRuntimeKey(keyPath);
      const looseMode = tightenRuntimeKeyMode(keyPath);
      if (looseMode !== null) {
        logger.warn("the runtime key was readable by others; its mode is 0600 again (whoever read it can sign audit entries)", {
          key: keyPath, mode: `0${looseMode.toString(8)}`,
        });
      }
      storage = await StorageClient.open({
        dbPath: home.stateDbPath,
        seed,
        logger,
        allowFaultInjection: options.env.ASTRID_TEST_FAULTS === "1",
      });
      const audit = new AuditLog(storage, options.sessionId);
      if (logRemoved) {
        logger.error("var/state.db is missing although keys/runtime.key exists: the earlier audit log and KV were removed; starting new ones", { db: home.stateDbPath });
        await audit.boot({ type: "audit_log_created", note: "keys/runtime.key predates this log: an earlier var/state.db was removed" });
      }
      const report = await storage.verifyAudit();
      if (report.intact) logger.info("audit chain verified", { entries: report.entries });
      // Reference §2.2 step 4: problems are logged at error level and never block boot.
      else {
        logger.error("audit chain is broken", { entries: report.entries, ...report.broken });
        // Before anything is signed on top of it (a signature vouches for every entry before it), the break goes
        // into the chain itself, so that no later boot can make a tampered log verify again.
        if (!report.marked && report.broken) {
          const { seq, id, reason } = report.broken;
          await audit.boot({ type: CHAIN_BROKEN_ACTION, broken_seq: seq, broken_id: id, reason }, reason);
        }
      }
      // 6. Bind the socket, then write the token, before any capsule can see a client.
      await prepareSocketPath(home.socketPath);
      rmIfExists(home.readyPath);
      const proxySourceId = randomUUID();
      const discovered = discoverCapsules(capsuleRoots(home, options));
      const cli = discovered.capsules.find((c) => c.manifest.package.name === CLI_CAPSULE_NAME);
      // The socket policy is needed to serve; its absence is reported at step 14 like the reference.
      const policy = cli ? SocketPolicy.fromManifest(cli.manifest) : new SocketPolicy([], []);
      token = SessionToken.generate();
      server = new SocketServer({
        socketPath: home.socketPath,
        token,
        bus,
        policy,
        logger,
        maxClients: options.maxClients,
        proxySourceId,
        kernelSourceId: options.sessionId,
        principal: "default",
        audit,
      });
      await server.listen();
      token.write(home.tokenPath);
      logger.info("socket bound", { socket: home.socketPath, max_clients: options.maxClients });

      // 11. Background tasks.
      const tracker = new ConnectionTracker(bus);
      let daemon: Daemon | undefined;
      const router = new ManagementRouter(bus, {
        status: () => daemon!.status(),
        capsuleNames: () => registry.all().map((r) => r.name),
        commands: () => daemon!.commands(),
        capsuleMetadata: () => daemon!.capsuleMetadata(),
        reloadCapsules: () => daemon!.reloadCapsules("ReloadCapsules"),
        installCapsule: (source, workspace) => daemon!.install(source, workspace),
        shutdown: (reason) => void daemon!.shutdown(reason),
        kvGet: (scope, key) => storage!.get(scope, key),
        kvSet: (scope, key, value) => storage!.set(scope, key, value),
        kvList: (scope, prefix) => storage!.listKeys(scope, prefix),
      }, logger, options.sessionId, audit);
      const idle = new IdleMonitor(
        settings,
        () => tracker.total === 0 && registry.ready().every((r) => r.manifest.uplink.length === 0),
        () => void daemon!.shutdown("idle_timeout"),
      );
      const supervisor = new CapsuleSupervisor(bus, storage, logger, audit, supervisorSettings(options.env), (record) => capsuleEnv(home, record));
      daemon = new Daemon(home, options, logger, bus, registry, server, tracker, router, idle, storage, audit, report.intact, supervisor, releaseLock);

      // 13. Load capsules. 14. Require the CLI proxy policy.
      await daemon.initialLoad(discovered);
      const cliRecord = registry.get(CLI_CAPSULE_NAME);
      if (!cliRecord || cliRecord.state !== "ready") {
        const why = discovered.problems.filter((p) => p.file.includes(CLI_CAPSULE_NAME)).map((p) => ` (${p.message})`).join("");
        throw new AstridError("ASTRID_ERR_CLI_CAPSULE_MISSING",
          `CLI proxy capsule (${CLI_CAPSULE_NAME}) not found${why}. Reinstall astrid-daemon, or install it into ${home.principalCapsulesDir("default")}/${CLI_CAPSULE_NAME}/`);
      }

      if (options.watch) await daemon.watchCapsules();

      // 15. Ready.
      fs.writeFileSync(home.readyPath, "", { mode: 0o600 });
      idle.start();
      logger.info("daemon ready", { capsules: registry.all().map((r) => `${r.name}@${r.version}:${r.state}`), idle_timeout_ms: settings.timeoutMs });
      return daemon;
    } catch (err) {
      logger.error("boot failed", { error: (err as Error).message, code: (err as AstridError).code });
      // Reference §11 item 11: it leaves the socket and token behind. We do not.
      await server?.close(500);
      await storage?.close();
      if (token) rmIfExists(home.tokenPath);
      rmIfExists(home.readyPath);
      releaseLock();
      await closeLogger(logger);
      throw err;
    }
  }

  /** DaemonStatus for GetStatus and `astrid status`. */
  status(): DaemonStatus {
    return {
      pid: process.pid,
      uptime_secs: Math.floor((Date.now() - this.startedAt) / 1000),
      version: DAEMON_VERSION,
      ephemeral: this.options.ephemeral,
      connected_clients: this.tracker.total,
      loaded_capsules: this.registry.ready().map((r) => r.name),
      audit_chain_intact: this.auditIntact,
    };
  }

  private commands(): Array<{ name: string; description: string; provider_capsule: string }> {
    return this.registry.ready().flatMap((r) =>
      r.manifest.command.map((c) => ({ name: c.name, description: c.description ?? "No description", provider_capsule: r.name })),
    );
  }

  private capsuleMetadata(): Array<{ name: string; interceptor_events: string[]; [extra: string]: unknown }> {
    return this.registry.all().map((r) => ({
      name: r.name,
      interceptor_events: r.manifest.interceptor.map((i) => i.event),
      version: r.version,
      state: r.state,
      source_dir: r.dir,
      restarts: r.restarts,
      dropped_events: this.supervisor.droppedEvents(r.name),
      capabilities: r.manifest.capabilities,
      commands: r.manifest.command.map((c) => ({ name: c.name, description: c.description ?? "No description" })),
      tools: r.tools ?? [],
      ...(r.lastError !== undefined ? { last_error: r.lastError } : {}),
    }));
  }

  /**
   * ReloadCapsules and the watcher, one pass at a time. Reference §11 item 2 fixed: its ReloadCapsules only loaded
   * capsules not yet registered. Here a capsule whose files changed restarts with them (its upgrade hook runs when
   * the version changed), a removed one unloads, a failed one starts afresh, a new one loads; one whose manifest
   * became invalid stays listed as failed with the manifest error. Then `astrid.v1.capsules_loaded` tells clients.
   */
  reloadCapsules(trigger: string, explicit = true): Promise<void> {
    const run = this.reloadChain.then(() => this.reconcile(trigger, explicit));
    this.reloadChain = run.catch((err: Error) => {
      this.logger.error("capsule reload failed", { trigger, error: err.message });
    });
    return run;
  }

  /**
   * One reload pass. `explicit` (ReloadCapsules) also gives failed capsules a fresh start and lifts the hot-reload
   * pause; a watcher pass touches only capsules whose fingerprint changed, and pauses hot reload for a capsule
   * that changes more than RELOAD_BURST (`ASTRID_HOT_RELOAD_BURST`) times within RELOAD_BURST_WINDOW_MS (one that
   * writes into its own directory would otherwise restart forever).
   */
  private async reconcile(trigger: string, explicit: boolean): Promise<void> {
    if (this.stopping) return;
    if (explicit) this.reloadPaused.clear();
    this.audit.capsule("reload", "*", { trigger });
    const discovered = discoverCapsules(capsuleRoots(this.home, this.options));
    const found = new Map(discovered.capsules.map((loaded) => [loaded.manifest.package.name, loaded]));
    const broken = new Map(discovered.problems.map((problem) => [path.dirname(problem.file), problem.message]));
    for (const record of this.registry.all()) {
      const next = found.get(record.name);
      const manifestError = broken.get(record.dir);
      let why: string | undefined;
      if (manifestError !== undefined) why = record.lastError === manifestError ? undefined : "its manifest became invalid";
      else if (!next) why = "it was removed";
      else if (next.dir !== record.dir) why = `the copy in ${next.dir} now takes precedence`;
      else if ((await this.fingerprint(next.dir, record.name)) !== record.hash) why = "its files changed";
      else if (explicit && record.state === "failed") why = "it had failed";
      if (why === undefined) continue;
      if (why === "its files changed" && !explicit && this.reloadBurst(record.name)) continue;
      this.registry.unregister(record.name);
      await this.supervisor.forget(record.name);
      this.logger.info("capsule unloaded", { capsule: record.name, reason: why });
      this.audit.capsule("unload", record.name, { reason: why });
      if (manifestError !== undefined) {
        const placeholder = { manifest: record.manifest, dir: record.dir, file: path.join(record.dir, MANIFEST_FILE), warnings: [] };
        this.registry.register(placeholder, "failed", manifestError);
      }
    }
    await this.loadDiscovered(discovered);
    this.applySocketPolicy();
    this.publishCapsulesLoaded();
  }

  /**
   * After a reload pass: the socket takes the policy of the CLI capsule as it now reads (the reference reads it
   * once at boot). While that capsule is missing or its manifest invalid, the socket keeps the last valid policy
   * rather than lock every client out; the daemon would not boot that way, so it is logged as an error.
   */
  private applySocketPolicy(): void {
    const cli = this.registry.get(CLI_CAPSULE_NAME);
    if (cli?.state !== "ready") {
      const why = cli?.lastError ?? "it was removed";
      if (why !== this.socketPolicyProblem) {
        this.socketPolicyProblem = why;
        this.logger.error("socket policy capsule unusable; clients keep the last valid policy, and the daemon will not start again until it is fixed", {
          capsule: CLI_CAPSULE_NAME, error: why,
        });
      }
      return;
    }
    this.socketPolicyProblem = undefined;
    const next = SocketPolicy.fromManifest(cli.manifest);
    if (next.equals(this.server.policyInForce)) return;
    this.server.setPolicy(next);
    this.logger.info("socket policy reloaded", { capsule: CLI_CAPSULE_NAME, dir: cli.dir, publish: next.ingress, forward: next.egress });
    this.audit.capsule("reload", CLI_CAPSULE_NAME, { socket_policy: { publish: next.ingress, forward: next.egress } });
  }

  /** Records a change-driven reload of `name`; true when hot reload is (now) paused for it. */
  private reloadBurst(name: string): boolean {
    if (this.reloadPaused.has(name)) return true;
    const now = Date.now();
    const times = (this.reloadTimes.get(name) ?? []).filter((t) => now - t < RELOAD_BURST_WINDOW_MS);
    times.push(now);
    this.reloadTimes.set(name, times);
    const burst = Number(this.options.env.ASTRID_HOT_RELOAD_BURST) > 0 ? Number(this.options.env.ASTRID_HOT_RELOAD_BURST) : RELOAD_BURST;
    if (times.length <= burst) return false;
    this.reloadPaused.add(name);
    this.logger.warn("hot reload paused for a capsule whose files keep changing (does it write into its own directory?); send ReloadCapsules to resume", {
      capsule: name, reloads: times.length, window_ms: RELOAD_BURST_WINDOW_MS,
    });
    return true;
  }

  /** What a reload compares: the capsule directory and the operator's env file for it. */
  private fingerprint(dir: string, name: string): Promise<string> {
    return capsuleHash(dir, [operatorEnvFile(this.home, name)]);
  }

  /** InstallCapsule, one at a time (two installs of one name must not interleave their renames). */
  install(source: string, workspace: boolean): Promise<unknown> {
    const run = this.installChain.then(() => installCapsule(source, {
      root: workspace ? path.join(this.options.workspace, ".astrid", "capsules") : this.home.principalCapsulesDir("default"),
      reload: (trigger) => this.reloadCapsules(trigger),
      record: (name) => this.registry.get(name),
    }));
    this.installChain = run.catch(() => undefined);
    return run;
  }

  /**
   * Boot's load pass. Boot waits for the capsules at most `ASTRID_CAPSULE_BOOT_WAIT_MS` (default 5 s, inside
   * `astrid start`'s 10 s) — a slow install hook must not keep the daemon from serving — then announces
   * `astrid.v1.capsules_loaded`, and announces it again once the late ones are up (reference §6.3 waits 500 ms and
   * moves on; it never re-announces). A ReloadCapsules that arrives meanwhile runs after the whole pass.
   */
  private async initialLoad(discovered: ReturnType<typeof discoverCapsules>): Promise<void> {
    const registered = this.registerDiscovered(discovered);
    let late = false;
    // Each capsule that comes up after the boot wait is announced as it does.
    const started = registered.then((toStart) => this.startCapsules(toStart, (record) => {
      if (!late) return;
      this.logger.info("late capsule loaded", { capsule: record.name, state: record.state });
      if (record.state === "ready") this.publishCapsulesLoaded();
    }));
    this.reloadChain = started.catch(() => undefined);
    await registered;
    const wait = Number(this.options.env.ASTRID_CAPSULE_BOOT_WAIT_MS);
    const waitMs = Number.isFinite(wait) && wait >= 0 && this.options.env.ASTRID_CAPSULE_BOOT_WAIT_MS !== undefined ? wait : BOOT_CAPSULE_WAIT_MS;
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([started.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)))]);
    clearTimeout(timer);
    late = !done;
    this.publishCapsulesLoaded();
    if (late) {
      const loading = this.registry.all().filter((r) => r.state === "loading").map((r) => r.name);
      this.logger.warn("capsules still loading after the boot wait; serving meanwhile", { capsules: loading, wait_ms: waitMs });
    }
  }

  /** Starts hot reload: edits under the capsule roots (or to an operator env file) trigger a reload pass. */
  async watchCapsules(): Promise<void> {
    this.watcher = new CapsuleWatcher([...capsuleRoots(this.home, this.options), operatorEnvDir(this.home)], (file) => void this.reloadCapsules(`change: ${file}`, false), this.logger);
    await this.watcher.ready();
  }

  /**
   * Registers what discovery found and starts the capsules that have code (reference §6.3): uplinks first, then
   * the rest, each group started in parallel and awaited until ready or failed.
   */
  private async loadDiscovered(discovered: ReturnType<typeof discoverCapsules>): Promise<void> {
    await this.startCapsules(await this.registerDiscovered(discovered));
  }

  /** Logs what discovery found and registers it in load order; returns the capsules with code, to be started. */
  private async registerDiscovered(discovered: ReturnType<typeof discoverCapsules>): Promise<CapsuleRecord[]> {
    for (const problem of discovered.problems) this.logger.error("invalid capsule manifest skipped", { file: problem.file, error: problem.message });
    for (const loaded of discovered.shadowed) this.logger.warn("capsule shadowed by an earlier copy", { name: loaded.manifest.package.name, dir: loaded.dir });
    const plan = loadOrder(discovered.capsules);
    if (plan.cycle.length > 0) this.logger.error("capsule import cycle; loading in discovery order", { capsules: plan.cycle });
    for (const line of plan.unmet) this.logger.error("unsatisfied capsule import", { import: line });
    for (const line of plan.unmetOptional) this.logger.info("unsatisfied optional capsule import", { import: line });
    for (const key of plan.duplicates) this.logger.warn("interface exported by more than one capsule", { interface: key });
    const toStart: CapsuleRecord[] = [];
    for (const loaded of plan.order) {
      for (const warning of loaded.warnings) this.logger.warn(warning);
      if (this.registry.has(loaded.manifest.package.name)) continue;
      // Hashed before its module is read: an edit after this point always shows up as a change.
      const hash = await this.fingerprint(loaded.dir, loaded.manifest.package.name);
      if (loaded.manifest.component.length > 0) {
        toStart.push(this.registry.register(loaded, "loading", undefined, hash));
      } else {
        this.registry.register(loaded, "ready", undefined, hash);
        this.logger.info("capsule loaded", { name: loaded.manifest.package.name, version: loaded.manifest.package.version, dir: loaded.dir });
        this.audit.capsule("load", loaded.manifest.package.name, { version: loaded.manifest.package.version, dir: loaded.dir });
      }
    }
    return toStart;
  }

  /**
   * Starts capsules with code: uplinks first, then the rest, each group in parallel, until ready or failed;
   * `onStarted` hears of each as it settles.
   */
  private async startCapsules(toStart: CapsuleRecord[], onStarted?: (record: CapsuleRecord) => void): Promise<void> {
    const start = (record: CapsuleRecord) => this.supervisor.start(record).then(() => onStarted?.(record));
    await Promise.all(toStart.filter((r) => r.manifest.capabilities.uplink).map(start));
    await Promise.all(toStart.filter((r) => !r.manifest.capabilities.uplink).map(start));
  }

  /** Publishes `astrid.v1.capsules_loaded` at the end of a load pass. */
  publishCapsulesLoaded(): void {
    this.bus.publish({ topic: CAPSULES_LOADED_TOPIC, payload: rawJson({ status: "ready" }), source_id: this.options.sessionId });
  }

  /**
   * Graceful shutdown (reference §2.9), idempotent; `exited` then resolves with 0. It starts on the next turn of
   * the event loop: a caller inside a bus delivery (the Shutdown request) has queued its reply, which must reach
   * the socket before the egress subscription goes away.
   */
  shutdown(reason: string): Promise<void> {
    this.stopping ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.doShutdown(reason));
    return this.stopping;
  }

  private async doShutdown(reason: string): Promise<void> {
    this.logger.info("daemon shutting down", { reason });
    this.bus.publish({
      topic: KERNEL_SHUTDOWN_TOPIC,
      payload: { type: "custom", data: { type: "kernel_shutdown", reason } },
      source_id: this.options.sessionId,
    });
    this.idle.stop();
    await this.watcher?.close();
    this.router.close();
    // Workers go first, so a load or reload in progress (a slow install hook, say) ends now instead of running to
    // its deadline; a start it still makes sees the supervisor stopping and spawns nothing. Then let it unwind.
    await this.supervisor.stopAll();
    await this.reloadChain;
    // Readiness goes first so nobody mistakes a stopping daemon for a ready one.
    rmIfExists(this.home.readyPath);
    await this.server.close();
    this.tracker.close();
    // Drain queued writes (the disconnects just recorded included), then close the database.
    await this.storage.close();
    rmIfExists(this.home.tokenPath);
    this.releaseLock();
    this.logger.info("daemon stopped", { reason });
    await closeLogger(this.logger);
    this.resolveExit(0);
  }
}

/** Discovery roots in precedence order: installed, then workspace (`--workspace`), then bundled. */
function capsuleRoots(home: AstridHome, options: DaemonOptions): string[] {
  return [
    home.principalCapsulesDir("default"),
    path.join(options.workspace, ".astrid", "capsules"),
    options.env.ASTRID_BUNDLED_CAPSULES_DIR || options.bundledCapsulesDir,
  ];
}

/** True when the (healthy) state database has signed audit entries; a damaged one throws STORAGE_CORRUPT. */
function holdsSignedAudit(dbPath: string): boolean {
  const db = openStateDatabaseReadOnly(dbPath);
  try {
    return db.prepare("SELECT 1 FROM audit WHERE signature IS NOT NULL LIMIT 1").get() !== undefined;
  } finally {
    db.close();
  }
}

function rmIfExists(file: string): void {
  fs.rmSync(file, { force: true });
}
