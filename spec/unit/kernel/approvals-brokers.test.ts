/**
 * The approval and elicit brokers with the real in-process bus and a scripted audience: who is asked, bounds on
 * open questions, timeouts, and what endRun/close do to questions still open.
 */
import { EventBus } from "../../../kernel/bus";
import { AlwaysAllowances, SessionAllowances } from "../../../kernel/approvals/allowances";
import { ApprovalBroker, MAX_PENDING_PER_CAPSULE } from "../../../kernel/approvals/approval-broker";
import { ElicitBroker } from "../../../kernel/approvals/elicit-broker";
import type { AuditLog } from "../../../kernel/audit-log";
import type { Audience } from "../../../kernel/capsules/host-call";
import type { CapsuleRun } from "../../../kernel/capsules/capsule-run";
import type { Logger } from "../../../kernel/logger";
import type { IpcPayload } from "../../../protocol/ipc-message";

const logger = { debug() {}, info() {}, warn() {}, error() {} } as unknown as Logger;

function setup(members = 1, timeoutMs = 60_000) {
  const bus = new EventBus();
  const audits: Array<{ change: string; detail: Record<string, unknown> }> = [];
  const audit = { capsule: (change: string, _name: string, detail: Record<string, unknown>) => audits.push({ change, detail }) } as unknown as AuditLog;
  const refused: string[] = [];
  const audience: Audience = {
    sessionMembers: () => members,
    isSessionMember: (conn) => conn === 7,
    actingFor: () => members,
    connectionActsFor: (conn) => conn === 7,
    refuse: (_c, m) => void refused.push(m),
  };
  const always = new AlwaysAllowances("/nonexistent-dir-for-test/allowances.json", logger);
  const broker = new ApprovalBroker({
    bus, logger, audit, audience, workspace: "/ws", sessions: new SessionAllowances(), always, isWorkspaceCapsule: () => false, timeoutMs,
  });
  const elicits = new ElicitBroker({ bus, logger, audience, timeoutMs });
  const asked: Array<Record<string, unknown>> = [];
  bus.subscribe(["astrid.v1.approval", "astrid.v1.elicit"], (e) => void asked.push(e.message.payload as Record<string, unknown>));
  return { bus, audits, broker, elicits, asked, refused };
}

const run = (name = "c") => ({ record: { name, dir: "/x" }, owner: "default", ended: false, outstanding: 0, oldestUnacked: 0 }) as unknown as CapsuleRun;
const answer = (bus: EventBus, id: string, payload: Record<string, unknown>, origin?: number, principal = "default", topic = "approval") =>
  bus.publish({ topic: `astrid.v1.${topic}.response.${id}`, payload: payload as IpcPayload, source_id: "x", principal, ...(origin !== undefined ? { origin } : {}) });
const tick = () => new Promise((r) => setImmediate(r));
/** Waits until `n` questions were published (the first lookup reads the allowances file first). */
async function asked(list: unknown[], n: number): Promise<void> {
  for (let i = 0; i < 200 && list.length < n; i++) await new Promise((r) => setTimeout(r, 5));
}

describe("approval broker", () => {
  it("no session, or nobody in it: denied at once without asking", async () => {
    const t = setup(0);
    await expect(t.broker.request({ run: run(), principal: "default", action: "a", resource: "r" })).resolves.toEqual({ approved: false, decision: "deny" });
    await expect(t.broker.request({ run: run(), principal: "default", sessionId: "s", action: "a", resource: "r" })).resolves.toEqual({ approved: false, decision: "deny" });
    expect(t.asked).toEqual([]);
    expect(t.audits.map((a) => a.detail.by)).toEqual(["no session to ask (the capsule is not handling a message of a session)", "nobody is connected in the session"]);
  });

  it("answers from a capsule (no origin) or another connection are not taken; the member's is", async () => {
    const t = setup();
    const outcome = t.broker.request({ run: run(), principal: "default", sessionId: "s", action: "a", resource: "r" });
    await asked(t.asked, 1);
    const id = String(t.asked[0]!.request_id);
    answer(t.bus, id, { type: "approval_response", request_id: id, decision: "approve" });
    answer(t.bus, id, { type: "approval_response", request_id: id, decision: "approve" }, 8);
    answer(t.bus, id, { type: "approval_response", request_id: id, decision: "approve" }, 7, "bob");
    expect(t.broker.size).toBe(1);
    answer(t.bus, id, { type: "approval_response", request_id: id, decision: "nope" }, 7);
    expect(t.refused).toHaveLength(1);
    answer(t.bus, id, { type: "approval_response", request_id: id, decision: "approve_session" }, 7);
    await expect(outcome).resolves.toEqual({ approved: true, decision: "approve_session" });
    // Remembered for this session.
    await expect(t.broker.request({ run: run(), principal: "default", sessionId: "s", action: "a", resource: "r" })).resolves.toEqual({ approved: true, decision: "approve_session" });
    expect(t.asked).toHaveLength(1);
    t.broker.close();
  });

  it(`a capsule may have at most ${MAX_PENDING_PER_CAPSULE} open questions; endRun and close withdraw them`, async () => {
    const t = setup();
    const r = run("flood");
    const open = Array.from({ length: MAX_PENDING_PER_CAPSULE }, (_, i) => t.broker.request({ run: r, principal: "default", sessionId: "s", action: "a", resource: String(i) }));
    open.forEach((p) => p.catch(() => undefined));
    await asked(t.asked, MAX_PENDING_PER_CAPSULE);
    await expect(t.broker.request({ run: r, principal: "default", sessionId: "s", action: "a", resource: "more" })).rejects.toMatchObject({ code: "ASTRID_ERR_RATE_LIMITED" });
    // Another capsule still may ask.
    const other = t.broker.request({ run: run("other"), principal: "default", sessionId: "s", action: "a", resource: "x" });
    other.catch(() => undefined);
    await asked(t.asked, MAX_PENDING_PER_CAPSULE + 1);
    t.broker.endRun(r);
    for (const p of open) await expect(p).rejects.toMatchObject({ code: "ASTRID_ERR_CAPSULE_UNAVAILABLE" });
    expect(t.broker.size).toBe(1);
    t.broker.close();
    t.broker.close();
    await expect(other).rejects.toMatchObject({ code: "ASTRID_ERR_SHUTTING_DOWN" });
    await expect(t.broker.request({ run: r, principal: "default", sessionId: "s", action: "a", resource: "r" })).rejects.toMatchObject({ code: "ASTRID_ERR_SHUTTING_DOWN" });
  });

  it("no answer within the timeout is a denial with decision timeout", async () => {
    const t = setup(1, 100);
    await expect(t.broker.request({ run: run(), principal: "default", sessionId: "s", action: "a", resource: "r" })).resolves.toEqual({ approved: false, decision: "timeout" });
    expect(t.broker.size).toBe(0);
  });
});

describe("elicit broker", () => {
  it("nobody of the owner connected: ASTRID_ERR_NOBODY_TO_ASK at once", async () => {
    const t = setup(0);
    await expect(t.elicits.ask(run(), { type: "text", key: "k" })).rejects.toMatchObject({ code: "ASTRID_ERR_NOBODY_TO_ASK" });
  });

  it("times out with ASTRID_ERR_TIMEOUT; cancels with ASTRID_ERR_ELICIT_CANCELLED; one question per capsule at a time", async () => {
    const t = setup(1, 100);
    await expect(t.elicits.ask(run(), { type: "text", key: "k" })).rejects.toMatchObject({ code: "ASTRID_ERR_TIMEOUT" });
    const t2 = setup(1);
    const r = run();
    const q = t2.elicits.ask(r, { type: "array", key: "k" });
    await tick();
    await expect(t2.elicits.ask(r, { type: "text", key: "k2" })).rejects.toMatchObject({ code: "ASTRID_ERR_RATE_LIMITED" });
    const id = String(t2.asked[0]!.request_id);
    answer(t2.bus, id, { type: "elicit_response", request_id: id, values: [1] }, 7, "default", "elicit");
    expect(t2.refused).toHaveLength(1);
    answer(t2.bus, id, { type: "elicit_response", request_id: id }, 7, "default", "elicit");
    await expect(q).rejects.toMatchObject({ code: "ASTRID_ERR_ELICIT_CANCELLED" });
  });
});
