/**
 * Faults against the real daemon: a damaged -wal at boot, var/ read-only, SIGKILL during boot and during a capsule
 * reload, the storage worker and a capsule worker crashing, an MCP server killed. After each: what was acknowledged
 * reads back (or, where the fault destroyed it, the loss is detected and reported as documented), `astrid audit
 * verify` says what it should, and the next boot works with nothing stale in run/.
 *
 * Worker threads cannot be killed from outside the process: the daemon runs with ASTRID_TEST_FAULTS=1 and the test
 * writes a command into run/test-fault and sends SIGUSR2 (kernel/test-faults.ts). var/ is made read-only with a
 * read-only bind mount (tests run as root in CI, and root ignores file modes).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, daemonLog, sleep, spawnDaemon, tempHome, until, type RunningDaemon, type SpawnOptions } from "../helpers/daemon";
import { writeTagCapsule } from "../helpers/tag-capsule";

const EVERYTHING = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
const FAULTS = { ASTRID_TEST_FAULTS: "1" };
const mounts: string[] = [];

afterAll(async () => {
  for (const m of mounts.splice(0)) spawnSync("umount", ["-l", m]);
  await cleanup();
});

function cli(home: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectVerified(home: string): void {
  const v = cli(home, "audit", "verify");
  expect(`${v.stdout}${v.stderr}`).toMatch(/^Audit chain intact/);
  expect(v.status).toBe(0);
}

/**
 * Boots a daemon on a home a killed one left behind: its token and ready file are still there, so readiness is a
 * new token next to a ready file.
 */
async function boot(home: string, options: SpawnOptions = {}): Promise<RunningDaemon> {
  const tokenPath = path.join(home, "run", "system.token");
  const stale = fs.existsSync(tokenPath) ? fs.readFileSync(tokenPath, "utf8") : undefined;
  if (stale === undefined) return spawnDaemon({ home, ...options });
  const d = await spawnDaemon({ home, ...options, waitReady: false });
  let exited = false;
  void d.exited.then(() => (exited = true));
  await until(() => {
    if (exited) throw new Error(`daemon exited before ready: ${d.stderr()}`);
    return fs.existsSync(path.join(home, "run", "system.ready")) && fs.existsSync(tokenPath) && fs.readFileSync(tokenPath, "utf8") !== stale;
  }, (ok) => ok, 20_000);
  d.token = fs.readFileSync(tokenPath, "utf8");
  return d;
}

async function kill(d: RunningDaemon): Promise<void> {
  d.child.kill("SIGKILL");
  await d.exited;
}

/** Stops cleanly and checks that nothing is left in run/ (socket, token, ready file, lock). */
async function stop(d: RunningDaemon, ...clients: DaemonClient[]): Promise<void> {
  for (const c of clients) await c.close();
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
  expect(fs.readdirSync(path.join(d.home, "run")).filter((f) => f !== "test-fault")).toEqual([]);
}

/** Sends the daemon a fault (kernel/test-faults.ts). */
function inject(d: RunningDaemon, command: string): void {
  fs.writeFileSync(path.join(d.home, "run", "test-fault"), command);
  d.child.kill("SIGUSR2");
}

/** Acknowledged writes: each KvSet that answered Success is in the returned map. */
async function writeAcked(c: DaemonClient, prefix: string, n: number): Promise<Map<string, string>> {
  const acked = new Map<string, string>();
  for (let i = 0; i < n; i++) {
    const key = `${prefix}-${i}`;
    const value = `${prefix} value ${i} ${"v".repeat(i * 37)}`;
    if ((await c.request("KvSet", { key, value })).status === "Success") acked.set(key, value);
  }
  return acked;
}

async function expectReadBack(c: DaemonClient, acked: Map<string, string>): Promise<void> {
  for (const [key, value] of acked) expect({ key, data: (await c.request("KvGet", { key })).data }).toEqual({ key, data: expect.objectContaining({ value }) });
}

/** The anchor's seq (var/audit-head.json), 0 when absent. */
function anchoredSeq(home: string): number {
  try {
    return (JSON.parse(fs.readFileSync(path.join(home, "var", "audit-head.json"), "utf8")) as { seq: number }).seq;
  } catch {
    return 0;
  }
}

let prompts = 0;
/** One prompt in its own session; resolves with the replies that arrived within `ms`. */
async function ask(c: DaemonClient, text: string, ms = 3000): Promise<string[]> {
  const session = `fault-${++prompts}`;
  const got: string[] = [];
  const on = (m: IpcMessage) => {
    if (m.topic === "agent.v1.response" && m.payload.session_id === session) got.push(String(m.payload.text));
  };
  c.on("message", on);
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const deadline = Date.now() + ms;
  while (got.length === 0 && Date.now() < deadline) await sleep(20);
  c.off("message", on);
  return got;
}

describe("a damaged -wal at boot", () => {
  it("garbage appended after the last frame: nothing acknowledged is lost, the chain verifies, boots keep working", async () => {
    const home = tempHome();
    const d = await boot(home);
    const c = await connect(d);
    const acked = await writeAcked(c, "garbage", 20);
    expect(acked.size).toBe(20);
    await kill(d);
    const wal = path.join(home, "var", "state.db-wal");
    expect(fs.statSync(wal).size).toBeGreaterThan(0);
    fs.appendFileSync(wal, Buffer.alloc(10_000, 0xab));

    const again = await boot(home);
    const c2 = await connect(again);
    await expectReadBack(c2, acked);
    expect((await c2.request("KvSet", { key: "after", value: "x" })).status).toBe("Success");
    await stop(again, c2);
    expectVerified(home);
    const third = await boot(home);
    const c3 = await connect(third);
    expect((await c3.request("KvGet", { key: "after" })).data).toMatchObject({ value: "x" });
    await stop(third, c3);
  }, 60_000);

  it("cut mid-frame: what the cut frames held is gone, and the anchor makes `audit verify` report the cut", async () => {
    const home = tempHome();
    const d = await boot(home);
    const c = await connect(d);
    const early = await writeAcked(c, "early", 5);
    // The anchor (var/audit-head.json) follows the head within a second of the last commit.
    const status = await c.request("GetStatus");
    expect(status.status).toBe("Status");
    const head = () => cli(home, "audit", "tail", "-n", "1", "--json").stdout.trim();
    await until(() => anchoredSeq(home) > 0 && anchoredSeq(home) === (JSON.parse(head()) as { seq: number }).seq, (ok) => ok, 10_000);
    await kill(d);
    const wal = path.join(home, "var", "state.db-wal");
    const size = fs.statSync(wal).size;
    // Frames are 4096 + 24 bytes; cutting 1000 bytes tears the last one, which SQLite then drops with its commit.
    fs.truncateSync(wal, size - 1000);

    const again = await boot(home);
    const c2 = await connect(again);
    // The daemon boots and serves; the writes committed before the torn commit read back.
    expect((await c2.request("KvGet", { key: "early-0" })).data).toMatchObject({ value: early.get("early-0") });
    expect((await c2.request("GetStatus")).data).toMatchObject({ audit_chain_intact: false });
    expect(daemonLog(home)).toMatch(/audit chain is broken/);
    await stop(again, c2);
    // The documented situation: the log ends before the anchored head, and verify says so (and keeps saying so).
    const v = cli(home, "audit", "verify");
    expect(v.status).not.toBe(0);
    expect(v.stderr).toMatch(/Audit chain broken.*audit-head\.json.*\[ASTRID_ERR_AUDIT_BROKEN\]/);
    const third = await boot(home);
    const c3 = await connect(third);
    expect((await c3.request("KvSet", { key: "after", value: "y" })).status).toBe("Success");
    await stop(third, c3);
  }, 60_000);
});

describe("var/ read-only", () => {
  it("a running daemon keeps serving; a boot stops with ASTRID_ERR_HOME_READONLY; the read-only commands still read it", async () => {
    const home = tempHome();
    const d = await boot(home);
    const c = await connect(d);
    const acked = await writeAcked(c, "ro", 5);
    const varDir = path.join(home, "var");
    const bind = spawnSync("mount", ["--bind", varDir, varDir], { encoding: "utf8" });
    if (bind.status !== 0) throw new Error(`this test bind-mounts var/ read-only and needs root (CI runs as root): ${bind.stderr}`);
    mounts.push(varDir);
    expect(spawnSync("mount", ["-o", "remount,bind,ro", varDir]).status).toBe(0);
    expect(() => fs.writeFileSync(path.join(varDir, "probe"), "x")).toThrow(/EROFS/);

    // The database's files are open already: writes go on, or fail with a code — never a hang or a crash.
    for (let i = 0; i < 5; i++) {
      const r = await c.request("KvSet", { key: `ro-while-${i}`, value: "w" });
      if (r.status === "Success") acked.set(`ro-while-${i}`, "w");
      else expect(r).toMatchObject({ status: "Error", code: expect.stringMatching(/^ASTRID_ERR_STORAGE_/) });
    }
    await expectReadBack(c, acked);
    expect((await c.request("GetStatus")).status).toBe("Status");
    await stop(d, c);

    const refused = await spawnDaemon({ home, waitReady: false });
    expect(await refused.exited).toBe(1);
    expect(refused.stderr()).toMatch(/var cannot be written \(EROFS\).*\[ASTRID_ERR_HOME_READONLY\]/);
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
    expectVerified(home);
    expect(cli(home, "audit", "tail", "-n", "3").status).toBe(0);

    expect(spawnSync("umount", [varDir]).status).toBe(0);
    mounts.splice(mounts.indexOf(varDir), 1);
    const again = await boot(home);
    const c2 = await connect(again);
    await expectReadBack(c2, acked);
    await stop(again, c2);
    expectVerified(home);
  }, 60_000);
});

describe("SIGKILL", () => {
  it("during boot, at several points: the next boot works and nothing acknowledged is lost", async () => {
    const home = tempHome();
    const first = await boot(home);
    const c = await connect(first);
    const acked = await writeAcked(c, "boot", 5);
    await stop(first, c);
    // A full boot takes ~0.5–1 s here: kill early (home and lock), mid (storage, capsules) and late (socket bound).
    for (const delay of [20, 150, 300, 500, 800]) {
      const d = await spawnDaemon({ home, waitReady: false });
      await sleep(delay);
      await kill(d);
    }
    const again = await boot(home);
    const c2 = await connect(again);
    await expectReadBack(c2, acked);
    await stop(again, c2);
    expectVerified(home);
  }, 90_000);

  it("during a capsule reload, at several points: the next boot works and loads the new code", async () => {
    const workspace = tempHome();
    const root = path.join(workspace, ".astrid", "capsules");
    writeTagCapsule(root, "greeter", "v0");
    const home = tempHome();
    let acked = new Map<string, string>();
    for (const [i, delay] of [0, 40, 120, 300].entries()) {
      const d = await boot(home, { args: ["--workspace", workspace] });
      const c = await connect(d);
      expect(await ask(c, "hi")).toEqual([`v${i}: hi`]);
      acked = new Map([...acked, ...(await writeAcked(c, `reload-${i}`, 3))]);
      writeTagCapsule(root, "greeter", `v${i + 1}`);
      void c.request("ReloadCapsules").catch(() => undefined);
      await sleep(delay);
      await kill(d);
    }
    const d = await boot(home, { args: ["--workspace", workspace] });
    const c = await connect(d);
    expect(await ask(c, "hi")).toEqual(["v4: hi"]);
    await expectReadBack(c, acked);
    await stop(d, c);
    expectVerified(home);
  }, 120_000);
});

describe("workers crashing", () => {
  it("the storage worker: calls in its batch fail with ASTRID_ERR_STORAGE_UNAVAILABLE, a fresh worker serves, nothing acknowledged is lost", async () => {
    const home = tempHome();
    const d = await boot(home, { env: FAULTS });
    const c = await connect(d);
    const acked = await writeAcked(c, "before", 5);
    const codes = new Set<string>();
    // Writes in flight around each crash: every one answers, Success (and then it reads back) or the coded error.
    for (let round = 0; round < 3; round++) {
      const writes = Array.from({ length: 40 }, (_, i) => {
        const key = `crash-${round}-${i}`;
        if (i === 10) inject(d, "storage-crash");
        return c.request("KvSet", { key, value: key }, { timeoutMs: 30_000 }).then((r) => {
          if (r.status === "Success") acked.set(key, key);
          else codes.add(String((r as { code?: string }).code));
        });
      });
      await Promise.all(writes);
      await until(() => daemonLog(home).split("storage worker failed").length - 1, (n) => n >= round + 1, 20_000);
    }
    expect([...codes].every((code) => code === "ASTRID_ERR_STORAGE_UNAVAILABLE")).toBe(true);
    expect(d.child.exitCode).toBeNull();
    await expectReadBack(c, acked);
    expect((await c.request("KvSet", { key: "after", value: "z" })).status).toBe("Success");
    // The fresh worker verified the chain again, so the signed head outside the database keeps following the log.
    const head = () => (JSON.parse(cli(home, "audit", "tail", "-n", "1", "--json").stdout.trim()) as { seq: number }).seq;
    await until(() => anchoredSeq(home) === head(), (ok) => ok, 15_000);
    expect((await c.request("GetStatus")).data).toMatchObject({ audit_chain_intact: true });
    await stop(d, c);
    // Audit entries queued in a crashed batch are counted in the chain (never lost silently), and it verifies.
    expectVerified(home);
    const again = await boot(home);
    const c2 = await connect(again);
    await expectReadBack(c2, acked);
    await stop(again, c2);
  }, 90_000);

  it("a capsule's worker: the supervisor restarts it and it answers again", async () => {
    const workspace = tempHome();
    writeTagCapsule(path.join(workspace, ".astrid", "capsules"), "greeter", "g");
    const d = await boot(tempHome(), { args: ["--workspace", workspace], env: { ...FAULTS, ASTRID_CAPSULE_RESTART_BACKOFF_MS: "100" } });
    const c = await connect(d);
    expect(await ask(c, "one")).toEqual(["g: one"]);
    const meta = async () => ((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; restarts: number; last_error?: string }>).find((m) => m.name === "greeter")!;
    inject(d, "capsule-crash greeter");
    await until(meta, (m) => m.restarts === 1 && m.state === "ready", 15_000);
    const failures = daemonLog(d.home).split("\n").filter((l) => l.includes('"message":"capsule failed"') && l.includes('"capsule":"greeter"'));
    expect(failures).toEqual([expect.stringContaining("exited with code 1")]);
    expect(await ask(c, "two")).toEqual(["g: two"]);
    // Twice more: each crash is one more supervised restart.
    for (const n of [2, 3]) {
      inject(d, "capsule-crash greeter");
      await until(meta, (m) => m.restarts === n && m.state === "ready", 15_000);
    }
    expect(await ask(c, "three")).toEqual(["g: three"]);
    await stop(d, c);
    expectVerified(d.home);
  }, 60_000);
});

describe("an MCP server killed with SIGKILL", () => {
  it("is restarted per its policy; calls during the gap get a coded error and none hangs", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "etc"), { recursive: true });
    fs.writeFileSync(path.join(home, "etc", "servers.toml"), [
      "[servers.everything]", `command = ${JSON.stringify(process.execPath)}`, `args = [${JSON.stringify(EVERYTHING)}, "stdio"]`,
      "restart_policy = { on_failure = { max_retries = 5 } }",
    ].join("\n"));
    const d = await boot(home, { env: { ASTRID_MCP_RESTART_BACKOFF_MS: "500", ASTRID_MCP_REQUEST_TIMEOUT_MS: "4000" } });
    const c = await connect(d);
    type Server = { name: string; state: string; pid: number | null; restarts: number };
    const server = async () => ((await c.request("McpList")).data as Server[]).find((s) => s.name === "everything")!;
    const call = () => c.request("McpCall", { server: "everything", tool: "echo", arguments: { message: "m" } }, { timeoutMs: 10_000 });
    const first = await until(server, (s) => s.state === "running", 30_000);
    expect((await call()).status).toBe("Success");

    process.kill(first.pid!, "SIGKILL");
    // Calls through the gap: each answers within its deadline, with Success or a coded error.
    const outcomes: string[] = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      const started = Date.now();
      const r = await call();
      expect(Date.now() - started).toBeLessThan(9000);
      outcomes.push(r.status === "Success" ? "Success" : String((r as { code?: string }).code));
      const s = await server();
      if (s.state === "running" && s.pid !== first.pid && r.status === "Success") break;
      if (Date.now() > deadline) throw new Error(`not restarted: ${JSON.stringify({ s, outcomes })}`);
      await sleep(50);
    }
    const after = await server();
    expect(after.restarts).toBe(1);
    expect(after.pid).not.toBe(first.pid);
    const refused = outcomes.filter((o) => o !== "Success");
    expect(refused.length).toBeGreaterThan(0);
    for (const code of refused) expect(code).toMatch(/^ASTRID_ERR_(MCP_SERVER_UNAVAILABLE|MCP_[A-Z_]+|TIMEOUT)$/);
    await stop(d, c);
    expectVerified(home);
  }, 90_000);
});
