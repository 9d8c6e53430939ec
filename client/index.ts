/**
 * `astrid-daemon/client`: the client SDK. `connect()` opens one connection to the daemon (see docs/client.md).
 * `DaemonClient`, the lower-level connection it is built on, stays exported for existing users.
 */
import { AstridClient } from "./astrid-client";
import type { ClientOptions } from "./connect-options";

export { AstridClient, MAX_REMEMBERED_SESSIONS, type ConnectionEvent, type PlatformUser, type PromptOptions } from "./astrid-client";
export type { ClientOptions, ReconnectOptions } from "./connect-options";
export { Turn, MAX_QUEUED_TURN_EVENTS } from "./turn";
export * from "./turn-events";
export { DaemonClient, type ConnectOptions, type KernelReply } from "../protocol/client";
export { AstridError, isAstridError, ERROR_CODES, type ErrorCode } from "../protocol/errors";
export type { IpcMessage, IpcPayload } from "../protocol/ipc-message";

/** Connects to the daemon (the session token of `$ASTRID_HOME` unless `token`, `credential` or `tokenFile`). */
export function connect(options: ClientOptions = {}): Promise<AstridClient> {
  return AstridClient.connect(options);
}
