/**
 * The MCP host worker's API: the kernel asks it (comlink over the worker's parentPort) to start, stop and query
 * Model Context Protocol servers; the worker runs the SDK clients and the server processes, so a server that floods
 * stderr, answers with a huge result or never answers costs that worker, never the thread that owns the socket.
 * The worker is the daemon's own code: its answers are typed (not parsed), its errors carry registry codes.
 */
import type { ErrorCode } from "./errors";

/** Largest result (its JSON text) that crosses back from the worker; a larger one is ASTRID_ERR_MCP_RESULT_TOO_LARGE. */
export const MAX_MCP_RESULT_BYTES = 8 * 1024 * 1024;
/** Largest tool arguments (their JSON text) a caller may send; more is ASTRID_ERR_REQUEST_INVALID. */
export const MAX_MCP_ARGUMENT_BYTES = 1024 * 1024;
/** stderr lines of one server written to the daemon log per second; the rest are counted and reported. */
export const MCP_STDERR_LINES_PER_SEC = 50;
/** Longest stderr line kept (the rest of the line is cut). */
export const MCP_STDERR_LINE_CHARS = 2048;

/** Server names in `etc/servers.toml`; a capsule's servers are named `capsule:<capsule>:<id>`. */
export const MCP_SERVER_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** How the worker reaches a server. */
export type McpTransportKind = "stdio" | "sse" | "http";

/** Everything the worker needs to start one server (already validated by the kernel). */
export interface McpServerSpec {
  name: string;
  transport: McpTransportKind;
  /** stdio: the executable (a bare name is looked up on PATH) and its argument array (never a shell line). */
  command?: string;
  args: string[];
  /** Added to the small inherited environment (HOME, PATH, USER, …). */
  env: Record<string, string>;
  cwd?: string;
  /** sse / http: the server's URL. */
  url?: string;
  /** Hex SHA-256 the executable file must have; checked before every start. */
  binaryHash?: string;
  /** Deadline of spawn + `initialize` + the first tool list. */
  startTimeoutMs: number;
}

/** A tool a server offers, as the kernel passes it on. */
export interface McpTool {
  name: string;
  description?: string;
  input_schema?: unknown;
}

/** What a started server reports. */
export interface McpServerInfo {
  pid: number | null;
  tools: McpTool[];
  /** The server's own name and version from `initialize`. */
  server: { name: string; version: string } | null;
  /** Which optional features it offers. */
  offers: { tools: boolean; resources: boolean; prompts: boolean };
}

/** One request to a running server. */
export type McpOperation =
  | { op: "list_tools" }
  | { op: "call_tool"; tool: string; args: Record<string, unknown> }
  | { op: "list_resources" }
  | { op: "read_resource"; uri: string }
  | { op: "list_prompts" }
  | { op: "get_prompt"; prompt: string; args: Record<string, string> };

/** An answer of the worker: its value, or a coded error. */
export type McpResult<T> = { ok: true; value: T } | { ok: false; code: ErrorCode; message: string };

/** How a server process ended (or why the connection to it closed). */
export interface McpExit {
  code: number | null;
  signal: string | null;
  /** A readable account: "exited with code 1", "killed by SIGKILL", "connection closed". */
  reason: string;
}

/** What the worker tells the kernel without being asked (a comlink proxy). */
export interface McpHostEvents {
  /** A started server stopped without being asked to. */
  exited(name: string, exit: McpExit): void;
  /** stderr lines of a server (rate-limited in the worker; `dropped` lines were not sent). */
  stderr(name: string, lines: string[], dropped: number): void;
  /** A server said its tool list changed; this is the new list. */
  toolsChanged(name: string, tools: McpTool[]): void;
}

/** The worker's methods. */
export interface McpHostApi {
  /** Where unasked-for news goes; call once, first. */
  listen(events: McpHostEvents): Promise<McpResult<null>>;
  /** Starts a server (checking binary_hash first) and waits for `initialize` and its tools. */
  start(spec: McpServerSpec): Promise<McpResult<McpServerInfo>>;
  /** Stops a server: stdin closed and SIGTERM, then SIGKILL after `graceMs`. Resolves once it is gone. */
  stop(name: string, graceMs: number): Promise<McpResult<null>>;
  /** One request to a running server, with its deadline. */
  request(name: string, operation: McpOperation, timeoutMs: number): Promise<McpResult<unknown>>;
}
