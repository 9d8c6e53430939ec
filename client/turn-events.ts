/**
 * The events of one prompt's turn, as `AstridClient.prompt` yields them, and the rule that reads them out of the
 * daemon's messages. Pure functions: no I/O.
 */
import type { IpcMessage } from "../protocol/ipc-message";

/** The decisions a person may give an approval request. */
export const APPROVAL_DECISIONS = ["approve", "approve_session", "approve_always", "deny"] as const;
/** One approval decision. */
export type ApprovalDecision = (typeof APPROVAL_DECISIONS)[number];

/** Text the agent streams before its final reply (`agent.v1.stream.delta`). */
export interface DeltaEvent {
  type: "delta";
  text: string;
  message: IpcMessage;
}
/** The agent started a tool (a `tool_execute_request` in the session's stream). */
export interface ToolCallEvent {
  type: "tool_call";
  call_id: string;
  tool_name: string;
  arguments: unknown;
  message: IpcMessage;
}
/** A tool finished (a `tool_execute_result` in the session's stream). */
export interface ToolResultEvent {
  type: "tool_result";
  call_id: string;
  content: unknown;
  is_error: boolean;
  message: IpcMessage;
}
/** A capsule asks the people in this session to approve an action; answer with `answerApproval`. */
export interface ApprovalRequiredEvent {
  type: "approval_required";
  request_id: string;
  action: string;
  resource: string;
  reason: string;
  capsule?: string;
  options: ApprovalDecision[];
  message: IpcMessage;
}
/** A capsule asks for a value; answer with `answerElicit`. */
export interface ElicitRequestEvent {
  type: "elicit_request";
  request_id: string;
  capsule_id: string;
  field: { type: string; key: string; description?: string; options?: string[]; default?: string };
  message: IpcMessage;
}
/** The agent's final reply (`agent.v1.response` with `is_final` not false): the last event of a turn. */
export interface ResponseEvent {
  type: "response";
  text: string;
  message: IpcMessage;
}

/** Everything a turn can yield. */
export type TurnEvent = DeltaEvent | ToolCallEvent | ToolResultEvent | ApprovalRequiredEvent | ElicitRequestEvent | ResponseEvent;

const str = (v: unknown): string => (typeof v === "string" ? v : "");

/**
 * The turn event a daemon message is, or null when it is not one (another topic, a payload without the fields).
 * Session and turn matching is the caller's.
 */
export function turnEventOf(message: IpcMessage): TurnEvent | null {
  const p = message.payload as Record<string, unknown> | undefined;
  if (p === null || typeof p !== "object") return null;
  const topic = message.topic;
  if (p.type === "tool_execute_request" && topic.startsWith("agent.v1.")) {
    return { type: "tool_call", call_id: str(p.call_id), tool_name: str(p.tool_name), arguments: p.arguments, message };
  }
  if (p.type === "tool_execute_result" && topic.startsWith("agent.v1.")) {
    const result = (p.result ?? {}) as Record<string, unknown>;
    return { type: "tool_result", call_id: str(p.call_id), content: result.content, is_error: result.is_error === true, message };
  }
  if (topic === "agent.v1.stream.delta" && typeof p.text === "string") return { type: "delta", text: p.text, message };
  if (topic === "agent.v1.response" && typeof p.text === "string") {
    return p.is_final === false ? { type: "delta", text: p.text, message } : { type: "response", text: p.text, message };
  }
  if (topic === "astrid.v1.approval" && p.type === "approval_required" && typeof p.request_id === "string") {
    const options = Array.isArray(p.options)
      ? p.options.filter((o): o is ApprovalDecision => (APPROVAL_DECISIONS as readonly unknown[]).includes(o))
      : [...APPROVAL_DECISIONS];
    return {
      type: "approval_required", request_id: p.request_id, action: str(p.action), resource: str(p.resource), reason: str(p.reason),
      ...(typeof p.capsule === "string" ? { capsule: p.capsule } : {}), options, message,
    };
  }
  if (topic === "astrid.v1.elicit" && p.type === "elicit_request" && typeof p.request_id === "string" && p.field !== null && typeof p.field === "object") {
    return { type: "elicit_request", request_id: p.request_id, capsule_id: str(p.capsule_id), field: p.field as ElicitRequestEvent["field"], message };
  }
  return null;
}

/** The session a message belongs to (`payload.session_id`), if it names one. */
export function sessionOf(message: IpcMessage): string | undefined {
  const id = (message.payload as { session_id?: unknown } | undefined)?.session_id;
  return typeof id === "string" ? id : undefined;
}

/** The turn a reply names (`payload.turn_id` or `payload.context.turn_id`), if any. */
export function turnIdOf(message: IpcMessage): string | undefined {
  const p = message.payload as { turn_id?: unknown; context?: { turn_id?: unknown } } | undefined;
  const id = p?.turn_id ?? p?.context?.turn_id;
  return typeof id === "string" ? id : undefined;
}
