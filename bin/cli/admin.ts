/**
 * `astrid agent|group|caps|quota`: the admin API (reference §5.4, docs/principals.md) of the running daemon — agents
 * (principals with a profile), groups, capability grants and revokes, quotas. Arguments are checked here with the
 * daemon's own rules, so a typo is a usage error (exit 2) before anything is sent; a refusal by the daemon (no
 * permission, no such principal, a built-in group) exits 1 with its code.
 */
import type { Argv, CommandModule } from "yargs";
import { QUOTA_DEFAULTS, type AgentListEntry, type GroupListEntry, type Quotas } from "../../protocol/admin-request";
import { capabilityProblem } from "../../protocol/capability";
import { isPrincipalId } from "../../protocol/identity-names";
import { resolveHome } from "../../kernel/home";
import { adminCall } from "./admin-request";
import { UsageError } from "./usage";

interface Global {
  json: boolean;
}

/** A usage error (exit status 2); declared in ./usage, re-exported for the admin commands' callers. */
export { UsageError };

/**
 * yargs' parse errors in these commands (a missing argument, an unknown option) are usage errors too: the CLI's
 * `fail` callback (./usage) throws them before any handler runs. Kept as a named step for readability.
 */
function usageFailures<T>(y: Argv<T>): Argv<T> {
  return y;
}

/** A command handler (usage errors never reach it: they are thrown during the parse). */
function guarded<A>(handler: (argv: A) => Promise<void>): (argv: A) => Promise<void> {
  return handler;
}

function print(argv: Global, json: unknown, human: string): void {
  process.stdout.write(argv.json ? `${JSON.stringify(json)}\n` : `${human}\n`);
}

function checkPrincipal(value: string, what = "principal"): string {
  if (!isPrincipalId(value)) throw new UsageError(`${what} ${JSON.stringify(value)} must be 1-64 characters of [A-Za-z0-9_-]`);
  return value;
}

function checkCapabilities(values: readonly string[]): string[] {
  for (const c of values) {
    const problem = capabilityProblem(c);
    if (problem !== null) throw new UsageError(`capability ${JSON.stringify(c)} rejected: ${problem} (e.g. self:capsule:list, agent:*, system:status)`);
  }
  return [...values];
}

/** A repeatable string option, flattened (`--group a --group b` or `--group a,b`). */
function many(value: unknown): string[] {
  const items = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return items.flatMap((v) => String(v).split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
}

/** A fixed-width table: the header, then the rows; the last column is not padded. */
export function table(header: readonly string[], rows: readonly string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

const listed = (items: readonly string[]) => (items.length > 0 ? items.join(",") : "-");

/** The `astrid agent list` table. */
export function agentTable(agents: readonly AgentListEntry[]): string {
  return table(["PRINCIPAL", "ENABLED", "GROUPS", "GRANTS", "REVOKES"],
    agents.map((a) => [a.principal, a.enabled ? "yes" : "no", listed(a.groups), listed(a.grants), listed(a.revokes)]));
}

/** The `astrid group list` table. */
export function groupTable(groups: readonly GroupListEntry[]): string {
  return table(["NAME", "BUILTIN", "UNSAFE_ADMIN", "CAPABILITIES", "DESCRIPTION"],
    groups.map((g) => [g.name, g.builtin ? "yes" : "no", g.unsafe_admin ? "yes" : "no", listed(g.capabilities), g.description ?? ""]));
}

/** What `astrid quota get` prints. */
export function quotaLines(principal: string, quotas: Quotas): string {
  const keys = Object.keys(QUOTA_DEFAULTS) as Array<keyof Quotas>;
  const width = Math.max(...keys.map((k) => k.length));
  return [`Quotas of ${principal}:`, ...keys.map((k) => `  ${k.padEnd(width)}  ${quotas[k]}${quotas[k] === QUOTA_DEFAULTS[k] ? "  (default)" : ""}`)].join("\n");
}

/** `astrid agent create|delete|enable|disable|list`. */
const agentCommand: CommandModule<Global, Global> = {
  command: "agent",
  describe: "Create, delete, enable, disable or list agents (principals with a profile) in the running daemon",
  builder: (y: Argv<Global>) =>
    usageFailures(y)
      .command("create <name>", "Create an agent: a profile in etc/profiles/<name>.toml (groups: agent unless --group)", (a) =>
        usageFailures(a)
          .positional("name", { type: "string", demandOption: true, describe: "the new principal: [A-Za-z0-9_-]{1,64}, not default" })
          .option("group", { type: "string", array: true, describe: "a group to join (repeatable or comma-separated; default: agent)" })
          .option("grant", { type: "string", array: true, describe: "a capability to grant (repeatable or comma-separated)" })
          .example("$0 agent create alice", "an agent in group agent (its own capsules, quotas and listing)")
          .example("$0 agent create ops --group restricted --grant system:status", "an agent that may only read the daemon's status"),
        guarded(async (argv) => {
          const name = checkPrincipal(argv.name, "agent name");
          const groups = many(argv.group).map((g) => checkPrincipal(g, "group name"));
          const grants = checkCapabilities(many(argv.grant));
          const reply = await adminCall(resolveHome(), "AgentCreate", { name, groups, grants });
          const data = reply.data as { principal: string; astrid_user_id: string };
          print(argv, data, `Created agent ${data.principal} (groups: ${groups.length > 0 ? groups.join(", ") : "agent"}${grants.length > 0 ? `; grants: ${grants.join(", ")}` : ""}).`);
        }))
      .command("delete <principal>", "Delete an agent's profile and identity links (its home directory is kept)", (a) =>
        usageFailures(a).positional("principal", { type: "string", demandOption: true, describe: "the agent (never default)" }),
        guarded(async (argv) => {
          const principal = checkPrincipal(argv.principal);
          const reply = await adminCall(resolveHome(), "AgentDelete", { principal });
          print(argv, reply.data, `Deleted agent ${principal} (its home directory is kept).`);
        }))
      .command("enable <principal>", "Let a disabled agent act again", (a) =>
        usageFailures(a).positional("principal", { type: "string", demandOption: true, describe: "the agent" }),
        guarded((argv) => setEnabled(argv, true)))
      .command("disable <principal>", "Refuse every request of an agent until it is enabled again (never default)", (a) =>
        usageFailures(a).positional("principal", { type: "string", demandOption: true, describe: "the agent" }),
        guarded((argv) => setEnabled(argv, false)))
      .command("list", "Every principal with a profile: enabled, groups, grants, revokes", (a) => usageFailures(a),
        guarded(async (argv) => {
          const agents = (await adminCall(resolveHome(), "AgentList")).data as AgentListEntry[];
          if (agents.length === 0 && !argv.json) process.stderr.write("No principals have a profile.\n");
          else print(argv, agents, agentTable(agents));
        }))
      .demandCommand(1, "Name an action: create, delete, enable, disable or list."),
  handler: () => {},
};

async function setEnabled(argv: Global & { principal: string }, enabled: boolean): Promise<void> {
  const principal = checkPrincipal(argv.principal);
  const reply = await adminCall(resolveHome(), enabled ? "AgentEnable" : "AgentDisable", { principal });
  const data = reply.data as { principal: string; enabled: boolean; changed: boolean };
  const word = enabled ? "enabled" : "disabled";
  print(argv, data, data.changed ? `${principal} is now ${word}.` : `${principal} was already ${word}.`);
}

/** `astrid group create|delete|modify|list`. */
const groupCommand: CommandModule<Global, Global> = {
  command: "group",
  describe: "Create, modify, delete or list capability groups (etc/groups.toml; admin, agent and restricted are built in)",
  builder: (y: Argv<Global>) =>
    usageFailures(y)
      .command("create <name>", "Create a custom group", (a) =>
        usageFailures(a)
          .positional("name", { type: "string", demandOption: true, describe: "[A-Za-z0-9_-]{1,64}, not a built-in" })
          .option("cap", { type: "string", array: true, describe: "a capability pattern it holds (repeatable or comma-separated)" })
          .option("description", { type: "string", describe: "what the group is for" })
          .option("unsafe-admin", { type: "boolean", default: false, describe: "allow a pattern that grants everything (`*`)" })
          .example("$0 group create readers --cap system:status --cap self:capsule:list", "a group that may read status and list capsules"),
        guarded(async (argv) => {
          const name = checkPrincipal(argv.name, "group name");
          const capabilities = checkCapabilities(many(argv.cap));
          const params: Record<string, unknown> = { name, capabilities, unsafe_admin: argv["unsafe-admin"] };
          if (argv.description !== undefined) params.description = argv.description;
          await adminCall(resolveHome(), "GroupCreate", params);
          print(argv, { name, created: true }, `Created group ${name} (${capabilities.length > 0 ? capabilities.join(", ") : "no capabilities"}).`);
        }))
      .command("modify <name>", "Change a custom group's capabilities, description or unsafe_admin", (a) =>
        usageFailures(a)
          .positional("name", { type: "string", demandOption: true, describe: "a custom group" })
          .option("cap", { type: "string", array: true, describe: "replace its capabilities with these (repeatable or comma-separated)" })
          .option("clear-caps", { type: "boolean", describe: "remove every capability" })
          .option("description", { type: "string", describe: "set the description" })
          .option("clear-description", { type: "boolean", describe: "remove the description" })
          .option("unsafe-admin", { type: "boolean", describe: "--unsafe-admin or --no-unsafe-admin" })
          .conflicts("description", "clear-description")
          .conflicts("cap", "clear-caps")
          .example("$0 group modify readers --cap system:status", "readers now hold only system:status")
          .example("$0 group modify readers --clear-description", "drop the description"),
        guarded(async (argv) => {
          const name = checkPrincipal(argv.name, "group name");
          const params: Record<string, unknown> = { name };
          if (argv.cap !== undefined) params.capabilities = checkCapabilities(many(argv.cap));
          if (argv["clear-caps"]) params.capabilities = [];
          if (argv.description !== undefined) params.description = argv.description;
          if (argv["clear-description"]) params.description = null;
          if (argv["unsafe-admin"] !== undefined) params["unsafe_admin"] = argv["unsafe-admin"];
          if (Object.keys(params).length === 1) {
            throw new UsageError("group modify needs a change: --cap, --clear-caps, --description, --clear-description or --[no-]unsafe-admin");
          }
          await adminCall(resolveHome(), "GroupModify", params);
          print(argv, { name, modified: true }, `Modified group ${name}.`);
        }))
      .command("delete <name>", "Delete a custom group (profiles naming it then skip it: it grants nothing)", (a) =>
        usageFailures(a).positional("name", { type: "string", demandOption: true, describe: "a custom group" }),
        guarded(async (argv) => {
          const name = checkPrincipal(argv.name, "group name");
          await adminCall(resolveHome(), "GroupDelete", { name });
          print(argv, { name, deleted: true }, `Deleted group ${name}.`);
        }))
      .command("list", "Every group, built-in and custom, with its capabilities", (a) => usageFailures(a),
        guarded(async (argv) => {
          const groups = (await adminCall(resolveHome(), "GroupList")).data as GroupListEntry[];
          print(argv, groups, groupTable(groups));
        }))
      .demandCommand(1, "Name an action: create, modify, delete or list."),
  handler: () => {},
};

/** `astrid caps grant|revoke`. */
const capsCommand: CommandModule<Global, Global> = {
  command: "caps",
  describe: "Grant capabilities to a principal, or revoke them (a revoke beats every grant and group, admin included)",
  builder: (y: Argv<Global>) =>
    usageFailures(y)
      .command("grant <principal> <capabilities..>", "Add capability patterns to the principal's grants", (a) =>
        usageFailures(a)
          .positional("principal", { type: "string", demandOption: true, describe: "a principal with a profile" })
          .positional("capabilities", { type: "string", array: true, demandOption: true, describe: "patterns such as system:status or agent:*" })
          .example("$0 caps grant alice system:status", "alice may read the daemon's status"),
        guarded((argv) => caps(argv, "CapsGrant")))
      .command("revoke <principal> <capabilities..>", "Add capability patterns to the principal's revokes (never for default)", (a) =>
        usageFailures(a)
          .positional("principal", { type: "string", demandOption: true, describe: "a principal with a profile, not default" })
          .positional("capabilities", { type: "string", array: true, demandOption: true, describe: "patterns such as self:capsule:reload" })
          .example("$0 caps revoke alice self:capsule:install", "alice may no longer install capsules, whatever her groups say"),
        guarded((argv) => caps(argv, "CapsRevoke")))
      .demandCommand(1, "Name an action: grant or revoke."),
  handler: () => {},
};

async function caps(argv: Global & { principal: string; capabilities: string[] }, method: "CapsGrant" | "CapsRevoke"): Promise<void> {
  const principal = checkPrincipal(argv.principal);
  const capabilities = checkCapabilities(many(argv.capabilities));
  const data = (await adminCall(resolveHome(), method, { principal, capabilities })).data as { principal: string; capabilities: string[] };
  const what = method === "CapsGrant" ? "grants" : "revokes";
  print(argv, data, `${principal}'s ${what} are now: ${data.capabilities.join(", ")}.`);
}

const QUOTA_OPTIONS = {
  "max-memory-bytes": "max_memory_bytes",
  "max-timeout-secs": "max_timeout_secs",
  "max-ipc-throughput-bytes": "max_ipc_throughput_bytes",
  "max-background-processes": "max_background_processes",
  "max-storage-bytes": "max_storage_bytes",
} as const;

/** `astrid quota get|set`. */
const quotaCommand: CommandModule<Global, Global> = {
  command: "quota",
  describe: "Read or change a principal's quotas (memory, timeout, IPC throughput, background processes, storage)",
  builder: (y: Argv<Global>) =>
    usageFailures(y)
      .command("get <principal>", "Print the principal's quotas", (a) =>
        usageFailures(a).positional("principal", { type: "string", demandOption: true, describe: "a principal with a profile" }),
        guarded(async (argv) => {
          const principal = checkPrincipal(argv.principal);
          const quotas = (await adminCall(resolveHome(), "QuotaGet", { principal })).data as Quotas;
          print(argv, quotas, quotaLines(principal, quotas));
        }))
      .command("set <principal>", "Change some of the principal's quotas (the others keep their values)", (a) =>
        usageFailures(a)
          .positional("principal", { type: "string", demandOption: true, describe: "a principal with a profile" })
          .option("max-memory-bytes", { type: "number", describe: `capsule memory (> 0; default ${QUOTA_DEFAULTS.max_memory_bytes})` })
          .option("max-timeout-secs", { type: "number", describe: `longest call, 1-86400 (default ${QUOTA_DEFAULTS.max_timeout_secs})` })
          .option("max-ipc-throughput-bytes", { type: "number", describe: `IPC bytes per second (> 0; default ${QUOTA_DEFAULTS.max_ipc_throughput_bytes})` })
          .option("max-background-processes", { type: "number", describe: `0-256 (default ${QUOTA_DEFAULTS.max_background_processes})` })
          .option("max-storage-bytes", { type: "number", describe: `KV storage (> 0, not enforced yet; default ${QUOTA_DEFAULTS.max_storage_bytes})` })
          .example("$0 quota set alice --max-timeout-secs 60", "alice's calls time out after a minute"),
        guarded(async (argv) => {
          const principal = checkPrincipal(argv.principal);
          const quotas: Record<string, number> = {};
          for (const [flag, field] of Object.entries(QUOTA_OPTIONS)) {
            const value = argv[flag as keyof typeof QUOTA_OPTIONS];
            if (value === undefined) continue;
            if (typeof value !== "number" || !Number.isFinite(value)) throw new UsageError(`--${flag} must be a number`);
            quotas[field] = value;
          }
          if (Object.keys(quotas).length === 0) throw new UsageError(`quota set needs at least one of ${Object.keys(QUOTA_OPTIONS).map((f) => `--${f}`).join(", ")}`);
          await adminCall(resolveHome(), "QuotaSet", { principal, quotas });
          print(argv, { principal, quotas }, `Set ${Object.entries(quotas).map(([k, v]) => `${k} = ${v}`).join(", ")} for ${principal}.`);
        }))
      .demandCommand(1, "Name an action: get or set."),
  handler: () => {},
};

/** The four admin commands; their usage errors exit 2 (see UsageError). */
export function adminCommands(): Array<CommandModule<Global, Global>> {
  return [agentCommand, groupCommand, capsCommand, quotaCommand];
}
