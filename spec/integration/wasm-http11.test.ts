/**
 * A WebAssembly capsule built against `astrid:http/host@1.1.0`, against the real daemon: a stream's pollable woken by
 * arriving data, poll over two streams, the body as an `astrid:io/streams` input-stream, uploads (echoed, over the
 * body cap, refused by the guard before and after a redirect), the 4-stream quota shared by streams and uploads,
 * per-request options, and the capsule unloading while its guest blocks on a pollable. The guest (http11-guest.js)
 * is built with ComponentizeJS; a local HTTP server on 127.0.0.3 stands in for the internet (test seams).
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const SOURCES = path.join(ROOT, "spec", "fixtures", "wasm");
const PUBLIC = "127.0.0.3";

let d: RunningDaemon;
let c: DaemonClient;
let built: string;
let server: http.Server;
let base: string;
const received: IpcMessage[] = [];
/** Request bodies the server received, by path. */
const bodies: Array<{ path: string; bytes: number }> = [];

function wasmCapsule(root: string, name: string, role: string, capabilities: string): void {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "Capsule.toml"),
    `[package]\nname = "${name}"\nversion = "1.0.0"\n\n[[component]]\nfile = "guest.wasm"\n\n[capabilities]\nipc_subscribe = ["user.v1.prompt"]\nipc_publish = ["agent.v1.response"]\n${capabilities}\n\n[env.ROLE]\ntype = "text"\ndefault = "${role}"\n`);
  fs.copyFileSync(path.join(built, "http11.wasm"), path.join(dir, "guest.wasm"));
  fs.writeFileSync(path.join(dir, "meta.json"), JSON.stringify({ wasm_hash: fs.readFileSync(path.join(built, "http11.hash"), "utf8") }));
}

/** Sends `text` as a prompt in a session of its own; resolves with the first reply starting with `prefix`. */
async function ask(text: string, prefix: string, timeoutMs = 20_000): Promise<string> {
  const session = `s-${Math.random().toString(36).slice(2)}`;
  c.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
  const reply = await until(async () => received.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session && String(m.payload.text).startsWith(prefix)),
    (m) => m !== undefined, timeoutMs);
  return String(reply!.payload.text);
}

const states = async () => Object.fromEntries(((await c.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).map((m) => [m.name, m.state]));

beforeAll(async () => {
  built = tempHome();
  execFileSync(process.execPath, ["--import", path.join(SOURCES, "register.mjs"), path.join(SOURCES, "build-http11.mjs"), built], { stdio: "pipe", timeout: 240_000 });
  server = http.createServer((req, res) => {
    const route = req.url ?? "/";
    if (route === "/slow") {
      // Headers now, the body later: a pollable is not ready until the first bytes come.
      res.flushHeaders();
      setTimeout(() => res.write("first"), 1000);
      setTimeout(() => res.end("-second"), 1300);
    } else if (route === "/fast") {
      res.flushHeaders();
      setTimeout(() => res.end("fast"), 150);
    } else if (route === "/hang") {
      res.flushHeaders();
    } else if (route === "/body") {
      res.flushHeaders();
      ["a", "b", "c"].forEach((letter, i) => setTimeout(() => (i === 2 ? res.end(letter.repeat(26)) : res.write(letter.repeat(26))), 200 * (i + 1)));
    } else if (route === "/hello") {
      res.end("hello");
    } else if (route === "/redirect") {
      res.writeHead(302, { location: "/hello" }).end();
    } else if (route === "/redirect-private") {
      // Keeps the method and body (307): the next hop is a private address.
      res.writeHead(307, { location: `http://private.test:${(server.address() as AddressInfo).port}/echo` }).end();
    } else if (route === "/echo") {
      const chunks: Buffer[] = [];
      req.on("data", (chunk: Buffer) => chunks.push(chunk));
      req.on("end", () => {
        const body = Buffer.concat(chunks);
        bodies.push({ path: route, bytes: body.length });
        res.end(`echo:${body.toString()}`);
      });
    } else res.writeHead(404).end();
  });
  await new Promise<void>((resolve) => server.listen(0, PUBLIC, resolve));
  base = `http://public.test:${(server.address() as AddressInfo).port}`;
  const workspace = tempHome();
  const root = path.join(workspace, ".astrid", "capsules");
  wasmCapsule(root, "wasm-http", "main", 'net = ["public.test", "private.test"]');
  wasmCapsule(root, "wasm-blk", "blk", 'net = ["public.test"]');
  d = await spawnDaemon({
    args: ["--workspace", workspace],
    env: {
      ASTRID_CAPSULE_READY_TIMEOUT_MS: "60000",
      ASTRID_TEST_FAULTS: "1",
      ASTRID_TEST_DNS: "public.test=127.0.0.3,private.test=10.0.0.1,other.test=127.0.0.3",
      ASTRID_TEST_PUBLIC_ADDRESSES: PUBLIC,
    },
  });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(states, (m) => ["wasm-http", "wasm-blk"].every((n) => m[n] === "ready"), 120_000);
}, 400_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await cleanup();
});

describe("astrid:http/host@1.1.0: readiness", () => {
  it("subscribe-readable: not ready before the body moves; poll wakes when the first bytes arrive", async () => {
    expect(await ask(`main pollable ${base}/slow`, "pollable:")).toBe("pollable: before=false ready=0 waited=true first=first rest=-second end=true");
  });

  it("poll over two streams answers the one whose bytes came first, then the other", async () => {
    expect(await ask(`main poll2 ${base}/slow ${base}/fast`, "poll2:")).toBe("poll2: first=1 fast=fast then=0 slow=first");
  });

  it("body-stream: an input-stream read to its end (closed), sharing the cursor with read-chunk; no trailers", async () => {
    expect(await ask(`main body ${base}/body`, "body:")).toBe("body: early=0 ready=0 bytes=78 pieces=true head=aaa end=closed after=0 trailers=none");
  });
});

describe("astrid:http/host@1.1.0: uploads", () => {
  it("http-upload: several writes to body-sink, then finish: the server echoes the whole body", async () => {
    expect(await ask(`main upload ${base}/echo 4`, "upload:")).toBe("upload: ready=0 room=10485760 status=200 body=echo:part0;part1;part2;part3; again=closed");
    expect(bodies.at(-1)).toEqual({ path: "/echo", bytes: 24 });
  });

  it("a body past 10 MiB in all: the write fails, the upload is dropped, finish is body-too-large, nothing is sent", async () => {
    const before = bodies.length;
    expect(await ask(`main upload-big ${base}/echo`, "upload-big:", 60_000)).toBe("upload-big: written=10 room=0 over=last-operation-failed later=closed finish=body-too-large");
    expect(bodies.length).toBe(before);
  }, 90_000);

  it("the guard: a private address and an undeclared host refused at start; a redirect to a private address refused at finish", async () => {
    const port = (server.address() as AddressInfo).port;
    expect(await ask(`main upload-refused http://private.test:${port}/echo http://other.test:${port}/echo ${base}/redirect-private`, "upload-refused:"))
      .toBe("upload-refused: private=airlock-rejected other=capability-denied redirect=airlock-rejected");
  });

  it("quota: 4 streams per capsule, uploads included; the 5th of either is refused; a dropped one frees its slot", async () => {
    expect(await ask(`main quota ${base}/hang ${base}/echo`, "quota:")).toBe("quota: fifth-stream=quota fifth-upload=quota after-drop=ok");
  });
});

describe("astrid:http/host@1.1.0: request options", () => {
  it("integrity, https-only, redirect policy and limit, a response cap, and deadlines bounded by the host", async () => {
    const digest = createHash("sha256").update("hello").digest("base64");
    expect(await ask(`main options ${base} ${digest}`, "options:")).toBe(
      "options: follow=200:hello meta=true/0/5/bigint plain=hello integrity=hello mismatch=integrity-mismatch https-only=scheme-denied " +
      "redirect-error=redirect-blocked max-redirects=too-many-redirects manual=unknown(redirect-policy manual is not supported ) max-bytes=body-too-large " +
      "total=timeout between=timeout quick=true");
  });
});

describe("astrid:http/host@1.1.0: unloading", () => {
  it("unloading the capsule while its guest blocks on a stream's pollable ends the wait at once", async () => {
    expect(await ask(`blk block ${base}/hang`, "block: waiting")).toBe("block: waiting");
    await sleep(300);
    const started = Date.now();
    expect(await c.request("RemoveCapsule", { name: "wasm-blk" })).toMatchObject({ status: "Success" });
    expect(Date.now() - started).toBeLessThan(10_000);
    await until(states, (m) => m["wasm-blk"] === undefined, 10_000);
    // The other capsule still answers.
    expect(await ask("main ping", "ping:")).toBe("ping: pong");
  }, 30_000);
});
