/**
 * Where host processes start and how they are confined: bubblewrap's argv (what is visible, what is hidden, the
 * namespaces), the working directory inside the workspace, the executable found on the fixed PATH, the environment.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { isAstridError } from "../../../protocol/errors";
import { PROCESS_PATH, processEnv, resolveCwd, resolveExecutable } from "../../../kernel/processes/launch-paths";
import { bwrapArgv, isWithin, probeBwrap, readHostLayout, type HostLayout } from "../../../kernel/processes/sandbox";

const layout: HostLayout = {
  entries: [{ path: "/bin", kind: "symlink", target: "usr/bin" }, { path: "/lib64", kind: "dir" }],
  etcSecrets: ["/etc/shadow"],
  etcSecretDirs: ["/etc/ssh"],
};

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "resolved";
  } catch (err) {
    return isAstridError(err) ? err.code : String(err);
  }
}

describe("bwrapArgv", () => {
  const base = { layout, workspace: "/srv/ws", astridHome: "/var/astrid", cwd: "/srv/ws/sub", executable: "/usr/bin/echo", args: ["a b", "--", "c"] };

  it("binds the system read-only, hides secrets, gives an empty /tmp, binds the workspace read-only, isolates", () => {
    const argv = bwrapArgv(base);
    const pairs = argv.join(" ");
    expect(pairs).toContain("--ro-bind /usr /usr --symlink usr/bin /bin --ro-bind /lib64 /lib64 --ro-bind /etc /etc --ro-bind /dev/null /etc/shadow --tmpfs /etc/ssh");
    expect(pairs).toContain("--proc /proc --dev /dev --tmpfs /tmp --ro-bind /srv/ws /srv/ws");
    for (const flag of ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--new-session"]) expect(argv).toContain(flag);
    expect(pairs).toContain("--cap-drop ALL");
    expect(pairs).toContain("--chdir /srv/ws/sub");
    // The command comes last, after `--`, its arguments untouched.
    expect(argv.slice(argv.indexOf("--"))).toEqual(["--", "/usr/bin/echo", "a b", "--", "c"]);
    // Nothing of the home, and no writable bind.
    expect(pairs).not.toContain("/var/astrid");
    expect(argv).not.toContain("--bind");
  });

  it("covers a home that lies inside the workspace with an empty tmpfs, after the workspace bind", () => {
    const argv = bwrapArgv({ ...base, workspace: "/home/me", astridHome: "/home/me/.astrid", cwd: "/home/me" });
    const bind = argv.join(" ").indexOf("--ro-bind /home/me /home/me");
    const mask = argv.join(" ").indexOf("--tmpfs /home/me/.astrid");
    expect(bind).toBeGreaterThan(0);
    expect(mask).toBeGreaterThan(bind);
  });

  it("binds an executable outside the visible directories on its own", () => {
    expect(bwrapArgv({ ...base, executable: "/opt/tool/bin/tool" }).join(" ")).toContain("--ro-bind /opt/tool/bin/tool /opt/tool/bin/tool");
    expect(bwrapArgv(base).filter((a) => a === "/usr/bin/echo")).toHaveLength(1);
  });

  it("isWithin is about path components, not prefixes", () => {
    expect(isWithin("/a/b", "/a")).toBe(true);
    expect(isWithin("/a", "/a")).toBe(true);
    expect(isWithin("/ab", "/a")).toBe(false);
    expect(isWithin("/", "/a")).toBe(false);
  });

  it("reads this host's layout: /usr-merged symlinks or directories", async () => {
    const real = await readHostLayout();
    for (const entry of real.entries) {
      const stat = fs.lstatSync(entry.path);
      expect(entry.kind === "symlink" ? stat.isSymbolicLink() : stat.isDirectory()).toBe(true);
    }
  });

  it("a probe of a missing or failing bwrap says why", async () => {
    const missing = await probeBwrap("/nonexistent/bwrap");
    expect(missing).toMatchObject({ ok: false, reason: expect.stringMatching(/ENOENT/) });
    const failing = await probeBwrap("/usr/bin/false");
    expect(failing).toMatchObject({ ok: false, reason: expect.stringMatching(/exited with 1/) });
  });
});

describe("resolveCwd", () => {
  let ws: string;
  beforeAll(() => {
    ws = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-proc-")));
    fs.mkdirSync(path.join(ws, "sub", "deeper"), { recursive: true });
    fs.writeFileSync(path.join(ws, "file"), "");
    fs.symlinkSync("/etc", path.join(ws, "out"));
    fs.symlinkSync("sub", path.join(ws, "inside"));
  });
  afterAll(() => fs.rmSync(ws, { recursive: true, force: true }));

  it("takes cwd:// and relative paths under the workspace; none is the root", async () => {
    expect(await resolveCwd(undefined, ws)).toBe(ws);
    expect(await resolveCwd("", ws)).toBe(ws);
    expect(await resolveCwd("cwd://", ws)).toBe(ws);
    expect(await resolveCwd("cwd://sub/deeper", ws)).toBe(path.join(ws, "sub", "deeper"));
    expect(await resolveCwd("sub/../sub", ws)).toBe(path.join(ws, "sub"));
    expect(await resolveCwd("inside", ws)).toBe(path.join(ws, "sub"));
  });

  it("refuses escapes, absolute paths, other schemes, NUL, missing and non-directories", async () => {
    expect(await code(resolveCwd("..", ws))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await code(resolveCwd("cwd://../x", ws))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await code(resolveCwd("sub/../../", ws))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await code(resolveCwd("out", ws))).toBe("ASTRID_ERR_VFS_PATH_ESCAPE");
    expect(await code(resolveCwd("/etc", ws))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(await code(resolveCwd("home://x", ws))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(await code(resolveCwd("sub\u0000", ws))).toBe("ASTRID_ERR_VFS_PATH_INVALID");
    expect(await code(resolveCwd("nope", ws))).toBe("ASTRID_ERR_NOT_FOUND");
    expect(await code(resolveCwd("file", ws))).toBe("ASTRID_ERR_VFS_WRONG_TYPE");
  });
});

describe("resolveExecutable and the environment", () => {
  it("finds a command on the fixed PATH, or takes an absolute path", async () => {
    const sh = await resolveExecutable("sh");
    expect(path.isAbsolute(sh)).toBe(true);
    expect(PROCESS_PATH.split(":")).toContain(path.dirname(sh));
    expect(await resolveExecutable(sh)).toBe(sh);
  });

  it("refuses relative paths, missing commands and files that are not executable", async () => {
    expect(await code(resolveExecutable("./sh"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(resolveExecutable("bin/sh"))).toBe("ASTRID_ERR_REQUEST_INVALID");
    expect(await code(resolveExecutable("no-such-command-anywhere"))).toBe("ASTRID_ERR_PROCESS_START_FAILED");
    const plain = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "astrid-proc-")), "plain");
    fs.writeFileSync(plain, "#!/bin/sh\n", { mode: 0o644 });
    expect(await code(resolveExecutable(plain))).toBe("ASTRID_ERR_PROCESS_START_FAILED");
    fs.rmSync(path.dirname(plain), { recursive: true });
    expect(await code(resolveExecutable("/usr/bin"))).toBe("ASTRID_ERR_PROCESS_START_FAILED");
  });

  it("the environment holds PATH, HOME, TMPDIR and LANG only", () => {
    expect(processEnv("/tmp")).toEqual({ PATH: PROCESS_PATH, HOME: "/tmp", TMPDIR: "/tmp", LANG: "C.UTF-8" });
  });
});
