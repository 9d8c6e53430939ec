#!/usr/bin/env node
/**
 * `astrid`: the command-line frontend. Starts, stops and inspects the daemon of `$ASTRID_HOME` over its socket.
 */
// First, for its side effect: `astrid --version` is answered before the other modules load.
import "./cli/version-fast-path";
import type { Argv } from "yargs";
import { AstridError, isAstridError } from "../protocol/errors";
import type { DaemonStatus } from "../protocol/kernel-request";
import { DAEMON_VERSION } from "../protocol/version";
import { resolveHome } from "../kernel/home";
import { OPERATOR_KV_SCOPE } from "../protocol/operator-scope";
import fs from "node:fs";
import path from "node:path";
import type { InstallOutcome } from "../kernel/capsules/installer";
import type { LoaderLogger } from "../kernel/capsules/loader-client";
import { daemonState, formatUptime, startDaemon, waitForExit } from "./cli/daemon-control";
import { daemonRequest } from "./cli/daemon-request";
import type { CommandModule } from "yargs";
import { failOnUsage, UsageError } from "./cli/usage";
import { completeAstrid } from "./cli/completion";
import type { AstridHome } from "../kernel/home";

interface Global {
  json: boolean;
}

/** Prints a result: the JSON object with --json, else the human lines. */
function out(argv: Global, json: unknown, human: string): void {
  process.stdout.write(argv.json ? `${JSON.stringify(json)}\n` : `${human}\n`);
}

/** `dir` resolved, and through its symlinks when it exists (so /tmp and /private/tmp compare equal). */
function canonicalDir(dir: string): string {
  const resolved = path.resolve(dir);
  try {
    return fs.realpathSync(resolved);
  } catch {
    return resolved;
  }
}

/**
 * Warns on stderr when the running daemon serves another workspace than the one this command was given (`-w`, or
 * the current directory for chat and start): the daemon keeps serving its own, so the user is told how to switch.
 */
function warnOtherWorkspace(status: Pick<DaemonStatus, "workspace">, asked: string): void {
  if (status.workspace === undefined) return;
  const wanted = canonicalDir(asked);
  if (canonicalDir(status.workspace) === wanted) return;
  process.stderr.write(`astrid: warning: the daemon serves workspace ${status.workspace}; you asked for ${wanted} — run \`astrid restart -w ${wanted}\` to switch\n`);
}

/** GetStatus from the live daemon of `home`. */
async function daemonStatus(home: AstridHome): Promise<DaemonStatus> {
  const reply = await daemonRequest(home, "GetStatus", undefined, { topicSuffix: "status", knownLive: true });
  if (reply.status !== "Status") throw new AstridError("ASTRID_ERR_INTERNAL", "Unexpected response from daemon");
  return reply.data;
}

async function start(argv: Global & { workspace?: string }): Promise<void> {
  const home = resolveHome();
  const workspace = canonicalDir(argv.workspace ?? process.cwd());
  const alreadyRunning = async (): Promise<void> => {
    const s = await daemonStatus(home);
    warnOtherWorkspace(s, workspace);
    if (!s.ephemeral) return out(argv, { running: true, started: false, mode: "persistent", was_ephemeral: false, pid: s.pid, workspace: s.workspace }, "Astrid daemon is already running.");
    // An ephemeral daemon (spawned by `astrid chat`) would idle out under a user who asked for a lasting one.
    const reply = await daemonRequest(home, "SetMode", { mode: "persistent" }, { topicSuffix: "mode", knownLive: true });
    const changed = (reply.data as { changed?: boolean }).changed !== false;
    out(argv, { running: true, started: false, mode: "persistent", was_ephemeral: changed, pid: s.pid, workspace: s.workspace },
      changed ? "Astrid daemon was ephemeral (would stop when idle); it is now persistent." : "Astrid daemon is already running.");
  };
  if ((await daemonState(home)) === "live") return alreadyRunning();
  const showProgress = !argv.json && process.stderr.isTTY;
  let pid: number;
  try {
    pid = await startDaemon(home, {
      ephemeral: false,
      workspace,
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
  out(argv, { running: true, started: true, pid, mode: "persistent", workspace }, `Astrid daemon started (persistent mode, PID ${pid}).`);
}

/** Asks the daemon to stop and waits until it has; the JSON fields and the line `stop` prints. */
async function stopDaemon(home: AstridHome): Promise<{ json: Record<string, unknown>; human: string }> {
  const state = await daemonState(home);
  if (state === "absent") return { json: { running: false, stopped: false }, human: "No Astrid daemon is running." };
  if (state === "cleaned") return { json: { running: false, stopped: false, cleaned: true }, human: "Cleaned up stale daemon socket." };
  try {
    await daemonRequest(home, "Shutdown", { reason: "astrid stop" }, { topicSuffix: "shutdown", knownLive: true, daemonCloses: true });
  } catch (err) {
    // Another `astrid stop` (or an idle timeout) got there first: the daemon went away under us, which is the goal.
    if (isAstridError(err) && (err.code === "ASTRID_ERR_DAEMON_NOT_RUNNING" || err.code === "ASTRID_ERR_CONNECTION_CLOSED")) {
      await waitForExit(home);
      return { json: { running: false, stopped: false }, human: "The Astrid daemon was already stopping; it is stopped." };
    }
    throw err;
  }
  await waitForExit(home);
  return { json: { running: false, stopped: true }, human: "Astrid daemon stopped." };
}

async function stop(argv: Global): Promise<void> {
  const { json, human } = await stopDaemon(resolveHome());
  out(argv, json, human);
}

/** `astrid restart [-w DIR]`: stop the running daemon (if any), then start a persistent one for the workspace. */
async function restart(argv: Global & { workspace?: string }): Promise<void> {
  const stopped = await stopDaemon(resolveHome());
  if (!argv.json) process.stderr.write(`${stopped.human}\n`);
  await start(argv);
}

async function status(argv: Global): Promise<void> {
  const home = resolveHome();
  const state = await daemonState(home);
  if (state !== "live") {
    const cleaned = state === "cleaned" ? " (a stale socket was cleaned up)" : "";
    return out(argv, { running: false }, `No Astrid daemon is running.${cleaned}`);
  }
  const s = await daemonStatus(home);
  // Who is connected is its own request (GetStatus stays small for pollers); the JSON shows both as one object.
  const listed = await daemonRequest(home, "ListClients", undefined, { topicSuffix: "status", knownLive: true });
  s.clients = listed.status === "Success" ? (listed.data as NonNullable<DaemonStatus["clients"]>) : [];
  // This command's own connection is one of the daemon's clients: it is not counted.
  const others = Math.max(0, s.connected_clients - 1);
  out(argv, { running: true, ...s, other_clients: others }, [
    `Astrid daemon (PID ${s.pid}, uptime ${formatUptime(s.uptime_secs)})`,
    `  Version:   ${s.version}`,
    `  Mode:      ${s.ephemeral ? "ephemeral (stops when idle; `astrid start` makes it persistent)" : "persistent"}`,
    ...(s.workspace !== undefined ? [`  Workspace: ${s.workspace}`] : []),
    `  Clients:   ${others} other${others === 1 ? "" : "s"}`,
    ...frontendLines(s.clients ?? []),
    `  Capsules:  ${s.loaded_capsules.length} loaded`,
    ...s.loaded_capsules.map((name) => `    - ${name}`),
  ].join("\n"));
}

/** `astrid status`'s lines for the connected frontends (connections made with a frontend credential). */
function frontendLines(clients: NonNullable<DaemonStatus["clients"]>): string[] {
  const frontends = clients.filter((c) => c.via === "frontend");
  if (frontends.length === 0) return [];
  const size = (n = 0) => (n < 1024 ? `${n} B` : n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`);
  const plural = (n = 0, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;
  return [
    `  Frontends: ${frontends.length} connected`,
    ...frontends.map((c) => `    - ${c.client_name ?? c.frontend} (credential ${c.frontend}): ${plural(c.users, "user")}, ${plural(c.sessions, "session")}, ${size(c.bytes_in)} in / ${size(c.bytes_out)} out`),
  ];
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
  // A usage error shows the help of the command it concerns first, so the error itself is the last line.
  if (err instanceof UsageError && err.help) process.stderr.write(`${err.help}\n\n`);
  if (json) process.stdout.write(`${JSON.stringify({ error: { code, message } })}\n`);
  else process.stderr.write(`astrid: ${message} [${code}]\n`);
  // Usage errors (nothing ran) exit 2; everything else 1.
  process.exitCode = err instanceof UsageError ? 2 : 1;
}

async function auditVerify(argv: Global): Promise<void> {
  const { describeReport, verifyAuditLog } = await import("./cli/audit.js");
  const report = verifyAuditLog(resolveHome());
  if (argv.json) {
    out(argv, report, "");
    if (!report.intact) process.exitCode = 1;
    return;
  }
  out(argv, report, describeReport(report));
}

async function auditTail(argv: Global & { lines: number; follow: boolean }): Promise<void> {
  if (!Number.isInteger(argv.lines) || argv.lines < 0) throw new UsageError("-n must be a whole number ≥ 0 (-n 0 --follow: only new entries)");
  const { tailAuditLog } = await import("./cli/audit.js");
  await tailAuditLog(resolveHome(), argv.lines, argv.json, argv.follow, (line) => process.stdout.write(`${line}\n`));
}

/** Runs one KV request against the running daemon (KV lives in the daemon's storage worker). */
async function kv(argv: Global, method: "KvGet" | "KvSet" | "KvList" | "KvDelete", params: Record<string, unknown>): Promise<unknown> {
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
  tools?: Array<{ name: string; description?: string }>;
  /** `js` or `wasm`. */
  kind?: string;
  wasm?: { hash: string; source: string; exports: string[]; max_memory_bytes: number; abi?: string };
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
    ...capsules.map((c) => `${c.name.padEnd(width)}  ${c.version.padEnd(9)}  ${c.state.padEnd(8)}  ${c.restarts}${c.last_error ? `  (${c.last_error.split("\n")[0]})` : ""}`),
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
    `  Kind:          ${c.kind ?? "js"}${c.wasm ? ` (BLAKE3 ${c.wasm.hash}${c.wasm.source === "bin" ? ", from bin/" : ""}; memory ≤ ${Math.round(c.wasm.max_memory_bytes / 1048576)} MiB; exports ${c.wasm.exports.join(", ")})` : ""}`,
    ...(c.wasm?.abi ? [`  Host ABI:      ${c.wasm.abi}`] : []),
    `  Restarts:      ${c.restarts}`,
    `  Publishes:     ${list(caps.ipc_publish)}`,
    `  Subscribes:    ${list(caps.ipc_subscribe)}`,
    `  Interceptors:  ${list(c.interceptor_events)}`,
    `  Commands:      ${list((c.commands ?? []).map((x) => x.name))}`,
    `  Tools:         ${list((c.tools ?? []).map((x) => x.name))}`,
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
    const [{ CapsuleLoader }, { installCapsule }] = await Promise.all([import("../kernel/capsules/loader-client.js"), import("../kernel/capsules/installer.js")]);
    const loader = new CapsuleLoader({ log: () => undefined, error: () => undefined } as unknown as LoaderLogger);
    const done = await installCapsule(source, { root: home.principalCapsulesDir("default"), loader, reload: async () => {}, record: () => undefined })
      .finally(() => loader.close());
    return out(argv, { ...done, state: "installed", loaded: false },
      `Installed ${done.name} ${done.version} into ${done.dir}. No daemon is running; it loads (and runs its install hook) on the next start.`);
  }
  const { answerElicitations } = await import("./cli/chat.js");
  const reply = await daemonRequest(home, "InstallCapsule", { source, workspace },
    { topicSuffix: "install_capsule", timeoutMs: 180_000, knownLive: true, onConnected: answerElicitations });
  const done = reply.data as InstallOutcome;
  const upgraded = done.previous_version !== undefined ? ` (was ${done.previous_version})` : "";
  const shadowed = done.active ? "" : ` It is not the running copy: ${done.active_dir} comes first in the discovery order.`;
  out(argv, done, `Installed ${done.name} ${done.version}${upgraded} into ${done.dir}; it is ${done.state}.${shadowed}`);
}

/**
 * `astrid capsule new`: writes the capsule into the workspace's (the current directory's) or the operator's own
 * capsules directory, then, with a daemon running, waits for it to load (hot reload; a ReloadCapsules when the
 * daemon does not watch) and says how it came up.
 */
async function capsuleNew(argv: Global & { name: string; ts: boolean; home: boolean }): Promise<void> {
  const home = resolveHome();
  const live = (await daemonState(home)) === "live";
  const status = live ? await daemonStatus(home) : undefined;
  if (status !== undefined && !argv.home) warnOtherWorkspace(status, process.cwd());
  const root = argv.home ? home.principalCapsulesDir("default") : path.join(canonicalDir(process.cwd()), ".astrid", "capsules");
  const { scaffoldCapsule } = await import("./cli/capsule-scaffold.js");
  const done = scaffoldCapsule(argv.name, root, { ts: argv.ts });
  const served = argv.home || (status?.workspace !== undefined && canonicalDir(status.workspace) === canonicalDir(process.cwd()));
  const tryIt = `Try /${done.command} in astrid chat, or astrid tool call ${done.name}.${done.tool}.`;
  if (status === undefined || !served) {
    const why = status === undefined ? "No daemon is running; it loads on the next start (astrid start)." : "The running daemon serves another workspace, so it does not load it.";
    return out(argv, { ...done, state: "not_loaded" }, `Created ${done.name} (${done.language}) in ${done.dir}. ${why}`);
  }
  const state = await waitLoaded(done.name, done.dir);
  const detail = state.last_error !== undefined ? ` — ${state.last_error}` : "";
  out(argv, { ...done, state: state.state, ...(state.last_error !== undefined ? { last_error: state.last_error } : {}) },
    `Created ${done.name} (${done.language}) in ${done.dir}; it is ${state.state}${detail}. ${state.state === "ready" ? tryIt : ""}`.trimEnd());
}

/** Waits for the daemon to settle the capsule of `dir` (ready or failed), asking for a reload pass if its watcher did not. */
async function waitLoaded(name: string, dir: string): Promise<{ state: string; last_error?: string }> {
  const settled = async (ms: number) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const c = (await capsuleMetadata()).find((m) => m.name === name && canonicalDir(m.source_dir) === canonicalDir(dir));
      if (c && (c.state === "ready" || c.state === "failed")) return c;
      if (Date.now() >= deadline) return c;
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let c = await settled(3000);
  if (!c) {
    // A daemon run with --no-watch (or whose watcher stopped) does not see new directories by itself.
    await daemonRequest(resolveHome(), "ReloadCapsules", undefined, { topicSuffix: "reload", timeoutMs: 60_000 });
    c = await settled(10_000);
  }
  return c ? { state: c.state, ...(c.last_error !== undefined ? { last_error: c.last_error } : {}) } : { state: "not_loaded" };
}

/**
 * `astrid capsule test`: the capsule's own test against a daemon of its own on a temporary home (see
 * cli/capsule-test.ts). A failure is ASTRID_ERR_CAPSULE_TEST_FAILED (exit 1); with --json, the outcome itself.
 */
async function capsuleTest(argv: Global & { dir: string; bundled: boolean; timeout: number }): Promise<void> {
  if (!Number.isFinite(argv.timeout) || argv.timeout <= 0) throw new UsageError(`--timeout must be a number of seconds > 0 (got ${String(argv.timeout)})`);
  const { describeOutcome, testCapsule } = await import("./cli/capsule-test.js");
  const done = await testCapsule(argv.dir, { bundled: argv.bundled, timeoutSecs: argv.timeout, ...(argv.json ? {} : { report: process.stdout }) });
  if (done.passed) return out(argv, done, describeOutcome(done));
  if (!argv.json) throw new AstridError("ASTRID_ERR_CAPSULE_TEST_FAILED", describeOutcome(done));
  out(argv, done, "");
  process.exitCode = 1;
}

/** `astrid capsule remove`: RemoveCapsule in the running daemon (drain, unload, delete; bundled ones refused). */
async function capsuleRemove(argv: Global & { name: string }): Promise<void> {
  const reply = await daemonRequest(resolveHome(), "RemoveCapsule", { name: argv.name }, { topicSuffix: "remove_capsule", timeoutMs: 180_000 });
  const done = reply.data as { name: string; version: string; dir: string; drained: boolean; replaced_by?: string };
  out(argv, done, [
    `Removed ${done.name} ${done.version} (${done.dir}).`,
    ...(done.drained ? [] : ["It was still busy after the drain deadline and was stopped."]),
    ...(done.replaced_by !== undefined ? [`The copy in ${done.replaced_by} now runs instead.`] : []),
  ].join(" "));
}

/** `astrid kv get|set|delete|list`. */
function kvCommands(y: Argv<Global>): Argv<Global> {
  const scoped = (a: Argv<Global>) => a.option("scope", { type: "string", default: OPERATOR_KV_SCOPE, describe: "KV namespace, e.g. default:capsule:<name>" });
  return y
    .command("get <key>", "Print a value (binary values as raw bytes; --json: text and base64)", (a) =>
      scoped(a).positional("key", { type: "string", demandOption: true, describe: "the key" }),
    async (argv) => {
      const g = { json: argv.json };
      const data = (await kv(g, "KvGet", { scope: argv.scope, key: argv.key })) as { value: string | null; base64: string } | null;
      if (data === null) throw new AstridError("ASTRID_ERR_NOT_FOUND", `no value for ${JSON.stringify(argv.key)} in scope ${argv.scope}`);
      // Binary or large values come as base64 only: the bytes themselves go to stdout.
      if (data.value === null && !g.json) process.stdout.write(Buffer.from(data.base64, "base64"));
      else out(g, { scope: argv.scope, key: argv.key, ...data }, data.value ?? "");
    })
    .command("set <key> <value>", "Store a value (UTF-8 text)", (a) =>
      scoped(a)
        .positional("key", { type: "string", demandOption: true, describe: "the key" })
        .positional("value", { type: "string", demandOption: true, describe: "the value (UTF-8 text)" }),
    async (argv) => {
      await kv({ json: argv.json }, "KvSet", { scope: argv.scope, key: argv.key, value: argv.value });
      out(argv, { scope: argv.scope, key: argv.key, stored: true }, `Stored ${JSON.stringify(argv.key)} in ${argv.scope}.`);
    })
    .command("delete <key>", "Remove a key (system:* scopes are read-only)", (a) =>
      scoped(a).positional("key", { type: "string", demandOption: true, describe: "the key" }),
    async (argv) => {
      const data = (await kv({ json: argv.json }, "KvDelete", { scope: argv.scope, key: argv.key })) as { deleted: boolean };
      if (!data.deleted) throw new AstridError("ASTRID_ERR_NOT_FOUND", `no value for ${JSON.stringify(argv.key)} in scope ${argv.scope}`);
      out(argv, { scope: argv.scope, key: argv.key, deleted: true }, `Deleted ${JSON.stringify(argv.key)} from ${argv.scope}.`);
    })
    .command("list [prefix]", "List the keys (all, or those starting with the prefix)", (a) =>
      scoped(a).positional("prefix", { type: "string", describe: "only keys starting with this" }),
    async (argv) => {
      // KvList answers a page at a time (next_cursor while more follow): list them all.
      const keys: string[] = [];
      let cursor: string | undefined;
      do {
        const reply = await daemonRequest(resolveHome(), "KvList",
          { scope: argv.scope, prefix: argv.prefix ?? "", ...(cursor !== undefined ? { cursor } : {}) }, { topicSuffix: "kv" });
        keys.push(...(reply.data as string[]));
        cursor = (reply as { next_cursor?: string }).next_cursor;
      } while (cursor !== undefined);
      if (keys.length === 0 && !argv.json) process.stderr.write(`No keys${argv.prefix ? ` starting with ${JSON.stringify(argv.prefix)}` : ""} in ${argv.scope}.\n`);
      else out(argv, { scope: argv.scope, keys }, keys.join("\n"));
    })
    .demandCommand(1, "Name a kv action: get, set, delete or list.");
}

/** `astrid capsule list|info|install|permissions|new|remove`. */
function capsuleCommands(y: Argv<Global>): Argv<Global> {
  return y
    .command("new <name>", "Write a working capsule (manifest, module, README, test) that a running daemon loads at once", (a) =>
      a
        .positional("name", { type: "string", demandOption: true, describe: "its name: 1–64 of a-z 0-9 -" })
        .option("ts", { type: "boolean", default: false, describe: "TypeScript with the @capsule decorators (src/index.ts, built to dist/index.js)" })
        .option("workspace", { type: "boolean", describe: "into ./.astrid/capsules (the default)" })
        .option("home", { type: "boolean", describe: "into your own capsules ($ASTRID_HOME/home/default/.local/capsules)" })
        .conflicts("workspace", "home")
        .example("$0 capsule new greeter", "./.astrid/capsules/greeter: the /greeter command and the greeter_greet tool")
        .example("$0 capsule new greeter --ts", "the same in TypeScript (README: npm install && npm run build)"),
    (argv) => capsuleNew({ json: argv.json, name: argv.name, ts: argv.ts, home: argv.home === true }))
    .command("remove <name>", "Drain, unload and delete an installed or workspace capsule (bundled ones cannot be removed)", (a) =>
      a.positional("name", { type: "string", demandOption: true, describe: "the capsule's name (astrid capsule list)" }),
    (argv) => capsuleRemove({ json: argv.json, name: argv.name }))
    .command("test <dir>", "Run a capsule's own test (test/*.test.js) against a real daemon on a temporary home; exit 0 when it passed", (a) =>
      a
        .positional("dir", { type: "string", demandOption: true, describe: "the capsule's directory (with its Capsule.toml and test/)" })
        .option("bundled", { type: "boolean", default: false, describe: "also load the daemon's bundled capsules (default: the capsule alone)" })
        .option("timeout", { type: "number", default: 120, describe: "seconds its tests may run before they count as failed" })
        .example("$0 capsule test .astrid/capsules/greeter", "start a daemon on a temporary home with greeter loaded, run its test, clean up"),
    (argv) => capsuleTest({ json: argv.json, dir: argv.dir, bundled: argv.bundled, timeout: argv.timeout }))
    .command("list", "Each capsule: version, state, restarts, last error", (a) => a, (argv) => capsuleList(argv))
    .command("info <name>", "One capsule: state (and why it failed), source, topics, interceptors, commands", (a) =>
      a.positional("name", { type: "string", demandOption: true, describe: "the capsule's name (astrid capsule list)" }),
    (argv) => capsuleInfo(argv, argv.name))
    .command("install <dir>", "Copy a capsule directory into place and load it (install/upgrade hook; rolled back if it fails)", (a) =>
      a
        .positional("dir", { type: "string", demandOption: true, describe: "the capsule's directory (with its Capsule.toml)" })
        .option("workspace", { type: "boolean", default: false, describe: "into the workspace's .astrid/capsules instead of your own" })
        .example("$0 capsule install ./my-capsule", "copy, load (install/upgrade hook), roll back if it fails"),
    (argv) => capsuleInstall(argv, argv.dir, argv.workspace))
    .command("permissions <name>", "The [capabilities] entries a capsule needs, from the audit log (daemon run with --audit-permissions)", (a) =>
      a.positional("name", { type: "string", demandOption: true, describe: "the capsule's name" }),
    async (argv) => {
      const { formatPermissionReport, readPermissionReport } = await import("./cli/capsule-permissions.js");
      const permissionReport = readPermissionReport(resolveHome(), argv.name);
      out(argv, permissionReport, formatPermissionReport(permissionReport));
    })
    .demandCommand(1, "Name a capsule action: list, info, install, permissions, new, remove or test.");
}

/** `astrid audit verify|tail|anchor`. */
function auditCommands(y: Argv<Global>): Argv<Global> {
  return y
    .command("verify", "Check every link and signature of the chain (exit 1 if broken)", (a) => a, (argv) => auditVerify(argv))
    .command("tail", "Print the newest entries, each with its outcome (→ ok, or the error code)", (a) =>
      a
        .option("lines", { alias: "n", type: "number", default: 20, describe: "how many entries" })
        .option("follow", { alias: "f", type: "boolean", default: false, describe: "keep printing new entries until Ctrl-C" }),
    (argv) => auditTail({ json: argv.json, lines: argv.lines, follow: argv.follow }))
    .command("anchor", "Print the signed head of the log (var/audit-head.json) to keep a copy elsewhere", (a) => a, async (argv) => {
      const { describeAnchor, readAuditAnchor } = await import("./cli/audit.js");
      const anchor = readAuditAnchor(resolveHome());
      out(argv, anchor, describeAnchor(anchor));
    })
    .demandCommand(1, "Name an audit action: verify, tail or anchor.");
}

/** The commands defined in this file: their modules need not be loaded to run one of them. */
const FILE_COMMANDS = new Set(["chat", "start", "stop", "restart", "status", "audit", "kv", "capsule"]);

/**
 * The commands that live in modules of their own (bin/cli/*). Each module loads what its handlers need (zod,
 * SQLite, the web server…), so they are loaded only when the command line may need them: not for a command of this
 * file (`astrid status` must start fast), nor for --version; for anything else (top-level help, completion, an
 * unknown or misspelt command) all of them, so help and usage errors list every command.
 */
async function moduleCommands(): Promise<CommandModule<Global, any>[]> {
  const args = process.argv.slice(2);
  const first = args.find((a) => !a.startsWith("-"));
  const onlyVersion = args.length > 0 && args.every((a) => a === "--version" || a === "-V" || a === "--json");
  // `astrid status --help` shows the help of status alone; completion may list any command.
  const completing = args.some((a) => a.startsWith("--get-yargs-completions"));
  if (onlyVersion || (first !== undefined && FILE_COMMANDS.has(first) && !completing)) return [];
  const [admin, frontend, identity, mcp, web, discord, vfs, logs, tool] = await Promise.all([
    import("./cli/admin.js"), import("./cli/frontend.js"), import("./cli/identity.js"), import("./cli/mcp.js"), import("./cli/web.js"),
    import("./cli/discord.js"), import("./cli/vfs.js"), import("./cli/logs.js"), import("./cli/tool.js"),
  ]);
  return [...admin.adminCommands(), frontend.frontendCommand, identity.identityCommand, mcp.mcpCommand, web.webCommand,
    discord.discordCommand, vfs.vfsCommand, logs.logsCommand, tool.toolCommand] as CommandModule<Global, any>[];
}

/** Commands that run without yargs when given alone (or with --json): see main. */
const FAST_COMMANDS = new Map<string, (argv: Global) => Promise<void>>([["status", status], ["start", start]]);

/** The `-w DIR` option of chat, start and restart. */
const workspaceOption = { alias: "w", type: "string", describe: "workspace the daemon serves (its .astrid/capsules load); default: the current directory" } as const;

async function main(): Promise<void> {
  // `astrid chat -p … | head`: a reader that went away ends the command quietly, not with a stack trace.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(typeof process.exitCode === "number" ? process.exitCode : 0);
    report(err);
  });
  // `astrid status` (the call scripts and prompts make most) and `astrid start` (the daemon it spawns starts that much
  // sooner), alone or with --json, leave yargs nothing to parse: they run without loading it (~15 modules, a third of
  // status's start-up).
  const args = process.argv.slice(2);
  const fast = FAST_COMMANDS.get(args.find((a) => a !== "--json") ?? "");
  if (fast && args.length <= 2 && args.filter((a) => a !== "--json").length === 1) {
    try {
      await fast({ json: args.includes("--json") });
    } catch (err) {
      report(err);
    }
    return;
  }
  try {
    // Loaded here, after the fast path, rather than at the top; required, not imported: import() would pick
    // yargs' ES module build, which loads slower than its CommonJS one.
    const yargs = require("yargs") as typeof import("yargs");
    await yargs(process.argv.slice(2))
      .scriptName("astrid")
      .usage("$0 <command> [options]\n\nControl the Astrid daemon serving $ASTRID_HOME (default ~/.astrid).")
      .option("json", { type: "boolean", default: false, global: true, describe: "Print one JSON object (for scripts)" })
      .command("chat", "Talk to the agent capsules (spawns an ephemeral daemon for this workspace if none runs)", (y) =>
        y
          .option("session", { alias: "s", type: "string", describe: "resume this session (a UUID; shows its earlier messages); default: a new one" })
          .option("prompt", { alias: "p", type: "string", describe: "headless: send this (after any text piped on stdin), print the reply, exit" })
          .option("repl", { type: "boolean", default: false, describe: "read one prompt per line from stdin even when it is not a terminal" })
          .option("timeout", { type: "number", default: 120, describe: "seconds to wait for a reply (headless: exit 53 when it runs out)" })
          .option("workspace", { ...workspaceOption, describe: "workspace of a daemon this command spawns (default: the current directory)" })
          .option("yes", { alias: "y", type: "boolean", default: false, describe: "headless: approve capsules' approval requests (otherwise they are denied); at a terminal you are asked" })
          .option("agent", { type: "string", describe: "the agent capsule that answers this session (see astrid capsule list); default: the daemon's" })
          .example("$0 chat", "talk in the terminal; /help lists the commands")
          .example("$0 chat -p \"what is 6 * 7\"", "one prompt, one reply")
          .example("git diff | $0 chat -p \"review this\"", "piped text, then the prompt")
          .example("$0 chat --repl --json < prompts.txt", "one JSON reply per line of input"),
        async (argv) => {
          const home = resolveHome();
          const workspace = argv.workspace ?? process.cwd();
          if ((await daemonState(home)) === "live") warnOtherWorkspace(await daemonStatus(home), workspace);
          const { runChat } = await import("./cli/chat.js");
          process.exitCode = await runChat(home, {
            session: argv.session,
            prompt: argv.prompt,
            repl: argv.repl,
            json: argv.json,
            timeoutSecs: argv.timeout,
            workspace,
            yes: argv.yes,
            ...(argv.agent !== undefined ? { agent: argv.agent } : {}),
          });
        })
      .command("start", "Start a persistent daemon in the background and wait until it is ready (makes an ephemeral one persistent)",
        (y) => y.option("workspace", workspaceOption), (argv) => start(argv))
      .command("stop", "Ask the running daemon to shut down and wait until it has", (y) => y, (argv) => stop(argv))
      .command("restart", "Stop the running daemon (if any) and start a persistent one, e.g. for another workspace",
        (y) => y.option("workspace", workspaceOption).example("$0 restart -w ~/projects/site", "serve another workspace"), (argv) => restart(argv))
      .command("status", "Show PID, uptime, version, mode, workspace, clients and capsules of the running daemon", (y) => y, (argv) => status(argv))
      .command("audit", "Verify or read the audit log (works with the daemon stopped)", auditCommands, () => undefined)
      .command("kv", `Operator KV in the running daemon (scope ${OPERATOR_KV_SCOPE} unless --scope)`, kvCommands, () => undefined)
      .command("capsule", "List the daemon's capsules, show one, install, scaffold (new) or remove one, or print the permissions one needs", capsuleCommands, () => undefined)
      .command(await moduleCommands())
      .completion("completion", "Print the shell completion script (bash, zsh): astrid completion >> ~/.bashrc", completeAstrid)
      .demandCommand(1, "Name a command: chat, start, stop, restart, status, audit, kv, capsule, tool, logs, agent, group, caps, quota, frontend, identity, mcp, vfs, web, discord or completion.")
      .epilogue([
        "Exit status: 0 success (also when no daemon is running for status/stop); 1 error; 2 usage error (an unknown",
        "command, option or choice, or a missing argument: nothing was run); 53 chat got no reply in time.",
        "Errors end with a stable code, e.g. [ASTRID_ERR_DAEMON_START_FAILED]; see the README.",
      ].join("\n"))
      .wrap(100)
      .version(DAEMON_VERSION)
      .alias("version", "V")
      .help()
      .alias("help", "h")
      .strict()
      // Thrown, not reported: a fail callback that returns lets yargs run the handler anyway (`stop --forse` would
      // stop the daemon). The throw comes out of parseAsync (synchronously or as a rejection) and is reported below.
      .fail(failOnUsage)
      .parseAsync();
  } catch (err) {
    report(err);
  }
}

void main();
