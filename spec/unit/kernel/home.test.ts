import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { resolveHome } from "../../../kernel/home";

const code = (env: NodeJS.ProcessEnv) => {
  try {
    resolveHome(env);
  } catch (err) {
    return (err as { code: string }).code;
  }
  return "ok";
};

describe("home resolution (reference §1.1)", () => {
  it("prefers ASTRID_HOME, else $HOME/.astrid", () => {
    expect(resolveHome({ ASTRID_HOME: "/x/y" }).root).toBe("/x/y");
    expect(resolveHome({ HOME: "/home/u" }).root).toBe("/home/u/.astrid");
  });

  it("rejects relative, empty and `..` paths, and a missing HOME", () => {
    expect(code({ ASTRID_HOME: "relative/path" })).toBe("ASTRID_ERR_HOME_INVALID");
    expect(code({ ASTRID_HOME: "" })).toBe("ASTRID_ERR_HOME_INVALID");
    expect(code({ ASTRID_HOME: "/a/../b" })).toBe("ASTRID_ERR_HOME_INVALID");
    expect(code({ HOME: "rel" })).toBe("ASTRID_ERR_HOME_INVALID");
    expect(code({})).toBe("ASTRID_ERR_HOME_INVALID");
  });

  it("ensure() creates the layout with 0700 directories and is idempotent", () => {
    const root = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-home-")), "h");
    const home = resolveHome({ ASTRID_HOME: root });
    home.ensure();
    home.ensure();
    for (const dir of ["", "etc", "etc/hooks", "var", "run", "log", "keys", "bin", "wit", "home"]) {
      expect(fs.statSync(path.join(root, dir)).mode & 0o777).toBe(0o700);
    }
    expect(fs.readFileSync(path.join(root, "etc", "layout-version"), "utf8")).toBe("1");
    expect(fs.existsSync(path.join(root, "lib"))).toBe(false);
    fs.rmSync(path.dirname(root), { recursive: true });
  });
});
