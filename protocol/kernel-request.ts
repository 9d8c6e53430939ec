/**
 * `KernelRequest` / `KernelResponse` of the management API (reference §5.2–5.3): adjacently tagged by
 * `method`/`params` and `status`/`data`, carried inside a `raw_json` payload. Beside `method` a request may carry
 * a `request_id` string, echoed beside `status` in its response (as the reference's admin API does, §5.4).
 */
import { z } from "zod";
import { AstridError, type ErrorCode } from "./errors";
import { PrincipalIdSchema } from "./identity-names";
import { isJsonObject, rawJson, type IpcPayload } from "./ipc-message";

/** Methods that take no params: `params` may be absent or null, but not `{}` (serde's unit-variant rule). */
export const UNIT_METHODS = ["GetStatus", "ListCapsules", "GetCommands", "GetCapsuleMetadata", "ReloadCapsules", "McpList", "ListClients"] as const;

const shutdownParams = z.strictObject({ reason: z.string().nullable().optional() });
const installParams = z.strictObject({ source: z.string(), workspace: z.boolean() });
const approveParams = z.strictObject({ request_id: z.string(), signature: z.string() });
const kvGetParams = z.strictObject({ scope: z.string().optional(), key: z.string() });
const kvDeleteParams = z.strictObject({ scope: z.string().optional(), key: z.string() });
/** SetMode (our addition): `persistent` stops an ephemeral daemon from idling out (what `astrid start` asks). */
const setModeParams = z.strictObject({ mode: z.enum(["persistent", "ephemeral"]) });
const kvSetParams = z
  .strictObject({ scope: z.string().optional(), key: z.string(), value: z.string(), encoding: z.enum(["utf8", "base64"]).optional() })
  .refine((p) => p.encoding !== "base64" || Buffer.from(p.value, "base64").toString("base64") === p.value, {
    message: "value is not canonical base64 (encoding: base64)",
    path: ["value"],
  })
  // Text with a lone surrogate has no UTF-8 form: it would be stored changed (U+FFFD), so it is refused.
  .refine((p) => p.encoding === "base64" || !/\p{Cs}/u.test(p.value), {
    message: "value holds a lone UTF-16 surrogate, which has no UTF-8 form (send bytes as base64)",
    path: ["value"],
  });
/** Most keys one KvList page holds (the default page is KV_LIST_DEFAULT_LIMIT). */
export const KV_LIST_MAX_LIMIT = 10_000;
/** Keys in a KvList page when `limit` is not given. */
export const KV_LIST_DEFAULT_LIMIT = 1000;
const kvListParams = z.strictObject({
  scope: z.string().optional(),
  prefix: z.string().optional(),
  /** The `next_cursor` of the previous page. */
  cursor: z.string().max(4096).optional(),
  limit: z.number().int().min(1).max(KV_LIST_MAX_LIMIT).optional(),
});

// MCP servers (our addition): a server's tools, and an operator's tool call (`arguments`: a JSON object).
const mcpToolsParams = z.strictObject({ server: z.string().min(1).max(160) });
const mcpCallParams = z.strictObject({ server: z.string().min(1).max(160), tool: z.string().min(1).max(4096), arguments: z.record(z.string(), z.unknown()).optional() });

// The capsule author's loop (our addition): remove an installed or workspace capsule; run one capsule's tool.
const removeCapsuleParams = z.strictObject({ name: z.string().min(1).max(128) });
const callToolParams = z.strictObject({ capsule: z.string().min(1).max(128), tool: z.string().min(1).max(256), arguments: z.record(z.string(), z.unknown()).optional() });

// The VFS (our addition): a principal's staged workspace writes — list, apply, drop (`default` when omitted).
const vfsParams = z.strictObject({ principal: PrincipalIdSchema.optional() });

// Zod-free, so `astrid kv` need not load zod for its default; re-exported for everyone else.
export { OPERATOR_KV_SCOPE } from "./operator-scope";

/** A management request, parsed. */
export type KernelRequest =
  | { method: (typeof UNIT_METHODS)[number] }
  | { method: "Shutdown"; params: { reason: string | null } }
  | { method: "InstallCapsule"; params: z.infer<typeof installParams> }
  | { method: "ApproveCapability"; params: z.infer<typeof approveParams> }
  | { method: "KvGet"; params: z.infer<typeof kvGetParams> }
  | { method: "KvSet"; params: z.infer<typeof kvSetParams> }
  | { method: "KvList"; params: z.infer<typeof kvListParams> }
  | { method: "KvDelete"; params: z.infer<typeof kvDeleteParams> }
  | { method: "SetMode"; params: z.infer<typeof setModeParams> }
  | { method: "McpTools"; params: z.infer<typeof mcpToolsParams> }
  | { method: "McpCall"; params: z.infer<typeof mcpCallParams> }
  | { method: "RemoveCapsule"; params: z.infer<typeof removeCapsuleParams> }
  | { method: "CallTool"; params: z.infer<typeof callToolParams> }
  | { method: "VfsDiff" | "VfsCommit" | "VfsDiscard"; params: z.infer<typeof vfsParams> };

/** Every method name, for messages and help. */
export const METHODS = [...UNIT_METHODS, "Shutdown", "InstallCapsule", "ApproveCapability", "KvGet", "KvSet", "KvList", "KvDelete", "SetMode", "McpTools", "McpCall", "RemoveCapsule", "CallTool", "VfsDiff", "VfsCommit", "VfsDiscard"] as const;
/** A method name. */
export type KernelMethod = (typeof METHODS)[number];

/** A parsed request with its optional correlation id. */
export interface ParsedRequest {
  request: KernelRequest;
  requestId?: string;
}

/**
 * Parses the guest view of a request payload (its fields without `type`). Throws an AstridError whose message
 * tells the client exactly what to send instead; `requestIdOf` recovers the id for the error reply.
 */
export function parseKernelRequest(body: Record<string, unknown>): ParsedRequest {
  const requestId = requestIdOf(body);
  if (body.request_id !== undefined && requestId === undefined) {
    fail("ASTRID_ERR_REQUEST_INVALID", "request_id must be a string");
  }
  const method = body.method;
  if (typeof method !== "string") {
    fail("ASTRID_ERR_REQUEST_INVALID", 'request has no string "method" (e.g. {"type":"raw_json","method":"GetStatus"})');
  }
  const params = body.params;
  if ((UNIT_METHODS as readonly string[]).includes(method)) {
    if (params !== undefined && params !== null) {
      fail("ASTRID_ERR_REQUEST_INVALID", `${method} takes no params: omit "params" or send null`);
    }
    return withId({ method: method as (typeof UNIT_METHODS)[number] }, requestId);
  }
  switch (method) {
    case "Shutdown": {
      const p = parseParams(method, shutdownParams, params);
      return withId({ method, params: { reason: p.reason ?? null } }, requestId);
    }
    case "InstallCapsule":
      return withId({ method, params: parseParams(method, installParams, params) }, requestId);
    case "ApproveCapability":
      return withId({ method, params: parseParams(method, approveParams, params) }, requestId);
    case "KvGet":
      return withId({ method, params: parseParams(method, kvGetParams, params) }, requestId);
    case "KvSet":
      return withId({ method, params: parseParams(method, kvSetParams, params) }, requestId);
    case "KvList":
      return withId({ method, params: parseParams(method, kvListParams, params) }, requestId);
    case "KvDelete":
      return withId({ method, params: parseParams(method, kvDeleteParams, params) }, requestId);
    case "SetMode":
      return withId({ method, params: parseParams(method, setModeParams, params) }, requestId);
    case "McpTools":
      return withId({ method, params: parseParams(method, mcpToolsParams, params) }, requestId);
    case "McpCall":
      return withId({ method, params: parseParams(method, mcpCallParams, params) }, requestId);
    case "RemoveCapsule":
      return withId({ method, params: parseParams(method, removeCapsuleParams, params) }, requestId);
    case "CallTool":
      return withId({ method, params: parseParams(method, callToolParams, params) }, requestId);
    case "VfsDiff":
    case "VfsCommit":
    case "VfsDiscard":
      // Absent params mean the `default` principal (the operator's own staged writes).
      return withId({ method, params: parseParams(method, vfsParams, params ?? {}) }, requestId);
    default:
      return fail("ASTRID_ERR_UNKNOWN_METHOD", `unknown method "${method}"; expected one of ${METHODS.join(", ")}`);
  }
}

/** The request_id of a request body when it is a string, for echoing even in an error reply. */
export function requestIdOf(body: unknown): string | undefined {
  return isJsonObject(body) && typeof body.request_id === "string" ? body.request_id : undefined;
}

function parseParams<T>(method: string, schema: z.ZodType<T>, params: unknown): T {
  if (params === undefined || params === null) {
    fail("ASTRID_ERR_REQUEST_INVALID", `${method} needs "params" (an object; {} for none)`);
  }
  const parsed = schema.safeParse(params);
  if (!parsed.success) {
    fail("ASTRID_ERR_REQUEST_INVALID", `${method} params are invalid: ${z.prettifyError(parsed.error).replace(/\n/g, " ")}`);
  }
  return parsed.data;
}

function withId(request: KernelRequest, requestId: string | undefined): ParsedRequest {
  return requestId === undefined ? { request } : { request, requestId };
}

function fail(code: ErrorCode, message: string): never {
  throw new AstridError(code, message);
}

/** `DaemonStatus` (reference §5.2). */
export interface DaemonStatus {
  pid: number;
  uptime_secs: number;
  version: string;
  ephemeral: boolean;
  connected_clients: number;
  loaded_capsules: string[];
  /** Our addition: whether the audit chain verified at boot (null before the first verification). */
  audit_chain_intact?: boolean | null;
  /**
   * Our addition, in `astrid status --json` only: the `ListClients` answer. GetStatus itself stays small and
   * the same size however many clients are connected (a status poller should not pay for every other client).
   */
  clients?: ClientInfo[];
  /** Our addition: sessions the daemon routes (joined or remembered). */
  sessions?: number;
  /** Our addition: the workspace the daemon serves (its `.astrid/capsules/` are loaded). */
  workspace?: string;
  /** Our addition: MCP servers known (etc/servers.toml and capsules' own), running, and failed for good. */
  mcp_servers?: { total: number; running: number; failed: number };
}

/** One connected client (`ListClients`, our addition): who it acts as, how it authenticated, what it calls itself. */
export interface ClientInfo {
  connection: number;
  principal: string;
  via: "session_token" | "frontend";
  frontend?: string;
  client_name?: string;
  connected_secs: number;
  /** Platform users it speaks for (a frontend). */
  users?: number;
  sessions?: number;
  bytes_in?: number;
  bytes_out?: number;
}

/** A management response; `code` is our addition on errors, ignored by clients that do not know it. */
export type KernelResponse =
  /** `next_cursor` (our addition, KvList only): more keys follow; pass it as `cursor` for the next page. */
  | { status: "Success"; data: unknown; next_cursor?: string }
  | { status: "Status"; data: DaemonStatus }
  | { status: "Commands"; data: Array<{ name: string; description: string; provider_capsule: string }> }
  | { status: "CapsuleMetadata"; data: Array<{ name: string; interceptor_events: string[]; [extra: string]: unknown }> }
  | { status: "Error"; data: string; code: ErrorCode };

/** The `raw_json` payload carrying a response, with the request's id echoed when it had one. */
export function responsePayload(response: KernelResponse, requestId?: string): IpcPayload {
  return rawJson(requestId === undefined ? { ...response } : { request_id: requestId, ...response });
}

/** An `Error` response carrying its stable code beside the reference's bare message string. */
export function errorResponse(code: ErrorCode, message: string): KernelResponse {
  return { status: "Error", data: message, code };
}
