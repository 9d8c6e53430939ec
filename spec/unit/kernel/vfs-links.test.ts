/**
 * The VFS's directory removal, canonical paths, symlink reads and hard links (the `fs-remove-dir-all`,
 * `fs-canonicalize`, `fs-read-link` and `fs-hard-link` calls) on real temp directories: staged under the workspace
 * like every write, never following a link out of a root, never naming a host path.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AstridHome } from "../../../kernel/home";
import { parseGuestPath } from "../../../kernel/vfs/paths";
import { Vfs } from "../../../kernel/vfs/vfs";

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function setup(options: { homeInsideWorkspace?: boolean } = {}) {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-vfs-links-")));
  made.push(base);
  const ws = path.join(base, "ws");
  const home = new AstridHome(options.homeInsideWorkspace ? path.join(ws, ".astrid-home") : path.join(base, "home"));
  fs.mkdirSync(ws);
  home.ensure();
  fs.mkdirSync(path.join(ws, "build", "deep"), { recursive: true });
  fs.writeFileSync(path.join(ws, "build", "a.o"), "a");
  fs.writeFileSync(path.join(ws, "build", "deep", "b.o"), "b");
  fs.writeFileSync(path.join(ws, "README.md"), "readme");
  const outside = path.join(base, "outside");
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, "secret"), "s3cret");
  return { vfs: new Vfs(home, ws), ws, home, outside, base };
}

const p = parseGuestPath;
const codeOf = (promise: Promise<unknown>) => promise.then(() => "ok", (err: { code: string }) => err.code);

describe("fs-remove-dir-all", () => {
  it("stages the removal in the workspace: gone for the principal, untouched on disk until commit, then removed", async () => {
    const { vfs, ws } = setup();
    await vfs.write("alice", p("build/deep/staged.o"), Buffer.from("s"));
    expect(await vfs.removeDirAll("alice", p("build"))).toBe(4);
    expect(await vfs.stat("alice", p("build"))).toBeNull();
    expect(await vfs.stat("alice", p("build/a.o"))).toBeNull();
    expect(await vfs.stat("bob", p("build/a.o"))).not.toBeNull();
    expect(fs.existsSync(path.join(ws, "build", "deep", "b.o"))).toBe(true);
    expect(await vfs.diff("alice")).toEqual([{ path: "cwd://build", change: "deleted", kind: "dir", size: 0 }]);
    await vfs.commit("alice");
    expect(fs.existsSync(path.join(ws, "build"))).toBe(false);
    expect(fs.existsSync(path.join(ws, "README.md"))).toBe(true);
    expect(await vfs.diff("alice")).toEqual([]);
  });

  it("a directory made again in the removed one's place holds only what is staged; commit replaces the old one", async () => {
    const { vfs, ws } = setup();
    await vfs.removeDirAll("alice", p("build"));
    await vfs.mkdir("alice", p("build"));
    await vfs.write("alice", p("build/new.o"), Buffer.from("n"));
    expect(await vfs.readdir("alice", p("build"))).toEqual(["new.o"]);
    expect((await vfs.diff("alice")).map((c) => `${c.change}:${c.kind}:${c.path}`)).toEqual([
      "deleted:dir:cwd://build", "added:dir:cwd://build", "added:file:cwd://build/new.o",
    ]);
    await vfs.commit("alice");
    expect(fs.readdirSync(path.join(ws, "build"))).toEqual(["new.o"]);
  });

  it("discard brings the directory back", async () => {
    const { vfs } = setup();
    await vfs.removeDirAll("alice", p("build"));
    expect(await vfs.discard("alice")).toEqual(["cwd://build"]);
    expect(await vfs.readdir("alice", p("build"))).toEqual(["a.o", "deep"]);
  });

  it("removes links inside as links: what they point to, outside or inside, stays", async () => {
    const { vfs, ws, outside, home } = setup();
    fs.symlinkSync(outside, path.join(ws, "build", "leak"));
    fs.symlinkSync(path.join(ws, "README.md"), path.join(ws, "build", "readme-link"));
    await vfs.removeDirAll("alice", p("build"));
    await vfs.commit("alice");
    expect(fs.existsSync(path.join(ws, "build"))).toBe(false);
    expect(fs.readdirSync(outside)).toEqual(["secret"]);
    expect(fs.readFileSync(path.join(ws, "README.md"), "utf8")).toBe("readme");
    // The same in home://, removed directly.
    const h = home.principalHome("alice");
    fs.mkdirSync(path.join(h, "cache"), { recursive: true });
    fs.symlinkSync(outside, path.join(h, "cache", "leak"));
    fs.writeFileSync(path.join(h, "cache", "x"), "x");
    expect(await vfs.removeDirAll("alice", p("home://cache"))).toBe(2);
    expect(fs.existsSync(path.join(h, "cache"))).toBe(false);
    expect(fs.readdirSync(outside)).toEqual(["secret"]);
  });

  it("refuses a directory named through a link, a file, a root, and what holds capsules or the daemon's home", async () => {
    const { vfs, ws, outside, home } = setup();
    fs.symlinkSync(path.join(ws, "build"), path.join(ws, "alias"));
    fs.symlinkSync(outside, path.join(ws, "leak"));
    expect(await codeOf(vfs.removeDirAll("alice", p("alias")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.removeDirAll("alice", p("leak")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.removeDirAll("alice", p("README.md")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.removeDirAll("alice", p("missing")))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await codeOf(vfs.removeDirAll("alice", p("cwd://")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(await codeOf(vfs.removeDirAll("alice", p("home://.local")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(await codeOf(vfs.removeDirAll("alice", p("cwd://.astrid")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    const h = home.principalHome("alice");
    fs.mkdirSync(path.join(h, ".local", "capsules"), { recursive: true });
    fs.symlinkSync(path.join(h, ".local"), path.join(h, "dotlocal"));
    fs.mkdirSync(path.join(h, "wrap"));
    fs.symlinkSync(path.join(h, ".local"), path.join(h, "wrap", "l"));
    expect(await codeOf(vfs.removeDirAll("alice", p("home://dotlocal")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.removeDirAll("alice", p("home://wrap/l/capsules")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    // `.local` named through a link to the home itself: refused for what it holds, not for its name.
    fs.symlinkSync(".", path.join(h, "self"));
    expect(await codeOf(vfs.removeDirAll("alice", p("home://self/.local")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(fs.existsSync(path.join(ws, "build", "a.o"))).toBe(true);
    expect(fs.existsSync(path.join(h, ".local", "capsules"))).toBe(true);
  });

  it("refuses a workspace directory holding $ASTRID_HOME", async () => {
    const { vfs, ws, home } = setup({ homeInsideWorkspace: true });
    fs.renameSync(home.root, path.join(ws, "build", "h"));
    fs.symlinkSync(path.join(ws, "build", "h"), home.root);
    expect(await codeOf(vfs.removeDirAll("alice", p("build")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
  });
});

describe("fs-canonicalize and fs-read-link", () => {
  it("answer guest paths of the same root, never host paths", async () => {
    const { vfs, ws, home } = setup();
    fs.symlinkSync(path.join(ws, "build"), path.join(ws, "alias"));
    fs.symlinkSync("deep/b.o", path.join(ws, "build", "rel-link"));
    expect(await vfs.canonicalize("alice", p("alias/deep/../a.o"))).toBe("cwd://build/a.o");
    expect(await vfs.canonicalize("alice", p("cwd://"))).toBe("cwd://");
    expect(await vfs.readLink("alice", p("alias"))).toBe("cwd://build");
    expect(await vfs.readLink("alice", p("build/rel-link"))).toBe("cwd://build/deep/b.o");
    await vfs.write("alice", p("alias/staged.txt"), Buffer.from("s"));
    expect(await vfs.canonicalize("alice", p("alias/staged.txt"))).toBe("cwd://build/staged.txt");
    const h = home.principalHome("alice");
    fs.mkdirSync(path.join(h, "notes"), { recursive: true });
    fs.symlinkSync("notes", path.join(h, "n"));
    expect(await vfs.canonicalize("alice", p("home://n"))).toBe("home://notes");
    expect(await vfs.readLink("alice", p("home://n"))).toBe("home://notes");
  });

  it("refuse links out of the root (boundary escape, target not shown), non-links and missing paths", async () => {
    const { vfs, ws, outside, home } = setup();
    fs.symlinkSync(outside, path.join(ws, "leak"));
    fs.symlinkSync("../outside/secret", path.join(ws, "rel-leak"));
    fs.symlinkSync(home.root, path.join(ws, "daemon-home"));
    for (const name of ["leak", "rel-leak", "daemon-home"]) {
      const err = await vfs.readLink("alice", p(name)).then(() => null, (e: Error & { code: string }) => e);
      expect(err?.code).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
      expect(err?.message).not.toContain(outside);
    }
    expect(await codeOf(vfs.canonicalize("alice", p("leak")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.readLink("alice", p("README.md")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.readLink("alice", p("nope")))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await codeOf(vfs.canonicalize("alice", p("nope")))).toBe("ASTRID_ERR_NOT_FOUND");
    // A link whose target is gone for this principal is not read through the overlay.
    await vfs.unlink("alice", p("README.md"));
    expect(await codeOf(vfs.canonicalize("alice", p("README.md")))).toBe("ASTRID_ERR_NOT_FOUND");
  });
});

describe("fs-hard-link", () => {
  it("links a file in home:// (one inode) and stages a copy in the workspace", async () => {
    const { vfs, ws, home } = setup();
    const h = home.principalHome("alice");
    fs.mkdirSync(h, { recursive: true });
    fs.writeFileSync(path.join(h, "data"), "d");
    await vfs.hardLink("alice", p("home://data"), p("home://data2"));
    expect(fs.statSync(path.join(h, "data2")).ino).toBe(fs.statSync(path.join(h, "data")).ino);
    await vfs.hardLink("alice", p("README.md"), p("README.copy"));
    expect((await vfs.read("alice", p("README.copy"))).toString()).toBe("readme");
    expect(fs.existsSync(path.join(ws, "README.copy"))).toBe(false);
    expect((await vfs.diff("alice")).map((c) => `${c.change}:${c.path}`)).toEqual(["added:cwd://README.copy"]);
  });

  it("refuses two roots, an existing link path, a directory, and a link to a file outside", async () => {
    const { vfs, ws, outside, home } = setup();
    fs.mkdirSync(home.principalHome("alice"), { recursive: true });
    fs.symlinkSync(path.join(outside, "secret"), path.join(ws, "leak"));
    expect(await codeOf(vfs.hardLink("alice", p("README.md"), p("home://readme")))).toBe("ASTRID_ERR_VFS_CROSS_ROOT");
    expect(await codeOf(vfs.hardLink("alice", p("README.md"), p("build/a.o")))).toBe("ASTRID_ERR_VFS_EXISTS");
    expect(await codeOf(vfs.hardLink("alice", p("build"), p("build2")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.hardLink("alice", p("leak"), p("stolen")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.hardLink("alice", p("README.md"), p("cwd://.astrid/capsules/x")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(await vfs.diff("alice")).toEqual([]);
  });
});
