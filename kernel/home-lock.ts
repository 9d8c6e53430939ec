/**
 * One daemon per `$ASTRID_HOME`. The socket probe catches a daemon that is already serving, but two daemons started
 * at the same moment both pass it, and the loser's clean-up would then remove the winner's token or ready file (the
 * reference has the same race). So the first thing a daemon writes is `run/daemon.lock`, created with O_EXCL and
 * holding its pid; the loser stops before it touches anything else. A lock left by a daemon that died (SIGKILL, a
 * crash) names a pid that is gone, or one that is no longer an astrid daemon, and is taken over.
 */
import fs from "node:fs";
import { AstridError } from "../protocol/errors";

/** Releases the lock (only while it still names this process). */
export type ReleaseLock = () => void;

/** How long a takeover waits before checking that no other daemon took the same stale lock. */
const TAKEOVER_SETTLE_MS = 50;

/** Takes the home lock or throws ASTRID_ERR_ALREADY_RUNNING naming the holder. */
export async function acquireHomeLock(lockPath: string): Promise<ReleaseLock> {
  const mine = `${process.pid}\n`;
  try {
    fs.writeFileSync(lockPath, mine, { flag: "wx", mode: 0o600 });
    return release(lockPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const holder = readHolder(lockPath);
  if (holder !== undefined && isDaemon(holder)) throw held(lockPath, holder);
  // Stale: replace it in one rename, then make sure another daemon taking it over at the same moment did not win.
  const temp = `${lockPath}.${process.pid}`;
  fs.writeFileSync(temp, mine, { mode: 0o600 });
  fs.renameSync(temp, lockPath);
  await new Promise((resolve) => setTimeout(resolve, TAKEOVER_SETTLE_MS));
  const now = readHolder(lockPath);
  if (now !== process.pid) throw held(lockPath, now);
  return release(lockPath);
}

function release(lockPath: string): ReleaseLock {
  return () => {
    if (readHolder(lockPath) === process.pid) fs.rmSync(lockPath, { force: true });
  };
}

function held(lockPath: string, pid: number | undefined): AstridError {
  return new AstridError("ASTRID_ERR_ALREADY_RUNNING",
    `Another kernel instance${pid === undefined ? "" : ` (pid ${pid})`} is starting or running on this home (${lockPath})`);
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
