/**
 * Hot reload: chokidar watches the capsule roots and, once edits have been quiet for a moment, asks the kernel to
 * reconcile (the same pass as ReloadCapsules: changed capsules restart, removed ones unload, new ones load).
 * A root that does not exist yet (a workspace without `.astrid/capsules`) is checked for every few seconds and
 * watched from when it appears. Runs in the capsule loader worker.
 */
import fs from "node:fs";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { isIgnoredPath } from "./content-hash";

/** Where the watcher's own log lines go (the kernel's log, across the loader's port). */
export type WatchLog = (level: "info" | "warn", message: string, fields: Record<string, unknown>) => void;

/**
 * Quiet time after the last change before a reload: long enough that an editor's save (write, rename, chmod) is
 * one reload, short enough that a save is answered by the new version within a quarter second.
 */
export const RELOAD_DEBOUNCE_MS = 50;
/**
 * Quiet time once changes have kept coming for longer than RELOAD_DEBOUNCE_MS, or come again within STORM_GAP_MS
 * of the last reload (a save storm, a build writing files): the rest of the storm becomes one reload of its final
 * content. The reconciler also keeps at most one watcher pass queued behind the running one.
 */
export const STORM_DEBOUNCE_MS = 300;
const STORM_GAP_MS = 500;
/** How often a missing root is looked for. */
const MISSING_ROOT_POLL_MS = 2000;

/** Watches capsule directories and calls `reload` after changes settle. */
export class CapsuleWatcher {
  private readonly watcher: FSWatcher;
  private readonly missing: Set<string>;
  private debounce: NodeJS.Timeout | undefined;
  /** When the changes not yet reloaded began. */
  private burstStart: number | undefined;
  /** When the last reload was asked for. */
  private reloadedAt = -Infinity;
  private readonly poll: NodeJS.Timeout;
  private closed = false;

  private readonly roots: string[];

  constructor(roots: readonly string[], private readonly reload: (changed: string) => void, private readonly log: WatchLog) {
    this.roots = [...new Set(roots.map((root) => path.resolve(root)))];
    const present = this.roots.filter((root) => fs.existsSync(root));
    this.missing = new Set(this.roots.filter((root) => !present.includes(root)));
    // Ignored segments are judged below the root, so a root that itself lies under node_modules is still watched.
    this.watcher = watch(present, { ignoreInitial: true, ignored: (file) => this.ignored(file) });
    this.watcher.on("all", (event, file) => {
      const resolved = path.resolve(file);
      if (event === "unlinkDir" && this.roots.includes(resolved)) {
        // The root itself went away (deleted, or swapped by a rename): watch for it to come back.
        this.watcher.unwatch(resolved);
        this.missing.add(resolved);
      }
      this.changed(file);
    });
    this.watcher.on("error", (err) => this.log("warn", "capsule watcher error", { error: String(err) }));
    this.poll = setInterval(() => this.lookForMissingRoots(), MISSING_ROOT_POLL_MS);
    this.poll.unref();
    this.log("info", "watching capsule directories", { roots: present, waiting_for: [...this.missing] });
  }

  /** Resolves once the initial scan is done (changes before that are not reported). */
  ready(): Promise<void> {
    return new Promise((resolve) => this.watcher.once("ready", () => resolve()));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.debounce);
    clearInterval(this.poll);
    await this.watcher.close();
  }

  private ignored(file: string): boolean {
    const resolved = path.resolve(file);
    const root = this.roots.find((r) => resolved === r || resolved.startsWith(r + path.sep));
    return root !== undefined && isIgnoredPath(path.relative(root, resolved));
  }

  private changed(file: string): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    const now = performance.now();
    this.burstStart ??= now;
    const storm = now - this.burstStart > RELOAD_DEBOUNCE_MS || now - this.reloadedAt < STORM_GAP_MS;
    this.debounce = setTimeout(() => {
      this.burstStart = undefined;
      this.reloadedAt = performance.now();
      if (!this.closed) this.reload(file);
    }, storm ? STORM_DEBOUNCE_MS : RELOAD_DEBOUNCE_MS);
  }

  private lookForMissingRoots(): void {
    // A root deleted without an `unlinkDir` reaching us (it can be lost under load) is noticed here as well.
    for (const root of this.roots) {
      if (this.missing.has(root) || fs.existsSync(root)) continue;
      this.watcher.unwatch(root);
      this.missing.add(root);
      this.changed(root);
    }
    for (const root of this.missing) {
      if (!fs.existsSync(root)) continue;
      this.missing.delete(root);
      this.watcher.add(root);
      this.log("info", "capsule directory appeared; watching it", { root });
      this.changed(root);
    }
  }
}
