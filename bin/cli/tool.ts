/**
 * `astrid tool list|call`: the tools ready capsules offer, and an operator's call of one — request `CallTool`
 * (capability `system:tool:call`), run in that capsule's worker for principal `default` and audited.
 */
import type { Argv, CommandModule } from "yargs";
import { isAstridError } from "../../protocol/errors";
import { resolveHome } from "../../kernel/home";
import { daemonRequest } from "./daemon-request";
import { parseToolArgs } from "./mcp";
import { UsageError } from "./usage";

/** How long `tool call` waits: the capsule's handler deadline (30 s by default) and some. */
const CALL_TIMEOUT_MS = 60_000;

/** A tool as `tool list` shows it. */
export interface ListedTool {
  capsule: string;
  name: string;
  description?: string;
  input_schema?: unknown;
}

interface ToolArgs {
  json: boolean;
  action: "list" | "call";
  target?: string;
  args?: string;
}

/** Every ready capsule's tools, from GetCapsuleMetadata. */
export async function listTools(): Promise<ListedTool[]> {
  const capsules = (await daemonRequest(resolveHome(), "GetCapsuleMetadata", undefined, { topicSuffix: "capsules" })).data as Array<{
    name: string; state: string; tools?: Array<{ name: string; description?: string; input_schema?: unknown }>;
  }>;
  return capsules.filter((c) => c.state === "ready").flatMap((c) => (c.tools ?? []).map((t) => ({ capsule: c.name, ...t })));
}

/** `<capsule>.<tool>` → its parts (capsule names hold no dot; the tool's name is the rest). */
export function splitTarget(target: string | undefined): { capsule: string; tool: string } {
  const dot = target?.indexOf(".") ?? -1;
  if (target === undefined || dot <= 0 || dot === target.length - 1) {
    throw new UsageError(`tool call needs <capsule>.<tool>, e.g. astrid tool call my-capsule.my_capsule_greet (see astrid tool list)${target !== undefined ? `; got ${JSON.stringify(target)}` : ""}`);
  }
  return { capsule: target.slice(0, dot), tool: target.slice(dot + 1) };
}

/** A tool result's content for people: text as is, anything else as JSON. */
function contentText(content: unknown): string {
  return typeof content === "string" ? content : JSON.stringify(content);
}

async function run(argv: ToolArgs): Promise<void> {
  const print = (value: unknown, human: string): void => {
    process.stdout.write(argv.json ? `${JSON.stringify(value)}\n` : `${human}\n`);
  };
  if (argv.action === "list") {
    const tools = await listTools();
    const width = Math.max(4, ...tools.map((t) => t.capsule.length + t.name.length + 1));
    return print(tools, tools.length === 0 ? "No capsule offers a tool." : [
      `${"TOOL".padEnd(width)}  DESCRIPTION`,
      ...tools.map((t) => `${`${t.capsule}.${t.name}`.padEnd(width)}  ${(t.description ?? "").split("\n")[0]}`),
    ].join("\n"));
  }
  const { capsule, tool } = splitTarget(argv.target);
  let args: Record<string, unknown>;
  try {
    args = parseToolArgs(argv.args);
  } catch (err) {
    throw isAstridError(err) ? new UsageError(err.message) : err;
  }
  const result = (await daemonRequest(resolveHome(), "CallTool", { capsule, tool, arguments: args }, { topicSuffix: "tool", timeoutMs: CALL_TIMEOUT_MS }))
    .data as { content: unknown; is_error: boolean };
  if (result.is_error) {
    // The tool ran and failed (it threw, or its capsule stopped or hung): its message is the error.
    if (argv.json) print(result, "");
    else process.stderr.write(`astrid: tool ${tool} of ${capsule} reported an error: ${contentText(result.content)}\n`);
    process.exitCode = 1;
    return;
  }
  print(result, contentText(result.content));
}

/** `astrid tool …`, registered in bin/astrid.ts. */
export const toolCommand: CommandModule<{ json: unknown }, ToolArgs> = {
  command: "tool <action> [target]",
  describe: "The tools capsules offer: list them, or call one as the operator (audited)",
  builder: (y: Argv<{ json: unknown }>) =>
    y
      .positional("action", { choices: ["list", "call"] as const, demandOption: true, describe: "list | call <capsule>.<tool> --args JSON" })
      .positional("target", { type: "string", describe: "call: <capsule>.<tool> (astrid tool list)" })
      .option("args", { type: "string", describe: "call: the tool's arguments, a JSON object" })
      .example("$0 tool list", "every ready capsule's tools")
      .example("$0 tool call my-capsule.my_capsule_greet --args '{\"name\":\"Ada\"}'", "run a tool (audited)") as unknown as Argv<ToolArgs>,
  handler: (argv) => run({ ...argv, json: argv.json === true }),
};
