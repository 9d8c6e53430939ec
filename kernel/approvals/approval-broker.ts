/**
 * Approval requests: a capsule asks the people in the session it acts in whether it may do something. The kernel
 * answers at once from an allowance when one matches; otherwise it publishes `approval_required` on
 * `astrid.v1.approval` (reaching only the connections in that session of that principal) and waits for the first
 * valid `approval_response` on `astrid.v1.approval.response.<request_id>` from a connection of the same principal
 * in that session. Answers from anyone else are ignored (and logged). No answer in time is a denial (`timeout`);
 * no session, or nobody in it, is a denial at once (`deny`). Every decision is audited.
 */
import { randomUUID } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import { NIL_UUID, type IpcPayload } from "../../protocol/ipc-message";
import { APPROVAL_RESPONSE_PREFIX, APPROVAL_TOPIC } from "../../protocol/topics";
import type { AuditLog } from "../audit-log";
import type { BusEvent, EventBus } from "../bus";
import type { Audience } from "../capsules/host-call";
import type { CapsuleRun } from "../capsules/capsule-run";
import type { Logger } from "../logger";
import type { AllowanceKey, AlwaysAllowances, SessionAllowances } from "./allowances";

/** A person's decision, or `timeout` when nobody gave one in time. */
export type ApprovalDecision = "approve" | "approve_session" | "approve_always" | "deny" | "timeout";
/** What `approval.request` resolves with. */
export interface ApprovalOutcome {
  approved: boolean;
  decision: ApprovalDecision;
}

/** The answers a person may give, in the order clients should offer them. */
export const APPROVAL_OPTIONS = ["approve", "approve_session", "approve_always", "deny"] as const;
/** Most open approval questions of one capsule; more are refused with ASTRID_ERR_RATE_LIMITED. */
export const MAX_PENDING_PER_CAPSULE = 16;
/** Most open approval questions in the daemon. */
export const MAX_PENDING = 1024;

/** One question, as the host service hands it over (already validated and cleaned). */
export interface ApprovalAsk {
  run: CapsuleRun;
  principal: string;
  sessionId?: string;
  action: string;
  resource: string;
  reason?: string;
}

interface Pending {
  ask: ApprovalAsk;
  capsule: string;
  requestId: string;
  timer: NodeJS.Timeout;
  resolve: (outcome: ApprovalOutcome) => void;
  reject: (err: Error) => void;
}

/** What the broker needs of the kernel. */
export interface ApprovalBrokerOptions {
  bus: EventBus;
  logger: Logger;
  audit: AuditLog;
  audience: Audience | undefined;
  sessions: SessionAllowances;
  always: AlwaysAllowances;
  /** The workspace root the daemon serves (workspace capsules' allowances are scoped to it). */
  workspace: string;
  /** True for a capsule loaded from the workspace: its `approve_always` is remembered for this workspace only. */
  isWorkspaceCapsule: (run: CapsuleRun) => boolean;
  timeoutMs: number;
}

/** Asks people, remembers what they allowed. */
export class ApprovalBroker {
  private readonly pending = new Map<string, Pending>();
  private readonly perCapsule = new Map<string, number>();
  private readonly unsubscribe: () => void;
  private closed = false;

  constructor(private readonly o: ApprovalBrokerOptions) {
    this.unsubscribe = o.bus.subscribe(`${APPROVAL_RESPONSE_PREFIX}*`, (event) => this.onAnswer(event));
  }

  /** Questions waiting for an answer. */
  get size(): number {
    return this.pending.size;
  }

  /** Decides one request: from an allowance, else by asking; resolves with the outcome (never rejects for a denial). */
  async request(ask: ApprovalAsk): Promise<ApprovalOutcome> {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is shutting down");
    const capsule = ask.run.record.name;
    const key: AllowanceKey = { principal: ask.principal, capsule, action: ask.action, resource: ask.resource };
    if (ask.sessionId !== undefined && this.o.sessions.has(key, ask.sessionId)) {
      return this.decided(ask, { approved: true, decision: "approve_session" }, "session allowance");
    }
    await this.o.always.load();
    if (ask.run.ended) throw new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule stopped");
    const allowance = this.o.always.take(key, this.o.workspace);
    if (allowance) return this.decided(ask, { approved: true, decision: "approve_always" }, "always allowance");
    if (ask.sessionId === undefined) return this.decided(ask, { approved: false, decision: "deny" }, "no session to ask (the capsule is not handling a message of a session)");
    if ((this.o.audience?.sessionMembers(ask.principal, ask.sessionId) ?? 0) === 0) {
      return this.decided(ask, { approved: false, decision: "deny" }, "nobody is connected in the session");
    }
    const mine = this.perCapsule.get(capsule) ?? 0;
    if (mine >= MAX_PENDING_PER_CAPSULE || this.pending.size >= MAX_PENDING) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED",
        `${capsule}: at most ${MAX_PENDING_PER_CAPSULE} approval questions of one capsule (and ${MAX_PENDING} in all) may wait at once`);
    }
    const requestId = randomUUID();
    const outcome = await new Promise<ApprovalOutcome>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(requestId, { approved: false, decision: "timeout" }), this.o.timeoutMs);
      this.pending.set(requestId, { ask, capsule, requestId, timer, resolve, reject });
      this.perCapsule.set(capsule, mine + 1);
      const payload = {
        type: "approval_required",
        request_id: requestId,
        action: ask.action,
        resource: ask.resource,
        reason: `Capsule '${capsule}' requests approval${ask.reason ? `: ${ask.reason}` : ""}`,
        capsule,
        session_id: ask.sessionId,
        options: [...APPROVAL_OPTIONS],
      };
      // Session routing: the payload's session_id and the message's principal pick the connections it reaches.
      this.o.bus.publish({ topic: APPROVAL_TOPIC, payload: payload as unknown as IpcPayload, source_id: NIL_UUID, principal: ask.principal });
    });
    return outcome;
  }

  /** The run ended: its open questions are withdrawn (the call fails; nobody is left to tell). */
  endRun(run: CapsuleRun): void {
    for (const p of [...this.pending.values()]) {
      if (p.ask.run === run) this.fail(p, new AstridError("ASTRID_ERR_CAPSULE_UNAVAILABLE", `${p.capsule} stopped before its approval request was answered`));
    }
  }

  /** The daemon is stopping: every open question fails with ASTRID_ERR_SHUTTING_DOWN. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    for (const p of [...this.pending.values()]) this.fail(p, new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is shutting down"));
  }

  private onAnswer(event: BusEvent): void {
    const { message, origin } = event;
    const requestId = message.topic.slice(APPROVAL_RESPONSE_PREFIX.length);
    const p = this.pending.get(requestId);
    const answer = readAnswer(message.payload);
    // Only a socket client may answer (a capsule publishing here would be approving its own request).
    if (origin === undefined) {
      this.o.logger.warn("approval answer not from a client ignored", { request_id: requestId.slice(0, 64), source: message.source_id });
      return;
    }
    if (!p) return this.tell(origin, `no open approval request ${JSON.stringify(requestId.slice(0, 64))} (answered already, timed out, or never asked)`);
    const { principal, sessionId } = p.ask;
    if (message.principal !== principal || sessionId === undefined || this.o.audience?.isSessionMember(origin, principal, sessionId) !== true) {
      this.o.logger.warn("approval answer from outside the session ignored", {
        request_id: requestId, capsule: p.capsule, connection: origin, answered_as: message.principal, asked: principal,
      });
      return;
    }
    if (answer === null || answer.requestId !== requestId) {
      return this.tell(origin, `an approval_response needs "request_id": ${JSON.stringify(requestId)} and "decision": one of ${APPROVAL_OPTIONS.join(", ")}`);
    }
    const key: AllowanceKey = { principal, capsule: p.capsule, action: p.ask.action, resource: p.ask.resource };
    if (answer.decision === "approve_session") this.o.sessions.add(key, sessionId);
    if (answer.decision === "approve_always") this.o.always.add(key, this.o.isWorkspaceCapsule(p.ask.run) ? this.o.workspace : undefined);
    this.settle(requestId, { approved: answer.decision !== "deny", decision: answer.decision }, { connection: origin, ...(answer.reason ? { answer_reason: answer.reason } : {}) });
  }

  /** Tells the client that sent a frame why it was not taken (to that connection only). */
  private tell(conn: number, text: string): void {
    this.o.audience?.refuse(conn, text);
  }

  private settle(requestId: string, outcome: ApprovalOutcome, detail: Record<string, unknown> = {}): void {
    const p = this.take(requestId);
    if (!p) return;
    p.resolve(this.decided(p.ask, outcome, outcome.decision === "timeout" ? `no answer within ${this.o.timeoutMs} ms` : "a person answered", { request_id: requestId, ...detail }));
  }

  private fail(p: Pending, err: Error): void {
    if (!this.take(p.requestId)) return;
    this.o.audit.capsule("approval_denied", p.capsule, {
      principal: p.ask.principal, action: p.ask.action, resource: p.ask.resource, decision: "withdrawn", request_id: p.requestId, reason: err.message,
      ...(p.ask.sessionId !== undefined ? { session_id: p.ask.sessionId } : {}),
    });
    p.reject(err);
  }

  private take(requestId: string): Pending | undefined {
    const p = this.pending.get(requestId);
    if (!p) return undefined;
    this.pending.delete(requestId);
    clearTimeout(p.timer);
    const left = (this.perCapsule.get(p.capsule) ?? 1) - 1;
    if (left > 0) this.perCapsule.set(p.capsule, left);
    else this.perCapsule.delete(p.capsule);
    return p;
  }

  /** Audits a decision and returns it. */
  private decided(ask: ApprovalAsk, outcome: ApprovalOutcome, how: string, detail: Record<string, unknown> = {}): ApprovalOutcome {
    this.o.audit.capsule(outcome.approved ? "approval_granted" : "approval_denied", ask.run.record.name, {
      principal: ask.principal,
      action: ask.action,
      resource: ask.resource,
      decision: outcome.decision,
      by: how,
      ...(ask.sessionId !== undefined ? { session_id: ask.sessionId } : {}),
      ...detail,
    });
    return outcome;
  }
}

/** A client's `approval_response`, or null when the payload is not one. */
function readAnswer(payload: unknown): { requestId: string; decision: Exclude<ApprovalDecision, "timeout">; reason?: string } | null {
  if (payload === null || typeof payload !== "object") return null;
  const p = payload as Record<string, unknown>;
  if (p.type !== "approval_response" || typeof p.request_id !== "string") return null;
  if (!(APPROVAL_OPTIONS as readonly unknown[]).includes(p.decision)) return null;
  const reason = typeof p.reason === "string" ? cleanText(p.reason).slice(0, 1024) : undefined;
  return { requestId: p.request_id, decision: p.decision as Exclude<ApprovalDecision, "timeout">, ...(reason ? { reason } : {}) };
}

/**
 * Text a capsule or a client wrote, made safe to show and record: control characters (C0, DEL, C1) and the
 * bidirectional overrides that could make a terminal show something else than what is asked are removed.
 */
export function cleanText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, "");
}
