/** Issue #2: boot order, home layout, socket preparation, failure cleanup and graceful shutdown of the real daemon. */
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { cleanup, connect, DAEMON_BIN, daemonLog, makeStaleSocket, spawnDaemon, tempHome, until } from "../helpers/daemon";

afterAll(cleanup);

const mode = (p: string) => fs.statSync(p).mode & 0o777;

describe("issue #2: daemon boot", () => {
  it("creates the layout with the reference's modes, a fresh 64-hex token and the ready file", async () => {
    const d = await spawnDaemon();
    for (const dir of ["", "etc", "var", "run", "log", "keys", "bin", "wit", "home"]) expect(mode(path.join(d.home, dir))).toBe(0o700);
    expect(d.token).toMatch(/^[0-9a-f]{64}$/);
    expect(mode(path.join(d.home, "run", "system.token"))).toBe(0o600);
    expect(mode(path.join(d.home, "run", "system.ready"))).toBe(0o600);
    expect(fs.statSync(d.socketPath).isSocket()).toBe(true);
    expect(fs.readdirSync(path.join(d.home, "run")).filter((f) => f.endsWith(".tmp"))).toEqual([]);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // A second boot writes a different token.
    const again = await spawnDaemon({ home: d.home });
    expect(again.token).not.toBe(d.token);
    again.child.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  });

  it("logs JSON lines to log/astrid.YYYY-MM-DD.log and writes nothing to stdout/stderr when not in a terminal", async () => {
    const d = await spawnDaemon({ args: ["--quiet"] });
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const logs = fs.readdirSync(path.join(d.home, "log")).filter((f) => /^astrid\.\d{4}-\d{2}-\d{2}\.log$/.test(f));
    expect(logs).toHaveLength(1);
    const lines = fs.readFileSync(path.join(d.home, "log", logs[0]!), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { message: string });
    // In the reference's boot order (§2.2): logging, storage and audit verification, socket, capsules, ready.
    const order = ["daemon booting", "audit chain verified", "socket bound", "capsule loaded", "daemon ready", "daemon stopped"]
      .map((m) => lines.findIndex((l) => l.message === m));
    expect(order.every((i) => i >= 0)).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    expect(d.stdout()).toBe("");
    expect(d.stderr()).toBe("");
  });

  it("logs at debug level with -v (a management request is logged)", async () => {
    const d = await spawnDaemon({ args: ["-v"] });
    const c = await connect(d);
    await c.request("GetStatus");
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(daemonLog(d.home)).toMatch(/"level":"debug".*"message":"management request"|"message":"management request".*"level":"debug"/);
  });

  it.each(["SIGTERM", "SIGINT", "SIGHUP"] as const)("on %s exits 0 and removes socket, token, ready file and lock", async (signal) => {
    const d = await spawnDaemon();
    d.child.kill(signal);
    expect(await d.exited).toBe(0);
    expect(fs.readdirSync(path.join(d.home, "run"))).toEqual([]);
  });

  it("refuses a relative, empty or `..` ASTRID_HOME with a clear coded error", () => {
    for (const home of ["relative/path", "", "/tmp/../tmp/x"]) {
      const r = spawnSync(process.execPath, [DAEMON_BIN], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/ASTRID_HOME must .*\[ASTRID_ERR_HOME_INVALID\]/);
    }
  });

  it("refuses a socket path of 108 bytes or more before creating anything", () => {
    const base = tempHome();
    const home = path.join(base, "h".repeat(120 - base.length - "/run/system.sock".length - 1));
    expect(Buffer.byteLength(path.join(home, "run/system.sock"))).toBe(120);
    const r = spawnSync(process.execPath, [DAEMON_BIN], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/Socket path is 120 bytes, exceeding the platform limit of 108 bytes.*\[ASTRID_ERR_SOCKET_PATH_TOO_LONG\]/);
    expect(fs.existsSync(home)).toBe(false);
  });

  it("rejects a session id that is not a UUID, and answers --help and --version", () => {
    const home = tempHome();
    const bad = spawnSync(process.execPath, [DAEMON_BIN, "-s", "not-a-uuid"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toMatch(/--session must be a UUID .*\(got "not-a-uuid"\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
    const empty = spawnSync(process.execPath, [DAEMON_BIN, "-s"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    expect(empty.status).toBe(1);
    expect(empty.stderr).toMatch(/--session must be a UUID .*\(got ""\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
    expect(execFileSync(process.execPath, [DAEMON_BIN, "--help"], { encoding: "utf8" })).toMatch(/--ephemeral[\s\S]*ASTRID_IDLE_TIMEOUT_SECS/);
    expect(execFileSync(process.execPath, [DAEMON_BIN, "--version"], { encoding: "utf8" }).trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it("uses the --session id as the source_id of kernel messages (canonical form, hyphens or not)", async () => {
    const session = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const d = await spawnDaemon({ args: ["-s", session.replaceAll("-", "").toUpperCase()] });
    const c = await connect(d);
    const loaded = await new Promise<{ source_id: string; topic: string }>((resolve) => c.once("message", resolve));
    expect(loaded).toMatchObject({ topic: "astrid.v1.capsules_loaded", source_id: session });
    await c.close();
    d.child.kill("SIGTERM");
    await d.exited;
  });
});

describe("issue #2: socket preparation", () => {
  it("a second daemon on a live socket exits non-zero and touches nothing of the first", async () => {
    const first = await spawnDaemon();
    const before = fs.readdirSync(path.join(first.home, "run")).map((f) => [f, fs.statSync(path.join(first.home, "run", f)).mtimeMs]);
    const second = await spawnDaemon({ home: first.home, waitReady: false });
    expect(await second.exited).toBe(1);
    expect(second.stderr()).toMatch(/already running.*\[ASTRID_ERR_ALREADY_RUNNING\]/);
    const after = fs.readdirSync(path.join(first.home, "run")).map((f) => [f, fs.statSync(path.join(first.home, "run", f)).mtimeMs]);
    expect(after).toEqual(before);
    const c = await connect(first);
    expect((await c.request("GetStatus")).status).toBe("Status");
    await c.close();
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
  });

  it("two daemons started at the same moment on one home: one serves, the other exits touching none of its files", async () => {
    for (let trial = 0; trial < 3; trial++) {
      const home = tempHome();
      const pair = await Promise.all([spawnDaemon({ home, waitReady: false }), spawnDaemon({ home, waitReady: false })]);
      const ready = path.join(home, "run", "system.ready");
      await until(() => fs.existsSync(ready) || pair.some((d) => d.child.exitCode !== null), (ok) => ok, 10_000);
      const loser = await Promise.race(pair.map((d) => d.exited.then(() => d)));
      const winner = pair.find((d) => d !== loser)!;
      expect(await loser.exited).toBe(1);
      expect(loser.stderr()).toMatch(/is starting or running on this home.*\[ASTRID_ERR_ALREADY_RUNNING\]|already running.*\[ASTRID_ERR_ALREADY_RUNNING\]/);
      await until(() => fs.existsSync(ready), (ok) => ok, 10_000);
      expect(fs.readdirSync(path.join(home, "run")).sort()).toEqual(["daemon.lock", "system.ready", "system.sock", "system.token"]);
      const c = await connect({ ...winner, token: fs.readFileSync(path.join(home, "run", "system.token"), "utf8") });
      expect((await c.request("GetStatus")).data).toMatchObject({ pid: winner.child.pid });
      await c.close();
      winner.child.kill("SIGTERM");
      expect(await winner.exited).toBe(0);
      expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
    }
  }, 60_000);

  it("three daemons started at once against a stale lock: exactly one serves, and the lock names it", async () => {
    for (let trial = 0; trial < 2; trial++) {
      const home = tempHome();
      fs.mkdirSync(path.join(home, "run"), { recursive: true, mode: 0o700 });
      fs.writeFileSync(path.join(home, "run", "daemon.lock"), "4194305\n");
      const trio = await Promise.all([0, 1, 2].map(() => spawnDaemon({ home, waitReady: false })));
      const ready = path.join(home, "run", "system.ready");
      await until(() => fs.existsSync(ready), (ok) => ok, 20_000);
      // The two losers exit 1 (each before touching the winner's files); the winner keeps serving.
      await until(() => trio.filter((d) => d.child.exitCode !== null).length, (n) => n >= 2, 20_000);
      const losers = trio.filter((d) => d.child.exitCode !== null);
      expect(losers.map((d) => d.child.exitCode)).toEqual([1, 1]);
      const winner = trio.find((d) => d.child.exitCode === null)!;
      expect(fs.readFileSync(path.join(home, "run", "daemon.lock"), "utf8")).toBe(`${winner.child.pid}\n`);
      const c = await connect({ ...winner, token: fs.readFileSync(path.join(home, "run", "system.token"), "utf8") });
      expect((await c.request("GetStatus")).data).toMatchObject({ pid: winner.child.pid });
      await c.close();
      winner.child.kill("SIGTERM");
      expect(await winner.exited).toBe(0);
      expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
    }
  }, 60_000);

  it("takes over the lock of a daemon that died without cleaning up", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "run"), { recursive: true, mode: 0o700 });
    // A pid that cannot be alive (above pid_max), then this test's own pid (alive, but not an astrid daemon).
    for (const pid of [4_194_305, process.pid]) {
      fs.writeFileSync(path.join(home, "run", "daemon.lock"), `${pid}\n`);
      const d = await spawnDaemon({ home });
      expect(fs.readFileSync(path.join(home, "run", "daemon.lock"), "utf8")).toBe(`${d.child.pid}\n`);
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
    }
  });

  it("removes a stale socket (ECONNREFUSED) and boots", async () => {
    const home = tempHome();
    await makeStaleSocket(home);
    fs.writeFileSync(path.join(home, "run", "system.ready"), "");
    const d = await spawnDaemon({ home });
    const c = await connect(d);
    expect((await c.request("GetStatus")).status).toBe("Status");
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("removes the temporary token file a daemon killed mid-write left, and nothing else of run/ stays after a stop", async () => {
    const home = tempHome();
    await makeStaleSocket(home);
    fs.writeFileSync(path.join(home, "run", "system.424242.tmp"), "half a tok");
    const d = await spawnDaemon({ home });
    expect(fs.existsSync(path.join(home, "run", "system.424242.tmp"))).toBe(false);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
  });

  it("removes a symlink at the socket path but never its target", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "run"), { recursive: true });
    const target = path.join(home, "precious.txt");
    fs.writeFileSync(target, "keep me");
    fs.symlinkSync(target, path.join(home, "run", "system.sock"));
    const d = await spawnDaemon({ home });
    expect(fs.lstatSync(d.socketPath).isSocket()).toBe(true);
    expect(fs.readFileSync(target, "utf8")).toBe("keep me");
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("removes a symlink at the socket path even when it points at a live socket, which keeps serving", async () => {
    const other = await spawnDaemon();
    const home = tempHome();
    fs.mkdirSync(path.join(home, "run"), { recursive: true });
    fs.symlinkSync(other.socketPath, path.join(home, "run", "system.sock"));
    const d = await spawnDaemon({ home });
    expect(fs.lstatSync(d.socketPath).isSocket()).toBe(true);
    const c = await connect(other);
    expect((await c.request("GetStatus")).status).toBe("Status");
    await c.close();
    for (const x of [d, other]) {
      x.child.kill("SIGTERM");
      expect(await x.exited).toBe(0);
    }
  });
});

describe("issue #2: the CLI policy capsule is required", () => {
  it("without astrid-capsule-cli: exits non-zero with the reference message and leaves no socket or token", async () => {
    const empty = tempHome();
    const d = await spawnDaemon({ env: { ASTRID_BUNDLED_CAPSULES_DIR: empty }, waitReady: false });
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toMatch(/CLI proxy capsule \(astrid-capsule-cli\) not found.*\[ASTRID_ERR_CLI_CAPSULE_MISSING\]/);
    expect(fs.readdirSync(path.join(d.home, "run"))).toEqual([]);
  });

  it("with an invalid astrid-capsule-cli manifest: says which file and field is wrong", async () => {
    const bundled = tempHome();
    fs.mkdirSync(path.join(bundled, "astrid-capsule-cli"));
    fs.writeFileSync(path.join(bundled, "astrid-capsule-cli", "Capsule.toml"), '[package]\nname = "astrid-capsule-cli"\nversion = "one"\n');
    const d = await spawnDaemon({ env: { ASTRID_BUNDLED_CAPSULES_DIR: bundled }, waitReady: false });
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toMatch(/astrid-capsule-cli\/Capsule\.toml:3: field package\.version: must be a semantic version/);
    expect(fs.readdirSync(path.join(d.home, "run"))).toEqual([]);
  });
});
