/**
 * The few file operations the VFS does on disk, each safe against what a capsule (or a process it ran) may have put
 * in its way: reads open without following a final symlink and without blocking on a FIFO, are capped before a byte
 * is read, and refuse anything but a regular file; writes go to a temp file that is renamed over the target, so a
 * reader never sees half a file and a symlink at the target is replaced, never followed.
 */
import { constants } from "node:fs";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { ioError, MAX_VFS_FILE_BYTES } from "./paths";

/** What `fs.stat` answers. */
export interface VfsStat {
  size: number;
  is_file: boolean;
  is_dir: boolean;
  mtime_ms: number;
}

/** The stat of a physical path (following links the caller has checked), or null when it does not exist. */
export async function statOrNull(physical: string, guest: string): Promise<VfsStat | null> {
  try {
    const st = await fs.stat(physical);
    return { size: st.isFile() ? st.size : 0, is_file: st.isFile(), is_dir: st.isDirectory(), mtime_ms: Math.trunc(st.mtimeMs) };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw ioError(err, guest);
  }
}

/** The bytes of a regular file, at most MAX_VFS_FILE_BYTES (larger ones are refused before they are read). */
export async function readCapped(physical: string, guest: string): Promise<Buffer> {
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(physical, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw ioError(err, guest);
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a directory (use fs.readdir)`);
    if (!st.isFile()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is not a regular file`);
    if (st.size > MAX_VFS_FILE_BYTES) throw tooLarge(guest, st.size);
    // The file may grow between stat and read: read at most one byte past the cap to notice.
    const buffer = Buffer.alloc(Math.min(st.size, MAX_VFS_FILE_BYTES) + 1);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, filled, buffer.length - filled, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled === buffer.length) {
        if (filled > MAX_VFS_FILE_BYTES) throw tooLarge(guest, filled);
        break;
      }
    }
    return buffer.subarray(0, filled);
  } finally {
    await handle.close();
  }
}

/** The error for a file over the cap. */
export function tooLarge(guest: string, bytes: number): AstridError {
  return new AstridError("ASTRID_ERR_VFS_TOO_LARGE", `${JSON.stringify(guest)} is ${bytes} bytes; the VFS reads and writes at most ${MAX_VFS_FILE_BYTES} bytes`);
}

/**
 * Writes `data` to `target` whole: a temp file in `tempDir` (same filesystem; the target's directory when omitted),
 * then a rename over the target. `mode` is the new file's mode (an existing target's is kept by the caller).
 */
export async function writeAtomic(target: string, data: Uint8Array, guest: string, options: { tempDir?: string; mode?: number } = {}): Promise<void> {
  const dir = options.tempDir ?? path.dirname(target);
  const temp = path.join(dir, `.${path.basename(target).slice(0, 200)}.${randomBytes(6).toString("hex")}.vfs-tmp`);
  try {
    const handle = await fs.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, options.mode ?? 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    if (options.mode !== undefined) await fs.chmod(temp, options.mode);
    await fs.rename(temp, target);
  } catch (err) {
    await fs.rm(temp, { force: true }).catch(() => undefined);
    throw ioError(err, guest);
  }
}

/** The sorted names in a directory, or null when it is not one (or does not exist). */
export async function namesIn(physical: string, guest: string): Promise<string[] | null> {
  try {
    return (await fs.readdir(physical)).sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return null;
    throw ioError(err, guest);
  }
}
