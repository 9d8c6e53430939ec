/**
 * Fuzzing what a socket client sends after the framing: the handshake, the payload normalisation, the publish
 * topic rules, and the management and admin requests. Hostile JSON never crashes a parser, every refusal is a
 * coded AstridError of the expected kind, and valid requests come back exactly as they were sent.
 */
import fc from "fast-check";
import { ADMIN_METHODS, ADMIN_UNIT_METHODS, MAX_LIST_ITEMS, parseAdminRequest, QUOTA_DEFAULTS } from "../../protocol/admin-request";
import { decodeToken, HandshakeRequestSchema, tokenMatches } from "../../protocol/handshake";
import { guestView, isJsonObject, normalizePayload } from "../../protocol/ipc-message";
import { KV_LIST_MAX_LIMIT, METHODS, parseKernelRequest, UNIT_METHODS } from "../../protocol/kernel-request";
import { MAX_PUBLISH_SEGMENTS, MAX_TOPIC_BYTES, topicProblem } from "../../protocol/topic-match";
import { FUZZ_TIMEOUT_MS, hostileJson, hostileRecord, hostileString, jsonObject, returnsOrThrowsCoded, runs } from "./fuzz-helpers";

const principal = fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/);
const text = fc.string({ maxLength: 24 });
/** Strings without lone surrogates (what a valid utf8 KV value is). */
const wellFormed = fc.string({ unit: "grapheme", maxLength: 24 });

describe("fuzz: handshake", () => {
  it("the schema never throws; what it accepts has a string token and a byte-sized integer version", () => {
    const candidates = fc.oneof(hostileJson, hostileRecord({ token: hostileString, protocol_version: fc.integer({ min: -2, max: 300 }), client_version: text, client_name: text }));
    fc.assert(
      fc.property(candidates, (value) => {
        const parsed = HandshakeRequestSchema.safeParse(value);
        if (parsed.success) {
          expect(typeof parsed.data.token).toBe("string");
          expect(Number.isInteger(parsed.data.protocol_version) && parsed.data.protocol_version >= 0 && parsed.data.protocol_version <= 255).toBe(true);
        }
      }),
      runs(500),
    );
  }, FUZZ_TIMEOUT_MS);

  it("a valid handshake round-trips, extra fields kept", () => {
    const valid = fc.record(
      { token: fc.hexaString({ minLength: 64, maxLength: 64 }), protocol_version: fc.integer({ min: 0, max: 255 }), client_version: text, client_name: text },
      { requiredKeys: ["token", "protocol_version"] },
    );
    fc.assert(
      fc.property(valid, (hello) => {
        expect(HandshakeRequestSchema.parse(JSON.parse(JSON.stringify(hello)))).toEqual(hello);
      }),
      runs(200),
    );
  }, FUZZ_TIMEOUT_MS);

  it("token checks never throw, accept exactly the token (either case, trimmed), and nothing else", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), hostileString, fc.boolean(), (bytes, other, upper) => {
        const expected = Buffer.from(bytes);
        const hex = expected.toString("hex");
        expect(tokenMatches(expected, ` ${upper ? hex.toUpperCase() : hex}\n`)).toBe(true);
        expect(tokenMatches(expected, other)).toBe(other.trim().toLowerCase() === hex);
        const decoded = decodeToken(other);
        expect(decoded === null || decoded.length === 32).toBe(true);
      }),
      runs(300),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: payload normalisation and topics", () => {
  const KNOWN = ["user_input", "agent_response", "approval_response", "llm_request", "tool_execute_request", "connect", "disconnect", "custom", "raw_json", "elicit_response", "__proto__", "toString", "constructor"];
  const payloads = fc.oneof(
    hostileJson,
    fc.tuple(fc.constantFrom(...KNOWN), hostileRecord({ text: hostileString, session_id: hostileString, is_final: fc.boolean(), request_id: text, decision: fc.constantFrom("approve", "deny", "maybe"), data: hostileJson }))
      .map(([type, fields]) => jsonObject([["type", type], ...Object.entries(fields)])),
  );

  it("never throws; is idempotent; a payload it did not recognise reads back unchanged as the guest view", () => {
    fc.assert(
      fc.property(payloads, (value) => {
        const normalized = normalizePayload(value);
        expect(typeof normalized.type).toBe("string");
        expect(normalizePayload(normalized)).toEqual(normalized);
        expect(() => JSON.stringify(normalized)).not.toThrow();
        const tagged = isJsonObject(value) && typeof value.type === "string";
        if (normalized.type === "custom" && !(tagged && value.type === "custom")) expect(guestView(normalized)).toEqual(value);
        if (tagged && value.type === "raw_json") expect(normalized).toBe(value);
      }),
      runs(500),
    );
  }, FUZZ_TIMEOUT_MS);

  it("topicProblem agrees with a reference of the publish rules", () => {
    const topics = fc.oneof(
      hostileString,
      fc.array(fc.oneof(fc.constantFrom("", "*", "a", "v1", "é"), fc.string({ maxLength: 40 })), { maxLength: 11 }).map((s) => s.join(".")),
    );
    fc.assert(
      fc.property(topics, (topic) => {
        const segments = topic.split(".");
        const publishable = topic !== "" && Buffer.byteLength(topic) <= MAX_TOPIC_BYTES && segments.length <= MAX_PUBLISH_SEGMENTS && segments.every((s) => s !== "" && s !== "*");
        expect(topicProblem(topic) === null).toBe(publishable);
      }),
      runs(500),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: management requests (KernelRequest)", () => {
  const methodName = fc.oneof(fc.constantFrom(...METHODS), hostileString, fc.constantFrom("getStatus", "__proto__", "toString", "constructor"));
  const params = fc.oneof(hostileJson, hostileRecord({ reason: text, source: text, workspace: fc.boolean(), key: text, scope: text, value: text, encoding: fc.constantFrom("utf8", "base64"), limit: fc.integer(), cursor: text, mode: fc.constantFrom("persistent", "ephemeral"), server: text, tool: text, principal: text }));

  it("hostile bodies parse or are refused with REQUEST_INVALID / UNKNOWN_METHOD", () => {
    fc.assert(
      fc.property(fc.oneof(hostileRecord({ method: methodName, params, request_id: hostileString }), hostileJson.filter(isJsonObject)), (body) => {
        const result = returnsOrThrowsCoded(() => parseKernelRequest(body), ["ASTRID_ERR_REQUEST_INVALID", "ASTRID_ERR_UNKNOWN_METHOD"]);
        if (result.ok) {
          expect(body.method).toBe(result.value.request.method);
          expect(result.value.requestId).toBe(body.request_id);
        }
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);

  it("valid requests round-trip through JSON and the parser", () => {
    const requests: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
      fc.constantFrom(...UNIT_METHODS).map((method) => ({ method })),
      fc.record({ reason: fc.option(text, { nil: null }) }).map((p) => ({ method: "Shutdown", params: p })),
      fc.record({ source: text, workspace: fc.boolean() }).map((p) => ({ method: "InstallCapsule", params: p })),
      fc.record({ request_id: text, signature: text }).map((p) => ({ method: "ApproveCapability", params: p })),
      fc.tuple(fc.constantFrom("KvGet", "KvDelete"), fc.record({ scope: text, key: text }, { requiredKeys: ["key"] })).map(([method, p]) => ({ method, params: p })),
      fc.record({ scope: text, key: text, value: wellFormed, encoding: fc.constant("utf8") }, { requiredKeys: ["key", "value"] }).map((p) => ({ method: "KvSet", params: p })),
      fc.tuple(text, fc.uint8Array({ maxLength: 32 })).map(([key, bytes]) => ({ method: "KvSet", params: { key, value: Buffer.from(bytes).toString("base64"), encoding: "base64" } })),
      fc.record({ scope: text, prefix: text, cursor: text, limit: fc.integer({ min: 1, max: KV_LIST_MAX_LIMIT }) }, { requiredKeys: [] }).map((p) => ({ method: "KvList", params: p })),
      fc.constantFrom("persistent", "ephemeral").map((mode) => ({ method: "SetMode", params: { mode } })),
      fc.string({ minLength: 1, maxLength: 160 }).map((server) => ({ method: "McpTools", params: { server } })),
      fc.record({ server: fc.string({ minLength: 1, maxLength: 160 }), tool: fc.string({ minLength: 1, maxLength: 64 }), arguments: fc.dictionary(text, hostileJson, { maxKeys: 3 }) }, { requiredKeys: ["server", "tool"] })
        .map((p) => ({ method: "McpCall", params: p })),
      fc.tuple(fc.constantFrom("VfsDiff", "VfsCommit", "VfsDiscard"), fc.record({ principal }, { requiredKeys: [] })).map(([method, p]) => ({ method, params: p })),
    );
    fc.assert(
      fc.property(requests, fc.option(text, { nil: undefined }), (request, requestId) => {
        const body = JSON.parse(JSON.stringify(requestId === undefined ? request : { ...request, request_id: requestId })) as Record<string, unknown>;
        const parsed = parseKernelRequest(body);
        const expected = request.method === "Shutdown" ? { method: "Shutdown", params: { reason: (request.params as { reason: string | null }).reason } } : request;
        expect(parsed.request).toEqual(JSON.parse(JSON.stringify(expected)));
        expect(parsed.requestId).toBe(requestId);
      }),
      runs(300),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: admin requests", () => {
  const capabilityLike = fc.oneof(fc.stringMatching(/^[a-z*]{1,6}(:[a-z*]{1,6}){0,3}$/), hostileString);
  const adminParams = fc.oneof(
    hostileJson,
    hostileRecord({
      name: fc.oneof(principal, hostileString),
      principal: fc.oneof(principal, hostileString),
      groups: fc.array(fc.oneof(principal, hostileString), { maxLength: 3 }),
      grants: fc.array(capabilityLike, { maxLength: 3 }),
      capabilities: fc.oneof(fc.array(capabilityLike, { maxLength: 3 }), fc.constant(Array.from({ length: MAX_LIST_ITEMS + 1 }, () => "a"))),
      description: fc.option(text, { nil: null }),
      unsafe_admin: fc.boolean(),
      quotas: hostileRecord(Object.fromEntries(Object.keys(QUOTA_DEFAULTS).map((k) => [k, fc.oneof(fc.integer(), fc.double())]))),
    }),
  );
  const methodName = fc.oneof(fc.constantFrom(...ADMIN_METHODS), hostileString, fc.constantFrom("__proto__", "hasOwnProperty", "toString"));

  it("hostile bodies parse or are refused with REQUEST_INVALID / UNKNOWN_METHOD", () => {
    fc.assert(
      fc.property(fc.oneof(hostileRecord({ method: methodName, params: adminParams, request_id: hostileString }), hostileJson.filter(isJsonObject)), (body) => {
        const result = returnsOrThrowsCoded(() => parseAdminRequest(body), ["ASTRID_ERR_REQUEST_INVALID", "ASTRID_ERR_UNKNOWN_METHOD"]);
        if (result.ok) {
          expect(ADMIN_METHODS as readonly unknown[]).toContain(result.value.request.method);
          expect(result.value.requestId).toBe(body.request_id);
        }
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);

  it("valid requests round-trip (defaults filled in)", () => {
    const caps = fc.array(fc.stringMatching(/^[a-z]{1,6}(:[a-z*]{1,6}){0,3}$/), { maxLength: 4 });
    const requests = fc.oneof(
      fc.constantFrom(...ADMIN_UNIT_METHODS).map((method) => ({ method })),
      fc.record({ name: principal, groups: fc.array(principal, { maxLength: 3 }), grants: caps }).map((params) => ({ method: "AgentCreate", params })),
      fc.tuple(fc.constantFrom("AgentDelete", "AgentEnable", "AgentDisable", "QuotaGet"), principal).map(([method, p]) => ({ method, params: { principal: p } })),
      fc.record({ principal, quotas: fc.record({ max_timeout_secs: fc.integer({ min: 1, max: 86_400 }) }) }).map((params) => ({ method: "QuotaSet", params })),
      fc.record({ name: text, capabilities: caps, description: text, unsafe_admin: fc.boolean() }).map((params) => ({ method: "GroupCreate", params })),
      fc.record({ name: text, capabilities: caps, description: fc.option(text, { nil: null }), unsafe_admin: fc.boolean() }, { requiredKeys: ["name"] }).map((params) => ({ method: "GroupModify", params })),
      fc.tuple(fc.constantFrom("CapsGrant", "CapsRevoke"), principal, caps).map(([method, p, c]) => ({ method, params: { principal: p, capabilities: c } })),
    );
    fc.assert(
      fc.property(requests, (request) => {
        const parsed = parseAdminRequest(JSON.parse(JSON.stringify(request)) as Record<string, unknown>);
        expect(parsed.request).toEqual(request);
      }),
      runs(300),
    );
  }, FUZZ_TIMEOUT_MS);
});
