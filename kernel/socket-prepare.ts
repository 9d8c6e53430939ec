/**
 * Socket preparation (reference §2.3): length limit, symlink removal, live-vs-stale detection. Nothing here ever
 * touches a file that belongs to a running daemon.
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { AstridError } from "../protocol/errors";

/** `sun_path` is 108 bytes on Linux including the NUL; 104 on macOS and the BSDs. */
export const SOCKET_PATH_LIMIT = process.platform === "linux" ? 108 : 104;

/** What a connect attempt found at a socket path. */
export type SocketProbe = "absent" | "live" | "stale";

/** Fails with ASTRID_ERR_SOCKET_PATH_TOO_LONG when the path cannot be bound without silent truncation. */
export function checkSocketPathLength(socketPath: string): void {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes >= SOCKET_PATH_LIMIT) {
    throw new AstridError(
      "ASTRID_ERR_SOCKET_PATH_TOO_LONG",
      `Socket path is ${bytes} bytes, exceeding the platform limit of ${SOCKET_PATH_LIMIT} bytes: ${socketPath}. ` +
        "Choose a shorter ASTRID_HOME.",
    );
  }
}

/**
 * Tries a plain connect: `live` when something accepts, `stale` on ECONNREFUSED (a socket file nobody serves),
 * `absent` when there is no file. Any other error (EACCES, …) is ASTRID_ERR_SOCKET_UNAVAILABLE.
 */
export function probeSocket(socketPath: string, timeoutMs = 1000): Promise<SocketProbe> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketPath);
    const timer = setTimeout(() => {
      socket.destroy();
      // A listener whose backlog is full still exists: treat as live rather than delete it.
      resolve("live");
    }, timeoutMs);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.destroy();
      resolve("live");
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === "ENOENT") resolve("absent");
      else if (err.code === "ECONNREFUSED") resolve("stale");
      // A listener that accepted and reset us is alive (a daemon in the middle of shutting down).
      else if (err.code === "ECONNRESET") resolve("live");
      else {
        reject(new AstridError("ASTRID_ERR_SOCKET_UNAVAILABLE", `Cannot check socket ${socketPath}: ${err.message}`, { cause: err }));
      }
    });
  });
}

/**
 * Makes `socketPath` ready to bind: checks the length, removes a symlink (never its target), refuses when a live
 * daemon answers, removes a stale socket, and creates the parent directory with mode 0700.
 */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  checkSocketPathLength(socketPath);
  const stat = lstatOrNull(socketPath);
  if (stat?.isSymbolicLink()) fs.unlinkSync(socketPath);
  else if (stat) {
    const probe = await probeSocket(socketPath);
    if (probe === "live") {
      throw new AstridError("ASTRID_ERR_ALREADY_RUNNING", `Another kernel instance is already running on this socket: ${socketPath}`);
    }
    if (probe === "stale") fs.unlinkSync(socketPath);
  }
  const dir = path.dirname(socketPath);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
}

/** True when `p` is a symbolic link (never followed). */
export function isSymlink(p: string): boolean {
  return lstatOrNull(p)?.isSymbolicLink() === true;
}

function lstatOrNull(p: string): fs.Stats | null {
  try {
    return fs.lstatSync(p);
  } catch {
    return null;
  }
}
