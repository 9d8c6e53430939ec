/**
 * The admin API's wire shapes (reference §5.4): `AdminKernelRequest` — `{"request_id"?, "method", "params"}`
 * flattened into a `raw_json` payload on `astrid.v1.admin.<family>.<action>` — its responses
 * `{"request_id"?, "status", "data"}` on `astrid.v1.admin.response.…`, the quotas of a profile (§8.5), and the
 * client side (`adminRequest`) that frontends and the CLI use.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import type { DaemonClient } from "./client";
import { AstridError, isErrorCode, type ErrorCode } from "./errors";
import { isJsonObject, rawJson, type IpcMessage, type IpcPayload } from "./ipc-message";
import { PRINCIPAL_ID_PATTERN } from "./identity-names";
import { ADMIN_RESPONSE_TOPIC_PREFIX, ADMIN_TOPIC_PREFIX, CLIENT_ERROR_TOPIC } from "./topics";

/** Quotas of a principal (reference §8.5), with their defaults. */
export const QUOTA_DEFAULTS = {
  max_memory_bytes: 67_108_864,
  max_timeout_secs: 300,
  max_ipc_throughput_bytes: 10_485_760,
  max_background_processes: 8,
  max_storage_bytes: 1_073_741_824,
} as const;

/** A principal's quotas. */
export type Quotas = { -readonly [K in keyof typeof QUOTA_DEFAULTS]: number };

const whole = () => z.number({ error: "must be a whole number" }).int("must be a whole number").max(Number.MAX_SAFE_INTEGER, "is too large");
const QUOTA_FIELDS = {
  max_memory_bytes: whole().positive("must be greater than 0"),
  max_timeout_secs: whole().min(1, "must be 1..86400").max(86_400, "must be 1..86400"),
  max_ipc_throughput_bytes: whole().positive("must be greater than 0"),
  max_background_processes: whole().min(0, "must be 0..256").max(256, "must be 0..256"),
  /** Not enforced (as in the reference); kept and validated. */
  max_storage_bytes: whole().positive("must be greater than 0"),
};

/** A `[quotas]` table: every field optional with its default; unknown keys are errors. */
export const QuotasSchema = z.strictObject({
  max_memory_bytes: QUOTA_FIELDS.max_memory_bytes.default(QUOTA_DEFAULTS.max_memory_bytes),
  max_timeout_secs: QUOTA_FIELDS.max_timeout_secs.default(QUOTA_DEFAULTS.max_timeout_secs),
  max_ipc_throughput_bytes: QUOTA_FIELDS.max_ipc_throughput_bytes.default(QUOTA_DEFAULTS.max_ipc_throughput_bytes),
  max_background_processes: QUOTA_FIELDS.max_background_processes.default(QUOTA_DEFAULTS.max_background_processes),
  max_storage_bytes: QUOTA_FIELDS.max_storage_bytes.default(QUOTA_DEFAULTS.max_storage_bytes),
});

/** QuotaSet's `quotas`: the fields to change; the others keep their current values. */
export const QuotaPatchSchema = z.strictObject({
  max_memory_bytes: QUOTA_FIELDS.max_memory_bytes.optional(),
  max_timeout_secs: QUOTA_FIELDS.max_timeout_secs.optional(),
  max_ipc_throughput_bytes: QUOTA_FIELDS.max_ipc_throughput_bytes.optional(),
  max_background_processes: QUOTA_FIELDS.max_background_processes.optional(),
  max_storage_bytes: QUOTA_FIELDS.max_storage_bytes.optional(),
});

/** A quota change. */
export type QuotaPatch = z.infer<typeof QuotaPatchSchema>;

/** Most capabilities or groups one request may name (bounds what a request makes the daemon hold and audit). */
export const MAX_LIST_ITEMS = 256;

/** A principal id in a payload; an invalid one is a malformed request (reference §1.4). */
const principalId = z.string({ error: "must be a string" }).regex(PRINCIPAL_ID_PATTERN, "must be a principal id: 1-64 characters of [A-Za-z0-9_-]");
/** Strings checked by the handler (capabilities, group names), so its refusals carry the reference's texts. */
const strings = z
  .array(z.string({ error: "must be a string" }), { error: "must be an array of strings" })
  .max(MAX_LIST_ITEMS, `must have at most ${MAX_LIST_ITEMS} items`);

const principalParams = z.strictObject({ principal: principalId });
const PARAMS = {
  AgentCreate: z.strictObject({ name: principalId, groups: strings.default([]), grants: strings.default([]) }),
  AgentDelete: principalParams,
  AgentEnable: principalParams,
  AgentDisable: principalParams,
  QuotaSet: z.strictObject({ principal: principalId, quotas: z.record(z.string(), z.unknown(), { error: "must be an object" }) }),
  QuotaGet: principalParams,
  GroupCreate: z.strictObject({
    name: z.string({ error: "must be a string" }),
    capabilities: strings,
    description: z.string({ error: "must be a string" }).optional(),
    unsafe_admin: z.boolean({ error: "must be true or false" }).default(false),
  }),
  GroupDelete: z.strictObject({ name: z.string({ error: "must be a string" }) }),
  GroupModify: z.strictObject({
    name: z.string({ error: "must be a string" }),
    capabilities: strings.optional(),
    // null clears the description; absent keeps it (the reference could not clear it, its §11 item 15).
    description: z.string({ error: "must be a string or null" }).nullable().optional(),
    unsafe_admin: z.boolean({ error: "must be true or false" }).optional(),
  }),
  CapsGrant: z.strictObject({ principal: principalId, capabilities: strings }),
  CapsRevoke: z.strictObject({ principal: principalId, capabilities: strings }),
} as const;

/** Admin methods without params (`params` absent or null, as for the management API's unit methods). */
export const ADMIN_UNIT_METHODS = ["AgentList", "GroupList"] as const;

/** Every admin method. */
export const ADMIN_METHODS = [
  "AgentCreate", "AgentDelete", "AgentEnable", "AgentDisable", "AgentList", "QuotaSet", "QuotaGet",
  "GroupCreate", "GroupDelete", "GroupModify", "GroupList", "CapsGrant", "CapsRevoke",
] as const;
/** An admin method name. */
export type AdminMethod = (typeof ADMIN_METHODS)[number];

type ParamsOf<M extends keyof typeof PARAMS> = z.output<(typeof PARAMS)[M]>;

/** A parsed admin request. */
export type AdminRequest =
  | { [M in keyof typeof PARAMS]: { method: M; params: ParamsOf<M> } }[keyof typeof PARAMS]
  | { method: (typeof ADMIN_UNIT_METHODS)[number] };

/** The conventional topic of each method, after `astrid.v1.admin.`; also the audit label after `admin.`. */
export const ADMIN_TOPIC_SUFFIXES: Readonly<Record<AdminMethod, string>> = {
  AgentCreate: "agent.create",
  AgentDelete: "agent.delete",
  AgentEnable: "agent.enable",
  AgentDisable: "agent.disable",
  AgentList: "agent.list",
  QuotaSet: "quota.set",
  QuotaGet: "quota.get",
  GroupCreate: "group.create",
  GroupDelete: "group.delete",
  GroupModify: "group.modify",
  GroupList: "group.list",
  CapsGrant: "caps.grant",
  CapsRevoke: "caps.revoke",
};

/** The audit entry's `method` for an admin request (reference §5.4: `admin.agent.create`, …). */
export function adminAuditLabel(method: AdminMethod): string {
  return `admin.${ADMIN_TOPIC_SUFFIXES[method]}`;
}

/**
 * Parses the guest view of an admin payload (its fields without `type`). Throws ASTRID_ERR_REQUEST_INVALID or
 * ASTRID_ERR_UNKNOWN_METHOD with a message that says what to send instead.
 */
export function parseAdminRequest(body: Record<string, unknown>): { request: AdminRequest; requestId?: string } {
  const requestId = typeof body.request_id === "string" ? body.request_id : undefined;
  if (body.request_id !== undefined && requestId === undefined) invalid("request_id must be a string");
  const method = body.method;
  if (typeof method !== "string") invalid('admin request has no string "method" (e.g. {"type":"raw_json","method":"AgentList"})');
  const params = body.params;
  const withId = (request: AdminRequest) => (requestId === undefined ? { request } : { request, requestId });
  if ((ADMIN_UNIT_METHODS as readonly string[]).includes(method)) {
    if (params !== undefined && params !== null) invalid(`${method} takes no params: omit "params" or send null`);
    return withId({ method: method as (typeof ADMIN_UNIT_METHODS)[number] });
  }
  if (!Object.prototype.hasOwnProperty.call(PARAMS, method)) {
    throw new AstridError("ASTRID_ERR_UNKNOWN_METHOD", `unknown admin method "${method}"; expected one of ${ADMIN_METHODS.join(", ")}`);
  }
  if (params === undefined || params === null) invalid(`${method} needs "params" (an object)`);
  const parsed = PARAMS[method as keyof typeof PARAMS].safeParse(params);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? `${i.path.join(".")}: ` : ""}${i.message}`);
    invalid(`${method} params are invalid: ${issues.join("; ")}`);
  }
  return withId({ method, params: parsed.data } as AdminRequest);
}

function invalid(message: string): never {
  throw new AstridError("ASTRID_ERR_REQUEST_INVALID", message);
}

/** One entry of `AgentList`. */
export interface AgentListEntry {
  principal: string;
  enabled: boolean;
  groups: string[];
  grants: string[];
  revokes: string[];
}

/** One entry of `GroupList`. */
export interface GroupListEntry {
  name: string;
  capabilities: string[];
  description?: string;
  unsafe_admin: boolean;
  builtin: boolean;
}

/** An admin response; `code` is our addition on errors. */
export type AdminResponse =
  | { status: "Success"; data: unknown }
  | { status: "AgentList"; data: AgentListEntry[] }
  | { status: "Quotas"; data: Quotas }
  | { status: "GroupList"; data: GroupListEntry[] }
  | { status: "Error"; data: string; code: ErrorCode };

/** A response with the request id it answered. */
export type AdminReply = AdminResponse & { request_id?: string };

/** The `raw_json` payload of a response, `request_id` first when the request had one. */
export function adminResponsePayload(response: AdminResponse | { status: string; data: unknown }, requestId?: string): IpcPayload {
  return rawJson(requestId === undefined ? { ...response } : { request_id: requestId, ...response });
}

/** An `Error` response with its code. */
export function adminError(code: ErrorCode, message: string): AdminResponse {
  return { status: "Error", data: message, code };
}

/**
 * Sends one admin request over a connected client (on the method's conventional topic) and resolves with the
 * reply to it, matched by a fresh request_id; rejects with ASTRID_ERR_TIMEOUT after `timeoutMs` (default 10 s),
 * with ASTRID_ERR_CONNECTION_CLOSED when the connection closes first, and with the daemon's code when it refuses the
 * frame itself (`astrid.v1.error` naming the topic, e.g. ASTRID_ERR_TOPIC_DENIED from a daemon whose socket policy
 * has no admin topics). An `Error` reply resolves (see `code`).
 */
export function adminRequest(
  client: DaemonClient,
  method: AdminMethod,
  params?: Record<string, unknown>,
  options: { timeoutMs?: number } = {},
): Promise<AdminReply> {
  const requestId = randomUUID();
  const suffix = ADMIN_TOPIC_SUFFIXES[method];
  const topic = ADMIN_TOPIC_PREFIX + suffix;
  const responseTopic = ADMIN_RESPONSE_TOPIC_PREFIX + suffix;
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const done = () => {
      clearTimeout(timer);
      client.off("message", onMessage).off("close", onClose);
    };
    const onMessage = (message: IpcMessage) => {
      const payload = message.payload;
      if (message.topic === CLIENT_ERROR_TOPIC && isJsonObject(payload) && typeof payload.message === "string" && payload.message.includes(JSON.stringify(topic))) {
        done();
        reject(new AstridError(isErrorCode(payload.code) ? payload.code : "ASTRID_ERR_INTERNAL", `the daemon refused the ${method} request: ${payload.message}`));
        return;
      }
      if (message.topic !== responseTopic || !isJsonObject(payload) || payload.request_id !== requestId) return;
      done();
      const { type: _type, ...reply } = payload;
      if (reply.status === "Error" && !isErrorCode(reply.code)) reply.code = "ASTRID_ERR_INTERNAL";
      resolve(reply as unknown as AdminReply);
    };
    const onClose = () => {
      done();
      reject(new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the daemon closed the connection before replying"));
    };
    const timer = setTimeout(() => {
      done();
      reject(new AstridError("ASTRID_ERR_TIMEOUT", `${method} got no reply within ${timeoutMs} ms`));
    }, timeoutMs);
    client.on("message", onMessage).on("close", onClose);
    try {
      const body: Record<string, unknown> = { type: "raw_json", request_id: requestId, method };
      if (params !== undefined) body.params = params;
      client.publish(topic, body as IpcPayload);
    } catch (err) {
      done();
      reject(err as Error);
    }
  });
}
