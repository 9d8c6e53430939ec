/**
 * Boot and shutdown of the kernel, in the reference's order (§2.2, §2.9), and nothing else: each step's work lives
 * in its own module (storage in `boot-storage.ts`, capsules in `capsules/`). The main thread owns the socket, the
 * session token and the checks; everything a boot step creates on disk is removed again on shutdown, and on a
 * boot that fails after binding.
 */
import { createHash, randomUUID } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../protocol/errors";
import type { DaemonStatus } from "../protocol/kernel-request";
import type { ClientInfo } from "./socket-server";
import { KERNEL_SHUTDOWN_TOPIC } from "../protocol/topics";
import { DAEMON_VERSION } from "../protocol/version";
import type { AuditLog } from "./audit-log";
import type { BackgroundVerify } from "./audit-background";
import { openBootStorage } from "./boot-storage";
import { EventBus } from "./bus";
import { operatorEnvDir } from "./capsules/capsule-env";
import type { InstallOutcome } from "./capsules/installer";
import { CapsuleLoader } from "./capsules/loader-client";
import { CapsuleReconciler } from "./capsules/reconciler";
import { CapsuleRegistry } from "./capsules/registry";
import { SocketPolicySwap } from "./capsules/socket-policy-swap";
import { CapsuleSupervisor, supervisorSettings } from "./capsules/supervisor";
import type { DaemonConfig } from "./config";
import { ConnectionTracker } from "./connection-tracker";
import { AstridHome } from "./home";
import { acquireHomeLock, type ReleaseLock } from "./home-lock";
import { IdleMonitor, idleSettings } from "./idle-monitor";
import { CLI_CAPSULE_NAME, SocketPolicy } from "./ingress-policy";
import { closeLogger, createLogger, type Logger } from "./logger";
import { ManagementRouter } from "./management-router";
import { McpServers } from "./mcp/server-manager";
import { loadServersConfig } from "./mcp/servers-config";
import { AdminRouter, bindAdminMethods } from "./admin-router";
import { IDENTITY_ADMIN_METHODS } from "./identity/identity-admin";
import { IdentityLinks } from "./identity/identity-links";
import { PlatformUsers } from "./identity/platform-users";
import { FrontendCredentials } from "./frontends/frontend-credentials";
import { createAgent } from "./principals/agent-create";
import { LinkedAgentIdentities } from "./principals/agent-identity";
import { PrincipalRegistry, type Principals } from "./principals/principals";
import { SessionToken } from "./session-token";
import { checkSocketPathLength, isSymlink, prepareSocketPath, probeSocket } from "./socket-prepare";
import { SocketServer } from "./socket-server";
import { installTestFaults } from "./test-faults";
import { sharedVfs } from "./vfs/vfs";
import type { StorageClient } from "./storage-client";
import { modelEndpointSettings } from "./model/model-endpoint";
import { isWasmCapsule } from "./capsules/wasm/wasm-run";

/** The capsules shipped with the daemon (`<package>/capsules`), from source and from dist/ alike. */
export const BUNDLED_CAPSULES_DIR = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? "../.." : "..", "capsules");

/** How to run the daemon. */
export interface DaemonOptions {
  /** Everything read from the environment and the flags, checked once at boot (kernel/config.ts). */
  config: DaemonConfig;
  /** Print readable log lines to stderr too. */
  console: boolean;
  /** Where bundled capsules live unless `ASTRID_BUNDLED_CAPSULES_DIR` (`config.bundledCapsulesDir`) says otherwise. */
  bundledCapsulesDir: string;
}

/** The parts a booted daemon wires together. */
interface DaemonParts {
  home: AstridHome;
  config: DaemonConfig;
  logger: Logger;
  bus: EventBus;
  registry: CapsuleRegistry;
  server: SocketServer;
  tracker: ConnectionTracker;
  router: ManagementRouter;
  admin: AdminRouter;
  principals: PrincipalRegistry;
  idle: IdleMonitor;
  storage: StorageClient;
  audit: AuditLog;
  auditIntact: boolean;
  /** The whole-chain walk boot left to the background (when it verified from a checkpoint). */
  auditBackground?: BackgroundVerify;
  supervisor: CapsuleSupervisor;
  loader: CapsuleLoader;
  reconciler: CapsuleReconciler;
  /** The MCP servers (etc/servers.toml and capsules' own). */
  mcp: McpServers;
  releaseLock: ReleaseLock;
}

/** A booted daemon. `exited` resolves with the process exit code once shutdown has finished. */
export class Daemon {
  private readonly startedAt = Date.now();
  /** Starts as `config.ephemeral`; SetMode (`astrid start` against an ephemeral daemon) changes it. */
  private ephemeral: boolean;
  private stopping: Promise<void> | undefined;
  private resolveExit!: (code: number) => void;
  /** Resolves with the exit code once shutdown completes. */
  readonly exited = new Promise<number>((resolve) => (this.resolveExit = resolve));

  private constructor(private readonly p: DaemonParts) {
    this.ephemeral = p.config.ephemeral;
  }

  /** SetMode: persistent (idle rules of ASTRID_IDLE_TIMEOUT_SECS) or ephemeral; returns the mode it had. */
  setMode(mode: "persistent" | "ephemeral"): "persistent" | "ephemeral" {
    const previous = this.ephemeral ? "ephemeral" : "persistent";
    if (mode !== previous) {
      this.ephemeral = mode === "ephemeral";
      this.p.idle.reconfigure(idleSettings({ ...this.p.config, ephemeral: this.ephemeral }));
      this.p.logger.info("daemon mode changed", { from: previous, to: mode });
    }
    return previous;
  }

  /** Groups, profiles and the capability checks of this daemon's principals. */
  get principals(): Principals {
    return this.p.principals;
  }

  /** The home this daemon serves. */
  get home(): AstridHome {
    return this.p.home;
  }

  /** Boots the kernel; on failure nothing it created is left behind and the error says what to do. */
  static async boot(options: DaemonOptions): Promise<Daemon> {
    const { config } = options;
    // 1–2. Home, then logging. A live daemon is detected before anything on disk is touched.
    const home = new AstridHome(config.home);
    checkSocketPathLength(home.socketPath);
    // A symlink at the path is never our socket (reference §2.3 removes it first); probing it would follow it.
    if (!isSymlink(home.socketPath) && (await probeSocket(home.socketPath)) === "live") {
      throw new AstridError("ASTRID_ERR_ALREADY_RUNNING", `Another kernel instance is already running on this socket: ${home.socketPath}`);
    }
    const settings = idleSettings(config);
    home.ensure();
    const releaseLock = await acquireHomeLock(home.lockPath);
    let logger: Logger;
    try {
      logger = createLogger({
        logDir: home.logDir, level: config.verbose ? "debug" : "info", console: options.console,
        format: config.logFormat, color: options.console && config.logFormat === "pretty" && process.stderr.isTTY === true,
      });
    } catch (err) {
      releaseLock();
      throw err;
    }
    logger.info("daemon booting", { version: DAEMON_VERSION, pid: process.pid, home: home.root, session: config.sessionId, workspace: config.workspace, ephemeral: config.ephemeral });
    const bus = new EventBus((err, event) => logger.error("bus subscriber failed", { topic: event.message.topic, error: String(err) }));
    const registry = new CapsuleRegistry();
    const loader = new CapsuleLoader(logger);

    let server: SocketServer | undefined;
    let token: SessionToken | undefined;
    let storage: StorageClient | undefined;
    let auditBackground: BackgroundVerify | undefined;
    let mcp: McpServers | undefined;
    try {
      // The independent reads of boot run at once (on 2 cores the workers load their modules in parallel):
      // 3–4. the storage worker (KV + audit, var/state.db), signed with keys/runtime.key, verifying the chain;
      // 3. etc/servers.toml; 5. discovery in the capsule loader worker; 8–9. groups and profiles. A failure is
      // reported in that order, as a sequential boot would.
      const roots = capsuleRoots(home, options);
      const envDir = operatorEnvDir(home);
      const [opened, mcpServers, discovered, principals] = await firstFailureInOrder([
        openBootStorage(home, config.sessionId, logger, config.testFaults),
        loadServersConfig(path.join(home.etcDir, "servers.toml")),
        loader.discover(roots, envDir),
        PrincipalRegistry.open(home, logger),
      ] as const, (o) => o.storage.close());
      storage = opened.storage;
      const { audit, report } = opened;
      // A malformed servers.toml stopped the boot above (ASTRID_ERR_MCP_CONFIG_INVALID); the servers start in the
      // MCP host worker meanwhile (boot does not wait; a call waits for a starting server).
      mcp = new McpServers({
        bus, logger, audit, sourceId: config.sessionId,
        settings: { startTimeoutMs: config.mcpStartTimeoutMs, requestTimeoutMs: config.mcpRequestTimeoutMs, restartBackoffMs: config.mcpRestartBackoffMs, stopGraceMs: config.mcpStopGraceMs },
      });
      mcp.startConfigured(mcpServers);
      const servers = mcp;

      // 5. Discovery (in the capsule loader worker): the CLI capsule's manifest is the socket's policy.
      let reconciler!: CapsuleReconciler;
      const cli = discovered.capsules.find((c) => c.manifest.package.name === CLI_CAPSULE_NAME);
      // The socket policy is needed to serve; its absence is reported at step 14 like the reference.
      const policy = cli ? SocketPolicy.fromManifest(cli.manifest) : new SocketPolicy([], []);

      // 8–9. Groups and profiles (reference §2.2 steps 8–9) were read above, before binding, so that the socket can
      // consult them from its first connection: a malformed etc/groups.toml aborts boot with nothing bound.
      // Frontend credentials and the identity links that map their platform users to principals.
      const credentials = new FrontendCredentials({ dir: home.frontendsDir, logger });
      await credentials.load();
      const links = new IdentityLinks(storage);
      const platformUsers = new PlatformUsers(links, principals, credentials, audit, logger);
      const supervisor = new CapsuleSupervisor(bus, storage, logger, audit, supervisorSettings(config), (record) => reconciler.prepare(record), principals, {
        home,
        workspace: config.workspace,
        logger,
        audit,
        bus,
        storage,
        principals: { check: (p, c) => principals.check(p, c), profile: (p) => principals.profiles.resolve(p) },
        identity: {
          links,
          principalExists: (p) => principals.exists(p),
          createPrincipal: (name) => createAgent({ principals, identities: new LinkedAgentIdentities(links), logger }, { name, groups: [], grants: [] }),
        },
        auditPermissions: config.auditPermissions,
        testFaults: config.testFaults,
        netSeams: { dns: config.testDns, publicAddresses: config.testPublicAddresses },
        sessionToken: () => token?.bytes ?? null,
        mcp: servers,
        // The socket is bound after the supervisor is built: until then nobody is connected to ask.
        audience: {
          sessionMembers: (p, s) => server?.sessions.membersFor(s, p)?.size ?? 0,
          isSessionMember: (c, p, s) => server?.sessions.isMember(c, p, s) === true,
          actingFor: (p) => server?.actingFor(p) ?? 0,
          connectionActsFor: (c, p) => server?.connectionActsFor(c, p) === true,
          refuse: (c, m) => server?.tellConnection(c, "ASTRID_ERR_MESSAGE_INVALID", m),
        },
        approvalTimeoutMs: config.approvalTimeoutMs,
        elicitTimeoutMs: config.elicitTimeoutMs,
        processSandbox: config.processSandbox,
        model: modelEndpointSettings(config),
        storedEnv: (name, dir) => loader.storedEnv(envDir, name, dir),
      });

      // 6. Bind the socket, then write the token, before any capsule can see a client.
      await prepareSocketPath(home.socketPath);
      await fs.rm(home.readyPath, { force: true });
      // A token write cut short by a kill leaves its temporary file behind; run/ is this daemon's (it holds the lock).
      for (const f of await fs.readdir(home.runDir)) {
        if (/^system\.\d+\.tmp$/.test(f)) await fs.rm(path.join(home.runDir, f), { force: true });
      }
      token = SessionToken.generate();
      server = new SocketServer({
        socketPath: home.socketPath,
        token,
        bus,
        policy,
        logger,
        maxClients: config.maxClients,
        proxySourceId: randomUUID(),
        kernelSourceId: config.sessionId,
        principal: "default",
        audit,
        stallTimeoutMs: config.clientStallTimeoutMs,
        frontends: credentials,
        users: platformUsers,
      });
      await server.listen();
      token.write(home.tokenPath);
      logger.info("socket bound", { socket: home.socketPath, max_clients: config.maxClients });
      reconciler = new CapsuleReconciler({
        registry, supervisor, loader, bus, logger, audit, roots, envDir, sourceId: config.sessionId, hotReloadBurst: config.hotReloadBurst, bootWaitMs: config.capsuleBootWaitMs,
        moduleCacheDir: path.join(home.root, "var", "cache", "capsules"), unconfined: new Set(config.testUnconfinedCapsules), drainMs: config.capsuleHandlerTimeoutMs,
        policy: new SocketPolicySwap(server, logger, audit),
      });

      // 11. Background tasks.
      const tracker = new ConnectionTracker(bus);
      let daemon: Daemon | undefined;
      const kv = storage;
      const router = new ManagementRouter(bus, {
        status: () => daemon!.status(),
        clients: () => daemon!.clients(),
        capsuleNames: () => registry.all().map((r) => r.name),
        commands: () => daemon!.commands(),
        capsuleMetadata: () => daemon!.capsuleMetadata(),
        reloadCapsules: () => reconciler.reload("ReloadCapsules"),
        installCapsule: (source, workspace) => daemon!.install(source, workspace),
        removeCapsule: (name) => reconciler.remove(name),
        callTool: (capsule, tool, args, on) => operatorToolCall(supervisor, audit, capsule, tool, args, on),
        shutdown: (reason) => void daemon!.shutdown(reason),
        kvGet: (scope, key) => kv.get(scope, key),
        kvSet: (scope, key, value) => kv.set(scope, key, value),
        kvList: (scope, prefix, page) => kv.listKeys(scope, prefix, page),
        kvDelete: (scope, key) => kv.delete(scope, key),
        setMode: (mode) => daemon!.setMode(mode),
        mcp: servers,
        vfs: sharedVfs(home, config.workspace),
      }, logger, config.sessionId, audit, principals);
      const admin = new AdminRouter({
        bus, principals, identities: new LinkedAgentIdentities(links), logger, kernelSourceId: config.sessionId, audit,
        extensions: bindAdminMethods(IDENTITY_ADMIN_METHODS, { links, principalExists: (p: string) => principals.exists(p) }),
      });
      const idle = new IdleMonitor(
        settings,
        () => tracker.total === 0 && registry.ready().every((r) => r.manifest.uplink.length === 0),
        () => void daemon!.shutdown("idle_timeout"),
      );
      daemon = new Daemon({
        home, config, logger, bus, registry, server, tracker, router, admin, principals, idle, storage, audit, auditIntact: report.intact,
        supervisor, loader, reconciler, mcp: servers, releaseLock,
      });

      // 13. Load capsules. 14. Require the CLI proxy policy. The watcher's first scan runs meanwhile: an edit made
      // after discovery read the files is then a reload like any later one (passes run one at a time).
      const watching = config.watch ? reconciler.watch() : undefined;
      watching?.catch(() => undefined); // awaited below; a boot that fails first must not leave it unhandled
      await reconciler.initialLoad(discovered);
      const cliRecord = registry.get(CLI_CAPSULE_NAME);
      if (!cliRecord || cliRecord.state !== "ready") {
        const why = discovered.problems.filter((p) => p.file.includes(CLI_CAPSULE_NAME)).map((p) => ` (${p.message})`).join("");
        throw new AstridError("ASTRID_ERR_CLI_CAPSULE_MISSING",
          `CLI proxy capsule (${CLI_CAPSULE_NAME}) not found${why}. Reinstall astrid-daemon, or install it into ${home.principalCapsulesDir("default")}/${CLI_CAPSULE_NAME}/`);
      }

      await watching;

      // Tests only: faults injected from outside (kernel/test-faults.ts).
      if (config.testFaults) installTestFaults({ runDir: home.runDir, logger, storage, supervisor });

      // 15. Ready.
      await fs.writeFile(home.readyPath, "", { mode: 0o600 });
      supervisor.booted();
      idle.start();
      // The whole audit chain is walked in the background once the daemon serves (boot verified from a checkpoint).
      auditBackground = opened.startBackgroundWalk?.();
      daemon.p.auditBackground = auditBackground;
      logger.info("daemon ready", { capsules: registry.all().map((r) => `${r.name}@${r.version}:${r.state}`), idle_timeout_ms: settings.timeoutMs });
      return daemon;
    } catch (err) {
      logger.error("boot failed", { error: (err as Error).message, code: (err as AstridError).code });
      // Reference §11 item 11: it leaves the socket and token behind. We do not.
      await server?.close(500);
      await loader.close();
      await mcp?.close();
      await auditBackground?.close();
      await storage?.close();
      if (token) await fs.rm(home.tokenPath, { force: true });
      await fs.rm(home.readyPath, { force: true });
      releaseLock();
      await closeLogger(logger);
      throw err;
    }
  }

  /** ListClients: who is connected, and how much each has sent and received. */
  clients(): ClientInfo[] {
    return this.p.server.clients();
  }

  /** DaemonStatus for GetStatus and `astrid status`. */
  status(): DaemonStatus {
    return {
      pid: process.pid,
      uptime_secs: Math.floor((Date.now() - this.startedAt) / 1000),
      version: DAEMON_VERSION,
      ephemeral: this.ephemeral,
      workspace: this.p.config.workspace,
      connected_clients: this.p.tracker.total,
      loaded_capsules: this.p.registry.ready().map((r) => r.name),
      audit_chain_intact: this.p.auditIntact && !this.p.auditBackground?.broken,
      sessions: this.p.server.sessions.size,
      mcp_servers: this.p.mcp.counts(),
    };
  }

  private commands(): Array<{ name: string; description: string; provider_capsule: string }> {
    return this.p.registry.ready().flatMap((r) =>
      r.manifest.command.map((c) => ({ name: c.name, description: c.description ?? "No description", provider_capsule: r.name })),
    );
  }

  private capsuleMetadata(): Array<{ name: string; interceptor_events: string[]; [extra: string]: unknown }> {
    // The agent that answers sessions which chose none (chat's `/agent` marks it).
    const defaultAgent = this.p.supervisor.agents.defaultAgent();
    return this.p.registry.all().map((r) => ({
      name: r.name,
      interceptor_events: r.manifest.interceptor.map((i) => i.event),
      version: r.version,
      state: r.state,
      source_dir: r.dir,
      restarts: r.restarts,
      dropped_events: this.p.supervisor.droppedEvents(r.name),
      capabilities: r.manifest.capabilities,
      commands: r.manifest.command.map((c) => ({ name: c.name, description: c.description ?? "No description" })),
      tools: r.tools ?? [],
      agent: r.manifest.package.agent === true,
      default_agent: r.name === defaultAgent,
      kind: isWasmCapsule(r) ? "wasm" : "js",
      // A WebAssembly capsule's component as loaded: hash, exports, imports, memory ceiling, how its load went.
      ...(r.wasm !== undefined ? { wasm: r.wasm } : {}),
      ...(r.lastError !== undefined ? { last_error: r.lastError } : {}),
    }));
  }

  /** InstallCapsule: into the principal's capsules, or the workspace's with `workspace`. */
  private install(source: string, workspace: boolean): Promise<InstallOutcome> {
    const root = workspace ? path.join(this.p.config.workspace, ".astrid", "capsules") : this.p.home.principalCapsulesDir("default");
    return this.p.reconciler.install(source, root);
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
    const { logger, bus, config, home } = this.p;
    logger.info("daemon shutting down", { reason });
    bus.publish({
      topic: KERNEL_SHUTDOWN_TOPIC,
      payload: { type: "custom", data: { type: "kernel_shutdown", reason } },
      source_id: config.sessionId,
    });
    this.p.idle.stop();
    this.p.router.close();
    this.p.admin.close();
    // Workers go first, so a load or reload in progress (a slow install hook, say) ends now instead of running to
    // its deadline; a start it still makes sees the supervisor stopping and spawns nothing. Then let it unwind.
    await this.p.supervisor.stopAll();
    // The MCP servers go after the capsules that use them: SIGTERM, then SIGKILL after ASTRID_MCP_STOP_GRACE_MS.
    await this.p.mcp.close();
    await this.p.reconciler.close();
    await this.p.loader.close();
    // Readiness goes first so nobody mistakes a stopping daemon for a ready one.
    await fs.rm(home.readyPath, { force: true });
    await this.p.server.close();
    this.p.tracker.close();
    // Drain queued writes (the disconnects just recorded included), then close the database; a background walk of
    // the chain stops first (the next boot starts another).
    this.p.audit.flushAll();
    await this.p.auditBackground?.close();
    await this.p.storage.close();
    await fs.rm(home.tokenPath, { force: true });
    this.p.releaseLock();
    logger.info("daemon stopped", { reason });
    await closeLogger(logger);
    this.resolveExit(0);
  }
}

/**
 * `astrid tool call`: the operator runs one capsule's tool (the request's own audit entry says it was admitted);
 * its outcome gets a `tool_call` entry with the arguments' SHA-256 (never the arguments), like an MCP call.
 */
async function operatorToolCall(
  supervisor: CapsuleSupervisor, audit: AuditLog, capsule: string, tool: string, args: Record<string, unknown>,
  on: { principal: string; caller: string; seq: number },
): Promise<{ content: unknown; is_error: boolean }> {
  const started = performance.now();
  const args_sha256 = createHash("sha256").update(JSON.stringify(args)).digest("hex");
  const outcome = await supervisor.callTool(capsule, tool, args, on.principal, on.seq);
  audit.capsule("tool_call", capsule, {
    principal: on.principal, caller: on.caller, tool, args_sha256, is_error: outcome.is_error, duration_ms: Math.round(performance.now() - started),
  });
  return outcome;
}

/** Discovery roots in precedence order: installed, then workspace (`--workspace`), then bundled. */
function capsuleRoots(home: AstridHome, options: DaemonOptions): string[] {
  return [
    home.principalCapsulesDir("default"),
    path.join(options.config.workspace, ".astrid", "capsules"),
    options.config.bundledCapsulesDir ?? options.bundledCapsulesDir,
  ];
}

/**
 * Awaits every step, then throws the first failure in the steps' order (not in time), so a boot that fails reports
 * what a sequential boot would; the storage opened beside a failure is closed again.
 */
async function firstFailureInOrder<T extends readonly unknown[]>(
  steps: { [K in keyof T]: Promise<T[K]> },
  closeFirst: (first: T[0]) => Promise<unknown>,
): Promise<T> {
  const settled = await Promise.allSettled(steps);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    if (settled[0]!.status === "fulfilled") await closeFirst(settled[0]!.value as T[0]).catch(() => undefined);
    throw failed.reason;
  }
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
