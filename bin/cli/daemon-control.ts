/**
 * What the `astrid` CLI does to a daemon: find it, start it and wait for readiness, connect, stop it.
 * Reference §9.3, with its races fixed: `stop` waits for the daemon to be gone, `status` reads its own reply.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { DaemonClient } from "../../protocol/client";
import type { AstridHome } from "../../kernel/home";
import { lockHolder } from "../../kernel/home-lock";
import { probeSocket } from "../../kernel/socket-prepare";
import { readTokenFile } from "../../kernel/session-token";

/** The daemon entry point beside this CLI. */
export const DAEMON_SCRIPT = path.join(__dirname, "..", "astrid-daemon.js");

/**
 * Readiness polling: every 10 ms, for 10 s of wall time as the reference does (it polls every 50 ms, 200 times; the
 * finer step makes `astrid start` return up to 40 ms sooner for the cost of a stat and a small file read per step,
 * and the deadline is a clock, not a count, so a loaded machine's slower steps do not stretch it).
 */
const READY_POLL_MS = 10;
const READY_DEADLINE_MS = 10_000;

/** What is at the socket: a live daemon, nothing, or a stale file that was just removed. */
export async function daemonState(home: AstridHome): Promise<"live" | "absent" | "cleaned"> {
  const probe = await probeSocket(home.socketPath);
  if (probe === "stale") {
    fs.rmSync(home.socketPath, { force: true });
    fs.rmSync(home.readyPath, { force: true });
    return "cleaned";
  }
  return probe;
}

/** Connects with the token from `run/system.token`. */
export async function connect(home: AstridHome, timeoutMs = 10_000): Promise<DaemonClient> {
  const token = readTokenFile(home.tokenPath);
  if (token === null) {
    throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", `No readable session token at ${home.tokenPath}; is the daemon running?`);
  }
  return DaemonClient.connect({ socketPath: home.socketPath, token, timeoutMs });
}

/** Options for spawning a daemon. */
export interface StartOptions {
  ephemeral: boolean;
  workspace: string;
  env: NodeJS.ProcessEnv;
  /** Called on every poll, for a progress indicator. */
  onPoll?: (elapsedMs: number) => void;
}

/** A ready file this much older than the spawn still counts (file-time granularity). */
const READY_CLOCK_SLACK_MS = 100;

/** How long a daemon that missed the start deadline gets to shut down cleanly before it is killed. */
const STOP_GRACE_MS = 8000;

/**
 * Spawns a detached daemon and resolves with its PID once `run/system.ready` exists. Fails with the daemon's own
 * error when it refuses its flags or settings, and with ASTRID_ERR_DAEMON_START_FAILED (and the log path) when it
 * exits early otherwise or is not ready within 10 s.
 */
export async function startDaemon(home: AstridHome, options: StartOptions): Promise<number> {
  // --quiet: the log file has every line; stderr carries only a refusal to start.
  const args = [DAEMON_SCRIPT, "--quiet", "--workspace", options.workspace];
  if (options.ephemeral) args.push("--ephemeral");
  // A ready file counts only if written after this spawn: a stale one is ignored rather than deleted (deleting it
  // could remove that of a daemon another `astrid start` is bringing up at the same moment).
  const started = Date.now();
  const fresh = () => (fs.statSync(home.readyPath, { throwIfNoEntry: false })?.mtimeMs ?? 0) >= started - READY_CLOCK_SLACK_MS;
  // stderr is read until ready: a daemon that stops before (a bad flag or setting, found before its log exists)
  // says why there, and that is what the user sees. Then it is let go; the daemon ignores a closed stderr.
  const child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", "ignore", "pipe"], env: options.env });
  let said = "";
  child.stderr!.setEncoding("utf8").on("data", (text: string) => {
    if (said.length < MAX_STDERR_CHARS) said += text;
  });
  let exited: number | null | undefined;
  child.once("exit", (code, signal) => {
    exited = code ?? (signal ? 128 : 1);
  });
  // Every line is read before the exit is reported (the exit can come before the pipe's last data).
  const drained = new Promise<void>((resolve) => child.stderr!.once("close", resolve));
  const deadline = Date.now() + READY_DEADLINE_MS;
  while (Date.now() < deadline) {
    if (exited === undefined && fresh() && lockHolder(home.lockPath) === child.pid) {
      child.stderr!.destroy();
      child.unref();
      return child.pid!;
    }
    if (exited !== undefined) {
      // Lost the race to another daemon starting on this home (it holds the lock): that one is the answer.
      const holder = lockHolder(home.lockPath);
      if (holder !== undefined && holder !== child.pid) {
        while (Date.now() < deadline && !fresh()) await new Promise((r) => setTimeout(r, READY_POLL_MS));
        throw new AstridError("ASTRID_ERR_ALREADY_RUNNING", `Another Astrid daemon (PID ${holder}) is ${fresh() ? "running" : "starting"} on this home.`);
      }
      await Promise.race([drained, new Promise((r) => setTimeout(r, STOP_GRACE_MS))]);
      const own = refusal(said);
      if (own) throw own;
      throw new AstridError("ASTRID_ERR_DAEMON_START_FAILED",
        `Daemon exited prematurely (exit code ${exited})${lastLoggedError(home) || lastSaid(said)}. Check logs: ${home.logDir}`);
    }
    options.onPoll?.(Date.now() - started);
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
  // Asked to stop first, so it removes its socket, token and lock; killed only if it does not within the grace.
  child.kill("SIGTERM");
  for (let waited = 0; exited === undefined && waited < STOP_GRACE_MS; waited += READY_POLL_MS) {
    await new Promise((r) => setTimeout(r, READY_POLL_MS));
  }
  if (exited === undefined) child.kill("SIGKILL");
  throw new AstridError("ASTRID_ERR_DAEMON_START_FAILED", `Daemon failed to become ready within 10 seconds. Check logs: ${home.logDir}`);
}

/** How much of a starting daemon's stderr is kept. */
const MAX_STDERR_CHARS = 16 * 1024;

/** The daemon's usage and configuration refusals, reported as its own (they come before its log exists). */
const OWN_REFUSALS = new Set(["ASTRID_ERR_CONFIG_INVALID", "ASTRID_ERR_INVALID_ARGUMENT"]);

/** The daemon's last words `astrid-daemon: <message> [CODE]` as an error, when they are a refusal of its settings. */
function refusal(stderr: string): AstridError | undefined {
  const m = /^astrid-daemon: ([^]*) \[(ASTRID_ERR_[A-Z_]+)\]\s*$/m.exec(stderr.trim().split("\n").at(-1) ?? "");
  return m && OWN_REFUSALS.has(m[2]!) ? new AstridError(m[2] as "ASTRID_ERR_CONFIG_INVALID", m[1]!) : undefined;
}

/** `: <message>` of the daemon's last stderr line, or "". */
function lastSaid(stderr: string): string {
  const m = /^astrid-daemon: ([^]*?)(?: \[ASTRID_ERR_[A-Z_]+\])?\s*$/.exec(stderr.trim().split("\n").at(-1) ?? "");
  return m ? `: ${m[1]}` : "";
}

/** `: <message>` of the newest error line in today's log, or "". */
function lastLoggedError(home: AstridHome): string {
  try {
    const files = fs.readdirSync(home.logDir).filter((f) => /^astrid\.\d{4}-\d{2}-\d{2}\.log$/.test(f)).sort();
    const newest = files.at(-1);
    if (!newest) return "";
    const lines = fs.readFileSync(path.join(home.logDir, newest), "utf8").trim().split("\n").reverse();
    for (const line of lines) {
      const entry = JSON.parse(line) as { level?: string; error?: string; message?: string };
      if (entry.level === "error") return `: ${entry.error ?? entry.message}`;
    }
  } catch {
    // No log to quote: the message still points at the directory.
  }
  return "";
}

/** Resolves once socket and token are gone (the daemon's last shutdown steps), or rejects after `timeoutMs`. */
export async function waitForExit(home: AstridHome, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (fs.existsSync(home.socketPath) || fs.existsSync(home.tokenPath)) {
    if (Date.now() > deadline) throw new AstridError("ASTRID_ERR_TIMEOUT", `daemon did not finish shutting down within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `XhMMmSSs`, `MmSSs` or `Ss`, as the reference CLI prints uptime. */
export function formatUptime(secs: number): string {
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (h > 0) return `${h}h${pad(m)}m${pad(s)}s`;
  if (m > 0) return `${m}m${pad(s)}s`;
  return `${s}s`;
}
