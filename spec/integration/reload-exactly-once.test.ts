/**
 * Blue/green reload under traffic: a client streams prompts (distinct ids) at a capsule while its module is
 * rewritten 20 times, each version answering with its tag — every prompt gets exactly one answer, none lost or
 * duplicated, versions never go backwards, and the last version serves. A save with a syntax error while prompts
 * stream leaves the old version answering (and says where it broke); removing the capsule mid-request answers the
 * request in flight before it goes. A version whose files changed while it loaded (a save caught halfway) never
 * takes the routes.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, daemonLog, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

afterAll(cleanup);

/**
 * Each handler takes a few milliseconds (a timer), so a switch regularly finds events in flight in the old run.
 * `setupMs`: how long setup takes before it subscribes.
 */
function code(tag: string, napMs = 4, setupMs = 0): string {
  return `module.exports = {
  tools: { which: { description: "the version", execute: async () => { await new Promise((r) => setTimeout(r, ${napMs})); return ${JSON.stringify(tag)}; } } },
  async setup(api) {${setupMs > 0 ? `
    await new Promise((r) => setTimeout(r, ${setupMs}));` : ""}
    await api.ipc.subscribe("user.v1.prompt", async (e) => {
      if (e.payload.text.startsWith("slow ")) api.log.info("handling " + e.payload.text);
      await new Promise((r) => setTimeout(r, e.payload.text.startsWith("slow ") ? 1500 : ${napMs}));
      await api.ipc.publish("agent.v1.response", { type: "agent_response", text: ${JSON.stringify(tag)} + "|" + e.payload.text, is_final: true, session_id: e.payload.session_id });
    });
  },
};
`;
}

function writeCapsule(dir: string, tag: string): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"), [
    "[package]", 'name = "relay"', 'version = "1.0.0"', "", "[[component]]", 'file = "index.js"', "",
    "[capabilities]", 'ipc_subscribe = ["user.v1.prompt"]', 'ipc_publish = ["agent.v1.response"]', "",
  ].join("\n"));
  fs.writeFileSync(path.join(dir, "index.js"), code(tag));
}

/** Streams prompts `<n>` every few milliseconds and collects every answer by prompt id. */
class Stream {
  readonly answers = new Map<string, string[]>();
  readonly events: IpcMessage[] = [];
  sent = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly c: DaemonClient) {
    c.on("message", (m: IpcMessage) => {
      if (m.topic.startsWith("astrid.v1.capsule.")) this.events.push(m);
      if (m.topic !== "agent.v1.response" || m.payload.session_id !== "stream") return;
      const [tag, id] = String(m.payload.text).split("|") as [string, string];
      this.answers.set(id, [...(this.answers.get(id) ?? []), tag]);
    });
  }

  start(everyMs = 8): void {
    clearInterval(this.timer);
    this.timer = setInterval(() => this.c.publish("user.v1.prompt", { type: "user_input", text: String(this.sent++), session_id: "stream" }), everyMs);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The tag of the newest answer so far (by prompt id). */
  latestTag(): string | undefined {
    for (let id = this.sent - 1; id >= 0; id--) {
      const tags = this.answers.get(String(id));
      if (tags) return tags[0];
    }
    return undefined;
  }

  /** Waits until every prompt sent has an answer (or `timeoutMs` passed), then a moment for duplicates. */
  async settle(timeoutMs = 15_000): Promise<void> {
    await until(() => this.answers.size, (n) => n >= this.sent, timeoutMs).catch(() => undefined);
    await sleep(300);
  }
}

let d: RunningDaemon;
let c: DaemonClient;
let s: Stream;
let dir: string;

beforeAll(async () => {
  const workspace = tempHome();
  dir = path.join(workspace, ".astrid", "capsules", "relay");
  writeCapsule(dir, "v0");
  // Over 70 reloads within a minute: the runaway-writer pause of hot reload must not stop this file's edits.
  d = await spawnDaemon({ args: ["--workspace", workspace], env: { ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "8000", ASTRID_HOT_RELOAD_BURST: "1000" } });
  c = await connect(d);
  s = new Stream(c);
}, 30_000);

afterAll(async () => {
  s.stop();
  await c.close();
  d.child.kill("SIGTERM");
  await d.exited;
});

describe("blue/green reload", () => {
  it("answers every prompt and tool call exactly once while the module is rewritten 20 times, and the last version serves", async () => {
    s.start();
    await until(() => s.latestTag(), (tag) => tag === "v0", 10_000);
    // Tool calls (CallTool, one after another) run beside the prompts: each gets its version's answer, never an error.
    const calls: string[] = [];
    let calling = true;
    const caller = (async () => {
      while (calling) {
        const r = (await c.request("CallTool", { capsule: "relay", tool: "which", arguments: {} })).data as { content: unknown; is_error: boolean };
        calls.push(r.is_error ? `error: ${String(r.content)}` : String(r.content));
      }
    })();
    for (let v = 1; v <= 20; v++) {
      fs.writeFileSync(path.join(dir, "index.js"), code(`v${v}`));
      await until(() => s.latestTag(), (tag) => tag === `v${v}`, 15_000);
    }
    const sentBeforeEnd = s.sent;
    await until(() => s.sent, (n) => n >= sentBeforeEnd + 20, 10_000);
    s.stop();
    calling = false;
    await caller;
    await s.settle();
    expect(calls.filter((r) => !/^v\d+$/.test(r))).toEqual([]);
    const callTags = calls.map((r) => Number(r.slice(1)));
    expect(callTags.every((tag, i) => i === 0 || tag >= callTags[i - 1]!)).toBe(true);
    expect(callTags[callTags.length - 1]).toBe(20);
    expect(new Set(callTags).size).toBeGreaterThan(10);

    const lost: number[] = [];
    const doubled: string[] = [];
    const tags: number[] = [];
    for (let id = 0; id < s.sent; id++) {
      const got = s.answers.get(String(id)) ?? [];
      if (got.length === 0) lost.push(id);
      if (got.length > 1) doubled.push(`${id}: ${got.join(",")}`);
      if (got.length > 0) tags.push(Number(got[0]!.slice(1)));
    }
    expect({ lost, doubled }).toEqual({ lost: [], doubled: [] });
    expect([...s.answers.keys()].every((id) => Number(id) < s.sent)).toBe(true);
    // Routing switches at one point per reload: a later prompt is never answered by an older version.
    expect(tags.every((tag, i) => i === 0 || tag >= tags[i - 1]!)).toBe(true);
    expect(new Set(tags)).toEqual(new Set(Array.from({ length: 21 }, (_, v) => v)));
    expect(tags.slice(-20).every((tag) => tag === 20)).toBe(true);
    const reloaded = s.events.filter((e) => e.topic === "astrid.v1.capsule.reloaded" && e.payload.name === "relay");
    expect(reloaded.length).toBeGreaterThanOrEqual(20);
  }, 120_000);

  it("keeps the old version answering when a save has a syntax error, and says where", async () => {
    const from = s.sent;
    const events = s.events.length;
    s.start();
    const file = path.join(dir, "index.js");
    fs.writeFileSync(file, `${code("broken")}\nthis is not javascript (\n`);
    const failed = await until(() => s.events.slice(events).find((e) => e.topic === "astrid.v1.capsule.reload_failed"), (e) => e !== undefined, 15_000);
    expect(failed!.payload).toMatchObject({ name: "relay", line: code("broken").split("\n").length + 1 });
    expect(String(failed!.payload.message)).toMatch(/syntax error/);
    const afterFailure = s.sent;
    await until(() => s.sent, (n) => n >= afterFailure + 20, 10_000);
    s.stop();
    await s.settle();
    for (let id = from; id < s.sent; id++) expect(s.answers.get(String(id))).toEqual(["v20"]);
    const meta = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string; last_error?: string }>;
    expect(meta.find((m) => m.name === "relay")).toMatchObject({ state: "ready", last_error: expect.stringMatching(/did not load .*syntax error/s) });
    // Mended: the next version serves.
    fs.writeFileSync(file, code("mended"));
    s.start();
    await until(() => s.latestTag(), (tag) => tag === "mended", 15_000);
    s.stop();
    await s.settle();
  }, 60_000);

  it("turns 50 saves in one second into a few reloads; the last content serves, nothing lost or doubled", async () => {
    const from = s.sent;
    const reloadsBefore = s.events.filter((e) => e.topic === "astrid.v1.capsule.reloaded").length;
    s.start();
    const started = Date.now();
    for (let i = 0; i < 50; i++) {
      fs.writeFileSync(path.join(dir, "index.js"), code(`storm${i}`));
      await sleep(Math.max(0, started + (i + 1) * 20 - Date.now()));
    }
    await until(() => s.latestTag(), (tag) => tag === "storm49", 15_000);
    s.stop();
    await s.settle();
    for (let id = from; id < s.sent; id++) expect(s.answers.get(String(id))?.length).toBe(1);
    const reloads = s.events.filter((e) => e.topic === "astrid.v1.capsule.reloaded").length - reloadsBefore;
    expect(reloads).toBeGreaterThanOrEqual(1);
    expect(reloads).toBeLessThanOrEqual(10);
  }, 60_000);

  it("answers the prompt in flight when the capsule is removed mid-request, then stops answering", async () => {
    c.publish("user.v1.prompt", { type: "user_input", text: "slow 1", session_id: "slow" });
    const replies: string[] = [];
    c.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response" && m.payload.session_id === "slow") replies.push(String(m.payload.text));
    });
    await until(() => daemonLog(d.home), (log) => log.includes('"message":"handling slow 1"'), 15_000);
    const r = spawnSync(process.execPath, [CLI_BIN, "capsule", "remove", "relay", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 30_000 });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toMatchObject({ name: "relay", drained: true });
    await until(() => replies, (got) => got.length > 0, 5000);
    expect(replies).toEqual(["storm49|slow 1"]);
    expect(fs.existsSync(dir)).toBe(false);
    const meta = (await c.request("GetCapsuleMetadata")).data as Array<{ name: string }>;
    expect(meta.map((m) => m.name)).not.toContain("relay");
  }, 60_000);

  it("never switches to a version whose files changed while it loaded (a save caught halfway), and loses nothing", async () => {
    // Serving "base" (the capsule was removed above; run alone, "v0" serves): a probe session says when it answers.
    writeCapsule(dir, "base");
    const probes: string[] = [];
    c.on("message", (m: IpcMessage) => {
      if (m.topic === "agent.v1.response" && m.payload.session_id === "probe") probes.push(String(m.payload.text));
    });
    await until(() => {
      c.publish("user.v1.prompt", { type: "user_input", text: "probe", session_id: "probe" });
      return probes;
    }, (got) => got.includes("base|probe"), 15_000);
    const from = s.sent;
    const events = s.events.length;
    s.start();
    await until(() => s.latestTag(), (tag) => tag === "base", 10_000);
    // The files halfway through a save: a module that loads (slowly) and subscribes to nothing, as a file truncated
    // and not yet rewritten does. The save completes while that version loads: it must not take the routes.
    const file = path.join(dir, "index.js");
    fs.writeFileSync(file, 'module.exports = { async setup(api) { api.log.info("halfway save loading"); await new Promise((r) => setTimeout(r, 1500)); } };\n');
    await until(() => daemonLog(d.home), (log) => log.includes('"message":"halfway save loading"'), 15_000);
    fs.writeFileSync(file, code("whole", 4, 300));
    await until(() => s.latestTag(), (tag) => tag === "whole", 15_000);
    const sentBeforeEnd = s.sent;
    await until(() => s.sent, (n) => n >= sentBeforeEnd + 20, 10_000);
    s.stop();
    await s.settle();
    const lost: number[] = [];
    const tags: string[] = [];
    for (let id = from; id < s.sent; id++) {
      const got = s.answers.get(String(id)) ?? [];
      if (got.length !== 1) lost.push(id);
      else tags.push(got[0]!);
    }
    expect(lost).toEqual([]);
    expect([...new Set(tags)]).toEqual(["base", "whole"]);
    // Dropped for newer files, not failed: no reload_failed for the halfway version.
    expect(s.events.slice(events).filter((e) => e.topic === "astrid.v1.capsule.reload_failed")).toEqual([]);
  }, 60_000);
});
