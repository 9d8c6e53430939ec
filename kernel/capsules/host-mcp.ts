/**
 * The `mcp.*` host calls, and the MCP servers a capsule brings. A capsule may use a server it owns (its
 * `[[mcp_server]]`, started with its worker and stopped when its run ends) or one of the operator's that its
 * manifest names (`[capabilities] mcp = ["name"]`); anything else is refused and audited. Each call also needs
 * the acting principal's `self:mcp:use`. Owned servers start only when `host_process` covers their command
 * (reference §6.6): otherwise the capsule fails to load with the reference's message.
 */
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import type { McpOperation } from "../../protocol/mcp-host";
import type { McpServers } from "../mcp/server-manager";
import type { McpServerConfig } from "../mcp/servers-config";
import { hostProcessCovers } from "../processes/command-match";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";

/** The name an owned server runs under: `capsule:<capsule>:<id>`. */
export function ownedServerName(capsule: string, id: string): string {
  return `capsule:${capsule}:${id}`;
}

/**
 * Reference §6.6: a `[[mcp_server]]` command is allowed when it equals a `host_process` entry or starts with
 * `"<entry> "` — the one matcher host processes use too (kernel/processes/command-match.ts).
 */
export { hostProcessCovers } from "../processes/command-match";

const ServerArg = z.string().min(1).max(160);
const ToolArgs = z.record(z.string(), z.unknown());
const PromptArgs = z.record(z.string(), z.string());
const Text = z.string().min(1).max(4096);

/** McpService: the `mcp` family of capsule calls, and the lifecycle of capsules' own servers. */
export class McpService implements HostService {
  constructor(private readonly host: HostContext) {}

  private get servers(): McpServers {
    if (!this.host.mcp) throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", "MCP servers are not available in this daemon");
    return this.host.mcp;
  }

  /** Starts the capsule's own servers (after the host_process check) and waits for them. */
  async beginRun(run: CapsuleRun): Promise<void> {
    const { manifest, name, dir } = run.record;
    const stdio = manifest.mcp_server.filter((server) => server.type === "stdio");
    if (stdio.length === 0) return;
    const configs: McpServerConfig[] = [];
    for (const server of stdio) {
      const command = server.command!;
      if (!hostProcessCovers(manifest.capabilities.host_process, command)) {
        const message = `Security Check Failed: host_process capability for '${command}' was not declared in the manifest.`;
        this.host.audit.capsule("denied", name, { call: "mcp_server", principal: run.owner, capability: null, manifest: "host_process", target: command, detail: message });
        throw new AstridError("ASTRID_ERR_CAPABILITY_DENIED", message);
      }
      configs.push({
        name: ownedServerName(name, server.id),
        transport: "stdio",
        command,
        args: server.args,
        env: {},
        // A relative command resolves inside the capsule directory (reference §6.6), and the server runs there.
        cwd: dir,
        autoStart: true,
        ...(server.description !== undefined ? { description: server.description } : {}),
        restartPolicy: { kind: "on_failure", maxRetries: 3 },
      });
    }
    await this.servers.startOwned(name, configs);
  }

  endRun(run: CapsuleRun): void {
    if (run.record.manifest.mcp_server.length === 0 || !this.host.mcp) return;
    void this.host.mcp.stopOwned(run.record.name).catch((err: Error) =>
      this.host.logger.warn("stopping a capsule's MCP servers failed", { capsule: run.record.name, error: err.message }));
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    const capsule = call.run.record.name;
    const who = { principal: call.principal, capsule };
    if (call.call === "mcp.servers") {
      await call.permit({ kind: "mcp", target: "*", allowedByManifest: true, capability: CAPSULE_HOST_CAPABILITIES.mcp });
      return this.visible(call.run);
    }
    const server = await this.resolve(call, args[0]);
    switch (call.call) {
      case "mcp.tools":
        return this.servers.tools(server);
      case "mcp.call": {
        const tool = parse(call, "tool", Text, args[1]);
        const toolArgs = parse(call, "arguments", ToolArgs, args[2] ?? {});
        return this.servers.run(server, { op: "call_tool", tool, args: toolArgs }, who);
      }
      case "mcp.resources":
        return this.servers.run(server, { op: "list_resources" }, who);
      case "mcp.read_resource":
        return this.servers.run(server, { op: "read_resource", uri: parse(call, "uri", Text, args[1]) }, who);
      case "mcp.prompts":
        return this.servers.run(server, { op: "list_prompts" }, who);
      case "mcp.get_prompt": {
        const operation: McpOperation = { op: "get_prompt", prompt: parse(call, "prompt", Text, args[1]), args: parse(call, "arguments", PromptArgs, args[2] ?? {}) };
        return this.servers.run(server, operation, who);
      }
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${call.call}`);
    }
  }

  /**
   * The server a call names, checked: the capsule's own (by its `id` or full name) or one its manifest lists;
   * anything else is refused (ASTRID_ERR_CAPABILITY_DENIED, audited by the gate).
   */
  private async resolve(call: HostCall, raw: unknown): Promise<string> {
    const asked = parse(call, "server", ServerArg, raw);
    const { manifest, name } = call.run.record;
    const own = manifest.mcp_server.find((s) => s.type === "stdio" && (s.id === asked || ownedServerName(name, s.id) === asked));
    const server = own ? ownedServerName(name, own.id) : asked;
    await call.permit({
      kind: "mcp",
      target: asked,
      // `"*"` covers the operator's servers only, never another capsule's own.
      allowedByManifest: own !== undefined || manifest.capabilities.mcp.includes(asked) || (manifest.capabilities.mcp.includes("*") && this.host.mcp?.ownerOf(asked) === null),
      capability: CAPSULE_HOST_CAPABILITIES.mcp,
    });
    return server;
  }

  /** The servers this capsule may use, with their state. */
  private visible(run: CapsuleRun): unknown[] {
    const { manifest, name } = run.record;
    const own = manifest.mcp_server.filter((s) => s.type === "stdio").map((s) => ({ id: s.id, name: ownedServerName(name, s.id), owned: true }));
    const names = manifest.capabilities.mcp.includes("*") ? (this.host.mcp?.list() ?? []).filter((s) => s.owner === null).map((s) => s.name) : manifest.capabilities.mcp;
    const named = names.map((server) => ({ id: server, name: server, owned: false }));
    return [...own, ...named].map((entry) => {
      const status = this.host.mcp?.status(entry.name);
      return {
        ...entry,
        state: status?.state ?? "unknown",
        tools: status?.tools ?? 0,
        ...(status?.description !== undefined ? { description: status.description } : {}),
        ...(status?.last_error !== undefined ? { last_error: status.last_error } : {}),
      };
    });
  }
}

function parse<T>(call: HostCall, what: string, schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: ${what} is invalid: ${parsed.error.issues[0]?.message ?? "bad value"}`);
  return parsed.data;
}
