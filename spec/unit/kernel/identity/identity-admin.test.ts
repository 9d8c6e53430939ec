/** Issue #9: the admin API's identity requests (handlers, schemas, capabilities). */
import { IdentityLinks, type IdentityKv } from "../../../../kernel/identity/identity-links";
import {
  IDENTITY_ADMIN_METHODS,
  IdentityLinkParamsSchema,
  identityLink,
  identityList,
  identityUnlink,
  isIdentityAdminMethod,
  runIdentityAdmin,
} from "../../../../kernel/identity/identity-admin";

function memoryKv(): IdentityKv {
  const data = new Map<string, Uint8Array>();
  return {
    get: async (s, k) => data.get(`${s}\0${k}`) ?? null,
    set: async (s, k, v) => void data.set(`${s}\0${k}`, v),
    delete: async (s, k) => data.delete(`${s}\0${k}`),
    listKeys: async (s, p = "") => [...data.keys()].filter((k) => k.startsWith(`${s}\0${p}`)).map((k) => k.slice(s.length + 1)).sort(),
  };
}

const when = new Date("2025-01-01T00:00:00.000Z");
let links: IdentityLinks;
beforeEach(() => {
  links = new IdentityLinks(memoryKv(), () => when);
});

describe("issue #9: identity admin requests", () => {
  it("IdentityLink links with method admin, and reports what it replaced", async () => {
    const deps = { links };
    expect(await identityLink(deps, { platform: "discord", platform_user_id: "1", principal: "alice", display_name: "Alice" })).toEqual({
      platform: "discord", platform_user_id: "1", principal: "alice", method: "admin", display_name: "Alice", linked_at: when.toISOString(),
    });
    await links.link("discord", "2", "bob", "claimed");
    expect(await identityLink(deps, { platform: "discord", platform_user_id: "2", principal: "alice" })).toMatchObject({ principal: "alice", replaced: { principal: "bob", method: "claimed" } });
  });

  it("IdentityLink to a principal that does not exist is PRINCIPAL_NOT_FOUND, and links nothing", async () => {
    const deps = { links, principalExists: async (p: string) => p === "alice" };
    await expect(identityLink(deps, { platform: "web", platform_user_id: "u", principal: "ghost" })).rejects.toMatchObject({ code: "ASTRID_ERR_PRINCIPAL_NOT_FOUND", message: expect.stringContaining("ghost") });
    expect(await links.resolve("web", "u")).toBeUndefined();
  });

  it("IdentityUnlink returns the link it removed; NOT_FOUND when there is none", async () => {
    await links.link("web", "u", "alice", "admin");
    expect(await identityUnlink({ links }, { platform: "web", platform_user_id: "u" })).toMatchObject({ principal: "alice", unlinked: true });
    await expect(identityUnlink({ links }, { platform: "web", platform_user_id: "u" })).rejects.toMatchObject({ code: "ASTRID_ERR_NOT_FOUND" });
  });

  it("IdentityList pages", async () => {
    await links.link("web", "a", "p", "admin");
    await links.link("web", "b", "p", "admin");
    const first = await identityList({ links }, { limit: 1 });
    expect(first.links).toHaveLength(1);
    const second = await identityList({ links }, { limit: 1, cursor: first.next_cursor });
    expect(second).toEqual({ links: [expect.objectContaining({ platform_user_id: "b" })] });
  });

  it("names each method's capability and conventional topic", () => {
    expect(Object.fromEntries(Object.entries(IDENTITY_ADMIN_METHODS).map(([m, s]) => [m, [s.capability, s.topicSuffix, s.status]]))).toEqual({
      IdentityLink: ["identity:link", "identity.link", "Success"],
      IdentityUnlink: ["identity:unlink", "identity.unlink", "Success"],
      IdentityList: ["identity:list", "identity.list", "IdentityList"],
    });
    expect(IDENTITY_ADMIN_METHODS.IdentityLink.targetPrincipal({ platform: "w", platform_user_id: "u", principal: "alice" })).toBe("alice");
    expect(isIdentityAdminMethod("IdentityList")).toBe(true);
    expect(isIdentityAdminMethod("toString")).toBe(false);
  });

  it("parses params from the wire: unknown fields and bad values are REQUEST_INVALID naming the field", async () => {
    const deps = { links };
    await expect(runIdentityAdmin(deps, "IdentityLink", { platform: "web", platform_user_id: "u", principal: "a", extra: 1 })).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringContaining("extra") });
    await expect(runIdentityAdmin(deps, "IdentityLink", { platform: "Web", platform_user_id: "u", principal: "a" })).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringContaining("platform") });
    await expect(runIdentityAdmin(deps, "IdentityUnlink", null)).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID" });
    await expect(runIdentityAdmin(deps, "IdentityList", { limit: 5000 })).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID", message: expect.stringContaining("limit") });
    expect(await runIdentityAdmin(deps, "IdentityList", undefined)).toEqual({ links: [] });
    expect(await runIdentityAdmin(deps, "IdentityLink", { platform: "web", platform_user_id: "u", principal: "a" })).toMatchObject({ method: "admin" });
    expect(IdentityLinkParamsSchema.safeParse({ platform: "web", platform_user_id: "u", principal: "default" }).success).toBe(true);
  });
});
