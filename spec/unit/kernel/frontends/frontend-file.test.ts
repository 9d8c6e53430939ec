/** Issue #9: the frontend credential file format, `etc/frontends/<name>.toml`. */
import { randomBytes, createHash } from "node:crypto";
import { checkFrontendName, parseFrontendFile, serialiseFrontendFile, tokenDigest, type FrontendRecord } from "../../../../kernel/frontends/frontend-file";

const FILE = "/h/etc/frontends/bot.toml";
const record: FrontendRecord = {
  name: "bot",
  platforms: ["discord", "web"],
  unlinked: "restricted",
  created_at: "2025-01-02T03:04:05.000Z",
  token_sha256: "a".repeat(64),
};

function failure(text: string, expected = "bot"): { code: string; message: string } {
  try {
    parseFrontendFile(text, FILE, expected);
  } catch (err) {
    return err as { code: string; message: string };
  }
  throw new Error("parsed");
}

describe("issue #9: frontend credential files", () => {
  it("round-trips through its TOML text, which never holds a token", () => {
    const text = serialiseFrontendFile(record);
    expect(parseFrontendFile(text, FILE, "bot")).toEqual(record);
    expect(text).toContain('token_sha256 = "aaaa');
    const withFile = { ...record, token_file: "/secrets/bot.token" };
    expect(parseFrontendFile(serialiseFrontendFile(withFile), FILE, "bot")).toEqual(withFile);
  });

  it("the digest is the SHA-256 of the token's 32 bytes", () => {
    const token = randomBytes(32);
    expect(tokenDigest(token)).toBe(createHash("sha256").update(token).digest("hex"));
  });

  it("refuses an unknown key, naming the file, its line and the key", () => {
    const text = serialiseFrontendFile(record) + 'admin = true\n';
    const line = text.split("\n").findIndex((l) => l.startsWith("admin")) + 1;
    expect(failure(text)).toMatchObject({ code: "ASTRID_ERR_FRONTEND_INVALID", message: `${FILE}:${line}: field admin: unknown key (not allowed in a frontend credential)` });
  });

  it("names the line of a bad value and of a TOML syntax error", () => {
    const text = serialiseFrontendFile(record).replace('unlinked = "restricted"', 'unlinked = "everyone"');
    const line = text.split("\n").findIndex((l) => l.startsWith("unlinked")) + 1;
    expect(failure(text).message).toMatch(new RegExp(`^${FILE}:${line}: field unlinked: `));
    expect(failure('name = "bot"\nplatforms = [\n').message).toMatch(new RegExp(`^${FILE}:\\d+:\\d+: TOML syntax error`));
    expect(failure(serialiseFrontendFile({ ...record, platforms: ["Discord"] })).message).toMatch(/field platforms\.0: must be 1-32 characters of \[a-z0-9_-\]/);
    expect(failure(serialiseFrontendFile({ ...record, platforms: [] })).message).toMatch(/field platforms: must name at least one platform/);
    expect(failure(serialiseFrontendFile({ ...record, token_sha256: "xyz" })).message).toMatch(/field token_sha256: must be 64 lowercase hex/);
  });

  it("a file must carry the name it is filed under", () => {
    expect(failure(serialiseFrontendFile(record), "other").message).toMatch(/field name: is "bot" but the file is named for "other"/);
  });

  it("a missing unlinked policy means refuse", () => {
    const text = serialiseFrontendFile(record).replace(/^unlinked = .*\n/m, "");
    expect(parseFrontendFile(text, FILE, "bot").unlinked).toBe("refuse");
  });

  it("names are principal ids, and `default` is the operator's", () => {
    expect(() => checkFrontendName("discord-bot")).not.toThrow();
    for (const bad of ["default", "", "../etc", "a b", "x".repeat(65)]) {
      expect(() => checkFrontendName(bad)).toThrow(expect.objectContaining({ code: "ASTRID_ERR_FRONTEND_INVALID" }));
    }
  });
});

describe("issue #9: frontend credential files, missing fields", () => {
  it("says which field is missing", () => {
    const text = serialiseFrontendFile(record).replace(/^created_at = .*\n/m, "");
    expect(() => parseFrontendFile(text, FILE, "bot")).toThrow(`${FILE}: field created_at: missing`);
  });
});
