#!/usr/bin/env node
/**
 * `astrid-daemon`: boots the kernel in the foreground. The `astrid` CLI normally spawns it (`astrid start`,
 * `astrid chat`); run by hand in a terminal it also prints readable log lines to stderr.
 */
import path from "node:path";
import yargs from "yargs";
import { hideBin } from "yargs/helpers";
import { AstridError, isAstridError } from "../protocol/errors";
import { NIL_UUID } from "../protocol/ipc-message";
import { DAEMON_VERSION } from "../protocol/version";
import { BUNDLED_CAPSULES_DIR, Daemon } from "../kernel/daemon";
import { DEFAULT_MAX_CLIENTS } from "../kernel/socket-server";

const UUID = /^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$/;

async function main(): Promise<number> {
  let argError: Error | undefined;
  const argv = await yargs(hideBin(process.argv))
    .scriptName("astrid-daemon")
    .usage("$0 [options]\n\nBoots the Astrid kernel in the foreground: binds $ASTRID_HOME/run/system.sock, loads capsules, serves frontends.")
    .option("session", { alias: "s", type: "string", describe: `Kernel session id (UUID); the source_id of kernel messages (default ${NIL_UUID})` })
    .option("workspace", { alias: "w", type: "string", describe: "Workspace root (default: the current directory); its .astrid/capsules/ are loaded" })
    .option("ephemeral", { type: "boolean", default: false, describe: "Shut down after 30 s without clients (what `astrid chat` spawns)" })
    .option("verbose", { alias: "v", type: "boolean", default: false, describe: "Log at debug level" })
    .option("watch", { type: "boolean", default: true, describe: "Hot reload: reload a capsule when its files change (--no-watch: only on ReloadCapsules)" })
    .option("max-clients", { type: "number", describe: `Most authenticated clients at once (default ${DEFAULT_MAX_CLIENTS}, or $ASTRID_MAX_CLIENTS)` })
    .epilogue(
      [
        "Environment:",
        "  ASTRID_HOME               state directory (absolute; default $HOME/.astrid)",
        "  ASTRID_IDLE_TIMEOUT_SECS  persistent mode: idle shutdown after N s without clients (default 300, 0 = never)",
        "  ASTRID_IDLE_GRACE_SECS    persistent mode: no idle check during the first N s (default 30)",
        "  ASTRID_MAX_CLIENTS        most authenticated clients at once (default 256)",
        "  ASTRID_CAPSULE_BOOT_WAIT_MS / _READY_TIMEOUT_MS / _HOOK_TIMEOUT_MS / _HANDLER_TIMEOUT_MS /",
        "  ASTRID_CAPSULE_RESTART_BACKOFF_MS / _MAX_HEAP_MB",
        "                            capsule waits, deadlines and limits (defaults 5000 / 10000 / 60000 / 30000 /",
        "                            2000 / 64; see README)",
        "",
        "Logs: $ASTRID_HOME/log/astrid.YYYY-MM-DD.log (JSON lines, 7 days kept).",
      ].join("\n"),
    )
    .wrap(110)
    .version(DAEMON_VERSION)
    .alias("version", "V")
    .help()
    .alias("help", "h")
    .strict()
    .fail((message, err) => {
      argError = err ?? new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `${message} (see astrid-daemon --help)`);
    })
    .parseAsync();
  if (argError) throw argError;

  const session = argv.session ?? NIL_UUID;
  if (!UUID.test(session)) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `Invalid UUID format: ${session || "(empty: -s needs a UUID)"}`);
  }
  // Accepted with or without hyphens, used in the canonical hyphenated lowercase form.
  const hex = session.replaceAll("-", "").toLowerCase();
  const sessionId = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  const maxClients = argv["max-clients"] ?? (process.env.ASTRID_MAX_CLIENTS ? Number(process.env.ASTRID_MAX_CLIENTS) : DEFAULT_MAX_CLIENTS);
  if (!Number.isInteger(maxClients) || maxClients < 1) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `max clients must be a positive integer (got ${String(maxClients)})`);
  }
  // Handlers go in before boot: a signal that arrives between "ready" and here would otherwise kill the process
  // by default action, skipping the drain of queued audit and KV writes. During boot it is remembered.
  let daemon: Daemon | undefined;
  let pending: string | undefined;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    if (++signals > 1) process.exit(130); // a second Ctrl-C does not wait for the drain
    if (daemon) void daemon.shutdown(`signal ${signal}`);
    else pending = `signal ${signal}`;
  };
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);
  // The terminal of a daemon started by hand closed: shut down cleanly instead of dying with files left behind.
  process.on("SIGHUP", onSignal);
  daemon = await Daemon.boot({
    sessionId,
    workspace: path.resolve(argv.workspace ?? process.cwd()),
    ephemeral: argv.ephemeral,
    verbose: argv.verbose,
    console: process.stderr.isTTY === true,
    maxClients,
    watch: argv.watch,
    env: process.env,
    bundledCapsulesDir: BUNDLED_CAPSULES_DIR,
  });
  if (pending) void daemon.shutdown(pending);
  return daemon.exited;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
    process.stderr.write(`astrid-daemon: ${(err as Error).message ?? String(err)} [${code}]\n`);
    process.exit(1);
  },
);
