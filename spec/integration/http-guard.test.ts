/**
 * Outbound HTTP for capsules, through the real daemon and a real capsule (spec/fixtures/http/http-client) using the
 * SDK's `http.request`: the manifest's `net` list, the principal's `self:net:http` and `[network] egress`, and the
 * address guard, which refuses private, loopback, link-local and metadata addresses in every spelling and at every
 * redirect hop. Local servers stand in for the internet: the test seams (ASTRID_TEST_FAULTS=1 only) name
 * `public.test` → 127.0.0.3 and make 127.0.0.3 — and nothing else — count as public. A second daemon without the
 * seams shows that the same requests are refused there. Limits (10 MiB, timeout, 4 in flight) and cancellation are
 * measured against the servers; the daemon keeps answering GetStatus throughout.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, connectAs, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIXTURE = path.join(ROOT, "spec", "fixtures", "http", "http-client");
const MiB = 1024 * 1024;

type Reply = { ok: true; value: any } | { ok: false; code: string; message: string };

/** A local server and what it saw. */
interface Server {
  server: http.Server;
  port: number;
  hits: string[];
  /** Requests in flight now, and the most at once. */
  active: number;
  maxActive: number;
  /** Requests whose client went away before the answer. */
  aborted: number;
}

async function startServer(address: string, handler: (req: http.IncomingMessage, res: http.ServerResponse, s: Server) => void): Promise<Server> {
  const s = { hits: [], active: 0, maxActive: 0, aborted: 0 } as unknown as Server;
  s.server = http.createServer((req, res) => {
    s.hits.push(`${req.method} ${req.url}`);
    s.active++;
    s.maxActive = Math.max(s.maxActive, s.active);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.active--;
    };
    res.on("finish", finish);
    res.on("close", () => {
      if (!res.writableFinished) s.aborted++;
      finish();
    });
    handler(req, res, s);
  });
  await new Promise<void>((resolve) => s.server.listen(0, address, resolve));
  s.port = (s.server.address() as AddressInfo).port;
  return s;
}

function readAll(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (text += chunk));
    req.on("end", () => resolve(text));
  });
}

let pub: Server;
let hidden: Server;
let d: RunningDaemon;
let c: DaemonClient;
/** The workspace whose .astrid/capsules holds the fixture. */
let workspace: string;
const received: IpcMessage[] = [];

beforeAll(async () => {
  hidden = await startServer("127.0.0.2", (_req, res) => res.end("secret"));
  pub = await startServer("127.0.0.3", (req, res) => {
    const url = new URL(req.url!, "http://x");
    switch (url.pathname) {
      case "/hello":
        res.setHeader("X-Custom", "Yes");
        res.setHeader("Set-Cookie", ["a=1", "b=2"]);
        res.end("hello from a public server ✓");
        return;
      case "/echo":
        void readAll(req).then((body) => {
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ method: req.method, body, auth: req.headers.authorization ?? null, host: req.headers.host, custom: req.headers["x-test"] ?? null }));
        });
        return;
      case "/redirect": {
        res.statusCode = Number(url.searchParams.get("status") ?? 302);
        res.setHeader("location", url.searchParams.get("to")!);
        res.end();
        return;
      }
      case "/loop":
        res.statusCode = 302;
        res.setHeader("location", `/loop?n=${Number(url.searchParams.get("n") ?? 0) + 1}`);
        res.end();
        return;
      case "/big": {
        // 11 MiB without a Content-Length (chunked): the cap must hold while streaming.
        const chunk = Buffer.alloc(MiB, 0x61);
        let sent = 0;
        const pump = () => {
          while (sent < 11 && !res.destroyed) {
            sent++;
            if (!res.write(chunk)) return void res.once("drain", pump);
          }
          res.end();
        };
        pump();
        return;
      }
      case "/big-declared":
        res.setHeader("content-length", String(11 * MiB));
        res.end(Buffer.alloc(11 * MiB, 0x62));
        return;
      case "/exact":
        res.end(Buffer.alloc(10 * MiB, 0x63));
        return;
      case "/never":
        return; // never answers
      case "/slow":
        setTimeout(() => res.end("slow"), 700);
        return;
      default:
        res.statusCode = 404;
        res.end("not found");
    }
  });
  const ws = (workspace = tempHome());
  fs.cpSync(FIXTURE, path.join(ws, ".astrid", "capsules", "http-client"), { recursive: true });
  const home = tempHome();
  const profiles = path.join(home, "etc", "profiles");
  fs.mkdirSync(profiles, { recursive: true });
  fs.writeFileSync(path.join(profiles, "net-carol.toml"), `grants = ["self:net:http"]\n\n[network]\negress = ["other.example"]\n`);
  fs.writeFileSync(path.join(profiles, "net-dave.toml"), `grants = ["self:net:http"]\n\n[network]\negress = ["*.test:${pub.port}"]\n`);
  d = await spawnDaemon({ home, args: ["--workspace", ws], env: {
    ASTRID_TEST_FAULTS: "1",
    ASTRID_TEST_DNS: "public.test=127.0.0.3,private.test=10.0.0.1,mixed.test=127.0.0.3,mixed.test=192.168.1.1,forbidden.test=127.0.0.3",
    ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.3",
  } });
  c = await connect(d);
  c.on("message", (m: IpcMessage) => received.push(m));
  await until(() => c.request("GetCapsuleMetadata").then((r) => (r.data as Array<{ name: string; state: string }>).find((m) => m.name === "http-client")?.state), (s) => s === "ready", 20_000);
}, 60_000);

afterAll(async () => {
  await c?.close();
  if (d) {
    d.child.kill("SIGTERM");
    await d.exited;
  }
  await Promise.all([pub, hidden].filter(Boolean).map((s) => new Promise((r) => (s.server.closeAllConnections(), s.server.close(r)))));
  await cleanup();
});

let sessions = 0;
/** Runs one command in the fixture capsule and waits for its answer. */
async function ask(cmd: Record<string, unknown>, client = c, inbox = received, timeoutMs = 30_000): Promise<Reply> {
  const session = `http-${++sessions}`;
  client.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to: "http-client", ...cmd }), session_id: session });
  const reply = await until(() => inbox.find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, timeoutMs);
  return JSON.parse(reply!.payload.text as string) as Reply;
}
const get = (url: string, extra: Record<string, unknown> = {}) => ask({ op: "request", request: { url, ...extra } });
const base = () => `http://public.test:${pub.port}`;

function auditTail(home: string): AuditEntry[] {
  const r = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "2000", "--json"], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 30_000 });
  return r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

/** GetStatus's round trip, in ms. */
async function statusMs(): Promise<number> {
  const t = performance.now();
  await c.request("GetStatus");
  return performance.now() - t;
}

describe("http.request: allowed requests", () => {
  it("reaches a public host in the manifest and returns status, lower-cased headers and the UTF-8 body", async () => {
    const r = await get(`${base()}/hello`);
    expect(r).toMatchObject({ ok: true, value: { status: 200, body: "hello from a public server ✓" } });
    const headers = (r as { value: { headers: Record<string, string> } }).value.headers;
    expect(headers["x-custom"]).toBe("Yes");
    expect(headers["set-cookie"]).toBe("a=1, b=2");
    expect(Object.keys(headers).every((k) => k === k.toLowerCase())).toBe(true);
  });

  it("sends the method, headers and body it is given; the Host header is the URL's", async () => {
    const r = await get(`${base()}/echo`, { method: "post", headers: { "X-Test": "1", Authorization: "Bearer t" }, body: "payload ✓" });
    expect(r.ok).toBe(true);
    expect(JSON.parse((r as { value: { body: string } }).value.body)).toEqual({ method: "POST", body: "payload ✓", auth: "Bearer t", host: `public.test:${pub.port}`, custom: "1" });
  });

  it("a response of exactly 10 MiB is returned whole", async () => {
    const r = await get(`${base()}/exact`);
    expect(r).toMatchObject({ ok: true, value: { status: 200, body: { length: 10 * MiB } } });
  });

  it("follows redirects on allowed hosts: 302 after POST becomes GET, 307 keeps the method and body", async () => {
    const to = encodeURIComponent("/echo");
    const r302 = await get(`${base()}/redirect?to=${to}`, { method: "POST", body: "b" });
    expect(JSON.parse((r302 as { value: { body: string } }).value.body)).toMatchObject({ method: "GET", body: "" });
    const r307 = await get(`${base()}/redirect?status=307&to=${to}`, { method: "POST", body: "kept" });
    expect(JSON.parse((r307 as { value: { body: string } }).value.body)).toMatchObject({ method: "POST", body: "kept" });
  });
});

describe("http.request: the address guard", () => {
  it.each([
    ["127.0.0.1", (p: number) => `http://127.0.0.1:${p}/hello`, "127.0.0.1"],
    ["127.0.0.2 (a server listens there)", (p: number) => `http://127.0.0.2:${p}/`, "127.0.0.2"],
    ["[::1]", (p: number) => `http://[::1]:${p}/hello`, "::1"],
    ["169.254.169.254", () => "http://169.254.169.254/latest/meta-data/", "cloud metadata"],
    ["0x7f000001", (p: number) => `http://0x7f000001:${p}/hello`, "127.0.0.1"],
    ["2130706433", (p: number) => `http://2130706433:${p}/hello`, "127.0.0.1"],
    ["127.1", (p: number) => `http://127.1:${p}/hello`, "127.0.0.1"],
    ["[::ffff:127.0.0.1]", (p: number) => `http://[::ffff:127.0.0.1]:${p}/hello`, "IPv4-mapped"],
    ["localhost", (p: number) => `http://localhost:${p}/hello`, "localhost"],
    ["a name resolving to 10.0.0.1", (p: number) => `http://private.test:${p}/`, "resolves to 10.0.0.1"],
    ["a name with one private answer among public ones", (p: number) => `http://mixed.test:${p}/`, "resolves to 192.168.1.1"],
  ])("refuses %s with ASTRID_ERR_NET_ADDRESS_BLOCKED", async (_name, url, mention) => {
    const port = url(pub.port).includes("127.0.0.2") ? hidden.port : pub.port;
    const r = await get(url(port));
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_NET_ADDRESS_BLOCKED" });
    expect((r as { message: string }).message).toContain(mention);
  });

  it("refuses a redirect to a non-public address at that hop: the hidden server is never reached", async () => {
    const before = hidden.hits.length;
    const r = await get(`${base()}/redirect?to=${encodeURIComponent(`http://127.0.0.2:${hidden.port}/secret`)}`);
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_NET_ADDRESS_BLOCKED" });
    expect((r as { message: string }).message).toContain("127.0.0.2");
    expect(hidden.hits.length).toBe(before);
  });

  it("re-checks scheme and manifest at each hop, and stops after 5 redirects", async () => {
    const ftp = await get(`${base()}/redirect?to=${encodeURIComponent("ftp://public.test/x")}`);
    expect(ftp).toMatchObject({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID" });
    expect((ftp as { message: string }).message).toMatch(/redirect 1.*only http: and https:/);
    const off = await get(`${base()}/redirect?to=${encodeURIComponent(`http://forbidden.test:${pub.port}/hello`)}`);
    expect(off).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    const before = pub.hits.filter((h) => h.startsWith("GET /loop")).length;
    const loop = await get(`${base()}/loop`);
    expect(loop).toMatchObject({ ok: false, code: "ASTRID_ERR_HTTP_TOO_MANY_REDIRECTS" });
    // The first request and 5 redirects were made; the 6th redirect was not followed.
    expect(pub.hits.filter((h) => h.startsWith("GET /loop")).length - before).toBe(6);
  });
});

describe("http.request: permissions", () => {
  it("a host outside the manifest's net list is ASTRID_ERR_CAPABILITY_DENIED, audited as denied", async () => {
    const r = await get(`http://forbidden.test:${pub.port}/hello`);
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_CAPABILITY_DENIED" });
    expect((r as { message: string }).message).toContain("[capabilities] net");
    const entries = auditTail(d.home);
    expect(entries.some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.capsule === "http-client"
      && e.action.manifest === "net" && e.action.target === `forbidden.test:${pub.port}`)).toBe(true);
  });

  it("a principal without self:net:http is ASTRID_ERR_PERMISSION_DENIED; a profile's egress list narrows further", async () => {
    const asPrincipal = async (principal: string, url: string) => {
      const client = await connectAs(d, principal);
      const inbox: IpcMessage[] = [];
      client.on("message", (m: IpcMessage) => inbox.push(m));
      try {
        return await ask({ op: "request", request: { url } }, client, inbox);
      } finally {
        await client.close();
      }
    };
    const bob = await asPrincipal("net-bob", `${base()}/hello`);
    expect(bob).toMatchObject({ ok: false, code: "ASTRID_ERR_PERMISSION_DENIED" });
    expect((bob as { message: string }).message).toContain("self:net:http");
    const carol = await asPrincipal("net-carol", `${base()}/hello`);
    expect(carol).toMatchObject({ ok: false, code: "ASTRID_ERR_PERMISSION_DENIED" });
    expect((carol as { message: string }).message).toContain("[network] egress");
    const dave = await asPrincipal("net-dave", `${base()}/hello`);
    expect(dave).toMatchObject({ ok: true, value: { status: 200 } });
    const denied = auditTail(d.home).filter((e) => e.action.type === "capsule_lifecycle" && e.action.change === "denied" && e.action.manifest === "net");
    expect(denied.map((e) => e.principal)).toEqual(expect.arrayContaining(["net-bob", "net-carol"]));
  });
});

describe("http.request: bad input", () => {
  it.each([
    ["a file: URL", { url: "file:///etc/passwd" }, /only http: and https:/],
    ["an ftp: URL", { url: "ftp://public.test/" }, /only http: and https:/],
    ["an unparsable URL", { url: "http://" }, /not a valid URL/],
    ["credentials in the URL", { url: "http://u:p@public.test/" }, /credentials/],
    ["CONNECT", { url: "http://public.test/", method: "CONNECT" }, /method must be one of/],
    ["a timeout over 30 s", { url: "http://public.test/", timeout_ms: 60_000 }, /timeout_ms must be at most 30000/],
    ["a Host header", { url: "http://public.test/", headers: { Host: "169.254.169.254" } }, /may not set host/],
    ["a header value with CR LF", { url: "http://public.test/", headers: { "X-A": "1\r\nX-B: 2" } }, /CR, LF/],
    ["an unknown key", { url: "http://public.test/", timeout: 5 }, /Unrecognized key|unrecognized/i],
    ["a URL that is not a string", { url: 42 }, /url/],
  ])("refuses %s with ASTRID_ERR_REQUEST_INVALID", async (_name, request, message) => {
    const r = await ask({ op: "request", request });
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_REQUEST_INVALID" });
    expect((r as { message: string }).message).toMatch(message);
  });
});

describe("http.request: limits", () => {
  it("refuses an 11 MiB response (streamed or declared) and an 11 MiB request body with ASTRID_ERR_HTTP_BODY_TOO_LARGE", async () => {
    for (const p of ["/big", "/big-declared"]) {
      const r = await get(`${base()}${p}`);
      expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_HTTP_BODY_TOO_LARGE" });
    }
    const before = pub.hits.length;
    const up = await ask({ op: "request", request: { url: `${base()}/echo`, method: "POST" }, body_bytes: 11 * MiB });
    expect(up).toMatchObject({ ok: false, code: "ASTRID_ERR_HTTP_BODY_TOO_LARGE" });
    expect(pub.hits.length).toBe(before);
  });

  it("a server that never answers is ASTRID_ERR_TIMEOUT at timeout_ms, while the daemon keeps serving", async () => {
    const t = performance.now();
    const pending = get(`${base()}/never`, { timeout_ms: 1500 });
    await sleep(300);
    const status = await statusMs();
    const r = await pending;
    const elapsed = performance.now() - t;
    expect(r).toMatchObject({ ok: false, code: "ASTRID_ERR_TIMEOUT" });
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(4000);
    expect(status).toBeLessThan(1000);
    // The timed-out request's connection was closed, not left open.
    await until(() => pub.active, (n) => n === 0, 5000);
  });

  it("6 concurrent slow requests: at most 4 in flight, the other 2 wait their turn and succeed", async () => {
    pub.maxActive = 0;
    const t = performance.now();
    const pending = ask({ op: "many", n: 6, request: { url: `${base()}/slow` } });
    await sleep(200);
    const status = await statusMs();
    const r = await pending;
    const elapsed = performance.now() - t;
    expect(r.ok).toBe(true);
    expect((r as { value: Reply[] }).value.map((x) => x.ok)).toEqual([true, true, true, true, true, true]);
    expect(pub.maxActive).toBe(4);
    // Two waves of 700 ms.
    expect(elapsed).toBeGreaterThanOrEqual(1350);
    expect(status).toBeLessThan(1000);
  });

  it("the wait queue is bounded: 4 in flight and 64 waiting, more are ASTRID_ERR_HTTP_QUEUE_FULL; waiting counts against timeout_ms", async () => {
    const t = performance.now();
    const r = await ask({ op: "many", n: 70, request: { url: `${base()}/never`, timeout_ms: 1500 } });
    const elapsed = performance.now() - t;
    const codes = (r as { value: Reply[] }).value.map((x) => (x.ok ? "ok" : x.code));
    expect(codes.filter((code) => code === "ASTRID_ERR_HTTP_QUEUE_FULL")).toHaveLength(2);
    expect(codes.filter((code) => code === "ASTRID_ERR_TIMEOUT")).toHaveLength(68);
    expect(elapsed).toBeLessThan(5000);
    await until(() => pub.active, (n) => n === 0, 5000);
  });

  it("a capsule's requests are aborted when its run ends (its worker crashed)", async () => {
    const abortedBefore = pub.aborted;
    const session = `http-${++sessions}`;
    c.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to: "http-client", op: "request", request: { url: `${base()}/never`, timeout_ms: 25_000 } }), session_id: session });
    await until(() => pub.active, (n) => n === 1, 10_000);
    const t = performance.now();
    // A reload would let the old version finish its request (blue/green drains it): end the run itself instead, as
    // a crash does (the test-only fault seam terminates its worker; the supervisor restarts it).
    fs.writeFileSync(path.join(d.home, "run", "test-fault"), "capsule-crash http-client");
    d.child.kill("SIGUSR2");
    await until(() => pub.aborted, (n) => n > abortedBefore, 10_000);
    expect(performance.now() - t).toBeLessThan(5000);
    expect(pub.active).toBe(0);
    await until(() => c.request("GetCapsuleMetadata").then((res) => (res.data as Array<{ name: string; state: string }>).find((m) => m.name === "http-client")?.state), (s) => s === "ready", 20_000);
  });
});

describe("without the test seams", () => {
  it("the same local addresses are refused, and the daemon keeps serving", async () => {
    const ws = tempHome();
    fs.cpSync(FIXTURE, path.join(ws, ".astrid", "capsules", "http-client"), { recursive: true });
    const plain = await spawnDaemon({ args: ["--workspace", ws], env: { ASTRID_TEST_FAULTS: undefined, ASTRID_TEST_DNS: undefined, ASTRID_TEST_PUBLIC_ADDRESSES: undefined } });
    const client = await connect(plain);
    const inbox: IpcMessage[] = [];
    client.on("message", (m: IpcMessage) => inbox.push(m));
    try {
      await until(() => client.request("GetCapsuleMetadata").then((r) => (r.data as Array<{ name: string; state: string }>).find((m) => m.name === "http-client")?.state), (s) => s === "ready", 20_000);
      const before = pub.hits.length;
      for (const url of [`http://127.0.0.3:${pub.port}/hello`, `http://127.0.0.1:${pub.port}/`, `http://[::1]:${pub.port}/`, "http://169.254.169.254/",
        `http://0x7f000003:${pub.port}/hello`, `http://2130706435:${pub.port}/hello`, `http://localhost:${pub.port}/`]) {
        const r = await ask({ op: "request", request: { url } }, client, inbox);
        expect([url, r]).toEqual([url, expect.objectContaining({ ok: false, code: "ASTRID_ERR_NET_ADDRESS_BLOCKED" })]);
      }
      // public.test means nothing here: it goes to real DNS, which has no such name.
      const name = await ask({ op: "request", request: { url: `http://public.test:${pub.port}/hello` } }, client, inbox);
      expect(name).toMatchObject({ ok: false, code: "ASTRID_ERR_HTTP_FAILED" });
      expect(pub.hits.length).toBe(before);
      await client.request("GetStatus");
    } finally {
      await client.close();
      plain.child.kill("SIGTERM");
      expect(await plain.exited).toBe(0);
    }
  }, 60_000);

  it("a daemon given a seam without ASTRID_TEST_FAULTS=1 does not start", async () => {
    for (const env of [{ ASTRID_TEST_DNS: "example.com=127.0.0.1" }, { ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.1", ASTRID_TEST_FAULTS: "0" }]) {
      const daemon = await spawnDaemon({ waitReady: false, env: { ASTRID_TEST_FAULTS: undefined, ...env } });
      expect(await daemon.exited).not.toBe(0);
      expect(daemon.stderr()).toMatch(/ASTRID_TEST_(DNS|PUBLIC_ADDRESSES) must be unset unless ASTRID_TEST_FAULTS=1/);
      expect(fs.existsSync(path.join(daemon.home, "run", "system.sock"))).toBe(false);
    }
  }, 30_000);
});

describe("shutdown", () => {
  it("a stopping daemon aborts requests in flight and exits promptly", async () => {
    const abortedBefore = pub.aborted;
    const session = `http-${++sessions}`;
    c.publish("user.v1.prompt", { type: "user_input", text: JSON.stringify({ to: "http-client", op: "request", request: { url: `${base()}/never`, timeout_ms: 25_000 } }), session_id: session });
    await until(() => pub.active, (n) => n === 1, 10_000);
    const t = performance.now();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    expect(performance.now() - t).toBeLessThan(10_000);
    await until(() => pub.aborted, (n) => n > abortedBefore, 5000);
  }, 30_000);
});
