/**
 * The handshake (reference §3.2): the client's first frame carries the session token and protocol version; the
 * daemon checks the version before the token so a mismatch reply reveals nothing about the token.
 */
import { timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { ErrorCode } from "./errors";
import { PROTOCOL_VERSION } from "./version";
import { decodeToken } from "./session-token-format";

/** The client's first frame. Unknown extra fields are ignored. */
export const HandshakeRequestSchema = z.looseObject({
  token: z.string(),
  protocol_version: z.number().int().min(0).max(255),
  client_version: z.string().optional(),
  /** What the client calls itself (a frontend's name for operators: shown per connection in GetStatus). */
  client_name: z.string().optional(),
});
/** The client's first frame, parsed. */
export type HandshakeRequest = z.infer<typeof HandshakeRequestSchema>;

/** The daemon's reply; `reason` and `code` are omitted on success (`code` is our addition). */
export interface HandshakeResponse {
  status: "ok" | "error";
  protocol_version: number;
  server_version: string;
  reason?: string;
  code?: ErrorCode;
}

/** Reason for any bad token, malformed or wrong alike (reference §3.2). */
export const AUTH_FAILED_REASON = "authentication failed";

/** The reply for a client speaking another protocol version. */
export function protocolMismatchReason(clientVersion: number): string {
  // The reference recommends `astrid daemon restart`, which does not exist (its §11 item 19).
  return (
    `Protocol version mismatch (client=${clientVersion}, server=${PROTOCOL_VERSION}). ` +
    "Upgrade the client, or restart the daemon with `astrid stop` then `astrid start`."
  );
}

// In a zod-free module so the CLI's token read does not load zod; re-exported for everyone else.
export { decodeToken, TOKEN_HEX_LENGTH } from "./session-token-format";

/** Constant-time token check; a malformed candidate fails without a comparison that could leak timing. */
export function tokenMatches(expected: Buffer, candidate: string): boolean {
  const decoded = decodeToken(candidate);
  if (decoded === null || decoded.length !== expected.length) return false;
  return timingSafeEqual(decoded, expected);
}
