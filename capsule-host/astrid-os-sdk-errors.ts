/**
 * `SysError` of the `@astrid-os/sdk` surface: what a capsule written for the reference SDK catches. The reference
 * puts the WIT error tag of the failed host call on `code` (`capability-denied`, `timeout`, `quota`, …) and the
 * origin on `kind`; here the daemon's coded refusal (`ASTRID_ERR_*`) is translated to the tag the reference would
 * have used for the same refusal, and kept as `astridCode` for logs and support.
 */

/** Where an error came from, as the reference classifies it. */
export type SysErrorKind = "HostError" | "JsonError" | "ApiError";

/** The `code` of a call this daemon does not offer to reference-SDK capsules. */
export const UNSUPPORTED = "unsupported";

/** A failed SDK call: `code` is the reference's WIT tag, `astridCode` the daemon's own code when it refused. */
export class SysError extends Error {
  override readonly name = "SysError";
  readonly kind: SysErrorKind;
  readonly code: string | undefined;
  readonly payload: unknown;
  readonly astridCode: string | undefined;

  constructor(kind: SysErrorKind, message: string, options: { code?: string; payload?: unknown; astridCode?: string; cause?: unknown } = {}) {
    super(`[${kind}${options.code ? `:${options.code}` : ""}] ${message}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.code = options.code;
    this.payload = options.payload;
    this.astridCode = options.astridCode;
  }

  /** A host call refused or failed (`code` names why). */
  static host(message: string, code?: string, cause?: unknown): SysError {
    return new SysError("HostError", message, { code, cause });
  }

  /** A value that would not serialise or parse as JSON. */
  static json(message: string, cause?: unknown): SysError {
    return new SysError("JsonError", message, { cause });
  }

  /** A misuse of the SDK itself (a closed handle, an empty key, …). */
  static api(message: string, cause?: unknown): SysError {
    return new SysError("ApiError", message, { cause });
  }
}

/** A call of the reference's surface that has no counterpart here; `why` says what to use instead. */
export function unsupported(call: string, why: string): SysError {
  return new SysError("ApiError", `${call} is not available in this daemon: ${why}`, { code: UNSUPPORTED, astridCode: "ASTRID_ERR_NOT_IMPLEMENTED" });
}

/** The daemon's refusal codes, as the reference's per-domain WIT `error-code` tags. */
const WIT_TAGS: Readonly<Record<string, string>> = {
  ASTRID_ERR_CAPABILITY_DENIED: "capability-denied",
  ASTRID_ERR_PERMISSION_DENIED: "capability-denied",
  ASTRID_ERR_TOPIC_DENIED: "capability-denied",
  ASTRID_ERR_NET_ADDRESS_BLOCKED: "airlock-rejected",
  ASTRID_ERR_TIMEOUT: "timeout",
  ASTRID_ERR_RATE_LIMITED: "rate-limited",
  ASTRID_ERR_REQUEST_INVALID: "invalid-input",
  ASTRID_ERR_MESSAGE_INVALID: "invalid-input",
  ASTRID_ERR_SECRET_KEY_INVALID: "invalid-input",
  ASTRID_ERR_KV_KEY_INVALID: "invalid-key",
  ASTRID_ERR_KV_VALUE_TOO_LARGE: "too-large",
  ASTRID_ERR_VFS_TOO_LARGE: "too-large",
  ASTRID_ERR_MESSAGE_TOO_LARGE: "too-large",
  ASTRID_ERR_HTTP_BODY_TOO_LARGE: "body-too-large",
  ASTRID_ERR_HTTP_FAILED: "connection-error",
  ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS: "redirect-blocked",
  ASTRID_ERR_STORAGE_FULL: "quota",
  ASTRID_ERR_PROCESS_LIMIT: "quota",
  ASTRID_ERR_PROCESS_REGISTRY_FULL: "registry-full",
  ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED: "persist-unsupported",
  ASTRID_ERR_PROCESS_STDIN_CLOSED: "closed",
  ASTRID_ERR_HTTP_STREAM_LIMIT: "quota",
  ASTRID_ERR_NOT_FOUND: "not-found",
  ASTRID_ERR_VFS_PATH_INVALID: "invalid-path",
  ASTRID_ERR_VFS_PATH_ESCAPE: "boundary-escape",
  ASTRID_ERR_VFS_PATH_PROTECTED: "capability-denied",
  ASTRID_ERR_VFS_IO: "io",
  ASTRID_ERR_VFS_EXISTS: "already-exists",
  ASTRID_ERR_VFS_CROSS_ROOT: "cross-vfs",
  ASTRID_ERR_ELICIT_NOT_ALLOWED: "not-in-lifecycle",
  ASTRID_ERR_IDENTITY_ALREADY_LINKED: "already-linked",
  ASTRID_ERR_ELICIT_CANCELLED: "cancelled",
  ASTRID_ERR_NOBODY_TO_ASK: "cancelled",
  ASTRID_ERR_CAPSULE_UNAVAILABLE: "cancelled",
  ASTRID_ERR_NET_CONNECTION_REFUSED: "connection-refused",
  ASTRID_ERR_NET_CONNECTION_RESET: "connection-reset",
  ASTRID_ERR_NET_CLOSED: "closed",
  ASTRID_ERR_NET_ADDRESS_IN_USE: "address-in-use",
  ASTRID_ERR_NET_UNRESOLVABLE: "name-unresolvable",
  ASTRID_ERR_NET_SOCKET_LIMIT: "quota",
  ASTRID_ERR_NET_NOT_TCP: "not-tcp",
};

/** Turns whatever a host call threw into a `SysError` labelled with the SDK call that made it. */
export function toSysError(label: string, err: unknown): SysError {
  if (err instanceof SysError) return err;
  const code = (err as { code?: unknown })?.code;
  const message = String((err as Error)?.message ?? err);
  if (typeof code === "string" && code.startsWith("ASTRID_ERR_")) {
    return new SysError("HostError", `${label}: ${message}`, { code: WIT_TAGS[code] ?? "unknown", payload: message, astridCode: code, cause: err });
  }
  return new SysError("HostError", `${label}: ${message}`, { code: "unknown", payload: message, cause: err });
}

/** Runs a host call, rethrowing its failure as a `SysError`. */
export async function hostCall<T>(label: string, run: () => Promise<T>): Promise<T> {
  try {
    return await run();
  } catch (err) {
    throw toSysError(label, err);
  }
}

/** JSON text of `value`, or a `JsonError` naming the call. */
export function jsonText(label: string, value: unknown): string {
  try {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`${typeof value} is not JSON`);
    return text;
  } catch (err) {
    throw SysError.json(`${label}: ${(err as Error).message}`, err);
  }
}

/** `text` parsed as JSON, or a `JsonError` naming the call. */
export function parseJson<T>(label: string, text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw SysError.json(`${label}: ${(err as Error).message}`, err);
  }
}
