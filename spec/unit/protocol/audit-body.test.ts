/** The audit entry text the worker stores is built from the kernel's pre-serialised body; it must be the same bytes
 * as serialising the whole entry, so entries written before and after that change read and verify alike. */
import { auditBody, type AuditInput } from "../../../protocol/storage-messages";
import { entryText } from "../../../storage/audit-chain";
import { checkAuditBodies } from "../../../workers/storage/audit-chain";

const whole = (seq: number, id: string, timestamp: string, previous: string, input: AuditInput) =>
  JSON.stringify({
    seq,
    id,
    timestamp,
    session_id: input.session_id,
    ...(input.principal !== undefined ? { principal: input.principal } : {}),
    action: input.action,
    authorization: input.authorization,
    outcome: input.outcome,
    previous_hash: previous,
  });

describe("audit entry text", () => {
  const cases: AuditInput[] = [
    {
      session_id: "00000000-0000-0000-0000-000000000000",
      principal: "default",
      action: { type: "admin_request", method: "GetStatus", required_capability: "system:status", caller: "conn:1" },
      authorization: { type: "not_required", reason: "capability profiles are not enforced yet" },
      outcome: { status: "success", details: null },
    },
    {
      session_id: "s",
      action: { type: "capsule_lifecycle", change: "fail", capsule: 'q"uo\\te\u0000\u2028é😀', nested: { list: [1, "two", null] } },
      authorization: { type: "system", reason: "kernel" },
      outcome: { status: "failure", error: "line\nbreak" },
    },
  ];

  it.each(cases)("equals JSON.stringify of the whole entry (%#)", (input) => {
    const args = [42, "0d1b7a3e-6c9f-4f3a-9d0e-1a2b3c4d5e6f", "2026-11-27T19:00:00.123456Z", "ab".repeat(32)] as const;
    const text = entryText(...args, auditBody(input));
    expect(text).toBe(whole(...args, input));
    expect(JSON.parse(text)).toMatchObject({ seq: 42, session_id: input.session_id, previous_hash: args[3] });
  });

  it("matches JSON.stringify of the object form for varied inputs, and refuses what would not serialise as one", () => {
    const strings = ["", "a", 'q"\\', "\u0000\u001f", "\u2028é", "😀", "\ud800", "x".repeat(300)];
    let n = 0;
    for (const s of strings) {
      for (const principal of [undefined, s]) {
        const input: AuditInput = {
          session_id: s, ...(principal !== undefined ? { principal } : {}),
          action: { type: s, n: n++, nested: { list: [s, null, 1.5, true], when: new Date(0) }, gone: undefined },
          authorization: { type: "system" }, outcome: { status: "failure", error: s },
        };
        const { session_id, action, authorization, outcome } = input;
        expect(auditBody(input)).toBe(JSON.stringify({ session_id, ...(principal !== undefined ? { principal } : {}), action, authorization, outcome }));
      }
    }
    const ok = cases[0]!;
    expect(() => auditBody({ ...ok, session_id: undefined as unknown as string })).toThrow(/session_id/);
    expect(() => auditBody({ ...ok, action: undefined as unknown as AuditInput["action"] })).toThrow(/JSON objects/);
    expect(() => auditBody({ ...ok, action: { type: "x", toJSON: () => undefined } as unknown as AuditInput["action"] })).toThrow(/JSON objects/);
  });

  it("refuses a body that auditBody did not make", () => {
    expect(() => checkAuditBodies([auditBody(cases[0]!), "{}"])).toThrow(/auditBody/);
    expect(() => checkAuditBodies(['{"session_id":"s","x":1'])).toThrow(/auditBody/);
    expect(() => checkAuditBodies([auditBody(cases[1]!)])).not.toThrow();
  });
});
