/**
 * `astrid mcp list|tools|call`: the running daemon's MCP servers — each server's state, pid, tool count and
 * restarts; one server's tools; and an operator's tool call (principal `default`, audited like a capsule's).
 */
import type { Argv, CommandModule } from "yargs";
import { AstridError } from "../../protocol/errors";
import type { McpTool } from "../../protocol/mcp-host";
import { resolveHome } from "../../kernel/home";
import type { McpServerStatus } from "../../kernel/mcp/server-manager";
import { daemonRequest } from "./daemon-request";
import { UsageError } from "./usage";

/** How long `mcp call` waits: the daemon's request deadline (60 s by default) plus a server still starting. */
const CALL_TIMEOUT_MS = 130_000;

interface McpArgs {
  json: boolean;
  action: "list" | "tools" | "call";
  server?: string;
  tool?: string;
  args?: string;
}

/** Prints a result: the JSON object with --json, else the human lines. */
function print(json: boolean, value: unknown, human: string): void {
  process.stdout.write(json ? `${JSON.stringify(value)}\n` : `${human}\n`);
}

/** The `mcp list` table. */
export function serverTable(servers: readonly McpServerStatus[]): string {
  if (servers.length === 0) return "No MCP servers (configure them in $ASTRID_HOME/etc/servers.toml).";
  const rows = servers.map((s) => [s.name, s.owner ?? "-", s.state, s.pid === null ? "-" : String(s.pid), String(s.tools), String(s.restarts), s.last_error ?? ""]);
  const header = ["NAME", "OWNER", "STATE", "PID", "TOOLS", "RESTARTS", "LAST ERROR"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ").trimEnd()).join("\n");
}

/** The text of a tool result's content, for people (other content kinds are named, not printed). */
export function resultText(result: { content?: Array<{ type: string; text?: string }> }): string {
  return (result.content ?? []).map((c) => (c.type === "text" ? c.text ?? "" : `[${c.type}]`)).join("\n");
}

/** `--args '{"k":"v"}'` → the object; anything but a JSON object is a usage error. */
export function parseToolArgs(text: string | undefined): Record<string, unknown> {
  if (text === undefined) return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `--args is not JSON: ${(err as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", '--args must be a JSON object, e.g. --args \'{"message":"hi"}\'');
  }
  return value as Record<string, unknown>;
}

async function run(argv: McpArgs): Promise<void> {
  const home = resolveHome();
  const need = (value: string | undefined, what: string): string => {
    if (value === undefined || value === "") throw new UsageError(`mcp ${argv.action} needs ${what} (see astrid mcp --help)`);
    return value;
  };
  if (argv.action === "list") {
    const servers = (await daemonRequest(home, "McpList", undefined, { topicSuffix: "mcp" })).data as McpServerStatus[];
    return print(argv.json, servers, serverTable(servers));
  }
  if (argv.action === "tools") {
    const server = need(argv.server, "a server name (see astrid mcp list)");
    const tools = (await daemonRequest(home, "McpTools", { server }, { topicSuffix: "mcp" })).data as McpTool[];
    return print(argv.json, tools, tools.length === 0 ? `${server} offers no tools.` : tools.map((t) => `${t.name}${t.description ? ` — ${t.description.split("\n")[0]}` : ""}`).join("\n"));
  }
  const server = need(argv.server, "a server and a tool: astrid mcp call <server> <tool> --args JSON");
  const tool = need(argv.tool, "a tool: astrid mcp call <server> <tool> --args JSON");
  const args = parseToolArgs(argv.args);
  const result = (await daemonRequest(home, "McpCall", { server, tool, arguments: args }, { topicSuffix: "mcp", timeoutMs: CALL_TIMEOUT_MS }))
    .data as { content?: Array<{ type: string; text?: string }>; isError?: boolean };
  if (result.isError) {
    // The tool ran and reported a failure of its own: its text is the message.
    if (argv.json) print(true, result, "");
    else process.stderr.write(`astrid: tool ${tool} on ${server} reported an error: ${resultText(result)}\n`);
    process.exitCode = 1;
    return;
  }
  print(argv.json, result, resultText(result));
}

/** `astrid mcp …`, registered in bin/astrid.ts. */
export const mcpCommand: CommandModule<{ json: unknown }, McpArgs> = {
  command: "mcp <action> [server] [tool]",
  describe: "The daemon's MCP servers: list them, show a server's tools, call a tool as the operator",
  builder: (y: Argv<{ json: unknown }>) =>
    y
      .positional("action", { choices: ["list", "tools", "call"] as const, demandOption: true, describe: "list | tools <server> | call <server> <tool> --args JSON" })
      .positional("server", { type: "string", describe: "the server's name (astrid mcp list)" })
      .positional("tool", { type: "string", describe: "call: the tool's name (astrid mcp tools <server>)" })
      .option("args", { type: "string", describe: "call: the tool's arguments, a JSON object" })
      .example("$0 mcp list", "each server's state, pid, tool count and restarts")
      .example("$0 mcp call everything echo --args '{\"message\":\"hi\"}'", "run a tool (audited)") as unknown as Argv<McpArgs>,
  handler: (argv) => run({ ...argv, json: argv.json === true }),
};
