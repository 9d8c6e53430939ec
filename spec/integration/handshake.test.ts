/** Issue #2: the handshake of reference §3.2 against the real daemon, and every bad handshake the issue names. */
import { encodeFrame } from "../../protocol/framing";
import { cleanup, connect, RawClient, sleep, spawnDaemon, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;
beforeAll(async () => (d = await spawnDaemon()));
afterAll(async () => {
  d.child.kill("SIGTERM");
  await d.exited;
  await cleanup();
});

/** Sends one handshake and returns the reply frame, or null when the daemon closed without one. */
async function handshake(frame: Buffer): Promise<Record<string, unknown> | null> {
  const c = await RawClient.open(d.socketPath);
  c.send(frame);
  try {
    const reply = (await c.next()) as Record<string, unknown>;
    expect(await c.waitClosed()).toBe(reply.status === "error");
    if (reply.status === "ok") c.destroy();
    return reply;
  } catch {
    expect(c.closed).toBe(true);
    return null;
  }
}

/** The daemon still serves a well-behaved client. */
async function stillServes(): Promise<void> {
  const c = await connect(d);
  expect((await c.request("GetStatus")).status).toBe("Status");
  await c.close();
}

describe("issue #2: handshake", () => {
  it("answers a good handshake with the reference shape (lowercase ok, no reason)", async () => {
    const reply = await handshake(encodeFrame({ token: d.token, protocol_version: 1, client_version: "0.5.1", extra: "ignored" }));
    expect(reply).toEqual({ status: "ok", protocol_version: 1, server_version: expect.any(String) });
  });

  it("reassembles a handshake split at every byte boundary", async () => {
    const frame = encodeFrame({ token: d.token, protocol_version: 1, client_version: "split" });
    const c = await RawClient.open(d.socketPath);
    for (const byte of frame) {
      c.send(Buffer.from([byte]));
      await sleep(1);
    }
    expect(await c.next()).toMatchObject({ status: "ok", protocol_version: 1 });
    c.destroy();
  });

  it("accepts the token in upper case and with surrounding whitespace, as readers do", async () => {
    expect((await handshake(encodeFrame({ token: ` ${d.token.toUpperCase()}\n`, protocol_version: 1 })))?.status).toBe("ok");
  });

  it.each([
    ["a wrong token", () => "0".repeat(64)],
    ["a token of the wrong length", () => d.token.slice(0, 40)],
    ["a non-hex token", () => "z".repeat(64)],
  ])("refuses %s with exactly `authentication failed` and closes", async (_name, token) => {
    const reply = await handshake(encodeFrame({ token: token(), protocol_version: 1, client_version: "x" }));
    expect(reply).toEqual({
      status: "error", protocol_version: 1, server_version: expect.any(String), reason: "authentication failed", code: "ASTRID_ERR_AUTH_FAILED",
    });
    await stillServes();
  });

  it("checks the version before the token: protocol_version 99 with a wrong token gets the mismatch reply", async () => {
    const reply = await handshake(encodeFrame({ token: "0".repeat(64), protocol_version: 99 }));
    expect(reply).toMatchObject({ status: "error", code: "ASTRID_ERR_PROTOCOL_MISMATCH" });
    expect(reply!.reason).toMatch(/^Protocol version mismatch \(client=99, server=1\)\./);
  });

  it("closes without a reply on a non-JSON handshake", async () => {
    expect(await handshake(Buffer.concat([Buffer.from([0, 0, 0, 8]), Buffer.from("not json")]))).toBeNull();
    await stillServes();
  });

  it("closes without a reply on a handshake over 4096 bytes", async () => {
    const big = encodeFrame({ token: d.token, protocol_version: 1, pad: "x".repeat(5000) });
    expect(await handshake(big)).toBeNull();
    await stillServes();
  });

  it("closes without a reply on a 0xFFFFFFF0 length prefix before the handshake", async () => {
    expect(await handshake(Buffer.from([0xff, 0xff, 0xff, 0xf0]))).toBeNull();
    await stillServes();
  });

  it("gives a JSON handshake of the wrong shape a coded error instead of silence", async () => {
    expect(await handshake(encodeFrame({ hello: "daemon" }))).toMatchObject({ status: "error", code: "ASTRID_ERR_HANDSHAKE_INVALID" });
    expect(await handshake(encodeFrame([1, 2, 3]))).toMatchObject({ status: "error", code: "ASTRID_ERR_HANDSHAKE_INVALID" });
  });

  it("tolerates probe connections that connect and close, and serves meanwhile", async () => {
    for (let i = 0; i < 20; i++) (await RawClient.open(d.socketPath)).destroy();
    await stillServes();
  });

  it("drops a client that connects and sends nothing after 5 s, serving others meanwhile", async () => {
    const silent = await RawClient.open(d.socketPath);
    const partial = await RawClient.open(d.socketPath);
    partial.send(Buffer.from([0, 0, 0, 50, 0x7b])); // a handshake that never completes
    await sleep(1000);
    await stillServes();
    expect(silent.closed).toBe(false);
    expect(await silent.waitClosed(6000)).toBe(true);
    expect(await partial.waitClosed(1000)).toBe(true);
    expect(silent.buffered).toBe(0);
  }, 15_000);
});
