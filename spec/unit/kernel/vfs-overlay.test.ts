/**
 * The VFS on real temp directories: workspace writes are staged per principal (the workspace untouched until a
 * commit), reads see the merged view, unlinks white out, diff/commit/discard report and apply what was staged,
 * home:// and /tmp are written directly, and the refusals (escapes through links, $ASTRID_HOME inside the workspace,
 * capsule directories, sizes, wrong types) hold.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AstridHome } from "../../../kernel/home";
import { MAX_VFS_FILE_BYTES, parseGuestPath } from "../../../kernel/vfs/paths";
import { Vfs } from "../../../kernel/vfs/vfs";

const made: string[] = [];
afterAll(() => {
  for (const dir of made) fs.rmSync(dir, { recursive: true, force: true });
});

function setup(options: { homeInsideWorkspace?: boolean } = {}): { vfs: Vfs; ws: string; home: AstridHome; outside: string } {
  const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-vfs-")));
  made.push(base);
  const ws = path.join(base, "ws");
  const home = new AstridHome(options.homeInsideWorkspace ? path.join(ws, ".astrid-home") : path.join(base, "home"));
  fs.mkdirSync(ws);
  home.ensure();
  fs.mkdirSync(path.join(ws, "src"));
  fs.writeFileSync(path.join(ws, "src", "a.ts"), "lower a");
  fs.writeFileSync(path.join(ws, "README.md"), "readme");
  const outside = path.join(base, "outside");
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, "secret"), "s3cret");
  return { vfs: new Vfs(home, ws), ws, home, outside };
}

const p = parseGuestPath;
const text = (b: Buffer) => b.toString("utf8");
const codeOf = (promise: Promise<unknown>) => promise.then(() => "ok", (err: { code: string }) => err.code);

describe("the workspace overlay", () => {
  it("stages writes per principal: the writer reads them, the workspace and other principals do not", async () => {
    const { vfs, ws } = setup();
    await vfs.write("alice", p("cwd://src/a.ts"), Buffer.from("alice's a"));
    await vfs.write("alice", p("notes.txt"), Buffer.from("new"));
    expect(text(await vfs.read("alice", p("src/a.ts")))).toBe("alice's a");
    expect(text(await vfs.read("bob", p("src/a.ts")))).toBe("lower a");
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("lower a");
    expect(fs.existsSync(path.join(ws, "notes.txt"))).toBe(false);
    expect(await vfs.readdir("alice", p("cwd://"))).toEqual(["README.md", "notes.txt", "src"]);
    expect(await vfs.readdir("bob", p("cwd://"))).toEqual(["README.md", "src"]);
    expect(await vfs.stat("bob", p("notes.txt"))).toBeNull();
    expect(await vfs.stat("alice", p("notes.txt"))).toMatchObject({ size: 3, is_file: true, is_dir: false });
    expect(await vfs.diff("alice")).toEqual([
      { path: "cwd://notes.txt", change: "added", kind: "file", size: 3 },
      { path: "cwd://src/a.ts", change: "modified", kind: "file", size: 9 },
    ]);
    expect(await vfs.diff("bob")).toEqual([]);
  });

  it("unlinks white out workspace files; commit applies writes and deletions, and the overlay is empty after", async () => {
    const { vfs, ws } = setup();
    await vfs.unlink("alice", p("README.md"));
    await vfs.mkdir("alice", p("docs/guide"));
    await vfs.write("alice", p("docs/guide/intro.md"), Buffer.from("# Intro"));
    await vfs.write("alice", p("src/a.ts"), Buffer.from("v2"));
    expect(await codeOf(vfs.read("alice", p("README.md")))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await vfs.stat("bob", p("README.md"))).not.toBeNull();
    expect((await vfs.diff("alice")).map((c) => `${c.change}:${c.kind}:${c.path}`)).toEqual([
      "deleted:file:cwd://README.md", "added:dir:cwd://docs", "added:dir:cwd://docs/guide", "added:file:cwd://docs/guide/intro.md", "modified:file:cwd://src/a.ts",
    ]);
    const committed = await vfs.commit("alice");
    expect(committed.sort()).toEqual(["cwd://README.md", "cwd://docs", "cwd://docs/guide", "cwd://docs/guide/intro.md", "cwd://src/a.ts"]);
    expect(fs.existsSync(path.join(ws, "README.md"))).toBe(false);
    expect(fs.readFileSync(path.join(ws, "docs", "guide", "intro.md"), "utf8")).toBe("# Intro");
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("v2");
    expect(await vfs.diff("alice")).toEqual([]);
    // No temp files left in the workspace.
    expect(fs.readdirSync(path.join(ws, "src"))).toEqual(["a.ts"]);
  });

  it("discard drops staged writes and whiteouts, leaving the workspace as it was", async () => {
    const { vfs, ws } = setup();
    await vfs.write("alice", p("src/a.ts"), Buffer.from("never"));
    await vfs.unlink("alice", p("README.md"));
    expect((await vfs.discard("alice")).sort()).toEqual(["cwd://README.md", "cwd://src/a.ts"]);
    expect(text(await vfs.read("alice", p("src/a.ts")))).toBe("lower a");
    expect(text(await vfs.read("alice", p("README.md")))).toBe("readme");
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("lower a");
    expect(await vfs.diff("alice")).toEqual([]);
  });

  it("a commit or discard may pick the paths it applies; the rest stays staged", async () => {
    const { vfs, ws } = setup();
    await vfs.write("alice", p("src/a.ts"), Buffer.from("picked"));
    await vfs.write("alice", p("other.txt"), Buffer.from("stays"));
    expect(await vfs.commit("alice", (g) => g.rel.startsWith("src/") || g.rel === "src")).toEqual(["cwd://src/a.ts"]);
    expect(fs.readFileSync(path.join(ws, "src", "a.ts"), "utf8")).toBe("picked");
    expect((await vfs.diff("alice")).map((c) => c.path)).toEqual(["cwd://other.txt"]);
  });

  it("refuses writes through a workspace symlink that points outside, and reads through it", async () => {
    const { vfs, ws, outside } = setup();
    fs.symlinkSync(outside, path.join(ws, "leak"));
    fs.symlinkSync(path.join(ws, "src"), path.join(ws, "alias"));
    expect(await codeOf(vfs.read("alice", p("leak/secret")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.write("alice", p("leak/new"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.stat("alice", p("leak")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(text(await vfs.read("alice", p("alias/a.ts")))).toBe("lower a");
    expect(fs.readdirSync(outside)).toEqual(["secret"]);
  });

  it("a link that appears between staging and commit is refused at commit; the write stays staged", async () => {
    const { vfs, ws, outside } = setup();
    fs.mkdirSync(path.join(ws, "out"));
    await vfs.write("alice", p("out/x.txt"), Buffer.from("x"));
    fs.rmSync(path.join(ws, "out"), { recursive: true });
    fs.symlinkSync(outside, path.join(ws, "out"));
    expect(await codeOf(vfs.commit("alice"))).toBe("ASTRID_ERR_VFS_COMMIT_FAILED");
    expect(fs.readdirSync(outside)).toEqual(["secret"]);
    expect((await vfs.diff("alice")).map((c) => c.path)).toContain("cwd://out/x.txt");
  });

  it("keeps $ASTRID_HOME out of reach when it lies inside the workspace", async () => {
    const { vfs } = setup({ homeInsideWorkspace: true });
    expect(await codeOf(vfs.read("alice", p("cwd://.astrid-home/keys/runtime.key")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await codeOf(vfs.write("alice", p(".astrid-home/etc/groups.toml"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
  });

  it("refuses writes into capsule directories, over directories and into missing directories; wrong types", async () => {
    const { vfs } = setup();
    expect(await codeOf(vfs.write("alice", p("cwd://.astrid/capsules/x/index.js"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(await codeOf(vfs.write("alice", p("home://.local/capsules/x/index.js"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_PATH_PROTECTED");
    expect(await codeOf(vfs.write("alice", p("src"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.write("alice", p("README.md/x"), Buffer.from("x")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.write("alice", p("nope/x"), Buffer.from("x")))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await codeOf(vfs.read("alice", p("src")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.unlink("alice", p("src")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.unlink("alice", p("missing")))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await codeOf(vfs.readdir("alice", p("README.md")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
    expect(await codeOf(vfs.write("alice", p("bad"), Buffer.from("x")).then(() => vfs.read("bob", p("bad"))))).toBe("ASTRID_ERR_NOT_FOUND");
  });

  it("refuses to read a workspace file over 10 MB, and a FIFO, without blocking", async () => {
    const { vfs, ws } = setup();
    fs.writeFileSync(path.join(ws, "big.bin"), Buffer.alloc(MAX_VFS_FILE_BYTES + 1));
    expect(await codeOf(vfs.read("alice", p("big.bin")))).toBe("ASTRID_ERR_VFS_TOO_LARGE");
    const { execFileSync } = await import("node:child_process");
    execFileSync("mkfifo", [path.join(ws, "pipe")]);
    expect(await codeOf(vfs.read("alice", p("pipe")))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
  });
});

describe("home:// and /tmp", () => {
  it("are the principal's own: written directly, created on first use, separate per principal", async () => {
    const { vfs, home } = setup();
    await vfs.write("alice", p("home://notes.md"), Buffer.from("mine"));
    await vfs.mkdir("alice", p("/tmp/scratch"));
    await vfs.write("alice", p("/tmp/scratch/t.txt"), Buffer.from("tmp"));
    expect(fs.readFileSync(path.join(home.principalHome("alice"), "notes.md"), "utf8")).toBe("mine");
    expect(fs.readFileSync(path.join(home.principalHome("alice"), ".local", "tmp", "scratch", "t.txt"), "utf8")).toBe("tmp");
    expect(await vfs.stat("bob", p("home://notes.md"))).toBeNull();
    expect(await vfs.readdir("alice", p("/tmp"))).toEqual(["scratch"]);
    await vfs.unlink("alice", p("home://notes.md"));
    expect(await vfs.stat("alice", p("home://notes.md"))).toBeNull();
    expect(await vfs.diff("alice")).toEqual([]);
  });

  it("unlinking a symlink in home removes the link, never what it points to", async () => {
    const { vfs, home, outside } = setup();
    await vfs.mkdir("alice", p("home://d"));
    fs.symlinkSync(path.join(outside, "secret"), path.join(home.principalHome("alice"), "d", "link"));
    expect(await codeOf(vfs.read("alice", p("home://d/link")))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    await vfs.unlink("alice", p("home://d/link"));
    expect(fs.readFileSync(path.join(outside, "secret"), "utf8")).toBe("s3cret");
  });

  it("refuses a principal id that is not one", async () => {
    const { vfs } = setup();
    expect(await codeOf(vfs.read("../x", p("home://a")))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await codeOf(vfs.diff("a/b"))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });
});
