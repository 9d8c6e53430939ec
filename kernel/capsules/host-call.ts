/**
 * What a capsule's host calls beyond the bus share: the context of one call (which capsule, for which principal, in
 * which session) and the one permission check every gated call goes through. A gated call (fs, http, process, kv)
 * is allowed only when the capsule's manifest allows it **and** the principal it acts for holds the matching
 * capability; each denial is audited with capsule, principal, capability and target. With
 * `--audit-permissions` every check, allowed or not, is recorded too, so `astrid capsule permissions` can say
 * which manifest entries a capsule needs.
 */
import { AstridError } from "../../protocol/errors";
import type { SyscallName } from "../../protocol/capsule-messages";
import type { z } from "zod";
import type { AuditLog } from "../audit-log";
import type { AstridHome } from "../home";
import type { Logger } from "../logger";
import type { CapabilityChecker } from "../principals/authorizer";
import type { Profile } from "../principals/profiles";
import type { EventBus } from "../bus";
import type { StorageClient } from "../storage-client";
import type { McpServers } from "../mcp/server-manager";
import type { CapsuleRun } from "./capsule-run";

/** The manifest entry kinds a gated call is checked against (the `[capabilities]` keys). */
export type ManifestEntryKind = "fs_read" | "fs_write" | "net" | "host_process" | "kv" | "mcp" | "model" | "identity" | "net_connect" | "net_bind" | "net_tcp_bind" | "net_udp";

/** One permission check, as a host service asks it. */
export interface PermissionCheck {
  /** Which manifest list the call needs an entry in. */
  kind: ManifestEntryKind;
  /** What the call touches, as the manifest entry would name it (a path, a host, a command, a key). */
  target: string;
  /** Whether some entry of that list covers the target (the service knows the list's matching rules). */
  allowedByManifest: boolean;
  /**
   * The capability the principal must hold (CAPSULE_HOST_CAPABILITIES); null when the call touches only the
   * principal's own data (its KV scope in this capsule), which the manifest alone gates.
   */
  capability: string | null;
}

/** One call of a capsule, as a host service sees it. */
export interface HostCall {
  readonly run: CapsuleRun;
  readonly call: SyscallName;
  /** The principal the capsule acts for (the message it acts on, else its owner). */
  readonly principal: string;
  /** The session of the message it acts on, when that message named one. */
  readonly sessionId?: string;
  /** The message number the capsule said it acts on (a `trigger_hook` fan-out's own calls have negative ones). */
  readonly seq?: unknown;
  /** Throws ASTRID_ERR_CAPABILITY_DENIED (manifest) or ASTRID_ERR_PERMISSION_DENIED (principal), audited. */
  permit(check: PermissionCheck): Promise<void>;
}

/** A family of host calls (`fs.*`, `http.*`, …): validates its arguments, checks, carries out. */
export interface HostService {
  handle(call: HostCall, args: unknown[]): Promise<unknown>;
  /** The capsule's worker loaded: start what it brings (its MCP servers); a throw fails the start with its message. */
  beginRun?(run: CapsuleRun): Promise<void>;
  /** The capsule's run ended: release what it held (processes, streams, pending questions). */
  endRun?(run: CapsuleRun): void;
  /** The daemon is stopping. */
  close?(): Promise<void>;
}

/** What host services may use of the kernel. */
export interface HostContext {
  home: AstridHome;
  /** The workspace root (absolute): `cwd://`. */
  workspace: string;
  logger: Logger;
  audit: AuditLog;
  bus: EventBus;
  storage: StorageClient;
  principals: CapabilityChecker & { profile(principal: string): Promise<Profile> };
  /** `--audit-permissions`: record every check, allowed or not. */
  auditPermissions: boolean;
  /** Test seams (`ASTRID_TEST_FAULTS=1` only): e.g. DNS overrides for the network guard. */
  testFaults: boolean;
  /** The network guard's seams (ASTRID_TEST_DNS, ASTRID_TEST_PUBLIC_ADDRESSES); honoured only when `testFaults`. */
  netSeams?: { dns: Readonly<Record<string, readonly string[]>>; publicAddresses: readonly string[] };
  /** The daemon socket's session token once written (a capsule's own socket uses the same handshake); else null. */
  sessionToken?: () => Buffer | null;
  /** The MCP servers (kernel/mcp/): the `mcp.*` calls and capsules' own `[[mcp_server]]`s. */
  mcp?: McpServers;
  /** Who is connected (approvals and elicitation ask people); absent: nobody can be asked. */
  audience?: Audience;
  /** How long an approval request waits for a person (ASTRID_APPROVAL_TIMEOUT_MS, default 60 s). */
  approvalTimeoutMs?: number;
  /** How long `elicit.ask` waits for the operator (ASTRID_ELICIT_TIMEOUT_MS, default 120 s). */
  elicitTimeoutMs?: number;
  /** ASTRID_PROCESS_SANDBOX: how host processes are confined (default `auto`: bubblewrap when it works). */
  processSandbox?: "auto" | "bwrap" | "none";
  /** The operator's language-model endpoint and agent choice (OPENAI_*, ASTRID_AGENT_*); absent: none configured. */
  model?: import("../model/model-endpoint").ModelEndpointSettings;
  /** The identity links of platform users to principals (the `identity.*` calls); absent: those calls fail. */
  identity?: {
    links: import("../identity/identity-links").IdentityLinks;
    principalExists(principal: string): Promise<boolean>;
    /** Creates a principal as `astrid agent create` does (kernel/principals/agent-create.ts); absent: refused. */
    createPrincipal?(name: string): Promise<import("../principals/agent-create").CreatedAgent>;
  };
  /** A capsule's stored `[env]` values, read by the capsule loader (a model capsule's endpoint may come from them). */
  storedEnv?: (name: string, dir: string) => Promise<Record<string, string>>;
}

/** Who is connected to the socket, as approvals and elicitation need to know (kernel/socket-server.ts). */
export interface Audience {
  /** How many connections are in `principal`'s session `sessionId`. */
  sessionMembers(principal: string, sessionId: string): number;
  /** True when connection `conn` is in `principal`'s session `sessionId`. */
  isSessionMember(conn: number, principal: string, sessionId: string): boolean;
  /** How many open connections act for `principal`. */
  actingFor(principal: string): number;
  /** True when open connection `conn` acts for `principal`. */
  connectionActsFor(conn: number, principal: string): boolean;
  /** Tells connection `conn` why a frame it sent was not taken (an `astrid.v1.error` frame to it alone). */
  refuse(conn: number, message: string): void;
}

/** Carries out permission checks for host calls: manifest, then principal; audits denials (and, if asked, all). */
export class PermissionGate {
  /** Allowed checks already recorded in --audit-permissions mode, per capsule run (one entry per distinct check). */
  private readonly recorded = new WeakMap<CapsuleRun, Set<string>>();

  constructor(private readonly host: HostContext) {}

  /** A `HostCall` for one call of `run`. */
  callFor(run: CapsuleRun, call: SyscallName, seq: unknown): HostCall {
    const { principal, sessionId } = run.callerFor(seq);
    return {
      run,
      call,
      principal,
      ...(sessionId !== undefined ? { sessionId } : {}),
      seq,
      permit: (check) => this.permit(run, call, principal, check),
    };
  }

  async permit(run: CapsuleRun, call: SyscallName, principal: string, check: PermissionCheck): Promise<void> {
    const name = run.record.name;
    const target = check.target.slice(0, 1024);
    const base = { call, principal, capability: check.capability, manifest: check.kind, target };
    if (!check.allowedByManifest) {
      this.record(name, base, false, `not in ${check.kind}`);
      throw new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `${name}: ${call} of ${JSON.stringify(target)} is not allowed by its manifest (add it to [capabilities] ${check.kind})`);
    }
    if (check.capability === null) {
      if (this.host.auditPermissions) this.allowed(run, base, "manifest");
      return;
    }
    const decision = await this.host.principals.check(principal, check.capability);
    if (!decision.allowed) {
      this.record(name, base, false, decision.reason);
      throw new AstridError("ASTRID_ERR_PERMISSION_DENIED", `${name}: ${call} of ${JSON.stringify(target)}: ${decision.reason}`);
    }
    if (this.host.auditPermissions) this.allowed(run, base, decision.reason);
  }

  /**
   * Records an allowed check in --audit-permissions mode, once per run and distinct (kind, target, principal): a
   * capsule publishing a thousand messages on one topic needs one line in the report, not a thousand audit entries.
   */
  allowed(run: CapsuleRun, detail: { call: string; principal: string; capability: string | null; manifest: string; target: string }, reason: string): void {
    if (!this.host.auditPermissions) return;
    let seen = this.recorded.get(run);
    if (!seen) this.recorded.set(run, (seen = new Set()));
    const key = `${detail.manifest}\u0000${detail.target}\u0000${detail.principal}`;
    if (seen.has(key) || seen.size >= 4096) return;
    seen.add(key);
    this.record(run.record.name, detail, true, reason);
  }

  /** Audits a denial the gate decided elsewhere (ipc ACLs), with the same fields as a gated call's. */
  denied(run: CapsuleRun, detail: { call: string; principal: string; capability: string | null; manifest: string; target: string }, reason: string): void {
    this.record(run.record.name, detail, false, reason);
  }

  /** Audits an uplink capsule's publish for a principal it claims, naming the principal it acts for too. */
  claimed(run: CapsuleRun, detail: { call: string; principal: string; claimed: string; topic: string }): void {
    this.host.audit.capsule("publish_as", run.record.name, { ...detail });
  }

  /** Audits a check: every denial, and with --audit-permissions every allowed one too. */
  private record(capsule: string, detail: Record<string, unknown>, allowed: boolean, reason: string): void {
    if (allowed) this.host.audit.capsule("permission_check", capsule, { ...detail, allowed: true, reason });
    else this.host.audit.capsule("denied", capsule, { ...detail, ...(this.host.auditPermissions ? { allowed: false } : {}), detail: reason });
  }
}

/** `value` as `schema` reads it, or ASTRID_ERR_REQUEST_INVALID naming the call, the field and what is wrong with it. */
export function parseCallArg<T>(schema: z.ZodType<T>, value: unknown, call: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const where = issue.path.length > 0 ? `${issue.path.join(".")}: ` : "";
  throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: ${where}${issue.message}`);
}
