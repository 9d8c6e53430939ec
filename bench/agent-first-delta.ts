/**
 * The model agent's first-delta latency against a direct `openai`-client call to the same endpoint, in the same run.
 *
 * Daemon path: a socket client publishes `user.v1.prompt` → bus → the model agent (capsules/astrid-capsule-openai)
 * in its worker → one `model.stream_open` host call (the kernel adds the offered tools) → the kernel's `openai`
 * client → HTTP to the fake endpoint (bench/fake-openai-server.ts, in this process) → the first chunk with text →
 * `agent.v1.stream.delta`, published by the kernel for the capsule → back to the socket client. Timed from the
 * publish to the first delta of that session.
 * Baseline: the same request with the `openai` client from this process, timed from `create()` to the first chunk
 * with text. Rounds alternate, so drift on the machine hits both alike. Ratio = direct / daemon (target ≥ 0.8).
 *
 * The fake endpoint waits `--token-ms` between chunks (the first text comes one wait after the headers), standing
 * for a model's time to its first token; it is reported at that setting and at 0 (the bare overhead of the path).
 *
 * `--cpu-prof` writes the daemon's CPU profiles (main thread and workers) to the current directory.
 *
 *   node dist/bench/agent-first-delta.js [--prompts 30] [--token-ms 20] [--json] [--cpu-prof]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import OpenAI from "openai";
import { DaemonClient } from "../protocol/client";
import type { IpcMessage } from "../protocol/ipc-message";
import { count, flag, median, option, percentile, sleep } from "./bench-options";
import { emitRows, timeRow } from "./bench-table";
import { startFakeOpenAi, type FakeOpenAi } from "./fake-openai-server";
import { stopChild } from "./processes";

const PROMPTS = count("agent-first-delta", "prompts", 30);
const TOKEN_MS = option("token-ms", 20);
const JSON_OUT = flag("json");
const CPU_PROF = flag("cpu-prof");
const WARMUP = 5;

const DIST = path.resolve(__dirname, "..");
const ROOT = path.resolve(DIST, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");

interface Figures { median_ms: number; p90_ms: number; to_endpoint_median_ms: number }
/** A sample: start → first delta, and start → the request's arrival at the endpoint. */
interface Sample { first: number; toEndpoint: number }
const figures = (xs: Sample[]): Figures => ({
  median_ms: median(xs.map((x) => x.first)), p90_ms: percentile(xs.map((x) => x.first), 90), to_endpoint_median_ms: median(xs.map((x) => x.toEndpoint)),
});

/** Time from `create()` to the first chunk with text, with the `openai` client alone. */
async function direct(client: OpenAI, fake: FakeOpenAi, n: number): Promise<Sample> {
  const seen = fake.requests.length;
  const t = performance.now();
  const stream = await client.chat.completions.create({ model: "fake-model", stream: true, messages: [{ role: "user", content: `hello ${n}` }] });
  let first = 0;
  for await (const chunk of stream) {
    if (first === 0 && chunk.choices[0]?.delta?.content) first = performance.now() - t;
  }
  return { first, toEndpoint: fake.requests[seen]!.at - t };
}

async function main(): Promise<void> {
  const home = fs.mkdtempSync("/tmp/astrid-bench-agent-");
  const ws = fs.mkdtempSync("/tmp/astrid-bench-agent-ws-");
  const fakes: FakeOpenAi[] = [];
  let daemon: ChildProcess | undefined;
  let conn: DaemonClient | undefined;
  const cleanup = async () => {
    await conn?.close().catch(() => undefined);
    if (daemon) await stopChild(daemon);
    await Promise.all(fakes.map((f) => f.close()));
    fs.rmSync(home, { recursive: true, force: true });
    fs.rmSync(ws, { recursive: true, force: true });
  };
  process.once("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    // One endpoint per setting; the daemon is told which through OPENAI_BASE_URL, so one daemon per setting too.
    const settings = [...new Set([TOKEN_MS, 0])];
    const results: Record<string, { daemon: Figures; direct: Figures; ratio: number }> = {};
    for (const tokenMs of settings) {
      const fake = await startFakeOpenAi({ delayMs: tokenMs });
      fakes.push(fake);
      // Only the CLI policy capsule and the model agent: nothing else answers the prompts.
      const bundled = path.join(ws, `bundled-${tokenMs}`);
      for (const name of ["astrid-capsule-cli", "astrid-capsule-openai"]) fs.cpSync(path.join(ROOT, "capsules", name), path.join(bundled, name), { recursive: true });
      const dhome = path.join(home, `h${tokenMs}`);
      daemon = spawn(process.execPath, [...(CPU_PROF ? ["--cpu-prof"] : []), DAEMON, "--workspace", ws], {
        env: { ...process.env, ASTRID_HOME: dhome, ASTRID_IDLE_TIMEOUT_SECS: "0", ASTRID_BUNDLED_CAPSULES_DIR: bundled, OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: "sk-bench", ASTRID_AGENT_MODEL: "fake-model" },
        stdio: "ignore",
      });
      const ready = path.join(dhome, "run", "system.ready");
      while (!fs.existsSync(ready)) {
        if (daemon.exitCode !== null) throw new Error("daemon exited during boot");
        await sleep(10);
      }
      const token = fs.readFileSync(path.join(dhome, "run", "system.token"), "utf8");
      conn = await DaemonClient.connect({ socketPath: path.join(dhome, "run", "system.sock"), token });
      const waiting = new Map<string, { delta?: () => void; done: () => void }>();
      conn.on("message", (m: IpcMessage) => {
        const w = waiting.get(String(m.payload.session_id));
        if (!w) return;
        if (m.topic === "agent.v1.stream.delta") {
          w.delta?.();
          w.delta = undefined;
        } else if (m.topic === "agent.v1.response") w.done();
      });
      let sessions = 0;
      /** Publish → first delta of a fresh session; resolves once the whole answer is in (so turns do not overlap). */
      const viaDaemon = (): Promise<Sample> => new Promise((resolve, reject) => {
        const session = `bench-${tokenMs}-${++sessions}`;
        const seen = fake.requests.length;
        const t = performance.now();
        let first = 0;
        const timer = setTimeout(() => reject(new Error("no answer within 30 s")), 30_000);
        waiting.set(session, {
          delta: () => (first = performance.now() - t),
          done: () => {
            clearTimeout(timer);
            waiting.delete(session);
            if (first === 0) reject(new Error("the answer came without a delta"));
            else resolve({ first, toEndpoint: fake.requests[seen]!.at - t });
          },
        });
        conn!.publish("user.v1.prompt", { type: "user_input", text: `hello ${sessions}`, session_id: session });
      });
      const client = new OpenAI({ baseURL: fake.url, apiKey: "sk-bench", maxRetries: 0 });
      for (let i = 0; i < WARMUP; i++) {
        await direct(client, fake, i);
        await viaDaemon();
      }
      const d: Sample[] = [];
      const k: Sample[] = [];
      for (let i = 0; i < PROMPTS; i++) {
        d.push(await direct(client, fake, i));
        k.push(await viaDaemon());
      }
      const kernel = figures(k);
      const base = figures(d);
      results[`token_ms_${tokenMs}`] = { daemon: kernel, direct: base, ratio: base.median_ms / kernel.median_ms };
      await conn.close();
      conn = undefined;
      await stopChild(daemon);
      daemon = undefined;
    }
    if (JSON_OUT) {
      process.stdout.write(`${JSON.stringify({ prompts: PROMPTS, token_ms: TOKEN_MS, results })}\n`);
    } else {
      console.log(`Model agent first delta, ${PROMPTS} prompts per path (fake OpenAI-compatible endpoint on loopback)`);
      const f = (x: number) => x.toFixed(2);
      for (const [key, r] of Object.entries(results)) {
        console.log(`  endpoint waits ${key.slice("token_ms_".length)} ms between chunks:`);
        console.log(`    prompt → daemon → model agent → first delta: median ${f(r.daemon.median_ms)} ms  p90 ${f(r.daemon.p90_ms)} ms  (request at the endpoint after ${f(r.daemon.to_endpoint_median_ms)} ms)`);
        console.log(`    openai client direct → first chunk:        median ${f(r.direct.median_ms)} ms  p90 ${f(r.direct.p90_ms)} ms  (request at the endpoint after ${f(r.direct.to_endpoint_median_ms)} ms)`);
        console.log(`    ratio direct/daemon: ${r.ratio.toFixed(2)}${key === `token_ms_${TOKEN_MS}` ? " (target ≥ 0.8)" : " (bare overhead of the path)"}`);
      }
    }
    emitRows(Object.entries(results).map(([key, r]) => {
      const wait = key.slice("token_ms_".length);
      const target = key === `token_ms_${TOKEN_MS}` ? 0.8 : null;
      return timeRow(`Model agent first delta, endpoint waits ${wait} ms (floor: openai client direct${target !== null ? "; ratio ≥ 0.8" : ""})`, r.daemon.median_ms, r.direct.median_ms, "ms", target);
    }));
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
