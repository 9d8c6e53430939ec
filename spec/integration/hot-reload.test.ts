/**
 * Hot reload (reference §11 item 2, fixed): the daemon watches the capsule directories; a capsule whose files change
 * restarts with them, a removed one unloads, a new one loads, a broken manifest shows up as a failure, and a save
 * storm is one reload. ReloadCapsules does the same pass when watching is off.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, daemonLog, policyOnlyBundle, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

afterAll(cleanup);

/** A capsule that answers every prompt with `<tag>: <text>`. */
function writeCapsule(root: string, name: string, tag: string, version = "1.0.0"): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), [
    "[package]", `name = "${name}"`, `version = "${version}"`, "", "[[component]]", 'file = "index.js"', "",
    "[capabilities]", 'ipc_subscribe = ["user.v1.prompt"]', 'ipc_publish = ["agent.v1.response"]', "",
  ].join("\n"));
  writeCode(dir, tag);
  return dir;
}

function writeCode(dir: string, tag: string): void {
  fs.writeFileSync(path.join(dir, "index.js"), `module.exports = {
  async setup(api) {
    await api.ipc.subscribe("user.v1.prompt", (e) =>
      api.ipc.publish("agent.v1.response", { type: "agent_response", text: ${JSON.stringify(tag)} + ": " + e.payload.text, is_final: true, session_id: e.payload.session_id }));
  },
};
`);
}

class Session {
  private readonly received: IpcMessage[] = [];
  private n = 0;
  constructor(readonly d: RunningDaemon, readonly c: DaemonClient) {
    c.on("message", (m: IpcMessage) => this.received.push(m));
  }

  /** The sorted replies to one prompt, collected for `ms`. */
  async replies(text: string, ms = 400): Promise<string[]> {
    const session = `p${++this.n}`;
    this.c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
    await sleep(ms);
    return this.received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session).map((m) => String(m.payload.text)).sort();
  }

  /** One prompt whose replies must be exactly `expected`: waits (≤ 5 s) for that many, then a little for extras. */
  async exactly(expected: string[]): Promise<void> {
    const session = `p${++this.n}`;
    const replies = () => this.received.filter((m) => m.topic === "agent.v1.response" && m.payload.session_id === session).map((m) => String(m.payload.text)).sort();
    this.c.publish("user.v1.prompt", { type: "user_input", text: "hi", session_id: session });
    await this.waitFor(async () => replies().length, (n) => n >= expected.length, 5000).catch(() => undefined);
    await sleep(200);
    expect(replies()).toEqual(expected);
  }

  /** Prompts until the replies equal `expected` (a reload takes the debounce plus a worker start). */
  async until(expected: string[], timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: string[] = [];
    while (Date.now() < deadline) {
      last = await this.replies("hi", 250);
      if (JSON.stringify(last) === JSON.stringify(expected)) return;
    }
    throw new Error(`replies stayed ${JSON.stringify(last)}, expected ${JSON.stringify(expected)}`);
  }

  async capsule(name: string): Promise<{ state: string; version: string; last_error?: string } | undefined> {
    const meta = (await this.c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; version: string; last_error?: string }>;
    return meta.find((m) => m.name === name);
  }

  waitFor<T>(what: () => Promise<T>, ok: (v: T) => boolean, timeoutMs = 10_000): Promise<T> {
    return until(what, ok, timeoutMs);
  }

  /** How many times the daemon unloaded `name` because its files changed. */
  reloads(name: string): number {
    return daemonLog(this.d.home).split("\n").filter((l) => l.includes(`"capsule":"${name}"`) && l.includes('"message":"capsule unloaded"') && l.includes("its files changed")).length;
  }
}

async function start(workspace: string, args: string[] = []): Promise<Session> {
  const d = await spawnDaemon({ args: ["--workspace", workspace, ...args] });
  return new Session(d, await connect(d));
}

async function stop(s: Session): Promise<void> {
  await s.c.close();
  s.d.child.kill("SIGTERM");
  expect(await s.d.exited).toBe(0);
}

describe("hot reload", () => {
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  let s: Session;
  let greeter: string;

  beforeAll(async () => {
    greeter = writeCapsule(root, "greeter", "v1");
    writeCapsule(root, "bystander", "bystander");
    s = await start(workspace);
  });
  afterAll(() => stop(s));

  it("restarts a capsule with its new code when a file changes", async () => {
    await s.exactly(["bystander: hi", "v1: hi"]);
    writeCode(greeter, "v2");
    await s.until(["bystander: hi", "v2: hi"]);
    expect(s.reloads("greeter")).toBe(1);
    expect(s.reloads("bystander")).toBe(0);
  });

  it("turns a save storm into one reload", async () => {
    const before = s.reloads("greeter");
    for (let i = 0; i < 20; i++) {
      writeCode(greeter, `storm ${i}`);
      await sleep(10);
    }
    await s.until(["bystander: hi", "storm 19: hi"]);
    await sleep(600);
    // One reload; two if a loaded machine stalled the writer past the 50 ms debounce once.
    expect(s.reloads("greeter") - before).toBeGreaterThanOrEqual(1);
    expect(s.reloads("greeter") - before).toBeLessThanOrEqual(2);
  });

  it("lists a capsule whose manifest broke as failed with the error, and brings it back when fixed", async () => {
    const manifest = path.join(greeter, "Capsule.toml");
    const good = fs.readFileSync(manifest, "utf8");
    fs.writeFileSync(manifest, good.replace('version = "1.0.0"', 'version = "one"'));
    const failed = await s.waitFor(() => s.capsule("greeter"), (c) => c?.state === "failed");
    expect(failed!.last_error).toMatch(/greeter\/Capsule\.toml:3: field package\.version: must be a semantic version/);
    await s.exactly(["bystander: hi"]);
    fs.writeFileSync(manifest, good.replace('version = "1.0.0"', 'version = "1.1.0"'));
    await s.waitFor(() => s.capsule("greeter"), (c) => c?.state === "ready" && c.version === "1.1.0");
    await s.exactly(["bystander: hi", "storm 19: hi"]);
  });

  it("loads a capsule added to the directory and unloads one removed from it", async () => {
    const newcomer = writeCapsule(root, "newcomer", "new");
    await s.until(["bystander: hi", "new: hi", "storm 19: hi"]);
    fs.rmSync(newcomer, { recursive: true });
    await s.waitFor(() => s.capsule("newcomer"), (c) => c === undefined);
    expect((await s.c.request("ListCapsules")).data).not.toContain("newcomer");
    await s.exactly(["bystander: hi", "storm 19: hi"]);
  });

  it("keeps the serving version when new code crashes at load, and says why", async () => {
    fs.writeFileSync(path.join(greeter, "index.js"), 'throw new Error("syntax of the week");\n');
    const kept = await s.waitFor(() => s.capsule("greeter"), (c) => c?.last_error !== undefined);
    expect(kept).toMatchObject({ state: "ready", version: "1.1.0" });
    expect(kept!.last_error).toMatch(/did not load \(version 1\.1\.0 serves on\).*syntax of the week/s);
    await s.exactly(["bystander: hi", "storm 19: hi"]);
    writeCode(greeter, "mended");
    await s.until(["bystander: hi", "mended: hi"]);
  });

  it("reloads a capsule when the operator writes its env file (the onboarding answer)", async () => {
    const envy = path.join(root, "envy");
    fs.mkdirSync(envy);
    fs.writeFileSync(path.join(envy, "Capsule.toml"), [
      "[package]", 'name = "envy"', 'version = "1.0.0"', "[[component]]", 'file = "index.js"',
      "[capabilities]", 'ipc_subscribe = ["user.v1.prompt"]', 'ipc_publish = ["agent.v1.response"]',
      "[env.GREETING]", 'type = "text"', 'default = "hello"', "",
    ].join("\n"));
    fs.writeFileSync(path.join(envy, "index.js"), `module.exports = { async setup(api) {
      await api.ipc.subscribe("user.v1.prompt", (e) => api.ipc.publish("agent.v1.response",
        { type: "agent_response", text: "envy " + api.env.get("GREETING"), is_final: true, session_id: e.payload.session_id }));
    } };\n`);
    await s.until(["bystander: hi", "envy hello", "mended: hi"]);
    const envDir = path.join(s.d.home, "home", "default", ".config", "env");
    fs.mkdirSync(envDir, { recursive: true });
    fs.writeFileSync(path.join(envDir, "envy.env.json"), JSON.stringify({ GREETING: "hola" }), { mode: 0o600 });
    await s.until(["bystander: hi", "envy hola", "mended: hi"]);
    expect(s.reloads("bystander")).toBe(0);
  });

  it("ignores node_modules, dotfiles and editor leftovers", async () => {
    const before = s.reloads("greeter");
    fs.mkdirSync(path.join(greeter, "node_modules", "dep"), { recursive: true });
    fs.writeFileSync(path.join(greeter, "node_modules", "dep", "index.js"), "module.exports = 1;\n");
    fs.writeFileSync(path.join(greeter, ".index.js.swp"), "vim");
    fs.writeFileSync(path.join(greeter, "index.js~"), "backup");
    fs.writeFileSync(path.join(greeter, ".DS_Store"), "finder");
    await sleep(1000);
    expect(s.reloads("greeter")).toBe(before);
  });

  it("picks the capsule directory up again after it was deleted and recreated", async () => {
    fs.rmSync(root, { recursive: true });
    await s.waitFor(async () => (await s.c.request("ListCapsules")).data as string[], (names) => !names.includes("bystander"));
    writeCapsule(root, "phoenix", "phoenix");
    await s.until(["phoenix: hi"], 15_000);
  }, 30_000);
});

describe("hot reload of a workspace whose capsule directory appears later", () => {
  it("starts watching .astrid/capsules once it exists", async () => {
    const workspace = tempHome();
    const s = await start(workspace);
    try {
      writeCapsule(path.join(workspace, ".astrid", "capsules"), "late", "late");
      await s.until(["late: hi"], 15_000);
    } finally {
      await stop(s);
    }
  }, 30_000);
});

describe("a capsule whose directory keeps changing", () => {
  // A confined capsule cannot write files; what keeps changing a capsule directory now is a tool beside it (a watch
  // build, an editor's autosave). The reload burst limit is what stops the restarts.
  it("is not restarted forever: hot reload pauses for it and the daemon serves on", async () => {
    const workspace = tempHome();
    const dir = writeCapsule(path.join(workspace, ".astrid", "capsules"), "scribbler", "scribbler");
    const d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_HOT_RELOAD_BURST: "3" } });
    const s = new Session(d, await connect(d));
    let n = 0;
    const writer = setInterval(() => fs.writeFileSync(path.join(dir, "cache.json"), String(++n)), 500);
    try {
      const log = () => daemonLog(d.home);
      await s.waitFor(async () => log(), (text) => text.includes("hot reload paused"), 15_000);
      const reloads = s.reloads("scribbler");
      await sleep(1500);
      expect(s.reloads("scribbler")).toBe(reloads);
      expect(reloads).toBeLessThanOrEqual(3);
      clearInterval(writer);
      await s.exactly(["scribbler: hi"]);
      expect((await s.c.request("GetStatus")).status).toBe("Status");
    } finally {
      clearInterval(writer);
      await stop(s);
    }
  }, 30_000);
});

describe("ReloadCapsules with --no-watch", () => {
  it("leaves edits alone until asked, then restarts changed capsules and unloads removed ones", async () => {
    const workspace = tempHome();
    const root = path.join(workspace, ".astrid", "capsules");
    const one = writeCapsule(root, "one", "one v1");
    const two = writeCapsule(root, "two", "two");
    const s = await start(workspace, ["--no-watch"]);
    try {
      writeCode(one, "one v2");
      fs.rmSync(two, { recursive: true });
      await sleep(1000);
      await s.exactly(["one v1: hi", "two: hi"]);
      expect((await s.c.request("ReloadCapsules")).status).toBe("Success");
      await s.exactly(["one v2: hi"]);
      expect(await s.capsule("two")).toBeUndefined();
    } finally {
      await stop(s);
    }
    // The audit log has the reload pass, both unloads with their reasons, the new load, and the unload at shutdown.
    const tail = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "500", "--json"], { env: { ...process.env, ASTRID_HOME: s.d.home }, encoding: "utf8" });
    const changes = tail.stdout.split("\n").filter(Boolean).map((l) => (JSON.parse(l) as { action: Record<string, unknown> }).action)
      .filter((a) => a.type === "capsule_lifecycle").map((a) => `${String(a.change)} ${String(a.capsule)}${a.reason ? ` (${String(a.reason)})` : ""}`);
    expect(changes).toEqual(expect.arrayContaining([
      "reload *", "unload one (its files changed)", "unload two (it was removed)", "unload one (shutdown)",
    ]));
    expect(changes.filter((c) => c === "load one").length).toBe(2);
  }, 30_000);
});

describe("hot reload of the socket policy capsule", () => {
  it("applies an edited astrid-capsule-cli to open connections, and keeps the last valid policy while it is broken", async () => {
    const bundle = policyOnlyBundle();
    const manifest = path.join(bundle, "astrid-capsule-cli", "Capsule.toml");
    const good = fs.readFileSync(manifest, "utf8");
    expect(good).toContain('  "astrid.v1.request.*",\n');
    const d = await spawnDaemon({ env: { ASTRID_BUNDLED_CAPSULES_DIR: bundle } });
    const c = await connect(d);
    const errors: IpcMessage[] = [];
    c.on("message", (m: IpcMessage) => {
      if (m.topic === "astrid.v1.error") errors.push(m);
    });
    const logged = (message: string) => daemonLog(d.home).split("\n").filter((l) => l.includes(`"message":"${message}"`)).length;
    try {
      expect((await c.request("GetStatus")).status).toBe("Status");

      // Broken: the socket keeps the policy it had, and says why once.
      fs.writeFileSync(manifest, good.replace("[package]", "[package"));
      await until(() => logged("socket policy capsule unusable; clients keep the last valid policy, and the daemon will not start again until it is fixed"), (n) => n === 1);
      expect((await c.request("GetStatus")).status).toBe("Status");
      const meta = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; last_error?: string }>;
      expect(meta.find((m) => m.name === "astrid-capsule-cli")).toMatchObject({ state: "failed", last_error: expect.stringMatching(/Capsule\.toml/) });

      // Fixed without management requests: the open connection is refused them from now on.
      fs.writeFileSync(manifest, good.replace('  "astrid.v1.request.*",\n', ""));
      await until(() => logged("socket policy reloaded"), (n) => n === 1);
      c.publish("astrid.v1.request.status", { type: "raw_json", method: "GetStatus" });
      await until(() => errors.length, (n) => n === 1, 5000);
      expect(errors[0]!.payload).toMatchObject({ code: "ASTRID_ERR_TOPIC_DENIED" });

      // Restored: requests pass again on the same connection.
      fs.writeFileSync(manifest, good);
      await until(() => logged("socket policy reloaded"), (n) => n === 2);
      expect((await c.request("GetStatus")).status).toBe("Status");
    } finally {
      await c.close();
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
    }
  }, 40_000);
});
