/**
 * The session token's text format, without the handshake's zod schemas: the CLI reads `run/system.token` on every
 * command, and loading zod for a 64-character hex check would cost most of its start-up.
 */

/** Length of a token in hex characters (32 random bytes). */
export const TOKEN_HEX_LENGTH = 64;
const TOKEN_PATTERN = /^[0-9a-fA-F]{64}$/;

/** Decodes a token as readers do: whitespace trimmed, either hex case; null when it is not 64 hex chars. */
export function decodeToken(text: string): Buffer | null {
  const trimmed = text.trim();
  return TOKEN_PATTERN.test(trimmed) ? Buffer.from(trimmed, "hex") : null;
}
