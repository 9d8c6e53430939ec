/** Issue #9: the one rule for each identity name (principal ids, platforms, platform user ids, display names). */
import { isDisplayName, isPlatform, isPlatformUserId, isPrincipalId, PlatformUserIdSchema } from "../../../protocol/identity-names";

describe("issue #9: identity names", () => {
  it("principal ids are 1-64 of [A-Za-z0-9_-] (reference §1.4)", () => {
    for (const ok of ["default", "alice", "A_b-9", "x".repeat(64)]) expect(isPrincipalId(ok)).toBe(true);
    for (const bad of ["", "x".repeat(65), "a b", "a:b", "ä", "../x", 7]) expect(isPrincipalId(bad)).toBe(false);
  });

  it("platforms are 1-32 of [a-z0-9_-], lower case only", () => {
    for (const ok of ["discord", "web", "matrix_2", "a-b"]) expect(isPlatform(ok)).toBe(true);
    for (const bad of ["", "Discord", "x".repeat(33), "we b", "a:b", "a.b"]) expect(isPlatform(bad)).toBe(false);
  });

  it("platform user ids are 1-256 printable characters: spaces and Unicode yes, controls and separators no", () => {
    for (const ok of ["80351110224678912", "alice@example.com", "Jane Doe", "ユーザー", "😀", "x".repeat(256)]) expect(isPlatformUserId(ok)).toBe(true);
    for (const bad of ["", "x".repeat(257), "a\nb", "a\u0000b", "a\u200bb", "a\u2028b", "\ud800", "a\tb", "\u00a0"]) {
      expect(isPlatformUserId(bad)).toBe(false);
    }
    expect(PlatformUserIdSchema.safeParse("a\rb").success).toBe(false);
  });

  it("display names follow the same printable rule", () => {
    expect(isDisplayName("Alice ✨")).toBe(true);
    expect(isDisplayName("evil\n[INFO] forged line")).toBe(false);
    expect(isDisplayName("")).toBe(false);
  });
});
