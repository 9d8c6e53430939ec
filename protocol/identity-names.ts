/**
 * The names identity deals in, and the one rule for each: principal ids (reference §1.4), platform names and a
 * platform's user ids. No I/O: the daemon, the CLI and a frontend validate with the same rules.
 */
import { z } from "zod";

/** The principal every operator connection acts as until profiles say otherwise (reference §1.4). */
export const DEFAULT_PRINCIPAL = "default";

/** A principal id: 1 to 64 of `[A-Za-z0-9_-]` (reference §1.4). */
export const PRINCIPAL_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A platform name such as `discord` or `web`: 1 to 32 of `[a-z0-9_-]`. */
export const PLATFORM_PATTERN = /^[a-z0-9_-]{1,32}$/;

/** Longest platform user id and display name, in UTF-16 code units (what JavaScript's `length` counts). */
export const MAX_PLATFORM_USER_ID_LENGTH = 256;
/** Longest display name, in UTF-16 code units. */
export const MAX_DISPLAY_NAME_LENGTH = 256;

/**
 * Printable as Python's `str.isprintable` means it: no control, format, private-use, unassigned or lone surrogate
 * code point (category C), and no separator (category Z) but the ASCII space. So an id cannot hide a newline that
 * would forge a log line, a zero-width character that makes two ids look alike, or a NUL the KV store refuses.
 */
const PRINTABLE = /^(?:[^\p{C}\p{Z}]| )+$/u;

/** True for a valid principal id. */
export function isPrincipalId(value: unknown): value is string {
  return typeof value === "string" && PRINCIPAL_ID_PATTERN.test(value);
}

/** True for a valid platform name. */
export function isPlatform(value: unknown): value is string {
  return typeof value === "string" && PLATFORM_PATTERN.test(value);
}

/** True for a valid platform user id: 1 to 256 printable characters. */
export function isPlatformUserId(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= MAX_PLATFORM_USER_ID_LENGTH && PRINTABLE.test(value);
}

/** True for a valid display name: 1 to 256 printable characters. */
export function isDisplayName(value: unknown): value is string {
  return typeof value === "string" && value.length >= 1 && value.length <= MAX_DISPLAY_NAME_LENGTH && PRINTABLE.test(value);
}

/** Schema of a principal id. */
export const PrincipalIdSchema = z.string().regex(PRINCIPAL_ID_PATTERN, "must be 1-64 characters of [A-Za-z0-9_-]");
/** Schema of a platform name. */
export const PlatformSchema = z.string().regex(PLATFORM_PATTERN, "must be 1-32 characters of [a-z0-9_-]");
/** Schema of a platform user id. */
export const PlatformUserIdSchema = z
  .string()
  .refine(isPlatformUserId, `must be 1-${MAX_PLATFORM_USER_ID_LENGTH} printable characters (no control characters or line breaks)`);
/** Schema of a display name. */
export const DisplayNameSchema = z
  .string()
  .refine(isDisplayName, `must be 1-${MAX_DISPLAY_NAME_LENGTH} printable characters (no control characters or line breaks)`);
