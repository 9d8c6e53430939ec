/**
 * A full disk under the daemon's home: writes are refused with a coded disk-full error, reads and status keep
 * working, the daemon does not die (its log writer used to), and once space is freed writes work again and the
 * audit chain still verifies. The home lives on a small tmpfs the test mounts (CI runs as root).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { CLI_BIN, cleanup, connect, spawnDaemon, tempHome } from "../helpers/daemon";

let mountPoint: string | undefined;

afterAll(async () => {
  if (mountPoint) spawnSync("umount", ["-l", mountPoint]);
  await cleanup();
});

function mountTmpfs(dir: string, size: string): void {
  const r = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`this test mounts a tmpfs and needs root (CI runs as root): ${r.stderr.trim() || r.error?.message}`);
  mountPoint = dir;
}

/** Fills the filesystem of `dir` to the last byte. */
function fill(dir: string): string {
  const file = path.join(dir, "filler");
  const fd = fs.openSync(file, "w");
  const chunk = Buffer.alloc(64 * 1024);
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOSPC") throw err;
  } finally {
    fs.closeSync(fd);
  }
  return file;
}

describe("a full disk", () => {
  it("refuses writes with ASTRID_ERR_STORAGE_FULL, keeps reads and the daemon alive, and recovers when space frees", async () => {
    const dir = tempHome();
    mountTmpfs(dir, "16m");
    const home = path.join(dir, "home");
    const d = await spawnDaemon({ home });
    const c = await connect(d);
    expect((await c.request("KvSet", { key: "before", value: "kept" })).status).toBe("Success");
    const filler = fill(dir);

    // Writes: refused with the disk-full code, each of them, however many; the daemon keeps answering.
    for (let i = 0; i < 20; i++) {
      const r = await c.request("KvSet", { key: `while-full-${i}`, value: "x".repeat(4096) });
      expect(r).toMatchObject({ status: "Error", code: "ASTRID_ERR_STORAGE_FULL" });
    }
    // Reads and status keep working, on this connection and on a new one (its connect entry cannot be stored).
    expect((await c.request("KvGet", { key: "before" })).data).toMatchObject({ value: "kept" });
    const other = await connect(d);
    expect((await other.request("GetStatus")).status).toBe("Status");
    expect(d.child.exitCode).toBeNull();

    // Space returns: writes work again, nothing acknowledged was lost, and the chain verifies.
    fs.rmSync(filler);
    expect((await c.request("KvSet", { key: "after", value: "stored" })).status).toBe("Success");
    expect((await other.request("KvGet", { key: "after" })).data).toMatchObject({ value: "stored" });
    await other.close();
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // The audit entries that could not be stored while the disk was full are counted in the chain (at least the 20
    // refused writes' own entries), before what came after.
    const tail = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "1000", "--json"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    const entries = tail.stdout.trim().split("\n").map((l) => JSON.parse(l) as { action: { type: string; count?: number; method?: string; params?: { key?: string } } });
    const lost = entries.findIndex((e) => e.action.type === "audit_entries_lost");
    expect(lost).toBeGreaterThan(0);
    expect(entries[lost]!.action.count).toBeGreaterThanOrEqual(20);
    const after = entries.findIndex((e) => e.action.method === "KvSet" && e.action.params?.key === "after");
    expect(after).toBeGreaterThan(0);
    const verify = spawnSync(process.execPath, [CLI_BIN, "audit", "verify"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    expect(verify.stdout).toMatch(/^Audit chain intact/);
    const again = await spawnDaemon({ home });
    const c2 = await connect(again);
    expect((await c2.request("KvGet", { key: "before" })).data).toMatchObject({ value: "kept" });
    // A refused write left nothing behind.
    expect((await c2.request("KvGet", { key: "while-full-0" })).data).toBeNull();
    await c2.close();
    again.child.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  }, 60_000);
});
