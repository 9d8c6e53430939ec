/** Issue #9: AdminKernelRequest parsing (reference §5.4) with our fixes: every malformed payload is a coded error. */
import { adminAuditLabel, ADMIN_METHODS, adminResponsePayload, parseAdminRequest, QuotaPatchSchema, QuotasSchema, QUOTA_DEFAULTS } from "../../../protocol/admin-request";

const failure = (body: Record<string, unknown>) => {
  try {
    parseAdminRequest(body);
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
  return { code: "no error", message: "" };
};

describe("issue #9: admin request parsing", () => {
  it("parses every method and fills the defaults", () => {
    expect(parseAdminRequest({ method: "AgentCreate", params: { name: "alice" }, request_id: "r1" })).toEqual({
      request: { method: "AgentCreate", params: { name: "alice", groups: [], grants: [] } }, requestId: "r1",
    });
    expect(parseAdminRequest({ method: "AgentList" }).request).toEqual({ method: "AgentList" });
    expect(parseAdminRequest({ method: "GroupList", params: null }).request).toEqual({ method: "GroupList" });
    expect(parseAdminRequest({ method: "GroupCreate", params: { name: "g", capabilities: [] } }).request)
      .toEqual({ method: "GroupCreate", params: { name: "g", capabilities: [], unsafe_admin: false } });
    for (const method of ["AgentDelete", "AgentEnable", "AgentDisable", "QuotaGet"]) {
      expect(parseAdminRequest({ method, params: { principal: "bob" } }).request).toEqual({ method, params: { principal: "bob" } });
    }
    expect(parseAdminRequest({ method: "CapsGrant", params: { principal: "bob", capabilities: ["a"] } }).request.method).toBe("CapsGrant");
    expect(parseAdminRequest({ method: "QuotaSet", params: { principal: "bob", quotas: {} } }).request.method).toBe("QuotaSet");
    expect(parseAdminRequest({ method: "GroupDelete", params: { name: "g" } }).request.method).toBe("GroupDelete");
  });

  it("issue #9: GroupModify keeps `description: null` apart from an absent description", () => {
    const cleared = parseAdminRequest({ method: "GroupModify", params: { name: "g", description: null } }).request as { params: Record<string, unknown> };
    expect("description" in cleared.params && cleared.params.description === null).toBe(true);
    const kept = parseAdminRequest({ method: "GroupModify", params: { name: "g" } }).request as { params: Record<string, unknown> };
    expect(kept.params.description).toBeUndefined();
  });

  it("issue #9: an invalid principal string is a coded error naming the field", () => {
    expect(failure({ method: "AgentDelete", params: { principal: "bad name" } })).toEqual({
      code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringMatching(/AgentDelete params are invalid: principal: must be a principal id/),
    });
    expect(failure({ method: "AgentCreate", params: { name: "x".repeat(65) } }).code).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(failure({ method: "QuotaGet", params: { principal: 5 } }).code).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("rejects unknown params keys, missing params, params on unit methods, a bad request_id and unknown methods", () => {
    expect(failure({ method: "AgentDelete", params: { principal: "a", extra: 1 } }).message).toMatch(/extra/);
    expect(failure({ method: "AgentDelete" }).message).toMatch(/needs "params"/);
    expect(failure({ method: "AgentList", params: {} }).message).toMatch(/takes no params/);
    expect(failure({ method: "AgentList", request_id: 3 }).message).toMatch(/request_id must be a string/);
    expect(failure({})).toEqual({ code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringMatching(/no string "method"/) });
    expect(failure({ method: "agentList" })).toEqual({ code: "ASTRID_ERR_UNKNOWN_METHOD", message: expect.stringMatching(/AgentCreate, AgentDelete/) });
    expect(failure({ method: "CapsGrant", params: { principal: "a", capabilities: "x" } }).message).toMatch(/capabilities: must be an array/);
    expect(failure({ method: "CapsGrant", params: { principal: "a", capabilities: Array(257).fill("x") } }).message).toMatch(/at most 256/);
  });

  it("audit labels are admin.<family>.<action>", () => {
    expect(ADMIN_METHODS.map(adminAuditLabel)).toEqual([
      "admin.agent.create", "admin.agent.delete", "admin.agent.enable", "admin.agent.disable", "admin.agent.list",
      "admin.quota.set", "admin.quota.get", "admin.group.create", "admin.group.delete", "admin.group.modify",
      "admin.group.list", "admin.caps.grant", "admin.caps.revoke",
    ]);
  });

  it("responses flatten request_id beside status and data, and omit it when the request had none", () => {
    expect(adminResponsePayload({ status: "Success", data: { principal: "a" } }, "r1")).toEqual({ type: "raw_json", request_id: "r1", status: "Success", data: { principal: "a" } });
    expect(Object.keys(adminResponsePayload({ status: "GroupList", data: [] }))).toEqual(["type", "status", "data"]);
  });

  it("quotas: defaults, ranges and unknown keys", () => {
    expect(QuotasSchema.parse({})).toEqual(QUOTA_DEFAULTS);
    expect(QuotasSchema.safeParse({ max_timeout_secs: 0 }).success).toBe(false);
    expect(QuotasSchema.safeParse({ max_timeout_secs: 86_401 }).success).toBe(false);
    expect(QuotasSchema.safeParse({ max_timeout_secs: 86_400 }).success).toBe(true);
    expect(QuotasSchema.safeParse({ max_background_processes: 257 }).success).toBe(false);
    expect(QuotasSchema.safeParse({ max_background_processes: 0 }).success).toBe(true);
    expect(QuotasSchema.safeParse({ max_memory_bytes: 0 }).success).toBe(false);
    expect(QuotasSchema.safeParse({ max_memory_bytes: 1.5 }).success).toBe(false);
    expect(QuotasSchema.safeParse({ nope: 1 }).success).toBe(false);
    expect(QuotaPatchSchema.parse({ max_timeout_secs: 5 })).toEqual({ max_timeout_secs: 5 });
  });
});
