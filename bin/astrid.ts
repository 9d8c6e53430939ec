#!/usr/bin/env node
/**
 * `astrid`: the command-line frontend. Starts, stops and inspects the daemon of `$ASTRID_HOME` over its socket.
 */
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { AstridError, isAstridError } from "../protocol/errors";
import type { DaemonStatus } from "../protocol/kernel-request";
import { DAEMON_VERSION } from "../protocol/version";
import { resolveHome } from "../kernel/home";
import { OPERATOR_KV_SCOPE } from "../protocol/kernel-request";
import { describeReport, tailAuditLog, verifyAuditLog } from "./cli/audit";
import path from "node:path";
import { installCapsule, type InstallOutcome } from "../kernel/capsules/installer";
import { CapsuleLoader, type LoaderLogger } from "../kernel/capsules/loader-client";
import { runChat } from "./cli/chat";
import { daemonState, formatUptime, startDaemon, waitForExit } from "./cli/daemon-control";
import { daemonRequest } from "./cli/daemon-request";
import { adminCommands } from "./cli/admin";
import { frontendCommand } from "./cli/frontend";
import { identityCommand } from "./cli/identity";

interface Global {
  json: boolean;
}

/** Prints a result: the JSON object with --json, else the human lines. */
function out(argv: Global, json: unknown, human: string): void {
  process.stdout.write(argv.json ? `${JSON.stringify(json)}\n` : `${human}\n`);
}

async function start(argv: Global): Promise<void> {
  const home = resolveHome();
  if ((await daemonState(home)) === "live") {
    return out(argv, { running: true, started: false }, "Astrid daemon is already running.");
  }
  const showProgress = !argv.json && process.stderr.isTTY;
  let pid: number;
  try {
    pid = await startDaemon(home, {
      ephemeral: false,
      workspace: process.cwd(),
      env: process.env,
      onPoll: showProgress ? (ms) => process.stderr.write(`\rStarting Astrid daemon… ${(ms / 1000).toFixed(1)} s`) : undefined,
    });
  } catch (err) {
    // Another `astrid start` won the race: a daemon is up (or coming up), which is what was asked for.
    if (!isAstridError(err) || err.code !== "ASTRID_ERR_ALREADY_RUNNING") throw err;
    if (showProgress) process.stderr.write("\r\x1b[K");
    return out(argv, { running: true, started: false }, "Astrid daemon is already running.");
  }
  if (showProgress) process.stderr.write("\r\x1b[K");
  out(argv, { running: true, started: true, pid }, `Astrid daemon started (persistent mode, PID ${pid}).`);
}

async function stop(argv: Global): Promise<void> {
  const home = resolveHome();
  const state = await daemonState(home);
  if (state === "absent") return out(argv, { running: false, stopped: false }, "No Astrid daemon is running.");
  if (state === "cleaned") return out(argv, { running: false, stopped: false, cleaned: true }, "Cleaned up stale daemon socket.");
  try {
    await daemonRequest(home, "Shutdown", { reason: "astrid stop" }, { topicSuffix: "shutdown", knownLive: true, daemonCloses: true });
  } catch (err) {
    // Another `astrid stop` (or an idle timeout) got there first: the daemon went away under us, which is the goal.
    if (isAstridError(err) && (err.code === "ASTRID_ERR_DAEMON_NOT_RUNNING" || err.code === "ASTRID_ERR_CONNECTION_CLOSED")) {
      await waitForExit(home);
      return out(argv, { running: false, stopped: false }, "The Astrid daemon was already stopping; it is stopped.");
    }
    throw err;
  }
  await waitForExit(home);
  out(argv, { running: false, stopped: true }, "Astrid daemon stopped.");
}

async function status(argv: Global): Promise<void> {
  const home = resolveHome();
  const state = await daemonState(home);
  if (state !== "live") {
    const cleaned = state === "cleaned" ? " (a stale socket was cleaned up)" : "";
    return out(argv, { running: false }, `No Astrid daemon is running.${cleaned}`);
  }
  const reply = await daemonRequest(home, "GetStatus", undefined, { topicSuffix: "status", knownLive: true });
  if (reply.status !== "Status") throw new AstridError("ASTRID_ERR_INTERNAL", "Unexpected response from daemon");
  const s: DaemonStatus = reply.data;
  out(argv, { running: true, ...s }, [
    `Astrid daemon (PID ${s.pid}, uptime ${formatUptime(s.uptime_secs)})`,
    `  Version:   ${s.version}`,
    `  Mode:      ${s.ephemeral ? "ephemeral" : "persistent"}`,
    `  Clients:   ${s.connected_clients}`,
    `  Capsules:  ${s.loaded_capsules.length} loaded`,
    ...s.loaded_capsules.map((name) => `    - ${name}`),
  ].join("\n"));
}

// Read before parsing: a usage error is reported before any middleware runs.
const json = process.argv.includes("--json");
let reported = false;

/** Prints an error once: a JSON object on stdout with --json, else one line on stderr ending with its code. */
function report(err: unknown): void {
  if (reported) return;
  reported = true;
  const code = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
  const message = err instanceof Error ? err.message : String(err);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else process.stderr.write(`astrid: ${message} [${code}]\n`);
  // The admin commands' usage errors exit 2 (bin/cli/admin.ts); everything else 1.
  process.exitCode = (err as { exitCode?: unknown } | null)?.exitCode === 2 ? 2 : 1;
}

async function auditVerify(argv: Global): Promise<void> {
  const report = verifyAuditLog(resolveHome());
  if (argv.json) {
    out(argv, report, "");
    if (!report.intact) process.exitCode = 1;
    return;
  }
  out(argv, report, describeReport(report));
}

async function auditTail(argv: Global & { lines: number; follow: boolean }): Promise<void> {
  if (!Number.isInteger(argv.lines) || argv.lines < 0) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "-n must be a whole number ≥ 0 (-n 0 --follow: only new entries)");
  await tailAuditLog(resolveHome(), argv.lines, argv.json, argv.follow, (line) => process.stdout.write(`${line}\n`));
}

/** Runs one KV request against the running daemon (KV lives in the daemon's storage worker). */
async function kv(argv: Global, method: "KvGet" | "KvSet" | "KvList", params: Record<string, unknown>): Promise<unknown> {
  return (await daemonRequest(resolveHome(), method, params, { topicSuffix: "kv" })).data;
}

interface CapsuleMeta {
  name: string;
  version: string;
  state: string;
  source_dir: string;
  restarts: number;
  interceptor_events: string[];
  dropped_events?: number;
  last_error?: string;
  capabilities?: Record<string, unknown>;
  commands?: Array<{ name: string; description: string }>;
}

/** GetCapsuleMetadata from the running daemon. */
async function capsuleMetadata(): Promise<CapsuleMeta[]> {
  return (await daemonRequest(resolveHome(), "GetCapsuleMetadata", undefined, { topicSuffix: "capsules" })).data as CapsuleMeta[];
}

async function capsuleList(argv: Global): Promise<void> {
  const capsules = await capsuleMetadata();
  const width = Math.max(4, ...capsules.map((c) => c.name.length));
  out(argv, capsules, [
    `${"NAME".padEnd(width)}  VERSION    STATE     RESTARTS`,
    ...capsules.map((c) => `${c.name.padEnd(width)}  ${c.version.padEnd(9)}  ${c.state.padEnd(8)}  ${c.restarts}${c.last_error ? `  (${c.last_error})` : ""}`),
  ].join("\n"));
}

async function capsuleInfo(argv: Global, name: string): Promise<void> {
  const c = (await capsuleMetadata()).find((m) => m.name === name);
  if (!c) throw new AstridError("ASTRID_ERR_NOT_FOUND", `no capsule named ${JSON.stringify(name)} is registered (see astrid capsule list)`);
  const caps = c.capabilities ?? {};
  const list = (v: unknown) => (Array.isArray(v) && v.length > 0 ? v.join(", ") : "-");
  out(argv, c, [
    `${c.name} ${c.version}`,
    `  State:         ${c.state}${c.last_error ? ` — ${c.last_error}` : ""}`,
    `  Source:        ${c.source_dir}`,
    `  Restarts:      ${c.restarts}`,
    `  Publishes:     ${list(caps.ipc_publish)}`,
    `  Subscribes:    ${list(caps.ipc_subscribe)}`,
    `  Interceptors:  ${list(c.interceptor_events)}`,
    `  Commands:      ${list((c.commands ?? []).map((x) => x.name))}`,
    `  Dropped events: ${c.dropped_events ?? 0}`,
  ].join("\n"));
}

/**
 * Installs through the running daemon (which loads the capsule, runs its hook and rolls back on failure), or,
 * with no daemon running, copies it into place for the next start.
 */
async function capsuleInstall(argv: Global, dir: string, workspace: boolean): Promise<void> {
  const home = resolveHome();
  const source = path.resolve(dir);
  if ((await daemonState(home)) !== "live") {
    if (workspace) throw new AstridError("ASTRID_ERR_DAEMON_NOT_RUNNING", "--workspace installs need the daemon that serves the workspace; start one with `astrid start`");
    // No daemon: the loader worker makes the same staged copy; the next start loads it.
    const loader = new CapsuleLoader({ log: () => undefined, error: () => undefined } as unknown as LoaderLogger);
    const done = await installCapsule(source, { root: home.principalCapsulesDir("default"), loader, reload: async () => {}, record: () => undefined })
      .finally(() => loader.close());
    return out(argv, { ...done, state: "installed", loaded: false },
      `Installed ${done.name} ${done.version} into ${done.dir}. No daemon is running; it loads (and runs its install hook) on the next start.`);
  }
  const reply = await daemonRequest(home, "InstallCapsule", { source, workspace },
    { topicSuffix: "install_capsule", timeoutMs: 180_000, knownLive: true });
  const done = reply.data as InstallOutcome;
  const upgraded = done.previous_version !== undefined ? ` (was ${done.previous_version})` : "";
  const shadowed = done.active ? "" : ` It is not the running copy: ${done.active_dir} comes first in the discovery order.`;
  out(argv, done, `Installed ${done.name} ${done.version}${upgraded} into ${done.dir}; it is ${done.state}.${shadowed}`);
}

async function main(): Promise<void> {
  // `astrid chat -p … | head`: a reader that went away ends the command quietly, not with a stack trace.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
    report(err);
  });
  await yargs(hideBin(process.argv))
    .scriptName("astrid")
    .usage("$0 <command> [options]\n\nControl the Astrid daemon serving $ASTRID_HOME (default ~/.astrid).")
    .option("json", { type: "boolean", default: false, global: true, describe: "Print one JSON object (for scripts)" })
    .command("chat", "Talk to the agent capsules (spawns an ephemeral daemon for this workspace if none runs)", (y) =>
      y
        .option("session", { alias: "s", type: "string", describe: "resume this session (a UUID; shows its earlier messages); default: a new one" })
        .option("prompt", { alias: "p", type: "string", describe: "headless: send this (after any text piped on stdin), print the reply, exit" })
        .option("repl", { type: "boolean", default: false, describe: "read one prompt per line from stdin even when it is not a terminal" })
        .option("timeout", { type: "number", default: 120, describe: "seconds to wait for a reply (headless: exit 53 when it runs out)" })
        .option("workspace", { alias: "w", type: "string", describe: "workspace of a daemon this command spawns (default: the current directory)" })
        .example("$0 chat", "talk in the terminal; /help lists the commands")
        .example("$0 chat -p \"what is 6 * 7\"", "one prompt, one reply")
        .example("git diff | $0 chat -p \"review this\"", "piped text, then the prompt")
        .example("$0 chat --repl --json < prompts.txt", "one JSON reply per line of input"),
      async (argv) => {
        process.exitCode = await runChat(resolveHome(), {
          session: argv.session,
          prompt: argv.prompt,
          repl: argv.repl,
          json: argv.json as boolean,
          timeoutSecs: argv.timeout,
          workspace: argv.workspace ?? process.cwd(),
        });
      })
    .command("start", "Start a persistent daemon in the background and wait until it is ready", {}, (argv) => start({ json: argv.json as boolean }))
    .command("stop", "Ask the running daemon to shut down and wait until it has", {}, (argv) => stop({ json: argv.json as boolean }))
    .command("status", "Show PID, uptime, version, clients and capsules of the running daemon", {}, (argv) => status({ json: argv.json as boolean }))
    .command("audit <action>", "Verify or read the audit log (works with the daemon stopped)", (y) =>
      y
        .positional("action", { choices: ["verify", "tail"] as const, describe: "verify: check every link and signature (exit 1 if broken); tail: print the newest entries" })
        .option("lines", { alias: "n", type: "number", default: 20, describe: "tail: how many entries" })
        .option("follow", { alias: "f", type: "boolean", default: false, describe: "tail: keep printing new entries until Ctrl-C" }),
      (argv) => (argv.action === "verify"
        ? auditVerify({ json: argv.json as boolean })
        : auditTail({ json: argv.json as boolean, lines: argv.lines, follow: argv.follow })))
    .command("kv <action> [key] [value]", `Operator KV in the running daemon (scope ${OPERATOR_KV_SCOPE} unless --scope)`, (y) =>
      y
        .positional("action", { choices: ["get", "set", "list"] as const, describe: "get <key> | set <key> <value> | list [prefix]" })
        .positional("key", { type: "string", describe: "the key (list: the prefix)" })
        .positional("value", { type: "string", describe: "set: the value (UTF-8 text)" })
        .option("scope", { type: "string", default: OPERATOR_KV_SCOPE, describe: "KV namespace, e.g. default:capsule:<name>" }),
      async (argv) => {
        const g = { json: argv.json as boolean };
        const need = (v: string | undefined, what: string) => {
          if (v === undefined) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `kv ${argv.action} needs ${what}`);
          return v;
        };
        if (argv.action === "get") {
          const key = need(argv.key, "a key");
          const data = (await kv(g, "KvGet", { scope: argv.scope, key })) as { value: string | null; base64: string } | null;
          if (data === null) throw new AstridError("ASTRID_ERR_NOT_FOUND", `no value for ${JSON.stringify(key)} in scope ${argv.scope}`);
          // Binary or large values come as base64 only: the bytes themselves go to stdout.
          if (data.value === null && !g.json) process.stdout.write(Buffer.from(data.base64, "base64"));
          else out(g, { scope: argv.scope, key, ...data }, data.value ?? "");
        } else if (argv.action === "set") {
          const key = need(argv.key, "a key and a value");
          const value = need(argv.value, "a value");
          await kv(g, "KvSet", { scope: argv.scope, key, value });
          out(g, { scope: argv.scope, key, stored: true }, `Stored ${JSON.stringify(key)} in ${argv.scope}.`);
        } else {
          // KvList answers a page at a time (next_cursor while more follow): list them all.
          const keys: string[] = [];
          let cursor: string | undefined;
          do {
            const reply = await daemonRequest(resolveHome(), "KvList",
              { scope: argv.scope, prefix: argv.key ?? "", ...(cursor !== undefined ? { cursor } : {}) }, { topicSuffix: "kv" });
            keys.push(...(reply.data as string[]));
            cursor = (reply as { next_cursor?: string }).next_cursor;
          } while (cursor !== undefined);
          if (keys.length === 0 && !g.json) process.stderr.write(`No keys${argv.key ? ` starting with ${JSON.stringify(argv.key)}` : ""} in ${argv.scope}.\n`);
          else out(g, { scope: argv.scope, keys }, keys.join("\n"));
        }
      })
    .command("capsule <action> [name]", "List the daemon's capsules, show one, or install one from a directory", (y) =>
      y
        .positional("action", { choices: ["list", "info", "install"] as const, describe: "list | info <name> | install <dir>" })
        .positional("name", { type: "string", describe: "info: the capsule's name; install: the capsule's directory" })
        .option("workspace", { type: "boolean", default: false, describe: "install: into the workspace's .astrid/capsules instead of your own" })
        .example("$0 capsule install ./my-capsule", "copy, load (install/upgrade hook), roll back if it fails"),
      async (argv) => {
        const g = { json: argv.json as boolean };
        if (argv.action === "list") return capsuleList(g);
        if (argv.action === "install") {
          if (!argv.name) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "capsule install needs the capsule's directory");
          return capsuleInstall(g, argv.name, argv.workspace);
        }
        if (!argv.name) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "capsule info needs a capsule name");
        return capsuleInfo(g, argv.name);
      })
    .command(adminCommands(report))
    .command(frontendCommand)
    .command(identityCommand)
    .demandCommand(1, "Name a command: chat, start, stop, status, audit, kv, capsule, agent, group, caps, quota, frontend or identity.")
    .epilogue("Exit status: 0 on success (also when no daemon is running for status/stop), 1 on an error, 53 when chat got no reply in time.\nErrors end with a stable code, e.g. [ASTRID_ERR_DAEMON_START_FAILED]; see the README.")
    .wrap(100)
    .version(DAEMON_VERSION)
    .alias("version", "V")
    .help()
    .alias("help", "h")
    .strict()
    // Pitfall 17: throwing from fail() prints yargs' minified bundle; report and set the exit code instead.
    .fail((message, err) => report(err ?? new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `${message} (see astrid --help)`)))
    .parseAsync()
    .catch(report);
}

void main();
