/** Issue #9: platform identity links in `system:identity`, and the principal an unlinked user is provisioned. */
import { IDENTITY_SCOPE, IdentityLinks, provisionedPrincipalFor, type IdentityKv } from "../../../../kernel/identity/identity-links";
import { isPrincipalId } from "../../../../protocol/identity-names";

/** An in-memory KV with the StorageClient's contract (keys listed in byte order). */
class MemoryKv implements IdentityKv {
  readonly data = new Map<string, Uint8Array>();
  private k(scope: string, key: string) {
    return `${scope}\0${key}`;
  }
  async get(scope: string, key: string) {
    return this.data.get(this.k(scope, key)) ?? null;
  }
  async set(scope: string, key: string, value: Uint8Array) {
    this.data.set(this.k(scope, key), value);
  }
  async delete(scope: string, key: string) {
    return this.data.delete(this.k(scope, key));
  }
  async listKeys(scope: string, prefix = "") {
    return [...this.data.keys()]
      .filter((k) => k.startsWith(`${scope}\0${prefix}`))
      .map((k) => k.slice(scope.length + 1))
      .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }
  keys() {
    return [...this.data.keys()].map((k) => k.split("\0")[1]).sort();
  }
}

const when = new Date("2025-02-03T04:05:06.000Z");
let kv: MemoryKv;
let links: IdentityLinks;
beforeEach(() => {
  kv = new MemoryKv();
  links = new IdentityLinks(kv, () => when);
});
const code = (p: () => Promise<unknown>) => Promise.resolve().then(p).then(() => "resolved", (e: { code: string }) => e.code);

describe("issue #9: identity links", () => {
  it("link, resolve, unlink", async () => {
    expect(await links.resolve("discord", "123")).toBeUndefined();
    const outcome = await links.link("discord", "123", "alice", "admin", "Alice");
    expect(outcome).toEqual({ link: { platform: "discord", platform_user_id: "123", principal: "alice", method: "admin", display_name: "Alice", linked_at: when.toISOString() } });
    expect(await links.resolve("discord", "123")).toEqual({ principal: "alice", method: "admin" });
    expect(await links.resolve("web", "123")).toBeUndefined();
    expect(await links.unlink("discord", "123")).toMatchObject({ principal: "alice" });
    expect(await links.resolve("discord", "123")).toBeUndefined();
    expect(await links.unlink("discord", "123")).toBeUndefined();
    expect(kv.keys()).toEqual([]);
  });

  it("keeps links in system:identity under link: with a principal: index", async () => {
    await links.link("web", "a:b c", "bob", "claimed");
    expect(kv.keys()).toEqual(["link:web:a:b c", "principal:bob:web:a:b c"]);
    expect([...kv.data.keys()].every((k) => k.startsWith(`${IDENTITY_SCOPE}\0`))).toBe(true);
  });

  it("relinking replaces the link, says what it replaced, and moves the index", async () => {
    await links.link("discord", "123", "alice", "claimed");
    const outcome = await links.link("discord", "123", "bob", "admin");
    expect(outcome.previous).toMatchObject({ principal: "alice", method: "claimed" });
    expect(await links.resolve("discord", "123")).toEqual({ principal: "bob", method: "admin" });
    expect(await links.linksOf("alice")).toEqual([]);
    expect((await links.linksOf("bob")).map((l) => l.platform_user_id)).toEqual(["123"]);
  });

  it("concurrent links of one user end in one consistent state", async () => {
    await Promise.all(["p1", "p2", "p3", "p4"].map((p) => links.link("discord", "123", p, "admin")));
    expect(await links.resolve("discord", "123")).toEqual({ principal: "p4", method: "admin" });
    expect(kv.keys()).toEqual(["link:discord:123", "principal:p4:discord:123"]);
  });

  it("validates every part, with ASTRID_ERR_REQUEST_INVALID", async () => {
    expect(await code(() => links.link("Discord", "1", "a", "admin"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "", "a", "admin"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "a\nb", "a", "admin"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "x".repeat(257), "a", "admin"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "1", "a b", "admin"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "1", "a", "root" as never))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.link("discord", "1", "a", "admin", "two\nlines"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.resolve("discord", "\u0000"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(kv.keys()).toEqual([]);
  });

  it("the longest user id still fits the store's 1024-byte keys", async () => {
    const id = "ｱ".repeat(256); // 3 UTF-8 bytes each
    await links.link("x".repeat(32), id, "p".repeat(64), "admin");
    expect(await links.resolve("x".repeat(32), id)).toMatchObject({ principal: "p".repeat(64) });
    for (const key of kv.keys()) expect(Buffer.byteLength(key)).toBeLessThanOrEqual(1024);
  });

  it("a record that is not a link for its key links nobody", async () => {
    await kv.set(IDENTITY_SCOPE, "link:discord:1", Buffer.from("{not json"));
    await kv.set(IDENTITY_SCOPE, "link:discord:2", Buffer.from(JSON.stringify({ platform: "discord", platform_user_id: "3", principal: "mallory", method: "admin", linked_at: "" })));
    expect(await links.resolve("discord", "1")).toBeUndefined();
    expect(await links.resolve("discord", "2")).toBeUndefined();
    expect(await links.unlink("discord", "1")).toBeUndefined();
    expect(kv.keys()).toEqual(["link:discord:2"]);
  });

  it("lists everything, one platform, or one principal, a page at a time with a cursor", async () => {
    for (let i = 0; i < 5; i++) await links.link("discord", `u${i}`, i % 2 ? "odd" : "even", "admin");
    await links.link("web", "w", "odd", "claimed");
    await links.link("webx", "z", "even", "claimed");

    const all = await links.list();
    expect(all.links.map((l) => `${l.platform}/${l.platform_user_id}`)).toEqual(["discord/u0", "discord/u1", "discord/u2", "discord/u3", "discord/u4", "web/w", "webx/z"]);
    expect(all.next_cursor).toBeUndefined();

    // `web` does not take in `webx`.
    expect((await links.list({ platform: "web" })).links.map((l) => l.platform_user_id)).toEqual(["w"]);
    expect((await links.list({ principal: "odd" })).links.map((l) => l.platform_user_id)).toEqual(["u1", "u3", "w"]);
    expect((await links.list({ principal: "odd", platform: "web" })).links.map((l) => l.platform_user_id)).toEqual(["w"]);

    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await links.list({ platform: "discord", limit: 2, cursor });
      seen.push(...page.links.map((l) => l.platform_user_id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== undefined);
    expect(seen).toEqual(["u0", "u1", "u2", "u3", "u4"]);
    expect(pages).toBe(3);
  });

  it("refuses a bad limit and a cursor from another listing", async () => {
    await links.link("discord", "a", "p", "admin");
    await links.link("discord", "b", "p", "admin");
    const { next_cursor } = await links.list({ limit: 1 });
    expect(next_cursor).toBeDefined();
    expect(await code(() => links.list({ platform: "web", cursor: next_cursor }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.list({ cursor: "!!" }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.list({ limit: 0 }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.list({ limit: 1001 }))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(() => links.list({ limit: 1.5 }))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("an index entry its link no longer confirms is not listed", async () => {
    await links.link("discord", "1", "alice", "admin");
    await kv.set(IDENTITY_SCOPE, "principal:alice:discord:2", new Uint8Array(0));
    expect((await links.linksOf("alice")).map((l) => l.platform_user_id)).toEqual(["1"]);
  });
});

describe("issue #9: provisioned principals for unlinked users", () => {
  it("is deterministic, a valid principal id, and readable", () => {
    const p = provisionedPrincipalFor("discord", "80351110224678912");
    expect(p).toBe(provisionedPrincipalFor("discord", "80351110224678912"));
    expect(p).toMatch(/^discord-80351110224678912-[0-9a-f]{16}$/);
    expect(isPrincipalId(p)).toBe(true);
  });

  it("stays at most 64 characters for the longest platform and id", () => {
    const p = provisionedPrincipalFor("x".repeat(32), "日本".repeat(128));
    expect(p.length).toBeLessThanOrEqual(64);
    expect(isPrincipalId(p)).toBe(true);
  });

  it("users whose readable parts look alike still get different principals", () => {
    const pairs: Array<[string, string]> = [
      ["web", "alice.smith"],
      ["web", "alice_smith"],
      ["web", "alice smith"],
      ["a", "b-c"],
      ["a-b", "c"],
      ["web", "x".repeat(200)],
      ["web", `${"x".repeat(200)}y`],
    ];
    const names = pairs.map(([platform, id]) => provisionedPrincipalFor(platform, id));
    expect(new Set(names).size).toBe(names.length);
    // Choosing an id equal to someone's readable part plus their hash does not give their principal.
    const victim = provisionedPrincipalFor("web", "alice.smith");
    const forged = victim.slice("web-".length);
    expect(provisionedPrincipalFor("web", forged)).not.toBe(victim);
  });

  it("never yields `default`, and refuses invalid input", () => {
    expect(provisionedPrincipalFor("d", "efault")).not.toBe("default");
    expect(() => provisionedPrincipalFor("Web", "x")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_REQUEST_INVALID" }));
    expect(() => provisionedPrincipalFor("web", "")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_REQUEST_INVALID" }));
  });
});
