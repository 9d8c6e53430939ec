/**
 * The `approval.*` and `elicit.*` host calls: a capsule asks people. `approval.request` asks the people in the
 * session the capsule acts in (kernel/approvals/approval-broker.ts); `elicit.ask` asks the operator for a value
 * during the install or upgrade hook (elicit-broker.ts), and a `secret` answer is stored encrypted for that
 * capsule (secret-store.ts), readable back with `elicit.hasSecret` / `elicit.secret`. No manifest entry is needed:
 * a person decides each question. See docs/approvals.md.
 */
import path from "node:path";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { AlwaysAllowances, SessionAllowances } from "../approvals/allowances";
import { ApprovalBroker, cleanText, type ApprovalOutcome } from "../approvals/approval-broker";
import { ElicitBroker, type ElicitField } from "../approvals/elicit-broker";
import { SecretStore } from "../approvals/secret-store";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";

/** Longest `action`, in characters (after control characters are removed). */
export const MAX_ACTION_CHARS = 256;
/** Longest `resource`, in characters. */
export const MAX_RESOURCE_CHARS = 1024;
/** Longest `reason`, in characters. */
export const MAX_REASON_CHARS = 1024;
/** A secret's (or any elicited field's) key: what `hasSecret`/`secret` name it by. */
const KEY_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
/** How often a capsule waiting for a person is told apart from a hung one (see keepAwake). */
const KEEPALIVE_MS = 250;

const ApprovalArgs = z.object({ action: z.string(), resource: z.string(), reason: z.string().optional() });
const FieldArgs = z.object({
  type: z.enum(["text", "secret", "select", "array"]),
  key: z.string().regex(KEY_PATTERN, "1–128 characters of A-Z a-z 0-9 _ . -"),
  description: z.string().max(1024).optional(),
  options: z.array(z.string().min(1).max(256)).min(1).max(64).optional(),
  default: z.string().max(4096).optional(),
}).superRefine((f, ctx) => {
  if (f.type === "select" && f.options === undefined) ctx.addIssue({ code: "custom", message: "a select needs options", path: ["options"] });
  if (f.type !== "select" && f.options !== undefined) ctx.addIssue({ code: "custom", message: "only a select has options", path: ["options"] });
  if (f.type === "secret" && f.default !== undefined) ctx.addIssue({ code: "custom", message: "a secret has no default", path: ["default"] });
  if (f.type === "select" && f.default !== undefined && !f.options?.includes(f.default)) ctx.addIssue({ code: "custom", message: "the default must be one of the options", path: ["default"] });
});

/** AskService: approvals, elicitation, capsule secrets. */
export class AskService implements HostService {
  private readonly approvals: ApprovalBroker;
  private readonly elicits: ElicitBroker;
  private readonly secrets: SecretStore;
  /** Runs waiting for a person, with how many questions each has open. */
  private readonly waiting = new Map<CapsuleRun, number>();
  private keepalive: NodeJS.Timeout | undefined;

  constructor(private readonly host: HostContext) {
    const { bus, logger, audit, audience, workspace, home } = host;
    const workspaceCapsules = path.join(workspace, ".astrid", "capsules") + path.sep;
    this.approvals = new ApprovalBroker({
      bus, logger, audit, audience, workspace,
      sessions: new SessionAllowances(),
      always: new AlwaysAllowances(path.join(home.root, "var", "allowances.json"), logger),
      isWorkspaceCapsule: (run) => run.record.dir.startsWith(workspaceCapsules),
      timeoutMs: host.approvalTimeoutMs ?? 60_000,
    });
    this.elicits = new ElicitBroker({ bus, logger, audience, timeoutMs: host.elicitTimeoutMs ?? 120_000 });
    this.secrets = new SecretStore(path.join(home.keysDir, "secrets.key"), host.storage);
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    switch (call.call) {
      case "approval.request":
        return this.approval(call, args[0]);
      case "elicit.ask":
        return this.elicit(call, args[0]);
      case "elicit.has_secret":
        return this.secrets.has(call.run.record.name, secretKey(call.call, args[0]));
      case "elicit.secret":
        return this.secrets.get(call.run.record.name, secretKey(call.call, args[0]));
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown call ${call.call}`);
    }
  }

  endRun(run: CapsuleRun): void {
    this.approvals.endRun(run);
    this.elicits.endRun(run);
    this.waiting.delete(run);
  }

  async close(): Promise<void> {
    this.approvals.close();
    this.elicits.close();
    clearInterval(this.keepalive);
    this.keepalive = undefined;
  }

  private async approval(call: HostCall, raw: unknown): Promise<ApprovalOutcome> {
    const parsed = ApprovalArgs.safeParse(raw);
    if (!parsed.success) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "approval.request needs {action: string, resource: string, reason?: string}");
    const action = cleanText(parsed.data.action).trim();
    const resource = cleanText(parsed.data.resource).trim();
    const reason = parsed.data.reason === undefined ? undefined : cleanText(parsed.data.reason).trim();
    if (action.length === 0 || action.length > MAX_ACTION_CHARS) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `approval.request: action must be 1–${MAX_ACTION_CHARS} printable characters (got ${action.length})`);
    }
    if (resource.length > MAX_RESOURCE_CHARS) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `approval.request: resource must be at most ${MAX_RESOURCE_CHARS} characters (got ${resource.length})`);
    }
    if (reason !== undefined && reason.length > MAX_REASON_CHARS) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `approval.request: reason must be at most ${MAX_REASON_CHARS} characters (got ${reason.length})`);
    }
    return this.whileWaiting(call.run, () => this.approvals.request({
      run: call.run,
      principal: call.principal,
      ...(call.sessionId !== undefined ? { sessionId: call.sessionId } : {}),
      action,
      resource,
      ...(reason ? { reason } : {}),
    }));
  }

  private async elicit(call: HostCall, raw: unknown): Promise<unknown> {
    const { run } = call;
    const capsule = run.record.name;
    if (!run.inLifecycleHook) {
      throw new AstridError("ASTRID_ERR_ELICIT_NOT_ALLOWED", `${capsule}: elicit.ask is only allowed in the install and upgrade hooks`);
    }
    const parsed = FieldArgs.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `elicit.ask: ${issue.path.join(".") || "field"}: ${issue.message}`);
    }
    const field: ElicitField = { ...parsed.data, ...(parsed.data.description !== undefined ? { description: cleanText(parsed.data.description) } : {}) };
    const audit = (outcome: string) => this.host.audit.capsule("elicit", capsule, { principal: run.owner, key: field.key, field_type: field.type, outcome });
    let reply;
    try {
      reply = await this.whileWaiting(run, () => this.elicits.ask(run, field));
    } catch (err) {
      audit((err as AstridError).code ?? "failed");
      throw err;
    }
    if (field.type !== "secret") {
      audit("answered");
      return reply;
    }
    // Only the key name is ever recorded; the value goes straight to the encrypted store.
    await this.secrets.put(capsule, field.key, "value" in reply ? reply.value : reply.values.join("\n"));
    audit("secret_stored");
    return { ok: true };
  }

  /**
   * Runs `ask` while the hung-handler watchdog looks away: a handler waiting for a person (up to the approval or
   * elicit timeout) is not hung, so its clock is held at "now" while any question of the run is open.
   */
  private async whileWaiting<T>(run: CapsuleRun, ask: () => Promise<T>): Promise<T> {
    this.waiting.set(run, (this.waiting.get(run) ?? 0) + 1);
    this.keepalive ??= setInterval(() => this.keepAwake(), KEEPALIVE_MS);
    try {
      return await ask();
    } finally {
      const left = (this.waiting.get(run) ?? 1) - 1;
      if (left > 0) this.waiting.set(run, left);
      else this.waiting.delete(run);
      // The handler gets a full handler budget again for what it does with the answer.
      if (run.outstanding > 0) run.oldestUnacked = Date.now();
      if (this.waiting.size === 0) {
        clearInterval(this.keepalive);
        this.keepalive = undefined;
      }
    }
  }

  private keepAwake(): void {
    const now = Date.now();
    for (const run of this.waiting.keys()) if (run.outstanding > 0) run.oldestUnacked = now;
  }
}

function secretKey(call: string, raw: unknown): string {
  if (typeof raw !== "string" || !KEY_PATTERN.test(raw)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: key must be 1–128 characters of A-Z a-z 0-9 _ . -`);
  }
  return raw;
}
