/** Issue #9: identity links on the real storage worker (SQLite), across a reopen. */
import { randomBytes } from "node:crypto";
import path from "node:path";
import { StorageClient } from "../../kernel/storage-client";
import { IdentityLinks } from "../../kernel/identity/identity-links";
import { cleanup, tempHome } from "../helpers/daemon";

const silent = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} } as never;
afterAll(cleanup);

describe("issue #9: identity links in the state database", () => {
  it("link, list in pages, unlink, and the links survive a reopen", async () => {
    const dbPath = path.join(tempHome(), "state.db");
    const seed = randomBytes(32);
    let storage = await StorageClient.open({ dbPath, seed, logger: silent });
    try {
      const links = new IdentityLinks(storage);
      // Astral and BMP characters whose UTF-16 and UTF-8 orders differ: pages follow the store's byte order.
      const ids = ["a", "b", "\uff21", "\u{1F600}", "z z"];
      await Promise.all(ids.map((id, i) => links.link("web", id, `p${i % 2}`, "claimed", `User ${i}`)));
      const seen: string[] = [];
      let cursor: string | undefined;
      do {
        const page = await links.list({ platform: "web", limit: 2, cursor });
        seen.push(...page.links.map((l) => l.platform_user_id));
        cursor = page.next_cursor;
      } while (cursor !== undefined);
      expect(seen).toEqual([...ids].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y))));
      expect((await links.linksOf("p1")).map((l) => l.platform_user_id).sort()).toEqual(["b", "\u{1F600}"].sort());
      expect(await links.unlink("web", "a")).toMatchObject({ principal: "p0" });
      await storage.close();

      storage = await StorageClient.open({ dbPath, seed, logger: silent });
      const reopened = new IdentityLinks(storage);
      expect(await reopened.resolve("web", "a")).toBeUndefined();
      expect(await reopened.resolve("web", "\u{1F600}")).toEqual({ principal: "p1", method: "claimed" });
      expect((await reopened.list()).links).toHaveLength(4);
    } finally {
      await storage.close();
    }
  });
});
