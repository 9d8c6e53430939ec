/**
 * What the kernel records in the audit log: management requests (allowed or refused), client connects, failed
 * authentications and disconnects, capsule lifecycle changes. Recording never blocks or fails the caller: the
 * entry is queued for the next storage batch (no promise per entry) and a failed write is logged by the storage client.
 */
import type { AuditInput } from "../protocol/storage-messages";
import type { StorageClient } from "./storage-client";

/** Capability each management method requires (reference §5.2), recorded with every request. */
export { METHOD_CAPABILITIES } from "../protocol/required-capabilities";

/** How an audited request was authorized: allowed (`system`, with the policy's reason) or refused (`denied`). */
export type RequestAuthorization = { type: "system"; reason: string; via?: string } | { type: "denied"; reason: string };

/** One management or admin request as its audit entry records it. */
export interface AuditedRequest {
  /** The method name (management) or label (admin: `admin.agent.create`, …). */
  method: string;
  /** The connection (`conn:<id>`) or capsule principal (`principal:<p>`) that asked. */
  caller: string;
  /** Whom the request acts for. */
  principal: string;
  /** The capability the request needed (null when it was refused before the method was known). */
  capability: string | null;
  authorization: RequestAuthorization;
  /** Set when the request was refused; the entry then records a failure with this text. */
  error?: string;
  /** Where it acts (never a value); admin requests record their whole `{method, params}`. */
  params?: Record<string, unknown>;
  /** The principal an admin request acts on. */
  target_principal?: string;
}

/** What happened to a client, as its audit entry names it. */
export type ClientEventType = "client_connected" | "client_auth_failed" | "client_disconnected" | "client_claim_denied" | "client_session_denied";

/** What happened to a capsule, as its audit entry names it. */
export type CapsuleChange =
  | "load" | "install" | "upgrade" | "fail" | "restart" | "reload" | "unload" | "denied" | "protocol_violation"
  /** --audit-permissions: a gated call that was allowed (denials are always recorded as `denied`). */
  | "permission_check";

/** Records kernel events into the audit chain. */
export class AuditLog {
  constructor(
    private readonly storage: StorageClient,
    private readonly sessionId: string,
  ) {}

  /** A management or admin request: admitted, or refused with `error`, and how it was authorized (reference §8.1). */
  request(r: AuditedRequest): void {
    this.record({
      principal: r.principal,
      action: {
        type: "admin_request",
        method: r.method,
        required_capability: r.capability,
        ...(r.target_principal !== undefined ? { target_principal: r.target_principal } : {}),
        caller: r.caller,
        ...(r.params ? { params: r.params } : {}),
      },
      authorization: r.authorization,
      outcome: r.error === undefined ? { status: "success", details: null } : { status: "failure", error: r.error },
    });
  }

  /**
   * A client event: `client_connected`, `client_auth_failed`, `client_disconnected`; or a refusal of what a
   * client tried — speaking for a platform its credential does not allow (`client_claim_denied`), joining a session
   * of a principal it may not act for (`client_session_denied`).
   */
  client(type: ClientEventType, connection: number, detail: Record<string, unknown> = {}): void {
    const refused = type === "client_auth_failed" || type === "client_claim_denied" || type === "client_session_denied";
    const reason = String(detail.reason ?? type);
    this.record({
      principal: typeof detail.principal === "string" ? detail.principal : "default",
      action: { type, connection, ...detail },
      authorization: refused ? { type: "denied", reason } : { type: "system", reason: detail.via === "frontend" ? "frontend credential" : "session token" },
      outcome: refused ? { status: "failure", error: reason } : { status: "success", details: null },
    });
  }

  /**
   * A capsule lifecycle change: load, install, upgrade, fail, restart, reload, unload; or a call it was denied, or
   * a malformed message from its worker (`protocol_violation`).
   */
  capsule(change: CapsuleChange, name: string, detail: Record<string, unknown> = {}): void {
    this.record({
      ...(typeof detail.principal === "string" ? { principal: detail.principal } : {}),
      action: { type: "capsule_lifecycle", change, capsule: name, ...detail },
      authorization: { type: "system", reason: "kernel" },
      outcome: change === "fail" || change === "denied" || change === "protocol_violation"
        ? { status: "failure", error: String(detail.reason ?? detail.detail ?? "") }
        : { status: "success", details: null },
    });
  }

  /** An identity event: a platform user provisioned a principal of its own (method `claimed`). */
  identity(change: "provisioned", detail: Record<string, unknown>): void {
    this.record({
      principal: typeof detail.principal === "string" ? detail.principal : "default",
      action: { type: "identity", change, ...detail },
      authorization: { type: "system", reason: "frontend unlinked-user policy" },
      outcome: { status: "success", details: null },
    });
  }

  /**
   * An entry about the log itself, written during boot before anything else and awaited (it must be committed,
   * and signed as its batch's newest entry, before the daemon appends on top): a failure `error`, else a success.
   */
  boot(action: AuditInput["action"], error?: string): Promise<unknown> {
    return this.storage.appendAudit({
      session_id: this.sessionId,
      action,
      authorization: { type: "system", reason: "boot" },
      outcome: error === undefined ? { status: "success", details: null } : { status: "failure", error },
    });
  }

  private record(entry: Omit<AuditInput, "session_id">): void {
    this.storage.recordAudit({ session_id: this.sessionId, ...entry });
  }
}
