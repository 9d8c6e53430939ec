/** Issue #2: the management API (reference §5.1–5.3) with our fixes: replies to the asker only, request_id, errors. */
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, RawClient, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
let workspace: string;
beforeAll(async () => {
  workspace = tempHome();
  d = await spawnDaemon({ args: ["--workspace", workspace] });
});
afterAll(async () => {
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

/** Collects every message a client receives. */
function collect(c: DaemonClient): IpcMessage[] {
  const seen: IpcMessage[] = [];
  c.on("message", (m: IpcMessage) => seen.push(m));
  return seen;
}

async function authedRaw(): Promise<RawClient> {
  const c = await RawClient.authenticated(d);
  await sleep(20);
  while (c.buffered > 0) await c.next();
  return c;
}

describe("issue #2: management requests", () => {
  it("GetStatus reports pid, uptime, version, mode, clients and loaded capsules; ListClients who is connected", async () => {
    const c = await connect(d);
    expect(await c.request("ListClients")).toMatchObject({
      status: "Success",
      data: [{
        connection: expect.any(Number), principal: "default", via: "session_token", connected_secs: expect.any(Number),
        users: 0, sessions: 0, bytes_in: expect.any(Number), bytes_out: expect.any(Number),
      }],
    });
    const reply = await c.request("GetStatus");
    expect(reply).toEqual({
      request_id: expect.any(String),
      status: "Status",
      data: {
        pid: d.child.pid, uptime_secs: expect.any(Number), version: expect.any(String), ephemeral: false, connected_clients: 1,
        loaded_capsules: ["astrid-capsule-cli"], audit_chain_intact: true, sessions: 0, mcp_servers: { total: 0, running: 0, failed: 0 },
        workspace: expect.any(String), // issue #12
        // The list of clients is ListClients' (GetStatus stays the same size however many are connected).
      },
    });
    await c.close();
  });

  it("ListCapsules, GetCommands and GetCapsuleMetadata reflect the registry", async () => {
    const c = await connect(d);
    expect(await c.request("ListCapsules")).toMatchObject({ status: "Success", data: ["astrid-capsule-cli"] });
    expect(await c.request("GetCommands")).toMatchObject({ status: "Commands", data: [] });
    expect(await c.request("GetCapsuleMetadata")).toMatchObject({
      status: "CapsuleMetadata",
      data: [{ name: "astrid-capsule-cli", interceptor_events: [], state: "ready", version: "0.1.0", restarts: 0 }],
    });
    await c.close();
  });

  it("answers a request without request_id exactly as the reference does (no request_id key)", async () => {
    const c = await authedRaw();
    c.publish("astrid.v1.request.status", { type: "raw_json", method: "GetStatus" });
    const reply = await c.nextOn("astrid.v1.response.status");
    expect(Object.keys(reply.payload).sort()).toEqual(["data", "status", "type"]);
    c.destroy();
  });

  it("sends a response only to the connection that asked, never to the others", async () => {
    const asker = await authedRaw();
    const bystander = await authedRaw();
    asker.publish("astrid.v1.request.list", { type: "raw_json", method: "ListCapsules", request_id: "mine" });
    expect((await asker.nextOn("astrid.v1.response.list")).payload).toMatchObject({ request_id: "mine", status: "Success" });
    await sleep(200);
    expect(bystander.buffered).toBe(0);
    asker.destroy();
    bystander.destroy();
  });

  it("keeps the client's topic suffix in the response topic", async () => {
    const c = await authedRaw();
    c.publish("astrid.v1.request.whatever_i_like", { type: "raw_json", method: "GetCommands" });
    expect((await c.nextOn("astrid.v1.response.whatever_i_like")).payload).toMatchObject({ status: "Commands" });
    c.destroy();
  });

  it.each([
    ["an unknown method", { type: "raw_json", method: "DoMagic", request_id: "u" }, "ASTRID_ERR_UNKNOWN_METHOD", /unknown method "DoMagic"/],
    ["a request without \"type\":\"raw_json\"", { method: "GetStatus", request_id: "u" }, "ASTRID_ERR_REQUEST_INVALID", /raw_json/],
    ["params {} on a unit method", { type: "raw_json", method: "GetStatus", params: {}, request_id: "u" }, "ASTRID_ERR_REQUEST_INVALID", /takes no params/],
    ["Shutdown without params", { type: "raw_json", method: "Shutdown", request_id: "u" }, "ASTRID_ERR_REQUEST_INVALID", /needs "params"/],
    ["a request with no method", { type: "raw_json", request_id: "u" }, "ASTRID_ERR_REQUEST_INVALID", /no string "method"/],
    ["a non-string request_id", { type: "raw_json", method: "GetStatus", request_id: 42 }, "ASTRID_ERR_REQUEST_INVALID", /request_id must be a string/],
    ["a payload that is a string", "GetStatus", "ASTRID_ERR_REQUEST_INVALID", /raw_json/],
  ])("answers %s with an Error response instead of silence", async (_name, payload, code, message) => {
    const c = await authedRaw();
    c.publish("astrid.v1.request.bad", payload);
    const reply = await c.nextOn("astrid.v1.response.bad");
    expect(reply.payload).toMatchObject({ type: "raw_json", status: "Error", code, data: expect.stringMatching(message) });
    if (typeof payload === "object" && typeof payload.request_id === "string") expect(reply.payload.request_id).toBe("u");
    c.destroy();
  });

  it("answers ApproveCapability with a coded not-implemented error, and a relative InstallCapsule source with a coded refusal", async () => {
    const c = await connect(d);
    expect(await c.request("InstallCapsule", { source: "x", workspace: false })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect(await c.request("ApproveCapability", { request_id: "r", signature: "s" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_NOT_IMPLEMENTED" });
    await c.close();
  });

  it("rate-limits ReloadCapsules at 5 per minute per connection, reports it to the caller, spares others", async () => {
    const noisy = await connect(d);
    const seen = collect(noisy);
    for (let i = 0; i < 5; i++) expect(await noisy.request("ReloadCapsules")).toMatchObject({ status: "Success", data: { status: "reloaded" } });
    expect(await noisy.request("ReloadCapsules")).toMatchObject({
      status: "Error", code: "ASTRID_ERR_RATE_LIMITED", data: "Rate limited: max 5 ReloadCapsules requests per minute",
    });
    // Each admitted reload announced capsules_loaded to every client.
    expect(seen.filter((m) => m.topic === "astrid.v1.capsules_loaded").length).toBeGreaterThanOrEqual(5);
    const quiet = await connect(d);
    expect(await quiet.request("ReloadCapsules")).toMatchObject({ status: "Success" });
    await noisy.close();
    await quiet.close();
  });

  it("ReloadCapsules picks up a capsule added to the workspace (--workspace, not the CWD) and lists it", async () => {
    const dir = path.join(workspace, ".astrid", "capsules", "hello");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), '[package]\nname = "hello"\nversion = "1.2.3"\n[[command]]\nname = "hi"\n');
    const c = await connect(d);
    expect(await c.request("ReloadCapsules")).toMatchObject({ status: "Success" });
    expect(await c.request("ListCapsules")).toMatchObject({ data: ["astrid-capsule-cli", "hello"] });
    expect(await c.request("GetCommands")).toMatchObject({ data: [{ name: "hi", description: "No description", provider_capsule: "hello" }] });
    await c.close();
  });
});

describe("issue #2: Shutdown", () => {
  it("replies shutting_down to the caller, then exits 0 and removes socket, token and ready file", async () => {
    const own = await spawnDaemon();
    const c = await connect(own);
    const reply = await c.request("Shutdown", { reason: "test over" });
    expect(reply).toMatchObject({ status: "Success", data: { status: "shutting_down" } });
    await c.waitClosed();
    expect(await own.exited).toBe(0);
    expect(fs.readdirSync(path.join(own.home, "run"))).toEqual([]);
    const log = fs.readdirSync(path.join(own.home, "log")).find((f) => f.startsWith("astrid."))!;
    expect(fs.readFileSync(path.join(own.home, "log", log), "utf8")).toMatch(/"message":"daemon stopped","reason":"test over"/);
  });
});

describe("issue #2: rate limits against reconnecting", () => {
  it("a client that reconnects gets a fresh bucket, but the principal's ceiling (4×) still holds", async () => {
    const own = await spawnDaemon();
    try {
      for (let conn = 0; conn < 4; conn++) {
        const c = await connect(own);
        for (let i = 0; i < 5; i++) expect(await c.request("ReloadCapsules")).toMatchObject({ status: "Success" });
        await c.close();
      }
      const fresh = await connect(own);
      expect(await fresh.request("ReloadCapsules")).toMatchObject({
        status: "Error", code: "ASTRID_ERR_RATE_LIMITED", data: "Rate limited: max 20 ReloadCapsules requests per minute for principal default",
      });
      expect((await fresh.request("GetStatus")).status).toBe("Status");
      await fresh.close();
    } finally {
      own.child.kill("SIGTERM");
      expect(await own.exited).toBe(0);
    }
  });
});

describe("issue #2: a capsule's management request", () => {
  it("is answered to the capsule only: socket clients never see the reply", async () => {
    const ws = tempHome();
    const dir = path.join(ws, ".astrid", "capsules", "asker");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "Capsule.toml"), [
      "[package]", 'name = "asker"', 'version = "1.0.0"', "", "[[component]]", 'file = "index.js"', "", "[capabilities]",
      'ipc_subscribe = ["user.v1.prompt", "astrid.v1.response.status"]', 'ipc_publish = ["agent.v1.response", "astrid.v1.request.status"]', "",
    ].join("\n"));
    fs.writeFileSync(path.join(dir, "index.js"), `module.exports = {
  async setup(api) {
    await api.ipc.subscribe("astrid.v1.response.status", (e) =>
      api.ipc.publish("agent.v1.response", { type: "agent_response", text: "status:" + e.payload.status, is_final: true, session_id: "s" }));
    await api.ipc.subscribe("user.v1.prompt", () => api.ipc.publish("astrid.v1.request.status", { type: "raw_json", method: "GetStatus" }));
  },
};
`);
    const own = await spawnDaemon({ args: ["--workspace", ws] });
    try {
      const c = await connect(own);
      const seen = collect(c);
      c.publish("user.v1.prompt", { type: "user_input", text: "ask", session_id: "s" });
      const answer = await until(() => seen.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === "s"), (m) => m !== undefined, 10_000);
      expect(answer!.payload.text).toBe("status:Status");
      await sleep(200);
      expect(seen.filter((m) => m.topic.startsWith("astrid.v1.response."))).toEqual([]);
      await c.close();
    } finally {
      own.child.kill("SIGTERM");
      expect(await own.exited).toBe(0);
    }
  });
});
