/** Issue #9: the static capability grammar and matcher (reference §8.3), rule by rule. */
import { assertCapability, capabilityMatches, capabilityProblem, isCapability, MAX_CAPABILITY_BYTES } from "../../../protocol/capability";

describe("issue #9: capability grammar", () => {
  it("accepts segments of [A-Za-z0-9_-] and lone `*`, separated by `:`", () => {
    for (const ok of ["*", "system:status", "self:capsule:list", "self:*", "a:*:c", "*:b", "A-z_0:9", "delegate:self:*", "x"]) {
      expect([ok, capabilityProblem(ok)]).toEqual([ok, null]);
    }
  });

  it("rejects an empty capability and empty segments", () => {
    expect(capabilityProblem("")).toMatch(/empty/);
    expect(capabilityProblem("a::b")).toMatch(/empty segment/);
    expect(capabilityProblem(":a")).toMatch(/empty segment/);
    expect(capabilityProblem("a:")).toMatch(/empty segment/);
  });

  it("rejects `**` and `*` mixed into a segment", () => {
    expect(capabilityProblem("**")).toMatch(/`\*\*` is not allowed/);
    expect(capabilityProblem("self:**")).toMatch(/`\*\*` is not allowed/);
    expect(capabilityProblem("self:cap*")).toMatch(/mixes `\*`/);
    expect(capabilityProblem("*a")).toMatch(/mixes `\*`/);
  });

  it("rejects other characters, shell metacharacters and whitespace included", () => {
    for (const bad of ["a b", "a;rm", "a$(x)", "a/b", "a.b", "é", "a:b\n", "a|b", "`x`"]) expect(isCapability(bad)).toBe(false);
  });

  it(`allows at most ${MAX_CAPABILITY_BYTES} bytes`, () => {
    const at = "a".repeat(MAX_CAPABILITY_BYTES);
    expect(capabilityProblem(at)).toBeNull();
    expect(capabilityProblem(`${at}b`)).toMatch(/longer than 256 bytes/);
    expect(capabilityProblem(`${"a:".repeat(127)}ab`)).toBeNull(); // 256 bytes in 128 segments
    expect(capabilityProblem(`${"a:".repeat(128)}a`)).toMatch(/longer than 256 bytes/); // 257
  });

  it("rejects non-strings", () => {
    expect(capabilityProblem(7)).toMatch(/must be a string/);
    expect(capabilityProblem(null)).toMatch(/must be a string/);
  });

  it("assertCapability throws the reference's text with ASTRID_ERR_CAPABILITY_INVALID", () => {
    expect(() => assertCapability("x y")).toThrow(expect.objectContaining({ code: "ASTRID_ERR_CAPABILITY_INVALID", message: expect.stringMatching(/^capability "x y" rejected: /) }));
    expect(() => assertCapability("ok:cap")).not.toThrow();
  });
});

describe("issue #9: capability matching", () => {
  it("`*` alone matches everything", () => {
    for (const c of ["x", "system:status", "self:capsule:install", "a:b:c:d:e"]) expect(capabilityMatches("*", c)).toBe(true);
  });

  it("a trailing `*` absorbs one or more segments, never zero: `self:*` vs `self`", () => {
    expect(capabilityMatches("self:*", "self:capsule")).toBe(true);
    expect(capabilityMatches("self:*", "self:capsule:install")).toBe(true);
    expect(capabilityMatches("self:*", "self")).toBe(false);
    expect(capabilityMatches("self:*", "selfish:x")).toBe(false);
    expect(capabilityMatches("self:*", "system:status")).toBe(false);
  });

  it("a `*` in the middle matches exactly one segment", () => {
    expect(capabilityMatches("a:*:c", "a:b:c")).toBe(true);
    expect(capabilityMatches("a:*:c", "a:b:x:c")).toBe(false);
    expect(capabilityMatches("a:*:c", "a:c")).toBe(false);
    expect(capabilityMatches("*:status", "system:status")).toBe(true);
    expect(capabilityMatches("*:status", "system:x:status")).toBe(false);
  });

  it("a middle `*` and a trailing `*` together", () => {
    expect(capabilityMatches("a:*:*", "a:b:c")).toBe(true);
    expect(capabilityMatches("a:*:*", "a:b:c:d")).toBe(true);
    expect(capabilityMatches("a:*:*", "a:b")).toBe(false);
  });

  it("without `*` segment counts and values must be equal", () => {
    expect(capabilityMatches("system:status", "system:status")).toBe(true);
    expect(capabilityMatches("system:status", "system:status:x")).toBe(false);
    expect(capabilityMatches("system", "system:status")).toBe(false);
    expect(capabilityMatches("capsule:install", "self:capsule:install")).toBe(false);
    expect(capabilityMatches("System:status", "system:status")).toBe(false);
  });
});
