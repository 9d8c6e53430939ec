/**
 * The management router (reference §5.1): reads `KernelRequest`s from `astrid.v1.request.*` and answers on the
 * matching `astrid.v1.response.*` topic — to the requesting connection only, with its `request_id` echoed.
 * Malformed requests get an `Error` reply instead of silence. Every request needs its §5.2 capability for the
 * caller principal (rate limit → authorization → audit, allow and deny alike → handler). Requests run
 * concurrently, so a slow reload never blocks a status query; reloads serialise among themselves.
 */
import { AstridError, isAstridError } from "../protocol/errors";
import { guestView } from "../protocol/ipc-message";
import {
  KV_LIST_DEFAULT_LIMIT,
  OPERATOR_KV_SCOPE,
  errorResponse,
  parseKernelRequest,
  requestIdOf,
  responsePayload,
  type DaemonStatus,
  type KernelRequest,
  type KernelResponse,
} from "../protocol/kernel-request";
import { METHOD_CAPABILITIES } from "../protocol/required-capabilities";
import { CLIENT_DISCONNECT_TOPIC, REQUEST_TOPIC_PATTERN, responseTopicFor } from "../protocol/topics";
import type { BusEvent, EventBus } from "./bus";
import type { Logger } from "./logger";
import type { AuditLog } from "./audit-log";
import type { CapabilityChecker, Decision } from "./principals/authorizer";
import { callerPrincipal } from "./principals/principals";
import { RateLimiter } from "./rate-limiter";
import type { McpServers } from "./mcp/server-manager";
import type { Vfs } from "./vfs/vfs";
import type { ClientInfo } from "./socket-server";

/** Who asked: the connection for socket clients, else the principal of the publishing capsule. */
function callerOf(event: BusEvent): string {
  return event.origin !== undefined ? `conn:${event.origin}` : `principal:${event.message.principal ?? "default"}`;
}

/** What an audit entry records of a request's parameters: where it acted, never a value. */
function auditedParams(request: KernelRequest): Record<string, unknown> | undefined {
  switch (request.method) {
    case "KvGet":
    case "KvSet":
    case "KvDelete":
      return { scope: clip(request.params.scope ?? OPERATOR_KV_SCOPE), key: clip(request.params.key) };
    case "KvList":
      return { scope: clip(request.params.scope ?? OPERATOR_KV_SCOPE), prefix: clip(request.params.prefix ?? "") };
    case "InstallCapsule":
      return { source: clip(request.params.source), workspace: request.params.workspace };
    case "SetMode":
      return { mode: request.params.mode };
    case "McpTools":
      return { server: clip(request.params.server) };
    case "McpCall":
      return { server: clip(request.params.server), tool: clip(request.params.tool) };
    case "RemoveCapsule":
      return { name: clip(request.params.name) };
    case "CallTool":
      return { capsule: clip(request.params.capsule), tool: clip(request.params.tool) };
    case "VfsDiff":
    case "VfsCommit":
    case "VfsDiscard":
      return { principal: request.params.principal ?? "default" };
    default:
      return undefined;
  }
}

/** Longest request string an audit entry keeps (the entry is written before the request is validated). */
const AUDITED_STRING_CHARS = 256;

/** `s`, or its first AUDITED_STRING_CHARS characters with how long it really was. */
function clip(s: string): string {
  return s.length <= AUDITED_STRING_CHARS ? s : `${s.slice(0, AUDITED_STRING_CHARS)}… (${s.length} chars)`;
}

/** Largest value a KvGet reply also carries as text (beside base64), so that a reply stays far inside a frame. */
const KV_TEXT_REPLY_BYTES = 1024 * 1024;
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/** The value as text when it is valid UTF-8 and small enough to send twice; else null (read `base64`). */
function asText(value: Uint8Array): string | null {
  if (value.byteLength > KV_TEXT_REPLY_BYTES) return null;
  try {
    return strictUtf8.decode(value);
  } catch {
    return null;
  }
}

/** What the router asks of the kernel. */
export interface ManagementHost {
  status(): DaemonStatus;
  /** ListClients: every connected client. */
  clients(): ClientInfo[];
  capsuleNames(): string[];
  commands(): Array<{ name: string; description: string; provider_capsule: string }>;
  capsuleMetadata(): Array<{ name: string; interceptor_events: string[]; [extra: string]: unknown }>;
  reloadCapsules(): Promise<void>;
  /** Installs a local capsule directory (into the workspace's capsules when `workspace`). */
  installCapsule(source: string, workspace: boolean): Promise<unknown>;
  kvGet(scope: string, key: string): Promise<Uint8Array | null>;
  kvSet(scope: string, key: string, value: Uint8Array): Promise<void>;
  kvList(scope: string, prefix: string, page: { after?: string; limit?: number }): Promise<string[]>;
  /** KvDelete: true when the key existed. */
  kvDelete?(scope: string, key: string): Promise<boolean>;
  /** SetMode: switches idle behaviour; resolves with the mode it had before. */
  setMode?(mode: "persistent" | "ephemeral"): "persistent" | "ephemeral";
  /** Begins graceful shutdown after the reply has been handed to the socket. */
  shutdown(reason: string): void;
  /** The MCP servers: McpList, McpTools, McpCall. */
  mcp?: Pick<McpServers, "list" | "tools" | "run">;
  /** The VFS: VfsDiff, VfsCommit, VfsDiscard (a principal's staged workspace writes). */
  vfs?: Pick<Vfs, "diff" | "commit" | "discard">;
  /** RemoveCapsule: drains, unloads and deletes an installed or workspace capsule (never a bundled one). */
  removeCapsule?(name: string): Promise<unknown>;
  /**
   * CallTool: runs one capsule's tool for `principal` (the request's bus `seq` is the message the tool acts on);
   * resolves with `{content, is_error}`.
   */
  callTool?(capsule: string, tool: string, args: Record<string, unknown>, on: { principal: string; caller: string; seq: number }): Promise<unknown>;
}

/** Routes management requests to the host. */
export class ManagementRouter {
  private readonly limiter = new RateLimiter();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly bus: EventBus,
    private readonly host: ManagementHost,
    private readonly logger: Logger,
    private readonly kernelSourceId: string,
    private readonly audit: AuditLog | undefined,
    /** Decides every request's capability (reference §8.6) for the caller principal. */
    private readonly principals: CapabilityChecker,
  ) {
    const unsubscribeRequests = bus.subscribe(REQUEST_TOPIC_PATTERN, (event) => void this.handle(event));
    const unsubscribeDisconnects = bus.subscribe(CLIENT_DISCONNECT_TOPIC, ({ origin }) => {
      if (origin !== undefined) this.limiter.forget(`conn:${origin}`);
    });
    this.unsubscribe = () => {
      unsubscribeRequests();
      unsubscribeDisconnects();
    };
  }

  /** Stops routing. */
  close(): void {
    this.unsubscribe();
  }

  private handle(event: BusEvent): void {
    const { message } = event;
    // The guest view of a raw_json payload is the payload minus `type`; reading the fields in place avoids a copy.
    const body = message.payload;
    const requestId = requestIdOf(body.type === "raw_json" ? body : guestView(body));
    // Reference §5.1: the principal the kernel stamped; a missing or invalid one is `default`.
    const principal = callerPrincipal(message.principal);
    const caller = callerOf(event);
    const reply = (response: KernelResponse) =>
      this.bus.publish({
        topic: responseTopicFor(message.topic),
        payload: responsePayload(response, requestId),
        source_id: this.kernelSourceId,
        // A socket client's reply goes to its connection only; a capsule's never reaches the socket at all.
        ...(event.origin !== undefined ? { target: event.origin } : { internal: true as const }),
      });
    const refuse = (method: string, capability: string | null, why: string, code?: string) =>
      this.audit?.request({ method, caller, principal, capability, authorization: { type: "denied", reason: why }, error: why, ...(code !== undefined ? { code } : {}) });
    if (body.type !== "raw_json") {
      refuse("(not raw_json)", null, "payload is not raw_json", "ASTRID_ERR_REQUEST_INVALID");
      reply(errorResponse("ASTRID_ERR_REQUEST_INVALID",
        'a management request must be a raw_json object, e.g. {"type":"raw_json","method":"GetStatus"}'));
      return;
    }
    let request: KernelRequest;
    try {
      request = parseKernelRequest(body).request;
    } catch (err) {
      const e = err as AstridError;
      this.logger.warn("malformed management request", { topic: message.topic, error: e.message });
      refuse(typeof body.method === "string" ? body.method.slice(0, 64) : "(none)", null, e.message, e.code);
      reply(errorResponse(e.code, e.message));
      return;
    }
    const capability = METHOD_CAPABILITIES[request.method]!;
    // Reference §5.1: rate limit, then authorization, then the audit entry, then the handler.
    const admitted = this.limiter.admit(caller, principal, request.method);
    if (!admitted.ok) {
      const text = `Rate limited: max ${admitted.limit} ${request.method} requests per minute${admitted.scope === "principal" ? ` for principal ${principal}` : ""}`;
      refuse(request.method, capability, text, "ASTRID_ERR_RATE_LIMITED");
      reply(errorResponse("ASTRID_ERR_RATE_LIMITED", text));
      return;
    }
    const decided = (decision: Decision) => {
      if (!decision.allowed) {
        // A refused request uses no rate budget (the reference's §11 item 5).
        this.limiter.release(caller, principal, request.method);
        this.logger.warn("management request denied", { method: request.method, principal, reason: decision.reason });
        refuse(request.method, capability, decision.reason, decision.code);
        reply(errorResponse(decision.code, decision.reason));
        return;
      }
      // The entry is written (queued) once the handler has answered, with its real outcome: a request the handler
      // refused (a read-only scope, a missing capsule) is recorded as that failure and its code, not as admitted.
      const audited = (response: KernelResponse) =>
        this.audit?.request({
          method: request.method, caller, principal, capability,
          authorization: { type: "system", reason: decision.reason, via: decision.via }, params: auditedParams(request),
          ...(response.status === "Error" ? { error: response.data, code: response.code } : {}),
        });
      this.run(request, requestId, caller, (response) => {
        audited(response);
        reply(response);
      }, principal, message.seq);
    };
    // Synchronous when the caller's profile is cached, so a status query is not held up by a promise.
    const decision = this.principals.check(principal, capability);
    if (decision instanceof Promise) {
      decision.then(decided, (err: unknown) => {
        this.logger.error("authorization failed", { method: request.method, principal, error: String(err) });
        decided({ allowed: false, reason: `permission denied for principal ${principal}: missing capability ${capability}`, code: "ASTRID_ERR_PERMISSION_DENIED", why: "unusable" });
      });
    } else {
      decided(decision);
    }
  }

  private run(request: KernelRequest, requestId: string | undefined, caller: string, reply: (r: KernelResponse) => void, principal = "default", seq = 0): void {
    if (this.logger.isDebugEnabled()) this.logger.debug("management request", { method: request.method, caller, request_id: requestId });
    const fail = (err: unknown) => {
      // A coded refusal is the caller's mistake, not the daemon's: a warning; anything else is an error.
      const level = isAstridError(err) && err.code !== "ASTRID_ERR_INTERNAL" ? "warn" : "error";
      this.logger.log(level, "management request failed", { method: request.method, error: String(err) });
      reply(isAstridError(err) ? errorResponse(err.code, err.message) : errorResponse("ASTRID_ERR_INTERNAL", `internal error: ${String(err)}`));
    };
    try {
      const response = this.dispatch(request, caller, principal, seq);
      if (response instanceof Promise) {
        response.then((r) => this.finish(request, r, reply), fail);
      } else {
        this.finish(request, response, reply);
      }
    } catch (err) {
      fail(err);
    }
  }

  private mcp(): NonNullable<ManagementHost["mcp"]> {
    if (!this.host.mcp) throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", "MCP servers are not available in this daemon");
    return this.host.mcp;
  }

  private finish(request: KernelRequest, response: KernelResponse, reply: (r: KernelResponse) => void): void {
    reply(response);
    if (request.method === "Shutdown") this.host.shutdown(request.params.reason ?? "shutdown request");
  }

  /** Answers synchronously where it can; only the slow methods return a promise. */
  private dispatch(request: KernelRequest, caller: string, principal: string, seq: number): KernelResponse | Promise<KernelResponse> {
    switch (request.method) {
      case "GetStatus":
        return { status: "Status", data: this.host.status() };
      case "ListClients":
        return { status: "Success", data: this.host.clients() };
      case "ListCapsules":
        return { status: "Success", data: this.host.capsuleNames() };
      case "GetCommands":
        return { status: "Commands", data: this.host.commands() };
      case "GetCapsuleMetadata":
        return { status: "CapsuleMetadata", data: this.host.capsuleMetadata() };
      case "ReloadCapsules": {
        return this.host.reloadCapsules().then(() => ({ status: "Success", data: { status: "reloaded" } }));
      }
      case "Shutdown":
        return { status: "Success", data: { status: "shutting_down" } };
      case "InstallCapsule":
        return this.host.installCapsule(request.params.source, request.params.workspace).then((data) => ({ status: "Success", data }));
      case "ApproveCapability":
        return errorResponse("ASTRID_ERR_NOT_IMPLEMENTED", "ApproveCapability is not available yet");
      case "KvGet": {
        const { scope = OPERATOR_KV_SCOPE, key } = request.params;
        return this.host.kvGet(scope, key).then((value) => ({
          status: "Success",
          data: value === null ? null : { value: asText(value), base64: Buffer.from(value).toString("base64") },
        }));
      }
      case "KvSet": {
        const { scope = OPERATOR_KV_SCOPE, key, value, encoding = "utf8" } = request.params;
        if (scope.startsWith("system:")) {
          return errorResponse("ASTRID_ERR_KV_SCOPE_READONLY", `${scope} belongs to the kernel: system scopes cannot be written with KvSet (they can be read)`);
        }
        return this.host.kvSet(scope, key, Buffer.from(value, encoding)).then(() => ({ status: "Success", data: { status: "stored" } }));
      }
      case "KvDelete": {
        const { scope = OPERATOR_KV_SCOPE, key } = request.params;
        // The same rule as KvSet: the kernel's own scopes are read-only over the socket.
        if (scope.startsWith("system:")) {
          return errorResponse("ASTRID_ERR_KV_SCOPE_READONLY", `${scope} belongs to the kernel: system scopes cannot be written with KvDelete (they can be read)`);
        }
        if (!this.host.kvDelete) return errorResponse("ASTRID_ERR_NOT_IMPLEMENTED", "KvDelete is not available in this daemon");
        return this.host.kvDelete(scope, key).then((existed) => ({ status: "Success", data: { status: existed ? "deleted" : "absent", deleted: existed } }));
      }
      case "SetMode": {
        if (!this.host.setMode) return errorResponse("ASTRID_ERR_NOT_IMPLEMENTED", "SetMode is not available in this daemon");
        const previous = this.host.setMode(request.params.mode);
        return { status: "Success", data: { mode: request.params.mode, previous, changed: previous !== request.params.mode } };
      }
      case "KvList": {
        // Paginated: at most `limit` keys (one more is read to know whether a next page exists).
        const { scope = OPERATOR_KV_SCOPE, prefix = "", cursor, limit = KV_LIST_DEFAULT_LIMIT } = request.params;
        return this.host.kvList(scope, prefix, { ...(cursor !== undefined ? { after: cursor } : {}), limit: limit + 1 }).then((keys) => {
          if (keys.length <= limit) return { status: "Success", data: keys };
          const page = keys.slice(0, limit);
          return { status: "Success", data: page, next_cursor: page[page.length - 1]! };
        });
      }
      case "McpList":
        return { status: "Success", data: this.mcp().list() };
      case "McpTools":
        return this.mcp().tools(request.params.server).then((tools) => ({ status: "Success", data: tools }));
      case "McpCall": {
        // The operator's own call, audited like a capsule's (server, tool, arguments' hash, outcome, duration).
        const { server, tool, arguments: args = {} } = request.params;
        return this.mcp().run(server, { op: "call_tool", tool, args }, { principal, caller }).then((data) => ({ status: "Success", data }));
      }
      case "RemoveCapsule": {
        if (!this.host.removeCapsule) return errorResponse("ASTRID_ERR_NOT_IMPLEMENTED", "RemoveCapsule is not available in this daemon");
        return this.host.removeCapsule(request.params.name).then((data) => ({ status: "Success", data }));
      }
      case "CallTool": {
        // The operator's own call of a capsule's tool: the tool acts for the caller's principal, like a capsule's call.
        if (!this.host.callTool) return errorResponse("ASTRID_ERR_NOT_IMPLEMENTED", "CallTool is not available in this daemon");
        const { capsule, tool, arguments: args = {} } = request.params;
        return this.host.callTool(capsule, tool, args, { principal, caller, seq }).then((data) => ({ status: "Success", data }));
      }
      case "VfsDiff":
        return this.vfs().diff(request.params.principal ?? "default").then((data) => ({ status: "Success", data }));
      case "VfsCommit":
      case "VfsDiscard": {
        // The outcome (which paths) gets its own audit entry beside the request's admission.
        const target = request.params.principal ?? "default";
        const change = request.method === "VfsCommit" ? "commit" : "discard";
        const vfs = this.vfs();
        return (change === "commit" ? vfs.commit(target) : vfs.discard(target)).then(
          (paths) => {
            this.audit?.vfs(change, { principal: target, paths, caller });
            return { status: "Success", data: change === "commit" ? { committed: paths } : { discarded: paths } };
          },
          (err: unknown) => {
            this.audit?.vfs(change, { principal: target, paths: [], caller, error: String((err as Error).message ?? err) });
            throw err;
          },
        );
      }
    }
  }

  private vfs(): NonNullable<ManagementHost["vfs"]> {
    if (!this.host.vfs) throw new AstridError("ASTRID_ERR_NOT_IMPLEMENTED", "the VFS is not available in this daemon");
    return this.host.vfs;
  }
}
