/**
 * The filesystem half of `InstallCapsule` (the kernel's `installer.ts` holds the policy): a local capsule directory
 * is copied beside its target under a hidden name (discovery and the watcher skip those, so a half-copied capsule is
 * never loaded), then swapped in by renames, keeping the previous copy as a hidden backup until the kernel says the
 * new one loaded. Runs in the capsule loader worker, so a large copy never stalls the kernel's thread.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import type { StagedInstall } from "../../protocol/capsule-loader";
import { AstridError } from "../../protocol/errors";
import { loadManifest } from "./discovery";

/** Copies the capsule at `source` into `root` and swaps it in; `refuse` names capsules that may not be installed. */
export async function stageInstall(source: string, root: string, refuse: Readonly<Record<string, string>>): Promise<StagedInstall> {
  const stat = await fs.stat(source).catch(() => null);
  if (!stat) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${source} does not exist`);
  if (!stat.isDirectory()) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${source} is not a directory (give the capsule's directory, which holds Capsule.toml)`);
  const { manifest } = await loadManifest(source); // throws ASTRID_ERR_MANIFEST_INVALID naming file, line and field
  const name = manifest.package.name;
  const refusal = refuse[name];
  if (refusal !== undefined) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", refusal);
  const target = path.join(root, name);
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  const [realSource, realRoot] = await Promise.all([fs.realpath(source), fs.realpath(root)]);
  const inside = (a: string, b: string) => a === b || a.startsWith(b + path.sep);
  if (inside(realSource, realRoot) || inside(realRoot, realSource)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${source} overlaps the capsules directory ${root}; install from a directory outside it`);
  }

  const suffix = randomBytes(4).toString("hex");
  const staged = path.join(root, `.${name}.installing-${suffix}`);
  const backup = path.join(root, `.${name}.previous-${suffix}`);
  try {
    await fs.cp(source, staged, { recursive: true, filter: (file) => path.basename(file) !== ".git" });
  } catch (err) {
    await fs.rm(staged, { recursive: true, force: true });
    throw new AstridError("ASTRID_ERR_CAPSULE_INSTALL_FAILED", `cannot copy ${source}: ${(err as Error).message}`, { cause: err });
  }
  const hadTarget = await exists(target);
  try {
    if (hadTarget) await fs.rename(target, backup);
    await fs.rename(staged, target);
  } catch (err) {
    await fs.rm(staged, { recursive: true, force: true });
    if (hadTarget && !(await exists(target)) && (await exists(backup))) await fs.rename(backup, target);
    throw new AstridError("ASTRID_ERR_CAPSULE_INSTALL_FAILED", `cannot move the copy into ${target}: ${(err as Error).message}`, { cause: err });
  }
  return { name, version: manifest.package.version, target, ...(hadTarget ? { backup } : {}) };
}

/** The new copy did not load: remove it and put the previous one (if any) back. */
export async function rollbackInstall(staged: StagedInstall): Promise<void> {
  await fs.rm(staged.target, { recursive: true, force: true });
  if (staged.backup !== undefined) await fs.rename(staged.backup, staged.target);
}

/** The new copy loaded: the previous one goes. */
export async function discardBackup(staged: StagedInstall): Promise<void> {
  if (staged.backup !== undefined) await fs.rm(staged.backup, { recursive: true, force: true });
}

/**
 * Deletes an installed capsule's directory: it is first renamed to a hidden name (discovery and the watcher skip
 * those, so a half-deleted capsule is never loaded), then removed. `dir` must be a direct child of `root`.
 */
export async function removeCapsuleDir(dir: string, root: string): Promise<void> {
  if (path.dirname(path.resolve(dir)) !== path.resolve(root)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${dir} is not a capsule directory of ${root}`);
  }
  const hidden = path.join(root, `.${path.basename(dir)}.removing-${randomBytes(4).toString("hex")}`);
  try {
    await fs.rename(dir, hidden);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new AstridError("ASTRID_ERR_INTERNAL", `cannot remove ${dir}: ${(err as Error).message}`, { cause: err });
  }
  await fs.rm(hidden, { recursive: true, force: true });
}

function exists(file: string): Promise<boolean> {
  return fs.lstat(file).then(() => true, () => false);
}
