/**
 * The one registry of error codes. Every error the daemon, the CLI or the client library reports to a user
 * carries one of these codes; the README's error table is kept in step by `spec/unit/protocol/errors.test.ts`.
 */

/** Each code with the one-line meaning the README shows. */
export const ERROR_CODES = {
  ASTRID_ERR_HOME_INVALID: "ASTRID_HOME (or HOME) is unset, relative, or contains `..`",
  ASTRID_ERR_INVALID_ARGUMENT: "a command-line argument is missing, unknown or invalid (`astrid`; `astrid-daemon`'s unknown flags)",
  ASTRID_ERR_CONFIG_INVALID: "an `ASTRID_*` environment variable or `astrid-daemon` flag has a value it does not allow (the message names it, the value and what is allowed)",
  ASTRID_ERR_SOCKET_PATH_TOO_LONG: "the socket path is 108 bytes or longer (the platform limit)",
  ASTRID_ERR_ALREADY_RUNNING: "another daemon is already serving this ASTRID_HOME",
  ASTRID_ERR_SOCKET_UNAVAILABLE: "the socket path exists but cannot be checked or bound",
  ASTRID_ERR_CLI_CAPSULE_MISSING: "the required `astrid-capsule-cli` capsule was not found or is invalid",
  ASTRID_ERR_MANIFEST_INVALID: "a Capsule.toml failed to parse or validate",
  ASTRID_ERR_CAPSULE_SYNTAX: "a capsule's module has a syntax error (the message gives file:line:column and the line); it loads again once its files change",
  ASTRID_ERR_HANDSHAKE_INVALID: "the first frame was not a valid handshake object",
  ASTRID_ERR_PROTOCOL_MISMATCH: "the client speaks a different protocol_version",
  ASTRID_ERR_AUTH_FAILED: "the handshake token is missing, malformed or wrong",
  ASTRID_ERR_FRONTEND_INVALID: "a frontend credential is invalid: a bad name, platform or policy for `astrid frontend add`, a name already taken, or a malformed file in etc/frontends/ (the message names the file and line)",
  ASTRID_ERR_PLATFORM_DENIED: "a frontend spoke for a platform its credential does not list",
  ASTRID_ERR_HTTP_STREAM_LIMIT: "a capsule opened more than 4 HTTP streams at once (close one first)",
  ASTRID_ERR_IDENTITY_ALREADY_LINKED: "a capsule tried to link a platform user who is linked to another principal (only the operator relinks one: `astrid identity link`)",
  ASTRID_ERR_IDENTITY_UNLINKED: "a frontend's user has no identity link and the frontend's unlinked policy is `refuse`, or an uplink capsule published for a principal no platform user is linked to, or handed in a message from a platform user linked to no principal (link them with `astrid identity link`)",
  ASTRID_ERR_SESSION_DENIED: "the connection tried to join a session of a principal it may not act for",
  ASTRID_ERR_TOO_MANY_CLIENTS: "the daemon already serves its maximum number of clients",
  ASTRID_ERR_FRAME_TOO_LARGE: "a frame's length prefix exceeds the limit (4 KiB handshake, 10 MiB after)",
  ASTRID_ERR_FRAME_INVALID_JSON: "a frame's body is not valid UTF-8 JSON",
  ASTRID_ERR_MESSAGE_INVALID: "a frame is JSON but not a message object with a string `topic`",
  ASTRID_ERR_TOPIC_DENIED: "clients may not publish on this topic (see the ingress allowlist)",
  ASTRID_ERR_REQUEST_INVALID: "a management or admin request is malformed (payload, params, a principal id or request_id)",
  ASTRID_ERR_UNKNOWN_METHOD: "a management or admin request names a method the daemon does not have",
  ASTRID_ERR_RATE_LIMITED: "a rate limit was exceeded: requests of one method per minute from one connection (or from all connections of one principal together, 4× that), or a capsule's publish bytes or messages per second, or its open approval questions",
  ASTRID_ERR_NOT_IMPLEMENTED: "the method exists but is not available yet",
  ASTRID_ERR_SHUTTING_DOWN: "the daemon is shutting down and takes no new work",
  ASTRID_ERR_DAEMON_NOT_RUNNING: "no daemon is listening on this ASTRID_HOME's socket",
  ASTRID_ERR_DAEMON_START_FAILED: "`astrid start` could not bring a daemon to readiness",
  ASTRID_ERR_SLOW_CONSUMER: "the client left its messages unread too long (or too many of them) and was disconnected",
  ASTRID_ERR_CONNECTION_CLOSED: "the connection closed before the reply arrived",
  ASTRID_ERR_TIMEOUT: "no reply arrived before the deadline",
  ASTRID_ERR_RUNTIME_KEY_INVALID: "keys/runtime.key is not a 32-byte Ed25519 seed",
  ASTRID_ERR_STORAGE_CORRUPT: "var/state.db cannot be opened or fails its integrity check (it is never overwritten)",
  ASTRID_ERR_STORAGE_UNAVAILABLE: "the storage worker stopped before answering (it is restarted; retry)",
  ASTRID_ERR_STORAGE_FULL: "the disk holding var/state.db is full: writes are refused until space is freed; reads keep working",
  ASTRID_ERR_HOME_READONLY: "a directory of ASTRID_HOME (var/, run/, log/, …) is read-only: the daemon cannot start on it; `astrid audit verify`, `astrid audit tail` and `astrid logs` still read it",
  ASTRID_ERR_KV_SCOPE_INVALID: "a KV scope is empty, too long, contains NUL or a lone surrogate",
  ASTRID_ERR_KV_SCOPE_READONLY: "system:* KV scopes belong to the kernel: KvSet may not write them",
  ASTRID_ERR_KV_KEY_INVALID: "a KV key or prefix is empty (prefixes may be), too long, contains NUL or a lone surrogate",
  ASTRID_ERR_KV_VALUE_TOO_LARGE: "a KV value is larger than 8 MiB",
  ASTRID_ERR_NOT_FOUND: "the KV key, capsule, path, frontend or identity link asked for does not exist",
  ASTRID_ERR_AUDIT_BROKEN: "the audit chain failed verification (the message names the first bad entry)",
  ASTRID_ERR_AUDIT_NO_ANCHOR: "no signed head of the audit log has been written yet (var/audit-head.json)",
  ASTRID_ERR_CAPABILITY_DENIED: "a capsule called something its Capsule.toml does not allow (the call is audited)",
  ASTRID_ERR_PERMISSION_DENIED: "the caller's principal lacks the capability a request needs, has it revoked, or is disabled (the message says which; the refusal is audited)",
  ASTRID_ERR_PROFILE_INVALID: "a principal's profile (`etc/profiles/<principal>.toml`) is malformed or fails validation (the message names the file, line and key); that principal's requests are denied until it is fixed",
  ASTRID_ERR_GROUPS_INVALID: "`etc/groups.toml` is malformed or defines an invalid group (the daemon does not start; the message names the line)",
  ASTRID_ERR_GROUP_REJECTED: "a group change was refused: a built-in, unknown or duplicate name, or a capability the group may not hold (`group.create rejected: …`)",
  ASTRID_ERR_CAPABILITY_INVALID: "a capability breaks the grammar: `:`-separated segments of A-Z a-z 0-9 _ - or a lone `*`, at most 256 bytes",
  ASTRID_ERR_QUOTAS_INVALID: "QuotaSet's quotas name an unknown quota or a value out of its range (`quotas rejected: …`)",
  ASTRID_ERR_PRINCIPAL_NOT_FOUND: "the principal named has no profile (`principal X does not exist …`)",
  ASTRID_ERR_PRINCIPAL_EXISTS: "AgentCreate names a principal that already has a profile",
  ASTRID_ERR_PRINCIPAL_RESERVED: "the change would create, delete or disable `default`, or revoke its capabilities (it is the operator's)",
  ASTRID_ERR_CAPSULE_UNAVAILABLE: "the capsule's worker stopped before answering a call to it",
  ASTRID_ERR_CAPSULE_INSTALL_FAILED: "an installed capsule did not load (the message says why; its previous copy was restored)",
  ASTRID_ERR_CAPSULE_EXISTS: "`astrid capsule new` found the capsule's directory already there (nothing was written; pick another name or remove it)",
  ASTRID_ERR_CAPSULE_BUNDLED: "`astrid capsule remove` named a capsule that ships with the daemon (bundled ones cannot be removed; install a capsule of the same name to shadow one)",
  ASTRID_ERR_CAPSULE_TEST_FAILED: "`astrid capsule test`: the capsule did not load in the test daemon, or its test failed or ran past `--timeout` (exit 1; the message says which)",
  ASTRID_ERR_TOOL_FAILED: "a capsule's tool answered with `is_error` (`callTool` of `astrid-daemon/testing`; the message holds the tool's answer)",
  ASTRID_ERR_MCP_CONFIG_INVALID: "`etc/servers.toml` is malformed or defines an invalid MCP server (the daemon does not start; the message names the file and line)",
  ASTRID_ERR_MCP_SERVER_UNAVAILABLE: "the MCP server is unknown, not running or failed (the message says why: a missing command, a wrong binary_hash, an exit at start, …)",
  ASTRID_ERR_MCP_CALL_FAILED: "the MCP server answered the request with an error (an unknown tool, invalid arguments, …)",
  ASTRID_ERR_MCP_RESULT_TOO_LARGE: "an MCP server's answer is larger than 8 MiB; it is dropped and the server keeps serving",
  ASTRID_ERR_HOOK_DEPTH: "a capsule's `trigger-hook` was made from inside interceptors that other hook calls started, more than 4 deep (an interceptor that triggers hooks must not chain further)",
  ASTRID_ERR_ELICIT_NOT_ALLOWED: "a capsule called `elicit.ask` outside its install or upgrade hook (ask for settings there, or use `[env]`)",
  ASTRID_ERR_ELICIT_CANCELLED: "the person asked for a value (`elicit.ask`) cancelled instead of answering",
  ASTRID_ERR_NOBODY_TO_ASK: "`elicit.ask` ran while no connection of the capsule's owner was open to answer (install it with `astrid capsule install` while connected)",
  ASTRID_ERR_SECRET_KEY_INVALID: "keys/secrets.key is not a 32-byte key, or a stored capsule secret does not decrypt with it (the key was replaced)",
  ASTRID_ERR_VFS_PATH_INVALID: "a capsule's file path is empty, too long, holds a NUL byte or names an unknown scheme (use `cwd://`, `home://` or `/tmp/`)",
  ASTRID_ERR_VFS_PATH_ESCAPE: "a capsule's file path leaves its root: a `..` above it, an absolute path other than `/tmp`, or a symlink pointing outside (refused and audited)",
  ASTRID_ERR_VFS_PATH_PROTECTED: "a capsule tried to write where capsules are installed (`cwd://.astrid/capsules`, `home://.local/capsules`); install capsules with `astrid capsule install`",
  ASTRID_ERR_VFS_TOO_LARGE: "a file read or written through the VFS is larger than 10 MB, or a principal's staged workspace writes exceed their limit (commit or discard them)",
  ASTRID_ERR_VFS_WRONG_TYPE: "a file call on a directory, a directory call on a file, or a path through a file",
  ASTRID_ERR_VFS_IO: "the filesystem refused a VFS operation (permissions, a full disk; the message has the system's reason)",
  ASTRID_ERR_VFS_COMMIT_FAILED: "some staged workspace writes could not be applied (the message names them; they stay staged, the others were committed)",
  ASTRID_ERR_VFS_EXISTS: "a capsule's `fs-hard-link` names a link path that already exists (remove it first)",
  ASTRID_ERR_VFS_CROSS_ROOT: "a capsule's `fs-hard-link` joins two roots (`cwd://`, `home://`, `/tmp`); both paths must be in the same one",
  ASTRID_ERR_MESSAGE_TOO_LARGE: "a message is larger than its limit (a web page's prompt over `astrid web --max-prompt-bytes`, an SDK message over the daemon's 10 MiB frame limit); nothing was sent",
  ASTRID_ERR_WEB_REMOTE_REFUSED: "`astrid web --host` names an address that is not loopback and `--allow-remote` was not given",
  ASTRID_ERR_WEB_TOO_MANY_TABS: "`astrid web` already serves its maximum number of open pages (`--max-tabs`); close one and reload",
  ASTRID_ERR_DISCORD_TOKEN_INVALID: "`astrid discord` has no bot token (ASTRID_DISCORD_TOKEN or --token-file), or one that is not a Discord bot token or that Discord refused",
  ASTRID_ERR_DISCORD_UNREACHABLE: "`astrid discord` could not connect to Discord's gateway (no network, or Discord is down); nothing was bridged",
  ASTRID_ERR_PROCESS_LIMIT: "a capsule already runs 8 background processes (or 16 `process.run` calls, or its principal's `max_background_processes`); stop one with `process.kill`",
  ASTRID_ERR_PROCESS_STDIN_CLOSED: "a capsule wrote to a host process's stdin after it was closed (by the capsule, because the process was started without `keep_stdin_open`, or because it exited)",
  ASTRID_ERR_PROCESS_REGISTRY_FULL: "a capsule already keeps 8 persistent processes for this principal (running, or exited and not released); release or stop one",
  ASTRID_ERR_PROCESS_PERSIST_UNSUPPORTED: "a persistent process was asked for where the daemon cannot keep one contained: host processes run without the bubblewrap sandbox (ASTRID_PROCESS_SANDBOX=none, or bubblewrap cannot run here)",
  ASTRID_ERR_PROCESS_START_FAILED: "a host process could not start: its command is not on PATH or not executable, or the sandbox asked for (ASTRID_PROCESS_SANDBOX=bwrap) cannot run here",
  ASTRID_ERR_NET_ADDRESS_BLOCKED: "a capsule's `http.request` (or one of its redirects) or socket call (`net`) named a host that is, or resolves to, an address capsules may not reach: private, loopback, link-local, cloud metadata, multicast or reserved (the message names the host, the address and its range)",
  ASTRID_ERR_HTTP_FAILED: "a capsule's `http.request` could not complete: the name does not resolve, the connection was refused or reset, or TLS failed (the message has the reason)",
  ASTRID_ERR_NET_CONNECTION_REFUSED: "a capsule's `net` connect was refused by the peer (nothing listens on that port)",
  ASTRID_ERR_NET_CONNECTION_RESET: "a capsule's `net` stream was reset by its peer",
  ASTRID_ERR_NET_CLOSED: "a capsule's `net` stream, listener or UDP socket is closed (by the peer, by the capsule, or because its run ended)",
  ASTRID_ERR_NET_ADDRESS_IN_USE: "a capsule's `net` bind named a local address and port something else already holds",
  ASTRID_ERR_NET_UNRESOLVABLE: "a capsule's `net` connect or lookup named a host that does not resolve",
  ASTRID_ERR_NET_SOCKET_LIMIT: "a capsule already holds 8 streams (outbound and accepted together), 4 TCP listeners or 4 UDP sockets; close one first",
  ASTRID_ERR_NET_NOT_TCP: "a capsule asked a Unix-domain stream for a TCP-only option or address",
  ASTRID_ERR_NET_FAILED: "a capsule's `net` call failed otherwise (an option this host cannot set, an unconnected UDP send, an I/O error; the message says which)",
  ASTRID_ERR_HTTP_BODY_TOO_LARGE: "a capsule's `http.request` body, or the response's body, is larger than 10 MiB (the response is aborted)",
  ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS: "a capsule's `http.request` was redirected more than 5 times",
  ASTRID_ERR_HTTP_QUEUE_FULL: "a capsule has 4 HTTP requests in flight and 64 more waiting; further ones are refused until some finish",
  ASTRID_ERR_MODEL_NOT_CONFIGURED: "no language-model endpoint is configured (set OPENAI_BASE_URL, and OPENAI_API_KEY if the endpoint needs one), or the capsule's manifest lacks `[capabilities] model = true`",
  ASTRID_ERR_MODEL_AUTH: "the language-model endpoint refused the credentials (HTTP 401 or 403): check OPENAI_API_KEY",
  ASTRID_ERR_MODEL_RATE_LIMITED: "the language-model endpoint is rate limiting (HTTP 429); the message says when to retry if the endpoint said so",
  ASTRID_ERR_MODEL_UNAVAILABLE: "the language-model endpoint could not be reached, did not answer in time (ASTRID_AGENT_TIMEOUT_MS), or answered with an error status (5xx, 404 for an unknown model; the message has its text)",
  ASTRID_ERR_MODEL_STREAM: "the language-model endpoint's streamed answer broke off or held a chunk that is not valid chat-completions JSON",
  ASTRID_ERR_AGENT_UNKNOWN: "a prompt (`astrid chat --agent`) named an agent that is not a loaded agent capsule (the message lists the loaded ones)",
  ASTRID_ERR_INTERNAL: "an unexpected internal error (the daemon log has the details)",
} as const;

/** A stable, documented error code. */
export type ErrorCode = keyof typeof ERROR_CODES;

const BRAND = Symbol.for("astrid.error");

/** An error with a stable code; the brand survives worker boundaries and jest's module sandboxes. */
export class AstridError extends Error {
  readonly code: ErrorCode;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "AstridError";
    this.code = code;
  }
}

/** True for an AstridError from any realm (worker, jest sandbox) — never use instanceof across realms. */
export function isAstridError(value: unknown): value is AstridError {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
}

/** True when `value` is one of the registered codes. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}
