/**
 * `Capsule.toml` (reference §6.1): parsed with smol-toml, validated with a zod schema. No I/O here: the capsule
 * loader worker reads the file and the kernel imports only the types. Unknown keys produce
 * warnings (the reference silently ignores them, which hides typos such as `[publish]` for `ipc_publish`).
 */
import path from "node:path";
import semver from "semver";
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { AstridError } from "./errors";
import { MCP_SERVER_NAME } from "./mcp-host";
import { DAEMON_VERSION } from "./version";

/** The manifest's file name inside a capsule directory. */
export const MANIFEST_FILE = "Capsule.toml";

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;
const CAPSULE_NAME = /^[a-z0-9-]+$/;

const topicPattern = z
  .string()
  .refine((t) => t.length > 0 && !t.split(".").some((s) => s === ""), { message: "topic has an empty segment" });
const strings = z.array(z.string()).default([]);

const PackageSchema = z.looseObject({
  name: z.string().regex(CAPSULE_NAME, "must match [a-z0-9-]+"),
  version: z.string().regex(SEMVER, "must be a semantic version such as 1.2.3"),
  description: z.string().optional(),
  "astrid-version": z
    .string()
    .refine((range) => semver.validRange(range) !== null, "must be a semver range such as >=0.1")
    .optional(),
  /** Our addition: the capsule answers prompts as an agent; a session has exactly one (kernel/capsules/agent-selection.ts). */
  agent: z.boolean().default(false),
});

const CapabilitiesSchema = z.looseObject({
  uplink: z.boolean().default(false),
  net: strings,
  kv: strings,
  fs_read: strings,
  fs_write: strings,
  host_process: strings,
  net_bind: strings,
  /** Outbound TCP and lookups (`astrid:net`): `net`'s host patterns, with `:port` or `:*`. */
  net_connect: strings,
  /** TCP listeners: local IP patterns (`127.0.0.1`, `127.0.0.1:8080`, `[::1]:*`). */
  net_tcp_bind: strings,
  /** UDP: `bind:<ip>[:port|:*]` entries for the local address, plain host patterns for peers. */
  net_udp: strings,
  ipc_publish: z.array(topicPattern).default([]),
  ipc_subscribe: z.array(topicPattern).default([]),
  identity: strings,
  allow_prompt_injection: z.boolean().default(false),
  /** Our addition: the operator's MCP servers (etc/servers.toml names) this capsule may use; `"*"`: all of them. */
  mcp: z.array(z.string().refine((s) => s === "*" || MCP_SERVER_NAME.test(s), 'must name a server of etc/servers.toml (1–64 of A-Z a-z 0-9 _ -), or be "*"')).default([]),
  /** Our addition: the capsule may call the operator's language-model endpoint (`model.*`; the kernel holds the key). */
  model: z.boolean().default(false),
});

const ComponentSchema = z.looseObject({ id: z.string().default(""), file: z.string().optional(), entrypoint: z.string().optional() });
const CommandSchema = z.looseObject({ name: z.string().min(1), description: z.string().optional(), file: z.string().optional() });
const InterceptorSchema = z.looseObject({ event: topicPattern, action: z.string().min(1), priority: z.number().int().default(100) });
/** `[[mcp_server]]` (reference §6.6): a server the capsule owns; `type = "stdio"` starts `command` with `args`. */
const McpServerSchema = z.looseObject({
  id: z.string().regex(MCP_SERVER_NAME, "must be 1–64 of A-Z a-z 0-9 _ -"),
  description: z.string().optional(),
  type: z.string().optional(),
  command: z.string().min(1).optional(),
  args: strings,
});
const UplinkSchema = z.looseObject({
  name: z.string(),
  platform: z.string(),
  profile: z.enum(["chat", "interactive", "notify", "bridge"]),
});

/** Namespace and interface names in `[imports]`/`[exports]`. */
const INTERFACE_NAME = /^[a-z][a-z0-9-]*$/;
const interfaces = z
  .record(z.string(), z.record(z.string(), z.unknown()))
  .default({})
  .superRefine((namespaces, ctx) => {
    for (const [ns, ifaces] of Object.entries(namespaces)) {
      if (!INTERFACE_NAME.test(ns)) ctx.addIssue({ code: "custom", path: [ns], message: "must match ^[a-z][a-z0-9-]*$" });
      for (const iface of Object.keys(ifaces)) {
        if (!INTERFACE_NAME.test(iface)) ctx.addIssue({ code: "custom", path: [ns, iface], message: "must match ^[a-z][a-z0-9-]*$" });
      }
    }
  });

/** `[[topic]]` names: segments of [A-Za-z0-9_-], a trailing `.*` allowed, no bare or inner `*`. */
const TopicDocSchema = z.looseObject({
  name: z.string().refine((name) => {
    const segments = name.split(".");
    if (name === "*" || segments.some((seg) => seg === "")) return false;
    return segments.every((seg, i) => (seg === "*" ? i === segments.length - 1 : /^[A-Za-z0-9_-]+$/.test(seg)));
  }, "must be dot-separated segments of [A-Za-z0-9_-], with `*` only as a trailing segment"),
  direction: z.enum(["publish", "subscribe"]),
  description: z.string().optional(),
  schema: z
    .string()
    .refine((p) => !p.startsWith("/") && !p.split(/[\\/]/).includes(".."), "must be a relative path inside the capsule")
    .optional(),
  wit_type: z.string().optional(),
});

const ManifestSchema = z
  .looseObject({
    package: PackageSchema,
    component: z.array(ComponentSchema).default([]),
    imports: interfaces,
    exports: interfaces,
    topic: z
      .array(TopicDocSchema)
      .default([])
      .refine((topics) => new Set(topics.map((t) => `${t.name}\u0000${t.direction}`)).size === topics.length, "a (name, direction) pair is declared twice"),
    capabilities: CapabilitiesSchema.default(CapabilitiesSchema.parse({})),
    env: z.record(z.string(), z.unknown()).default({}),
    command: z.array(CommandSchema).default([]),
    interceptor: z.array(InterceptorSchema).default([]),
    uplink: z.array(UplinkSchema).default([]),
    mcp_server: z
      .array(McpServerSchema)
      .default([])
      .refine((servers) => new Set(servers.map((m) => m.id)).size === servers.length, "an [[mcp_server]] id is declared twice")
      .refine((servers) => servers.every((m) => m.type !== "stdio" || m.command !== undefined), 'a type = "stdio" [[mcp_server]] needs a command'),
  })
  .refine((m) => !(m.capabilities.uplink && Object.keys(m.imports).length > 0), {
    message: "a capsule with capabilities.uplink = true may not declare [imports]",
    path: ["capabilities", "uplink"],
  });

/** A validated manifest. */
export type CapsuleManifest = z.infer<typeof ManifestSchema>;

/** Keys each table knows; anything else is warned about. */
const KNOWN_KEYS: Record<string, readonly string[]> = {
  "": ["package", "component", "imports", "exports", "capabilities", "env", "context_file", "command", "mcp_server", "skill", "uplink", "interceptor", "topic"],
  package: ["name", "version", "description", "authors", "repository", "homepage", "documentation", "license", "license-file", "readme", "keywords", "categories", "astrid-version", "publish", "include", "exclude", "metadata", "agent"],
  capabilities: Object.keys(CapabilitiesSchema.shape),
};

/** A manifest with where it came from and what was odd about it. */
export interface LoadedManifest {
  manifest: CapsuleManifest;
  /** The capsule directory. */
  dir: string;
  /** The Capsule.toml path. */
  file: string;
  warnings: string[];
}

/**
 * Validates the text of `<dir>/Capsule.toml`; throws ASTRID_ERR_MANIFEST_INVALID naming the file, line and field.
 * `exists` tells whether a file inside the capsule exists (the caller owns the filesystem; this module does no I/O).
 */
export function parseManifest(text: string, dir: string, exists: (file: string) => boolean): LoadedManifest {
  const file = path.join(dir, MANIFEST_FILE);
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${file}:${err.line}:${err.column}: TOML syntax error: ${firstLine(err.message)}`, { cause: err });
    }
    throw new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${file}: cannot parse: ${(err as Error).message}`, { cause: err });
  }
  // Every schema problem names the file, the line (found in the TOML text) and the field.
  const invalid = (field: PropertyKey[], message: string) => {
    const line = fieldLine(text, field);
    return new AstridError("ASTRID_ERR_MANIFEST_INVALID", `${file}${line ? `:${line}` : ""}: field ${field.map(String).join(".") || "(root)"}: ${message}`);
  };
  const parsed = ManifestSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw invalid(issue.path, issue.message);
  }
  const required = parsed.data.package["astrid-version"];
  if (required !== undefined && !semver.satisfies(DAEMON_VERSION, required, { includePrerelease: true })) {
    throw invalid(["package", "astrid-version"], `requires astrid ${required}; this runtime is ${DAEMON_VERSION}`);
  }
  const component = parsed.data.component[0];
  if (component) {
    const entry = component.file ?? component.entrypoint;
    const field = ["component", 0, component.file !== undefined ? "file" : "entrypoint"];
    if (entry === undefined) throw invalid(["component", 0, "file"], "missing (the capsule's JavaScript module or WebAssembly component)");
    const resolved = path.resolve(dir, entry);
    const relative = path.relative(dir, resolved);
    if (path.isAbsolute(entry) || relative.startsWith("..") || path.isAbsolute(relative)) {
      throw invalid(field, `${JSON.stringify(entry)} points outside the capsule directory`);
    }
    // A WebAssembly binary may live in $ASTRID_HOME/bin/<wasm_hash>.wasm instead (its worker looks there).
    if (!exists(resolved) && !entry.toLowerCase().endsWith(".wasm")) throw invalid(field, `${JSON.stringify(entry)} does not exist`);
  }
  const warnings: string[] = [];
  const record = raw as Record<string, unknown>;
  for (const [table, known] of Object.entries(KNOWN_KEYS)) {
    const value = table === "" ? record : record[table];
    if (typeof value !== "object" || value === null) continue;
    for (const key of Object.keys(value)) {
      if (!known.includes(key)) warnings.push(`${file}: unknown key ${table ? `${table}.` : ""}${key} (ignored)`);
    }
  }
  return { manifest: parsed.data, dir, file, warnings };
}

/**
 * The 1-based line of the TOML text that best locates `field` (a schema issue path such as `package.version` or
 * `topic.0.name`): the line defining the longest leading part of the path — the key itself, or else its table's
 * header (a missing key points at its table). Undefined when nothing in the text matches.
 */
export function fieldLine(text: string, field: readonly PropertyKey[]): number | undefined {
  const want = field.map(String);
  let best: { line: number; depth: number } | undefined;
  const consider = (keys: string[], line: number) => {
    if (keys.length === 0 || keys.length > want.length || !keys.every((k, i) => k === want[i])) return;
    if (!best || keys.length > best.depth) best = { line, depth: keys.length };
  };
  const arrayCounts = new Map<string, number>();
  let table: string[] = [];
  let openString: '"""' | "'''" | undefined;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    // Lines inside a multi-line string are text, not TOML: a "[Docs](…)" there is no table header.
    if (openString !== undefined) {
      if (line.split(openString).length % 2 === 0) openString = undefined;
      return;
    }
    for (const quotes of ['"""', "'''"] as const) if (line.split(quotes).length % 2 === 0) openString = quotes;
    // `[^\]]*` then trim, not `\s*([^\]]+?)\s*`: those overlap, and a long line of `[` and spaces without a `]`
    // (valid TOML inside a multi-line array) backtracked in cubic time — a hang on a hostile Capsule.toml.
    const header = /^\[\[([^\]]*)\]\]|^\[([^\]]*)\]/.exec(line);
    const name = header ? (header[1] ?? header[2]!).trim() : "";
    if (header && name !== "") {
      const keys = splitKey(name);
      if (header[1] !== undefined) {
        const name = keys.join(".");
        const index = arrayCounts.get(name) ?? 0;
        arrayCounts.set(name, index + 1);
        keys.push(String(index));
      }
      table = keys;
      consider(table, i + 1);
      return;
    }
    const assignment = /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/.exec(line);
    if (assignment) consider([...table, ...splitKey(assignment[1]!)], i + 1);
  });
  return best?.line;
}

/**
 * The path of the first `__proto__` key in a parsed TOML document, or null. smol-toml keeps it as an own key, but
 * zod's records drop it without an issue, so a `[servers.__proto__]` or `[groups.__proto__]` would vanish silently.
 */
export function protoKeyPath(value: unknown, at: string[] = []): string[] | null {
  if (typeof value !== "object" || value === null) return null;
  for (const [key, child] of Object.entries(value)) {
    if (key === "__proto__") return [...at, key];
    const found = protoKeyPath(child, [...at, key]);
    if (found) return found;
  }
  return null;
}

function splitKey(key: string): string[] {
  return (key.match(/"[^"]*"|'[^']*'|[^.\s]+/g) ?? []).map((part) => part.replace(/^["']|["']$/g, ""));
}

function firstLine(text: string): string {
  return text.split("\n")[0] ?? text;
}
