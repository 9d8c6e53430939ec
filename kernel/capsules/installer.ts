/**
 * `InstallCapsule` for a local capsule directory (reference §11 item 1: the reference only answers "not yet
 * implemented"). The capsule loader worker copies it beside its target under a hidden name and swaps it in by
 * renames; a reload pass loads it (running its install or upgrade hook); when it does not come up, the previous
 * copy is restored and loaded again. Only the decisions run here; every file operation runs in the loader.
 */
import path from "node:path";
import type { StagedInstall } from "../../protocol/capsule-loader";
import { AstridError } from "../../protocol/errors";
import { CLI_CAPSULE_NAME } from "../ingress-policy";
import type { CapsuleLoader } from "./loader-client";
import type { CapsuleRecord } from "./registry";

/** What an install did. */
export interface InstallOutcome {
  name: string;
  version: string;
  dir: string;
  state: string;
  /** The version it replaced, if one was installed there. */
  previous_version?: string;
  /** False when a copy earlier in the discovery order is the one running. */
  active: boolean;
  active_dir: string;
}

/** What the installer needs from the kernel. */
export interface InstallContext {
  /** The capsules directory to install into. */
  root: string;
  loader: CapsuleLoader;
  /** Runs one reload pass (serialised with every other). */
  reload(trigger: string): Promise<void>;
  record(name: string): CapsuleRecord | undefined;
}

/** Names that may not be installed while the daemon runs, with why. */
const REFUSED: Record<string, string> = {
  [CLI_CAPSULE_NAME]: `${CLI_CAPSULE_NAME} is the socket policy, read once at boot; replace it while the daemon is stopped`,
};

/** Copies the capsule at `source` into `ctx.root`, loads it, and restores the previous copy if it fails. */
export async function installCapsule(source: string, ctx: InstallContext): Promise<InstallOutcome> {
  if (/^(@|https?:|git@|github\.com\/|openclaw:)/.test(source)) {
    throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", `only local capsule directories can be installed, not ${JSON.stringify(source)}`);
  }
  if (!path.isAbsolute(source) || source.split(/[\\/]/).includes("..")) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `source must be an absolute path without "..", not ${JSON.stringify(source)} (the CLI resolves relative paths)`);
  }
  const staged: StagedInstall = await ctx.loader.stageInstall(source, ctx.root, REFUSED);
  const { name, target } = staged;
  // The registry still holds the copy that was there: the reload below has not run yet.
  const previous = staged.backup !== undefined ? ctx.record(name)?.version : undefined;

  await ctx.reload(`InstallCapsule ${name}`);
  const record = ctx.record(name);
  // A serving copy whose replacement did not load keeps serving (blue/green reload) and says why in `rejected`.
  if (record && record.dir === target && (record.state !== "ready" || record.rejected !== undefined)) {
    const reason = record.rejected?.reason ?? record.lastError ?? record.state;
    await ctx.loader.rollbackInstall(staged);
    await ctx.reload(`InstallCapsule ${name} rolled back`);
    throw new AstridError("ASTRID_ERR_CAPSULE_INSTALL_FAILED",
      `${name} ${staged.version} did not load: ${reason}; ${staged.backup !== undefined ? `the previous copy${previous ? ` (${previous})` : ""} was restored` : "nothing was left installed"}`);
  }
  await ctx.loader.discardBackup(staged);
  return {
    name,
    version: staged.version,
    dir: target,
    state: record?.state ?? "unknown",
    ...(previous !== undefined ? { previous_version: previous } : {}),
    active: record?.dir === target,
    active_dir: record?.dir ?? target,
  };
}
