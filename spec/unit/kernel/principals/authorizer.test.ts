/** Issue #9: the authorization algorithm (reference §8.6) and the principals registry (boot seeding, ensure). */
import fs from "node:fs";
import { PrincipalRegistry } from "../../../../kernel/principals/principals";
import { memoryLogger, removeTempHomes, tempPolicyHome, writeProfile } from "../../../helpers/principals";

afterEach(removeTempHomes);

async function registry(profiles: Record<string, string>, groups = "") {
  const home = tempPolicyHome();
  if (groups) fs.writeFileSync(home.groupsPath, groups);
  for (const [p, text] of Object.entries(profiles)) writeProfile(home, p, text);
  const log = memoryLogger();
  return { home, ...log, principals: await PrincipalRegistry.open(home, log.logger) };
}

describe("issue #9: authorization order", () => {
  it("admin holds everything; agent holds its self surface only; restricted holds nothing", async () => {
    const { principals } = await registry({ a: 'groups = ["admin"]', g: 'groups = ["agent"]', r: 'groups = ["restricted"]' });
    for (const cap of ["system:shutdown", "system:status", "self:capsule:reload", "agent:create"]) {
      expect(await principals.authorize("a", cap)).toMatchObject({ allowed: true, reason: `policy allow: a holds ${cap}`, via: 'group admin ("*")' });
    }
    expect(await principals.authorize("g", "self:capsule:list")).toMatchObject({ allowed: true, via: 'group agent ("self:*")' });
    expect(await principals.authorize("g", "self:quota:get")).toMatchObject({ allowed: true });
    expect(await principals.authorize("g", "system:status")).toEqual({
      allowed: false, code: "ASTRID_ERR_PERMISSION_DENIED", why: "missing", reason: "permission denied for principal g: missing capability system:status",
    });
    expect(await principals.authorize("g", "agent:create")).toMatchObject({ allowed: false });
    expect(await principals.authorize("r", "self:capsule:list")).toMatchObject({ allowed: false, reason: "permission denied for principal r: missing capability self:capsule:list" });
  });

  it("issue #9: a revoke beats the admin group and every grant, naming the pattern", async () => {
    const { principals } = await registry({ a: 'groups = ["admin"]\ngrants = ["system:shutdown"]\nrevokes = ["system:*"]' });
    expect(await principals.authorize("a", "system:shutdown")).toMatchObject({
      allowed: false, why: "revoked", reason: 'permission denied for principal a: capability system:shutdown is revoked via "system:*"',
    });
    expect(await principals.authorize("a", "self:capsule:list")).toMatchObject({ allowed: true });
  });

  it("disabled beats everything", async () => {
    const { principals } = await registry({ a: 'enabled = false\ngroups = ["admin"]\ngrants = ["*"]' });
    expect(await principals.authorize("a", "system:status")).toMatchObject({ allowed: false, why: "disabled", reason: "permission denied for principal a: agent is disabled" });
    expect(await principals.enabled("a")).toBe(false);
  });

  it("a grant elevates exactly its surface, before groups", async () => {
    const { principals } = await registry({ r: 'groups = ["restricted"]\ngrants = ["system:status"]' });
    expect(await principals.authorize("r", "system:status")).toMatchObject({ allowed: true, via: 'grant "system:status"' });
    expect(await principals.authorize("r", "system:shutdown")).toMatchObject({ allowed: false });
  });

  it("an unknown group is skipped with one warning and fails closed", async () => {
    const { principals, lines } = await registry({ u: 'groups = ["ghosts", "agent"]' });
    expect(await principals.authorize("u", "system:status")).toMatchObject({ allowed: false, reason: "permission denied for principal u: missing capability system:status" });
    expect(await principals.authorize("u", "system:shutdown")).toMatchObject({ allowed: false });
    expect(await principals.authorize("u", "self:capsule:list")).toMatchObject({ allowed: true });
    expect(lines.filter((l) => l.level === "warn" && l.group === "ghosts")).toHaveLength(1);
  });

  it("custom groups gate their surface: capsule:install is not self:capsule:install", async () => {
    const { principals } = await registry({ c: 'groups = ["installers"]' }, '[groups.installers]\ncapabilities = ["capsule:install"]\n');
    expect(await principals.authorize("c", "capsule:install")).toMatchObject({ allowed: true, via: 'group installers ("capsule:install")' });
    expect(await principals.authorize("c", "self:capsule:install")).toMatchObject({ allowed: false });
  });

  it("a principal without a profile holds nothing; default is seeded with admin", async () => {
    const { principals, home } = await registry({});
    expect(await principals.authorize("nobody", "self:capsule:list")).toMatchObject({ allowed: false });
    expect(await principals.authorize("default", "system:shutdown")).toMatchObject({ allowed: true });
    expect(fs.readFileSync(home.profilePath("default"), "utf8")).toMatch(/groups = \[ "admin" \]/);
    expect(fs.statSync(home.profilePath("default")).mode & 0o777).toBe(0o600);
  });

  it("issue #9: a malformed profile denies that principal with the file and line, and leaves the others alone", async () => {
    const { principals, home } = await registry({ broken: 'groups = ["admin"\n', odd: 'groups = ["admin"]\ncolour = "red"\n', fine: 'groups = ["admin"]' });
    expect(await principals.authorize("broken", "system:status")).toEqual({
      allowed: false, why: "unusable", code: "ASTRID_ERR_PROFILE_INVALID",
      reason: expect.stringMatching(new RegExp(`^permission denied for principal broken: missing capability system:status \\(its profile cannot be used: ${home.profilePath("broken")}:\\d+:\\d+: TOML syntax error`)),
    });
    expect(await principals.authorize("odd", "system:status")).toMatchObject({
      allowed: false, code: "ASTRID_ERR_PROFILE_INVALID", reason: expect.stringContaining(`${home.profilePath("odd")}:2: unknown key colour`),
    });
    expect(await principals.authorize("fine", "system:status")).toMatchObject({ allowed: true });
    expect(await principals.authorize("default", "system:status")).toMatchObject({ allowed: true });
    expect(await principals.enabled("broken")).toBe(false);
    await expect(principals.quotas("odd")).rejects.toMatchObject({ code: "ASTRID_ERR_PROFILE_INVALID" });
  });

  it("check() answers synchronously once the profile is cached", async () => {
    const { principals } = await registry({ a: 'groups = ["admin"]' });
    expect(principals.check("a", "x") instanceof Promise).toBe(true);
    await principals.check("a", "x");
    expect(principals.check("a", "x")).toMatchObject({ allowed: true });
  });
});

describe("issue #9: boot seeding and ensure()", () => {
  it("seeds default only when its groups, grants and revokes are all empty", async () => {
    const seeded = await registry({ default: "enabled = true\n[quotas]\nmax_timeout_secs = 9\n" });
    expect(await seeded.principals.profiles.read("default")).toMatchObject({ groups: ["admin"], quotas: { max_timeout_secs: 9 } });
    const kept = await registry({ default: 'grants = ["system:status"]\n' });
    expect(await kept.principals.profiles.read("default")).toMatchObject({ groups: [], grants: ["system:status"] });
    expect(await kept.principals.authorize("default", "system:shutdown")).toMatchObject({ allowed: false });
  });

  it("a malformed default profile is not overwritten: it warns, and default is denied until it is fixed", async () => {
    const { principals, home, lines } = await registry({ default: "groups = [" });
    expect(fs.readFileSync(home.profilePath("default"), "utf8")).toBe("groups = [");
    expect(lines.some((l) => l.level === "warn" && /not seeded/.test(l.message))).toBe(true);
    expect(await principals.authorize("default", "system:status")).toMatchObject({ allowed: false, code: "ASTRID_ERR_PROFILE_INVALID" });
  });

  it("a malformed groups.toml is a boot error", async () => {
    const home = tempPolicyHome();
    fs.writeFileSync(home.groupsPath, "[groups.x]\nfoo = 1\n");
    await expect(PrincipalRegistry.open(home, memoryLogger().logger)).rejects.toMatchObject({ code: "ASTRID_ERR_GROUPS_INVALID", message: expect.stringContaining(`${home.groupsPath}:2: unknown key groups.x.foo`) });
  });

  it("ensure creates a profile once, with the groups asked for, and leaves an existing one alone", async () => {
    const { principals } = await registry({ kept: 'groups = ["admin"]' });
    expect(await principals.ensure("web-user", { groups: ["restricted"] })).toEqual({ created: true });
    expect(await principals.ensure("web-user", { groups: ["admin"] })).toEqual({ created: false });
    expect(await principals.profiles.read("web-user")).toMatchObject({ groups: ["restricted"] });
    expect(await principals.ensure("kept", { groups: ["restricted"] })).toEqual({ created: false });
    expect(await principals.exists("web-user")).toBe(true);
    expect(await principals.exists("nobody")).toBe(false);
    expect(await principals.exists("../x")).toBe(false);
    await expect(principals.ensure("bad id", { groups: [] })).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID" });
    await expect(principals.ensure("x", { groups: ["a b"] })).rejects.toMatchObject({ code: "ASTRID_ERR_PROFILE_INVALID" });
    expect(await principals.quotas("web-user")).toMatchObject({ max_timeout_secs: 300 });
  });
});
