/**
 * `astrid frontend add|remove|list`: the operator's frontend credentials in `$ASTRID_HOME/etc/frontends/`. These
 * commands write files, so they work whether or not a daemon runs; a running daemon sees each change at once.
 */
import type { Argv, CommandModule } from "yargs";
import { UsageError } from "./usage";
import { resolveHome } from "../../kernel/home";
import { UNLINKED_POLICIES, type FrontendRecord, type UnlinkedPolicy } from "../../kernel/frontends/frontend-file";
import { addFrontend, listFrontends, removeFrontend, type AddedFrontend, type RemovedFrontend } from "../../kernel/frontends/frontend-store";

interface Global {
  json: boolean;
}


/** Prints a result: the JSON object with --json, else the human lines. */
function print(json: boolean, value: unknown, human: string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human}\n`);
}

/** `--platform a --platform b,c` → `["a", "b", "c"]`. */
export function platformsOf(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v.length > 0);
}

/** What `frontend add` prints. */
export function describeAdded(added: AddedFrontend): { json: Record<string, unknown>; human: string } {
  const { record } = added;
  return {
    json: { name: record.name, platforms: record.platforms, unlinked: record.unlinked, created_at: record.created_at, file: added.file, token_file: added.tokenFile },
    human: [
      `Added frontend ${record.name} (platforms: ${record.platforms.join(", ")}; unlinked users: ${record.unlinked}).`,
      `Its token is in ${added.tokenFile} (mode 0600). Give it to the frontend, which sends it in its handshake;`,
      `a running daemon accepts it at once. \`astrid frontend remove ${record.name}\` revokes it.`,
    ].join("\n"),
  };
}

/** What `frontend remove` prints. */
export function describeRemoved(removed: RemovedFrontend): { json: Record<string, unknown>; human: string } {
  const tokens = removed.tokenFilesRemoved.length > 0 ? ` and ${removed.tokenFilesRemoved.join(", ")}` : "";
  return {
    json: { name: removed.name, removed: true, file: removed.file, token_files_removed: removed.tokenFilesRemoved },
    human: `Removed frontend ${removed.name} (${removed.file}${tokens}). Its token admits no new connection; connections it already made stay until they close.`,
  };
}

/** The `frontend list` table. */
export function frontendTable(frontends: readonly FrontendRecord[]): string {
  const rows = frontends.map((f) => [f.name, f.platforms.join(","), f.unlinked, f.created_at]);
  const header = ["NAME", "PLATFORMS", "UNLINKED", "CREATED"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n");
}

/**
 * The CLI's fail handler reports a usage error without stopping yargs, which then runs the handler anyway: so a
 * handler checks that its name is there itself.
 */
function requireName(name: unknown): string {
  if (typeof name !== "string") throw new UsageError("missing the frontend's name (see astrid frontend --help)");
  return name;
}

async function add(argv: Global & { name: string; platform?: string[]; unlinked?: string; "token-file"?: string }): Promise<void> {
  requireName(argv.name);
  const platforms = platformsOf(argv.platform);
  if (platforms.length === 0) throw new UsageError("frontend add needs at least one --platform (e.g. --platform discord)");
  const added = await addFrontend({
    dir: resolveHome().frontendsDir,
    name: argv.name,
    platforms,
    unlinked: argv.unlinked as UnlinkedPolicy | undefined,
    tokenFile: argv["token-file"],
  });
  const { json, human } = describeAdded(added);
  print(argv.json, json, human);
}

async function remove(argv: Global & { name: string }): Promise<void> {
  const { json, human } = describeRemoved(await removeFrontend(resolveHome().frontendsDir, requireName(argv.name)));
  print(argv.json, json, human);
}

async function list(argv: Global): Promise<void> {
  const { frontends, problems } = await listFrontends(resolveHome().frontendsDir);
  if (argv.json) return print(true, { frontends, problems }, "");
  for (const problem of problems) process.stderr.write(`skipped: ${problem}\n`);
  if (frontends.length === 0) process.stderr.write("No frontends. Add one with `astrid frontend add NAME --platform PLATFORM`.\n");
  else print(false, undefined, frontendTable(frontends));
}

/** The `astrid frontend` command and its subcommands. */
export const frontendCommand: CommandModule<Global, Global> = {
  command: "frontend",
  describe: "Add, remove or list frontend credentials (Discord and web bridges; works with the daemon stopped)",
  builder: (y: Argv<Global>) =>
    y
      .command(
        "add <name>",
        "Create a credential and write its token to a 0600 file",
        (a) =>
          a
            .positional("name", { type: "string", demandOption: true, describe: "the frontend's name, also its principal id: [A-Za-z0-9_-]{1,64}, not `default`" })
            .option("platform", { type: "string", array: true, describe: "a platform whose users it may speak for (repeat, or a,b)" })
            .option("unlinked", { type: "string", choices: UNLINKED_POLICIES, describe: "what its users without an identity link get (default: refuse)" })
            .option("token-file", { type: "string", describe: "write the token here (must not exist) instead of etc/frontends/<name>.token" })
            .example("$0 frontend add discord-bot --platform discord --unlinked restricted", "a Discord bridge whose unknown users get a restricted principal"),
        (a) => add(a as Global & { name: string; platform?: string[]; unlinked?: string; "token-file"?: string }),
      )
      .command(
        "remove <name>",
        "Delete a credential and its token file (revokes it: no new connection is admitted with it)",
        (a) => a.positional("name", { type: "string", demandOption: true, describe: "the frontend's name" }),
        (a) => remove(a as Global & { name: string }),
      )
      .command("list", "The credentials in etc/frontends/ (malformed files are named on stderr)", {}, (a) => list(a as unknown as Global))
      .demandCommand(1, "Name a frontend command: add, remove or list."),
  handler: () => undefined,
};
