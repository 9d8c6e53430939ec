/**
 * The capsule authoring SDK (`astrid-daemon/capsule`). A capsule module exports (default or `module.exports`) the
 * object `defineCapsule` returns. Plain JavaScript works; TypeScript gets the types. A capsule never imports
 * kernel internals: everything it can do goes through the `CapsuleApi` it is handed.
 */

/** A message delivered to a capsule: the guest view of the payload (raw_json/custom untagged). */
export interface CapsuleEvent {
  topic: string;
  payload: unknown;
  source_id: string;
  principal?: string;
  /** For a client's message: `verified` (the connection's own credential) or `claimed` (a user a frontend speaks for). */
  attribution?: "verified" | "claimed";
  seq: number;
}

/** What a capsule can do; every call is checked by the kernel against the capsule's manifest. */
export interface CapsuleApi {
  /** The capsule's package name. */
  readonly name: string;
  ipc: {
    /** Publishes on `topic` (must match `ipc_publish`). `payload` is any JSON; objects become raw_json. */
    publish(topic: string, payload: unknown): Promise<void>;
    /** Receives messages matching `pattern` (the pattern must be allowed by `ipc_subscribe`). */
    subscribe(pattern: string, handler: (event: CapsuleEvent) => void | Promise<void>): Promise<void>;
  };
  /** The capsule's own KV scope (`default:capsule:<name>`); values are strings here, bytes in storage. */
  kv: {
    get(key: string): Promise<string | null>;
    set(key: string, value: string): Promise<void>;
    delete(key: string): Promise<boolean>;
    list(prefix?: string): Promise<string[]>;
  };
  /**
   * Files, through the kernel's VFS. Paths: `cwd://x` (the workspace), `home://x` (the home of the principal the
   * capsule acts for), `/tmp/x` (that principal's temporary directory), anything else relative to the workspace.
   * Reads need an `fs_read` entry, writes an `fs_write` entry, and the principal `self:fs:read` / `self:fs:write`.
   * Writes under the workspace are staged in the principal's overlay (reads see them) until `commit()`.
   */
  fs: {
    /** The file's text (UTF-8), or its bytes as base64 with `"base64"`; at most 10 MB. */
    read(path: string, encoding?: "utf8" | "base64"): Promise<string>;
    /** Writes the whole file (`data` is UTF-8 text, or base64 with `"base64"`). */
    write(path: string, data: string, encoding?: "utf8" | "base64"): Promise<void>;
    exists(path: string): Promise<boolean>;
    stat(path: string): Promise<FileStat>;
    /** Names in a directory, sorted. */
    readdir(path: string): Promise<string[]>;
    /** Creates a directory and its parents. */
    mkdir(path: string): Promise<void>;
    /** Removes a file. */
    unlink(path: string): Promise<void>;
    /** Removes a directory and everything in it (links inside removed, never followed); returns the entries removed. */
    removeDirAll(path: string): Promise<number>;
    /** The path with every symlink resolved, as a VFS path of the same root (`cwd://…`); for display and equality. */
    canonicalize(path: string): Promise<string>;
    /** Where a symlink points, as a VFS path of the link's root; a target outside it is refused. */
    readLink(path: string): Promise<string>;
    /** Makes `linkPath` another name of the file `src` (same root; in the workspace, staged as a copy). */
    hardLink(src: string, linkPath: string): Promise<void>;
    /** Applies the staged workspace writes of the principal the capsule acts for; returns the paths written. */
    commit(): Promise<{ committed: string[] }>;
    /** Drops the staged workspace writes of that principal. */
    discard(): Promise<{ discarded: string[] }>;
  };
  /** Outbound HTTP: the host must be in the manifest's `net`; private, loopback and metadata addresses are refused. */
  http: {
    request(request: HttpRequest): Promise<HttpResponse>;
  };
  /** Host processes: `argv[0]` must match a `host_process` entry; arguments are an array, never a shell line. */
  process: {
    /** Runs to completion (or its timeout) and returns its output. */
    run(argv: string[], options?: ProcessOptions): Promise<ProcessResult>;
    /**
     * Starts a background process; read its output with `logs`, stop it with `kill`. With `keep_stdin_open` its
     * stdin stays a pipe (after `stdin`) for `writeStdin` until `closeStdin`.
     */
    spawn(argv: string[], options?: Omit<ProcessOptions, "timeout_ms"> & { keep_stdin_open?: boolean }): Promise<{ id: string; pid: number }>;
    logs(id: string): Promise<ProcessLogs>;
    kill(id: string): Promise<boolean>;
    /** Running or not, how far each stream got (bytes), whether stdin is open: what a wait looks at. */
    state(id: string): Promise<ProcessState>;
    /** Writes to a background (or persistent) process's stdin; answers the bytes taken. `data` is UTF-8 text, or base64. */
    writeStdin(id: string, data: string, encoding?: "utf8" | "base64"): Promise<number>;
    /** Closes its stdin (it reads EOF); true when it was open. */
    closeStdin(id: string): Promise<boolean>;
    /** Sends `term`, `hup`, `usr1`, `usr2`, `int`, `stop` or `cont` to its process group; false once it exited. */
    signal(id: string, signal: ProcessSignal): Promise<boolean>;
    /** Starts a persistent process (it outlives this run of the capsule, never the daemon); `id` finds it again. */
    spawnPersistent(argv: string[], options?: PersistentOptions): Promise<{ id: string; pid: number }>;
    /** The persistent processes of this capsule for the acting principal (`label` containing `filter`). */
    list(filter?: string | null): Promise<PersistentInfo[]>;
    /** Those of `ids` this capsule and principal own (unknown ids are left out). */
    status(ids: string[]): Promise<PersistentInfo[]>;
    /** A persistent process's output since the previous `drain` (UTF-8). */
    drain(id: string): Promise<ProcessLogs>;
    /** Non-draining, byte-exact (base64) read of a stream from `cursor` (null: the oldest byte kept). */
    readSince(id: string, stream: "stdout" | "stderr", cursor: string | null, maxBytes: number): Promise<{ data: string; next: string; bytes_dropped: number; drained_eof: boolean }>;
    /** SIGTERM, SIGKILL after `grace_ms` (default 2 s, at most 20 s); the id is forgotten. */
    stop(id: string, graceMs?: number | null): Promise<{ exit_code: number | null; signal: string | null }>;
    /** Forgets an exited persistent process (refused while it runs). */
    release(id: string): Promise<boolean>;
  };
  /** Asks the people behind the current session to approve an action; no answer in 60 s is a denial. */
  approval: {
    request(request: { action: string; resource: string; reason?: string }): Promise<ApprovalOutcome>;
  };
  /** Asks the operator for a value — only during the `install` and `upgrade` hooks. */
  elicit: {
    ask(field: ElicitField): Promise<ElicitAnswer>;
    /** True when a secret with this key was stored by an earlier `ask({type: "secret"})`. */
    hasSecret(key: string): Promise<boolean>;
    /** The stored secret (decrypted by the kernel), or null. */
    secret(key: string): Promise<string | null>;
  };
  /**
   * MCP servers: the capsule's own (`[[mcp_server]]`, by `id`) and the operator's that `[capabilities] mcp` names
   * (by their `etc/servers.toml` name). Each call needs the acting principal's `self:mcp:use`; tool calls, reads
   * and prompts are audited. Results over 8 MiB are refused (`ASTRID_ERR_MCP_RESULT_TOO_LARGE`), arguments over
   * 1 MiB too; a server that does not answer in time is `ASTRID_ERR_TIMEOUT` (`ASTRID_MCP_REQUEST_TIMEOUT_MS`).
   */
  mcp: {
    /** The servers this capsule may use, with their state and tool count. */
    servers(): Promise<McpServerEntry[]>;
    /** A server's tools (name, description, JSON Schema of the arguments). */
    tools(server: string): Promise<McpToolInfo[]>;
    /** Calls a tool; resolves with the MCP `CallToolResult` (`content`, `isError`, maybe `structuredContent`). */
    call(server: string, tool: string, args?: Record<string, unknown>): Promise<McpCallResult>;
    /** The server's resources (MCP `resources/list`). */
    resources(server: string): Promise<unknown[]>;
    /** Reads a resource (MCP `resources/read`): `{ contents: [...] }`. */
    readResource(server: string, uri: string): Promise<{ contents: unknown[] }>;
    /** The server's prompts (MCP `prompts/list`). */
    prompts(server: string): Promise<unknown[]>;
    /** Gets a prompt with its arguments (MCP `prompts/get`): `{ messages: [...] }`. */
    getPrompt(server: string, prompt: string, args?: Record<string, string>): Promise<{ messages: unknown[]; description?: string }>;
  };
  /**
   * The operator's language-model endpoint (OPENAI_BASE_URL): needs `[capabilities] model = true`, and the acting
   * principal's `self:net:http` to open a stream. The kernel makes the call with the operator's key (the capsule
   * never sees it). At most 4 streams open per capsule; a stream nobody reads for 60 s is dropped.
   */
  model: {
    /** Whether an endpoint is configured, and the model asked for by default. */
    info(): Promise<ModelInfo>;
    /** The tools ready capsules offer (run one by publishing `tool.v1.execute.<name>`). */
    tools(): Promise<ModelToolInfo[]>;
    /**
     * Starts a streamed chat completion; the endpoint's answer (or refusal) comes with `read`. With
     * `tools: "offered"` the result names the tools offered and where each runs.
     */
    open(request: ModelChatRequest): Promise<{ id: string; model: string; tools?: Array<Pick<ModelToolInfo, "capsule" | "name" | "mcp">> }>;
    /** What arrived since the last read (waits up to 20 s when nothing did); throws the endpoint's coded error. */
    read(id: string): Promise<ModelStreamRead>;
    /** Aborts the stream (a cancel); false when it had already ended. */
    close(id: string): Promise<boolean>;
  };
  /** Lines in the daemon's log, tagged with the capsule's name. */
  log: Record<"debug" | "info" | "warn" | "error", (message: string) => void>;
  /** Resolved `[env]` values; a missing key reads as "". */
  env: { get(key: string): string };
}

/** `model.info()`. */
export interface ModelInfo {
  configured: boolean;
  model: string | null;
  endpoint: string | null;
  /** Set when not configured and the operator was asked for the capsule's endpoint `[env]` (onboarding). */
  onboarding?: true;
}

/** A tool a capsule offers, as `model.tools()` lists it. */
export interface ModelToolInfo {
  capsule: string;
  name: string;
  description: string;
  input_schema?: unknown;
  /** An MCP server's tool (`name` is `mcp__<server>__<tool>`): run it with `mcp.call(server, tool, args)`. */
  mcp?: { server: string; tool: string };
}

/** A chat-completions request (OpenAI wire shape); `model` defaults to ASTRID_AGENT_MODEL. At most 4 MiB. */
export interface ModelChatRequest {
  messages: Array<{ role: "system" | "user" | "assistant" | "tool"; content?: string | null | unknown[]; tool_calls?: unknown[]; tool_call_id?: string; name?: string }>;
  /** Function tools, or "offered": the kernel offers the tools `tools()` lists (saves a call before the request). */
  tools?: Array<{ type: "function"; function: { name: string; description?: string; parameters?: unknown } }> | "offered";
  /**
   * The kernel publishes each piece of text as it arrives, `{...payload, text}` on `topic` (one the capsule's
   * `ipc_publish` allows), as the capsule: deltas reach clients without a trip through the capsule. `read` still
   * returns the text.
   */
  deltas?: { topic: string; payload: Record<string, unknown> };
  model?: string;
  temperature?: number;
  max_tokens?: number;
}

/** One read of a model stream: new text; once `done`, why it finished and the tool calls asked for. */
export interface ModelStreamRead {
  text: string;
  done: boolean;
  finish_reason?: string | null;
  tool_calls?: Array<{ id: string; name: string; arguments: string }>;
}

/** A server a capsule may use, as `mcp.servers()` lists it. */
export interface McpServerEntry {
  /** What the capsule calls it: its `[[mcp_server]]` id, or the operator's server name. */
  id: string;
  /** The daemon's name for it (`capsule:<capsule>:<id>` for the capsule's own). */
  name: string;
  owned: boolean;
  state: "starting" | "running" | "backoff" | "failed" | "stopped" | "unknown";
  tools: number;
  description?: string;
  last_error?: string;
}

/** A tool of an MCP server. */
export interface McpToolInfo {
  name: string;
  description?: string;
  input_schema?: unknown;
}

/** An MCP tool's result: `isError: true` is the tool's own failure (the call itself worked). */
export interface McpCallResult {
  content: Array<{ type: string; text?: string; [field: string]: unknown }>;
  isError?: boolean;
  structuredContent?: unknown;
  [field: string]: unknown;
}

/** What `fs.stat` reports. */
export interface FileStat {
  size: number;
  is_file: boolean;
  is_dir: boolean;
  mtime_ms: number;
}

/** An outbound HTTP request; `timeout_ms` at most 30 000. */
export interface HttpRequest {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  timeout_ms?: number;
}

/** An HTTP response; bodies over 10 MB are refused. */
export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** How a host process runs: `cwd` is a VFS path (default the workspace); `env` adds variables (not PATH, LD_*, …). */
export interface ProcessOptions {
  cwd?: string;
  env?: Record<string, string>;
  stdin?: string;
  timeout_ms?: number;
}

/** A signal `process.signal` sends. */
export type ProcessSignal = "term" | "hup" | "usr1" | "usr2" | "int" | "stop" | "cont";

/** What a wait on a background process looks at. */
export interface ProcessState {
  running: boolean;
  exit_code: number | null;
  signal: string | null;
  pid: number;
  /** Bytes each stream has printed in all. */
  stdout_end: number;
  stderr_end: number;
  stdin_open: boolean;
}

/** A persistent process's start options (docs/processes.md has the bounds). */
export interface PersistentOptions extends Omit<ProcessOptions, "timeout_ms"> {
  keep_stdin_open?: boolean;
  label?: string;
  overflow?: "drop-oldest" | "backpressure";
  log_ring_bytes?: number;
  max_lifetime_ms?: number;
  idle_timeout_ms?: number;
  exit_retention_ms?: number;
}

/** A persistent process, without draining anything. */
export interface PersistentInfo {
  id: string;
  label: string;
  command: string;
  os_pid: number | null;
  phase: "running" | "exited";
  exit: { exit_code: number | null; signal: string | null } | null;
  age_ms: number;
  idle_ms: number;
  buffered_bytes: number;
  bytes_dropped: number;
  stdin_open: boolean;
}

/** A finished process (the last 1 MB of each stream; `*_truncated` when the head was dropped). */
export interface ProcessResult {
  exit_code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
  /** Stopped at its `timeout_ms` (SIGTERM, then SIGKILL 2 s later). */
  timed_out: boolean;
  duration_ms: number;
}

/** The last output of a background process (1 MB ring buffers). */
export interface ProcessLogs {
  stdout: string;
  stderr: string;
  running: boolean;
  exit_code: number | null;
  signal: string | null;
  stdout_truncated: boolean;
  stderr_truncated: boolean;
}

/** The answer to an approval request. */
export interface ApprovalOutcome {
  approved: boolean;
  decision: "approve" | "approve_session" | "approve_always" | "deny" | "timeout";
}

/** A value to ask the operator for. */
export interface ElicitField {
  type: "text" | "secret" | "select" | "array";
  key: string;
  description?: string;
  /** The choices of a `select`. */
  options?: string[];
  default?: string;
}

/** `value` for text and select, `values` for array, `ok` for a secret (stored, never returned here). */
export type ElicitAnswer = { value: string } | { values: string[] } | { ok: true };

/** A tool other capsules can run by publishing `tool.v1.execute.<name>` (a `tool_execute_request`). */
export interface ToolDefinition {
  description?: string;
  /** JSON Schema of `args`, reported to whoever lists the tools. */
  inputSchema?: unknown;
  /** Runs the tool; the return value is the result's `content`, a throw makes `is_error: true`. */
  execute(args: unknown, api: CapsuleApi): unknown;
}

/** A capsule definition. */
export interface CapsuleDefinition {
  /** Tools by name. The result is published on `tool.v1.execute.<name>.result`. */
  tools?: Record<string, ToolDefinition>;
  /**
   * Runs once, before `setup`, the first time the daemon loads this capsule (no version recorded yet). A throw
   * fails the load; nothing is recorded, so the hook runs again on the next attempt.
   */
  install?(api: CapsuleApi): void | Promise<void>;
  /**
   * Runs once, before `setup`, when the manifest's version differs from the one recorded at the last successful
   * install or upgrade; `previousVersion` is that recorded version. A throw fails the load and keeps the old record.
   */
  upgrade?(api: CapsuleApi, previousVersion: string): void | Promise<void>;
  /** Runs once after load; subscribe here. The capsule is ready when it resolves. */
  setup?(api: CapsuleApi): void | Promise<void>;
  /**
   * `[[interceptor]] action` → handler, called for each matching event. In a chain (several capsules intercept
   * the same event, run by ascending priority) returning a value passes it on as the next payload, returning
   * `undefined` passes the payload on unchanged, `final(x)` stops the chain, and throwing denies the event.
   */
  interceptors?: Record<string, (event: CapsuleEvent, api: CapsuleApi) => unknown>;
}

/** What an interceptor returns to stop the chain with a final value (later interceptors do not run). */
export interface FinalResult {
  __astrid: "final";
  data?: unknown;
}

/** Ends the interceptor chain here with `data`. Throwing from an interceptor denies instead. */
export function final(data?: unknown): FinalResult {
  return { __astrid: "final", data };
}

/** Declares a capsule; returns the definition unchanged (it exists for the types). */
export function defineCapsule<T extends CapsuleDefinition>(definition: T): T {
  return definition;
}

/*
 * The decorator style of the reference JS SDK (TC39 standard decorators, TypeScript ≥ 5.2, no
 * `experimentalDecorators`): a `@capsule` class whose decorated methods become the definition above. The module
 * exports the class; the host constructs it once and calls the methods with `this` bound to that instance.
 *
 *   @capsule
 *   export default class Greeter {
 *     greeting = "hello";
 *     @install async firstRun(api: CapsuleApi) { await api.kv.set("since", new Date().toISOString()); }
 *     @tool("greet", { description: "Greets someone" }) greet(args: { name: string }) { return `${this.greeting} ${args.name}`; }
 *     @interceptor("on_prompt") async onPrompt(event: CapsuleEvent, api: CapsuleApi) { ... }
 *   }
 */

const DEFINITION = Symbol.for("astrid-daemon.capsule.definition");
const CAPSULE_CLASS = Symbol.for("astrid-daemon.capsule.class");

type Decorated = { [DEFINITION]?: CapsuleDefinition };
type Method = (...args: never[]) => unknown;

/** Adds what one decorated method contributes to its instance's definition, once the instance exists. */
function contribute(context: ClassMethodDecoratorContext, decorator: string, add: (definition: CapsuleDefinition, method: (...args: unknown[]) => unknown) => void): void {
  if (context.kind !== "method" || context.static || context.private) {
    throw new TypeError(`@${decorator} decorates public instance methods only (not ${String(context.name)})`);
  }
  context.addInitializer(function (this: unknown) {
    const self = this as Decorated & Record<PropertyKey, unknown>;
    const definition = (self[DEFINITION] ??= {});
    const method = self[context.name] as (...args: unknown[]) => unknown;
    add(definition, (...args) => method.apply(self, args));
  });
}

/** Marks a class as the module's capsule; the host constructs it (no arguments) and uses its decorated methods. */
export function capsule<C extends abstract new () => object>(target: C, context: ClassDecoratorContext<C>): void {
  if (context.kind !== "class") throw new TypeError("@capsule decorates a class");
  Object.defineProperty(target, CAPSULE_CLASS, { value: true });
}

/** Offers the method as tool `name` (see `ToolDefinition`); it is called as `(args, api)`. */
export function tool(name: string, options: Omit<ToolDefinition, "execute"> = {}) {
  return (_method: Method, context: ClassMethodDecoratorContext): void =>
    contribute(context, "tool", (definition, call) => {
      definition.tools ??= {};
      if (definition.tools[name]) throw new Error(`@tool("${name}") is declared twice`);
      definition.tools[name] = { ...options, execute: (args, api) => call(args, api) };
    });
}

/** Handles `[[interceptor]] action = "<action>"`; the method is called as `(event, api)` (see `CapsuleDefinition`). */
export function interceptor(action: string) {
  return (_method: Method, context: ClassMethodDecoratorContext): void =>
    contribute(context, "interceptor", (definition, call) => {
      definition.interceptors ??= {};
      if (definition.interceptors[action]) throw new Error(`@interceptor("${action}") is declared twice`);
      definition.interceptors[action] = (event, api) => call(event, api);
    });
}

function hook(name: "install" | "upgrade" | "setup") {
  return (_method: Method, context: ClassMethodDecoratorContext): void =>
    contribute(context, name, (definition, call) => {
      if (definition[name]) throw new Error(`@${name} is declared twice`);
      definition[name] = ((...args: unknown[]) => call(...args)) as never;
    });
}

/** The method is the capsule's `install(api)` hook. */
export const install = hook("install");
/** The method is the capsule's `upgrade(api, previousVersion)` hook. */
export const upgrade = hook("upgrade");
/** The method is the capsule's `setup(api)`. */
export const setup = hook("setup");

/**
 * The definition a capsule module exported: a definition object as is, or a `@capsule` class constructed once.
 * Used by the host; throws a message an author can act on for anything else.
 */
export function resolveDefinition(exported: unknown, file: string): CapsuleDefinition {
  if (typeof exported === "function") {
    if (!(exported as unknown as Record<symbol, unknown>)[CAPSULE_CLASS]) {
      throw new Error(`${file} exports a function or class without @capsule; export defineCapsule({...}) or a @capsule class`);
    }
    const instance = new (exported as new () => Decorated)();
    return instance[DEFINITION] ?? {};
  }
  if (typeof exported !== "object" || exported === null) {
    throw new Error(`${file} must export a capsule definition object (use defineCapsule({...})) or a @capsule class`);
  }
  return exported as CapsuleDefinition;
}
