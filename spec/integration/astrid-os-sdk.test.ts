/**
 * Capsules written for the reference daemon's JS SDK (`@astrid-os/sdk`) run here as confined JS capsules: an ES
 * module with decorators in plain JavaScript, and a TypeScript capsule compiled to CommonJS here with the real
 * compiler. Between them, on the real daemon: an interceptor answering a prompt, a command, a mutable tool whose
 * `__state` outlives a daemon restart, kv, publish/subscribe between capsules, the install hook, an HTTP call the
 * network guard refuses and an unsupported call, each failure seen by the capsule as a `SysError` with its code.
 */
import fs from "node:fs";
import path from "node:path";
import ts from "typescript";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, type RunningDaemon } from "../helpers/daemon";

const FIXTURES = path.join(ROOT, "spec", "fixtures", "astrid-os-sdk");
const GUIDE_HEADING = "## Capsules written for the reference SDK";

/** What `tsc` makes of a capsule's source with standard decorators: CommonJS requiring "@astrid-os/sdk". */
function toCommonJs(source: string): string {
  const out = ts.transpileModule(source, {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.CommonJS },
    reportDiagnostics: true,
  });
  expect(out.diagnostics ?? []).toEqual([]);
  expect(out.outputText).toMatch(/require\("@astrid-os\/sdk"\)/);
  return out.outputText;
}

/** The toml and ts fences of the guide's section on these capsules, as written. */
function guideExample(): { toml: string; ts: string } {
  const guide = fs.readFileSync(path.join(ROOT, "docs", "capsules.md"), "utf8");
  const section = guide.slice(guide.indexOf(GUIDE_HEADING), guide.indexOf("\n## ", guide.indexOf(GUIDE_HEADING) + 1));
  const fence = (lang: string) => new RegExp("```" + lang + "\\n([\\s\\S]*?)```").exec(section)![1]!;
  return { toml: fence("toml"), ts: fence("ts") };
}

let home: string;
let workspace: string;
let d: RunningDaemon;
let c: DaemonClient;
const replies: string[] = [];

async function start(): Promise<void> {
  d = await spawnDaemon({ home, args: ["--workspace", workspace] });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") replies.push(String(m.payload.text));
  });
}

async function stop(): Promise<void> {
  await c.close();
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
}

/** Publishes `text` on `topic` and returns the first reply starting with `prefix` that arrives after it. */
async function ask(topic: string, text: string, prefix: string): Promise<string> {
  const before = replies.length;
  c.publish(topic, { type: "user_input", text, session_id: "s1" });
  for (let i = 0; i < 150; i++) {
    const found = replies.slice(before).find((r) => r.startsWith(prefix));
    if (found !== undefined) return found;
    await sleep(100);
  }
  return `(no reply starting "${prefix}"; saw ${JSON.stringify(replies.slice(before))})`;
}

const prompt = (text: string, prefix = "esm:") => ask("user.v1.prompt", text, prefix);
const command = (text: string, prefix: string) => ask("cli.v1.command.execute", text, prefix);

async function kvValue(capsule: string, key: string): Promise<unknown> {
  return ((await c.request("KvGet", { scope: `default:capsule:${capsule}`, key })).data as { value?: unknown } | null)?.value;
}

beforeAll(async () => {
  home = tempHome();
  workspace = tempHome();
  const capsules = path.join(workspace, ".astrid", "capsules");
  fs.cpSync(path.join(FIXTURES, "astro-esm"), path.join(capsules, "astro-esm"), { recursive: true });
  const cjs = path.join(capsules, "astro-cjs");
  fs.cpSync(path.join(FIXTURES, "astro-cjs"), cjs, { recursive: true });
  fs.writeFileSync(path.join(cjs, "index.js"), toCommonJs(fs.readFileSync(path.join(cjs, "index.ts"), "utf8")));
  // The guide's own example, as written there.
  const greeter = path.join(capsules, "greeter");
  const example = guideExample();
  fs.mkdirSync(path.join(greeter, "dist"), { recursive: true });
  fs.writeFileSync(path.join(greeter, "Capsule.toml"), example.toml);
  fs.writeFileSync(path.join(greeter, "dist", "index.js"), toCommonJs(example.ts));
  await start();
}, 60_000);

afterAll(async () => {
  await c?.close();
  d?.child.kill("SIGTERM");
  await d?.exited;
  await cleanup();
});

describe("capsules written for @astrid-os/sdk", () => {
  it("loads the ES-module and the CommonJS capsule; the @tool is described as the reference describes it", async () => {
    const meta = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; tools: unknown[] }>;
    expect(meta.find((m) => m.name === "astro-esm")).toMatchObject({
      state: "ready",
      tools: [{
        name: "astro_counter",
        description: "Adds `by` (default 1) to a counter kept across calls",
        input_schema: { type: "object", properties: { by: { type: "number" } }, mutable: true },
      }],
    });
    expect(meta.find((m) => m.name === "astro-cjs")).toMatchObject({ state: "ready", tools: [] });
  });

  it("runs the guide's example as written: its interceptor answers, its mutable tool is described", async () => {
    expect(await prompt("hi", "hello")).toBe("hello");
    const meta = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; tools: unknown[] }>;
    expect(meta.find((m) => m.name === "greeter")).toMatchObject({
      state: "ready",
      tools: [{ name: "greet", description: "Greets someone", input_schema: { type: "object", properties: {}, mutable: true } }],
    });
  });

  it("answers a prompt from its @interceptor, with the caller's principal", async () => {
    expect(await prompt("esm hello")).toBe("esm: hello default (true)");
  });

  it("ran the @install hook once and saved the instance's fields as __state", async () => {
    expect(await prompt("esm installs")).toBe("esm: installs 1");
    expect(await kvValue("astro-esm", "installs")).toBe("1");
    expect(await kvValue("astro-esm", "__state")).toBe('{"count":0}');
  });

  it("keeps JSON values in kv (the daemon's KV, under the manifest's kv list)", async () => {
    expect(await prompt("esm note buy milk")).toBe('esm: noted {"text":"buy milk"} has=true');
    expect(await kvValue("astro-esm", "note")).toBe('{"text":"buy milk"}');
    expect(await prompt("esm denied")).toBe("esm: kv true HostError capability-denied ASTRID_ERR_CAPABILITY_DENIED");
  });

  it("runs a @command that calls a mutable @tool of the other capsule and awaits its result topic", async () => {
    expect(await command("/astro tool 2", "tool:")).toBe('tool: {"count":2} error=false');
    expect(await command("/astro tool 3", "tool:")).toBe('tool: {"count":5} error=false');
    expect(await kvValue("astro-esm", "__state")).toBe('{"count":5}');
  });

  it("delivers a publish of one capsule to the other's subscription in its @run loop", async () => {
    expect(await command("/astro ping over here", "pong:")).toBe("pong: over here (verified)");
  });

  it("answers a request made with ipc.requestResponse through an @interceptor of the other capsule", async () => {
    expect(await command("/astro ask what time", "ask:")).toBe("ask: WHAT TIME");
  });

  it("reads and writes files through the VFS, bytes as Uint8Array", async () => {
    expect(await prompt("esm fs")).toBe("esm: fs hello world true 11 true true false already-exists");
  });

  it("pages, compares-and-swaps and clears kv keys", async () => {
    expect(await prompt("esm page")).toBe("esm: page page:a,page:b page:c undefined true false 3 ");
  });

  it("refuses HTTP to a loopback address with the network guard's SysError code", async () => {
    expect(await prompt("esm http")).toBe("esm: http true HostError airlock-rejected ASTRID_ERR_NET_ADDRESS_BLOCKED");
  });

  it("throws a SysError coded `unsupported` for a call this daemon does not offer", async () => {
    expect(await prompt("esm unsupported")).toBe("esm: unsupported true ApiError unsupported ASTRID_ERR_NOT_IMPLEMENTED");
  });

  it("keeps the mutable tool's state across a daemon restart; a new version runs @upgrade, not @install", async () => {
    await stop();
    const manifest = path.join(workspace, ".astrid", "capsules", "astro-esm", "Capsule.toml");
    fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace('version = "1.0.0"', 'version = "1.1.0"'));
    await start();
    expect(await kvValue("astro-esm", "upgraded_from")).toBe('"1.0.0 at count 5"');
    expect(await command("/astro tool 1", "tool:")).toBe('tool: {"count":6} error=false');
    expect(await prompt("esm installs")).toBe("esm: installs 1");
    expect(await command("/astro ping again", "pong:")).toBe("pong: again (verified)");
  }, 60_000);
});
