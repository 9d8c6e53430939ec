/**
 * The older world `astrid:capsule@0.1.0` beyond the basics: `trigger-hook` (a synchronous fan-out to the other
 * capsules' interceptors, bounded in depth), the caps on a run-loop capsule's interceptors and on one poll's payload,
 * and `astrid-upgrade` on a version change. Fixtures: hand-written WAT (v0-hooks.wat, v0-echo.wat, v0-runloop.wat)
 * wrapped with jco in set-up (build-v0.mjs).
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
let root: string;

const hashOf = (file: string): string => (JSON.parse(fs.readFileSync(path.join(built, "hashes-v0.json"), "utf8")) as Record<string, string>)[file]!;

/** Writes a capsule directory: its manifest, its binary and meta.json with the binary's hash. */
function capsule(name: string, binary: string, toml: string, version = "1.0.0"): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), `[package]\nname = "${name}"\nversion = "${version}"\n\n[[component]]\nfile = "c.wasm"\n\n${toml}`);
  fs.copyFileSync(path.join(built, binary), path.join(dir, "c.wasm"));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: hashOf(binary) }));
}
const interceptor = (event: string, action: string) => `[[interceptor]]\nevent = "${event}"\naction = "${action}"\n\n`;
const PUBLISHER = '[capabilities]\nipc_publish = ["agent.v1.response"]\nkv = ["*"]\n\n';
const RELAYS = ["hk-r1", "hk-r2", "hk-r3", "hk-r4"];

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, [path.join(SOURCES, "build-v0.mjs"), built], { stdio: "pipe", timeout: 120_000 });
  const workspace = tempHome();
  root = path.join(workspace, ".astrid", "capsules");
  // hk-a triggers; it intercepts the hooks it triggers too (its own interceptors must never be called for them).
  capsule("hk-a", "v0-hooks.wasm", PUBLISHER +
    interceptor("astrid.v1.request.hkgo", "t:test.v1.hook") + interceptor("astrid.v1.request.hkbad", "b") +
    interceptor("astrid.v1.request.hkdeep", "t:relay.v1.go") + interceptor("test.v1.hook", "a:from-a") + interceptor("relay.v1.*", "a:from-a"));
  capsule("hk-b", "v0-hooks.wasm", PUBLISHER + interceptor("test.v1.hook", "a:from-b") + interceptor("test.v1.other", "a:not-this-hook"));
  capsule("hk-c", "v0-hooks.wasm", PUBLISHER + interceptor("test.v1.hook", "d"));
  // Each relay, called for relay.v1.go or relay.v1.next, triggers relay.v1.next in turn: a chain as deep as the
  // capsules allow.
  for (const name of RELAYS) capsule(name, "v0-hooks.wasm", PUBLISHER + interceptor("relay.v1.*", "t:relay.v1.next"));
  capsule("hk-up", "v0-hooks.wasm", PUBLISHER);
  // Triggers a hook nobody intercepts: the cheapest fan-out, to reach the per-second limit.
  capsule("hk-flood", "v0-hooks.wasm", PUBLISHER + interceptor("astrid.v1.request.hkflood", "t:flood.v1.none"));
  capsule("hk-echo", "v0-echo.wasm", '[capabilities]\nipc_publish = ["agent.v1.response"]\nipc_subscribe = ["astrid.v1.request.v0note"]\n\n' + interceptor("user.v1.prompt", "echo"));
  capsule("hk-many", "v0-runloop.wasm", PUBLISHER + Array.from({ length: 65 }, (_, i) => interceptor(`astrid.v1.request.many${i}`, `a${i}`)).join(""));
  capsule("hk-64", "v0-runloop.wasm", PUBLISHER + Array.from({ length: 64 }, (_, i) => interceptor(`astrid.v1.request.sixtyfour${i}`, `a${i}`)).join(""));
  d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_CAPSULE_RESTART_BACKOFF_MS: "200" } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  const ready = ["hk-a", "hk-b", "hk-c", ...RELAYS, "hk-up", "hk-echo", "hk-64", "hk-flood"];
  await until(metadata, (m) => ready.every((n) => m[n]?.state === "ready"), 120_000);
}, 300_000);
afterAll(() => stopDaemon(d, c));

const metadata = () => capsulesByName(c);
async function kv(name: string, key: string): Promise<string | null> {
  const reply = await c.request("KvGet", { scope: `default:capsule:${name}`, key });
  return ((reply.data as { value?: string | null } | undefined)?.value ?? null);
}
/** What the fixture published for its trigger-hook calls: `{by, text}` (the answer) or `{by, error}`. */
type Reported = { by: string; text?: unknown; error?: string };
const reports = (): Reported[] =>
  received.filter((m) => m.topic === "agent.v1.response" && typeof m.payload.by === "string")
    .map((m) => ({ by: String(m.payload.by), text: m.payload.text, error: m.payload.error as string | undefined }));
function audit(): Array<Record<string, unknown>> {
  const text = execFileSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "5000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
  return text.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}
const actionOf = (entry: Record<string, unknown>) => (entry.action ?? {}) as Record<string, unknown>;

describe("trigger-hook of the world astrid:capsule@0.1.0", () => {
  it("fans out to the other capsules' matching interceptors: a denial is left out, the caller's own is not called", async () => {
    const before = reports().length;
    c.publish("astrid.v1.request.hkgo", { type: "raw_json", text: "go" });
    const got = await until(async () => reports().slice(before).filter((r) => r.by === "t:test.v1.hook"), (r) => r.length >= 1, 20_000);
    expect(got).toEqual([expect.objectContaining({ by: "t:test.v1.hook", text: ["from-b"] })]);
    // Audited: the hook, its depth, how many interceptors were called (hk-b and hk-c) and answered.
    const entry = audit().map(actionOf).find((a) => a.change === "trigger_hook" && a.capsule === "hk-a" && a.hook === "test.v1.hook");
    expect(entry).toMatchObject({ depth: 1, interceptors: 2, answers: 1 });
  });

  it("refuses a request that is not JSON with a coded error", async () => {
    const before = reports().length;
    c.publish("astrid.v1.request.hkbad", { type: "raw_json", text: "bad" });
    const got = await until(async () => reports().slice(before).filter((r) => r.by === "b"), (r) => r.length >= 1, 20_000);
    expect(got[0]!.error).toMatch(/^ASTRID_ERR_REQUEST_INVALID: trigger-hook: the request is not JSON/);
    expect(got[0]!.text).toBeUndefined();
  });

  it("bounds a chain of interceptors that trigger hooks: never calls a capsule already waiting, refuses beyond depth 4", async () => {
    const before = reports().length;
    c.publish("astrid.v1.request.hkdeep", { type: "raw_json", text: "deep" });
    // hk-a's own report comes last: every nested fan-out finished before it. The relays answer no data.
    const top = await until(async () => reports().slice(before).filter((r) => r.by === "t:relay.v1.go"), (r) => r.length >= 1, 60_000);
    expect(top).toEqual([expect.objectContaining({ text: [] })]);
    const all = reports().slice(before).filter((r) => r.by === "t:relay.v1.next");
    // Depth 2 (four relays), 3, 4 and the refused depth 5: every relay triggered, and some were refused.
    expect(all.length).toBeGreaterThanOrEqual(4);
    const refused = all.filter((r) => r.error !== undefined);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.error).toMatch(/^ASTRID_ERR_HOOK_DEPTH: hk-r\d: trigger-hook of relay\.v1\.next from inside 4 nested hook calls \(at most 4 deep\)/);
    // hk-a waits on its fan-out throughout: no relay's answers include what hk-a's interceptor for it would say.
    expect(all.some((r) => JSON.stringify(r.text ?? "").includes("from-a"))).toBe(false);
    // Nothing waited for a deadline, and no capsule was restarted as hung.
    expect(daemonLog(d.home)).not.toMatch(/ran past its deadline/);
    const meta = await metadata();
    for (const name of ["hk-a", ...RELAYS]) expect(meta[name]!.state).toBe("ready");
    expect(audit().map(actionOf).some((a) => a.change === "denied" && String(a.detail).includes("hook nesting deeper than 4"))).toBe(true);
  }, 90_000);

  it("refuses more than 100 fan-outs of one capsule per second", async () => {
    const before = reports().length;
    const flood = () => reports().slice(before).filter((r) => r.by === "t:flood.v1.none");
    for (let i = 0; i < 200; i++) c.publish("astrid.v1.request.hkflood", { type: "raw_json", text: `flood ${i}` });
    await until(async () => flood().length, (n) => n >= 200, 30_000);
    const refused = flood().filter((r) => r.error !== undefined);
    const answered = flood().filter((r) => r.error === undefined);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(r.error).toMatch(/^ASTRID_ERR_RATE_LIMITED: hk-flood: trigger-hook may run at most 100 times per second/);
    for (const r of answered) expect(r.text).toEqual([]);
    expect(answered.length).toBeGreaterThanOrEqual(100);
  }, 60_000);
});

describe("the reference's caps on a run-loop capsule", () => {
  it("refuses a run-loop capsule with more than 64 interceptors at load, naming the count (64 load)", async () => {
    const meta = await until(metadata, (m) => m["hk-many"]?.state === "failed", 30_000);
    expect(meta["hk-many"]!.last_error).toMatch(/declares 65 interceptors, more than the 64 a run-loop capsule \(it exports run\) may have/);
    expect(meta["hk-64"]!.state).toBe("ready");
  });

  it("hands out at most 10 MiB of payload per poll; the rest waits for the next one", async () => {
    const session = "hk-note";
    const notes = () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session);
    c.publish("user.v1.prompt", { type: "user_input", text: "!s", session_id: "hk-s" });
    await until(async () => received.some((m) => m.payload.session_id === "hk-s"), (x) => x, 15_000);
    const big = "x".repeat(4 * 1024 * 1024);
    for (let i = 0; i < 3; i++) c.publish("astrid.v1.request.v0note", { type: "raw_json", text: big, n: i, session_id: session });
    await sleep(1500);
    c.publish("user.v1.prompt", { type: "user_input", text: "!p", session_id: "hk-p1" });
    await until(async () => notes().length, (n) => n >= 2, 20_000);
    await sleep(1000);
    expect(notes().map((m) => m.payload.n)).toEqual([0, 1]);
    c.publish("user.v1.prompt", { type: "user_input", text: "!p", session_id: "hk-p2" });
    await until(async () => notes().length, (n) => n >= 3, 20_000);
    expect(notes().map((m) => m.payload.n)).toEqual([0, 1, 2]);
  }, 90_000);
});

describe("astrid-upgrade of the world astrid:capsule@0.1.0", () => {
  it("runs once when the version changes, not on a reload of the same version", async () => {
    expect(await kv("hk-up", "installed")).toBe("yes");
    expect(await kv("hk-up", "upgraded")).toBeNull();
    const manifest = path.join(root, "hk-up", "Capsule.toml");
    fs.writeFileSync(manifest, fs.readFileSync(manifest, "utf8").replace('version = "1.0.0"', 'version = "1.1.0"'));
    await until(metadata, (m) => m["hk-up"]?.version === "1.1.0" && m["hk-up"]?.state === "ready", 30_000);
    expect(await kv("hk-up", "upgraded")).toBe("yes");
    const ran = () => (daemonLog(d.home).match(/v0 upgrade ran/g) ?? []).length;
    expect(ran()).toBe(1);
    // The same version again (another file change reloads it): no upgrade.
    fs.appendFileSync(manifest, "\n# touched\n");
    await sleep(3000);
    expect((await metadata())["hk-up"]!.state).toBe("ready");
    expect(ran()).toBe(1);
  }, 60_000);
});
