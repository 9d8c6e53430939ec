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

/**
 * True for a name that is never part of a capsule's contents: dependencies, VCS data, and dotfiles and editor
 * leftovers (`.DS_Store`, `.x.swp`, `x~`, `#x#`) — saving in an editor must not restart a capsule twice.
 * `.env.json` is the exception: a capsule's own env values are part of what it loads.
 */
export function isIgnoredName(name: string): boolean {
  if (name === ".env.json") return false;
  return IGNORED_DIRS.has(name) || name.startsWith(".") || name.endsWith("~") || (name.startsWith("#") && name.endsWith("#"));
}

/** True for a path (relative to a watched root) with an ignored segment. */
export function isIgnoredPath(relative: string): boolean {
  return relative.split(/[\\/]/).some((segment) => segment !== "" && isIgnoredName(segment));
}

/**
 * SHA-256 over every file's relative path and bytes in `dir`, in sorted order, then over each of `extraFiles`
 * (files outside the directory that the capsule's load depends on, such as the operator's env file; a missing one
 * counts as absent). `onFile` sees each file's relative path and the bytes hashed for it.
 */
export async function capsuleHash(dir: string, extraFiles: readonly string[] = [], onFile?: (relative: string, bytes: Buffer) => void): Promise<string> {
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
      if (isIgnoredName(entry.name)) continue;
      const child = path.join(relative, entry.name);
      // A symlinked file counts with its target's bytes; a symlinked directory is not followed (no cycles).
      const isFile = entry.isFile() || (entry.isSymbolicLink() && (await fs.stat(path.join(dir, child)).catch(() => null))?.isFile() === true);
      if (entry.isDirectory()) {
        await walk(child);
      } else if (isFile) {
        try {
          const bytes = await fs.readFile(path.join(dir, child));
          hash.update(`${child}\u0000${bytes.length}\u0000`).update(bytes);
          onFile?.(child, bytes);
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
