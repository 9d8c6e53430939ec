/**
 * A capsule written for the reference JS SDK using `net`, against the real daemon: outbound TCP frames to a public
 * peer, the airlock and the `net_connect` allowlist, lookups, and its own Unix socket (a client passes the token
 * handshake, then exchanges frames). A local server on 127.0.0.3 stands in for the internet (test seams).
 */
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { capsulesByName, connect, ROOT, sleep, spawnDaemon, stopDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURE = path.join(ROOT, "spec", "fixtures", "astrid-os-sdk", "net");

let d: RunningDaemon;
let c: DaemonClient;
let server: net.Server;
let port = 0;
/** A peer that reads nothing and hangs up after a second. */
let sink: net.Server;
let sinkPort = 0;
const replies: Array<{ session: string; text: string }> = [];

const frame = (body: string) => {
  const data = Buffer.from(body);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length, 0);
  return Buffer.concat([head, data]);
};

/** The next frame a socket receives. */
function nextFrame(socket: net.Socket): Promise<string> {
  let buffered = Buffer.alloc(0);
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
        socket.off("data", onData);
        resolve(buffered.subarray(4, 4 + buffered.readUInt32BE(0)).toString());
      }
    };
    socket.on("data", onData);
  });
}

beforeAll(async () => {
  // Answers each frame with "pong:<body>".
  server = net.createServer((socket) => {
    socket.on("error", () => undefined);
    const loop = () => void nextFrame(socket).then((body) => {
      socket.write(frame(`pong:${body}`));
      loop();
    });
    loop();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.3", resolve));
  port = (server.address() as net.AddressInfo).port;
  sink = net.createServer({ pauseOnConnect: true }, (socket) => {
    socket.on("error", () => undefined);
    setTimeout(() => socket.destroy(), 1000);
  });
  await new Promise<void>((resolve) => sink.listen(0, "127.0.0.3", resolve));
  sinkPort = (sink.address() as net.AddressInfo).port;
  const workspace = tempHome();
  fs.cpSync(FIXTURE, path.join(workspace, ".astrid", "capsules", "sdk-net"), { recursive: true });
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    env: { ASTRID_TEST_FAULTS: "1", ASTRID_TEST_DNS: "public.test=127.0.0.3,other.test=127.0.0.3", ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.3" },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => {
    if (m.topic === "agent.v1.response") replies.push({ session: String(m.payload.session_id), text: String(m.payload.text) });
  });
  const states = async () => Object.fromEntries(Object.values(await capsulesByName(c)).map((m) => [m.name, m.last_error ?? m.state]));
  await until(states, (m) => m["sdk-net"] === "ready", 30_000);
}, 60_000);

afterAll(async () => {
  await stopDaemon(d, c);
  await new Promise((resolve) => server?.close(resolve));
  await new Promise((resolve) => sink?.close(resolve));
});

let sessions = 0;
/** Sends `text` as a prompt in a session of its own; resolves with the reply. */
async function ask(text: string): Promise<string> {
  const session = `sdknet${++sessions}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  await until(async () => replies.some((r) => r.session === session), (ok) => ok, 20_000);
  return replies.find((r) => r.session === session)!.text;
}

describe("the reference SDK's net", () => {
  it("connect: frames to and from a public peer; loopback is airlock-rejected, an unlisted host capability-denied", async () => {
    expect(await ask(`sdknet-connect public.test ${port}`)).toBe("sdknet-connect frame=pong:ping empty=empty");
    expect(await ask(`sdknet-connect 127.0.0.1 ${port}`)).toBe("sdknet-connect SysError:airlock-rejected");
    expect(await ask(`sdknet-connect other.test ${port}`)).toBe("sdknet-connect SysError:capability-denied");
    expect(await ask("sdknet-lookup public.test")).toBe("sdknet-lookup 127.0.0.3");
  });

  it("concurrent calls cannot pass the limits: ten binds at once give four listeners; one write at a time per stream", async () => {
    expect(await ask("sdknet-binds")).toBe("sdknet-binds ok=4 quota=6");
    // The first frame goes into the socket's buffer, the second waits for room until the peer hangs up (closed), the
    // third is refused at once (a write is under way), instead of waiting with its 4 MiB held in the kernel.
    expect(await ask(`sdknet-sends public.test ${sinkPort}`)).toBe("sdknet-sends ok,EPIPE,busy");
  });

  it("bindUnix and accept: a client that passed the token handshake exchanges frames with the capsule", async () => {
    const session = `sdknet${++sessions}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "sdknet-serve", session_id: session });
    const socketPath = path.join(d.home, "run", "capsules", "sdk-net.sock");
    await until(() => fs.existsSync(socketPath), (ok) => ok, 10_000);
    await sleep(200);
    const client = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => client.once("connect", resolve).once("error", reject));
    client.write(frame(JSON.stringify({ token: d.token.trim(), protocol_version: 1, client_version: "test" })));
    expect(JSON.parse(await nextFrame(client))).toMatchObject({ status: "ok" });
    const echoed = nextFrame(client);
    client.write(frame("hello"));
    expect(await echoed).toBe("echo:hello");
    client.end();
    await until(async () => replies.some((r) => r.session === session), (ok) => ok, 20_000);
    expect(replies.find((r) => r.session === session)!.text).toBe("sdknet-serve got=hello none=true after=RecvError:EPIPE path=true");
  });
});
