/**
 * WebAssembly component capsules: a `.wasm` component verified against meta.json's BLAKE3 `wasm_hash`, transpiled
 * with jco once per hash, run in its own worker with the astrid host packages over the same kernel paths as
 * JavaScript capsules. The fixtures are built here from committed sources (hand-written WAT wrapped with jco, and a
 * JavaScript guest built with ComponentizeJS) into a temp directory.
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

/** BLAKE3 (hex) of a built fixture, as the build recorded it (@noble/hashes is ES modules only). */
const hashOf = (file: string): string => (JSON.parse(fs.readFileSync(path.join(built, "hashes.json"), "utf8")) as Record<string, string>)[path.basename(file)]!;

/** Writes a capsule directory: its manifest, its binary (unless `binary` is null) and meta.json. */
function capsule(root: string, name: string, toml: string, binary: string | null, meta: Record<string, unknown> | null): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), `[package]\nname = "${name}"\nversion = "1.0.0"\n\n${toml}`);
  if (binary) fs.copyFileSync(path.join(built, binary), path.join(dir, path.basename(toml.match(/file = "([^"]+)"/)![1]!)));
  if (meta) fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify(meta));
}

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, ["--import", path.join(SOURCES, "register.mjs"), path.join(SOURCES, "build.mjs"), built], { stdio: "pipe", timeout: 240_000 });
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  const minimal = hashOf(path.join(built, "minimal.core.wasm"));
  const echo = '[[component]]\nfile = "minimal.wasm"\n\n[capabilities]\nipc_publish = ["agent.v1.response"]\n\n[[interceptor]]\nevent = "user.v1.prompt"\naction = "echo"\n';
  // The minimal capsule ships the core module: the daemon componentizes it before transpiling.
  capsule(root, "wasm-echo", echo, "minimal.core.wasm", { wasm_hash: minimal });
  capsule(root, "wasm-counter",
    '[[component]]\nfile = "counter.wasm"\n\n[capabilities]\nkv = ["*"]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response"]\n' +
    'fs_read = ["home://"]\nfs_write = ["home://"]\nnet = ["127.0.0.1"]\n\n[env.GREETING]\ntype = "text"\ndefault = "hello"\n',
    "js-guest.wasm", { wasm_hash: hashOf(path.join(built, "js-guest.wasm")) });
  capsule(root, "wasm-wrong-hash", echo.replace("user.v1.prompt", "wasm.v1.never"), "minimal.wasm", { wasm_hash: minimal });
  capsule(root, "wasm-no-hash", echo.replace("user.v1.prompt", "wasm.v1.never"), "minimal.wasm", { name: "wasm-no-hash" });
  capsule(root, "wasm-foreign", echo.replace("minimal.wasm", "foreign.wasm").replace("user.v1.prompt", "wasm.v1.never"), "foreign-import.wasm", { wasm_hash: hashOf(path.join(built, "foreign-import.wasm")) });
  capsule(root, "wasm-no-exports", '[[component]]\nfile = "greet.wasm"\n', "no-guest-exports.wasm", { wasm_hash: hashOf(path.join(built, "no-guest-exports.wasm")) });
  // A chain (two interceptors of one event): a JavaScript capsule first rewrites the payload, then the WASM one is
  // called through the control plane with the payload it got.
  capsule(root, "wasm-chain-echo", echo.replace('event = "user.v1.prompt"', 'event = "astrid.v1.request.wasmchain"'), "minimal.core.wasm", { wasm_hash: minimal });
  fs.mkdirSync(path.join(root, "js-chain-upper"));
  fs.writeFileSync(path.join(root, "js-chain-upper", "Capsule.toml"),
    '[package]\nname = "js-chain-upper"\nversion = "1.0.0"\n\n[[component]]\nfile = "index.js"\n\n[[interceptor]]\nevent = "astrid.v1.request.wasmchain"\naction = "upper"\npriority = 10\n');
  fs.writeFileSync(path.join(root, "js-chain-upper", "index.js"),
    "module.exports = { interceptors: { upper: (event) => ({ ...event.payload, text: String(event.payload.text).toUpperCase() }) } };\n");
  // Eight more capsules of one binary, loading at once: they share one cache entry, which none may pull from under
  // another while it loads.
  for (let i = 0; i < 8; i++) capsule(root, `wasm-twin-${i}`, echo.replace("user.v1.prompt", `wasm.v1.twin${i}`), "minimal.core.wasm", { wasm_hash: minimal });
  // No binary beside the manifest: the daemon takes $ASTRID_HOME/bin/<wasm_hash>.wasm.
  const home = tempHome();
  const componentHash = hashOf(path.join(built, "minimal.wasm"));
  fs.mkdirSync(path.join(home, "bin"), { recursive: true });
  fs.copyFileSync(path.join(built, "minimal.wasm"), path.join(home, "bin", `${componentHash}.wasm`));
  capsule(root, "wasm-from-bin", echo.replace("user.v1.prompt", "wasm.v1.never"), null, { wasm_hash: componentHash });
  d = await spawnDaemon({
    home,
    args: ["--workspace", workspace],
    env: {
      ASTRID_CAPSULE_RESTART_BACKOFF_MS: "200",
      ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "3000",
      // Transpiling the 12 MB ComponentizeJS guest on a loaded 2-core runner.
      ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000",
    },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(metadata, (m) => ["wasm-echo", "wasm-counter", "wasm-from-bin", "wasm-chain-echo", "js-chain-upper"].every((n) => m[n]?.state === "ready"), 90_000);
}, 400_000);
afterAll(() => stopDaemon(d, c));

const metadata = () => capsulesByName(c);

let prompts = 0;
/** Sends a prompt in a session of its own and returns the texts that came back on agent.v1.response for it. */
async function prompt(text: string, expected = 1): Promise<string[]> {
  const session = `w${++prompts}`;
  const replies = () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session);
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  await until(async () => replies().length, (n) => n >= expected, 15_000);
  await sleep(100);
  return replies().map((m) => String(m.payload.text)).sort();
}

describe("WebAssembly component capsules", () => {
  it("answers a prompt through astrid-hook-trigger of a componentized core module", async () => {
    expect(await prompt("hello wasm")).toEqual(["hello wasm"]);
    const meta = await metadata();
    expect(meta["wasm-echo"]).toMatchObject({ kind: "wasm", state: "ready", wasm: { hash: hashOf(path.join(built, "minimal.core.wasm")), source: "capsule", exports: ["astrid-hook-trigger"], max_memory_bytes: 64 * 1024 * 1024 } });
    // Transpiled once, kept under the home by content hash.
    expect(fs.existsSync(path.join(d.home, "var", "cache", "wasm", meta["wasm-echo"]!.wasm!.hash, "capsule.mjs"))).toBe(true);
  });

  it("takes part in an interceptor chain: called with the payload the previous link returned", async () => {
    const session = `w${++prompts}`;
    c.publish("astrid.v1.request.wasmchain", { type: "raw_json", text: "chained", session_id: session });
    const reply = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, 15_000);
    expect(reply!.payload.text).toBe("CHAINED");
  });

  it("runs a ComponentizeJS run-loop capsule: subscribe + recv, kv, publish, its install hook and [env]", async () => {
    expect(await prompt("count", 2)).toEqual(["count", "count 1 installed=yes by=default greeting=hello"]);
    expect(await prompt("count again", 2)).toEqual(["count 2 installed=yes by=default greeting=hello", "count again"]);
    const kv = await c.request("KvGet", { scope: "default:capsule:wasm-counter", key: "count" });
    expect(kv).toMatchObject({ data: { value: "2" } });
    expect((await metadata())["wasm-counter"]).toMatchObject({ kind: "wasm", wasm: { exports: expect.arrayContaining(["run", "astrid-install"]) } });
  });

  it("reaches files through the VFS and is refused by its manifest and the network guard, with WIT error cases", async () => {
    expect(await prompt("note kept in home", 2)).toEqual(["note kept in home", "note: kept in home outside=capability-denied"]);
    expect(await prompt("fetch", 2)).toEqual(["fetch", "fetch: loopback=airlock-rejected undeclared=capability-denied publish=capability-denied"]);
    // Denials are audited like a JavaScript capsule's.
    const audit = execFileSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "2000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    expect(audit).toContain("secret.v1.topic");
  });

  it("loads several capsules of one binary at once from one cache entry, none failing", async () => {
    const m = await until(metadata, (all) => [0, 1, 2, 3, 4, 5, 6, 7].every((i) => all[`wasm-twin-${i}`]?.state === "ready"), 60_000);
    for (let i = 0; i < 8; i++) expect(m[`wasm-twin-${i}`]).toMatchObject({ state: "ready", restarts: 0 });
  });

  it("loads the binary from $ASTRID_HOME/bin/<wasm_hash>.wasm when it is not beside the manifest", async () => {
    expect((await metadata())["wasm-from-bin"]).toMatchObject({ state: "ready", wasm: { source: "bin" } });
  });

  it("refuses a wrong hash, a missing hash, and components of another world, saying why", async () => {
    // Each fails the same way until its files change: it is not retried (no restart, no backoff), and says so.
    const names = ["wasm-wrong-hash", "wasm-no-hash", "wasm-foreign", "wasm-no-exports"];
    const meta = await until(metadata, (m) => names.every((n) => m[n]?.state === "failed"), 20_000);
    await new Promise((resolve) => setTimeout(resolve, 1500)); // longer than the first restart's backoff in tests
    const later = await metadata();
    for (const n of names) {
      expect(later[n]).toMatchObject({ state: "failed", restarts: 0, last_error: expect.stringContaining("not retried: it loads again when its files change") });
    }
    expect(meta["wasm-wrong-hash"]).toMatchObject({ state: "failed", last_error: expect.stringMatching(/Refusing to load minimal\.wasm: its BLAKE3 hash [0-9a-f]{64} does not match meta\.json's wasm_hash/) });
    expect(meta["wasm-no-hash"]).toMatchObject({ state: "failed", last_error: expect.stringContaining("Refusing to load unverified binary") });
    expect(meta["wasm-foreign"]).toMatchObject({ state: "failed", last_error: expect.stringContaining("imports astrid-fixture:worlds/clock, which this host does not provide") });
    expect(meta["wasm-no-exports"]).toMatchObject({ state: "failed", last_error: expect.stringContaining("exports neither astrid-hook-trigger nor run") });
  });

  it("keeps linear memory under the owner's max_memory_bytes: memory.grow past it returns -1 in the guest", async () => {
    const session = `w${++prompts}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "!g", session_id: session });
    await until(async () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.text === "grow: refused").length, (n) => n >= 1, 15_000);
    expect(received.some((m) => m.payload.text === "grow: allowed")).toBe(false);
  });

  it("fails only the invocation on a trap; the capsule keeps answering", async () => {
    const before = (await metadata())["wasm-echo"]!.restarts;
    c.publish("user.v1.prompt", { type: "user_input", text: "!t", session_id: `w${++prompts}` });
    await until(async () => daemonLog(d.home), (log) => /interceptor echo failed \(the invocation is dropped\): .*unreachable/.test(log), 15_000);
    expect(await prompt("after the trap")).toEqual(["after the trap"]);
    expect((await metadata())["wasm-echo"]!.restarts).toBe(before);
    expect(daemonLog(d.home)).toContain("a new instance replaced the one that trapped");
  }, 60_000);

  it("terminates an infinite loop at the handler deadline and restarts the capsule", async () => {
    const before = (await metadata())["wasm-echo"]!.restarts;
    c.publish("user.v1.prompt", { type: "user_input", text: "!s", session_id: `w${++prompts}` });
    await until(metadata, (m) => m["wasm-echo"]!.restarts > before && m["wasm-echo"]!.state === "ready", 30_000);
    expect((await metadata())["wasm-echo"]!.last_error).toBeUndefined();
    expect(daemonLog(d.home)).toMatch(/"capsule":"wasm-echo"[^\n]*"reason":"an event handler ran longer than 3000 ms \(hung\?\)"/);
    expect(await prompt("back again")).toEqual(["back again"]);
  }, 60_000);

  it("astrid capsule info shows the kind, hash and memory", () => {
    const out = execFileSync(process.execPath, [CLI_BIN, "capsule", "info", "wasm-echo", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    expect(JSON.parse(out)).toMatchObject({ name: "wasm-echo", kind: "wasm", wasm: { hash: expect.stringMatching(/^[0-9a-f]{64}$/), max_memory_bytes: 67_108_864 } });
    const text = execFileSync(process.execPath, [CLI_BIN, "capsule", "info", "wasm-echo"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    expect(text).toMatch(/Kind: +wasm \(BLAKE3 [0-9a-f]{64}; memory ≤ 64 MiB; exports astrid-hook-trigger\)/);
  });
});
