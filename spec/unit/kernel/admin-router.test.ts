/**
 * Issue #9: the admin router (reference §5.4) over an in-memory bus, as any principal: every method, its error texts,
 * the fixes (coded errors for malformed payloads, description null, AgentList and QuotaSet scopes) and the audit.
 */
import fs from "node:fs";
import { AdminRouter, type AdminExtension } from "../../../kernel/admin-router";
import { EventBus, type BusEvent } from "../../../kernel/bus";
import { agentUserId, LinkedAgentIdentities, type LinkStore } from "../../../kernel/principals/agent-identity";
import { PrincipalRegistry } from "../../../kernel/principals/principals";
import type { AstridHome } from "../../../kernel/home";
import type { AuditInput } from "../../../protocol/storage-messages";
import { memoryAudit, memoryLogger, removeTempHomes, tempPolicyHome, writeProfile } from "../../helpers/principals";

let home: AstridHome;
let bus: EventBus;
let router: AdminRouter;
let principals: PrincipalRegistry;
let entries: AuditInput[];
let links: Map<string, { platform: string; platform_user_id: string; principal: string }>;
let replies: BusEvent[];
let next = 0;

/** An identity store in memory. */
function memoryLinks(): LinkStore {
  return {
    link: async (platform, id, principal) => void links.set(`${platform}:${id}`, { platform, platform_user_id: id, principal }),
    unlink: async (platform, id) => links.delete(`${platform}:${id}`),
    linksOf: async (principal) => [...links.values()].filter((l) => l.principal === principal),
  };
}

beforeEach(async () => {
  home = tempPolicyHome();
  writeProfile(home, "alice", 'groups = ["agent"]\n');
  writeProfile(home, "rita", 'groups = ["restricted"]\n');
  const log = memoryLogger();
  principals = await PrincipalRegistry.open(home, log.logger);
  const memory = memoryAudit();
  entries = memory.entries;
  links = new Map();
  bus = new EventBus((err) => {
    throw err;
  });
  replies = [];
  bus.subscribe("astrid.v1.admin.response.*", (e) => replies.push(e));
  const echo: AdminExtension = {
    label: "admin.test.echo", capability: "test:echo", status: "Echo",
    parse: (p) => p ?? {}, run: async (p) => p, targetPrincipal: () => "alice",
  };
  router = new AdminRouter({
    bus, principals, identities: new LinkedAgentIdentities(memoryLinks()), logger: log.logger,
    kernelSourceId: "kernel", audit: memory.audit, extensions: { Echo: echo },
  });
});
afterEach(() => {
  router.close();
  removeTempHomes();
});

/** Sends one request as `principal` from connection `origin` and resolves with the reply's payload. */
async function ask(principal: string | undefined, method: string, params?: unknown, options: { topic?: string; origin?: number | null } = {}): Promise<Record<string, unknown>> {
  const requestId = `r${++next}`;
  const payload: Record<string, unknown> = { type: "raw_json", request_id: requestId, method };
  if (params !== undefined) payload.params = params;
  bus.publish({
    topic: options.topic ?? "astrid.v1.admin.agent.x",
    payload: payload as never,
    source_id: "client",
    ...(principal !== undefined ? { principal } : {}),
    ...(options.origin === null ? {} : { origin: options.origin ?? 1 }),
  });
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const hit = replies.find((r) => (r.message.payload as Record<string, unknown>).request_id === requestId);
    if (hit) return hit.message.payload as Record<string, unknown>;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`no reply to ${method}`);
}

const lastAudit = () => entries[entries.length - 1]!;

describe("issue #9: admin API happy paths (as default, group admin)", () => {
  it("AgentCreate / AgentList / AgentDisable / AgentEnable / AgentDelete", async () => {
    expect(await ask("default", "AgentCreate", { name: "bob" })).toEqual({ type: "raw_json", request_id: expect.any(String), status: "Success", data: { principal: "bob", astrid_user_id: agentUserId("bob") } });
    expect(await principals.profiles.read("bob")).toMatchObject({ groups: ["agent"], grants: [] });
    expect(links.get("cli:bob")).toEqual({ platform: "cli", platform_user_id: "bob", principal: "bob" });
    await ask("default", "AgentCreate", { name: "carl", groups: ["restricted", "restricted"], grants: ["system:status"] });
    expect(await principals.profiles.read("carl")).toMatchObject({ groups: ["restricted"], grants: ["system:status"] });

    const list = await ask("default", "AgentList");
    expect(list.status).toBe("AgentList");
    expect((list.data as Array<{ principal: string }>).map((a) => a.principal)).toEqual(["alice", "bob", "carl", "default", "rita"]);
    expect((list.data as unknown[])[0]).toEqual({ principal: "alice", enabled: true, groups: ["agent"], grants: [], revokes: [] });

    expect(await ask("default", "AgentDisable", { principal: "bob" })).toMatchObject({ status: "Success", data: { principal: "bob", enabled: false, changed: true } });
    expect(await ask("default", "AgentDisable", { principal: "bob" })).toMatchObject({ data: { changed: false } });
    expect(await principals.authorize("bob", "self:capsule:list")).toMatchObject({ allowed: false, reason: "permission denied for principal bob: agent is disabled" });
    expect(await ask("default", "AgentEnable", { principal: "bob" })).toMatchObject({ data: { principal: "bob", enabled: true, changed: true } });
    expect(await principals.authorize("bob", "self:capsule:list")).toMatchObject({ allowed: true });

    links.set("discord:42", { platform: "discord", platform_user_id: "42", principal: "bob" });
    expect(await ask("default", "AgentDelete", { principal: "bob" })).toMatchObject({ status: "Success", data: { principal: "bob" } });
    expect(fs.existsSync(home.profilePath("bob"))).toBe(false);
    expect([...links.keys()]).toEqual(["cli:carl"]);
    expect(await principals.authorize("bob", "self:capsule:list")).toMatchObject({ allowed: false });
  });

  it("QuotaSet / QuotaGet: only the given quotas change", async () => {
    expect(await ask("default", "QuotaSet", { principal: "alice", quotas: { max_timeout_secs: 60, max_memory_bytes: 1024 } })).toMatchObject({ status: "Success", data: { principal: "alice" } });
    expect(await ask("default", "QuotaSet", { principal: "alice", quotas: { max_background_processes: 0 } })).toMatchObject({ status: "Success" });
    expect(await ask("default", "QuotaGet", { principal: "alice" })).toMatchObject({
      status: "Quotas", data: { max_timeout_secs: 60, max_memory_bytes: 1024, max_background_processes: 0, max_ipc_throughput_bytes: 10485760, max_storage_bytes: 1073741824 },
    });
    expect(await principals.quotas("alice")).toMatchObject({ max_timeout_secs: 60 });
  });

  it("GroupCreate / GroupList / GroupModify / GroupDelete", async () => {
    expect(await ask("default", "GroupCreate", { name: "ops", capabilities: ["system:status"], description: "Ops" })).toEqual({ type: "raw_json", request_id: expect.any(String), status: "Success", data: { status: "ok" } });
    writeProfile(home, "olga", 'groups = ["ops"]\n');
    expect(await principals.authorize("olga", "system:status")).toMatchObject({ allowed: true });
    const list = await ask("default", "GroupList");
    expect(list).toMatchObject({ status: "GroupList" });
    expect((list.data as Array<{ name: string }>).map((g) => g.name)).toEqual(["admin", "agent", "ops", "restricted"]);
    expect((list.data as unknown[])[2]).toEqual({ name: "ops", capabilities: ["system:status"], description: "Ops", unsafe_admin: false, builtin: false });

    expect(await ask("default", "GroupModify", { name: "ops", capabilities: ["system:*"] })).toMatchObject({ status: "Success" });
    expect(principals.groups.snapshot().get("ops")).toEqual({ name: "ops", capabilities: ["system:*"], description: "Ops", unsafe_admin: false });
    expect(await principals.authorize("olga", "system:shutdown")).toMatchObject({ allowed: true });
    expect(await ask("default", "GroupDelete", { name: "ops" })).toMatchObject({ status: "Success" });
    expect(await principals.authorize("olga", "system:status")).toMatchObject({ allowed: false });
  });

  it("issue #9: GroupModify with description null clears it; absent keeps it", async () => {
    await ask("default", "GroupCreate", { name: "ops", capabilities: [], description: "Ops" });
    await ask("default", "GroupModify", { name: "ops", unsafe_admin: false });
    expect(principals.groups.snapshot().get("ops")?.description).toBe("Ops");
    expect(await ask("default", "GroupModify", { name: "ops", description: null })).toMatchObject({ status: "Success" });
    expect(principals.groups.snapshot().get("ops")).toEqual({ name: "ops", capabilities: [], unsafe_admin: false });
    expect(fs.readFileSync(home.groupsPath, "utf8")).not.toMatch(/description/);
  });

  it("CapsGrant / CapsRevoke append without duplicates; a later grant never lifts a revoke", async () => {
    expect(await ask("default", "CapsGrant", { principal: "rita", capabilities: ["system:status", "system:status", "agent:list"] }))
      .toMatchObject({ status: "Success", data: { principal: "rita", capabilities: ["system:status", "agent:list"] } });
    expect(await principals.authorize("rita", "system:status")).toMatchObject({ allowed: true });
    expect(await ask("default", "CapsRevoke", { principal: "rita", capabilities: ["system:*"] })).toMatchObject({ data: { capabilities: ["system:*"] } });
    await ask("default", "CapsGrant", { principal: "rita", capabilities: ["system:status"] });
    expect(await principals.authorize("rita", "system:status")).toMatchObject({ allowed: false, reason: 'permission denied for principal rita: capability system:status is revoked via "system:*"' });
    expect(await ask("default", "CapsRevoke", { principal: "alice", capabilities: ["never:held"] })).toMatchObject({ status: "Success" });
  });

  it("concurrent changes to one profile are serialised by the admin lock (none is lost)", async () => {
    await Promise.all(Array.from({ length: 10 }, (_, i) => ask("default", "CapsGrant", { principal: "rita", capabilities: [`cap:n${i}`] })));
    expect((await principals.profiles.read("rita"))!.grants.sort()).toEqual(Array.from({ length: 10 }, (_, i) => `cap:n${i}`).sort());
  });
});

describe("issue #9: admin API error texts (reference §5.4)", () => {
  const error = (data: string | RegExp, code: string) => ({ status: "Error", data: typeof data === "string" ? data : expect.stringMatching(data), code });

  it("principals that do not exist", async () => {
    for (const [method, params] of [
      ["AgentDelete", { principal: "ghost" }], ["AgentEnable", { principal: "ghost" }], ["AgentDisable", { principal: "ghost" }],
      ["QuotaGet", { principal: "ghost" }], ["QuotaSet", { principal: "ghost", quotas: {} }],
      ["CapsGrant", { principal: "ghost", capabilities: ["a"] }], ["CapsRevoke", { principal: "ghost", capabilities: ["a"] }],
    ] as const) {
      expect(await ask("default", method, params)).toMatchObject(error(`principal ghost does not exist (no profile.toml at ${home.profilePath("ghost")})`, "ASTRID_ERR_PRINCIPAL_NOT_FOUND"));
    }
  });

  it("the default principal is reserved", async () => {
    expect(await ask("default", "AgentCreate", { name: "default" })).toMatchObject(error('principal "default" is reserved for single-tenant bootstrap', "ASTRID_ERR_PRINCIPAL_RESERVED"));
    expect(await ask("default", "AgentDelete", { principal: "default" })).toMatchObject(error(/^cannot delete the `default` principal — /, "ASTRID_ERR_PRINCIPAL_RESERVED"));
    expect(await ask("default", "AgentDisable", { principal: "default" })).toMatchObject(error(/^cannot disable the `default` principal — /, "ASTRID_ERR_PRINCIPAL_RESERVED"));
    expect(await ask("default", "CapsRevoke", { principal: "default", capabilities: ["system:shutdown"] })).toMatchObject(error(/^cannot revoke capabilities from the `default` principal — /, "ASTRID_ERR_PRINCIPAL_RESERVED"));
    expect(await principals.authorize("default", "system:shutdown")).toMatchObject({ allowed: true });
  });

  it("an existing principal, empty or invalid capabilities, invalid quotas, rejected groups", async () => {
    expect(await ask("default", "AgentCreate", { name: "alice" })).toMatchObject(error("principal alice already exists", "ASTRID_ERR_PRINCIPAL_EXISTS"));
    expect(await ask("default", "AgentCreate", { name: "eve", grants: ["x y"] })).toMatchObject(error(/^capability "x y" rejected: /, "ASTRID_ERR_CAPABILITY_INVALID"));
    expect(await ask("default", "AgentCreate", { name: "eve", groups: ["bad group"] })).toMatchObject(error(/^profile rejected: groups\.0/, "ASTRID_ERR_PROFILE_INVALID"));
    expect(fs.existsSync(home.profilePath("eve"))).toBe(false);
    expect(links.size).toBe(0);
    expect(await ask("default", "CapsGrant", { principal: "alice", capabilities: [] })).toMatchObject(error("capabilities must not be empty", "ASTRID_ERR_CAPABILITY_INVALID"));
    expect(await ask("default", "CapsGrant", { principal: "alice", capabilities: ["self:**"] })).toMatchObject(error(/^capability "self:\*\*" rejected: /, "ASTRID_ERR_CAPABILITY_INVALID"));
    expect(await ask("default", "QuotaSet", { principal: "alice", quotas: { max_timeout_secs: 0 } })).toMatchObject(error("quotas rejected: max_timeout_secs must be 1..86400", "ASTRID_ERR_QUOTAS_INVALID"));
    expect(await ask("default", "QuotaSet", { principal: "alice", quotas: { nope: 1 } })).toMatchObject(error("quotas rejected: unknown quota nope", "ASTRID_ERR_QUOTAS_INVALID"));
    expect(await ask("default", "GroupCreate", { name: "admin", capabilities: [] })).toMatchObject(error(/^group\.create rejected: admin is a built-in group/, "ASTRID_ERR_GROUP_REJECTED"));
    expect(await ask("default", "GroupCreate", { name: "root", capabilities: ["*"] })).toMatchObject(error(/^group\.create rejected: capability "\*" grants everything/, "ASTRID_ERR_GROUP_REJECTED"));
    expect(await ask("default", "GroupCreate", { name: "root", capabilities: ["*"], unsafe_admin: true })).toMatchObject({ status: "Success" });
    expect(await ask("default", "GroupModify", { name: "agent", capabilities: [] })).toMatchObject(error(/^group\.modify rejected: agent is a built-in group/, "ASTRID_ERR_GROUP_REJECTED"));
    expect(await ask("default", "GroupDelete", { name: "restricted" })).toMatchObject(error(/^group\.delete rejected: restricted is a built-in/, "ASTRID_ERR_GROUP_REJECTED"));
    expect(await ask("default", "GroupDelete", { name: "nope" })).toMatchObject(error('group.delete rejected: no group named "nope" (see astrid group list)', "ASTRID_ERR_GROUP_REJECTED"));
  });

  it("issue #9: malformed payloads and invalid principal strings get a coded Error (the reference sent nothing)", async () => {
    expect(await ask("default", "AgentDelete", { principal: "not valid!" })).toMatchObject(error(/^AgentDelete params are invalid: principal: must be a principal id/, "ASTRID_ERR_REQUEST_INVALID"));
    expect(await ask("default", "AgentCreate", {})).toMatchObject(error(/name/, "ASTRID_ERR_REQUEST_INVALID"));
    expect(await ask("default", "Frobnicate")).toMatchObject(error(/^unknown admin method "Frobnicate"/, "ASTRID_ERR_UNKNOWN_METHOD"));
    bus.publish({ topic: "astrid.v1.admin.agent.list", payload: { type: "user_input", text: "hi", request_id: "raw" } as never, source_id: "c", principal: "default", origin: 1 });
    await new Promise((r) => setImmediate(r));
    expect(replies.at(-1)!.message.payload).toMatchObject({ request_id: "raw", status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect(lastAudit()).toMatchObject({ outcome: { status: "failure" }, authorization: { type: "denied" } });
  });
});

describe("issue #9: authorization of admin requests as other principals", () => {
  it("an admin request without the capability is denied and the deny is audited with target_principal", async () => {
    expect(await ask("alice", "AgentCreate", { name: "mallory" })).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: "permission denied for principal alice: missing capability agent:create",
    });
    expect(fs.existsSync(home.profilePath("mallory"))).toBe(false);
    expect(lastAudit()).toEqual({
      session_id: expect.any(String), principal: "alice",
      action: { type: "admin_request", method: "admin.agent.create", required_capability: "agent:create", target_principal: "mallory", caller: "conn:1", params: { method: "AgentCreate", params: { name: "mallory", groups: [], grants: [] } } },
      authorization: { type: "denied", reason: "permission denied for principal alice: missing capability agent:create" },
      outcome: { status: "failure", error: "permission denied for principal alice: missing capability agent:create" },
    });
  });

  it("allowed requests are audited before the handler with the policy's reason", async () => {
    await ask("default", "CapsGrant", { principal: "rita", capabilities: ["system:status"] });
    expect(lastAudit()).toMatchObject({
      principal: "default",
      action: { method: "admin.caps.grant", required_capability: "caps:grant", target_principal: "rita", params: { method: "CapsGrant", params: { principal: "rita", capabilities: ["system:status"] } } },
      authorization: { type: "system", reason: "policy allow: default holds caps:grant", via: 'group admin ("*")' },
      outcome: { status: "success", details: null },
    });
  });

  it("issue #9: `self:*` does not let an agent raise its own quotas (QuotaSet needs quota:set)", async () => {
    expect(await ask("alice", "QuotaSet", { principal: "alice", quotas: { max_memory_bytes: 1e12 } })).toMatchObject({
      status: "Error", data: "permission denied for principal alice: missing capability quota:set",
    });
    expect(await principals.quotas("alice")).toMatchObject({ max_memory_bytes: 67108864 });
  });

  it("QuotaGet: self needs self:quota:get, another principal needs quota:get", async () => {
    expect(await ask("alice", "QuotaGet", { principal: "alice" })).toMatchObject({ status: "Quotas" });
    expect(await ask("alice", "QuotaGet", { principal: "rita" })).toMatchObject({ status: "Error", data: "permission denied for principal alice: missing capability quota:get" });
    expect(await ask("rita", "QuotaGet", { principal: "rita" })).toMatchObject({ status: "Error", data: "permission denied for principal rita: missing capability self:quota:get" });
  });

  it("issue #9: AgentList lists everyone only with agent:list; with only self:agent:list a caller sees itself", async () => {
    expect(await ask("alice", "AgentList")).toEqual({ type: "raw_json", request_id: expect.any(String), status: "AgentList", data: [{ principal: "alice", enabled: true, groups: ["agent"], grants: [], revokes: [] }] });
    expect(lastAudit().action).toMatchObject({ required_capability: "self:agent:list" });
    expect(await ask("rita", "AgentList")).toMatchObject({ status: "Error", data: "permission denied for principal rita: missing capability agent:list" });
    await ask("default", "CapsGrant", { principal: "alice", capabilities: ["agent:list"] });
    expect(((await ask("alice", "AgentList")).data as unknown[]).length).toBe(3);
  });

  it("agents cannot touch groups, grants or other agents; restricted cannot do anything", async () => {
    for (const [method, params] of [
      ["GroupCreate", { name: "x", capabilities: [] }], ["GroupList", undefined], ["CapsGrant", { principal: "alice", capabilities: ["*"] }],
      ["AgentDisable", { principal: "rita" }], ["AgentDelete", { principal: "rita" }],
    ] as const) {
      expect(await ask("alice", method, params)).toMatchObject({ status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED" });
    }
    expect(await principals.profiles.read("alice")).toMatchObject({ grants: [] });
  });

  it("a revoke on the admin's own caps:grant stops the admin (revokes beat groups)", async () => {
    writeProfile(home, "root", 'groups = ["admin"]\nrevokes = ["caps:*"]\n');
    expect(await ask("root", "CapsGrant", { principal: "alice", capabilities: ["system:status"] })).toMatchObject({
      status: "Error", data: 'permission denied for principal root: capability caps:grant is revoked via "caps:*"',
    });
    expect(await ask("root", "AgentList")).toMatchObject({ status: "AgentList" });
  });

  it("an invalid or missing stamped principal acts as default", async () => {
    expect(await ask("not valid!", "AgentList")).toMatchObject({ status: "AgentList" });
    expect(lastAudit().principal).toBe("default");
    expect(await ask(undefined, "GroupList")).toMatchObject({ status: "GroupList" });
  });

  it("a broken profile denies only its principal, with the file and line", async () => {
    writeProfile(home, "bent", 'groups = ["admin"]\nshell = "/bin/sh"\n');
    expect(await ask("bent", "AgentList")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PROFILE_INVALID", data: expect.stringContaining(`${home.profilePath("bent")}:2: unknown key shell`),
    });
    const list = await ask("default", "AgentList");
    expect((list.data as Array<{ principal: string }>).map((a) => a.principal)).toEqual(["alice", "default", "rita"]);
  });
});

describe("issue #9: admin routing", () => {
  it("replies on astrid.v1.admin.response.<suffix>, to the asking connection only; a capsule's reply stays internal", async () => {
    await ask("default", "GroupList", undefined, { topic: "astrid.v1.admin.group.list", origin: 7 });
    const reply = replies.at(-1)!;
    expect(reply.message.topic).toBe("astrid.v1.admin.response.group.list");
    expect(reply.target).toBe(7);
    expect(reply.message.source_id).toBe("kernel");
    await ask("default", "GroupList", undefined, { origin: null });
    expect(replies.at(-1)!.internal).toBe(true);
    expect(replies.at(-1)!.target).toBeUndefined();
  });

  it("ignores its own responses' topics", async () => {
    bus.publish({ topic: "astrid.v1.admin.response.agent.list", payload: { type: "raw_json", method: "AgentList", request_id: "loop" } as never, source_id: "x", origin: 1 });
    await new Promise((r) => setImmediate(r));
    expect(replies.filter((r) => (r.message.payload as { request_id?: string }).request_id === "loop")).toHaveLength(1);
  });

  it("extension methods go through the same authorization and audit", async () => {
    expect(await ask("alice", "Echo", { a: 1 })).toMatchObject({ status: "Error", data: "permission denied for principal alice: missing capability test:echo" });
    expect(lastAudit().action).toMatchObject({ method: "admin.test.echo", target_principal: "alice" });
    expect(await ask("default", "Echo", { a: 1 })).toMatchObject({ status: "Echo", data: { a: 1 } });
  });

  it("AgentCreate rolls back the identity link when the profile cannot be written", async () => {
    fs.rmSync(home.profilesDir, { recursive: true });
    fs.writeFileSync(home.profilesDir, "a file where the directory belongs");
    expect(await ask("default", "AgentCreate", { name: "zed" })).toMatchObject({ status: "Error" });
    expect(links.size).toBe(0);
  });
});
