/**
 * Groups (reference §8.4): the built-ins `admin`, `agent` and `restricted`, always present and never definable,
 * modifiable or deletable, and the custom groups of `etc/groups.toml` (`[groups.<name>] capabilities, description,
 * unsafe_admin`; unknown keys are errors). A check reads one immutable snapshot; a change writes the custom groups
 * atomically (0600) and then swaps the snapshot.
 */
import { stringify as stringifyToml } from "smol-toml";
import { z } from "zod";
import { capabilityProblem } from "../../protocol/capability";
import type { GroupListEntry } from "../../protocol/admin-request";
import { AstridError } from "../../protocol/errors";
import { PRINCIPAL_ID_PATTERN } from "../../protocol/identity-names";
import { readFileIfExists, writeFileAtomic } from "./atomic-file";
import { parsePolicyToml } from "./policy-toml";

/** A group: a named set of capability patterns. */
export interface Group {
  name: string;
  capabilities: readonly string[];
  description?: string;
  /** Required for a custom group holding a pattern made only of `*` segments (`*`, `*:*`, …). */
  unsafe_admin: boolean;
}

/** The built-in groups (reference §8.4). */
export const BUILTIN_GROUPS: ReadonlyMap<string, Group> = new Map(
  [
    { name: "admin", capabilities: ["*"], description: "Everything (the operator)", unsafe_admin: true },
    {
      name: "agent",
      capabilities: ["self:*", "self:quota:get", "self:agent:list", "delegate:self:*"],
      description: "An agent acting for itself",
      unsafe_admin: false,
    },
    { name: "restricted", capabilities: [], description: "Nothing without explicit grants", unsafe_admin: false },
  ].map((g) => [g.name, Object.freeze(g)]),
);

/** The group `astrid agent create` gives an agent when it names none. */
export const DEFAULT_AGENT_GROUP = "agent";

/** True for the name of a built-in group. */
export function isBuiltinGroup(name: string): boolean {
  return BUILTIN_GROUPS.has(name);
}

/** Why a custom group may not exist as given, or null when it may. */
export function groupProblem(group: Group): string | null {
  if (!PRINCIPAL_ID_PATTERN.test(group.name)) return `group name ${JSON.stringify(group.name)} must be 1-64 characters of [A-Za-z0-9_-]`;
  // A plain object keyed by group name (the TOML writer's) cannot hold `__proto__`: it would vanish from the file.
  if (group.name === "__proto__") return "__proto__ is reserved";
  if (isBuiltinGroup(group.name)) return `${group.name} is a built-in group (admin, agent and restricted cannot be defined, modified or deleted)`;
  for (const capability of group.capabilities) {
    const problem = capabilityProblem(capability);
    if (problem !== null) return `capability ${JSON.stringify(capability)} rejected: ${problem}`;
    if (!group.unsafe_admin && capability.split(":").every((s) => s === "*")) {
      return `capability ${JSON.stringify(capability)} grants everything: set unsafe_admin = true to allow it in a custom group`;
    }
  }
  return null;
}

const GroupTableSchema = z.strictObject({
  capabilities: z.array(z.string({ error: "must be a string" }), { error: "must be an array of strings" }).default([]),
  description: z.string({ error: "must be a string" }).optional(),
  unsafe_admin: z.boolean({ error: "must be true or false" }).default(false),
});
const GroupsFileSchema = z.strictObject({
  groups: z.record(z.string(), GroupTableSchema, { error: "must be a table of [groups.<name>] tables" }).default({}),
});

/** Parses the text of `etc/groups.toml` into its custom groups; throws ASTRID_ERR_GROUPS_INVALID naming the line. */
export function parseGroupsFile(text: string, file: string): Map<string, Group> {
  const parsed = parsePolicyToml(text, file, GroupsFileSchema, "ASTRID_ERR_GROUPS_INVALID");
  const groups = new Map<string, Group>();
  for (const [name, table] of Object.entries(parsed.groups)) {
    const group: Group = { name, capabilities: table.capabilities, unsafe_admin: table.unsafe_admin, ...(table.description !== undefined ? { description: table.description } : {}) };
    const problem = groupProblem(group);
    if (problem !== null) throw new AstridError("ASTRID_ERR_GROUPS_INVALID", `${file}: [groups.${name}]: ${problem}`);
    groups.set(name, group);
  }
  return groups;
}

/** The TOML text of the custom groups, sorted by name. */
export function serializeGroups(custom: Iterable<Group>): string {
  const groups: Record<string, Record<string, unknown>> = {};
  for (const g of [...custom].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    groups[g.name] = { capabilities: [...g.capabilities], ...(g.description !== undefined ? { description: g.description } : {}), unsafe_admin: g.unsafe_admin };
  }
  return `${GROUPS_FILE_HEADER}\n\n${stringifyToml({ groups })}\n`;
}

const GROUPS_FILE_HEADER = "# Custom groups (see docs/principals.md), written by the admin API. The built-ins admin, agent and restricted\n# cannot be defined here.";

/** One immutable view of every group. */
export class GroupConfig {
  constructor(private readonly custom: ReadonlyMap<string, Group>) {}

  /** The group called `name` (built-in or custom), if any. */
  get(name: string): Group | undefined {
    return BUILTIN_GROUPS.get(name) ?? this.custom.get(name);
  }

  /** The custom groups. */
  customGroups(): Group[] {
    return [...this.custom.values()];
  }

  /** Every group, sorted by name, as GroupList reports them. */
  list(): GroupListEntry[] {
    const all = [...BUILTIN_GROUPS.values(), ...this.custom.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return all.map((g) => ({
      name: g.name,
      capabilities: [...g.capabilities],
      ...(g.description !== undefined ? { description: g.description } : {}),
      unsafe_admin: g.unsafe_admin,
      builtin: isBuiltinGroup(g.name),
    }));
  }
}

/** What GroupModify may change; `description: null` clears it, absent keeps it. */
export interface GroupChanges {
  capabilities?: readonly string[];
  description?: string | null;
  unsafe_admin?: boolean;
}

/** The groups in force, and the one place that changes `etc/groups.toml`. Callers serialise changes (admin lock). */
export class GroupStore {
  private config: GroupConfig;

  private constructor(
    private readonly file: string,
    custom: Map<string, Group>,
  ) {
    this.config = new GroupConfig(custom);
  }

  /** Reads `file` (missing: built-ins only); a malformed file throws ASTRID_ERR_GROUPS_INVALID (fatal at boot). */
  static async load(file: string): Promise<GroupStore> {
    const text = await readFileIfExists(file);
    return new GroupStore(file, text === null ? new Map() : parseGroupsFile(text, file));
  }

  /** The current snapshot; a check uses one snapshot from start to end. */
  snapshot(): GroupConfig {
    return this.config;
  }

  /** GroupCreate: a new custom group. Throws ASTRID_ERR_GROUP_REJECTED with `group.create rejected: …`. */
  async create(group: Group): Promise<void> {
    const reject = rejecter("create");
    const problem = groupProblem(group);
    if (problem !== null) throw reject(problem);
    if (this.config.get(group.name) !== undefined) throw reject(`group ${group.name} already exists`);
    await this.save([...this.config.customGroups(), group]);
  }

  /** GroupModify: changes a custom group. */
  async modify(name: string, changes: GroupChanges): Promise<Group> {
    const reject = rejecter("modify");
    if (isBuiltinGroup(name)) throw reject(`${name} is a built-in group (admin, agent and restricted cannot be modified)`);
    const current = this.config.get(name);
    if (current === undefined) throw reject(`no group named ${JSON.stringify(name)} (see astrid group list)`);
    const next: Group = {
      name,
      capabilities: changes.capabilities ?? current.capabilities,
      unsafe_admin: changes.unsafe_admin ?? current.unsafe_admin,
    };
    const description = changes.description === undefined ? current.description : changes.description;
    if (description !== null && description !== undefined) next.description = description;
    const problem = groupProblem(next);
    if (problem !== null) throw reject(problem);
    await this.save(this.config.customGroups().map((g) => (g.name === name ? next : g)));
    return next;
  }

  /** GroupDelete: removes a custom group (profiles naming it then skip it, failing closed). */
  async delete(name: string): Promise<void> {
    const reject = rejecter("delete");
    if (isBuiltinGroup(name)) throw reject(`${name} is a built-in group (admin, agent and restricted cannot be deleted)`);
    if (this.config.get(name) === undefined) throw reject(`no group named ${JSON.stringify(name)} (see astrid group list)`);
    await this.save(this.config.customGroups().filter((g) => g.name !== name));
  }

  private async save(custom: Group[]): Promise<void> {
    await writeFileAtomic(this.file, serializeGroups(custom));
    this.config = new GroupConfig(new Map(custom.map((g) => [g.name, g])));
  }
}

function rejecter(action: "create" | "modify" | "delete"): (why: string) => AstridError {
  return (why) => new AstridError("ASTRID_ERR_GROUP_REJECTED", `group.${action} rejected: ${why}`);
}
