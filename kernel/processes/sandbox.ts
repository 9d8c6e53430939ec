/**
 * How a host process is confined. `bwrap`: bubblewrap puts it in fresh mount, PID, IPC, UTS and network namespaces
 * with a read-only view of the system directories and the workspace, an empty `/tmp`, no network but loopback,
 * no capabilities, and nothing of `$ASTRID_HOME` or the daemon user's home; it dies with the daemon. `none`: a
 * plain child process of the daemon's user — only its argv, environment and working directory are chosen for it.
 * `auto` picks `bwrap` when a probe run of bubblewrap with exactly these options works, else `none` with one
 * warning in the log.
 */
import { spawn } from "node:child_process";
import fs from "node:fs/promises";
import path from "node:path";

/** What ASTRID_PROCESS_SANDBOX asks for. */
export type SandboxSetting = "auto" | "bwrap" | "none";
/** What host processes actually run under. */
export type SandboxMode = "bwrap" | "none";

/** The directories a sandboxed process sees read-only (when they exist), besides /usr. */
const SYSTEM_DIRS = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** Files under /etc a sandboxed process must not read even though /etc is visible (password hashes, host keys). */
const ETC_SECRETS = ["/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"];
const ETC_SECRET_DIRS = ["/etc/ssh", "/etc/ssl/private"];

/** One top-level system entry: a symlink (Debian's merged /usr: /bin → usr/bin) or a real directory. */
export type LayoutEntry = { path: string; kind: "symlink"; target: string } | { path: string; kind: "dir" };

/** What of the host's root a sandbox recreates, read once. */
export interface HostLayout {
  entries: LayoutEntry[];
  /** Secret files under /etc that exist (each hidden behind /dev/null). */
  etcSecrets: string[];
  /** Secret directories under /etc that exist (each hidden behind an empty tmpfs). */
  etcSecretDirs: string[];
}

/** Reads which system directories exist and which are symlinks (merged /usr). */
export async function readHostLayout(): Promise<HostLayout> {
  const entries: LayoutEntry[] = [];
  for (const dir of SYSTEM_DIRS) {
    const stat = await fs.lstat(dir).catch(() => null);
    if (stat?.isSymbolicLink()) entries.push({ path: dir, kind: "symlink", target: await fs.readlink(dir) });
    else if (stat?.isDirectory()) entries.push({ path: dir, kind: "dir" });
  }
  const exists = async (p: string, dir: boolean) => {
    const stat = await fs.lstat(p).catch(() => null);
    return stat !== null && (dir ? stat.isDirectory() : stat.isFile());
  };
  const etcSecrets: string[] = [];
  for (const file of ETC_SECRETS) if (await exists(file, false)) etcSecrets.push(file);
  const etcSecretDirs: string[] = [];
  for (const dir of ETC_SECRET_DIRS) if (await exists(dir, true)) etcSecretDirs.push(dir);
  return { entries, etcSecrets, etcSecretDirs };
}

/** True when `inner` is `outer` or lies below it (both absolute and normalised). */
export function isWithin(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** What one sandboxed launch needs. */
export interface BwrapLaunch {
  layout: HostLayout;
  /** The workspace root (absolute, canonical): visible read-only at the same path. */
  workspace: string;
  /** `$ASTRID_HOME` (absolute): never visible, even when it lies inside the workspace. */
  astridHome: string;
  /** The working directory (inside the workspace). */
  cwd: string;
  /** The resolved executable (absolute). */
  executable: string;
  /** argv[1..]. */
  args: readonly string[];
}

/** The bubblewrap options shared by the probe and every launch (namespaces, no capabilities, death with the daemon). */
const ISOLATION = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session", "--cap-drop", "ALL"];

/** bubblewrap's argv (without the bwrap path itself) for one launch; the command follows `--`. */
export function bwrapArgv(launch: BwrapLaunch): string[] {
  const argv = ["--ro-bind", "/usr", "/usr"];
  for (const entry of launch.layout.entries) {
    if (entry.kind === "symlink") argv.push("--symlink", entry.target, entry.path);
    else argv.push("--ro-bind", entry.path, entry.path);
  }
  argv.push("--ro-bind", "/etc", "/etc");
  for (const file of launch.layout.etcSecrets) argv.push("--ro-bind", "/dev/null", file);
  for (const dir of launch.layout.etcSecretDirs) argv.push("--tmpfs", dir);
  argv.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  // Writes go through the VFS (fs.write, staged per principal): the workspace is read-only in here.
  argv.push("--ro-bind", launch.workspace, launch.workspace);
  // A home inside the workspace (a workspace of `~`, say) is covered by an empty directory.
  if (isWithin(launch.astridHome, launch.workspace)) argv.push("--tmpfs", launch.astridHome);
  // An executable outside what is visible (a tool under /opt) is bound on its own, read-only.
  const visible = ["/usr", "/etc", launch.workspace, ...launch.layout.entries.map((e) => e.path)];
  if (!visible.some((dir) => isWithin(launch.executable, dir))) argv.push("--ro-bind", launch.executable, launch.executable);
  argv.push(...ISOLATION, "--chdir", launch.cwd, "--", launch.executable, ...launch.args);
  return argv;
}

/** The result of probing bubblewrap. */
export type ProbeResult = { ok: true } | { ok: false; reason: string };

/**
 * Runs `bwrap <the launch options> true` once: whether bubblewrap can create the namespaces here (it cannot in
 * some containers, or where unprivileged user namespaces are off).
 */
export function probeBwrap(bwrap: string, timeoutMs = 5000): Promise<ProbeResult> {
  const argv = ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", ...ISOLATION, "--", "true"];
  return new Promise((resolve) => {
    let stderr = "";
    let settled = false;
    const done = (result: ProbeResult) => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      resolve(result);
    };
    const child = spawn(bwrap, argv, { stdio: ["ignore", "ignore", "pipe"], env: { PATH: "/usr/bin:/bin" } });
    const deadline = setTimeout(() => {
      child.kill("SIGKILL");
      done({ ok: false, reason: `${bwrap} did not finish within ${timeoutMs} ms` });
    }, timeoutMs);
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child.once("error", (err) => done({ ok: false, reason: `${bwrap}: ${err.message}` }));
    child.once("close", (code, signal) => {
      if (code === 0) done({ ok: true });
      else done({ ok: false, reason: `${bwrap} exited with ${code ?? signal}: ${stderr.trim() || "no message"}` });
    });
  });
}
