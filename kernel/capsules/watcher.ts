/**
 * Hot reload: chokidar watches the capsule roots and, once edits have been quiet for a moment, asks the kernel to
 * reconcile (the same pass as ReloadCapsules: changed capsules restart, removed ones unload, new ones load).
 * A root that does not exist yet (a workspace without `.astrid/capsules`) is checked for every few seconds and
 * watched from when it appears.
 */
import fs from "node:fs";
import { watch, type FSWatcher } from "chokidar";
import type { Logger } from "../logger";
import { isIgnoredPath } from "./content-hash";

/** Quiet time after the last change before a reload (a save storm becomes one reload). */
export const RELOAD_DEBOUNCE_MS = 300;
/** How often a missing root is looked for. */
const MISSING_ROOT_POLL_MS = 2000;

/** Watches capsule directories and calls `reload` after changes settle. */
export class CapsuleWatcher {
  private readonly watcher: FSWatcher;
  private readonly missing: Set<string>;
  private debounce: NodeJS.Timeout | undefined;
  private readonly poll: NodeJS.Timeout;
  private closed = false;

  constructor(roots: readonly string[], private readonly reload: (changed: string) => void, private readonly logger: Logger) {
    const unique = [...new Set(roots)];
    const present = unique.filter((root) => fs.existsSync(root));
    this.missing = new Set(unique.filter((root) => !present.includes(root)));
    this.watcher = watch(present, { ignoreInitial: true, ignored: (file) => isIgnoredPath(file) });
    this.watcher.on("all", (_event, file) => this.changed(file));
    this.watcher.on("error", (err) => this.logger.warn("capsule watcher error", { error: String(err) }));
    this.poll = setInterval(() => this.lookForMissingRoots(), MISSING_ROOT_POLL_MS);
    this.poll.unref();
    this.logger.info("watching capsule directories", { roots: present, waiting_for: [...this.missing] });
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

  private changed(file: string): void {
    if (this.closed) return;
    clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      if (!this.closed) this.reload(file);
    }, RELOAD_DEBOUNCE_MS);
  }

  private lookForMissingRoots(): void {
    for (const root of this.missing) {
      if (!fs.existsSync(root)) continue;
      this.missing.delete(root);
      this.watcher.add(root);
      this.logger.info("capsule directory appeared; watching it", { root });
      this.changed(root);
    }
  }
}
