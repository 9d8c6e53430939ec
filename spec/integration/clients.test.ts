/** Issue #2: many concurrent frontends, the configurable client limit and connection counting. */
import type { DaemonClient } from "../../protocol/client";
import { encodeFrame } from "../../protocol/framing";
import { cleanup, connect, RawClient, sleep, spawnDaemon } from "../helpers/daemon";

afterAll(cleanup);

/** Opens `n` clients at once; returns the connected ones and the errors of the refused. */
async function connectMany(d: Parameters<typeof connect>[0], n: number) {
  const results = await Promise.allSettled(Array.from({ length: n }, () => connect(d)));
  const clients = results.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  const errors = results.flatMap((r) => (r.status === "rejected" ? [r.reason as { code: string; message: string }] : []));
  return { clients, errors };
}

async function closeAll(clients: DaemonClient[]): Promise<void> {
  await Promise.all(clients.map((c) => c.close()));
}

describe("issue #2: concurrent clients", () => {
  it("300 clients at once: 256 served, the rest refused with a clear coded error; service goes on", async () => {
    const d = await spawnDaemon();
    const { clients, errors } = await connectMany(d, 300);
    expect(clients).toHaveLength(256);
    expect(errors).toHaveLength(44);
    for (const e of errors) {
      expect(e.code).toBe("ASTRID_ERR_TOO_MANY_CLIENTS");
      expect(e.message).toMatch(/at most 256.*ASTRID_MAX_CLIENTS/);
    }
    // Every served client gets its own answer, concurrently — and no other client's: DaemonClient hands a reply
    // whose request_id it did not send to "message", so every such frame is counted here.
    const strays = clients.map(() => 0);
    clients.forEach((c, i) => c.on("message", (m: { topic: string }) => {
      if (m.topic.startsWith("astrid.v1.response.")) strays[i]!++;
    }));
    const replies = await Promise.all(clients.map((c) => c.request("GetStatus")));
    expect(replies.every((r) => r.status === "Status")).toBe(true);
    await sleep(200);
    expect(strays.reduce((a, b) => a + b, 0)).toBe(0);
    expect((replies[0]!.data as { connected_clients: number }).connected_clients).toBe(256);
    await closeAll(clients.slice(0, 10));
    await sleep(100);
    const late = await connect(d);
    expect(await late.request("GetStatus")).toMatchObject({ data: { connected_clients: 247 } });
    await closeAll([late, ...clients.slice(10)]);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 60_000);

  it("ASTRID_MAX_CLIENTS raises the limit: 300 clients all served", async () => {
    const d = await spawnDaemon({ env: { ASTRID_MAX_CLIENTS: "300" } });
    const { clients, errors } = await connectMany(d, 300);
    expect(errors).toEqual([]);
    expect(clients).toHaveLength(300);
    await closeAll(clients);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 60_000);

  it("--max-clients 2 refuses the third; a bad value is a clear error", async () => {
    const d = await spawnDaemon({ args: ["--max-clients", "2"] });
    const a = await connect(d);
    const b = await connect(d);
    await expect(connect(d)).rejects.toMatchObject({ code: "ASTRID_ERR_TOO_MANY_CLIENTS" });
    await a.close();
    await sleep(50);
    const c = await connect(d);
    await closeAll([b, c]);
    d.child.kill("SIGTERM");
    await d.exited;
    const bad = await spawnDaemon({ env: { ASTRID_MAX_CLIENTS: "lots" }, waitReady: false });
    expect(await bad.exited).toBe(1);
    expect(bad.stderr()).toMatch(/ASTRID_MAX_CLIENTS must be a whole number of clients from 1 to 65536 \(got "lots"\).*\[ASTRID_ERR_CONFIG_INVALID\]/);
  });

  it("a client that never reads its replies does not stall the others (reference §11 item 3)", async () => {
    const d = await spawnDaemon();
    const stuck = await RawClient.authenticated(d);
    stuck.socket.pause();
    const frame = encodeFrame({ topic: "astrid.v1.request.s", payload: { type: "raw_json", method: "GetStatus" } });
    stuck.send(Buffer.concat(Array.from({ length: 20_000 }, () => frame)));
    const other = await connect(d);
    const started = Date.now();
    for (let i = 0; i < 200; i++) expect((await other.request("GetStatus")).status).toBe("Status");
    expect(Date.now() - started).toBeLessThan(10_000);
    stuck.destroy();
    await other.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("counts connections: connected_clients follows connects and disconnects", async () => {
    const d = await spawnDaemon();
    const watcher = await connect(d);
    const extra = await Promise.all([connect(d), connect(d), connect(d)]);
    expect(await watcher.request("GetStatus")).toMatchObject({ data: { connected_clients: 4 } });
    await closeAll(extra);
    await sleep(50);
    expect(await watcher.request("GetStatus")).toMatchObject({ data: { connected_clients: 1 } });
    await watcher.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });
});
