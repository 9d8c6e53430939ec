import { parseUuid } from "../../../protocol/uuid";

const CANONICAL = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";

describe("parseUuid", () => {
  it("returns the canonical form of a hyphenated UUID, any case", () => {
    expect(parseUuid(CANONICAL)).toBe(CANONICAL);
    expect(parseUuid(CANONICAL.toUpperCase())).toBe(CANONICAL);
    expect(parseUuid("6F1c2D3e-4A5b-4C6d-8E9f-0A1b2C3d4E5f")).toBe(CANONICAL);
  });

  it("accepts 32 hex digits without hyphens", () => {
    expect(parseUuid(CANONICAL.replaceAll("-", ""))).toBe(CANONICAL);
    expect(parseUuid(CANONICAL.replaceAll("-", "").toUpperCase())).toBe(CANONICAL);
  });

  it("accepts the nil UUID", () => {
    expect(parseUuid("00000000-0000-0000-0000-000000000000")).toBe("00000000-0000-0000-0000-000000000000");
  });

  it("refuses anything else", () => {
    for (const bad of [
      "",
      "not-a-uuid",
      `${CANONICAL}0`,
      CANONICAL.slice(1),
      CANONICAL.replace("6", "g"),
      // hyphens are all or nothing
      "6f1c2d3e4a5b-4c6d-8e9f-0a1b2c3d4e5f",
      "6f1c2d3e-4a5b4c6d8e9f0a1b2c3d4e5f",
      // hyphens in the wrong places
      "6f1c2d3e4-a5b-4c6d-8e9f-0a1b2c3d4e5f",
      ` ${CANONICAL}`,
      `${CANONICAL}\n`,
      `{${CANONICAL}}`,
      `urn:uuid:${CANONICAL}`,
    ]) {
      expect(parseUuid(bad)).toBeNull();
    }
  });
});
