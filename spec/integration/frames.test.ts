/** Issue #2: frames after the handshake (reference §3.3–3.4, §4): envelopes, ingress policy and every bad frame. */
import { encodeFrame } from "../../protocol/framing";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, RawClient, sleep, spawnDaemon, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
beforeAll(async () => (d = await spawnDaemon()));
afterAll(async () => {
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

const statusFrame = (requestId: string) =>
  encodeFrame({
    topic: "astrid.v1.request.status",
    payload: { type: "raw_json", method: "GetStatus", request_id: requestId },
    signature: null,
    source_id: "00000000-0000-0000-0000-000000000000",
    timestamp: new Date().toISOString(),
    seq: 0,
  });

/** An authenticated raw client with the boot-time backlog (capsules_loaded) already read. */
async function client(): Promise<RawClient> {
  const c = await RawClient.authenticated(d);
  while (c.buffered > 0) await c.next();
  return c;
}

async function expectServing(c: RawClient, requestId: string): Promise<void> {
  c.send(statusFrame(requestId));
  const reply = await c.nextOn("astrid.v1.response.status");
  expect(reply.payload).toMatchObject({ request_id: requestId, status: "Status" });
}

describe("issue #2: egress envelope", () => {
  it("sends the full IpcMessage: tagged payload, timestamp, signature null, seq, source_id", async () => {
    const c = await client();
    c.send(statusFrame("env"));
    const reply = await c.nextOn("astrid.v1.response.status");
    expect(reply).toEqual({
      topic: "astrid.v1.response.status",
      payload: { type: "raw_json", request_id: "env", status: "Status", data: expect.objectContaining({ pid: d.child.pid }) },
      signature: null,
      source_id: "00000000-0000-0000-0000-000000000000",
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z$/),
      seq: expect.any(Number),
    });
    expect(reply.seq).toBeGreaterThan(0);
    c.destroy();
  });
});

describe("issue #2: bad frames (each gets a coded error; the connection and everyone else keep working)", () => {
  it("reassembles a frame split at every byte boundary", async () => {
    const c = await client();
    const frame = statusFrame("split");
    for (const byte of frame) {
      c.send(Buffer.from([byte]));
      await sleep(1);
    }
    expect((await c.nextOn("astrid.v1.response.status")).payload).toMatchObject({ request_id: "split" });
    c.destroy();
  });

  it("answers both of two frames sent in one write, in order", async () => {
    const c = await client();
    c.send(Buffer.concat([statusFrame("one"), statusFrame("two")]));
    const a = await c.nextOn("astrid.v1.response.status");
    const b = await c.nextOn("astrid.v1.response.status");
    expect([a.payload.request_id, b.payload.request_id]).toEqual(["one", "two"]);
    expect(b.seq).toBeGreaterThan(a.seq);
    c.destroy();
  });

  it("accepts the handshake and a request in the same write", async () => {
    const c = await RawClient.open(d.socketPath);
    c.send(Buffer.concat([encodeFrame({ token: d.token, protocol_version: 1 }), statusFrame("same-write")]));
    expect(await c.next()).toMatchObject({ status: "ok" });
    expect((await c.nextOn("astrid.v1.response.status")).payload).toMatchObject({ request_id: "same-write" });
    c.destroy();
  });

  it.each([
    ["valid JSON that is not an object", encodeFrame([1, 2, 3]), "ASTRID_ERR_MESSAGE_INVALID"],
    ["a JSON string", encodeFrame("hello"), "ASTRID_ERR_MESSAGE_INVALID"],
    ["a message with no topic", encodeFrame({ payload: { type: "raw_json", method: "GetStatus" } }), "ASTRID_ERR_MESSAGE_INVALID"],
    ["a non-string topic", encodeFrame({ topic: 7, payload: {} }), "ASTRID_ERR_MESSAGE_INVALID"],
    ["a body that is not JSON", Buffer.concat([Buffer.from([0, 0, 0, 3]), Buffer.from("{x}")]), "ASTRID_ERR_FRAME_INVALID_JSON"],
    ["a topic outside the ingress allowlist", encodeFrame({ topic: "tool.v1.execute.calculate", payload: {} }), "ASTRID_ERR_TOPIC_DENIED"],
    ["a forged admin response", encodeFrame({ topic: "astrid.v1.admin.response.agent.list", payload: {} }), "ASTRID_ERR_TOPIC_DENIED"],
    ["a request topic with too many segments", encodeFrame({ topic: "astrid.v1.request.a.b", payload: {} }), "ASTRID_ERR_TOPIC_DENIED"],
    ["a client trying to fake a connect event", encodeFrame({ topic: "client.v1.connected", payload: { type: "connect" } }), "ASTRID_ERR_TOPIC_DENIED"],
  ])("refuses %s and keeps the connection", async (_name, frame, code) => {
    const c = await client();
    c.send(frame);
    expect(await c.nextOn("astrid.v1.error")).toMatchObject({ payload: { type: "raw_json", code, message: expect.any(String) } });
    await expectServing(c, "after");
    c.destroy();
  });

  it("closes a client whose length prefix is 0xFFFFFFF0, telling it why; others are unaffected", async () => {
    const other = await client();
    const c = await client();
    c.send(Buffer.from([0xff, 0xff, 0xff, 0xf0]));
    expect(await c.nextOn("astrid.v1.error")).toMatchObject({ payload: { code: "ASTRID_ERR_FRAME_TOO_LARGE" } });
    expect(await c.waitClosed()).toBe(true);
    await expectServing(other, "other");
    other.destroy();
  });

  it("closes a client that sends a frame over 10 MiB; a frame just under the limit is fine", async () => {
    const c = await client();
    const body = Buffer.from(JSON.stringify({ topic: "user.v1.prompt", payload: { type: "user_input", text: "x".repeat(10 * 1024 * 1024 - 80) } }));
    expect(body.length).toBeLessThanOrEqual(10 * 1024 * 1024);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(body.length);
    c.send(Buffer.concat([head, body]));
    await expectServing(c, "big-ok");
    const over = Buffer.alloc(4);
    over.writeUInt32BE(10 * 1024 * 1024 + 1);
    c.send(over);
    expect(await c.nextOn("astrid.v1.error")).toMatchObject({ payload: { code: "ASTRID_ERR_FRAME_TOO_LARGE" } });
    expect(await c.waitClosed()).toBe(true);
  });

  it("survives a client that disconnects mid-frame", async () => {
    const c = await client();
    c.send(statusFrame("cut").subarray(0, 20));
    await sleep(20);
    c.destroy();
    const other = await client();
    await expectServing(other, "after-cut");
    other.destroy();
  });

  it("drops a client that stops mid-frame (5 s + 1 ms per KiB declared), telling it why; others are unaffected", async () => {
    const other = await client();
    const c = await client();
    const started = Date.now();
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1000 * 1024);
    c.send(Buffer.concat([head, Buffer.from('{"topic":"user.v1.prompt"')]));
    expect(await c.nextOn("astrid.v1.error", 10_000)).toMatchObject({ payload: { code: "ASTRID_ERR_TIMEOUT", message: expect.stringMatching(/not completed within 6000 ms/) } });
    expect(await c.waitClosed()).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(5900);
    await expectServing(other, "after-stall");
    other.destroy();
  }, 20_000);

  it("refuses topics the publish rules forbid (over 256 bytes, over 8 segments, empty segment, `*`); the client stays", async () => {
    const c = await client();
    const frame = (topic: string) => encodeFrame({ topic, payload: { type: "raw_json", method: "GetStatus" } } as unknown as IpcMessage);
    for (const [topic, why] of [
      [`astrid.v1.request.${"x".repeat(4 * 1024 * 1024)}`, /longer than 256 bytes/],
      ["astrid.v1.request.a.b.c.d.e.f", /more than 8 segments/],
      ["astrid.v1.request..status", /empty segment/],
      ["astrid.v1.request.*", /may not contain `\*`/],
    ] as const) {
      c.send(frame(topic));
      expect(await c.nextOn("astrid.v1.error")).toMatchObject({ payload: { code: "ASTRID_ERR_MESSAGE_INVALID", message: expect.stringMatching(why) } });
    }
    await expectServing(c, "after-bad-topics");
    c.destroy();
  });

  it("accepts a client's prompt without an error frame (the principal it carries is checked in routing.test.ts)", async () => {
    const c = await client();
    c.publish("user.v1.prompt", { type: "user_input", text: "hello", session_id: "s" });
    await expectServing(c, "after-prompt");
    expect(c.buffered).toBe(0);
    c.destroy();
  });

  it("treats a client's client.v1.disconnect as a goodbye: closes it and counts one disconnect", async () => {
    const watcher = await connect(d);
    const before = (await watcher.request("GetStatus")).data as { connected_clients: number };
    const c = await client();
    c.publish("client.v1.disconnect", { type: "disconnect" });
    expect(await c.waitClosed()).toBe(true);
    await sleep(50);
    const after = (await watcher.request("GetStatus")).data as { connected_clients: number };
    expect(after.connected_clients).toBe(before.connected_clients);
    await watcher.close();
  });
});

describe("issue #2: offline backlog", () => {
  it("delivers events published while no client was connected to the first client", async () => {
    const fresh = await spawnDaemon();
    const c = await RawClient.authenticated(fresh);
    const first = (await c.next()) as IpcMessage;
    expect(first).toMatchObject({ topic: "astrid.v1.capsules_loaded", payload: { type: "raw_json", status: "ready" }, seq: expect.any(Number) });
    c.destroy();
    fresh.child.kill("SIGTERM");
    expect(await fresh.exited).toBe(0);
  });
});
