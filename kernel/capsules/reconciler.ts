/**
 * Keeps the running capsules in step with the capsule directories: boot's load pass, ReloadCapsules and hot-reload
 * passes (one at a time), installs (one at a time), and the socket policy swap after each pass. Discovery, hashing
 * and copies run in the capsule loader worker; this file only decides.
 */
import path from "node:path";
import type { DiscoveryResult } from "../../protocol/capsule-loader";
import { MANIFEST_FILE } from "../../protocol/capsule-manifest";
import { rawJson } from "../../protocol/ipc-message";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_RELOADED_TOPIC, CAPSULE_RELOAD_FAILED_TOPIC, CAPSULES_LOADED_TOPIC } from "../../protocol/topics";
import { CLI_CAPSULE_NAME } from "../ingress-policy";
import type { AuditLog } from "../audit-log";
import type { EventBus } from "../bus";
import type { Logger } from "../logger";
import { capsuleEnv, type ResolvedEnv } from "./capsule-env";
import { installCapsule, type InstallOutcome } from "./installer";
import { loadOrder } from "./load-order";
import type { CapsuleLoader } from "./loader-client";
import { CapsuleRegistry, type CapsuleRecord } from "./registry";
import type { SocketPolicySwap } from "./socket-policy-swap";
import type { CapsulePreparation, CapsuleSupervisor } from "./supervisor";
import { isWasmCapsule } from "./wasm/wasm-run";

/** Hot reload pauses for a capsule changed more than `hotReloadBurst` times within this window. */
const RELOAD_BURST_WINDOW_MS = 60_000;

/** What the reconciler works with. */
export interface ReconcilerOptions {
  registry: CapsuleRegistry;
  supervisor: CapsuleSupervisor;
  loader: CapsuleLoader;
  policy: SocketPolicySwap;
  bus: EventBus;
  logger: Logger;
  audit: AuditLog;
  /** Discovery roots in precedence order. */
  roots: readonly string[];
  /** The operator's env files (watched, and part of each capsule's fingerprint). */
  envDir: string;
  /** The source_id of `astrid.v1.capsules_loaded`. */
  sourceId: string;
  /** Change-driven reloads of one capsule within a minute before hot reload pauses for it. */
  hotReloadBurst: number;
  /** How long boot waits for its capsules before it serves anyway. */
  bootWaitMs: number;
  /** Where prepared module files are cached (`var/cache/capsules`). */
  moduleCacheDir: string;
  /** Capsules that run without confinement (tests of the kernel's own defences only). */
  unconfined: ReadonlySet<string>;
  /** How long `remove` waits for a capsule's in-flight events and calls before it stops it anyway. */
  drainMs?: number;
}

/** What `astrid capsule remove` did. */
export interface RemoveOutcome {
  name: string;
  version: string;
  dir: string;
  /** False when in-flight work was still running after the drain deadline (it was stopped). */
  drained: boolean;
  /** A copy of the same name in a later root (the bundled one, say) that now runs instead, if any. */
  replaced_by?: string;
}

/** Where in its files a load error points: `file:line[:column]: …` (a manifest or syntax error), else nulls. */
export function errorLocation(message: string, dir: string): { file: string | null; line: number | null } {
  const found = /(?:^|\s)(\S+?):(\d+)(?::\d+)?: /.exec(message);
  if (!found) return { file: null, line: null };
  return { file: path.isAbsolute(found[1]!) ? found[1]! : path.join(dir, found[1]!), line: Number(found[2]) };
}



/**
 * Whether a change to a serving capsule reloads blue/green (the new version loads beside the old one): it needs a
 * ready run with code, and no MCP servers of its own — those are one set per capsule name, so that capsule's
 * old version stops before the new one starts.
 */
function blueGreen(record: CapsuleRecord, next: { manifest: CapsuleRecord["manifest"] }): boolean {
  return record.state === "ready" && record.manifest.component.length > 0 && next.manifest.component.length > 0 &&
    record.manifest.mcp_server.length === 0 && next.manifest.mcp_server.length === 0;
}

/** Loads, reloads and installs capsules. */
export class CapsuleReconciler {
  private reloadChain: Promise<void> = Promise.resolve();
  /** A watcher pass queued behind the running one: further changes join it (it discovers the files as they are then). */
  private queuedWatchPass: Promise<void> | undefined;
  private installChain: Promise<unknown> = Promise.resolve();
  private readonly reloadTimes = new Map<string, number[]>();
  private readonly reloadPaused = new Set<string>();
  /** What each start's modules were compiled from (their checked `hash`; undefined: the files changed while read). */
  private readonly compiledFrom = new WeakMap<CapsuleRecord, string | undefined>();
  /** Blue/green reloads of this pass dropped because the files changed while the next version loaded. */
  private readonly superseded = new WeakSet<CapsuleRecord>();
  private stopping = false;

  constructor(private readonly o: ReconcilerOptions) {}

  /** A discovery pass over the roots (in the loader worker). */
  discover(): Promise<DiscoveryResult> {
    return this.o.loader.discover([...this.o.roots], this.o.envDir);
  }

  /**
   * What a capsule's start needs from the filesystem, read by the loader: its resolved `[env]`, and its module
   * files for the confined load (unless the capsule is on the tests' unconfined list).
   */
  async prepare(record: CapsuleRecord): Promise<CapsulePreparation> {
    const env = capsuleEnv(record, await this.o.loader.storedEnv(this.o.envDir, record.name, record.dir));
    if (this.o.unconfined.has(record.name)) return { env };
    const component = record.manifest.component[0];
    // A WebAssembly component is verified and transpiled by its own worker, not compiled as modules here.
    if (!component || isWasmCapsule(record)) return { env };
    const entry = component.file ?? component.entrypoint ?? "";
    const cacheFile = path.join(this.o.moduleCacheDir, `${record.name}-${record.hash ?? "nohash"}.json`);
    const expected = record.hash === undefined ? undefined : { hash: record.hash, envDir: this.o.envDir, name: record.name };
    const modules = await this.o.loader.compileModules(record.dir, entry, cacheFile, expected);
    this.compiledFrom.set(record, modules.hash);
    return { env, modules };
  }

  /**
   * Boot's load pass. Boot waits for the capsules at most `bootWaitMs` (inside `astrid start`'s 10 s) — a slow
   * install hook must not keep the daemon from serving — then announces `astrid.v1.capsules_loaded`, and announces
   * it again once the late ones are up (reference §6.3 waits 500 ms and moves on; it never re-announces). A
   * ReloadCapsules that arrives meanwhile runs after the whole pass.
   */
  async initialLoad(discovered: DiscoveryResult): Promise<void> {
    const toStart = this.registerDiscovered(discovered);
    let late = false;
    // Each capsule that comes up after the boot wait is announced as it does.
    const started = this.startCapsules(toStart, (record) => {
      if (!late) return;
      this.o.logger.info("late capsule loaded", { capsule: record.name, state: record.state });
      if (record.state === "ready") this.publishCapsulesLoaded();
    });
    this.reloadChain = started.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([started.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), this.o.bootWaitMs)))]);
    clearTimeout(timer);
    late = !done;
    this.publishCapsulesLoaded();
    if (late) {
      const loading = this.o.registry.all().filter((r) => r.state === "loading").map((r) => r.name);
      this.o.logger.warn("capsules still loading after the boot wait; serving meanwhile", { capsules: loading, wait_ms: this.o.bootWaitMs });
    }
  }

  /**
   * ReloadCapsules and the watcher, one pass at a time. Reference §11 item 2 fixed: its ReloadCapsules only loaded
   * capsules not yet registered. Here a capsule whose files changed restarts with them (its upgrade hook runs when
   * the version changed), a removed one unloads, a failed one starts afresh, a new one loads; one whose manifest
   * became invalid stays listed as failed with the manifest error. Then `astrid.v1.capsules_loaded` tells clients.
   */
  reload(trigger: string, explicit = true): Promise<void> {
    if (!explicit && this.queuedWatchPass) return this.queuedWatchPass;
    const run = this.reloadChain.then(() => {
      if (!explicit) this.queuedWatchPass = undefined;
      return this.reconcile(trigger, explicit);
    });
    if (!explicit) this.queuedWatchPass = run;
    this.reloadChain = run.catch((err: Error) => {
      this.o.logger.error("capsule reload failed", { trigger, error: err.message });
    });
    return run;
  }

  /** InstallCapsule, one at a time (two installs of one name must not interleave their renames). */
  install(source: string, root: string): Promise<InstallOutcome> {
    const run = this.installChain.then(() => installCapsule(source, {
      root,
      loader: this.o.loader,
      reload: (trigger) => this.reload(trigger),
      record: (name) => this.o.registry.get(name),
    }));
    this.installChain = run.catch(() => undefined);
    return run;
  }

  /**
   * RemoveCapsule: refuses a bundled capsule (the last root) and the socket policy; otherwise drains the capsule
   * (no new events or calls; what it holds finishes, at most `drainMs`), deletes its directory (in the loader) and
   * runs a reload pass, which unloads it and loads any copy of the same name a later root holds. One at a time
   * with installs.
   */
  remove(name: string): Promise<RemoveOutcome> {
    const run = this.installChain.then(() => this.removeNow(name));
    this.installChain = run.catch(() => undefined);
    return run;
  }

  private async removeNow(name: string): Promise<RemoveOutcome> {
    const { registry, roots, supervisor, logger, audit, loader } = this.o;
    const record = registry.get(name);
    if (!record) throw new AstridError("ASTRID_ERR_NOT_FOUND", `no capsule named ${JSON.stringify(name)} is registered (see astrid capsule list)`);
    const root = roots.slice(0, -1).find((r) => path.dirname(record.dir) === path.resolve(r));
    if (name === CLI_CAPSULE_NAME || root === undefined) {
      throw new AstridError("ASTRID_ERR_CAPSULE_BUNDLED", `${name} ships with the daemon (${record.dir}); bundled capsules cannot be removed`);
    }
    const drained = await supervisor.drain(name, this.o.drainMs ?? 10_000);
    if (!drained) logger.warn("capsule still busy after the drain deadline; stopping it", { capsule: name, drain_ms: this.o.drainMs ?? 10_000 });
    try {
      await loader.removeCapsuleDir(record.dir, root);
    } catch (err) {
      // Its files are still there: it must not stay drained (unloading, unsubscribed) — the pass starts it afresh.
      registry.unregister(name);
      await supervisor.forget(name);
      await this.reload(`RemoveCapsule ${name} failed`);
      throw err;
    }
    logger.info("capsule removed", { capsule: name, version: record.version, dir: record.dir, drained });
    audit.capsule("remove", name, { version: record.version, dir: record.dir, drained });
    await this.reload(`RemoveCapsule ${name}`);
    const next = registry.get(name);
    return { name, version: record.version, dir: record.dir, drained, ...(next ? { replaced_by: next.dir } : {}) };
  }

  /** Starts hot reload: edits under the capsule roots (or to an operator env file) trigger a reload pass. */
  watch(): Promise<void> {
    return this.o.loader.watch([...this.o.roots, this.o.envDir], (file) => void this.reload(`change: ${file}`, false));
  }

  /** Stops taking passes and waits for the one in progress (the supervisor has stopped its workers first). */
  async close(): Promise<void> {
    this.stopping = true;
    await this.reloadChain;
  }

  /** Publishes `astrid.v1.capsules_loaded` at the end of a load pass. */
  publishCapsulesLoaded(): void {
    this.o.bus.publish({ topic: CAPSULES_LOADED_TOPIC, payload: rawJson({ status: "ready" }), source_id: this.o.sourceId });
  }

  /**
   * One reload pass. `explicit` (ReloadCapsules) also gives failed capsules a fresh start and lifts the hot-reload
   * pause; a watcher pass touches only capsules whose fingerprint changed, and pauses hot reload for a capsule
   * that changes more than `hotReloadBurst` times within RELOAD_BURST_WINDOW_MS (one that writes into its own
   * directory would otherwise restart forever).
   */
  private async reconcile(trigger: string, explicit: boolean): Promise<void> {
    if (this.stopping) return;
    const { registry, supervisor, logger, audit } = this.o;
    if (explicit) this.reloadPaused.clear();
    audit.capsule("reload", "*", { trigger });
    const discovered = await this.discover();
    if (this.stopping) return;
    const found = new Map(discovered.capsules.map((loaded) => [loaded.manifest.package.name, loaded]));
    const broken = new Map(discovered.problems.map((problem) => [path.dirname(problem.file), problem.message]));
    /** Capsules restarted because their files changed: their old version and when the pass took them down. */
    const reloading = new Map<string, { oldVersion: string; since: number; dir: string }>();
    /** Serving capsules whose files changed, reloaded blue/green: the old record and the next one (not registered yet). */
    const swaps: Array<{ old: CapsuleRecord; next: CapsuleRecord }> = [];
    for (const record of registry.all()) {
      const next = found.get(record.name);
      const manifestError = broken.get(record.dir);
      let why: string | undefined;
      if (manifestError !== undefined) why = record.lastError === manifestError ? undefined : "its manifest became invalid";
      else if (!next) why = "it was removed";
      else if (next.dir !== record.dir) why = `the copy in ${next.dir} now takes precedence`;
      else if (next.hash !== record.hash && (explicit || next.hash !== record.rejected?.hash)) why = "its files changed";
      // Saved back to the serving files after a failed reload: loaded again, so the author hears that it serves.
      else if (next.hash === record.hash && record.rejected !== undefined) why = "its files changed";
      else if (explicit && record.state === "failed") why = "it had failed";
      if (why === undefined) continue;
      if (why === "its files changed" && !explicit && this.reloadBurst(record.name)) continue;
      if (why === "its files changed") reloading.set(record.name, { oldVersion: record.version, since: performance.now(), dir: record.dir });
      if (why === "its files changed" && blueGreen(record, next!)) {
        swaps.push({ old: record, next: CapsuleRegistry.record(next!, "loading", undefined, next!.hash) });
        continue;
      }
      if (why === "its manifest became invalid") this.publishReloadFailed(record.name, record.dir, manifestError!);
      registry.unregister(record.name);
      await supervisor.forget(record.name);
      logger.info("capsule unloaded", { capsule: record.name, reason: why });
      audit.capsule("unload", record.name, { reason: why });
      if (manifestError !== undefined) {
        const placeholder = { manifest: record.manifest, dir: record.dir, file: path.join(record.dir, MANIFEST_FILE), warnings: [] };
        registry.register(placeholder, "failed", manifestError);
      }
    }
    await Promise.all([this.startCapsules(this.registerDiscovered(discovered)), ...swaps.map((swap) => this.swap(swap.old, swap.next))]);
    for (const [name, was] of reloading) {
      const swapped = swaps.find((s) => s.old.name === name);
      if (swapped && this.superseded.has(swapped.next)) continue; // the pass after this one loads the files as they are
      if (swapped && swapped.next.state !== "ready") {
        this.publishReloadFailed(name, swapped.next.dir, swapped.next.lastError ?? "it did not load");
        continue;
      }
      const now = registry.get(name);
      if (now?.state === "ready") {
        this.publish(CAPSULE_RELOADED_TOPIC, { name, old_version: was.oldVersion, new_version: now.version, ms: Math.round(performance.now() - was.since) });
      } else if (now?.state === "failed") {
        this.publishReloadFailed(name, now.dir, now.lastError ?? "it did not load");
      }
    }
    this.o.policy.apply(registry);
    this.publishCapsulesLoaded();
  }

  /**
   * A blue/green reload: the next version starts beside the serving one and takes its routes once ready (the
   * registry switches in the same step). When it fails to load the old version serves on, its record saying so.
   *
   * The next version switches in only if it is the capsule's files as they are once it is ready: its modules were
   * compiled from the content discovery hashed, and the directory still hashes so. A save caught halfway (a file
   * truncated and not yet rewritten reads as empty, a valid module that subscribes to nothing) would otherwise serve
   * — and drop every event routed to it — until the next pass replaced it. Files that changed meanwhile leave the
   * old version serving, with no failure reported; another pass loads them (the watcher's for that change, and one
   * queued here in case that change was not seen).
   */
  private async swap(old: CapsuleRecord, next: CapsuleRecord): Promise<void> {
    const { registry, supervisor, logger, audit, loader, envDir } = this.o;
    await supervisor.start(next, {
      stillCurrent: async () => {
        const compiled = this.compiledFrom.get(next);
        const current = this.compiledFrom.has(next) && compiled !== next.hash ? false
          : (await loader.contentHash(next.dir, envDir, next.name)) === next.hash;
        if (!current) this.superseded.add(next);
        return current;
      },
      onSwitch: () => {
        if (registry.get(old.name) === old) registry.put(next);
        logger.info("capsule unloaded", { capsule: old.name, reason: "its files changed", version: old.version });
        audit.capsule("unload", old.name, { reason: "its files changed" });
      },
    });
    if (next.state === "ready") return;
    if (this.superseded.has(next)) {
      void this.reload(`${next.name}: its files changed while its new version loaded`, false);
      return;
    }
    const reason = next.lastError ?? "it did not load";
    old.rejected = { hash: next.hash, reason };
    old.lastError = `its changed files did not load (version ${old.version} serves on): ${reason}`;
  }

  /** Tells frontends (a capsule author's `astrid chat`) that a capsule's changed files did not load, and where. */
  private publishReloadFailed(name: string, dir: string, message: string): void {
    this.publish(CAPSULE_RELOAD_FAILED_TOPIC, { name, ...errorLocation(message, dir), message });
  }

  private publish(topic: string, data: Record<string, unknown>): void {
    this.o.bus.publish({ topic, payload: rawJson(data), source_id: this.o.sourceId });
  }

  /** Records a change-driven reload of `name`; true when hot reload is (now) paused for it. */
  private reloadBurst(name: string): boolean {
    if (this.reloadPaused.has(name)) return true;
    const now = Date.now();
    const times = (this.reloadTimes.get(name) ?? []).filter((t) => now - t < RELOAD_BURST_WINDOW_MS);
    times.push(now);
    this.reloadTimes.set(name, times);
    if (times.length <= this.o.hotReloadBurst) return false;
    this.reloadPaused.add(name);
    this.o.logger.warn("hot reload paused for a capsule whose files keep changing (does it write into its own directory?); send ReloadCapsules to resume", {
      capsule: name, reloads: times.length, window_ms: RELOAD_BURST_WINDOW_MS,
    });
    return true;
  }

  /** Logs what discovery found and registers it in load order; returns the capsules with code, to be started. */
  private registerDiscovered(discovered: DiscoveryResult): CapsuleRecord[] {
    const { registry, logger, audit } = this.o;
    for (const problem of discovered.problems) logger.error("invalid capsule manifest skipped", { file: problem.file, error: problem.message });
    for (const loaded of discovered.shadowed) logger.warn("capsule shadowed by an earlier copy", { name: loaded.manifest.package.name, dir: loaded.dir });
    const plan = loadOrder(discovered.capsules);
    if (plan.cycle.length > 0) logger.error("capsule import cycle; loading in discovery order", { capsules: plan.cycle });
    for (const line of plan.unmet) logger.error("unsatisfied capsule import", { import: line });
    for (const line of plan.unmetOptional) logger.info("unsatisfied optional capsule import", { import: line });
    for (const key of plan.duplicates) logger.warn("interface exported by more than one capsule", { interface: key });
    const toStart: CapsuleRecord[] = [];
    for (const loaded of plan.order) {
      for (const warning of loaded.warnings) logger.warn(warning);
      if (registry.has(loaded.manifest.package.name)) continue;
      if (loaded.manifest.component.length > 0) {
        toStart.push(registry.register(loaded, "loading", undefined, loaded.hash));
      } else {
        registry.register(loaded, "ready", undefined, loaded.hash);
        logger.info("capsule loaded", { name: loaded.manifest.package.name, version: loaded.manifest.package.version, dir: loaded.dir });
        audit.capsule("load", loaded.manifest.package.name, { version: loaded.manifest.package.version, dir: loaded.dir });
      }
    }
    return toStart;
  }

  /**
   * Starts capsules with code (reference §6.3): uplinks first, then the rest, each group in parallel, until ready
   * or failed; `onStarted` hears of each as it settles.
   */
  private async startCapsules(toStart: CapsuleRecord[], onStarted?: (record: CapsuleRecord) => void): Promise<void> {
    const start = (record: CapsuleRecord) => this.o.supervisor.start(record).then(() => onStarted?.(record));
    await Promise.all(toStart.filter((r) => r.manifest.capabilities.uplink).map(start));
    await Promise.all(toStart.filter((r) => !r.manifest.capabilities.uplink).map(start));
  }
}
