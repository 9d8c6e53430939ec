import fs from "node:fs";
import path from "node:path";
import { AstridError, ERROR_CODES, isAstridError } from "../../../protocol/errors";
import { DAEMON_VERSION } from "../../../protocol/version";

const root = path.resolve(__dirname, "..", "..", "..");

describe("error registry", () => {
  it("matches the README's error table, code for code", () => {
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const documented = [...readme.matchAll(/^\|\s*`(ASTRID_ERR_[A-Z_]+)`/gm)].map((m) => m[1]).sort();
    expect(documented).toEqual(Object.keys(ERROR_CODES).sort());
  });

  it("brands errors so they are recognised across realms", () => {
    const err = new AstridError("ASTRID_ERR_TIMEOUT", "t");
    expect(isAstridError(err)).toBe(true);
    expect(isAstridError({ code: "ASTRID_ERR_TIMEOUT", message: "t" })).toBe(false);
    expect(isAstridError(new Error("x"))).toBe(false);
  });

  it("reports the package.json version", () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8")) as { version: string };
    expect(DAEMON_VERSION).toBe(pkg.version);
  });
});
