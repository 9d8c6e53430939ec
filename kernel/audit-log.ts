/**
 * What the kernel records in the audit log: management requests (allowed or refused), client connects, failed
 * authentications and disconnects, capsule lifecycle changes. Recording never blocks or fails the caller: the
 * entry is queued for the next storage batch (no promise per entry) and a failed write is logged by the storage client.
 */
import type { AuditInput } from "../protocol/storage-messages";
import type { StorageClient } from "./storage-client";

/** Capability each management method requires (reference §5.2), recorded with every request. */
export { METHOD_CAPABILITIES } from "../protocol/required-capabilities";

/**
 * Read-only management methods whose allowed, successful requests from one connection are coalesced: the first of a
 * run is recorded at once, as any request; the ones that follow within `COALESCE_WINDOW_MS` become one entry that
 * counts them (`coalesced`, `first_at`, `last_at`). A status poller then costs two entries a second, not thousands.
 * Mutating and refused requests are never coalesced (docs/storage-format.md).
 */
export const COALESCED_METHODS: ReadonlySet<string> = new Set(["GetStatus", "ListCapsules", "GetCommands", "GetCapsuleMetadata", "ListClients"]);

/** How long a run of coalesced requests is counted before its entry is written. */
export const COALESCE_WINDOW_MS = 1000;

/** Requests of one method, by one caller for one principal, counted since the run's first (recorded) one. */
interface ReadRun {
  request: AuditedRequest;
  count: number;
  /** Epoch ms of the first and last counted request (formatted only when the entry is written). */
  firstAt: number;
  lastAt: number;
  timer: NodeJS.Timeout;
}

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
  /** The refusal's stable code (`ASTRID_ERR_*`), recorded beside `error`. */
  code?: string;
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
  | "permission_check"
  /** A capsule's approval request was decided (by a person, an allowance, a timeout, or nobody to ask). */
  | "approval_granted" | "approval_denied"
  /** An uplink capsule published for a principal it claims (`ipc.publish_as`): both principals are named. */
  | "publish_as"
  /** A capsule fanned a hook out to other capsules' interceptors (`sys.trigger_hook`): the hook, depth and counts. */
  | "trigger_hook"
  /** A capsule linked or unlinked a platform user (`identity.link` / `identity.unlink`), or created a principal. */
  | "identity_link" | "identity_unlink" | "identity_create_user"
  /** An uplink capsule registered an uplink, or handed in a platform user's message as their principal's prompt. */
  | "uplink_register" | "uplink_send"
  /** An elicitation was answered, cancelled or timed out (a secret's key name only, never its value). */
  | "elicit"
  /** The operator ran one of its tools (`astrid tool call`), or removed it (`astrid capsule remove`). */
  | "tool_call" | "remove";

/** One MCP request as its audit entry records it. */
export interface AuditedMcpCall {
  /** Whom it ran for. */
  principal: string;
  server: string;
  /** `call_tool`, `read_resource` or `get_prompt`. */
  operation: string;
  /** The tool, resource URI or prompt. */
  target: string;
  /** Hex SHA-256 of the arguments' JSON text. */
  args_sha256: string;
  duration_ms: number;
  /** The capsule that asked, or the connection (`conn:<id>`) of an operator's request. */
  capsule?: string;
  caller?: string;
  /** Set when it failed: the coded error. */
  error?: string;
  code?: string;
}

/** One host process as its audit entry records it. */
export interface AuditedProcess {
  capsule: string;
  /** Whom it ran for. */
  principal: string;
  /**
   * `run` (recorded at its end), `spawn` (at its start), `exit` (a spawned one ended); a background process's
   * `write_stdin`, `close_stdin`, `signal`; the persistent tier's calls, and `reap` (the kernel dropped one).
   */
  operation: "run" | "spawn" | "exit" | "write_stdin" | "close_stdin" | "signal" | "list" | "status" | "drain" | "read_since" | "stop" | "release" | "reap";
  /** The command (at most 64 elements of 256 characters), on a start. */
  argv?: string[];
  /** `bwrap` or `none`, on a start. */
  sandbox?: string;
  /** `persistent` for the persistent tier (whose id is never recorded: `id_hash` is). */
  tier?: "persistent";
  id_hash?: string;
  /** What else the operation recorded (bytes written, the signal, a reap's reason), never stdin, env or output. */
  detail?: Record<string, string | number | boolean | null>;
  pid?: number;
  /** A spawned process's id. */
  id?: string;
  exit_code?: number | null;
  signal?: string | null;
  duration_ms?: number;
  /** Why the kernel stopped it (a timeout, process.kill, the capsule's end). */
  stop_reason?: string;
  /** Set when it could not start: the coded error. */
  error?: string;
  code?: string;
}

/** Records kernel events into the audit chain. */
export class AuditLog {
  /** Open runs of coalesced requests, by caller, then by principal and method. */
  private readonly runs = new Map<string, Map<string, ReadRun>>();

  constructor(
    private readonly storage: StorageClient,
    private readonly sessionId: string,
  ) {}

  /**
   * A management or admin request: admitted, or refused with `error`, and how it was authorized (reference §8.1).
   * Read-only ones may be coalesced (`COALESCED_METHODS`); a caller's other entries are never written before the
   * count of its earlier reads, so its entries stay in the order it made the requests.
   */
  request(r: AuditedRequest): void {
    const coalescible = r.error === undefined && r.params === undefined && r.authorization.type === "system" && COALESCED_METHODS.has(r.method);
    const key = `${r.principal}\u0000${r.method}`;
    if (coalescible) {
      const run = this.runs.get(r.caller)?.get(key);
      if (run) {
        const now = Date.now();
        if (run.count === 0) run.firstAt = now;
        run.count++;
        run.lastAt = now;
        return;
      }
    }
    this.flush(r.caller);
    this.recordRequest(r);
    if (coalescible) {
      let byKey = this.runs.get(r.caller);
      if (!byKey) this.runs.set(r.caller, (byKey = new Map()));
      const timer = setTimeout(() => this.flush(r.caller, key), COALESCE_WINDOW_MS);
      timer.unref();
      byKey.set(key, { request: r, count: 0, firstAt: 0, lastAt: 0, timer });
    }
  }

  /** Writes the counts of every open run (at shutdown, before storage closes). */
  flushAll(): void {
    for (const caller of [...this.runs.keys()]) this.flush(caller);
  }

  /** Writes the count of `caller`'s open runs (one run: `key`), and closes them. */
  private flush(caller: string, key?: string): void {
    const byKey = this.runs.get(caller);
    if (!byKey) return;
    for (const [k, run] of byKey) {
      if (key !== undefined && k !== key) continue;
      clearTimeout(run.timer);
      byKey.delete(k);
      if (run.count > 0) this.recordRequest(run.request, { coalesced: run.count, first_at: new Date(run.firstAt).toISOString(), last_at: new Date(run.lastAt).toISOString() });
    }
    if (byKey.size === 0) this.runs.delete(caller);
  }

  private recordRequest(r: AuditedRequest, coalesced?: { coalesced: number; first_at: string; last_at: string }): void {
    this.record({
      principal: r.principal,
      action: {
        type: "admin_request",
        method: r.method,
        required_capability: r.capability,
        ...(r.target_principal !== undefined ? { target_principal: r.target_principal } : {}),
        caller: r.caller,
        ...(r.params ? { params: r.params } : {}),
        ...coalesced,
      },
      authorization: r.authorization,
      outcome: r.error === undefined
        ? { status: "success", details: null }
        : { status: "failure", error: r.error, ...(r.code !== undefined ? { code: r.code } : {}) },
    });
  }

  /**
   * A client event: `client_connected`, `client_auth_failed`, `client_disconnected`; or a refusal of what a
   * client tried — speaking for a platform its credential does not allow (`client_claim_denied`), joining a session
   * of a principal it may not act for (`client_session_denied`).
   */
  client(type: ClientEventType, connection: number, detail: Record<string, unknown> = {}): void {
    this.flush(`conn:${connection}`);
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

  /**
   * A request run on an MCP server (a tool call, a resource read, a prompt) for a capsule or an operator: the
   * server, what ran, the SHA-256 of its arguments (never the arguments), the outcome and how long it took.
   */
  mcp(call: AuditedMcpCall): void {
    const { principal, error, ...detail } = call;
    this.record({
      principal,
      action: { type: "mcp_call", ...detail },
      authorization: { type: "system", reason: call.capsule !== undefined ? "capsule manifest and principal capability" : "management request" },
      outcome: error === undefined ? { status: "success", details: null } : { status: "failure", error },
    });
  }

  /**
   * Staged workspace writes applied (`commit`) or dropped (`discard`) for `principal`, by a capsule (`capsule`) or an
   * operator (`caller`, `conn:<id>`): the paths (at most 100 are listed, `count` has them all) and any failure.
   */
  vfs(change: "commit" | "discard", detail: { principal: string; paths: string[]; capsule?: string; caller?: string; error?: string }): void {
    const { principal, paths, error, ...who } = detail;
    this.record({
      principal,
      action: { type: "vfs", change, ...who, count: paths.length, paths: paths.slice(0, 100) },
      authorization: { type: "system", reason: who.capsule !== undefined ? "capsule manifest fs_write and self:fs:write" : "management request" },
      outcome: error === undefined ? { status: "success", details: null } : { status: "failure", error },
    });
  }

  /**
   * A capsule's host process (`host_process` entry): started (`run`, recorded when it ends; `spawn`, when it
   * starts), ended (`exit`, a spawned one) or failed to start (`error`); with argv, sandbox, exit code and duration.
   */
  process(entry: AuditedProcess): void {
    const { principal, error, ...detail } = entry;
    this.record({
      principal,
      action: { type: "host_process", ...detail },
      authorization: { type: "system", reason: "capsule manifest host_process and self:process:run" },
      outcome: error === undefined ? { status: "success", details: null } : { status: "failure", error },
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
    // Entries that could not be stored (a full disk) are counted, and the count goes into the chain once writes
    // commit again, before the next entry: a gap in what was recorded is itself recorded.
    const lost = this.storage.takeLostAudit();
    if (lost) {
      this.storage.recordAudit({
        session_id: this.sessionId,
        action: { type: "audit_entries_lost", count: lost.count, since: lost.since },
        authorization: { type: "system", reason: "kernel" },
        outcome: { status: "failure", error: lost.error },
      });
    }
    this.storage.recordAudit({ session_id: this.sessionId, ...entry });
  }
}
