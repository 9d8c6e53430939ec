/**
 * Repeated read-only management requests of one connection are counted in one audit entry; every request is still
 * accounted for, in the order each connection made them, and mutating requests keep one entry each.
 */
import { spawnSync } from "node:child_process";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, spawnDaemon } from "../helpers/daemon";

afterAll(cleanup);

function astrid(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function entries(home: string): AuditEntry[] {
  return astrid(home, ["audit", "tail", "-n", "100000", "--json"]).out.trim().split("\n").map((l) => JSON.parse(l) as AuditEntry);
}

/** How many requests of `method` by `caller` the entries account for. */
function accounted(list: AuditEntry[], caller: string, method: string): number {
  return list.filter((e) => e.action.caller === caller && e.action.method === method)
    .reduce((n, e) => n + (typeof e.action.coalesced === "number" ? e.action.coalesced : 1), 0);
}

describe("audit: coalesced read-only requests", () => {
  it("counts a connection's repeated status queries in one entry, in order with its other requests", async () => {
    const d = await spawnDaemon({ args: ["--quiet"] });
    const a = await connect(d);
    const b = await connect(d);
    for (let i = 0; i < 50; i++) await Promise.all([a.request("GetStatus"), b.request("ListCapsules")]);
    await a.request("KvSet", { key: "after", value: "x" });
    await a.request("GetStatus");
    await a.close();
    await b.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const list = entries(d.home);
    const callerOf = (method: string) => list.find((e) => e.action.method === method)!.action.caller as string;
    const ca = callerOf("KvSet");
    const cb = callerOf("ListCapsules");
    expect(ca).not.toBe(cb);
    // Every request is accounted for…
    expect(accounted(list, ca, "GetStatus")).toBe(51);
    expect(accounted(list, cb, "ListCapsules")).toBe(50);
    // …in a handful of entries, not one per request.
    const ofA = list.filter((e) => e.action.caller === ca);
    expect(ofA.length).toBeLessThan(10);
    // In a's order: the first query alone, the count of the 49 after it, then the write, then the last query.
    expect(ofA.map((e) => [e.action.method, e.action.coalesced])).toEqual([
      ["GetStatus", undefined], ["GetStatus", 49], ["KvSet", undefined], ["GetStatus", undefined],
    ]);
    const counted = ofA[1]!;
    expect(counted.action).toMatchObject({ first_at: expect.any(String), last_at: expect.any(String) });
    expect(Date.parse(counted.action.first_at as string)).toBeLessThanOrEqual(Date.parse(counted.action.last_at as string));
    // The connection's disconnect comes after its requests' counts.
    const disconnect = list.findIndex((e) => e.action.type === "client_disconnected" && `conn:${String(e.action.connection)}` === ca);
    expect(disconnect).toBeGreaterThan(list.indexOf(ofA.at(-1)!));
    // The text form says it plainly, and the chain verifies.
    const text = astrid(d.home, ["audit", "tail", "-n", "100000"]).out;
    expect(text).toMatch(/admin_request method=GetStatus .*×49 more \(\d{4}-.* … \d{4}-.*\) → ok/);
    expect(astrid(d.home, ["audit", "verify"]).code).toBe(0);
  });

  it("never coalesces refused requests", async () => {
    const d = await spawnDaemon({ args: ["--quiet"] });
    const c = await connect(d);
    for (let i = 0; i < 5; i++) await c.request("KvSet", { scope: "system:capsules", key: "k", value: "v" }).catch(() => undefined);
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const refused = entries(d.home).filter((e) => e.action.method === "KvSet" && e.outcome.status === "failure");
    expect(refused).toHaveLength(5);
    expect(refused.every((e) => e.action.coalesced === undefined)).toBe(true);
  });
});
