/**
 * Capsule discovery (reference §6.2): the principal's installed capsules, then the workspace's (`--workspace`, not
 * the daemon's CWD as the reference wrongly does), then the capsules bundled with the daemon. The first capsule
 * found with a given name wins; an invalid manifest is reported and skipped; hidden directories are not looked at.
 * Runs in the capsule loader worker, never on the kernel's thread.
 */
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import type { DiscoveredCapsule, DiscoveryResult } from "../../protocol/capsule-loader";
import { MANIFEST_FILE, parseManifest, type LoadedManifest } from "../../protocol/capsule-manifest";
import { AstridError, isAstridError } from "../../protocol/errors";
import { capsuleHash } from "./content-hash";
import { operatorEnvFile } from "./env-files";

/** Reads and validates `<dir>/Capsule.toml`; throws ASTRID_ERR_MANIFEST_INVALID naming the file, line and field. */
export async function loadManifest(dir: string): Promise<LoadedManifest> {
  const file = path.join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  // One stat of the component file; this thread is the loader's own, so a sync call stalls no client.
  return parseManifest(text, dir, (f) => existsSync(f));
}

/**
 * Scans `roots` in order; a root that does not exist is skipped quietly. Each capsule found is fingerprinted
 * (its files and the operator's env file for it, in `envDir`) before anything loads its module, so an edit after
 * this point always shows up as a change.
 */
export async function discoverCapsules(roots: readonly string[], envDir: string): Promise<DiscoveryResult> {
  const result: DiscoveryResult = { capsules: [], problems: [], shadowed: [] };
  const seen = new Set<string>();
  for (const root of roots) {
    for (const dir of await capsuleDirs(root)) {
      let loaded: LoadedManifest;
      try {
        loaded = await loadManifest(dir);
      } catch (err) {
        result.problems.push({ file: path.join(dir, MANIFEST_FILE), message: isAstridError(err) ? err.message : String(err) });
        continue;
      }
      const name = loaded.manifest.package.name;
      if (seen.has(name)) {
        result.shadowed.push(loaded);
        continue;
      }
      seen.add(name);
      const capsule: DiscoveredCapsule = { ...loaded, hash: await capsuleHash(dir, [operatorEnvFile(envDir, name)]) };
      result.capsules.push(capsule);
    }
  }
  return result;
}

/** The root itself when it holds a Capsule.toml, then each subdirectory that does, in name order. */
async function capsuleDirs(root: string): Promise<string[]> {
  let entries;
  try {
    entries = await fs.readdir(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const dirs: string[] = [];
  if (entries.some((e) => e.isFile() && e.name === MANIFEST_FILE)) dirs.push(root);
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    // Hidden directories are never capsules: an install stages and backs up copies under such names.
    if (entry.name.startsWith(".") || !entry.isDirectory()) continue;
    const manifest = path.join(root, entry.name, MANIFEST_FILE);
    if (await fs.access(manifest).then(() => true, () => false)) dirs.push(path.join(root, entry.name));
  }
  return dirs;
}
