/**
 * The `IpcMessage` envelope and its `IpcPayload` (reference §3.4–3.5): the full, tagged form every frame
 * from the daemon carries, and the host normalisation applied to what clients publish.
 */
import { z } from "zod";
import { isJsonObject } from "./json-object";

// In a zod-free module so the CLI's client does not load zod; re-exported for everyone else.
export { isJsonObject, NIL_UUID } from "./json-object";

/** An `IpcPayload`: internally tagged by `type` (snake_case); `raw_json` carries its object's own fields. */
export interface IpcPayload {
  type: string;
  [field: string]: unknown;
}

/** The envelope on the wire and on the bus (reference §3.4). */
export interface IpcMessage {
  topic: string;
  payload: IpcPayload;
  /** Always serialized; null in this version. */
  signature: number[] | null;
  source_id: string;
  /** RFC 3339 UTC. */
  timestamp: string;
  /** Stamped by the bus at publish time, monotonic from 1. */
  seq: number;
  /** Omitted when absent (kernel messages). */
  principal?: string;
}

const str = z.string();
const uuidLike = z.string();

/**
 * Schemas of the known variants, for host normalisation: a payload whose tag is known but whose fields do not
 * fit becomes `custom` holding the whole object, exactly as the reference host does.
 */
const VARIANTS: Record<string, z.ZodType<Record<string, unknown>>> = {
  user_input: z.looseObject({ text: str, session_id: str.default("default"), context: z.unknown().optional() }),
  agent_response: z.looseObject({ text: str, is_final: z.boolean(), session_id: str.default("default") }),
  approval_required: z.looseObject({ request_id: str, action: str, resource: str, reason: str }),
  approval_response: z.looseObject({
    request_id: str,
    decision: z.enum(["approve", "approve_session", "approve_always", "deny"]),
    reason: str.optional(),
  }),
  onboarding_required: z.looseObject({ capsule_id: str, fields: z.array(z.unknown()) }),
  llm_request: z.looseObject({
    request_id: uuidLike,
    model: str,
    messages: z.array(z.unknown()),
    tools: z.array(z.unknown()),
    system: str,
  }),
  llm_stream_event: z.looseObject({ request_id: uuidLike, event: z.unknown() }),
  llm_response: z.looseObject({ request_id: uuidLike, response: z.record(z.string(), z.unknown()) }),
  tool_execute_request: z.looseObject({ call_id: str, tool_name: str, arguments: z.unknown() }),
  tool_execute_result: z.looseObject({ call_id: str, result: z.record(z.string(), z.unknown()) }),
  tool_cancel_request: z.looseObject({ call_ids: z.array(str) }),
  selection_required: z.looseObject({ request_id: str, title: str, options: z.array(z.unknown()), callback_topic: str }),
  elicit_request: z.looseObject({ request_id: uuidLike, capsule_id: str, field: z.unknown() }),
  elicit_response: z.looseObject({ request_id: uuidLike }),
  connect: z.looseObject({}),
  disconnect: z.looseObject({ reason: str.optional() }),
  custom: z.looseObject({ data: z.unknown() }),
};

/**
 * Host normalisation (reference §3.5): a `raw_json` object stays as it is; a known tag whose fields fit keeps its
 * variant; anything else — unknown tag, missing tag, a non-object, a known tag that does not fit — becomes
 * `{"type":"custom","data":<original>}`.
 */
export function normalizePayload(value: unknown): IpcPayload {
  if (isJsonObject(value) && typeof value.type === "string") {
    if (value.type === "raw_json") return value as IpcPayload;
    // The two payloads of every chat turn, checked as their schemas would (a shallow copy, as the schema returns;
    // session_id present), without the schema's cost. Anything else takes the general path below.
    if (typeof value.text === "string" && typeof value.session_id === "string" &&
        (value.type === "user_input" || (value.type === "agent_response" && typeof value.is_final === "boolean"))) {
      return { type: value.type, ...value } as IpcPayload;
    }
    // Own keys only: a client's `"type": "__proto__"` or `"toString"` would otherwise find Object.prototype's members.
    const schema = Object.prototype.hasOwnProperty.call(VARIANTS, value.type) ? VARIANTS[value.type] : undefined;
    if (schema) {
      const parsed = schema.safeParse(value);
      if (parsed.success) return { type: value.type, ...parsed.data };
    }
  }
  return { type: "custom", data: value };
}

/**
 * The guest view of a payload (reference §3.5 `to_guest_bytes`): `custom` becomes its `data`, `raw_json` its
 * object without `type`; every other variant keeps its tagged form.
 */
export function guestView(payload: IpcPayload): unknown {
  if (payload.type === "custom") return payload.data;
  if (payload.type === "raw_json") {
    const { type: _type, ...rest } = payload;
    return rest;
  }
  return payload;
}

/** Builds a `raw_json` payload from an object's fields. */
export function rawJson(fields: Record<string, unknown>): IpcPayload {
  return { type: "raw_json", ...fields };
}
