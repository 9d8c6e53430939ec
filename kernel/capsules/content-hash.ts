/**
 * A fingerprint of a capsule directory's contents, so a reload restarts only the capsules whose files changed
 * (reference §11 item 2: its watcher hashed the source tree and reloaded only on a change). Dependencies and VCS
 * data (`node_modules`, `.git`) are left out.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/** Directory names never hashed or watched. */
export const IGNORED_DIRS: ReadonlySet<string> = new Set(["node_modules", ".git"]);

/** True for a path inside an ignored directory. */
export function isIgnoredPath(file: string): boolean {
  return file.split(/[\\/]/).some((segment) => IGNORED_DIRS.has(segment));
}

/**
 * SHA-256 over every file's relative path and bytes in `dir`, in sorted order, then over each of `extraFiles`
 * (files outside the directory that the capsule's load depends on, such as the operator's env file; a missing one
 * counts as absent).
 */
export async function capsuleHash(dir: string, extraFiles: readonly string[] = []): Promise<string> {
  const hash = createHash("sha256");
  const walk = async (relative: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(path.join(dir, relative), { withFileTypes: true });
    } catch {
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of entries) {
      const child = path.join(relative, entry.name);
      if (entry.isDirectory()) {
        if (!IGNORED_DIRS.has(entry.name)) await walk(child);
      } else if (entry.isFile()) {
        try {
          const bytes = await fs.readFile(path.join(dir, child));
          hash.update(`${child}\u0000${bytes.length}\u0000`).update(bytes);
        } catch {
          hash.update(`${child}\u0000unreadable\u0000`);
        }
      }
    }
  };
  await walk("");
  for (const file of extraFiles) {
    const bytes = await fs.readFile(file).catch(() => null);
    hash.update(`\u0001${file}\u0000`).update(bytes === null ? "absent" : `${bytes.length}\u0000`);
    if (bytes !== null) hash.update(bytes);
  }
  return hash.digest("hex");
}
