/**
 * Capsule discovery (reference §6.2): the principal's installed capsules, then the workspace's (`--workspace`, not
 * the daemon's CWD as the reference wrongly does), then the capsules bundled with the daemon. The first capsule
 * found with a given name wins; an invalid manifest is reported and skipped; hidden directories are not looked at.
 */
import fs from "node:fs";
import path from "node:path";
import { isAstridError } from "../../protocol/errors";
import { loadManifest, MANIFEST_FILE, type LoadedManifest } from "./manifest";

/** A manifest that failed to load, with its coded message. */
export interface DiscoveryProblem {
  file: string;
  message: string;
}

/** What one discovery pass found. */
export interface DiscoveryResult {
  capsules: LoadedManifest[];
  problems: DiscoveryProblem[];
  /** Later copies of a name that an earlier root already provided. */
  shadowed: LoadedManifest[];
}

/** Scans `roots` in order; a root that does not exist is skipped quietly. */
export function discoverCapsules(roots: readonly string[]): DiscoveryResult {
  const result: DiscoveryResult = { capsules: [], problems: [], shadowed: [] };
  const seen = new Set<string>();
  for (const root of roots) {
    for (const dir of capsuleDirs(root)) {
      let loaded: LoadedManifest;
      try {
        loaded = loadManifest(dir);
      } catch (err) {
        result.problems.push({ file: path.join(dir, MANIFEST_FILE), message: isAstridError(err) ? err.message : String(err) });
        continue;
      }
      if (seen.has(loaded.manifest.package.name)) {
        result.shadowed.push(loaded);
        continue;
      }
      seen.add(loaded.manifest.package.name);
      result.capsules.push(loaded);
    }
  }
  return result;
}

/** The root itself when it holds a Capsule.toml, then each subdirectory that does, in name order. */
function capsuleDirs(root: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(root, { withFileTypes: true });
  } catch {
    return [];
  }
  const dirs: string[] = [];
  if (entries.some((e) => e.isFile() && e.name === MANIFEST_FILE)) dirs.push(root);
  for (const entry of entries.sort((a, b) => a.name.localeCompare(b.name))) {
    // Hidden directories are never capsules: an install stages and backs up copies under such names.
    if (entry.name.startsWith(".")) continue;
    if (entry.isDirectory() && fs.existsSync(path.join(root, entry.name, MANIFEST_FILE))) dirs.push(path.join(root, entry.name));
  }
  return dirs;
}
