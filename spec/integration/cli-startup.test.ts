/**
 * `astrid` loads per command only what that command needs (bench/cli-startup measures the time; this checks the
 * cause, so a heavy import added at the top of bin/astrid.ts or a module it imports fails here). A preload script
 * prints, at exit, every package the process loaded from node_modules.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, DAEMON_BIN, cleanup, spawnDaemon, tempHome } from "../helpers/daemon";

const probeDir = tempHome();
const probe = path.join(probeDir, "loaded-packages.js");
fs.writeFileSync(probe, `process.on("exit", () => {
  const names = new Set();
  for (const file of Object.keys(require.cache)) {
    const m = /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(file);
    if (m) names.add(m[1]);
  }
  require("node:fs").writeSync(2, "LOADED " + JSON.stringify([...names].sort()) + "\\n");
});
`);

/** Runs the CLI; its exit status, stdout, and the packages it loaded. */
function astrid(home: string, args: string[]): { status: number | null; stdout: string; packages: string[] } {
  const r = spawnSync(process.execPath, ["-r", probe, CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  const line = /^LOADED (.*)$/m.exec(r.stderr);
  if (!line) throw new Error(`no LOADED line: ${r.stderr}`);
  return { status: r.status, stdout: r.stdout, packages: JSON.parse(line[1]!) as string[] };
}

const HEAVY = ["zod", "semver", "smol-toml", "better-sqlite3", "esbuild", "comlink", "yargs"];

afterAll(cleanup);

describe("astrid loads lazily", () => {
  it("--version loads no package at all", () => {
    const r = astrid(tempHome(), ["--version"]);
    expect(r).toMatchObject({ status: 0, stdout: expect.stringMatching(/^\d+\.\d+\.\d+\n$/), packages: [] });
  });

  it("status, against a running daemon and with none, loads none of the heavy packages", async () => {
    const daemon = await spawnDaemon();
    try {
      for (const args of [["status"], ["status", "--json"], ["--json", "status"]]) {
        const r = astrid(daemon.home, args);
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(/PID|"running":true/);
        expect(r.packages.filter((p) => HEAVY.includes(p))).toEqual([]);
      }
    } finally {
      daemon.child.kill("SIGTERM");
      await daemon.exited;
    }
    expect(astrid(tempHome(), ["status"])).toMatchObject({ status: 0, stdout: "No Astrid daemon is running.\n", packages: [] });
  }, 30_000);

  it("kv list parses with yargs but loads neither zod nor the storage engine to do it", () => {
    const home = tempHome();
    const r = astrid(home, ["kv", "list"]);
    expect(r.status).toBe(1); // no daemon
    expect(r.packages).toContain("yargs");
    expect(r.packages.filter((p) => HEAVY.includes(p) && p !== "yargs")).toEqual([]);
  });

  it("top-level help still lists the commands that live in their own modules", () => {
    const r = spawnSync(process.execPath, [CLI_BIN, "--help"], { env: { ...process.env, ASTRID_HOME: tempHome() }, encoding: "utf8" });
    expect(r.status).toBe(0);
    for (const command of ["agent", "frontend", "identity", "mcp", "web", "vfs", "logs", "tool"]) expect(r.stdout).toMatch(new RegExp(`astrid ${command}`));
  });
});

describe("the daemon starts from one bundle", () => {
  /** The daemon with `args`; its exit status and the packages its main thread loaded from node_modules. */
  function daemonLoads(args: string[]): { status: number | null; stderr: string; packages: string[] } {
    const r = spawnSync(process.execPath, ["-r", probe, DAEMON_BIN, ...args], { env: { ...process.env, ASTRID_HOME: tempHome() }, encoding: "utf8", timeout: 20_000 });
    const line = /^LOADED (.*)$/m.exec(r.stderr);
    if (!line) throw new Error(`no LOADED line: ${r.stderr}`);
    return { status: r.status, stderr: r.stderr, packages: JSON.parse(line[1]!) as string[] };
  }

  it("reads its command line and configuration without loading zod, yargs or winston from their files", () => {
    const r = daemonLoads(["--quiet", "--print-config"]);
    expect(r.status).toBe(0);
    // Folded into dist/bin/daemon-main.js (zod, semver, smol-toml, winston) or loaded only for help and usage errors (yargs).
    expect(r.packages.filter((p) => ["zod", "semver", "smol-toml", "winston", "logform", "yargs"].includes(p))).toEqual([]);
  });

  it("still explains its flags with yargs, and refuses an unknown one with a usage error", () => {
    const help = spawnSync(process.execPath, [DAEMON_BIN, "--help"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/--workspace/);
    const bad = daemonLoads(["--bogus"]);
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/Unknown argument: bogus .*\[ASTRID_ERR_INVALID_ARGUMENT\]/);
    expect(bad.packages).toContain("yargs");
  });

  it("compiles its bundle and SES from the code caches the build wrote", () => {
    const caches = fs.readdirSync(path.join(path.dirname(DAEMON_BIN), "..", "cache"));
    expect(caches).toEqual(expect.arrayContaining([`daemon-main.js.${process.version}.v8`, `ses.cjs.${process.version}.v8`]));
    // The cache is V8's own check as well as ours: a cache it refuses would show as cachedDataRejected.
    const r = spawnSync(process.execPath, ["-e", `
      const { requireCached } = require(${JSON.stringify(path.join(path.dirname(DAEMON_BIN), "..", "capsule-host", "code-cache.js"))});
      process.argv = [process.argv[0], "daemon", "--print-config"];
      process.stderr.write("REJECTED " + requireCached(require.resolve(${JSON.stringify(path.join(path.dirname(DAEMON_BIN), "daemon-main.js"))})).script.cachedDataRejected + "\\n");
    `], { env: { ...process.env, ASTRID_HOME: tempHome() }, encoding: "utf8" });
    expect(r.stderr).toMatch(/^REJECTED false$/m);
  });
});
