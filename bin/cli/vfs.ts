/**
 * `astrid vfs diff|commit|discard`: a principal's staged workspace writes in the running daemon — what capsules
 * acting for it wrote under the workspace (kept in its overlay until committed), applied to the real files, or
 * dropped. `--principal` picks whose (default: `default`, the operator's own).
 */
import type { Argv, CommandModule } from "yargs";
import { isPrincipalId } from "../../protocol/identity-names";
import { resolveHome } from "../../kernel/home";
import type { VfsChange } from "../../kernel/vfs/vfs";
import { UsageError } from "./usage";
import { daemonRequest } from "./daemon-request";

/** How long a commit may take (many files, each written whole). */
const COMMIT_TIMEOUT_MS = 120_000;

interface VfsArgs {
  json: boolean;
  action: "diff" | "commit" | "discard";
  principal: string;
}

/** The `vfs diff` lines: one per change, `A`/`M`/`D` and the size. */
export function diffText(principal: string, changes: readonly VfsChange[]): string {
  if (changes.length === 0) return `No staged workspace writes for ${principal}.`;
  const mark = { added: "A", modified: "M", deleted: "D" } as const;
  const sizes = changes.map((c) => (c.kind === "dir" ? "dir" : String(c.size)));
  const width = Math.max(...sizes.map((s) => s.length));
  return changes.map((c, i) => `${mark[c.change]}  ${sizes[i]!.padStart(width)}  ${c.path}`).join("\n");
}

async function run(argv: VfsArgs): Promise<void> {
  if (!isPrincipalId(argv.principal)) throw new UsageError(`--principal ${JSON.stringify(argv.principal)} must be 1-64 characters of [A-Za-z0-9_-]`);
  const home = resolveHome();
  const params = { principal: argv.principal };
  const print = (value: unknown, human: string): void => void process.stdout.write(argv.json ? `${JSON.stringify(value)}\n` : `${human}\n`);
  if (argv.action === "diff") {
    const changes = (await daemonRequest(home, "VfsDiff", params, { topicSuffix: "vfs" })).data as VfsChange[];
    return print(changes, diffText(argv.principal, changes));
  }
  if (argv.action === "commit") {
    const data = (await daemonRequest(home, "VfsCommit", params, { topicSuffix: "vfs", timeoutMs: COMMIT_TIMEOUT_MS })).data as { committed: string[] };
    return print(data, data.committed.length === 0 ? `Nothing staged for ${argv.principal}.` : `Committed ${data.committed.length} change(s) for ${argv.principal}:\n${data.committed.map((p) => `  ${p}`).join("\n")}`);
  }
  const data = (await daemonRequest(home, "VfsDiscard", params, { topicSuffix: "vfs" })).data as { discarded: string[] };
  return print(data, data.discarded.length === 0 ? `Nothing staged for ${argv.principal}.` : `Discarded ${data.discarded.length} change(s) for ${argv.principal}:\n${data.discarded.map((p) => `  ${p}`).join("\n")}`);
}

/** `astrid vfs …`, registered in bin/astrid.ts. */
export const vfsCommand: CommandModule<{ json: unknown }, VfsArgs> = {
  command: "vfs <action>",
  describe: "Workspace writes capsules staged for a principal: show them, apply them to the files, or drop them",
  builder: (y: Argv<{ json: unknown }>) =>
    y
      .positional("action", { choices: ["diff", "commit", "discard"] as const, demandOption: true, describe: "diff | commit | discard" })
      .option("principal", { alias: "p", type: "string", default: "default", describe: "whose staged writes (default: default, the operator's)" })
      .example("$0 vfs diff", "what capsules acting for you staged: A(dded), M(odified), D(eleted), size, path")
      .example("$0 vfs diff --principal alice --json", "alice's staged writes as JSON: [{path, change, kind, size}]")
      .example("$0 vfs commit", "write your staged changes into the workspace")
      .example("$0 vfs discard --principal alice", "drop alice's staged changes") as unknown as Argv<VfsArgs>,
  handler: (argv) => run({ ...argv, json: argv.json === true, principal: String(argv.principal) }),
};
