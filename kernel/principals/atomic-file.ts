/**
 * Policy files are written whole or not at all: to a temp file beside the target (mode 0600), flushed, then renamed
 * over it, so a crash or a concurrent reader never sees half a profile (reference §8.5, §12 item 8).
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";

/** Writes `text` to `file` atomically with mode 0600, creating its directory (0700) when missing. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const dir = path.dirname(file);
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = path.join(dir, `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const handle = await fs.open(temp, "wx", 0o600);
    try {
      await handle.writeFile(text, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    // The mode of `open` is masked by the umask; the file must be 0600 whatever it is.
    await fs.chmod(temp, 0o600);
    await fs.rename(temp, file);
  } catch (err) {
    await fs.rm(temp, { force: true });
    throw err;
  }
}

/** The file's text, or null when it does not exist. */
export async function readFileIfExists(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

/**
 * Removes the temp files `writeFileAtomic` leaves in `dir` when the daemon dies between writing and renaming
 * (`.<name>.<hex>.tmp`): boot calls this, when no write can be in progress. Returns how many it removed.
 */
export async function sweepTempFiles(dir: string): Promise<number> {
  let removed = 0;
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!/^\..+\.[0-9a-f]{12}\.tmp$/.test(name)) continue;
    await fs.rm(path.join(dir, name), { force: true });
    removed++;
  }
  return removed;
}
