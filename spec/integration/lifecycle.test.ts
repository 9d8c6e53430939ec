/**
 * Issue #4: a capsule's `install` hook runs on its first load, `upgrade(previous)` when its version changed, neither
 * when nothing changed; a hook that fails or hangs fails the load and leaves the install record as it was.
 * Each step restarts the real daemon on the same home, so the records live in the real state.db.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, ROOT, spawnDaemon, until, tempHome, type RunningDaemon } from "../helpers/daemon";

const home = tempHome();
const workspace = tempHome();
const capsuleDir = path.join(workspace, ".astrid", "capsules", "lifecycle");
const manifest = path.join(capsuleDir, "Capsule.toml");
const env = {
  ASTRID_CAPSULE_READY_TIMEOUT_MS: "1000",
  ASTRID_CAPSULE_HOOK_TIMEOUT_MS: "3000",
  ASTRID_CAPSULE_RESTART_BACKOFF_MS: "60000",
};

beforeAll(() => fs.cpSync(path.join(ROOT, "spec", "fixtures", "lifecycle"), capsuleDir, { recursive: true }));
afterAll(cleanup);

function setVersion(version: string): void {
  fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace(/^version = ".*"$/m, `version = "${version}"`));
}

/** Runs the daemon once: `body` gets a connected client; the daemon is stopped (exit 0) afterwards. */
async function withDaemon(body: (c: DaemonClient, d: RunningDaemon) => Promise<void>): Promise<void> {
  const d = await spawnDaemon({ home, args: ["--workspace", workspace], env });
  const c = await connect(d);
  try {
    await body(c, d);
  } finally {
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }
}

async function hookLog(c: DaemonClient): Promise<string> {
  const reply = await c.request("KvGet", { scope: "default:capsule:lifecycle", key: "log" });
  return (reply.data as { value: string } | null)?.value ?? "";
}

async function installRecord(c: DaemonClient): Promise<{ version: string; installed_at: string; updated_at: string }> {
  const reply = await c.request("KvGet", { scope: "system:capsules", key: "lifecycle" });
  return JSON.parse((reply.data as { value: string }).value);
}

async function capsule(c: DaemonClient): Promise<{ state: string; version: string; last_error?: string }> {
  const reply = await c.request("GetCapsuleMetadata");
  return (reply.data as Array<{ name: string; state: string; version: string; last_error?: string }>).find((m) => m.name === "lifecycle")!;
}

describe("issue #4: install and upgrade hooks", () => {
  let firstInstall = "";

  it("runs install once on the first load, even when it takes longer than the ready deadline", async () => {
    await withDaemon(async (c) => {
      expect(await capsule(c)).toMatchObject({ state: "ready", version: "1.0.0" });
      expect(await hookLog(c)).toBe("install,setup");
      const record = await installRecord(c);
      expect(record).toMatchObject({ version: "1.0.0" });
      expect(record.installed_at).toBe(record.updated_at);
      firstInstall = record.installed_at;
    });
  });

  it("runs no hook when the version did not change", async () => {
    await withDaemon(async (c) => {
      expect(await capsule(c)).toMatchObject({ state: "ready" });
      expect(await hookLog(c)).toBe("install,setup,setup");
    });
  });

  it("runs upgrade with the previous version when the version changed, keeping installed_at", async () => {
    setVersion("1.1.0");
    await withDaemon(async (c) => {
      expect(await capsule(c)).toMatchObject({ state: "ready", version: "1.1.0" });
      expect(await hookLog(c)).toBe("install,setup,setup,upgrade from 1.0.0,setup");
      const record = await installRecord(c);
      expect(record).toMatchObject({ version: "1.1.0", installed_at: firstInstall });
      expect(record.updated_at > firstInstall).toBe(true);
    });
  });

  it("a failing upgrade fails the load with its reason and keeps the old record; fixed, a reload upgrades", async () => {
    setVersion("2.0.0");
    fs.writeFileSync(path.join(capsuleDir, "fail-upgrade.json"), "{}");
    await withDaemon(async (c) => {
      expect(await capsule(c)).toMatchObject({ state: "failed", last_error: "failed to load: upgrade hook failed: the database migration failed" });
      expect(await installRecord(c)).toMatchObject({ version: "1.1.0" });
      fs.rmSync(path.join(capsuleDir, "fail-upgrade.json"));
      expect((await c.request("ReloadCapsules")).status).toBe("Success");
      expect(await capsule(c)).toMatchObject({ state: "ready", version: "2.0.0" });
      expect(await hookLog(c)).toMatch(/,upgrade from 1\.1\.0,setup$/);
      expect(await installRecord(c)).toMatchObject({ version: "2.0.0", installed_at: firstInstall });
    });
  });

  it("a hook that never finishes is stopped at the hook deadline", async () => {
    setVersion("3.0.0");
    fs.writeFileSync(path.join(capsuleDir, "hang-upgrade.json"), "{}");
    await withDaemon(async (c) => {
      expect(await capsule(c)).toMatchObject({ state: "failed", last_error: "its upgrade hook did not finish within 3000 ms" });
      expect(await installRecord(c)).toMatchObject({ version: "2.0.0" });
      // The kernel goes on serving while the capsule is failed.
      expect((await c.request("GetStatus")).status).toBe("Status");
    });
    fs.rmSync(path.join(capsuleDir, "hang-upgrade.json"));
  });

  it("records each install and upgrade in the signed audit log, which still verifies", () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    const tail = run(["audit", "tail", "-n", "1000", "--json"]);
    expect(tail.status).toBe(0);
    const hooks = tail.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l).action)
      .filter((a: { type: string; change?: string }) => a.type === "capsule_lifecycle" && (a.change === "install" || a.change === "upgrade"));
    expect(hooks).toEqual([
      expect.objectContaining({ change: "install", capsule: "lifecycle", version: "1.0.0" }),
      expect.objectContaining({ change: "upgrade", capsule: "lifecycle", from: "1.0.0", to: "1.1.0" }),
      expect.objectContaining({ change: "upgrade", capsule: "lifecycle", from: "1.1.0", to: "2.0.0" }),
    ]);
    expect(run(["audit", "verify"]).status).toBe(0);
  });
});

describe("issue #4: a capsule cannot stretch its hook deadline", () => {
  it("keeps the port busy meanwhile, and still fails the hook at its deadline", async () => {
    const ws = tempHome();
    fs.cpSync(path.join(ROOT, "spec", "fixtures", "lifecycle-spam"), path.join(ws, ".astrid", "capsules", "lifecycle-spam"), { recursive: true });
    const started = Date.now();
    const d = await spawnDaemon({ args: ["--workspace", ws], env });
    const c = await connect(d);
    try {
      const meta = ((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; last_error?: string }>).find((m) => m.name === "lifecycle-spam");
      expect(meta).toMatchObject({ state: "failed", last_error: "its install hook did not finish within 3000 ms" });
      expect(Date.now() - started).toBeLessThan(10_000);
      const record = await c.request("KvGet", { scope: "system:capsules", key: "lifecycle-spam" });
      expect(record).toMatchObject({ status: "Success", data: null });
    } finally {
      await c.close();
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
    }
  }, 20_000);
});

describe("boot does not wait for slow capsules", () => {
  it("serves after the boot wait, announces capsules_loaded again once the late ones are up, and stops without waiting for a hanging hook", async () => {
    const ws = tempHome();
    const slow = path.join(ws, ".astrid", "capsules", "slowpoke");
    fs.mkdirSync(slow, { recursive: true });
    fs.writeFileSync(path.join(slow, "Capsule.toml"), '[package]\nname = "slowpoke"\nversion = "1.0.0"\n[[component]]\nfile = "index.js"\n');
    fs.writeFileSync(path.join(slow, "index.js"), "module.exports = { setup: () => new Promise((resolve) => setTimeout(resolve, 8000)) };\n");
    fs.cpSync(path.join(ROOT, "spec", "fixtures", "lifecycle-spam"), path.join(ws, ".astrid", "capsules", "lifecycle-spam"), { recursive: true });
    const started = Date.now();
    const d = await spawnDaemon({
      args: ["--workspace", ws],
      env: { ASTRID_CAPSULE_BOOT_WAIT_MS: "300", ASTRID_CAPSULE_READY_TIMEOUT_MS: "20000", ASTRID_CAPSULE_HOOK_TIMEOUT_MS: "60000" },
    });
    // slowpoke's setup takes 8 s; serving well before that is the point (the bound leaves room for a loaded CI machine)
    expect(Date.now() - started).toBeLessThan(6000);
    const c = await connect(d);
    const announcements: string[] = [];
    c.on("message", (m: IpcMessage) => {
      if (m.topic === "astrid.v1.capsules_loaded") announcements.push(m.topic);
    });
    const state = async (name: string) =>
      ((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).find((m) => m.name === name)?.state;
    expect(await state("slowpoke")).toBe("loading");
    await until(() => state("slowpoke"), (s) => s === "ready", 15_000);
    await until(async () => announcements.length, (n) => n >= 2, 5000);
    expect(await state("lifecycle-spam")).toBe("loading");
    await c.close();
    const stopping = Date.now();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(Date.now() - stopping).toBeLessThan(5000);
  }, 40_000);
});
