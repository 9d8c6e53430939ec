/**
 * One daemon per `$ASTRID_HOME`. The socket probe catches a daemon that is already serving, but two daemons started
 * at the same moment both pass it, and the loser's clean-up would then remove the winner's token or ready file (the
 * reference has the same race). So the first thing a daemon writes is `run/daemon.lock`, holding its pid and created
 * atomically (a hard link, which fails when the lock exists); the loser stops before it touches anything else. A
 * lock left by a daemon that died (SIGKILL, a crash) names a pid that is gone, or one that is no longer an astrid
 * daemon, and is taken over.
 *
 * On Linux the lock itself is the operating system's: an abstract Unix socket named after the home, bound for the
 * daemon's life. Binding is atomic, only one process can hold the name, and the kernel releases it when the process
 * dies however it dies — no stale lock, no reused pid mistaken for its holder, no race between starts. The pid file
 * is then only what it says (who holds the lock, for `astrid start` and for people). Elsewhere the file is the lock.
 */
import { createHash } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { AstridError } from "../protocol/errors";

/** Releases the lock (only while it still names this process). */
export type ReleaseLock = () => void;

/** How long a takeover waits before checking that no other daemon took the same stale lock over. */
const TAKEOVER_SETTLE_MS = 50;

/**
 * Takes the home lock or throws ASTRID_ERR_ALREADY_RUNNING naming the holder. The lock is created whole: the pid is
 * written to a private file first and then hard-linked into place, which fails if a lock exists — a reader never
 * sees an empty lock.
 */
export async function acquireHomeLock(lockPath: string): Promise<ReleaseLock> {
  return process.platform === "linux" ? acquireOsLock(lockPath) : acquireFileLock(lockPath);
}

/** The abstract socket name of a home's lock (Linux): one per canonical run/ directory. */
function lockName(lockPath: string): string {
  let dir = path.dirname(lockPath);
  try {
    dir = fs.realpathSync(dir);
  } catch {
    // Not there yet: the path as given.
  }
  return `\0astrid-daemon-home:${createHash("sha256").update(dir).digest("hex")}`;
}

async function acquireOsLock(lockPath: string): Promise<ReleaseLock> {
  // Nothing ever talks to the lock: a connection is closed at once.
  const server = net.createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ path: lockName(lockPath), exclusive: true }, resolve);
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EADDRINUSE") throw held(lockPath, readHolder(lockPath), true);
    throw err;
  }
  server.unref();
  // Ours now: whatever pid file is there names a process that no longer holds the lock. Replaced whole.
  const temp = `${lockPath}.${process.pid}`;
  fs.writeFileSync(temp, `${process.pid}\n`, { mode: 0o600 });
  fs.renameSync(temp, lockPath);
  return () => {
    if (readHolder(lockPath) === process.pid) fs.rmSync(lockPath, { force: true });
    server.close();
  };
}

/** The lock as a file created atomically (platforms without abstract sockets). */
async function acquireFileLock(lockPath: string): Promise<ReleaseLock> {
  const temp = `${lockPath}.${process.pid}`;
  fs.writeFileSync(temp, `${process.pid}\n`, { mode: 0o600 });
  try {
    if (link(temp, lockPath)) return release(lockPath);
    const holder = readHolder(lockPath);
    if (holder === undefined || isDaemon(holder)) throw held(lockPath, holder);
    // Stale: remove it and link ours; if another daemon did the same meanwhile, exactly one link succeeds.
    fs.rmSync(lockPath, { force: true });
    if (!link(temp, lockPath)) throw held(lockPath, readHolder(lockPath));
    // A third daemon that read the same stale pid may still remove ours and link its own: settle, then check.
    await new Promise((resolve) => setTimeout(resolve, TAKEOVER_SETTLE_MS));
    if (readHolder(lockPath) !== process.pid) throw held(lockPath, readHolder(lockPath));
    return release(lockPath);
  } finally {
    fs.rmSync(temp, { force: true });
  }
}

/** Hard-links `from` to `to`; false when `to` exists. */
function link(from: string, to: string): boolean {
  try {
    fs.linkSync(from, to);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  }
}

/** The pid of the live astrid daemon holding the lock, if any (what `astrid start` checks after losing a race). */
export function lockHolder(lockPath: string): number | undefined {
  const pid = readHolder(lockPath);
  return pid !== undefined && isDaemon(pid) ? pid : undefined;
}

function release(lockPath: string): ReleaseLock {
  return () => {
    if (readHolder(lockPath) === process.pid) fs.rmSync(lockPath, { force: true });
  };
}

function held(lockPath: string, pid: number | undefined, osLock = false): AstridError {
  return new AstridError("ASTRID_ERR_ALREADY_RUNNING", pid === undefined
    ? osLock
      ? `Another kernel instance is starting or running on this home (it holds the lock of ${path.dirname(lockPath)})`
      : `${lockPath} does not name a daemon's pid; if no astrid-daemon runs on this home, remove it`
    : `Another kernel instance (pid ${pid}) is starting or running on this home (${lockPath})`);
}

function readHolder(lockPath: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(lockPath, "utf8").trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` is a live process that looks like an astrid daemon (a reused pid of another program is not). */
function isDaemon(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive but not ours to signal — treat as a holder rather than steal its lock.
    if ((err as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    const args = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return args.some((arg) => /(^|\/)astrid-daemon(\.js)?$/.test(arg));
  } catch {
    return true; // no /proc: trust that the pid is alive
  }
}
