/**
 * One MCP server as the worker holds it: the SDK client over its transport (a child process for stdio, a URL for
 * sse/http), the check of its executable's hash before it starts, its stderr turned into rate-limited batches of
 * lines, and each request run with its deadline and its answer's size checked before it crosses to the kernel.
 */
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import fs from "node:fs/promises";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { getDefaultEnvironment } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { ErrorCode as RpcCode, McpError, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { AstridError } from "../../protocol/errors";
import {
  MAX_MCP_RESULT_BYTES,
  MCP_STDERR_LINES_PER_SEC,
  type McpExit,
  type McpOperation,
  type McpServerInfo,
  type McpServerSpec,
  type McpTool,
} from "../../protocol/mcp-host";
import { DAEMON_VERSION } from "../../protocol/version";
import { ChildStdioTransport, RESULT_TOO_LARGE_CODE } from "./stdio-transport";

/** What a connection tells the worker. */
export interface ConnectionEvents {
  exited(exit: McpExit): void;
  stderr(lines: string[], dropped: number): void;
  toolsChanged(tools: McpTool[]): void;
}

/** How often batched stderr lines go to the kernel. */
const STDERR_FLUSH_MS = 200;

/** A started server. */
export class ServerConnection {
  private stopping = false;
  private closedReported = false;
  private readonly stderrBatch: string[] = [];
  private stderrDropped = 0;
  private stderrWindow = 0;
  private stderrInWindow = 0;
  private flushTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly spec: McpServerSpec,
    private readonly client: Client,
    private readonly transport: Transport,
    private readonly events: ConnectionEvents,
  ) {}

  /** Starts `spec`'s server and waits for `initialize` and its tool list, within `spec.startTimeoutMs`. */
  static async start(spec: McpServerSpec, events: ConnectionEvents): Promise<{ connection: ServerConnection; info: McpServerInfo }> {
    const deadline = Date.now() + spec.startTimeoutMs;
    let connection: ServerConnection | undefined;
    // Lines written before the connection object exists (a server that fails at once says why on stderr).
    const earlyStderr: string[] = [];
    const transport = await makeTransport(spec, {
      stderrLine: (line) => connection?.stderrLine(line) ?? earlyStderr.push(line),
      exited: (exit) => connection?.closed(exit),
    });
    const client = new Client({ name: "astrid-daemon", version: DAEMON_VERSION }, {
      capabilities: {},
      listChanged: {
        tools: {
          onChanged: (error, tools) => {
            if (!error && tools && connection) events.toolsChanged(tools.map(toolInfo));
          },
        },
      },
    });
    connection = new ServerConnection(spec, client, transport, events);
    for (const line of earlyStderr.splice(0)) connection.stderrLine(line);
    try {
      await client.connect(transport, { timeout: Math.max(1, deadline - Date.now()) });
      const offers = client.getServerCapabilities() ?? {};
      const tools = offers.tools ? (await client.listTools(undefined, { timeout: Math.max(1, deadline - Date.now()) })).tools.map(toolInfo) : [];
      const version = client.getServerVersion();
      return {
        connection,
        info: {
          pid: transport instanceof ChildStdioTransport ? transport.pid : null,
          tools,
          server: version ? { name: String(version.name), version: String(version.version) } : null,
          offers: { tools: Boolean(offers.tools), resources: Boolean(offers.resources), prompts: Boolean(offers.prompts) },
        },
      };
    } catch (err) {
      // How it ended on its own, if it did, before it is stopped here.
      const exit = transport instanceof ChildStdioTransport ? transport.exited : undefined;
      await connection.stop(500);
      if (err instanceof McpError && err.code === RpcCode.RequestTimeout) {
        throw new AstridError("ASTRID_ERR_TIMEOUT", `MCP server ${spec.name} did not answer initialize within ${spec.startTimeoutMs} ms`);
      }
      const why = exit && !(err instanceof Error && err.message.startsWith("cannot start")) ? `${exit.reason} during start` : (err as Error).message;
      throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `MCP server ${spec.name}: ${why}`);
    }
  }

  /** Runs one request with its deadline; the answer, if not too large for the kernel. */
  async request(operation: McpOperation, timeoutMs: number): Promise<unknown> {
    const options = { timeout: timeoutMs };
    let value: unknown;
    try {
      switch (operation.op) {
        case "list_tools":
          value = (await this.client.listTools(undefined, options)).tools.map(toolInfo);
          break;
        case "call_tool":
          value = await this.client.callTool({ name: operation.tool, arguments: operation.args }, undefined, options);
          break;
        case "list_resources":
          value = (await this.client.listResources(undefined, options)).resources;
          break;
        case "read_resource":
          value = await this.client.readResource({ uri: operation.uri }, options);
          break;
        case "list_prompts":
          value = (await this.client.listPrompts(undefined, options)).prompts;
          break;
        case "get_prompt":
          value = await this.client.getPrompt({ name: operation.prompt, arguments: operation.args }, options);
          break;
      }
    } catch (err) {
      throw this.requestError(operation, timeoutMs, err);
    }
    // Checked here, in the worker: an answer too large for the kernel never crosses to it.
    const size = Buffer.byteLength(JSON.stringify(value ?? null));
    if (size > MAX_MCP_RESULT_BYTES) {
      throw new AstridError("ASTRID_ERR_MCP_RESULT_TOO_LARGE", `${what(operation)} on MCP server ${this.spec.name}: the answer is ${size} bytes, more than the ${MAX_MCP_RESULT_BYTES} allowed`);
    }
    return value;
  }

  /** Stops the server (asked: no `exited` event follows). */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.flushStderr();
    if (this.transport instanceof ChildStdioTransport) await this.transport.stop(graceMs);
    else await this.client.close().catch(() => undefined);
  }

  private requestError(operation: McpOperation, timeoutMs: number, err: unknown): AstridError {
    const label = `${what(operation)} on MCP server ${this.spec.name}`;
    if (err instanceof McpError) {
      if (err.code === RpcCode.RequestTimeout) return new AstridError("ASTRID_ERR_TIMEOUT", `${label}: no answer within ${timeoutMs} ms`);
      if (err.code === RpcCode.ConnectionClosed) return new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `${label}: the server stopped before answering`);
      if (err.code === RESULT_TOO_LARGE_CODE) return new AstridError("ASTRID_ERR_MCP_RESULT_TOO_LARGE", `${label}: ${err.message.replace(/^MCP error -?\d+: /, "")}`);
      return new AstridError("ASTRID_ERR_MCP_CALL_FAILED", `${label}: ${err.message}`);
    }
    if (this.stopping || (this.transport instanceof ChildStdioTransport && this.transport.exited)) {
      return new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `${label}: the server is not running`);
    }
    return new AstridError("ASTRID_ERR_MCP_CALL_FAILED", `${label}: ${(err as Error)?.message ?? String(err)}`);
  }

  /** The process ended or the connection closed; reported once, unless we asked for it. */
  private closed(exit: McpExit): void {
    this.flushStderr();
    if (this.stopping || this.closedReported) return;
    this.closedReported = true;
    this.events.exited(exit);
  }

  /** One stderr line: batched, at most MCP_STDERR_LINES_PER_SEC a second, the rest counted. */
  private stderrLine(line: string): void {
    const now = performance.now();
    if (now - this.stderrWindow >= 1000) {
      this.stderrWindow = now;
      this.stderrInWindow = 0;
    }
    if (++this.stderrInWindow > MCP_STDERR_LINES_PER_SEC) {
      this.stderrDropped++;
    } else {
      this.stderrBatch.push(line);
    }
    this.flushTimer ??= setTimeout(() => this.flushStderr(), STDERR_FLUSH_MS);
  }

  private flushStderr(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.stderrBatch.length === 0 && this.stderrDropped === 0) return;
    this.events.stderr(this.stderrBatch.splice(0), this.stderrDropped);
    this.stderrDropped = 0;
  }
}

/** A request's name for messages: "tool echo", "resource demo://x", "prompt p", "list_tools". */
function what(operation: McpOperation): string {
  switch (operation.op) {
    case "call_tool":
      return `tool ${operation.tool}`;
    case "read_resource":
      return `resource ${operation.uri}`;
    case "get_prompt":
      return `prompt ${operation.prompt}`;
    default:
      return operation.op;
  }
}

function toolInfo(tool: Tool): McpTool {
  return {
    name: tool.name,
    ...(tool.description !== undefined ? { description: tool.description } : {}),
    ...(tool.inputSchema !== undefined ? { input_schema: tool.inputSchema } : {}),
  };
}

/** The transport for `spec`: a child process (after the binary_hash check), or an SSE / streamable HTTP URL. */
async function makeTransport(spec: McpServerSpec, hooks: { stderrLine(line: string): void; exited(exit: McpExit): void }): Promise<Transport> {
  if (spec.transport !== "stdio") {
    const url = new URL(spec.url ?? "");
    return spec.transport === "sse" ? new SSEClientTransport(url) : new StreamableHTTPClientTransport(url);
  }
  // The child gets the SDK's small default environment (HOME, PATH, USER, …) plus what the config adds.
  const env = { ...getDefaultEnvironment(), ...spec.env };
  let executable: string;
  try {
    executable = await resolveExecutable(spec.command ?? "", env.PATH ?? "", spec.cwd);
  } catch (err) {
    throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE", `MCP server ${spec.name}: ${(err as Error).message}; not started`);
  }
  if (spec.binaryHash !== undefined) {
    const actual = await sha256File(executable);
    if (actual !== spec.binaryHash.toLowerCase()) {
      throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE",
        `MCP server ${spec.name}: binary_hash mismatch for ${executable}: expected ${spec.binaryHash.toLowerCase()}, found ${actual}; not started`);
    }
  }
  // The client's connect() starts it.
  return new ChildStdioTransport({ command: executable, args: spec.args, env, ...(spec.cwd !== undefined ? { cwd: spec.cwd } : {}) },
    hooks, MAX_MCP_RESULT_BYTES + 64 * 1024);
}

/** The executable `command` names: a path (relative to `cwd`), or a bare name looked up on `searchPath`. */
export async function resolveExecutable(command: string, searchPath: string, cwd?: string): Promise<string> {
  const candidates = command.includes("/")
    ? [path.resolve(cwd ?? process.cwd(), command)]
    : searchPath.split(path.delimiter).filter((dir) => dir !== "").map((dir) => path.resolve(dir, command));
  for (const candidate of candidates) {
    try {
      await fs.access(candidate, fs.constants.X_OK);
      if ((await fs.stat(candidate)).isFile()) return candidate;
    } catch {
      // not here; try the next
    }
  }
  throw new AstridError("ASTRID_ERR_MCP_SERVER_UNAVAILABLE",
    command.includes("/") ? `command ${JSON.stringify(command)} does not exist or is not executable` : `command ${JSON.stringify(command)} was not found on PATH`);
}

/** Hex SHA-256 of a file's bytes, streamed. */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}
