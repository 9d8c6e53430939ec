/**
 * Where a host process starts and what it is given: its executable found on a fixed PATH by the kernel (never
 * through a shell), its working directory inside the workspace, and a minimal environment — never the daemon's own
 * (no `ASTRID_*`, no tokens).
 */
import { constants } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { isWithin } from "./sandbox";

/** The PATH host processes get and their commands are looked up on. */
export const PROCESS_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * The absolute path of `command`: itself when absolute, else the first executable file of that name on
 * PROCESS_PATH. A relative path with a slash is refused (it would depend on a directory the capsule cannot see).
 */
export async function resolveExecutable(command: string, searchPath: string = PROCESS_PATH): Promise<string> {
  if (command.includes("/") && !path.isAbsolute(command)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `argv[0] ${JSON.stringify(command)} is a relative path: give a command name (looked up on PATH) or an absolute path`);
  }
  const candidates = path.isAbsolute(command) ? [path.normalize(command)] : searchPath.split(":").filter(Boolean).map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    const stat = await fs.stat(candidate).catch(() => null);
    if (!stat?.isFile()) continue;
    if (await fs.access(candidate, constants.X_OK).then(() => true, () => false)) return candidate;
  }
  throw new AstridError("ASTRID_ERR_PROCESS_START_FAILED", path.isAbsolute(command)
    ? `${command} is not an executable file`
    : `command ${JSON.stringify(command)} was not found on PATH (${searchPath})`);
}

/**
 * The working directory a capsule asked for, as an absolute path inside the workspace: `cwd://sub`, or a relative
 * path taken from the workspace root; none means the root. `..` above the root and symlinks leading out are refused
 * (ASTRID_ERR_VFS_PATH_ESCAPE), as are other schemes and absolute paths (ASTRID_ERR_VFS_PATH_INVALID).
 */
export async function resolveCwd(cwd: string | undefined, workspace: string): Promise<string> {
  const root = await fs.realpath(workspace).catch((err: Error) => {
    throw new AstridError("ASTRID_ERR_PROCESS_START_FAILED", `the workspace ${workspace} is not usable: ${err.message}`);
  });
  if (cwd === undefined || cwd === "" || cwd === "cwd://") return root;
  if (cwd.includes("\0")) throw new AstridError("ASTRID_ERR_VFS_PATH_INVALID", "cwd holds a NUL byte");
  let rel = cwd;
  if (rel.startsWith("cwd://")) rel = rel.slice("cwd://".length);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(rel)) {
    throw new AstridError("ASTRID_ERR_VFS_PATH_INVALID", `cwd ${JSON.stringify(cwd)}: host processes run in the workspace; use cwd://<dir> or a relative path`);
  } else if (path.isAbsolute(rel)) {
    throw new AstridError("ASTRID_ERR_VFS_PATH_INVALID", `cwd ${JSON.stringify(cwd)} is absolute; use cwd://<dir> or a path relative to the workspace`);
  }
  const joined = path.resolve(root, rel.replace(/^\/+/, ""));
  if (!isWithin(joined, root)) throw new AstridError("ASTRID_ERR_VFS_PATH_ESCAPE", `cwd ${JSON.stringify(cwd)} leaves the workspace`);
  const real = await fs.realpath(joined).catch(() => null);
  if (real === null) throw new AstridError("ASTRID_ERR_NOT_FOUND", `cwd ${JSON.stringify(cwd)} does not exist in the workspace`);
  if (!isWithin(real, root)) throw new AstridError("ASTRID_ERR_VFS_PATH_ESCAPE", `cwd ${JSON.stringify(cwd)} leads out of the workspace through a symlink`);
  if (!(await fs.stat(real)).isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `cwd ${JSON.stringify(cwd)} is not a directory`);
  return real;
}

/** The environment of a host process: PATH, HOME (and TMPDIR), LANG — nothing of the daemon's. */
export function processEnv(home: string): Record<string, string> {
  return { PATH: PROCESS_PATH, HOME: home, TMPDIR: home, LANG: "C.UTF-8" };
}
