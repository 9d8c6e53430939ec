/**
 * A WebAssembly capsule's sockets (`astrid:net/host@1.0.0`) against the real daemon: outbound TCP behind the
 * `net_connect` allowlist and the address guard, lookups, the stream quota, oversized frames, a silent peer, a
 * flooding peer (the daemon's memory stays flat, another capsule keeps answering), readiness, the capsule's own Unix
 * socket with the daemon's token handshake, its unload in the middle of an accept, a TCP listener and UDP. The guest
 * (net-guest.js) is built with ComponentizeJS; local servers on 127.0.0.3 stand in for the internet (test seams).
 */
import { execFileSync } from "node:child_process";
import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const SOURCES = path.join(ROOT, "spec", "fixtures", "wasm");
const PUBLIC = "127.0.0.3";
const MiB = 1024 * 1024;

let d: RunningDaemon;
let c: DaemonClient;
let built: string;
let workspace: string;
const received: IpcMessage[] = [];
const servers: net.Server[] = [];
let udpEcho: dgram.Socket;
const ports: Record<string, number> = {};
/** Bytes the flooding server got the daemon to take. */
let floodSent = 0;

function wasmCapsule(root: string, name: string, role: string, capabilities: string): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"),
    `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "guest.wasm"\n\n[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response"]\n${capabilities}\n\n[env.ROLE]\ntype = "text"\ndefault = "${role}"\n`);
  fs.copyFileSync(path.join(built, "net.wasm"), path.join(dir, "guest.wasm"));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: fs.readFileSync(path.join(built, "net.hash"), "utf8") }));
}

const NET_CAPABILITIES = [
  'net_connect = ["public.test", "127.0.0.1", "private.test", "ported.test:443"]',
  'net_bind = ["unix:*"]',
  'net_tcp_bind = ["127.0.0.1:*"]',
  'net_udp = ["bind:127.0.0.1:*", "public.test", "127.0.0.1"]',
].join("\n");

/** A TCP server on the "public" address; `name` keys its port. */
async function serve(name: string, onConnection: (socket: net.Socket) => void): Promise<void> {
  const server = net.createServer((socket) => {
    socket.on("error", () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, PUBLIC, resolve));
  ports[name] = (server.address() as net.AddressInfo).port;
  servers.push(server);
}

const frame = (body: Buffer | string) => {
  const data = Buffer.from(body);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(data.length, 0);
  return Buffer.concat([head, data]);
};

/** Reads frames from a socket: `next()` resolves with the next body. */
function frames(socket: net.Socket) {
  let buffered = Buffer.alloc(0);
  const waiting: Array<(b: Buffer) => void> = [];
  const ready: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
      const body = buffered.subarray(4, 4 + buffered.readUInt32BE(0));
      buffered = buffered.subarray(4 + body.length);
      const w = waiting.shift();
      if (w) w(body);
      else ready.push(body);
    }
  });
  return { next: () => new Promise<Buffer>((resolve) => (ready.length > 0 ? resolve(ready.shift()!) : waiting.push(resolve))) };
}

/** Sends `text` as a prompt in a session of its own; resolves with the first reply starting with `prefix`. */
async function ask(text: string, prefix: string, timeoutMs = 20_000): Promise<string> {
  const session = `s-${Math.random().toString(36).slice(2)}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const reply = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session && String(m.payload.text).startsWith(prefix)),
    (m) => m !== undefined, timeoutMs);
  return String(reply!.payload.text);
}

const rssKb = () => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${d.child.pid}/status`, "utf8"))![1]);
const states = async () => Object.fromEntries(((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, ["--import", path.join(SOURCES, "register.mjs"), path.join(SOURCES, "build-net.mjs"), built], { stdio: "pipe", timeout: 240_000 });
  // Framed echo ("pong:<body>"), then raw bytes echoed upper-cased.
  await serve("echo", (socket) => {
    const f = frames(socket);
    void f.next().then((body) => {
      socket.removeAllListeners("data");
      socket.write(frame(`pong:${body.toString()}`));
      socket.on("data", (chunk: Buffer) => socket.write(chunk.toString().toUpperCase()));
    });
    socket.on("end", () => socket.end());
  });
  await serve("silent", () => undefined);
  // Takes a 10 MiB frame, then answers with a prefix declaring 11 MiB.
  await serve("big", (socket) => {
    let got = 0;
    socket.on("data", (chunk: Buffer) => {
      got += chunk.length;
      if (got >= 4 + 10 * MiB) socket.write(Buffer.from([0x00, 0xb0, 0x00, 0x00]));
    });
  });
  // Answers anything 300 ms later with "late".
  await serve("delayed", (socket) => socket.once("data", () => setTimeout(() => socket.write("late"), 300)));
  // Sends as fast as the daemon takes it.
  await serve("flood", (socket) => {
    const chunk = Buffer.alloc(MiB, 0x61);
    const pump = () => {
      while (!socket.destroyed) {
        floodSent += chunk.length;
        if (!socket.write(chunk)) return void socket.once("drain", pump);
      }
    };
    pump();
  });
  udpEcho = dgram.createSocket("udp4");
  udpEcho.on("message", (msg, from) => udpEcho.send(msg, from.port, from.address));
  await new Promise<void>((resolve) => udpEcho.bind(0, PUBLIC, resolve));
  ports.udp = udpEcho.address().port;

  workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  wasmCapsule(root, "wasm-net", "main", NET_CAPABILITIES);
  wasmCapsule(root, "wasm-other", "other", "");
  wasmCapsule(root, "wasm-acc", "acc", 'net_bind = ["unix:*"]');
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    env: {
      ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000",
      ASTRID_TEST_FAULTS: "1",
      ASTRID_TEST_DNS: "public.test=127.0.0.3,private.test=10.0.0.1,other.test=127.0.0.3,ported.test=127.0.0.3,mixed.test=127.0.0.3,mixed.test=10.0.0.1",
      ASTRID_TEST_PUBLIC_ADDRESSES: PUBLIC,
    },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(states, (m) => ["wasm-net", "wasm-other", "wasm-acc"].every((n) => m[n] === "ready"), 120_000);
}, 400_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // Every capsule socket went with its run.
    expect(fs.readdirSync(path.join(d.home, "run", "capsules"))).toEqual([]);
  }
  for (const server of servers) server.close();
  udpEcho?.close();
  await cleanup();
});

describe("WebAssembly sockets: outbound TCP", () => {
  it("connect-tcp: framed and byte I/O, addresses and options with a public peer; a shut stream reads closed", async () => {
    expect(await ask(`main connect public.test ${ports.echo}`, "connect:")).toBe(
      `connect: frame=data:pong:ping bytes=RAW! peer=${PUBLIC}:${ports.echo} local=true nodelay=true keepalive=30 timeout=5000 ` +
      "hop=unknown(ASTRID_ERR_NET_FAILED: this host cannot ) linger=unknown(ASTRID_ERR_NET_FAILED: only linger none ) after-end=closed");
  });

  it("the allowlist and the airlock: loopback and private peers are airlock-rejected, unlisted hosts and ports capability-denied", async () => {
    // 127.0.0.1 is in net_connect, but the guard refuses loopback (only the seam's 127.0.0.3 counts as public).
    expect(await ask(`main connect 127.0.0.1 ${ports.echo}`, "connect:")).toBe("connect: airlock-rejected");
    expect(await ask(`main connect private.test ${ports.echo}`, "connect:")).toBe("connect: airlock-rejected");
    expect(await ask(`main connect other.test ${ports.echo}`, "connect:")).toBe("connect: capability-denied");
    expect(await ask(`main connect ported.test ${ports.echo}`, "connect:")).toBe("connect: capability-denied");
    expect(await ask(`other connect public.test ${ports.echo}`, "connect:")).toBe("connect: capability-denied");
    // A port nothing listens on.
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, PUBLIC, resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    expect(await ask(`main connect public.test ${port}`, "connect:")).toBe("connect: connection-refused");
  });

  it("lookup-host: public addresses only, with the port when given; needs net_connect or net_udp", async () => {
    expect(await ask("main lookup public.test", "lookup:")).toBe(`lookup: ${PUBLIC}`);
    expect(await ask("main lookup public.test:443", "lookup:")).toBe(`lookup: ${PUBLIC}:443`);
    expect(await ask("main lookup private.test", "lookup:")).toBe("lookup: ");
    expect(await ask("main lookup other.test", "lookup:")).toBe("lookup: capability-denied");
  });

  it("quota: 8 streams per capsule, the 9th refused; dropping them frees the slots", async () => {
    expect(await ask(`main quota public.test ${ports.silent}`, "quota:")).toBe("quota: opened=8 ninth=quota after-drop=ok");
  });

  it("frames over 10 MiB: a write is refused, a peer's prefix declaring more closes the stream", async () => {
    expect(await ask(`main bigframe public.test ${ports.big}`, "bigframe:", 60_000)).toBe(
      "bigframe: write=unknown(ASTRID_ERR_FRAME_TOO_LARGE: a frame of 1) at-limit=ok read=unknown(ASTRID_ERR_FRAME_TOO_LARGE: the peer sen) then=closed");
  });

  it("a peer that never sends: read-bytes answers empty after the read timeout, read answers pending", async () => {
    expect(await ask(`main silent public.test ${ports.silent}`, "silent:")).toBe("silent: bytes=0 waited=true frame=pending");
  });

  it("subscribe-readable: poll sleeps until the peer's bytes arrive", async () => {
    expect(await ask(`main pollable public.test ${ports.delayed}`, "pollable:")).toBe("pollable: before=false ready=0 got=late");
  });

  it("read-stream/write-stream: astrid:io/streams halves over the same socket; the peer's end reads closed", async () => {
    expect(await ask(`main streams public.test ${ports.echo}`, "streams:")).toBe("streams: frame=data:pong:ping room=true got=STREAMED now=0 end=closed");
  });

  it("a flooding peer: the daemon takes a bounded amount (its memory stays flat) and other capsules keep answering", async () => {
    expect(await ask(`main flood public.test ${ports.flood}`, "flood:")).toBe("flood: holding");
    await sleep(1500);
    const sentEarly = floodSent;
    const rssEarly = rssKb();
    await sleep(3000);
    expect(await ask("other ping", "ping:", 5000)).toBe("ping: pong");
    // The socket is paused once 256 KiB wait unread: only the kernel's socket buffers fill, then the sender stops.
    expect(floodSent).toBeLessThan(64 * MiB);
    expect(floodSent - sentEarly).toBeLessThan(8 * MiB);
    expect(rssKb() - rssEarly).toBeLessThan(32 * 1024);
    expect(await ask("main flood-read", "flood-read:")).toBe("flood-read: read=true");
  }, 30_000);
});

describe("WebAssembly sockets: the capsule's Unix socket", () => {
  const socketPath = () => path.join(d.home, "run", "capsules", "wasm-net.sock");

  /** Connects to the capsule's socket and sends the handshake with `token`; resolves with the reply frame. */
  async function handshake(token: string) {
    const socket = net.connect(socketPath());
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    const f = frames(socket);
    socket.write(frame(JSON.stringify({ token, protocol_version: 1, client_version: "test" })));
    const reply = JSON.parse((await f.next()).toString()) as Record<string, unknown>;
    return { socket, reply, f };
  }

  it("bind-unix: a 0600 socket at run/capsules/<name>.sock, named by ASTRID_SOCKET_PATH; nothing waiting to accept", async () => {
    expect(await ask("main listen", "listen:")).toBe(`listen: ok path=${socketPath()} poll=undefined same=true`);
    expect(fs.statSync(socketPath()).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(socketPath())).mode & 0o777).toBe(0o700);
  });

  it("a client with a wrong token gets the daemon's refusal and never reaches the capsule", async () => {
    const { socket, reply } = await handshake("0".repeat(64));
    expect(reply).toMatchObject({ status: "error", reason: "authentication failed" });
    socket.destroy();
    expect(await ask("main listen", "listen:")).toBe(`listen: ok path=${socketPath()} poll=undefined same=true`);
  });

  it("accept: after the token handshake the capsule reads and writes frames; TCP-only calls are not-tcp", async () => {
    const session = `s-${Math.random().toString(36).slice(2)}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "main accept", session_id: session });
    await sleep(300);
    const { socket, reply, f } = await handshake(d.token.trim());
    expect(reply).toMatchObject({ status: "ok", protocol_version: 1 });
    socket.write(frame("hi"));
    expect((await f.next()).toString()).toBe("echo:data:hi");
    const line = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined);
    expect(line!.payload.text).toBe("accept: got=data:hi peer=not-tcp nodelay=not-tcp");
    socket.destroy();
  });

  it("unloading the capsule in the middle of a blocking accept ends it at once and removes its socket file", async () => {
    expect(await ask("acc listen", "listen:")).toMatch(/^listen: ok path=.*wasm-acc\.sock/);
    const accPath = path.join(d.home, "run", "capsules", "wasm-acc.sock");
    expect(fs.existsSync(accPath)).toBe(true);
    c.publish("user.v1.prompt", { type: "user_input", text: "acc accept", session_id: "acc" });
    await sleep(500);
    const started = Date.now();
    const removed = await c.request("RemoveCapsule", { name: "wasm-acc" });
    expect(removed).toMatchObject({ status: "Success" });
    expect(Date.now() - started).toBeLessThan(10_000);
    await until(states, (m) => m["wasm-acc"] === undefined, 10_000);
    expect(fs.existsSync(accPath)).toBe(false);
    // The other capsules are untouched.
    expect(await ask("other ping", "ping:")).toBe("ping: pong");
  }, 30_000);
});

describe("WebAssembly sockets: TCP listeners and UDP", () => {
  it("bind-tcp: a listener on an allowed loopback port accepts a connection; other addresses are capability-denied", async () => {
    const at = await ask("main tcp-listen 127.0.0.1", "tcp-listen:");
    const port = Number(/^tcp-listen: at=127\.0\.0\.1:(\d+)$/.exec(at)![1]);
    const session = `s-${Math.random().toString(36).slice(2)}`;
    c.publish("user.v1.prompt", { type: "user_input", text: "main tcp-accept", session_id: session });
    const client = net.connect(port, "127.0.0.1");
    client.write("hello");
    const echoed = await new Promise<string>((resolve) => client.once("data", (b: Buffer) => resolve(b.toString())));
    expect(echoed).toBe("HELLO");
    const line = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined);
    expect(line!.payload.text).toBe("tcp-accept: got=hello peer=true");
    client.destroy();
    expect(await ask("main tcp-listen 0.0.0.0", "tcp-listen:")).toBe("tcp-listen: capability-denied");
  });

  it("udp: send-to and recv-from a public peer, connected send/recv; loopback peers airlock-rejected, unlisted binds denied", async () => {
    expect(await ask(`main udp 127.0.0.1 public.test ${ports.udp}`, "udp:")).toBe(`udp: sent=2 got=hi@${PUBLIC} connected=again peer=${PUBLIC}:${ports.udp}`);
    expect(await ask(`main udp-send 127.0.0.1 127.0.0.1 ${ports.udp}`, "udp-send:")).toBe("udp-send: airlock-rejected");
    expect(await ask(`main udp-send 127.0.0.1 other.test ${ports.udp}`, "udp-send:")).toBe("udp-send: capability-denied");
    expect(await ask(`main udp-send 0.0.0.0 public.test ${ports.udp}`, "udp-send:")).toBe("udp-send: capability-denied");
  });
});
