/**
 * WebAssembly components built for the older single world `astrid:capsule@0.1.0` (wit/legacy/capsule.wit): the
 * daemon sees which host ABI a component imports and serves this one through an adapter over the same host imports
 * as the per-domain packages. The fixtures are hand-written WAT, wrapped with jco in set-up (build-v0.mjs).
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { capsulesByName, CLI_BIN, connect, daemonLog, ROOT, sleep, spawnDaemon, stopDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const SOURCES = path.join(ROOT, "spec", "fixtures", "wasm");
let d: RunningDaemon;
let c: DaemonClient;
const received: IpcMessage[] = [];
let built: string;

const hashOf = (file: string): string => (JSON.parse(fs.readFileSync(path.join(built, "hashes-v0.json"), "utf8")) as Record<string, string>)[file]!;

/** Writes a capsule directory: its manifest, its binary (as `file`) and meta.json with the binary's hash. */
function capsule(root: string, name: string, binary: string, file: string, toml: string): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "${file}"\n\n${toml}`);
  fs.copyFileSync(path.join(built, binary), path.join(dir, file));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: hashOf(binary) }));
}

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, [path.join(SOURCES, "build-v0.mjs"), built], { stdio: "pipe", timeout: 120_000 });
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  capsule(root, "v0-echo", "v0-echo.wasm", "echo.wasm",
    '[capabilities]\nipc_publish = ["agent.v1.response"]\nipc_subscribe = ["astrid.v1.request.v0note"]\nkv = ["*"]\nnet = ["127.0.0.1"]\n\n' +
    '[[interceptor]]\nevent = "user.v1.prompt"\naction = "echo"\n');
  // No ipc_subscribe: its interceptor is subscribed for it.
  capsule(root, "v0-loop", "v0-runloop.wasm", "loop.wasm",
    '[capabilities]\nipc_publish = ["agent.v1.response"]\nkv = ["*"]\n\n[[interceptor]]\nevent = "astrid.v1.request.v0ask"\naction = "ask"\n');
  capsule(root, "v0-install-only", "v0-install-only.wasm", "only.wasm", "");
  d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_CAPSULE_RESTART_BACKOFF_MS: "200" } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(metadata, (m) => ["v0-echo", "v0-loop"].every((n) => m[n]?.state === "ready"), 90_000);
}, 240_000);
afterAll(() => stopDaemon(d, c));

const metadata = () => capsulesByName(c);
async function kv(name: string, key: string): Promise<string | null> {
  const reply = await c.request("KvGet", { scope: `default:capsule:${name}`, key });
  return ((reply.data as { value?: string | null } | undefined)?.value ?? null);
}

let sessions = 0;
/** Publishes `payload` (with a session of its own) on `topic`; answers the texts that came back for that session. */
async function ask(topic: string, text: string): Promise<string[]> {
  const session = `v${++sessions}`;
  const replies = () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session);
  c.publish(topic, { type: topic === "user.v1.prompt" ? "user_input" : "raw_json", text, session_id: session });
  await until(async () => replies().length, (n) => n >= 1, 15_000);
  await sleep(100);
  return replies().map((m) => String(m.payload.text));
}

describe("WebAssembly capsules of the world astrid:capsule@0.1.0", () => {
  it("loads a 0.1.0 component, says so in its metadata, and answers a prompt through astrid-hook-trigger", async () => {
    const meta = (await metadata())["v0-echo"]!;
    expect(meta).toMatchObject({ kind: "wasm", state: "ready", wasm: { abi: "astrid:capsule@0.1.0", exports: ["astrid-hook-trigger", "astrid-install"] } });
    expect(meta.wasm!.imports).toEqual(expect.arrayContaining(["astrid:capsule/ipc", "astrid:capsule/kv", "astrid:capsule/http", "astrid:capsule/sys"]));
    expect(await ask("user.v1.prompt", "hello from the old world")).toEqual(["hello from the old world"]);
  });

  it("ran astrid-install on first load: its kv-set and log went through the host", async () => {
    expect(await kv("v0-echo", "installed")).toBe("yes");
    expect(daemonLog(d.home)).toMatch(/"capsule":"v0-echo"[^\n]*v0 install ran|v0 install ran[^\n]*"capsule":"v0-echo"/);
  });

  it("sets and gets KV in its own scope", async () => {
    expect(await ask("user.v1.prompt", "!k kept")).toEqual(["!k kept"]);
    expect(JSON.parse((await kv("v0-echo", "greeting"))!)).toMatchObject({ text: "!k kept" });
  });

  it("subscribes by handle, polls what arrived, and gets an empty envelope from a recv that times out", async () => {
    // Twice: the kernel then holds two subscriptions matching the note, which still arrives once per handle.
    expect(await ask("user.v1.prompt", "!s")).toEqual(["!s"]);
    expect(await ask("user.v1.prompt", "!s")).toEqual(["!s"]);
    const note = `v${++sessions}`;
    c.publish("astrid.v1.request.v0note", { type: "raw_json", text: "a polled note", session_id: note });
    await sleep(300);
    c.publish("user.v1.prompt", { type: "user_input", text: "!p", session_id: `v${++sessions}` });
    const polled = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === note), (m) => m !== undefined, 15_000);
    expect(polled!.payload.text).toBe("a polled note");
    await sleep(200);
    expect(received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === note)).toHaveLength(1);
    // Drained: the next poll is empty.
    c.publish("user.v1.prompt", { type: "user_input", text: "!p", session_id: `v${++sessions}` });
    await until(async () => received.filter((m) => m.payload.text === "poll: empty").length, (n) => n >= 1, 15_000);
    // A recv that waits in vain answers an empty envelope, as the reference does (not a timeout error).
    c.publish("user.v1.prompt", { type: "user_input", text: "!r", session_id: `v${++sessions}` });
    await until(async () => received.filter((m) => m.payload.text === "recv: empty" || m.payload.text === "recv: other").length, (n) => n >= 1, 15_000);
    expect(received.filter((m) => m.payload.text === "recv: other")).toEqual([]);
  });

  it("gets the 0.1.0 error strings for what its manifest and the network guard refuse, and the denial is audited", async () => {
    expect(await ask("user.v1.prompt", "!d")).toEqual(["!d"]);
    expect(await kv("v0-echo", "denied")).toMatch(/^ASTRID_ERR_CAPABILITY_DENIED: .*secret\.v1\.topic/);
    expect(await kv("v0-echo", "http")).toMatch(/^ASTRID_ERR_NET_ADDRESS_BLOCKED: /);
    const audit = execFileSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "2000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    expect(audit).toContain("secret.v1.topic");
  });

  it("runs a run-loop capsule that drains its interceptor through get-interceptor-handles + ipc-recv", async () => {
    const meta = (await metadata())["v0-loop"]!;
    expect(meta.wasm).toMatchObject({ abi: "astrid:capsule@0.1.0", exports: expect.arrayContaining(["run", "astrid-hook-trigger", "astrid-install", "astrid-upgrade"]) });
    expect(await kv("v0-loop", "binding")).toBe("ask");
    expect(await kv("v0-loop", "unsubscribe")).toMatch(/interceptor handle the host owns/);
    expect(await ask("astrid.v1.request.v0ask", "drained by the loop")).toEqual(["drained by the loop"]);
    expect(await ask("astrid.v1.request.v0ask", "and again")).toEqual(["and again"]);
    // Its 100 ms recv timed out many times by now: each answered an empty envelope, never an error.
    expect(received.some((m) => m.payload.text === "recv failed")).toBe(false);
  });

  it("refuses a 0.1.0 component that exports neither astrid-hook-trigger nor run, naming the world", async () => {
    const meta = await until(metadata, (m) => m["v0-install-only"]?.state === "failed", 20_000);
    expect(meta["v0-install-only"]!.last_error).toMatch(/exports neither astrid-hook-trigger nor run.*world astrid:capsule\/capsule@0\.1\.0/);
  });

  it("astrid capsule info shows the host ABI", () => {
    const text = execFileSync(process.execPath, [CLI_BIN, "capsule", "info", "v0-loop"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    expect(text).toMatch(/Host ABI: +astrid:capsule@0\.1\.0/);
  });
});
