import { guestView, normalizePayload } from "../../../protocol/ipc-message";

describe("host normalisation (reference §3.5)", () => {
  it("keeps raw_json and well-formed known variants, filling serde defaults", () => {
    expect(normalizePayload({ type: "raw_json", method: "GetStatus" })).toEqual({ type: "raw_json", method: "GetStatus" });
    expect(normalizePayload({ type: "user_input", text: "hi" })).toEqual({ type: "user_input", text: "hi", session_id: "default" });
    expect(normalizePayload({ type: "connect" })).toEqual({ type: "connect" });
    // The chat turn's two payloads (a fast path): extra fields kept, a copy returned, a misfit still `custom`.
    const prompt = { type: "user_input", text: "hi", session_id: "s1", context: { action: "cancel_turn" }, extra: 1 };
    expect(normalizePayload(prompt)).toEqual(prompt);
    expect(normalizePayload(prompt)).not.toBe(prompt);
    expect(normalizePayload({ type: "agent_response", text: "a", session_id: "s1" })).toEqual({ type: "custom", data: { type: "agent_response", text: "a", session_id: "s1" } });
    expect(normalizePayload({ type: "agent_response", text: "a", session_id: "s1", is_final: true })).toEqual({ type: "agent_response", text: "a", session_id: "s1", is_final: true });
  });

  it("turns unknown tags, missing tags, non-objects and ill-fitting variants into custom", () => {
    expect(normalizePayload({ method: "GetStatus" })).toEqual({ type: "custom", data: { method: "GetStatus" } });
    expect(normalizePayload({ type: "nope", x: 1 })).toEqual({ type: "custom", data: { type: "nope", x: 1 } });
    expect(normalizePayload([1, 2])).toEqual({ type: "custom", data: [1, 2] });
    expect(normalizePayload("text")).toEqual({ type: "custom", data: "text" });
    expect(normalizePayload({ type: "user_input", text: 5 })).toEqual({ type: "custom", data: { type: "user_input", text: 5 } });
  });

  it("gives capsules the untagged guest view of custom and raw_json only", () => {
    expect(guestView({ type: "custom", data: [1] })).toEqual([1]);
    expect(guestView({ type: "raw_json", a: 1 })).toEqual({ a: 1 });
    expect(guestView({ type: "user_input", text: "x", session_id: "s" })).toEqual({ type: "user_input", text: "x", session_id: "s" });
  });
});
