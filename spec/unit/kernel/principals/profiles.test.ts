/** Issue #9: principal profiles (reference §8.5): fields, defaults, strict tables, atomic 0600 writes, the cache. */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { QUOTA_DEFAULTS } from "../../../../protocol/admin-request";
import { defaultProfile, parseProfile, ProfileStore, serializeProfile, validateProfile } from "../../../../kernel/principals/profiles";

let dir: string;
beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-profiles-"))));
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const failure = (text: string) => {
  try {
    parseProfile(text, "/h/etc/profiles/alice.toml");
  } catch (err) {
    return { code: (err as { code: string }).code, message: (err as Error).message };
  }
  return { code: "no error", message: "" };
};

describe("issue #9: profiles", () => {
  it("defaults: version 1, enabled, no groups, grants or revokes, the reference's quotas", () => {
    expect(defaultProfile()).toEqual({
      profile_version: 1, enabled: true, groups: [], grants: [], revokes: [],
      auth: { methods: [], public_keys: [] }, network: { egress: [] }, process: { allow: [] }, quotas: QUOTA_DEFAULTS,
    });
    expect(parseProfile("", "f")).toEqual(defaultProfile());
  });

  it("parses every field", () => {
    const p = parseProfile([
      "profile_version = 1", "enabled = false", 'groups = ["agent"]', 'grants = ["system:status"]', 'revokes = ["self:*"]',
      "[auth]", 'methods = ["keypair", "system"]', 'public_keys = ["ed25519:abc"]',
      "[network]", 'egress = ["api.example.com"]', "[process]", 'allow = ["git"]', "[quotas]", "max_timeout_secs = 60",
    ].join("\n"), "f");
    expect(p).toMatchObject({ enabled: false, groups: ["agent"], grants: ["system:status"], revokes: ["self:*"], auth: { methods: ["keypair", "system"] }, quotas: { max_timeout_secs: 60, max_memory_bytes: QUOTA_DEFAULTS.max_memory_bytes } });
  });

  it("every table rejects unknown keys, naming the file, line and key", () => {
    expect(failure('groups = []\ncolour = "red"\n')).toEqual({ code: "ASTRID_ERR_PROFILE_INVALID", message: "/h/etc/profiles/alice.toml:2: unknown key colour (see docs/principals.md for the fields)" });
    for (const table of ["auth", "network", "process", "quotas"]) {
      expect(failure(`[${table}]\nnope = 1\n`).message).toBe(`/h/etc/profiles/alice.toml:2: unknown key ${table}.nope (see docs/principals.md for the fields)`);
    }
  });

  it("a newer profile_version is an error", () => {
    expect(failure("profile_version = 2\n").message).toMatch(/:1: field profile_version: is newer than this daemon understands \(1\)/);
    expect(failure("profile_version = 0\n").code).toBe("ASTRID_ERR_PROFILE_INVALID");
  });

  it("validates values: capabilities, group names, auth methods, blanks, quota ranges", () => {
    expect(failure('grants = ["a b"]\n').message).toMatch(/:1: field grants\.0: capability "a b" rejected/);
    expect(failure('revokes = ["**"]\n').message).toMatch(/field revokes\.0/);
    expect(failure('groups = ["bad name"]\n').message).toMatch(/field groups\.0/);
    expect(failure('[auth]\nmethods = ["password"]\n').message).toMatch(/:2: field auth\.methods\.0: must be keypair, passkey or system/);
    expect(failure('[auth]\npublic_keys = [""]\n').message).toMatch(/auth\.public_keys\.0/);
    expect(failure('[network]\negress = ["  "]\n').message).toMatch(/must not be blank/);
    expect(failure('[process]\nallow = [""]\n').message).toMatch(/must not be blank/);
    expect(failure("[quotas]\nmax_timeout_secs = 0\n").message).toMatch(/:2: field quotas\.max_timeout_secs: must be 1\.\.86400/);
    expect(failure("[quotas]\nmax_background_processes = 300\n").message).toMatch(/0\.\.256/);
    expect(failure("enabled = \"yes\"\n").message).toMatch(/field enabled: must be true or false/);
  });

  it("malformed TOML names the file and line", () => {
    expect(failure('groups = ["admin"\n[quotas]\n')).toEqual({ code: "ASTRID_ERR_PROFILE_INVALID", message: expect.stringMatching(/^\/h\/etc\/profiles\/alice\.toml:\d+:\d+: TOML syntax error: /) });
  });

  it("serialises every field and parses back to the same profile", () => {
    const p = { ...defaultProfile(), groups: ["admin"], grants: ["a:*"] };
    expect(parseProfile(serializeProfile(p), "f")).toEqual(p);
  });

  it("validateProfile refuses a bad profile before it is written", () => {
    expect(() => validateProfile({ ...defaultProfile(), grants: ["x y"] })).toThrow(/^profile rejected: grants\.0: capability "x y" rejected/);
  });

  it("the store: a missing file is the defaults; writes are atomic 0600 and create etc/profiles 0700", async () => {
    const store = new ProfileStore(path.join(dir, "profiles"));
    expect(await store.read("alice")).toBeNull();
    expect(await store.resolve("alice")).toEqual(defaultProfile());
    expect(await store.exists("alice")).toBe(false);
    await store.write("alice", { ...defaultProfile(), groups: ["agent"] });
    expect(fs.statSync(path.join(dir, "profiles")).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, "profiles", "alice.toml")).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(path.join(dir, "profiles"))).toEqual(["alice.toml"]);
    expect((await store.resolve("alice")).groups).toEqual(["agent"]);
    expect(await store.principals()).toEqual(["alice"]);
    expect(await store.remove("alice")).toBe(true);
    expect(await store.remove("alice")).toBe(false);
    expect((await store.resolve("alice")).groups).toEqual([]);
  });

  it("the cache: hand edits are not seen until invalidated; a malformed file is never cached", async () => {
    const store = new ProfileStore(dir);
    await store.write("bob", { ...defaultProfile(), groups: ["agent"] });
    fs.writeFileSync(path.join(dir, "bob.toml"), 'groups = ["admin"]\n');
    expect((await store.resolve("bob")).groups).toEqual(["agent"]);
    store.invalidate("bob");
    expect((await store.resolve("bob")).groups).toEqual(["admin"]);
    fs.writeFileSync(path.join(dir, "carol.toml"), "groups = [");
    await expect(store.resolve("carol")).rejects.toMatchObject({ code: "ASTRID_ERR_PROFILE_INVALID", message: expect.stringContaining(path.join(dir, "carol.toml")) });
    fs.writeFileSync(path.join(dir, "carol.toml"), 'groups = ["agent"]\n');
    expect((await store.resolve("carol")).groups).toEqual(["agent"]);
  });

  it("never builds a path from an invalid principal id", async () => {
    const store = new ProfileStore(dir);
    expect(() => store.pathOf("../etc/passwd")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_REQUEST_INVALID" }));
    await expect(store.resolve("a/b")).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID" });
  });

  it("lists only well-named .toml files", async () => {
    for (const f of ["a.toml", "b.toml", "bad name.toml", "c.txt", ".tmp.toml.x"]) fs.writeFileSync(path.join(dir, f), "");
    expect(await new ProfileStore(dir).principals()).toEqual(["a", "b"]);
    expect(await new ProfileStore(path.join(dir, "none")).principals()).toEqual([]);
  });
});
