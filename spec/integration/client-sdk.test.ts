/**
 * Issue #11: the client SDK (`astrid-daemon/client`) against the real daemon: the documented example run as written,
 * requests with correlation and deadlines, prompts as turn iterators, frontend users, approvals, join/leave,
 * reconnection across a daemon restart, close/destroy, and the bad inputs.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { AstridClient, connect, MAX_QUEUED_TURN_EVENTS, Turn, type TurnEvent } from "../../client";
import { isAstridError } from "../../protocol/errors";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const STREAMER = path.join(ROOT, "spec", "fixtures", "web", "streamer");
const ARTIFACTS = path.join(ROOT, "spec", "artifacts");
let d: RunningDaemon;
let workspace: string;
const ENV = { ASTRID_APPROVAL_TIMEOUT_MS: "3000" };

function astrid(args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 20_000 });
}

async function events(turn: AsyncIterable<TurnEvent>): Promise<TurnEvent[]> {
  const seen: TurnEvent[] = [];
  for await (const e of turn) seen.push(e);
  return seen;
}

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (err) {
    return isAstridError(err) ? err.code : `not coded: ${String(err)}`;
  }
  return "no error";
}

beforeAll(async () => {
  workspace = tempHome();
  fs.cpSync(STREAMER, path.join(workspace, ".astrid", "capsules", "streamer"), { recursive: true });
  d = await spawnDaemon({ args: ["--workspace", workspace], env: ENV });
  expect(astrid(["frontend", "add", "sdk-bot", "--platform", "web", "--unlinked", "restricted"]).status).toBe(0);
  expect(astrid(["frontend", "add", "sdk-strict", "--platform", "web"]).status).toBe(0);
}, 30_000);
afterAll(async () => {
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

describe("issue #11: the client SDK", () => {
  it("the example in docs/client.md runs as written and prints the agent's reply", async () => {
    const doc = fs.readFileSync(path.join(ROOT, "docs", "client.md"), "utf8");
    const block = /<!-- example:client -->\s*```js\n([\s\S]*?)```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    expect(block!.split("\n").length).toBeLessThanOrEqual(26);
    // Inside the package, so `require("astrid-daemon/client")` resolves to this package's export, as for a user.
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    const file = path.join(ARTIFACTS, `client-example-${process.pid}.js`);
    fs.writeFileSync(file, block!);
    try {
      const r = spawnSync(process.execPath, [file, "hello from the docs"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 20_000 });
      expect(r.stderr).toMatch(/^daemon \S+, up \d+ s$/m);
      expect(r.stdout).toContain("echo: hello from the docs");
      expect(r.status).toBe(0);
      // And it reports a coded error when there is no daemon.
      const none = spawnSync(process.execPath, [file, "x"], { env: { ...process.env, ASTRID_HOME: tempHome() }, encoding: "utf8", timeout: 20_000 });
      expect(none.status).toBe(1);
      expect(none.stderr).toContain("[ASTRID_ERR_DAEMON_NOT_RUNNING]");
    } finally {
      fs.rmSync(file, { force: true });
    }
  });

  it("connect refuses bad options, a missing daemon and a wrong token with coded errors", async () => {
    expect(await codeOf(connect({ home: d.home, bogus: 1 } as never))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(connect({ home: d.home, token: "a".repeat(64), credential: "sdk-bot" }))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(connect({ home: "relative/path" }))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(connect({ home: d.home, reconnect: { initialDelayMs: -1 } }))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(connect({ home: tempHome() }))).toBe("ASTRID_ERR_DAEMON_NOT_RUNNING");
    expect(await codeOf(connect({ home: d.home, token: "0".repeat(64) }))).toBe("ASTRID_ERR_AUTH_FAILED");
    expect(await codeOf(connect({ home: d.home, credential: "nobody" }))).toBe("ASTRID_ERR_AUTH_FAILED");
  });

  it("requests are matched to their replies, error replies are coded, and a silent daemon hits the deadline", async () => {
    const c = await connect({ home: d.home });
    await Promise.all(Array.from({ length: 20 }, (_, i) => c.request("KvSet", { scope: "test:sdk", key: `k${i}`, value: `v${i}` })));
    const values = await Promise.all(Array.from({ length: 20 }, (_, i) => c.request("KvGet", { scope: "test:sdk", key: `k${i}` })));
    expect(values.map((r) => (r.data as { value: string }).value)).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`));
    expect(await codeOf(c.request("KvSet", { scope: "system:x", key: "k", value: "v" }))).toBe("ASTRID_ERR_KV_SCOPE_READONLY");
    expect(await codeOf(c.request("NoSuchMethod" as never))).toBe("ASTRID_ERR_UNKNOWN_METHOD");
    d.child.kill("SIGSTOP");
    try {
      const t = Date.now();
      expect(await codeOf(c.request("GetStatus", undefined, { timeoutMs: 300 }))).toBe("ASTRID_ERR_TIMEOUT");
      expect(Date.now() - t).toBeLessThan(2000);
    } finally {
      d.child.kill("SIGCONT");
    }
    expect((await c.request("GetStatus")).status).toBe("Status");
    await c.close();
  });

  it("a prompt's turn yields the deltas in order, then the final response, and ends", async () => {
    const c = await connect({ home: d.home });
    const seen = await events(c.prompt("sdk-stream-1", "stream: now"));
    expect(seen.map((e) => e.type)).toEqual(["delta", "delta", "response"]);
    expect(seen.map((e) => (e as { text: string }).text)).toEqual(["part one ", "part two ", "part one part two now"]);
    const tools = await events(c.prompt("sdk-tool-1", "tool: weather"));
    expect(tools.map((e) => e.type)).toEqual(["tool_call", "tool_result", "response"]);
    expect(tools[0]).toMatchObject({ tool_name: "lookup", call_id: "c1", arguments: { q: "weather" } });
    expect(tools[1]).toMatchObject({ call_id: "c1", content: "found", is_error: false });
    // Two turns in two sessions at once: each gets its own reply.
    const [a, b] = await Promise.all([c.prompt("sdk-par-a", "stream: A").text(), c.prompt("sdk-par-b", "B").text()]);
    expect([a, b]).toEqual(["part one part two A", "echo: B"]);
    await c.close();
  });

  it("a frontend speaks for platform users; a refused user ends the turn with the daemon's code", async () => {
    const bot = await connect({ home: d.home, credential: "sdk-bot", clientName: "sdk test" });
    expect(await bot.prompt("sdk-u1", "hi", { user: { platform: "web", platform_user_id: "ann" } }).text()).toBe("echo: hi");
    expect(await codeOf(bot.prompt("sdk-u2", "hi", { user: { platform: "discord", platform_user_id: "ann" } }).text())).toBe("ASTRID_ERR_PLATFORM_DENIED");
    const strict = await connect({ home: d.home, credential: "sdk-strict" });
    expect(await codeOf(strict.prompt("sdk-u3", "hi", { user: { platform: "web", platform_user_id: "bob" } }).text())).toBe("ASTRID_ERR_IDENTITY_UNLINKED");
    // After a refusal the next prompt is matched to its own reply, not to the old error.
    expect(await bot.prompt("sdk-u4", "again", { user: { platform: "web", platform_user_id: "ann" } }).text()).toBe("echo: again");
    await bot.close();
    await strict.close();
  });

  it("an approval request arrives in the turn and answerApproval decides it", async () => {
    const c = await connect({ home: d.home });
    const turn = c.prompt("sdk-appr-1", "approve: the thing");
    const seen: TurnEvent[] = [];
    for await (const e of turn) {
      seen.push(e);
      if (e.type === "approval_required") {
        expect(e).toMatchObject({ action: "deploy", resource: "the thing" });
        expect(e.options).toContain("deny");
        c.answerApproval(e.request_id, "deny");
      }
    }
    expect(seen.map((e) => e.type)).toEqual(["approval_required", "response"]);
    expect((seen[1] as { text: string }).text).toBe("decision: deny");
    expect(await codeOf(() => c.answerApproval("x", "yes" as never))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    await c.close();
  });

  it("join brings another session's events, leave stops them, and on(topic) sees them", async () => {
    const a = await connect({ home: d.home });
    const b = await connect({ home: d.home });
    const heard: IpcMessage[] = [];
    const off = b.on("agent.v1.*", (m) => heard.push(m));
    expect(await a.prompt("sdk-shared", "one").text()).toBe("echo: one");
    expect(await b.join("sdk-shared")).toEqual({ session_id: "sdk-shared", owner: "default" });
    expect(await a.prompt("sdk-shared", "two").text()).toBe("echo: two");
    await until(() => heard.length, (n) => n >= 1, 3000);
    expect(heard.map((m) => m.payload.text)).toEqual(["echo: two"]);
    b.leave("sdk-shared");
    await sleep(100);
    expect(await a.prompt("sdk-shared", "three").text()).toBe("echo: three");
    await sleep(300);
    expect(heard).toHaveLength(1);
    off();
    const bot = await connect({ home: d.home, credential: "sdk-bot" });
    expect(await codeOf(bot.join("sdk-shared", { owner: "default" }))).toBe("ASTRID_ERR_SESSION_DENIED");
    await Promise.all([a.close(), b.close(), bot.close()]);
  });

  it("the daemon restarts: the turn in flight ends coded, the client reconnects (new session token) and re-joins", async () => {
    const c = await connect({ home: d.home, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
    const states: string[] = [];
    c.onConnection((e) => states.push(e.state));
    await c.join("sdk-rejoin");
    const inFlight = c.prompt("sdk-rejoin-2", "approve: never answered", { timeoutMs: 20_000 });
    const inFlightCode = codeOf(inFlight.text());
    await sleep(200);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(await inFlightCode).toBe("ASTRID_ERR_CONNECTION_CLOSED");
    expect(await codeOf(c.request("GetStatus"))).toBe("ASTRID_ERR_CONNECTION_CLOSED");
    expect(c.connected).toBe(false);
    // A prompt while disconnected throws at once and leaves no timer behind (nothing waits out its 120 s timeout).
    const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
    const before = timers();
    expect(() => c.prompt("sdk-rejoin-3", "while down")).toThrow(/not connected to the daemon right now/);
    expect(timers()).toBe(before);
    d = await spawnDaemon({ home: d.home, args: ["--workspace", workspace], env: ENV });
    await until(() => states.includes("reconnected"), Boolean, 15_000);
    expect(states).toEqual(["disconnected", "reconnected"]);
    // Re-joined: another connection's prompt in that session reaches this client.
    const heard: string[] = [];
    c.on("agent.v1.response", (m) => heard.push(String(m.payload.text)));
    const other = await connect({ home: d.home });
    expect(await other.prompt("sdk-rejoin", "after restart").text()).toBe("echo: after restart");
    await until(() => heard, (h) => h.includes("echo: after restart"), 5000);
    await other.close();
    await c.close();
    expect(states.at(-1)).toBe("closed");
  }, 40_000);

  it("close() and destroy() end open turns with a coded error; close is idempotent", async () => {
    const c = await connect({ home: d.home });
    const open = codeOf(c.prompt("sdk-close-1", "approve: pending", { timeoutMs: 20_000 }).text());
    await sleep(100);
    await c.close();
    await c.close();
    expect(await open).toBe("ASTRID_ERR_CONNECTION_CLOSED");
    expect(await codeOf(() => c.prompt("sdk-close-2", "x"))).toBe("ASTRID_ERR_CONNECTION_CLOSED");
    const c2 = await connect({ home: d.home });
    const open2 = codeOf(c2.prompt("sdk-close-3", "approve: pending", { timeoutMs: 20_000 }).text());
    c2.destroy();
    expect(await open2).toBe("ASTRID_ERR_CONNECTION_CLOSED");
  });

  it("bad inputs: an 11 MiB prompt is refused before sending and the connection stays; a turn's deadline; bad ids", async () => {
    const c = await connect({ home: d.home });
    expect(await codeOf(() => c.prompt("sdk-big", "x".repeat(11 * 1024 * 1024)))).toBe("ASTRID_ERR_MESSAGE_TOO_LARGE");
    expect(await c.prompt("sdk-big", "still here").text()).toBe("echo: still here");
    // A 9 MiB prompt fits the daemon's frame limit and is answered.
    expect(await c.prompt("sdk-nine", "y".repeat(9 * 1024 * 1024)).text()).toBe(`received ${9 * 1024 * 1024} characters`);
    const t = Date.now();
    expect(await codeOf(c.prompt("sdk-slow", "approve: slow", { timeoutMs: 300 }).text())).toBe("ASTRID_ERR_TIMEOUT");
    expect(Date.now() - t).toBeLessThan(2000);
    expect(await codeOf(() => c.prompt("", "x"))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(() => c.prompt("a\nb", "x"))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(() => c.prompt("ok", "x", { user: { platform: "WEB!", platform_user_id: "u" } }))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    expect(await codeOf(() => c.on("", () => undefined))).toBe("ASTRID_ERR_INVALID_ARGUMENT");
    await c.close();
  }, 30_000);

  it("a turn whose reader falls 4096 events behind ends with ASTRID_ERR_SLOW_CONSUMER", async () => {
    const turn = new Turn("s", "t", "", 10_000, () => undefined);
    const msg = { topic: "agent.v1.stream.delta", payload: { type: "agent_response" }, signature: null, source_id: "", timestamp: "", seq: 0 } as IpcMessage;
    for (let i = 0; i <= MAX_QUEUED_TURN_EVENTS; i++) turn.push({ type: "delta", text: String(i), message: msg });
    let read = 0;
    const code = await codeOf((async () => {
      for await (const _ of turn) read++;
    })());
    expect(code).toBe("ASTRID_ERR_SLOW_CONSUMER");
    expect(read).toBe(MAX_QUEUED_TURN_EVENTS);
  });

  it("the SDK's AstridClient is what `astrid-daemon/client` exports", () => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const pkg = require(path.join(ROOT, "package.json")) as { exports: Record<string, { default: string }> };
    expect(pkg.exports["./client"]!.default).toBe("./dist/client/index.js");
    expect(pkg.exports["."]).toBeDefined();
    expect(typeof AstridClient.connect).toBe("function");
  });
});
