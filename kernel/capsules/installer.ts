/**
 * `InstallCapsule` for a local capsule directory (reference §11 item 1: the reference only answers "not yet
 * implemented"). The copy is staged beside its target under a hidden name, swapped in by renames, loaded by a
 * reload pass (which runs its install or upgrade hook), and rolled back — the previous copy restored and loaded
 * again — when the new one does not come up.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { CLI_CAPSULE_NAME } from "../ingress-policy";
import { loadManifest } from "./manifest";
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
  /** Runs one reload pass (serialised with every other). */
  reload(trigger: string): Promise<void>;
  record(name: string): CapsuleRecord | undefined;
}

/** Copies the capsule at `source` into `ctx.root`, loads it, and restores the previous copy if it fails. */
export async function installCapsule(source: string, ctx: InstallContext): Promise<InstallOutcome> {
  if (/^(@|https?:|git@|github\.com\/|openclaw:)/.test(source)) {
    throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", `only local capsule directories can be installed, not ${JSON.stringify(source)}`);
  }
  if (!path.isAbsolute(source) || source.split(/[\\/]/).includes("..")) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `source must be an absolute path without "..", not ${JSON.stringify(source)} (the CLI resolves relative paths)`);
  }
  let stat: fs.Stats;
  try {
    stat = fs.statSync(source);
  } catch {
    throw new AstridError("ASTRID_ERR_NOT_FOUND", `${source} does not exist`);
  }
  if (!stat.isDirectory()) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${source} is not a directory (give the capsule's directory, which holds Capsule.toml)`);
  const { manifest } = loadManifest(source); // throws ASTRID_ERR_MANIFEST_INVALID naming file, line and field
  const name = manifest.package.name;
  if (name === CLI_CAPSULE_NAME) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${CLI_CAPSULE_NAME} is the socket policy, read once at boot; replace it while the daemon is stopped`);
  }
  const target = path.join(ctx.root, name);
  const real = (p: string) => fs.realpathSync(p);
  const inside = (a: string, b: string) => a === b || a.startsWith(b + path.sep);
  fs.mkdirSync(ctx.root, { recursive: true, mode: 0o700 });
  if (inside(real(source), real(ctx.root)) || inside(real(ctx.root), real(source))) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${source} overlaps the capsules directory ${ctx.root}; install from a directory outside it`);
  }

  // Hidden names: discovery and the watcher skip them, so a half-copied capsule is never loaded.
  const suffix = randomBytes(4).toString("hex");
  const staged = path.join(ctx.root, `.${name}.installing-${suffix}`);
  const backup = path.join(ctx.root, `.${name}.previous-${suffix}`);
  fs.cpSync(source, staged, { recursive: true, filter: (file) => path.basename(file) !== ".git" });
  const previous = fs.existsSync(target) ? ctx.record(name)?.version : undefined;
  const hadTarget = fs.existsSync(target);
  try {
    if (hadTarget) fs.renameSync(target, backup);
    fs.renameSync(staged, target);
  } catch (err) {
    fs.rmSync(staged, { recursive: true, force: true });
    if (hadTarget && !fs.existsSync(target) && fs.existsSync(backup)) fs.renameSync(backup, target);
    throw err;
  }

  await ctx.reload(`InstallCapsule ${name}`);
  const record = ctx.record(name);
  if (record && record.dir === target && record.state !== "ready") {
    const reason = record.lastError ?? record.state;
    fs.rmSync(target, { recursive: true, force: true });
    if (hadTarget) fs.renameSync(backup, target);
    await ctx.reload(`InstallCapsule ${name} rolled back`);
    throw new AstridError("ASTRID_ERR_CAPSULE_INSTALL_FAILED",
      `${name} ${manifest.package.version} did not load: ${reason}; ${hadTarget ? `the previous copy${previous ? ` (${previous})` : ""} was restored` : "nothing was left installed"}`);
  }
  fs.rmSync(backup, { recursive: true, force: true });
  return {
    name,
    version: manifest.package.version,
    dir: target,
    state: record?.state ?? "unknown",
    ...(previous !== undefined ? { previous_version: previous } : {}),
    active: record?.dir === target,
    active_dir: record?.dir ?? target,
  };
}
