import { decodeToken, protocolMismatchReason, tokenMatches } from "../../../protocol/handshake";

const token = "ab".repeat(32);

describe("handshake tokens", () => {
  it("accepts the token trimmed and in either case", () => {
    const bytes = Buffer.from(token, "hex");
    expect(tokenMatches(bytes, token)).toBe(true);
    expect(tokenMatches(bytes, ` ${token.toUpperCase()}\n`)).toBe(true);
  });

  it("rejects wrong, short, long and non-hex tokens", () => {
    const bytes = Buffer.from(token, "hex");
    expect(tokenMatches(bytes, "cd".repeat(32))).toBe(false);
    expect(tokenMatches(bytes, token.slice(2))).toBe(false);
    expect(tokenMatches(bytes, token + "ab")).toBe(false);
    expect(tokenMatches(bytes, "zz".repeat(32))).toBe(false);
    expect(decodeToken("")).toBeNull();
  });

  it("never recommends a command that does not exist", () => {
    expect(protocolMismatchReason(99)).toMatch(/^Protocol version mismatch \(client=99, server=1\)\./);
    expect(protocolMismatchReason(99)).not.toMatch(/astrid daemon restart/);
  });
});
