/**
 * Guest paths: parsing and canonical names, the refusals (`..` out of a root, absolute paths, NUL bytes, unknown
 * schemes), manifest entry matching segment by segment, and placing on disk with symlinks checked.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { entryCovers, guestName, parseGuestPath, resolveInside } from "../../../kernel/vfs/paths";

const code = (fn: () => unknown): string => {
  try {
    fn();
    return "ok";
  } catch (err) {
    return (err as { code: string }).code;
  }
};
const canonical = (raw: string) => guestName(parseGuestPath(raw));

describe("guest paths", () => {
  it("parses each form into its one canonical spelling", () => {
    expect(canonical("cwd://src/a.ts")).toBe("cwd://src/a.ts");
    expect(canonical("src/./lib//a.ts")).toBe("cwd://src/lib/a.ts");
    expect(canonical("src/x/../a.ts")).toBe("cwd://src/a.ts");
    expect(canonical("cwd://")).toBe("cwd://");
    expect(canonical(".")).toBe("cwd://");
    expect(canonical("home://notes/")).toBe("home://notes");
    expect(canonical("/tmp")).toBe("/tmp");
    expect(canonical("/tmp/a/../b")).toBe("/tmp/b");
  });

  it("refuses escapes, absolute paths, NUL bytes and unknown schemes with coded errors", () => {
    expect(code(() => parseGuestPath("../../run/system.token"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("cwd://../keys/runtime.key"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("home://a/../../x"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("/tmp/../etc/passwd"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("/etc/passwd"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("/tmpx/a"))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(code(() => parseGuestPath("a\u0000b"))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(code(() => parseGuestPath("file:///etc/passwd"))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(code(() => parseGuestPath(""))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(code(() => parseGuestPath("a/".repeat(3000)))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(code(() => parseGuestPath(42))).toBe("ASTRID_ERR_REQUEST_INVALID");
  });

  it("matches manifest entries segment by segment, within one root", () => {
    const covers = (entry: string, target: string) => entryCovers(entry, parseGuestPath(target));
    expect(covers("*", "/tmp/x")).toBe(true);
    expect(covers("cwd://", "cwd://a/b")).toBe(true);
    expect(covers("cwd://src", "cwd://src/a.ts")).toBe(true);
    expect(covers("cwd://src", "cwd://src")).toBe(true);
    expect(covers("cwd://src/", "cwd://src/a.ts")).toBe(true);
    expect(covers("cwd://src", "cwd://srcx")).toBe(false);
    expect(covers("src", "cwd://src/a.ts")).toBe(true);
    expect(covers("cwd://src", "home://src/a.ts")).toBe(false);
    expect(covers("home://", "home://notes.md")).toBe(true);
    expect(covers("/tmp", "/tmp/scratch")).toBe(true);
    expect(covers("/tmp", "cwd://tmp/x")).toBe(false);
    // Entries that are not guest paths cover nothing.
    expect(covers("/etc", "cwd://etc")).toBe(false);
    expect(covers("cwd://../", "cwd://a")).toBe(false);
  });
});

describe("resolveInside", () => {
  let root: string;
  let outside: string;
  beforeAll(() => {
    const base = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-vfs-")));
    root = path.join(base, "ws");
    fs.mkdirSync(root);
    outside = path.join(base, "secret");
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, "key"), "k");
    fs.mkdirSync(path.join(root, "src"));
    fs.writeFileSync(path.join(root, "src", "a.ts"), "a");
    fs.symlinkSync(outside, path.join(root, "leak"));
    fs.symlinkSync(path.join(root, "src"), path.join(root, "alias"));
    fs.symlinkSync(path.join(base, "nowhere"), path.join(root, "dangling"));
    fs.symlinkSync(path.join(root, "loop"), path.join(root, "loop"));
  });
  afterAll(() => fs.rmSync(path.dirname(root), { recursive: true, force: true }));

  const resolved = (rel: string) => resolveInside(root, rel, rel).then((p) => p, (err: { code: string }) => err.code);

  it("places existing and new paths inside the root, following links that stay inside", async () => {
    expect(await resolved("src/a.ts")).toBe(path.join(root, "src", "a.ts"));
    expect(await resolved("src/new/deeper.txt")).toBe(path.join(root, "src", "new", "deeper.txt"));
    expect(await resolved("alias/a.ts")).toBe(path.join(root, "src", "a.ts"));
    expect(await resolved("")).toBe(root);
  });

  it("refuses links out of the root, dangling links and loops", async () => {
    expect(await resolved("leak/key")).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await resolved("leak")).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await resolved("leak/new-file")).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await resolved("dangling")).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await resolved("loop/x")).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
  });
});
