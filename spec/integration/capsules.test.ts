/**
 * Issue #4 (first slice): capsules with code run in their own worker threads; every misbehaviour is contained while
 * the kernel and the other capsules keep working. One daemon loads every fixture at once.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, daemonLog, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURES = path.join(ROOT, "spec", "fixtures", "capsules");
let d: RunningDaemon;
let c: DaemonClient;
const received: IpcMessage[] = [];

beforeAll(async () => {
  const workspace = tempHome();
  fs.cpSync(FIXTURES, path.join(workspace, ".astrid", "capsules"), { recursive: true });
  const home = tempHome();
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "principal-capsules"), path.join(home, "home", "default", ".local", "capsules"), { recursive: true });
  d = await spawnDaemon({
    home,
    args: ["--workspace", workspace],
    env: {
      ASTRID_CAPSULE_RESTART_BACKOFF_MS: "200",
      // Long enough that memory-hog always reaches its heap limit (~150 ms unloaded) before the hang watchdog, even on
      // a runner ten times slower; infinite-loop still trips it.
      ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "4000",
      ASTRID_CAPSULE_MAX_HEAP_MB: "32",
      // Posts straight on its worker's port, which a confined capsule cannot reach: the kernel's own check is tested.
      ASTRID_TEST_UNCONFINED_CAPSULES: "forged-publish",
    },
  });
  c = await connect(d);
  // Attached before the next tick: the boot-time backlog (capsules_loaded, onboarding) arrives with the handshake.
  c.on("message", (m: IpcMessage) => received.push(m));
}, 30_000);
afterAll(async () => {
  await c?.close();
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
  await cleanup();
});

interface Meta { name: string; state: string; restarts: number; last_error?: string; dropped_events: number; tools?: unknown[] }
async function metadata(): Promise<Record<string, Meta>> {
  const reply = await c.request("GetCapsuleMetadata");
  return Object.fromEntries((reply.data as Meta[]).map((m) => [m.name, m]));
}

const readLog = () => daemonLog(d.home);

let prompts = 0;
/**
 * Sends a prompt in a session of its own and returns the sorted replies of that session only, so a late reply to
 * an earlier prompt on a loaded machine can never be counted here.
 */
async function prompt(text: string, expected = 3): Promise<string[]> {
  const session = `s${++prompts}`;
  const replies = () => received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session);
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  await until(async () => replies().length, (n) => n >= expected, 5000);
  await sleep(200); // anything beyond the expected replies would show up here
  return replies().map((m) => String(m.payload.text)).sort();
}

describe("issue #4: capsule workers", () => {
  it("loads valid capsules, skips manifests whose component file is outside the dir or missing", async () => {
    const meta = await metadata();
    expect(meta.echo).toMatchObject({ state: "ready", restarts: 0 });
    expect(meta["file-outside"]).toBeUndefined();
    expect(meta["missing-file"]).toBeUndefined();
    const log = readLog();
    expect(log).toMatch(/file-outside\/Capsule\.toml:\d+: field component\.0\.file: \\"\.\.\/echo\/echo\.mjs\\" points outside the capsule directory/);
    expect(log).toMatch(/missing-file\/Capsule\.toml:\d+: field component\.0\.file: \\"nope\.js\\" does not exist/);
    expect(await c.request("GetCommands")).toMatchObject({ data: expect.arrayContaining([{ name: "echo", description: "Repeat what you say", provider_capsule: "echo" }]) });
  });

  it("skips each invalid manifest with an error naming file, line and field; warns about unknown keys", async () => {
    const meta = await metadata();
    for (const name of ["bad-semver", "bad-topic", "bad-uplink-imports", "bad-toml", "bad-astrid-version"]) expect(meta[name]).toBeUndefined();
    expect(meta["unknown-key"]).toMatchObject({ state: "ready" });
    const log = readLog();
    const skipped = (dir: string, rest: string) => new RegExp(`"error":"[^"]*${dir}/Capsule\\.toml:${rest}[^"]*","file":"[^"]*${dir}/Capsule\\.toml","level":"error","message":"invalid capsule manifest skipped"`);
    expect(log).toMatch(skipped("bad-missing-name", "2: field package\\.name"));
    expect(log).toMatch(skipped("bad-semver", "4: field package\\.version: must be a semantic version"));
    expect(log).toMatch(skipped("bad-topic", "7: field capabilities\\.ipc_publish\\.0: topic has an empty segment"));
    expect(log).toMatch(skipped("bad-uplink-imports", "7: field capabilities\\.uplink: a capsule with capabilities\\.uplink = true may not declare \\[imports\\]"));
    expect(log).toMatch(skipped("bad-toml", "4:\\d+: TOML syntax error"));
    expect(log).toMatch(skipped("bad-astrid-version", "5: field package\\.astrid-version: requires astrid >=99; this runtime is 0\\.1\\.0"));
    expect(log).toMatch(/unknown-key\/Capsule\.toml: unknown key publish \(ignored\)/);
  });

  it("lets the principal's copy of a name win over the workspace's, and the first copy within a root", async () => {
    const twin = (await metadata()).twin!;
    expect(twin).toMatchObject({ version: "2.0.0", state: "ready" });
    expect((twin as Meta & { source_dir: string }).source_dir).toBe(path.join(d.home, "home", "default", ".local", "capsules", "twin"));
    const shadowed = [...readLog().matchAll(/"dir":"([^"]+)","level":"warn","message":"capsule shadowed by an earlier copy","name":"twin"/g)].map((m) => path.basename(m[1]!));
    expect(shadowed).toEqual(["twin", "twin-copy"]);
  });

  it("reports an import cycle without failing either capsule", async () => {
    const meta = await metadata();
    expect(meta["cycle-a"]).toMatchObject({ state: "ready" });
    expect(meta["cycle-b"]).toMatchObject({ state: "ready" });
    const log = readLog();
    expect(log).toMatch(/"capsules":\["cycle-a","cycle-b"\].*"message":"capsule import cycle; loading in discovery order"/);
  });

  it("a capsule whose subscribe exceeds its ACL fails to load with the denial as its reason", async () => {
    const meta = await until(metadata, (m) => m["subscribe-outside-acl"]?.state === "failed");
    expect(meta["subscribe-outside-acl"]!.last_error).toMatch(/ASTRID_ERR_CAPABILITY_DENIED|may not subscribe to user\.v1\.\*/);
  });

  it("answers a prompt through the echo capsule while others throw, try to exit, hang and run out of memory", async () => {
    const replies = await prompt("hello");
    expect(replies).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: HELLO", "echo: hello"]);
    const failed = await until(metadata, (m) =>
      m["memory-hog"]!.restarts + (m["memory-hog"]!.state === "failed" ? 1 : 0) >= 1 &&
      m["infinite-loop"]!.restarts + (m["infinite-loop"]!.state === "failed" ? 1 : 0) >= 1);
    expect(failed["throw-in-handler"]).toMatchObject({ state: "ready", restarts: 0 });
    // Confined, process-exit has no `process` to exit with: its handler throws, and it stays up.
    expect(failed["process-exit"]).toMatchObject({ state: "ready", restarts: 0 });
    // Each comes back after its backoff and answers (or misbehaves) again; echo never stopped.
    const back = await until(metadata, (m) => ["memory-hog", "infinite-loop"].every((n) => m[n]!.state === "ready" && m[n]!.restarts >= 1));
    expect(back.echo).toMatchObject({ state: "ready", restarts: 0 });
    expect(await prompt("again")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: AGAIN", "echo: again"]);
  }, 40_000);

  it("records why each capsule failed (memory limit, hang) or what it could not do (exit)", async () => {
    const entries = readLog();
    expect(entries).toMatch(/"capsule":"process-exit".*handler for user\.v1\.prompt threw: (ReferenceError: process is not defined|TypeError: Cannot read properties of undefined \(reading 'exit'\))/);
    expect(entries).toMatch(/ran out of memory/);
    expect(entries).toMatch(/an event handler ran longer than 4000 ms/);
    expect(entries).toMatch(/handler for user\.v1\.prompt threw: Error: handler exploded/);
  });

  it("keeps a capsule that crashes at load listed as failed, restarting with backoff up to 5 times", async () => {
    const meta = await until(metadata, (m) => m["crash-at-load"]!.restarts >= 5 && m["crash-at-load"]!.state === "failed", 25_000);
    expect(meta["crash-at-load"]!.last_error).toMatch(/failed to load: boom at load \(gave up after 5 restarts\)/);
    await sleep(500);
    expect((await metadata())["crash-at-load"]!.restarts).toBe(5);
    expect((await c.request("ListCapsules")).data).toEqual(expect.arrayContaining(["crash-at-load", "echo"]));
    // Every failed attempt is an audit entry, and so is each restart of a capsule that came back (e.g. process-exit).
    const tail = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "5000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    const lifecycle = tail.stdout.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { action: { type: string; change?: string; capsule?: string } }).action)
      .filter((a) => a.type === "capsule_lifecycle");
    expect(lifecycle.filter((a) => a.capsule === "crash-at-load" && a.change === "fail").length).toBeGreaterThanOrEqual(6);
    expect(lifecycle.some((a) => a.change === "restart")).toBe(true);
  }, 30_000);

  it("a flooded capsule's queue is bounded: overflow is dropped and counted, the bus and other capsules go on", async () => {
    // Wait for the prompt's own replies, so a late "echo: flood" on a loaded machine cannot land in the next prompt.
    expect(await prompt("flood")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: FLOOD", "echo: flood"]);
    const meta = await until(metadata, (m) => m["slow-handler"]!.dropped_events > 0);
    expect(meta["slow-handler"]).toMatchObject({ state: "ready" });
    // While the slow capsule is still working through its 256 queued events, everything else answers promptly.
    const started = Date.now();
    expect(await prompt("still here")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: STILL HERE", "echo: still here"]);
    expect((await c.request("GetStatus")).status).toBe("Status");
    expect(Date.now() - started).toBeLessThan(3000); // the slow capsule needs 256 × 20 ms ≈ 5 s for its queue
    expect((await metadata())["slow-handler"]!.dropped_events).toBeGreaterThan(2000);
  });

  it("astrid capsule list/info show name, version, state, restarts, capabilities and commands", async () => {
    const run = (args: string[]) => spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
    const list = run(["capsule", "list"]);
    expect(list.status).toBe(0);
    expect(list.stdout).toMatch(/^NAME +VERSION +STATE +RESTARTS\n/);
    expect(list.stdout).toMatch(/\becho +1\.0\.0 +ready +0\n/);
    expect(list.stdout).toMatch(/crash-at-load +0\.1\.0 +failed +\d+ +\(failed to load: boom at load/);
    const info = run(["capsule", "info", "slow-handler"]);
    expect(info.stdout).toMatch(/Subscribes: +flood\.v1\.tick\n[\s\S]*Interceptors: +user\.v1\.prompt\n +Commands: +flood/);
    expect(JSON.parse(run(["capsule", "info", "echo", "--json"]).stdout)).toMatchObject({ name: "echo", state: "ready", capabilities: { ipc_publish: ["agent.v1.response"] } });
    expect(run(["capsule", "info", "nope"])).toMatchObject({ status: 1, stderr: expect.stringMatching(/\[ASTRID_ERR_NOT_FOUND\]/) });
  });

  it("ReloadCapsules drops failed capsules (cancelling their pending restarts) and loads them afresh", async () => {
    expect((await metadata())["crash-at-load"]).toMatchObject({ state: "failed", restarts: 5 });
    expect(await c.request("ReloadCapsules")).toMatchObject({ status: "Success" });
    const fresh = await metadata();
    // Loaded again from scratch: a new record whose restart budget starts over (failed again, or already in its
    // first restart after the 200 ms backoff when the machine is slow to answer the next request).
    expect(["failed", "loading"]).toContain(fresh["crash-at-load"]!.state);
    expect(fresh["crash-at-load"]!.restarts).toBeLessThan(5);
    expect(fresh.echo).toMatchObject({ state: "ready", restarts: 0 });
  });

  it("runs interceptors of one event as a chain by priority: payload replaced, final and deny stop it", async () => {
    // guard (5) passes, upper (10) rewrites, reply (20) sees the rewritten payload.
    expect(await prompt("chain me")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: CHAIN ME", "echo: chain me"]);
    // upper returns final(): reply never runs; subscribers (echo, acl) are not part of the chain.
    expect(await prompt("stop", 2)).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "echo: stop"]);
    // guard throws: denied before anything else in the chain runs.
    expect(await prompt("forbidden", 2)).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "echo: forbidden"]);
  });

  it("asks the operator for [env] values nobody provided, once, and gives the capsule the rest", async () => {
    const onboarding = received.filter((m) => m.topic === "astrid.v1.onboarding.required");
    expect(onboarding).toHaveLength(1);
    expect(onboarding[0]).toMatchObject({
      source_id: "00000000-0000-0000-0000-000000000000",
      payload: {
        type: "onboarding_required",
        capsule_id: "needs-env",
        fields: [
          { key: "API_KEY", prompt: "Your API key", field_type: "Secret" },
          { key: "MODEL", prompt: "Please enter value for MODEL", field_type: { Enum: ["small", "large"] } },
          { key: "TIER", prompt: "Please enter value for TIER", field_type: "Text", default: "only" },
        ],
      },
    });
    const replies = await prompt("env?", 4);
    expect(replies).toContain("env: API_KEY= MODEL= TIER= REGION=eu STORED=from-file");
  });

  it("runs a capsule's tools for another capsule and publishes the result, errors included", async () => {
    expect((await metadata()).calculator).toMatchObject({
      state: "ready",
      tools: [
        { name: "add", description: "Adds two numbers", input_schema: { type: "object" } },
        { name: "divide", description: "No description" },
      ],
    });
    expect(await prompt("add 2 3", 4)).toContain("tool: 5");
    expect(await prompt("divide 1 0", 4)).toContain('tool: error "division by zero"');
  });

  it("gives the capsule its own KV scope", async () => {
    expect(await c.request("KvGet", { scope: "default:capsule:echo", key: "last" })).toMatchObject({ data: { value: "divide 1 0" } });
    expect(await c.request("KvGet", { scope: "default:capsule:slow-handler", key: "last" })).toMatchObject({ status: "Success", data: null });
  });

  it("checks a publish a capsule forges past its API object: dropped, audited as denied, logged", async () => {
    expect(await prompt("forge")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: FORGE", "echo: forge"]);
    expect(readLog()).toMatch(/"capsule":"forged-publish".*"code":"ASTRID_ERR_CAPABILITY_DENIED".*"message":"capsule publish refused and dropped"/);
    // Audit entries reach the database within the storage client's linger: poll for it.
    const tail = () => spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "2000", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" }).stdout;
    expect(await until(tail, (out) => /"change":"denied","capsule":"forged-publish"/.test(out), 5000)).toMatch(/"change":"denied","capsule":"forged-publish".*may not publish on agent\.v1\.response/);
  });

  it("limits a capsule's publish throughput to 10 MiB per second with a coded error; the kernel serves on", async () => {
    c.publish("user.v1.prompt", { type: "user_input", text: "throughput", session_id: "burst" });
    const reply = await until(
      async () => received.find((m) => m.payload.session_id === "burst" && String(m.payload.text).startsWith("throughput:")),
      (m) => m !== undefined,
      10_000,
    );
    const [, accepted, limited, other] = /(\d+) accepted, (\d+) limited, (\d+) other/.exec(String(reply!.payload.text))!.map(Number);
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(limited).toBeGreaterThanOrEqual(1);
    expect(other).toBe(0);
    expect(await prompt("after the burst")).toEqual(["acl: ASTRID_ERR_CAPABILITY_DENIED", "chain: AFTER THE BURST", "echo: after the burst"]);
  });
});
