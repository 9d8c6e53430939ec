/**
 * Issue #9: management requests need their §5.2 capability for the caller principal: rate limit → authorization →
 * audit (allow and deny) → handler. Driven over an in-memory bus as any principal.
 */
import { EventBus, type BusEvent } from "../../../kernel/bus";
import type { AstridHome } from "../../../kernel/home";
import { ManagementRouter, type ManagementHost } from "../../../kernel/management-router";
import { PrincipalRegistry } from "../../../kernel/principals/principals";
import type { AuditInput } from "../../../protocol/storage-messages";
import { memoryAudit, memoryLogger, removeTempHomes, tempPolicyHome, writeProfile } from "../../helpers/principals";

let home: AstridHome;
let bus: EventBus;
let router: ManagementRouter;
let entries: AuditInput[];
let replies: BusEvent[];
let calls: string[];
let next = 0;

beforeEach(async () => {
  home = tempPolicyHome();
  writeProfile(home, "alice", 'groups = ["agent"]\n');
  writeProfile(home, "rita", 'groups = ["restricted"]\n');
  writeProfile(home, "root", 'groups = ["admin"]\nrevokes = ["self:capsule:reload"]\n');
  writeProfile(home, "bent", 'groups = ["admin"]\nshell = "/bin/sh"\n');
  const log = memoryLogger();
  const principals = await PrincipalRegistry.open(home, log.logger);
  const memory = memoryAudit();
  entries = memory.entries;
  calls = [];
  const host = {
    status: () => ({ pid: 1, uptime_secs: 0, version: "t", ephemeral: false, connected_clients: 0, loaded_capsules: [] }),
    capsuleNames: () => ["a"],
    commands: () => [],
    capsuleMetadata: () => [],
    reloadCapsules: async () => void calls.push("reload"),
    shutdown: (reason: string) => void calls.push(`shutdown:${reason}`),
  } as unknown as ManagementHost;
  bus = new EventBus();
  replies = [];
  bus.subscribe("astrid.v1.response.*", (e) => replies.push(e));
  router = new ManagementRouter(bus, host, log.logger, "kernel", memory.audit, principals);
});
afterEach(() => {
  router.close();
  removeTempHomes();
});

async function ask(principal: string | undefined, method: string, params?: unknown, origin = 1): Promise<Record<string, unknown>> {
  const requestId = `m${++next}`;
  const payload: Record<string, unknown> = { type: "raw_json", request_id: requestId, method };
  if (params !== undefined) payload.params = params;
  bus.publish({ topic: "astrid.v1.request.x", payload: payload as never, source_id: "c", ...(principal !== undefined ? { principal } : {}), origin });
  for (const deadline = Date.now() + 5000; Date.now() < deadline;) {
    const hit = replies.find((r) => (r.message.payload as Record<string, unknown>).request_id === requestId);
    if (hit) return hit.message.payload as Record<string, unknown>;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`no reply to ${method}`);
}

const admin = (p: string) => entries.filter((e) => e.action.type === "admin_request" && e.principal === p);

describe("issue #9: management requests are authorized", () => {
  it("issue #9: a restricted principal is refused ReloadCapsules, and the deny is audited before any handler runs", async () => {
    expect(await ask("rita", "ReloadCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PERMISSION_DENIED", data: "permission denied for principal rita: missing capability self:capsule:reload",
    });
    expect(calls).toEqual([]);
    expect(admin("rita")).toEqual([{
      session_id: expect.any(String), principal: "rita",
      action: { type: "admin_request", method: "ReloadCapsules", required_capability: "self:capsule:reload", caller: "conn:1" },
      authorization: { type: "denied", reason: "permission denied for principal rita: missing capability self:capsule:reload" },
      outcome: { status: "failure", error: "permission denied for principal rita: missing capability self:capsule:reload", code: "ASTRID_ERR_PERMISSION_DENIED" },
    }]);
  });

  it("an allowed request is audited with the policy's reason instead of 'not enforced'", async () => {
    expect(await ask("default", "ReloadCapsules")).toMatchObject({ status: "Success", data: { status: "reloaded" } });
    expect(calls).toEqual(["reload"]);
    expect(admin("default")[0]).toMatchObject({
      action: { method: "ReloadCapsules", required_capability: "self:capsule:reload" },
      authorization: { type: "system", reason: "policy allow: default holds self:capsule:reload", via: 'group admin ("*")' },
      outcome: { status: "success", details: null },
    });
  });

  it("agents reach their self surface, not system:*", async () => {
    expect(await ask("alice", "ListCapsules")).toMatchObject({ status: "Success", data: ["a"] });
    expect(await ask("alice", "GetStatus")).toMatchObject({ status: "Error", data: "permission denied for principal alice: missing capability system:status" });
    expect(await ask("alice", "Shutdown", {})).toMatchObject({ status: "Error", data: "permission denied for principal alice: missing capability system:shutdown" });
    expect(await ask("alice", "KvGet", { key: "k" })).toMatchObject({ status: "Error", data: "permission denied for principal alice: missing capability system:kv:read" });
    expect(calls).toEqual([]);
  });

  it("issue #9: a revoked capability beats the admin group, naming the pattern; the rest stays allowed", async () => {
    expect(await ask("root", "ReloadCapsules")).toMatchObject({ status: "Error", data: 'permission denied for principal root: capability self:capsule:reload is revoked via "self:capsule:reload"' });
    expect(await ask("root", "GetStatus")).toMatchObject({ status: "Status" });
  });

  it("issue #9: a profile with an unknown key denies its principal with the file and line; others are unaffected", async () => {
    expect(await ask("bent", "GetStatus")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_PROFILE_INVALID",
      data: `permission denied for principal bent: missing capability system:status (its profile cannot be used: ${home.profilePath("bent")}:2: unknown key shell (see docs/principals.md for the fields))`,
    });
    expect(await ask("default", "GetStatus")).toMatchObject({ status: "Status" });
    expect(await ask("alice", "ListCapsules")).toMatchObject({ status: "Success" });
  });

  it("a missing or invalid stamped principal acts as default", async () => {
    expect(await ask(undefined, "GetStatus")).toMatchObject({ status: "Status" });
    expect(await ask("../../etc", "GetStatus")).toMatchObject({ status: "Status" });
    expect(entries.at(-1)!.principal).toBe("default");
  });

  it("a principal without a profile holds nothing", async () => {
    expect(await ask("stranger", "ListCapsules")).toMatchObject({ status: "Error", data: "permission denied for principal stranger: missing capability self:capsule:list" });
  });

  it("the rate limit comes before authorization, and a refused request uses no budget", async () => {
    for (let i = 0; i < 7; i++) expect(await ask("rita", "ReloadCapsules")).toMatchObject({ code: "ASTRID_ERR_PERMISSION_DENIED" });
    for (let i = 0; i < 5; i++) expect(await ask("default", "ReloadCapsules")).toMatchObject({ status: "Success" });
    // The same connection's budget is spent: the limit answers before the profile is even looked at.
    expect(await ask("rita", "ReloadCapsules")).toMatchObject({ code: "ASTRID_ERR_RATE_LIMITED" });
    expect(admin("rita").at(-1)).toMatchObject({ outcome: { status: "failure", error: expect.stringMatching(/^Rate limited/) }, authorization: { type: "denied" } });
  });
});
