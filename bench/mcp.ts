/**
 * MCP tool calls through the kernel against the SDK client alone, in the same run.
 *
 * Kernel path: a capsule (spec/fixtures/mcp/mcp-user) calls `api.mcp.call("everything", "echo", …)` → syscall over
 * its control port → the main thread (manifest and principal checks, audit entry) → the MCP host worker → the
 * server-everything process over stdio → and back. The capsule times each call itself (it runs unconfined here so
 * that it has `performance.now()`; the syscall path is the same confined or not).
 * Baseline: the same calls with the SDK's `Client` and its stdio transport to another server-everything process,
 * from this one process. Each at 1 and 16 calls in flight; p50, p99 and calls/s, and the kernel/direct ratios.
 *
 *   node dist/bench/mcp.js [--calls 2000] [--rounds 3] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { DaemonClient } from "../protocol/client";
import type { IpcMessage } from "../protocol/ipc-message";
import { count, flag, percentile, sleep } from "./bench-options";
import { stopChild } from "./processes";
import { emitRows, rateRow } from "./bench-table";

const CALLS = count("mcp", "calls", 2000);
const ROUNDS = count("mcp", "rounds", 3);
const JSON_OUT = flag("json");
const INFLIGHT = [1, 16];

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const EVERYTHING = require.resolve("@modelcontextprotocol/server-everything/dist/index.js");
const ARGS = { message: "hello from the benchmark" };

interface Sample { latencies: number[]; wallMs: number }
interface Figures { p50_ms: number; p99_ms: number; calls_per_sec: number }

function figures(s: Sample): Figures {
  return { p50_ms: percentile(s.latencies, 50), p99_ms: percentile(s.latencies, 99), calls_per_sec: (s.latencies.length / s.wallMs) * 1000 };
}

/** The same calls with the SDK client alone: `inflight` lanes, `n` calls in all. */
async function direct(client: Client, n: number, inflight: number): Promise<Sample> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < n) {
      next++;
      const t = performance.now();
      await client.callTool({ name: "echo", arguments: ARGS });
      latencies.push(performance.now() - t);
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return { latencies, wallMs: performance.now() - started };
}

async function main(): Promise<void> {
  const home = fs.mkdtempSync("/tmp/astrid-bench-mcp-");
  const ws = fs.mkdtempSync("/tmp/astrid-bench-mcp-ws-");
  let daemon: ChildProcess | undefined;
  let client: Client | undefined;
  let conn: DaemonClient | undefined;
  const cleanup = async () => {
    await conn?.close().catch(() => undefined);
    await client?.close().catch(() => undefined);
    if (daemon) await stopChild(daemon);
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(ws, { recursive: true, force: true });
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    fs.mkdirSync(path.join(home, "etc"), { recursive: true });
    fs.writeFileSync(path.join(home, "etc", "servers.toml"),
      `[servers.everything]\ncommand = ${JSON.stringify(process.execPath)}\nargs = [${JSON.stringify(EVERYTHING)}, "stdio"]\n`);
    fs.cpSync(path.join(ROOT, "capsules", "astrid-capsule-cli"), path.join(ws, "bundled", "astrid-capsule-cli"), { recursive: true });
    fs.cpSync(path.join(ROOT, "spec", "fixtures", "mcp", "mcp-user"), path.join(ws, ".astrid", "capsules", "mcp-user"), { recursive: true });
    daemon = spawn(process.execPath, [DAEMON, "--workspace", ws], {
      env: {
        ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_BUNDLED_CAPSULES_DIR: path.join(ws, "bundled"),
        ASTRID_TEST_UNCONFINED_CAPSULES: "mcp-user",
      },
      stdio: "ignore",
    });
    const ready = path.join(home, "run", "system.ready");
    while (!fs.existsSync(ready)) {
      if (daemon.exitCode !== null) throw new Error("daemon exited during boot");
      await sleep(10);
    }
    const token = fs.readFileSync(path.join(home, "run", "system.token"), "utf8");
    conn = await DaemonClient.connect({ socketPath: path.join(home, "run", "system.sock"), token });
    const replies = new Map<string, (text: string) => void>();
    conn.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response") replies.get(String(m.payload.session_id))?.(String(m.payload.text));
    });
    let sessions = 0;
    const viaKernel = (n: number, inflight: number): Promise<Sample> =>
      new Promise((resolve, reject) => {
        const session = `bench-${++sessions}`;
        const timer = setTimeout(() => reject(new Error(`no answer from the capsule within 300 s (${n} calls, ${inflight} in flight)`)), 300_000);
        replies.set(session, (text) => {
          clearTimeout(timer);
          replies.delete(session);
          const reply = JSON.parse(text) as { ok: boolean; value?: { latencies: number[]; wall_ms: number }; message?: string };
          if (!reply.ok || !reply.value) return reject(new Error(`capsule: ${reply.message}`));
          resolve({ latencies: reply.value.latencies, wallMs: reply.value.wall_ms });
        });
        conn!.publish("user.v1.prompt", {
          type: "user_input", session_id: session,
          text: JSON.stringify({ to: "mcp-user", op: "bench", server: "everything", tool: "echo", args: ARGS, n, inflight }),
        });
      });

    client = new Client({ name: "astrid-bench", version: "1" });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [EVERYTHING, "stdio"], stderr: "ignore" }));
    // Warm-up: both servers started, JITs warm.
    await direct(client, 300, 4);
    await viaKernel(300, 4);

    const results: Record<string, { kernel: Figures; direct: Figures; ratio: { p50: number; p99: number; calls_per_sec: number } }> = {};
    for (const inflight of INFLIGHT) {
      const k: Sample = { latencies: [], wallMs: 0 };
      const dd: Sample = { latencies: [], wallMs: 0 };
      // Interleaved rounds, so drift (another process on the machine) hits both alike.
      for (let r = 0; r < ROUNDS; r++) {
        const a = await direct(client, CALLS, inflight);
        const b = await viaKernel(CALLS, inflight);
        dd.latencies.push(...a.latencies);
        dd.wallMs += a.wallMs;
        k.latencies.push(...b.latencies);
        k.wallMs += b.wallMs;
      }
      const kernel = figures(k);
      const base = figures(dd);
      results[`inflight_${inflight}`] = {
        kernel,
        direct: base,
        ratio: { p50: kernel.p50_ms / base.p50_ms, p99: kernel.p99_ms / base.p99_ms, calls_per_sec: kernel.calls_per_sec / base.calls_per_sec },
      };
    }
    if (JSON_OUT) {
      process.stdout.write(`${JSON.stringify({ calls: CALLS, rounds: ROUNDS, results })}\n`);
    } else {
      console.log(`MCP echo tool calls, ${CALLS} per round × ${ROUNDS} rounds (server-everything over stdio)`);
      const f = (x: number) => x.toFixed(3);
      for (const [key, r] of Object.entries(results)) {
        console.log(`  ${key.replace("_", " ")}:`);
        console.log(`    capsule → kernel → server: p50 ${f(r.kernel.p50_ms)} ms  p99 ${f(r.kernel.p99_ms)} ms  ${r.kernel.calls_per_sec.toFixed(0)} calls/s`);
        console.log(`    SDK client direct:         p50 ${f(r.direct.p50_ms)} ms  p99 ${f(r.direct.p99_ms)} ms  ${r.direct.calls_per_sec.toFixed(0)} calls/s`);
        console.log(`    ratio kernel/direct:       p50 ×${r.ratio.p50.toFixed(2)}  p99 ×${r.ratio.p99.toFixed(2)}  calls/s ×${r.ratio.calls_per_sec.toFixed(2)}`);
      }
      emitRows(Object.entries(results).map(([key, r]) =>
        rateRow(`MCP tool calls from a capsule, ${key.replace("inflight_", "")} in flight (floor: the SDK client direct)`, r.kernel.calls_per_sec, r.direct.calls_per_sec, "calls/s", null)));
    }
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
