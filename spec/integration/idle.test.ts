/** Issue #2: the idle monitor of reference §2.6 on the real daemon. */
import fs from "node:fs";
import path from "node:path";
import { cleanup, connect, sleep, spawnDaemon, tempHome } from "../helpers/daemon";

afterAll(cleanup);

const fast = { ASTRID_IDLE_TIMEOUT_SECS: "1", ASTRID_IDLE_GRACE_SECS: "0" };

function logText(home: string): string {
  const file = fs.readdirSync(path.join(home, "log")).find((f) => f.startsWith("astrid."))!;
  return fs.readFileSync(path.join(home, "log", file), "utf8");
}

describe("issue #2: idle shutdown", () => {
  it("a persistent daemon with no clients shuts down after ASTRID_IDLE_TIMEOUT_SECS, exits 0, leaves nothing in run/", async () => {
    const d = await spawnDaemon({ env: fast });
    const started = Date.now();
    expect(await d.exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(fs.readdirSync(path.join(d.home, "run"))).toEqual([]);
    expect(logText(d.home)).toMatch(/"message":"daemon shutting down","reason":"idle_timeout"/);
  });

  it("a connected client keeps it alive; the idle clock starts when the last one leaves", async () => {
    const d = await spawnDaemon({ env: fast });
    const c = await connect(d);
    await sleep(2500);
    expect(d.child.exitCode).toBeNull();
    expect(await c.request("GetStatus")).toMatchObject({ status: "Status" });
    await c.close();
    const left = Date.now();
    expect(await d.exited).toBe(0);
    expect(Date.now() - left).toBeGreaterThanOrEqual(900);
  });

  it("a loaded capsule with an [[uplink]] entry keeps it alive", async () => {
    const workspace = tempHome();
    const dir = path.join(workspace, ".astrid", "capsules", "bridge");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), '[package]\nname = "bridge"\nversion = "0.1.0"\n[[uplink]]\nname = "b"\nplatform = "discord"\nprofile = "bridge"\n');
    const d = await spawnDaemon({ env: fast, args: ["--workspace", workspace] });
    await sleep(2500);
    expect(d.child.exitCode).toBeNull();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("ASTRID_IDLE_TIMEOUT_SECS=0 disables idle shutdown in persistent mode", async () => {
    const d = await spawnDaemon({ env: { ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_IDLE_GRACE_SECS: "0" } });
    await sleep(2000);
    expect(d.child.exitCode).toBeNull();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("an --ephemeral daemon shuts down after the reference's 5 s grace + 30 s, whatever the env says", async () => {
    const d = await spawnDaemon({ args: ["--ephemeral"], env: fast });
    const ready = Date.now();
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({ data: { ephemeral: true } });
    await c.close();
    await sleep(10_000);
    expect(d.child.exitCode).toBeNull();
    expect(await d.exited).toBe(0);
    const took = Date.now() - ready;
    expect(took).toBeGreaterThanOrEqual(30_000);
    expect(took).toBeLessThan(38_000);
  }, 45_000);
});
