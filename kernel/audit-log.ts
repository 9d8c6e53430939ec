/**
 * What the kernel records in the audit log: management requests (allowed or refused), client connects, failed
 * authentications and disconnects, capsule lifecycle changes. Recording never blocks or fails the caller: the
 * entry is queued for the next storage batch (no promise per entry) and a failed write is logged by the storage client.
 */
import type { AuditInput } from "../protocol/storage-messages";
import type { StorageClient } from "./storage-client";

/** Capability each management method requires (reference §5.2), recorded with every request. */
export const METHOD_CAPABILITIES: Readonly<Record<string, string>> = {
  GetStatus: "system:status",
  ListCapsules: "self:capsule:list",
  GetCommands: "self:capsule:list",
  GetCapsuleMetadata: "self:capsule:list",
  ReloadCapsules: "self:capsule:reload",
  Shutdown: "system:shutdown",
  InstallCapsule: "self:capsule:install",
  ApproveCapability: "self:approval:respond",
  KvGet: "system:kv:read",
  KvSet: "system:kv:write",
  KvList: "system:kv:read",
};

// Capability profiles (reference §8.5–8.6) are not enforced yet; every entry says so rather than claim a grant.
const NOT_ENFORCED = { type: "not_required", reason: "capability profiles are not enforced yet" } as const;

/** What happened to a capsule, as its audit entry names it. */
export type CapsuleChange = "load" | "install" | "upgrade" | "fail" | "restart" | "reload" | "unload" | "denied" | "protocol_violation";

/** Records kernel events into the audit chain. */
export class AuditLog {
  constructor(
    private readonly storage: StorageClient,
    private readonly sessionId: string,
  ) {}

  /** A management request: admitted, or refused with `error`; `params` says where it acts (never a value). */
  request(method: string, caller: string, principal: string, error?: string, params?: Record<string, unknown>): void {
    this.record({
      principal,
      action: { type: "admin_request", method, required_capability: METHOD_CAPABILITIES[method] ?? null, caller, ...(params ? { params } : {}) },
      authorization: NOT_ENFORCED,
      outcome: error === undefined ? { status: "success", details: null } : { status: "failure", error },
    });
  }

  /** A client event: `client_connected`, `client_auth_failed`, `client_disconnected`. */
  client(type: "client_connected" | "client_auth_failed" | "client_disconnected", connection: number, detail: Record<string, unknown> = {}): void {
    this.record({
      principal: "default",
      action: { type, connection, ...detail },
      authorization: type === "client_auth_failed" ? { type: "denied", reason: String(detail.reason ?? "") } : { type: "system", reason: "session token" },
      outcome: type === "client_auth_failed" ? { status: "failure", error: String(detail.reason ?? "") } : { status: "success", details: null },
    });
  }

  /**
   * A capsule lifecycle change: load, install, upgrade, fail, restart, reload, unload; or a call it was denied, or
   * a malformed message from its worker (`protocol_violation`).
   */
  capsule(change: CapsuleChange, name: string, detail: Record<string, unknown> = {}): void {
    this.record({
      action: { type: "capsule_lifecycle", change, capsule: name, ...detail },
      authorization: { type: "system", reason: "kernel" },
      outcome: change === "fail" || change === "denied" || change === "protocol_violation"
        ? { status: "failure", error: String(detail.reason ?? detail.detail ?? "") }
        : { status: "success", details: null },
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
