import { PlatformUsers, MAX_PROVISIONED_PER_MINUTE } from "../../../../kernel/identity/platform-users";
import type { AuditLog } from "../../../../kernel/audit-log";
import type { FrontendCredentials } from "../../../../kernel/frontends/frontend-credentials";
import type { IdentityLinks } from "../../../../kernel/identity/identity-links";
import type { Logger } from "../../../../kernel/logger";
import type { Principals } from "../../../../kernel/principals/principals";

/** In-memory stand-ins for the links, the principals and the credentials (one frontend, `bot`, policy `restricted`). */
function setup(policy: "refuse" | "restricted" = "restricted") {
  const links = new Map<string, string>();
  const profiles = new Set<string>();
  const users = new PlatformUsers(
    {
      resolve: async (platform: string, id: string) => (links.has(`${platform}/${id}`) ? { principal: links.get(`${platform}/${id}`)!, method: "claimed" } : undefined),
      link: async (platform: string, id: string, principal: string) => {
        links.set(`${platform}/${id}`, principal);
        return { link: {} };
      },
    } as unknown as IdentityLinks,
    {
      exists: async (p: string) => profiles.has(p),
      ensure: async (p: string) => {
        const created = !profiles.has(p);
        profiles.add(p);
        return { created };
      },
    } as unknown as Principals,
    { list: () => [{ name: "bot", platforms: ["discord"], unlinked: policy }] } as unknown as FrontendCredentials,
    { identity: () => undefined } as unknown as AuditLog,
    { info: () => undefined } as unknown as Logger,
  );
  return { users, links, profiles };
}

describe("issue #9: platform users", () => {
  it("refuses an unlinked user under `refuse`, naming how to link it", async () => {
    const { users } = setup("refuse");
    await expect(users.resolve("bot", { platform: "discord", platform_user_id: "1" })).rejects.toMatchObject({ code: "ASTRID_ERR_IDENTITY_UNLINKED" });
  });

  it("provisions a principal per unlinked user, the same one every time, and at most so many new ones a minute", async () => {
    const { users, profiles } = setup();
    const first = await users.resolve("bot", { platform: "discord", platform_user_id: "u0" });
    expect(await users.resolve("bot", { platform: "discord", platform_user_id: "u0" })).toBe(first);
    for (let i = 1; i < MAX_PROVISIONED_PER_MINUTE; i++) await users.resolve("bot", { platform: "discord", platform_user_id: `u${i}` });
    expect(profiles.size).toBe(MAX_PROVISIONED_PER_MINUTE);
    await expect(users.resolve("bot", { platform: "discord", platform_user_id: "one-too-many" })).rejects.toMatchObject({ code: "ASTRID_ERR_RATE_LIMITED" });
    // Users already provisioned keep resolving.
    expect(await users.resolve("bot", { platform: "discord", platform_user_id: "u0" })).toBe(first);
  });
});
