/**
 * The admin router (reference §5.4): agents, quotas, groups and capability grants, on `astrid.v1.admin.*`, answered
 * on `astrid.v1.admin.response.*` — to the requesting connection only, `request_id` echoed. Each request: parse
 * (a malformed one gets a coded `Error`, not the reference's silence) → authorization for the caller principal →
 * audit (allow and deny, with `target_principal`) → handler. Changes run one at a time under the admin write lock.
 * Fixes of the reference's §11 item 8: listing every agent needs `agent:list` (with only `self:agent:list` a caller
 * sees itself), and QuotaSet needs `quota:set` even for the caller's own quotas.
 */
import {
  adminAuditLabel,
  adminError,
  adminResponsePayload,
  parseAdminRequest,
  QuotaPatchSchema,
  type AdminRequest,
  type AdminResponse,
  type AgentListEntry,
} from "../protocol/admin-request";
import { assertCapability } from "../protocol/capability";
import { AstridError, isAstridError } from "../protocol/errors";
import { DEFAULT_PRINCIPAL } from "../protocol/identity-names";
import { guestView, isJsonObject } from "../protocol/ipc-message";
import { ADMIN_CAPABILITIES as CAP } from "../protocol/required-capabilities";
import { ADMIN_RESPONSE_TOPIC_PREFIX, ADMIN_TOPIC_PATTERN, adminResponseTopicFor } from "../protocol/topics";
import type { AuditLog } from "./audit-log";
import type { BusEvent, EventBus } from "./bus";
import type { Logger } from "./logger";
import { createAgent } from "./principals/agent-create";
import type { AgentIdentities } from "./principals/agent-identity";
import type { Decision } from "./principals/authorizer";
import { callerPrincipal, type PrincipalRegistry } from "./principals/principals";
import type { Profile } from "./principals/profiles";

/** Longest string an audit entry keeps of a request's params. */
const AUDITED_STRING_CHARS = 256;

/** What a request needs: capabilities tried in order (the first allowed wins), and whom it acts on. */
interface Requirement {
  capabilities: readonly string[];
  target?: string;
}

/**
 * An admin method another module adds (the identity methods of kernel/identity): parsed, authorized, audited and
 * answered exactly like the built-in ones.
 */
export interface AdminExtension {
  /** The audit entry's method label (`admin.identity.link`). */
  label: string;
  /** The capability the caller must hold. */
  capability: string;
  /** The reply's `status` on success. */
  status: string;
  /** Parses `params` (absent counts as `{}`); throws a coded error (ASTRID_ERR_REQUEST_INVALID) when they do not fit. */
  parse(params: unknown): unknown;
  /** Runs the parsed request; its result is the reply's `data`, its AstridError the `Error` reply. */
  run(params: unknown): Promise<unknown>;
  /** The principal the request acts on, for the audit entry. */
  targetPrincipal(params: unknown): string | undefined;
}

/** One method of a table in kernel/identity's shape: a zod-like `schema` and a `handle(deps, params)`. */
export interface AdminMethodSpec<D> {
  capability: string;
  status: string;
  /** The conventional topic after `astrid.v1.admin.`, which also names the audit label. */
  topicSuffix?: string;
  schema: { safeParse(v: unknown): { success: true; data: unknown } | { success: false; error: { issues: Array<{ path: PropertyKey[]; message: string }> } } };
  handle(deps: D, params: never): Promise<unknown>;
  targetPrincipal(params: never): string | undefined;
}

/** A method table bound to its deps, as extensions of the admin router. */
export function bindAdminMethods<D>(specs: Record<string, AdminMethodSpec<D>>, deps: D): Record<string, AdminExtension> {
  return Object.fromEntries(Object.entries(specs).map(([method, spec]) => [method, {
    label: `admin.${spec.topicSuffix ?? method}`,
    capability: spec.capability,
    status: spec.status,
    parse: (params: unknown) => {
      const parsed = spec.schema.safeParse(params ?? {});
      if (parsed.success) return parsed.data;
      const issues = parsed.error.issues.map((i) => `${i.path.length > 0 ? `${i.path.map(String).join(".")}: ` : ""}${i.message}`);
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${method} params are invalid: ${issues.join("; ")}`);
    },
    run: (params: unknown) => spec.handle(deps, params as never),
    targetPrincipal: (params: unknown) => spec.targetPrincipal(params as never),
  }]));
}

/** What the admin router works with. */
export interface AdminRouterOptions {
  bus: EventBus;
  principals: PrincipalRegistry;
  /** The identity links of agents (AgentCreate links, AgentDelete unlinks). */
  identities: AgentIdentities;
  logger: Logger;
  /** `source_id` of the replies. */
  kernelSourceId: string;
  audit?: AuditLog;
  /** More methods, by name (e.g. IdentityLink). */
  extensions?: Record<string, AdminExtension>;
}

/** Routes admin requests to the principals module. */
export class AdminRouter {
  private readonly unsubscribe: () => void;
  private readonly bus: EventBus;
  private readonly principals: PrincipalRegistry;
  private readonly identities: AgentIdentities;
  private readonly logger: Logger;
  private readonly kernelSourceId: string;
  private readonly audit: AuditLog | undefined;
  private readonly extensions: Record<string, AdminExtension>;

  constructor(options: AdminRouterOptions) {
    const { bus, logger } = options;
    this.bus = bus;
    this.logger = logger;
    this.principals = options.principals;
    this.identities = options.identities;
    this.kernelSourceId = options.kernelSourceId;
    this.audit = options.audit;
    this.extensions = options.extensions ?? {};
    this.unsubscribe = bus.subscribe(ADMIN_TOPIC_PATTERN, (event) => {
      // Our own replies live under the same prefix.
      if (event.message.topic.startsWith(ADMIN_RESPONSE_TOPIC_PREFIX)) return;
      this.handle(event).catch((err: unknown) => logger.error("admin request crashed", { topic: event.message.topic, error: String(err) }));
    });
  }

  /** Stops routing. */
  close(): void {
    this.unsubscribe();
  }

  private async handle(event: BusEvent): Promise<void> {
    const { message } = event;
    const body = message.payload;
    const view = body.type === "raw_json" ? body : guestView(body);
    const requestId = isJsonObject(view) && typeof view.request_id === "string" ? view.request_id : undefined;
    const principal = callerPrincipal(message.principal);
    const caller = event.origin !== undefined ? `conn:${event.origin}` : `principal:${principal}`;
    const reply = (response: AdminResponse | { status: string; data: unknown }): void => {
      this.bus.publish({
        topic: adminResponseTopicFor(message.topic),
        payload: adminResponsePayload(response, requestId),
        source_id: this.kernelSourceId,
        // A socket client's reply goes to its connection only; a capsule's never reaches the socket at all.
        ...(event.origin !== undefined ? { target: event.origin } : { internal: true as const }),
      });
    };
    const refuse = (method: string, capability: string | null, why: string, target?: string, params?: Record<string, unknown>) =>
      this.audit?.request({
        method, caller, principal, capability, authorization: { type: "denied", reason: why }, error: why,
        ...(target !== undefined ? { target_principal: target } : {}), ...(params ? { params } : {}),
      });

    if (body.type !== "raw_json") {
      const text = 'an admin request must be a raw_json object, e.g. {"type":"raw_json","method":"AgentList"}';
      refuse("admin.(not raw_json)", null, text);
      return reply(adminError("ASTRID_ERR_REQUEST_INVALID", text));
    }
    if (typeof body.method === "string" && Object.prototype.hasOwnProperty.call(this.extensions, body.method)) {
      return this.handleExtension(body.method, this.extensions[body.method]!, body, { principal, caller, reply, refuse });
    }
    let request: AdminRequest;
    try {
      request = parseAdminRequest(body).request;
    } catch (err) {
      const e = err as AstridError;
      this.logger.warn("malformed admin request", { topic: message.topic, error: e.message });
      refuse(typeof body.method === "string" ? `admin.${body.method.slice(0, 64)}` : "admin.(none)", null, e.message);
      return reply(adminError(e.code, e.message));
    }

    const label = adminAuditLabel(request.method);
    const need = requirement(request, principal);
    const audited = auditedParams(request);
    const { decision, capability } = await this.decide(principal, need.capabilities);
    if (!decision.allowed) {
      this.logger.warn("admin request denied", { method: request.method, principal, reason: decision.reason });
      refuse(label, capability, decision.reason, need.target, audited);
      return reply(adminError(decision.code, decision.reason));
    }
    this.audit?.request({
      method: label, caller, principal, capability,
      authorization: { type: "system", reason: decision.reason, via: decision.via },
      ...(need.target !== undefined ? { target_principal: need.target } : {}), params: audited,
    });
    try {
      reply(await this.dispatch(request, principal, capability));
    } catch (err) {
      const level = isAstridError(err) && err.code !== "ASTRID_ERR_INTERNAL" ? "warn" : "error";
      this.logger.log(level, "admin request failed", { method: request.method, error: String(err) });
      reply(isAstridError(err) ? adminError(err.code, err.message) : adminError("ASTRID_ERR_INTERNAL", `internal error: ${String(err)}`));
    }
  }

  /** An extension's request: the same pipeline (parse → authorize → audit → run) with the extension's parts. */
  private async handleExtension(method: string, ext: AdminExtension, body: Record<string, unknown>, ctx: {
    principal: string;
    caller: string;
    reply: (r: AdminResponse | { status: string; data: unknown }) => void;
    refuse: (method: string, capability: string | null, why: string, target?: string, params?: Record<string, unknown>) => void;
  }): Promise<void> {
    const label = ext.label;
    let params: unknown;
    try {
      if (body.request_id !== undefined && typeof body.request_id !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "request_id must be a string");
      params = ext.parse(body.params);
    } catch (err) {
      const e = isAstridError(err) ? err : new AstridError("ASTRID_ERR_REQUEST_INVALID", String(err));
      ctx.refuse(label, ext.capability, e.message);
      return ctx.reply(adminError(e.code, e.message));
    }
    const target = ext.targetPrincipal(params);
    const audited = auditedParams({ method, params } as unknown as AdminRequest);
    const decision = await this.principals.check(ctx.principal, ext.capability);
    if (!decision.allowed) {
      this.logger.warn("admin request denied", { method, principal: ctx.principal, reason: decision.reason });
      ctx.refuse(label, ext.capability, decision.reason, target, audited);
      return ctx.reply(adminError(decision.code, decision.reason));
    }
    this.audit?.request({
      method: label, caller: ctx.caller, principal: ctx.principal, capability: ext.capability,
      authorization: { type: "system", reason: decision.reason, via: decision.via },
      ...(target !== undefined ? { target_principal: target } : {}), params: audited,
    });
    try {
      ctx.reply({ status: ext.status, data: await ext.run(params) });
    } catch (err) {
      const level = isAstridError(err) && err.code !== "ASTRID_ERR_INTERNAL" ? "warn" : "error";
      this.logger.log(level, "admin request failed", { method, error: String(err) });
      ctx.reply(isAstridError(err) ? adminError(err.code, err.message) : adminError("ASTRID_ERR_INTERNAL", `internal error: ${String(err)}`));
    }
  }

  /**
   * Tries each capability in order: the first allowed wins; a disabled principal, a revoke or an unusable profile
   * ends the search; with none held, the first capability's denial is the answer.
   */
  private async decide(principal: string, capabilities: readonly string[]): Promise<{ decision: Decision; capability: string }> {
    let first: { decision: Decision; capability: string } | undefined;
    for (const capability of capabilities) {
      const decision = await this.principals.check(principal, capability);
      if (decision.allowed || decision.why !== "missing") return { decision, capability };
      first ??= { decision, capability };
    }
    return first!;
  }

  private dispatch(request: AdminRequest, caller: string, capability: string): Promise<AdminResponse> {
    const { principals } = this;
    switch (request.method) {
      case "AgentCreate":
        return this.agentCreate(request.params);
      case "AgentDelete":
        return this.agentDelete(request.params.principal);
      case "AgentEnable":
        return this.agentEnabled(request.params.principal, true);
      case "AgentDisable":
        return this.agentEnabled(request.params.principal, false);
      case "AgentList":
        return this.agentList(capability === CAP.agentList ? undefined : caller);
      case "QuotaSet":
        return this.quotaSet(request.params.principal, request.params.quotas);
      case "QuotaGet":
        return this.mustRead(request.params.principal).then((p) => ({ status: "Quotas", data: { ...p.quotas } }));
      case "GroupCreate": {
        const { name, capabilities, description, unsafe_admin } = request.params;
        return principals.lock.run(() => principals.groups.create({ name, capabilities, unsafe_admin, ...(description !== undefined ? { description } : {}) }))
          .then(() => ok());
      }
      case "GroupDelete":
        return principals.lock.run(() => principals.groups.delete(request.params.name)).then(() => ok());
      case "GroupModify": {
        const { name, ...changes } = request.params;
        return principals.lock.run(() => principals.groups.modify(name, changes)).then(() => ok());
      }
      case "GroupList":
        return Promise.resolve({ status: "GroupList", data: principals.groups.snapshot().list() });
      case "CapsGrant":
        return this.caps("grants", request.params.principal, request.params.capabilities);
      case "CapsRevoke":
        return this.caps("revokes", request.params.principal, request.params.capabilities);
    }
  }

  private async agentCreate(params: { name: string; groups: string[]; grants: string[] }): Promise<AdminResponse> {
    const created = await createAgent({ principals: this.principals, identities: this.identities, logger: this.logger }, params);
    return { status: "Success", data: { ...created } };
  }

  private async agentDelete(principal: string): Promise<AdminResponse> {
    if (principal === DEFAULT_PRINCIPAL) {
      throw new AstridError("ASTRID_ERR_PRINCIPAL_RESERVED",
        "cannot delete the `default` principal — it is the operator's, seeded with group admin at every boot");
    }
    return this.principals.lock.run(async () => {
      await this.mustExist(principal);
      await this.identities.remove(principal);
      await this.principals.profiles.remove(principal);
      this.logger.info("agent deleted", { principal });
      return { status: "Success", data: { principal } };
    });
  }

  private async agentEnabled(principal: string, enabled: boolean): Promise<AdminResponse> {
    if (!enabled && principal === DEFAULT_PRINCIPAL) {
      throw new AstridError("ASTRID_ERR_PRINCIPAL_RESERVED",
        "cannot disable the `default` principal — it is the operator's; disabling it would lock every local client out");
    }
    return this.principals.lock.run(async () => {
      const profile = await this.mustRead(principal);
      const changed = profile.enabled !== enabled;
      if (changed) await this.principals.profiles.write(principal, { ...profile, enabled });
      return { status: "Success", data: { principal, enabled, changed } };
    });
  }

  /** Every principal with a profile file, sorted; only `self`'s entry when given. Unreadable profiles are skipped. */
  private async agentList(self: string | undefined): Promise<AdminResponse> {
    const { profiles } = this.principals;
    const names = (await profiles.principals()).filter((p) => self === undefined || p === self);
    const entries: AgentListEntry[] = [];
    for (const principal of names) {
      try {
        const p = await profiles.read(principal);
        if (p !== null) entries.push({ principal, enabled: p.enabled, groups: p.groups, grants: p.grants, revokes: p.revokes });
      } catch (err) {
        this.logger.warn("AgentList skips an unreadable profile", { principal, error: (err as Error).message });
      }
    }
    return { status: "AgentList", data: entries };
  }

  private async quotaSet(principal: string, quotas: Record<string, unknown>): Promise<AdminResponse> {
    // Validated before the lock is taken (reference §5.4).
    const parsed = QuotaPatchSchema.safeParse(quotas);
    if (!parsed.success) {
      const issues = parsed.error.issues.map((i) => (i.code === "unrecognized_keys" ? `unknown quota ${i.keys.join(", ")}` : `${i.path.join(".")} ${i.message}`));
      throw new AstridError("ASTRID_ERR_QUOTAS_INVALID", `quotas rejected: ${issues.join("; ")}`);
    }
    const patch = Object.fromEntries(Object.entries(parsed.data).filter(([, v]) => v !== undefined));
    return this.principals.lock.run(async () => {
      const profile = await this.mustRead(principal);
      await this.principals.profiles.write(principal, { ...profile, quotas: { ...profile.quotas, ...patch } });
      return { status: "Success", data: { principal } };
    });
  }

  private async caps(field: "grants" | "revokes", principal: string, capabilities: string[]): Promise<AdminResponse> {
    if (capabilities.length === 0) throw new AstridError("ASTRID_ERR_CAPABILITY_INVALID", "capabilities must not be empty");
    for (const c of capabilities) assertCapability(c);
    if (field === "revokes" && principal === DEFAULT_PRINCIPAL) {
      throw new AstridError("ASTRID_ERR_PRINCIPAL_RESERVED",
        "cannot revoke capabilities from the `default` principal — it would lock the operator out (edit etc/profiles/default.toml and restart if you must)");
    }
    return this.principals.lock.run(async () => {
      const profile = await this.mustRead(principal);
      // Appends with de-duplication; a grant never removes a revoke (revokes keep winning).
      const next = dedupe([...profile[field], ...capabilities]);
      await this.principals.profiles.write(principal, { ...profile, [field]: next });
      return { status: "Success", data: { principal, capabilities: next } };
    });
  }

  /** The principal's profile as its file says (uncached); ASTRID_ERR_PRINCIPAL_NOT_FOUND when there is none. */
  private async mustRead(principal: string): Promise<Profile> {
    const profile = await this.principals.profiles.read(principal);
    if (profile === null) throw notFound(principal, this.principals.profiles.pathOf(principal));
    return profile;
  }

  private async mustExist(principal: string): Promise<void> {
    if (!(await this.principals.profiles.exists(principal))) throw notFound(principal, this.principals.profiles.pathOf(principal));
  }
}

function notFound(principal: string, file: string): AstridError {
  return new AstridError("ASTRID_ERR_PRINCIPAL_NOT_FOUND", `principal ${principal} does not exist (no profile.toml at ${file})`);
}

function ok(): AdminResponse {
  return { status: "Success", data: { status: "ok" } };
}

function dedupe(items: readonly string[]): string[] {
  return [...new Set(items)];
}

/** The capabilities a request needs, in the order tried, and the principal it acts on. */
function requirement(request: AdminRequest, caller: string): Requirement {
  switch (request.method) {
    case "AgentCreate":
      return { capabilities: [CAP.agentCreate], target: request.params.name };
    case "AgentDelete":
      return { capabilities: [CAP.agentDelete], target: request.params.principal };
    case "AgentEnable":
      return { capabilities: [CAP.agentEnable], target: request.params.principal };
    case "AgentDisable":
      return { capabilities: [CAP.agentDisable], target: request.params.principal };
    case "AgentList":
      return { capabilities: [CAP.agentList, CAP.agentListSelf] };
    case "QuotaSet":
      return { capabilities: [CAP.quotaSet], target: request.params.principal };
    case "QuotaGet": {
      const target = request.params.principal;
      return { capabilities: target === caller ? [CAP.quotaGetSelf, CAP.quotaGet] : [CAP.quotaGet], target };
    }
    case "GroupCreate":
      return { capabilities: [CAP.groupCreate] };
    case "GroupDelete":
      return { capabilities: [CAP.groupDelete] };
    case "GroupModify":
      return { capabilities: [CAP.groupModify] };
    case "GroupList":
      return { capabilities: [CAP.groupList] };
    case "CapsGrant":
      return { capabilities: [CAP.capsGrant], target: request.params.principal };
    case "CapsRevoke":
      return { capabilities: [CAP.capsRevoke], target: request.params.principal };
  }
}

/** The whole request as its audit entry keeps it (`{method, params}`), strings clipped, nesting cut at 4 levels. */
function auditedParams(request: AdminRequest): Record<string, unknown> {
  const clip = (value: unknown, depth: number): unknown => {
    if (typeof value === "string") return value.length <= AUDITED_STRING_CHARS ? value : `${value.slice(0, AUDITED_STRING_CHARS)}… (${value.length} chars)`;
    if (typeof value !== "object" || value === null) return value;
    if (depth >= 4) return "…";
    if (Array.isArray(value)) return value.map((v) => clip(v, depth + 1));
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [clip(k, depth) as string, clip(v, depth + 1)]));
  };
  return { method: request.method, ...("params" in request ? { params: clip(request.params, 0) } : {}) };
}
