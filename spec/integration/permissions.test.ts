/**
 * The manifest's `kv` list is enforced, every denial is audited with capsule, principal and target, and a daemon
 * started with --audit-permissions records the allowed checks too, so `astrid capsule permissions <name>` can print
 * the `[capabilities]` entries the capsule needs.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, ROOT, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURE = path.join(ROOT, "spec", "fixtures", "permissions", "auditee");

interface Report {
  capsule: string;
  checks: number;
  entries: Array<{ list: string; target: string; allowed: number; denied: number }>;
}

async function boot(args: string[]): Promise<{ d: RunningDaemon; c: DaemonClient; received: IpcMessage[] }> {
  const ws = tempHome();
  fs.cpSync(FIXTURE, path.join(ws, ".astrid", "capsules", "auditee"), { recursive: true });
  const d = await spawnDaemon({ args: ["--workspace", ws, ...args] });
  const c = await connect(d);
  const received: IpcMessage[] = [];
  c.on("message", (m: IpcMessage) => received.push(m));
  return { d, c, received };
}

async function stop(d: RunningDaemon, c: DaemonClient): Promise<void> {
  await c.close();
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
}

/** Prompts the auditee and returns what each of its calls answered. */
async function exercise(c: DaemonClient, received: IpcMessage[], session: string): Promise<Record<string, unknown>> {
  c.publish("user.v1.prompt", { type: "user_input", text: "go", session_id: session });
  const reply = await until(() => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), Boolean);
  return JSON.parse(String(reply!.payload.text)) as Record<string, unknown>;
}

function permissions(home: string, json: boolean): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [CLI_BIN, "capsule", "permissions", "auditee", ...(json ? ["--json"] : [])],
    { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
}

afterAll(cleanup);

describe("capsule permissions", () => {
  it("kv keys outside the manifest's kv list are refused with ASTRID_ERR_CAPABILITY_DENIED; the allowed ones work", async () => {
    const { d, c, received } = await boot([]);
    try {
      const results = await exercise(c, received, "kv");
      expect(results).toEqual({
        kv_allowed: "ok",
        kv_read_back: "1",
        kv_denied: "ASTRID_ERR_CAPABILITY_DENIED",
        // `allowed:*` does not cover a listing of every key.
        kv_list_denied: "ASTRID_ERR_CAPABILITY_DENIED",
        publish_denied: "ASTRID_ERR_CAPABILITY_DENIED",
      });
      // Without --audit-permissions only the denials are recorded, each naming its list and target.
      const report = JSON.parse(permissions(d.home, true).stdout) as Report;
      expect(report.entries).toEqual([
        { list: "ipc_publish", target: "forbidden.topic", allowed: 0, denied: 1 },
        { list: "kv", target: "*", allowed: 0, denied: 1 },
        { list: "kv", target: "secret", allowed: 0, denied: 1 },
      ]);
    } finally {
      await stop(d, c);
    }
  }, 60_000);

  it("with --audit-permissions every distinct check is recorded once, and the report prints the entries to paste", async () => {
    const { d, c, received } = await boot(["--audit-permissions"]);
    try {
      await exercise(c, received, "one");
      await exercise(c, received, "two");
      const r = permissions(d.home, true);
      expect(r.status).toBe(0);
      const report = JSON.parse(r.stdout) as Report;
      const entry = (list: string, target: string) => report.entries.find((e) => e.list === list && e.target === target);
      // Allowed checks once per run and target (two prompts, one record); denials each time.
      expect(entry("ipc_subscribe", "user.v1.prompt")).toEqual({ list: "ipc_subscribe", target: "user.v1.prompt", allowed: 1, denied: 0 });
      expect(entry("ipc_publish", "agent.v1.response")).toMatchObject({ allowed: 1, denied: 0 });
      expect(entry("kv", "allowed:x")).toMatchObject({ allowed: 1, denied: 0 });
      expect(entry("kv", "secret")).toMatchObject({ allowed: 0, denied: 2 });
      expect(entry("ipc_publish", "forbidden.topic")).toMatchObject({ allowed: 0, denied: 2 });

      const text = permissions(d.home, false);
      expect(text.status).toBe(0);
      expect(text.stdout).toContain("[capabilities]");
      expect(text.stdout).toMatch(/ipc_publish = \[\n {2}"agent\.v1\.response",\n {2}"forbidden\.topic", {2}# missing: denied 2×/);
      expect(text.stdout).toMatch(/kv = \[[^\]]*"secret", {2}# missing/);
    } finally {
      await stop(d, c);
    }
  }, 60_000);

  it("a capsule with no recorded checks gets advice, not an empty block", async () => {
    const home = tempHome();
    const d = await spawnDaemon({ home });
    const c = await connect(d);
    await stop(d, c);
    const r = spawnSync(process.execPath, [CLI_BIN, "capsule", "permissions", "nobody"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/No permission checks are recorded for nobody[\s\S]*--audit-permissions/);
  }, 60_000);
});
