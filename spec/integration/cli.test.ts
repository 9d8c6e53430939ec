/** Issue #2: `astrid start|stop|status` as a user runs them, against a real background daemon. */
import { spawn, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, cleanup, daemonLog, makeStaleSocket, policyOnlyBundle, spawnDaemon, tempHome, until } from "../helpers/daemon";

const started: number[] = [];
afterAll(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await cleanup();
});

/** True once `pid` is gone or a zombie (a detached daemon may be reparented to an init that does not reap). */
async function exitedWithin(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if (fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] === "Z") return true;
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

function astrid(home: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home, ...env }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

describe("issue #2: astrid CLI", () => {
  it("status and stop with no daemon say so and exit 0 (also as JSON)", () => {
    const home = tempHome();
    expect(astrid(home, ["status"])).toEqual({ code: 0, out: "No Astrid daemon is running.\n", err: "" });
    expect(JSON.parse(astrid(home, ["status", "--json"]).out)).toEqual({ running: false });
    expect(astrid(home, ["stop"])).toEqual({ code: 0, out: "No Astrid daemon is running.\n", err: "" });
  });

  it("start → status → start again → stop, leaving nothing in run/", async () => {
    const home = tempHome();
    const start = astrid(home, ["start", "--json"]);
    expect(start.code).toBe(0);
    const { pid } = JSON.parse(start.out) as { pid: number };
    started.push(pid);
    expect(fs.existsSync(path.join(home, "run", "system.ready"))).toBe(true);

    const status = astrid(home, ["status"]);
    expect(status.code).toBe(0);
    expect(status.out).toMatch(new RegExp(`^Astrid daemon \\(PID ${pid}, uptime \\d+s\\)\\n  Version: +\\S+\\n  Mode: +persistent\\n  Workspace: +\\S+\\n  Clients: +0 others\\n  Capsules: +\\d+ loaded\\n    - astrid-capsule-cli\\n    - astrid-capsule-assistant\\n`));
    expect(JSON.parse(astrid(home, ["status", "--json"]).out)).toMatchObject({ running: true, pid, ephemeral: false, loaded_capsules: expect.arrayContaining(["astrid-capsule-cli", "astrid-capsule-assistant"]) });

    expect(astrid(home, ["start"])).toMatchObject({ code: 0, out: "Astrid daemon is already running.\n" });
    expect(astrid(home, ["stop"])).toMatchObject({ code: 0, out: "Astrid daemon stopped.\n" });
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
    expect(await exitedWithin(pid, 3000)).toBe(true);
  });

  it("cleans up a stale socket", async () => {
    const home = tempHome();
    const sock = await makeStaleSocket(home);
    expect(astrid(home, ["stop"])).toMatchObject({ code: 0, out: "Cleaned up stale daemon socket.\n" });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it("two `astrid start` at once: one starts the daemon, the other says it is already running; both exit 0", async () => {
    for (let trial = 0; trial < 3; trial++) {
      const home = tempHome();
      const startOnce = () => new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI_BIN, "start"], { env: { ...process.env, ASTRID_HOME: home, ASTRID_BUNDLED_CAPSULES_DIR: policyOnlyBundle() } });
        let out = "";
        let err = "";
        child.stdout.on("data", (b: Buffer) => (out += b.toString()));
        child.stderr.on("data", (b: Buffer) => (err += b.toString()));
        child.once("exit", (code) => resolve({ code, out, err }));
      });
      const results = await Promise.all([startOnce(), startOnce()]);
      expect(results.map((r) => [r.code, r.err])).toEqual([[0, ""], [0, ""]]);
      expect(results.map((r) => r.out.replace(/\d+/g, "N")).sort()).toEqual([
        "Astrid daemon is already running.\n", "Astrid daemon started (persistent mode, PID N).\n",
      ]);
      expect(astrid(home, ["stop"])).toMatchObject({ code: 0 });
      expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
    }
  }, 60_000);

  it("two `astrid stop` at once both exit 0 and the daemon is gone", async () => {
    for (let trial = 0; trial < 3; trial++) {
      const d = await spawnDaemon();
      const stopOnce = () => new Promise<{ code: number | null; err: string }>((resolve) => {
        const child = spawn(process.execPath, [CLI_BIN, "stop"], { env: { ...process.env, ASTRID_HOME: d.home } });
        let err = "";
        child.stderr.on("data", (b: Buffer) => (err += b.toString()));
        child.once("exit", (code) => resolve({ code, err }));
      });
      const results = await Promise.all([stopOnce(), stopOnce()]);
      expect(results).toEqual([{ code: 0, err: "" }, { code: 0, err: "" }]);
      expect(await d.exited).toBe(0);
      expect(fs.readdirSync(path.join(d.home, "run"))).toEqual([]);
    }
  }, 30_000);

  it("status on a stale socket says no daemon runs, cleans it up and exits 0", async () => {
    const home = tempHome();
    const sock = await makeStaleSocket(home);
    expect(astrid(home, ["status"])).toMatchObject({ code: 0, out: expect.stringMatching(/No Astrid daemon is running.*stale socket was cleaned up/) });
    expect(fs.existsSync(sock)).toBe(false);
  });

  it("start reports a daemon that dies during boot with its reason and the log path", () => {
    const home = tempHome();
    const r = astrid(home, ["start"], { ASTRID_BUNDLED_CAPSULES_DIR: tempHome() });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/Daemon exited prematurely \(exit code 1\): CLI proxy capsule \(astrid-capsule-cli\) not found.*Check logs: .*\/log \[ASTRID_ERR_DAEMON_START_FAILED\]/);
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
  });

  it("start gives up after 10 s with the log path, and the daemon it gave up on shuts down cleanly", async () => {
    const home = tempHome();
    const workspace = tempHome();
    const slow = path.join(workspace, ".astrid", "capsules", "slow-setup");
    fs.mkdirSync(slow, { recursive: true });
    fs.writeFileSync(path.join(slow, "Capsule.toml"), '[package]\nname = "slow-setup"\nversion = "1.0.0"\n\n[[component]]\nfile = "index.js"\n');
    fs.writeFileSync(path.join(slow, "index.js"), "module.exports = { setup: () => new Promise((r) => setTimeout(r, 60000)) };\n");
    const child = spawn(process.execPath, [CLI_BIN, "start"], {
      cwd: workspace,
      env: { ...process.env, ASTRID_HOME: home, ASTRID_CAPSULE_BOOT_WAIT_MS: "12000", ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000" },
    });
    let err = "";
    child.stderr.on("data", (b: Buffer) => (err += b.toString()));
    const started = Date.now();
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(10_000);
    expect(err).toMatch(new RegExp(`failed to become ready within 10 seconds\\. Check logs: ${home}/log \\[ASTRID_ERR_DAEMON_START_FAILED\\]`));
    await until(() => fs.readdirSync(path.join(home, "run")), (files) => files.length === 0, 10_000);
    expect(daemonLog(home)).toMatch(/"message":"daemon stopped"/);
  }, 40_000);

  it("explains usage errors with a code, on stderr or as JSON", () => {
    const home = tempHome();
    // Issue #12: a usage error exits 2, with the help before the error line.
    expect(astrid(home, ["frobnicate"])).toMatchObject({ code: 2, err: expect.stringMatching(/Unknown argument: frobnicate.*\[ASTRID_ERR_INVALID_ARGUMENT\]/) });
    expect(JSON.parse(astrid(home, ["--json"]).out)).toMatchObject({ error: { code: "ASTRID_ERR_INVALID_ARGUMENT" } });
    expect(astrid("relative/home", ["status"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_HOME_INVALID\]/) });
    expect(astrid(home, ["--help"]).out).toMatch(/astrid start[\s\S]*astrid stop[\s\S]*astrid status/);
  });
});
