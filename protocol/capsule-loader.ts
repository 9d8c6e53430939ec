/**
 * The capsule loader worker's API: everything about capsules that touches the filesystem — discovery, manifest
 * reading, content hashing, env files, install copies, the hot-reload watcher — runs in that worker, so the kernel's
 * thread only ever waits on a port. The loader is the daemon's own code (no capsule code runs there), so its answers
 * are typed rather than validated; its errors keep their registry codes.
 */
import type { ErrorCode } from "./errors";
import type { LoadedManifest } from "./capsule-manifest";
import type { CapsuleModules } from "./capsule-messages";

/** A manifest that failed to load, with its coded message. */
export interface DiscoveryProblem {
  file: string;
  message: string;
}

/** A capsule found by discovery, with the fingerprint of its files (and its operator env file) at that moment. */
export interface DiscoveredCapsule extends LoadedManifest {
  hash: string;
}

/** What one discovery pass found. */
export interface DiscoveryResult {
  capsules: DiscoveredCapsule[];
  problems: DiscoveryProblem[];
  /** Later copies of a name that an earlier root already provided. */
  shadowed: LoadedManifest[];
}

/** A copy swapped into place, and the hidden backup of the copy it replaced (if there was one). */
export interface StagedInstall {
  name: string;
  version: string;
  target: string;
  backup?: string;
}

/** An answer of the loader: its value, or a coded error. */
export type LoaderResult<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string };

/** A line the loader asks the kernel to log. */
export interface LoaderLogLine {
  level: "info" | "warn" | "error";
  message: string;
  fields: Record<string, unknown>;
}

/** What the kernel hears from the loader without asking: watched files changed, or a log line. */
export interface LoaderEvents {
  changed(file: string): void;
  log(line: LoaderLogLine): void;
}

/** The loader's methods (comlink over the worker's parentPort). */
export interface CapsuleLoaderApi {
  /** Scans `roots` in precedence order; `envDir` holds the operator's env files (part of each fingerprint). */
  discover(roots: string[], envDir: string): Promise<LoaderResult<DiscoveryResult>>;
  /**
   * A capsule's module files for a confined load (ES modules transformed), cached in `cacheFile`. With `expected`
   * (capsule `name`'s fingerprint from discovery) they are checked to be that content (their `hash` says).
   */
  compileModules(dir: string, entry: string, cacheFile: string, expected?: { hash: string; envDir: string; name: string }): Promise<LoaderResult<CapsuleModules>>;
  /** The fingerprint of capsule `name`'s files in `dir` now (as discovery takes it, its operator env file included). */
  contentHash(dir: string, envDir: string, name: string): Promise<LoaderResult<string>>;
  /** The stored `[env]` values of capsule `name` in `dir`. */
  storedEnv(envDir: string, name: string, dir: string): Promise<LoaderResult<Record<string, string>>>;
  /** Copies and swaps in a capsule directory; `refuse` maps names that may not be installed to the reason. */
  stageInstall(source: string, root: string, refuse: Record<string, string>): Promise<LoaderResult<StagedInstall>>;
  rollbackInstall(staged: StagedInstall): Promise<LoaderResult<null>>;
  discardBackup(staged: StagedInstall): Promise<LoaderResult<null>>;
  /** Deletes the capsule directory `dir`, which must be a direct child of `root` (`astrid capsule remove`). */
  removeCapsuleDir(dir: string, root: string): Promise<LoaderResult<null>>;
  /** Watches `roots`; changes (debounced) and log lines reach `events`. Replaces any earlier watch. */
  watch(roots: string[], events: LoaderEvents): Promise<LoaderResult<null>>;
  unwatch(): Promise<LoaderResult<null>>;
}
