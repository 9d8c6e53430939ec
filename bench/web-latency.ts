/**
 * Browser-to-reply latency through `astrid web`, as a ratio to the same prompts sent by the SDK directly over the
 * socket, in the same run, against one daemon running the built-in assistant:
 *   sdk  N sessions at once (one SDK connection with a frontend credential, each prompt speaking for a web user),
 *        each a closed loop of prompts (the next once the previous one's final answer came);
 *   web  N tabs of headless Chromium (one visitor) on `astrid web`, each the same closed loop, timed inside the page
 *        from the form's submit to the final reply rendered.
 * Both send the same texts. Prints p50/p99 of each and web/sdk ratios.
 *
 *   node dist/bench/web-latency.js [--prompts 200] [--tabs 8] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { connect } from "../client";
import { count, flag, percentile, sleep } from "./bench-options";
import { stopChild } from "./processes";
import { emitRows, timeRow } from "./bench-table";

const PROMPTS = count("web-latency", "prompts", 200);
const TABS = count("web-latency", "tabs", 8);
const JSON_OUT = flag("json");
const CHROMIUM = "/usr/bin/chromium";
const BOOT_MS = 60_000;
const ANSWER_MS = 60_000;

const DIST = path.resolve(__dirname, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");
const CLI = path.join(DIST, "bin", "astrid.js");

const ownedDirs = new Set<string>();
const ownedChildren = new Set<ChildProcess>();
let browser: Browser | undefined;

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(`/tmp/${prefix}`); // short: the socket path must stay under 108 bytes
  ownedDirs.add(dir);
  return dir;
}

function own(child: ChildProcess): ChildProcess {
  ownedChildren.add(child);
  child.once("exit", () => ownedChildren.delete(child));
  return child;
}

/** The texts one loop sends: the same for both paths. */
const texts = (loop: number, n: number) => Array.from({ length: n }, (_, i) => `${loop} + ${i}`);

/** Boots the daemon with the built-in assistant and waits until every capsule is ready. */
async function boot(home: string): Promise<void> {
  const workspace = tempDir("astrid-bw-ws-");
  const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0" };
  delete env.ASTRID_BUNDLED_CAPSULES_DIR;
  const child = own(spawn(process.execPath, [DAEMON, "--no-watch", "--workspace", workspace], { env, stdio: ["ignore", "ignore", "pipe"] }));
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const deadline = Date.now() + BOOT_MS;
  while (!(fs.existsSync(path.join(home, "run", "system.token")) && fs.existsSync(path.join(home, "run", "system.ready")))) {
    if (child.exitCode !== null) throw new Error(`daemon exited during boot: ${err}`);
    if (Date.now() > deadline) throw new Error(`daemon not ready within ${BOOT_MS} ms: ${err}`);
    await sleep(10);
  }
  const c = await connect({ home });
  try {
    for (;;) {
      const r = await c.request("GetCapsuleMetadata");
      const capsules = r.data as Array<{ name: string; state: string }>;
      if (capsules.some((m) => m.name === "astrid-capsule-assistant") && capsules.every((m) => m.state === "ready")) break;
      if (Date.now() > deadline) throw new Error(`capsules did not all start: ${JSON.stringify(capsules)}`);
      await sleep(50);
    }
  } finally {
    await c.close();
  }
}

/** Latencies (ms) of PROMPTS prompts over TABS concurrent sessions, straight through the SDK. */
async function sdkRun(home: string, tag: string): Promise<number[]> {
  const client = await connect({ home, credential: "bench-sdk" });
  const user = { platform: "web", platform_user_id: `bench-${tag}` };
  const per = Math.ceil(PROMPTS / TABS);
  const times: number[] = [];
  try {
    await Promise.all(Array.from({ length: TABS }, async (_, loop) => {
      const session = `sdk-${tag}-${loop}`;
      for (const text of texts(loop, per)) {
        const t = performance.now();
        await client.prompt(session, text, { user, timeoutMs: ANSWER_MS }).text();
        times.push(performance.now() - t);
      }
    }));
  } finally {
    await client.close();
  }
  return times.slice(0, PROMPTS);
}

/** The same through `astrid web`: each tab times its own loop inside the page. */
async function webRun(loginUrl: string, origin: string): Promise<number[]> {
  browser ??= await chromium.launch({
    executablePath: CHROMIUM, headless: true, args: ["--disable-background-timer-throttling", "--disable-renderer-backgrounding", "--disable-backgrounding-occluded-windows"],
  });
  const context = await browser.newContext();
  const first = await context.newPage();
  await first.goto(loginUrl);
  const pages = [first, ...(await Promise.all(Array.from({ length: TABS - 1 }, () => context.newPage())))];
  await Promise.all(pages.slice(1).map((p) => p.goto(`${origin}/`)));
  await Promise.all(pages.map((p) => p.waitForSelector("#st-state:text('running')", { timeout: 10_000 })));
  const per = Math.ceil(PROMPTS / TABS);
  const all = await Promise.all(pages.map((page, loop) => page.evaluate(async ({ list, answerMs }) => {
    // Runs in the page (this package's TypeScript has no DOM types).
    const g = globalThis as unknown as { document: any; MutationObserver: any }; // eslint-disable-line @typescript-eslint/no-explicit-any
    const document = g.document;
    const times: number[] = [];
    const box = document.getElementById("prompt");
    const form = document.getElementById("composer");
    const button = document.getElementById("send");
    for (let i = 0; i < list.length; i++) {
      const turn = i + 1;
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`turn ${turn} got no reply`)), answerMs);
        const seen = () => document.querySelector(`.msg.assistant[data-turn='${turn}'][data-final='true']`) !== null && !button.disabled;
        const observer = new g.MutationObserver(() => {
          if (!seen()) return;
          observer.disconnect();
          clearTimeout(timer);
          resolve();
        });
        observer.observe(document.body, { subtree: true, childList: true, attributes: true });
      });
      box.value = list[i]!;
      const t = performance.now();
      form.requestSubmit();
      await done;
      times.push(performance.now() - t);
    }
    return times.slice(1); // the first turn warms the tab (and, in the first tab, provisions the visitor)
  }, { list: [`warm ${loop}`, ...texts(loop, per)], answerMs: ANSWER_MS })));
  await context.close();
  return all.flat().slice(0, PROMPTS);
}

function stats(xs: number[]) {
  return { n: xs.length, p50: percentile(xs, 50), p99: percentile(xs, 99) };
}

async function main(): Promise<void> {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing (apt-get install chromium)`);
  const home = tempDir("astrid-bw-");
  await boot(home);
  const env = { ...process.env, ASTRID_HOME: home };
  const add = own(spawn(process.execPath, [CLI, "frontend", "add", "bench-sdk", "--platform", "web", "--unlinked", "restricted"], { env, stdio: "ignore" }));
  await new Promise((r) => add.once("exit", r));
  const web = own(spawn(process.execPath, [CLI, "web", "--port", "0", "--max-tabs", String(TABS + 4)], { env, stdio: ["ignore", "pipe", "pipe"] }));
  let out = "";
  web.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!/One-time login URL: (\S+)/.test(out)) {
    if (web.exitCode !== null || Date.now() > deadline) throw new Error(`astrid web did not start: ${out}`);
    await sleep(20);
  }
  const loginUrl = /One-time login URL: (\S+)/.exec(out)![1]!;
  const origin = new URL(loginUrl).origin;
  // Warm both paths (JIT, provisioning of the users' principals), then measure sdk, web, sdk again.
  await sdkRun(home, "warm");
  const sdkA = await sdkRun(home, "a");
  const webTimes = await webRun(loginUrl, origin);
  const sdkB = await sdkRun(home, "b");
  const sdk = stats([...sdkA, ...sdkB]);
  const w = stats(webTimes);
  const result = {
    prompts: PROMPTS, tabs: TABS, sdk, web: w,
    ratio_p50: w.p50 / sdk.p50, ratio_p99: w.p99 / sdk.p99,
  };
  if (JSON_OUT) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`Web latency: ${PROMPTS} prompts over ${TABS} tabs (closed loops) to the built-in assistant`);
  console.log(`  sdk (direct socket)  p50 ${sdk.p50.toFixed(2)} ms   p99 ${sdk.p99.toFixed(2)} ms   (n=${sdk.n}, two runs around the web run)`);
  console.log(`  web (browser→page)   p50 ${w.p50.toFixed(2)} ms   p99 ${w.p99.toFixed(2)} ms   (n=${w.n})`);
  console.log(`  web/sdk              p50 ${result.ratio_p50.toFixed(2)}×   p99 ${result.ratio_p99.toFixed(2)}×`);
  emitRows([timeRow(`Web page prompt → reply p50, ${TABS} tabs (floor: the client SDK on the socket)`, w.p50, sdk.p50, "ms", null)]);
}

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await browser?.close().catch(() => undefined);
    await Promise.all([...ownedChildren].map((c) => stopChild(c)));
    for (const dir of ownedDirs) fs.rmSync(dir, { recursive: true, force: true });
  })();
  return cleaning;
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void cleanup().then(() => process.exit(130)));
main().then(
  () => cleanup(),
  async (err: unknown) => {
    console.error(`web-latency: ${err instanceof Error ? err.message : String(err)}`);
    await cleanup();
    process.exitCode = 1;
  },
);
