/**
 * The messages between the page and `astrid web` over the tab's WebSocket (JSON text frames). What the page sends
 * is parsed from `unknown` here; what the server sends is typed.
 */
import { z } from "zod";
import { APPROVAL_DECISIONS } from "../client/turn-events";

/** A tab's session id: chosen by the page (kept across reloads of that tab), always within the visitor's own principal. */
export const TAB_SESSION_PATTERN = /^[A-Za-z0-9-]{8,64}$/;
const requestId = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/);

/** What a page may send. */
export const PageMessageSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("hello"), session: z.string().regex(TAB_SESSION_PATTERN) }),
  z.strictObject({ type: z.literal("prompt"), text: z.string() }),
  z.strictObject({ type: z.literal("approval"), request_id: requestId, decision: z.enum(APPROVAL_DECISIONS) }),
  z.strictObject({
    type: z.literal("elicit"),
    request_id: requestId,
    value: z.string().max(65_536).optional(),
    values: z.array(z.string().max(65_536)).max(256).optional(),
  }),
  z.strictObject({ type: z.literal("refresh") }),
]);
/** One message from a page. */
export type PageMessage = z.infer<typeof PageMessageSchema>;

/** The side panel's contents: what the web frontend may see of the daemon. */
export interface PanelInfo {
  daemon: "up" | "down";
  version?: string;
  uptime_secs?: number;
  connected_clients?: number;
  capsules?: string[];
  /** Why the status or the capsule list is missing (e.g. the web principal lacks the capability). */
  problem?: string;
}

/** What the server sends a page. */
export type ServerMessage =
  | { type: "ready"; session: string; visitor: string; max_prompt_bytes: number; daemon: "up" | "down" }
  | { type: "turn_start"; turn: number }
  | { type: "delta"; turn: number; text: string }
  | { type: "response"; turn: number; text: string }
  | { type: "tool"; turn: number; name: string; phase: "call" | "result"; is_error?: boolean }
  | { type: "turn_error"; turn: number; code: string; message: string }
  | { type: "approval_required"; request_id: string; action: string; resource: string; reason: string; capsule?: string; options: string[] }
  | { type: "elicit_request"; request_id: string; capsule_id: string; field: unknown }
  | { type: "daemon"; state: "up" | "down" }
  | { type: "panel"; panel: PanelInfo }
  | { type: "error"; code: string; message: string };
