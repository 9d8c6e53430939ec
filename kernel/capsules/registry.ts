/**
 * The capsule registry: every capsule the daemon knows, loaded or failed, with why. Management requests read it.
 */
import type { ToolDescriptor } from "../../protocol/capsule-messages";
import type { CapsuleManifest, LoadedManifest } from "../../protocol/capsule-manifest";

/** Lifecycle state of a registered capsule (reference §6.3). */
export type CapsuleState = "loading" | "ready" | "failed" | "unloading";

/** One registered capsule. */
export interface CapsuleRecord {
  name: string;
  version: string;
  dir: string;
  manifest: CapsuleManifest;
  state: CapsuleState;
  /** Why it failed, when it did. */
  lastError?: string;
  /** The tools it described when it became ready. */
  tools?: ToolDescriptor[];
  restarts: number;
  /** Fingerprint of the capsule directory when it was loaded (a reload restarts it only when this changes). */
  hash?: string;
  /**
   * Changed files that did not load while this version kept serving (blue/green reload): their fingerprint and
   * why. A watcher pass does not try those files again; a further change or a ReloadCapsules does.
   */
  rejected?: { hash: string | undefined; reason: string };
  /**
   * The principal the capsule belongs to: what it acts for when no message is being handled (its setup, its
   * lifecycle hooks). Every capsule discovered today — installed for `default`, the workspace's, the bundled
   * ones — belongs to `default`.
   */
  owner: string;
  /** A WebAssembly capsule's component as its worker loaded it (hash, exports, memory ceiling); absent for JavaScript. */
  wasm?: import("../../protocol/wasm-capsule").WasmDescription;
}

/** Registered capsules by name, in load order. */
export class CapsuleRegistry {
  private readonly records = new Map<string, CapsuleRecord>();

  /** Registers a capsule in `state`; replaces an earlier record of the same name. */
  register(loaded: LoadedManifest, state: CapsuleState, lastError?: string, hash?: string): CapsuleRecord {
    return this.put(CapsuleRegistry.record(loaded, state, lastError, hash));
  }

  /** A record for `loaded` that is not registered yet (a blue/green reload's next version, registered once it serves). */
  static record(loaded: LoadedManifest, state: CapsuleState, lastError?: string, hash?: string): CapsuleRecord {
    const record: CapsuleRecord = {
      name: loaded.manifest.package.name,
      version: loaded.manifest.package.version,
      dir: loaded.dir,
      manifest: loaded.manifest,
      state,
      restarts: 0,
      owner: "default",
    };
    if (lastError !== undefined) record.lastError = lastError;
    if (hash !== undefined) record.hash = hash;
    return record;
  }

  /** Registers `record`, replacing an earlier record of the same name in place (its load-order position kept). */
  put(record: CapsuleRecord): CapsuleRecord {
    this.records.set(record.name, record);
    return record;
  }

  /** The record for `name`, if registered. */
  get(name: string): CapsuleRecord | undefined {
    return this.records.get(name);
  }

  /** True when a capsule of that name is registered in any state. */
  has(name: string): boolean {
    return this.records.has(name);
  }

  /** Removes a record. */
  unregister(name: string): boolean {
    return this.records.delete(name);
  }

  /** Every record in registration order. */
  all(): CapsuleRecord[] {
    return [...this.records.values()];
  }

  /** Records in state `ready`. */
  ready(): CapsuleRecord[] {
    return this.all().filter((r) => r.state === "ready");
  }
}
