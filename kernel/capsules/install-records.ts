/**
 * What the daemon remembers about capsules whose install or upgrade hook succeeded: one JSON record per capsule in
 * the kernel's `system:capsules` KV scope. A capsule without a record runs its install hook; one whose version
 * differs from its record runs its upgrade hook.
 */
import type { LifecycleHook } from "../../protocol/capsule-messages";
import type { Logger } from "../logger";
import type { StorageClient } from "../storage-client";

/** KV scope of the install records: key = capsule name, value = JSON `InstallRecord`. */
export const INSTALL_SCOPE = "system:capsules";

/** What the daemon remembers about a capsule whose install or upgrade hook succeeded. */
export interface InstallRecord {
  version: string;
  installed_at: string;
  updated_at: string;
}

/** The install record of `name`, if its install hook ever succeeded. A record that is not ours reads as absent. */
export async function readInstallRecord(storage: StorageClient, logger: Logger, name: string): Promise<InstallRecord | undefined> {
  const raw = await storage.get(INSTALL_SCOPE, name);
  if (raw === null) return undefined;
  try {
    const parsed = JSON.parse(Buffer.from(raw).toString("utf8")) as InstallRecord;
    if (typeof parsed.version === "string") return parsed;
  } catch {
    // fall through: an unreadable record is reported and treated as "never installed"
  }
  logger.warn("unreadable capsule install record; running its install hook again", { capsule: name });
  return undefined;
}

/** The hook a capsule at `version` must run, given its record: none when the versions match. */
export function hookFor(record: InstallRecord | undefined, version: string): LifecycleHook | undefined {
  if (record === undefined) return { hook: "install" };
  return record.version !== version ? { hook: "upgrade", from: record.version } : undefined;
}

/** Stores that `version` of `name` passed its hook; resolves once durable. */
export async function writeInstallRecord(storage: StorageClient, name: string, version: string, previous: InstallRecord | undefined): Promise<void> {
  const now = new Date().toISOString();
  const next: InstallRecord = { version, installed_at: previous?.installed_at ?? now, updated_at: now };
  await storage.set(INSTALL_SCOPE, name, Buffer.from(JSON.stringify(next), "utf8"));
}
