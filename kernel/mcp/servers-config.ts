/**
 * `$ASTRID_HOME/etc/servers.toml`: the operator's MCP servers (reference §1.2, §2.2 step 3), parsed with smol-toml
 * and checked with zod. A missing file means no servers; a malformed one stops the boot with
 * ASTRID_ERR_MCP_CONFIG_INVALID naming the file, the line and the field (the reference fell back silently).
 *
 *   [servers.files]
 *   command = "npx"                        # stdio (the default transport): an executable and an argument array
 *   args = ["-y", "@modelcontextprotocol/server-filesystem", "/srv/share"]
 *   env = { LOG_LEVEL = "info" }
 *   restart_policy = { on_failure = { max_retries = 3 } }   # or "never", "always"
 *   binary_hash = "<sha256 of the executable>"
 */
import fs from "node:fs/promises";
import path from "node:path";
import { parse as parseToml, TomlError } from "smol-toml";
import { z } from "zod";
import { fieldLine, protoKeyPath } from "../../protocol/capsule-manifest";
import { AstridError } from "../../protocol/errors";
import { MCP_SERVER_NAME, type McpTransportKind } from "../../protocol/mcp-host";

/** When a server that stopped is started again. */
export type RestartPolicy = { kind: "never" } | { kind: "always" } | { kind: "on_failure"; maxRetries: number };

/** Retries of `on_failure` when the config does not say. */
export const DEFAULT_MAX_RETRIES = 3;

/** One server as the manager starts it. */
export interface McpServerConfig {
  name: string;
  transport: McpTransportKind;
  command?: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  url?: string;
  autoStart: boolean;
  description?: string;
  binaryHash?: string;
  restartPolicy: RestartPolicy;
}

const RestartPolicySchema = z.union([
  z.enum(["never", "always", "on_failure"]),
  z.strictObject({ on_failure: z.strictObject({ max_retries: z.number().int().min(0).max(1000) }) }),
], { error: 'must be "never", "always", "on_failure" or { on_failure = { max_retries = N } }' });

const ServerSchema = z
  .strictObject({
    transport: z.enum(["stdio", "sse", "http"]).default("stdio"),
    command: z.string().min(1, "must not be empty").optional(),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
    cwd: z.string().refine((p) => path.isAbsolute(p), "must be an absolute path").optional(),
    url: z.string().refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), "must be an http:// or https:// URL").optional(),
    auto_start: z.boolean().default(true),
    description: z.string().optional(),
    binary_hash: z.string().regex(/^(sha256:)?[0-9a-fA-F]{64}$/, "must be the SHA-256 of the executable: 64 hex digits").optional(),
    restart_policy: RestartPolicySchema.default("on_failure"),
  })
  .superRefine((s, ctx) => {
    if (s.transport === "stdio" && s.command === undefined) ctx.addIssue({ code: "custom", path: ["command"], message: "is required for a stdio server" });
    if (s.transport !== "stdio" && s.url === undefined) ctx.addIssue({ code: "custom", path: ["url"], message: `is required for a ${s.transport} server` });
  });

const FileSchema = z.strictObject({
  servers: z.record(z.string().regex(MCP_SERVER_NAME, "server names are 1–64 of A-Z a-z 0-9 _ -"), ServerSchema).default({}),
});

/** Reads and checks `file`; a missing file is no servers. */
export async function loadServersConfig(file: string): Promise<McpServerConfig[]> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new AstridError("ASTRID_ERR_MCP_CONFIG_INVALID", `${file}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  return parseServersConfig(text, file);
}

/** Checks the text of a servers.toml; throws ASTRID_ERR_MCP_CONFIG_INVALID naming `file`, the line and the field. */
export function parseServersConfig(text: string, file: string): McpServerConfig[] {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new AstridError("ASTRID_ERR_MCP_CONFIG_INVALID", `${file}:${err.line}:${err.column}: TOML syntax error: ${err.message.split("\n")[0]}`, { cause: err });
    }
    throw new AstridError("ASTRID_ERR_MCP_CONFIG_INVALID", `${file}: cannot parse: ${(err as Error).message}`, { cause: err });
  }
  const proto = protoKeyPath(raw);
  if (proto) {
    const line = fieldLine(text, proto);
    throw new AstridError("ASTRID_ERR_MCP_CONFIG_INVALID", `${file}${line ? `:${line}` : ""}: ${proto.join(".")}: \`__proto__\` is reserved`);
  }
  const parsed = FileSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    // An unknown key's path is its table; the key itself is in the issue.
    const keys = issue.code === "unrecognized_keys" ? issue.keys : [];
    const field = keys.length > 0 ? [...issue.path, keys[0]!] : issue.path;
    const line = fieldLine(text, field);
    const message = issue.code === "unrecognized_keys" ? `unknown key (known: ${knownKeys(issue.path)})`
      : issue.code === "invalid_key" ? issue.issues[0]?.message ?? issue.message
      : issue.message;
    throw new AstridError("ASTRID_ERR_MCP_CONFIG_INVALID", `${file}${line ? `:${line}` : ""}: ${field.map(String).join(".") || "(root)"}: ${message}`);
  }
  return Object.entries(parsed.data.servers).map(([name, s]) => ({
    name,
    transport: s.transport,
    ...(s.command !== undefined ? { command: s.command } : {}),
    args: s.args,
    env: s.env,
    ...(s.cwd !== undefined ? { cwd: s.cwd } : {}),
    ...(s.url !== undefined ? { url: s.url } : {}),
    autoStart: s.auto_start,
    ...(s.description !== undefined ? { description: s.description } : {}),
    ...(s.binary_hash !== undefined ? { binaryHash: s.binary_hash.replace(/^sha256:/, "").toLowerCase() } : {}),
    restartPolicy: restartPolicy(s.restart_policy),
  }));
}

function restartPolicy(raw: z.infer<typeof RestartPolicySchema>): RestartPolicy {
  if (raw === "never" || raw === "always") return { kind: raw };
  if (raw === "on_failure") return { kind: "on_failure", maxRetries: DEFAULT_MAX_RETRIES };
  return { kind: "on_failure", maxRetries: raw.on_failure.max_retries };
}

function knownKeys(at: readonly PropertyKey[]): string {
  if (at.length === 0) return "servers";
  return Object.keys(ServerSchema.shape).join(", ");
}
