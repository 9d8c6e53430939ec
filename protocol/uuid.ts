/**
 * The one UUID parser. Session ids arrive from flags and users in either form the reference accepts (hyphenated,
 * or 32 hex digits without hyphens, any case); everything past the parse uses the canonical form, so that two
 * spellings of one id never name two sessions.
 */

const HYPHENATED = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SIMPLE = /^[0-9a-f]{32}$/i;

/** What `parseUuid` accepts, for error messages. */
export const UUID_FORMAT = "a UUID (8-4-4-4-12 hex digits, or 32 hex digits without hyphens)";

/**
 * The canonical (lowercase, hyphenated) form of `text`, or null when it is not a UUID. Hyphens are all or
 * nothing (`0123456789ab-cdef-…` is refused), and nothing around the digits (no spaces, braces or `urn:uuid:`).
 */
export function parseUuid(text: string): string | null {
  if (!HYPHENATED.test(text) && !SIMPLE.test(text)) return null;
  const hex = text.replaceAll("-", "").toLowerCase();
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
