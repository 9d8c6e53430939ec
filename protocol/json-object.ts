/**
 * The zod-free basics of the `IpcMessage` envelope, in a module of their own so that what the CLI loads to talk to
 * the daemon (`protocol/client`) does not load zod (~95 files) with `ipc-message`'s payload schemas.
 */

/** Nil UUID: the default kernel session id and the source of approval/onboarding messages. */
export const NIL_UUID = "00000000-0000-0000-0000-000000000000";

/** True for a plain JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
