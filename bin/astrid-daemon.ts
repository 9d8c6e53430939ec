#!/usr/bin/env node
/**
 * `astrid-daemon`: boots the kernel in the foreground. The `astrid` CLI normally spawns it (`astrid start`,
 * `astrid chat`, with --quiet); run by hand it also prints its log lines to stderr (--quiet: none).
 */
// First, for its effect: the capsule loader worker starts while the kernel's modules load.
import "./daemon-prespawn";
import { parseArgs } from "node:util";
import { AstridError, isAstridError } from "../protocol/errors";
import { DAEMON_VERSION } from "../protocol/version";
import { environmentHelp, flagHelp, loadDaemonConfig, renderDaemonConfig } from "../kernel/config";
import { BUNDLED_CAPSULES_DIR, Daemon } from "../kernel/daemon";

/** The daemon's flags as yargs below parses them. */
interface DaemonArgs {
  session?: string;
  workspace?: string;
  ephemeral?: boolean;
  verbose?: boolean;
  watch?: boolean;
  auditPermissions?: boolean;
  "max-clients"?: string;
  quiet?: boolean;
  "log-format"?: string;
  "print-config"?: boolean;
}

/**
 * The plain case — known flags, each once, no --help or --version — read with node:util; undefined for anything
 * else, which yargs then parses, explains or refuses. yargs and its helpers are ~20 modules a daemon start would
 * otherwise load just to read `--quiet --workspace DIR`.
 */
function plainArgs(args: string[]): DaemonArgs | undefined {
  try {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        session: { type: "string", short: "s" },
        workspace: { type: "string", short: "w" },
        ephemeral: { type: "boolean" },
        verbose: { type: "boolean", short: "v" },
        watch: { type: "boolean" },
        "audit-permissions": { type: "boolean" },
        "max-clients": { type: "string" },
        quiet: { type: "boolean", short: "q" },
        "log-format": { type: "string" },
        "print-config": { type: "boolean" },
      },
    });
    const { "audit-permissions": auditPermissions, ...rest } = values;
    return { ...rest, auditPermissions };
  } catch {
    return undefined;
  }
}

/** Every other command line: yargs gives the help, the version and the precise usage errors. */
async function fullArgs(): Promise<DaemonArgs> {
  // require, not import(): the daemon's bundle runs from a V8 code cache, whose scripts have no dynamic import.
  const yargs = require("yargs") as typeof import("yargs").default;
  const { hideBin } = require("yargs/helpers") as typeof import("yargs/helpers");
  let argError: Error | undefined;
  const argv = await yargs(hideBin(process.argv))
    .scriptName("astrid-daemon")
    .usage("$0 [options]\n\nBoots the Astrid kernel in the foreground: binds $ASTRID_HOME/run/system.sock, loads capsules, serves frontends.")
    // Values stay text (max-clients too) and defaults unset here: kernel/config.ts checks and defaults them all.
    .option("session", { alias: "s", type: "string", describe: flagHelp("session") })
    .option("workspace", { alias: "w", type: "string", describe: flagHelp("workspace") })
    .option("ephemeral", { type: "boolean", describe: flagHelp("ephemeral") })
    .option("verbose", { alias: "v", type: "boolean", describe: flagHelp("verbose") })
    .option("watch", { type: "boolean", describe: flagHelp("watch") })
    .option("audit-permissions", { type: "boolean", describe: flagHelp("auditPermissions") })
    .option("max-clients", { type: "string", describe: flagHelp("maxClients") })
    .option("quiet", { alias: "q", type: "boolean", describe: flagHelp("quiet") })
    .option("log-format", { type: "string", describe: flagHelp("logFormat") })
    .option("print-config", { type: "boolean", describe: "Print the resolved configuration (flags and environment) as JSON and exit" })
    .epilogue([environmentHelp(110), "", "Logs: $ASTRID_HOME/log/astrid.YYYY-MM-DD.log (JSON lines, 7 days kept)."].join("\n"))
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
  return { ...argv, auditPermissions: argv.auditPermissions as boolean | undefined };
}

async function main(): Promise<number> {
  // `astrid start` reads stderr only until ready, then closes its end: a later write (a Node warning, say) must not
  // become an uncaught EPIPE that takes the daemon down.
  for (const stream of [process.stdout, process.stderr]) stream.on("error", () => undefined);
  const argv = plainArgs(process.argv.slice(2)) ?? (await fullArgs());

  // The one read of the environment: everything below takes its settings from `config`.
  const config = loadDaemonConfig(process.env, {
    session: argv.session,
    workspace: argv.workspace,
    ephemeral: argv.ephemeral,
    verbose: argv.verbose,
    watch: argv.watch,
    auditPermissions: argv.auditPermissions,
    maxClients: argv["max-clients"],
    quiet: argv.quiet,
    logFormat: argv["log-format"],
  });
  if (argv["print-config"]) {
    process.stdout.write(renderDaemonConfig(config));
    return 0;
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
  // Log lines go to stderr unless --quiet (terminal, systemd, `| tee` alike); colour only on a terminal.
  daemon = await Daemon.boot({ config, console: !config.quiet, bundledCapsulesDir: BUNDLED_CAPSULES_DIR });
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
