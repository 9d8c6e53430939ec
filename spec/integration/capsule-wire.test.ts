/**
 * Issue #8: every message from a capsule worker is validated on receipt. Capsules that post hostile messages
 * straight on their worker's ports (spec/fixtures/wire-abuse) are failed and restarted, audited, and nobody else
 * notices: the echo capsule keeps answering, GetStatus stays fast, and the queue cap and watchdog still work.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, daemonLog, ROOT, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const ABUSE = path.join(ROOT, "spec", "fixtures", "wire-abuse");
const CAPSULES = path.join(ROOT, "spec", "fixtures", "capsules");
/** Fixtures that break the protocol and must end up failed. */
const MALFORMED = ["ack-nan", "ack-negative", "unknown-kind", "stray-reply", "huge-string", "proto-key", "message-flood"];

let d: RunningDaemon;
let c: DaemonClient;
const received: IpcMessage[] = [];

beforeAll(async () => {
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(ABUSE, root, { recursive: true });
  for (const name of ["echo", "slow-handler", "bus-flood", "infinite-loop"]) fs.cpSync(path.join(CAPSULES, name), path.join(root, name), { recursive: true });
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    // Confined capsules cannot reach their worker's ports at all; these run unconfined, as a capsule that escaped
    // its Compartment would, so the kernel's own validation is what is tested.
    env: { ASTRID_CAPSULE_RESTART_BACKOFF_MS: "60000", ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "1500", ASTRID_TEST_UNCONFINED_CAPSULES: [...MALFORMED, "log-flood"].join(",") },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
}, 60_000);
afterAll(async () => {
  await c?.close();
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
  await cleanup();
});

interface Meta { name: string; state: string; restarts: number; last_error?: string; dropped_events: number }
async function metadata(): Promise<Record<string, Meta>> {
  const reply = await c.request("GetCapsuleMetadata");
  return Object.fromEntries((reply.data as Meta[]).map((m) => [m.name, m]));
}

function auditTail(): AuditEntry[] {
  const r = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "2000", "--json"], {
    env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 20_000,
  });
  expect(r.status).toBe(0);
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

describe("issue #8: hostile messages from a capsule worker", () => {
  it.each(MALFORMED)("%s: the capsule is failed with a clear reason, and the violation is audited", async (name) => {
    const meta = await until(metadata, (m) => m[name]?.state === "failed", 20_000);
    expect(meta[name]!.last_error).toMatch(/malformed/);
    const action = (e: AuditEntry) => e.action as { type?: string; change?: string; capsule?: string };
    await until(async () => auditTail(), (entries) => entries.some((e) => action(e).change === "protocol_violation" && action(e).capsule === name), 10_000);
  });

  it("a flood of well-formed log lines is cut to the per-second budget, and the capsule stays up", async () => {
    const meta = await until(metadata, (m) => m["log-flood"]?.state === "ready", 10_000);
    expect(meta["log-flood"]!.state).toBe("ready");
    await until(async () => daemonLog(d.home).includes("capsule log lines dropped"), Boolean, 10_000);
    const lines = daemonLog(d.home).split("\n").filter((l) => l.includes('"capsule":"log-flood"') && l.includes("flood "));
    expect(lines.length).toBeLessThan(2000);
  });

  it("a __proto__ key pollutes nothing: later payloads and the kernel's objects are untouched", async () => {
    // The publish with the __proto__ key was delivered as data (or refused) — the kernel still answers normally.
    const status = await c.request("GetStatus");
    expect((status.data as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it("everyone else keeps working: echo answers, GetStatus is fast, the queue cap and the watchdog still act", async () => {
    c.publish("user.v1.prompt", { type: "user_input", text: "still there?", session_id: "wire-1" });
    await until(async () => received, (r) => r.some((m) => m.topic === "agent.v1.response" && m.payload.session_id === "wire-1"), 10_000);
    const times: number[] = [];
    for (let i = 0; i < 50; i++) {
      const t = performance.now();
      await c.request("GetStatus");
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    expect(times[Math.floor(times.length * 0.99)]!).toBeLessThan(250);
    // The queue cap: slow-handler takes 20 ms per tick, so bus-flood's burst overflows its 256-event queue.
    c.publish("user.v1.prompt", { type: "user_input", text: "flood", session_id: "wire-2" });
    const meta = await until(metadata, (m) => (m["slow-handler"]?.dropped_events ?? 0) > 0, 15_000);
    expect(meta["slow-handler"]!.dropped_events).toBeGreaterThan(0);
    // The watchdog: infinite-loop never acknowledges the prompts it was sent, and is failed after 1.5 s.
    const hung = await until(metadata, (m) => m["infinite-loop"]?.state === "failed", 15_000);
    expect(hung["infinite-loop"]!.last_error).toMatch(/ran longer than 1500 ms/);
  });
});
