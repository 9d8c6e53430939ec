/**
 * Issue #9: `astrid identity link|unlink|list` as a user runs them. The daemon side here is a small fake that
 * speaks the real wire (framing, handshake, admin topics) and records what the CLI sent, so the CLI's arguments,
 * wire shape and output are tested on their own; the real daemon's admin router has its own tests.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { encodeFrame, FrameDecoder, MAX_CLIENT_FRAME_BYTES, parseFrameJson } from "../../protocol/framing";
import { CLI_BIN, cleanup, tempHome } from "../helpers/daemon";

afterAll(cleanup);

type Payload = Record<string, unknown>;
/** What the fake answers a request with: a reply payload (minus type/request_id), or a frame refusal. */
type Answer = { reply: Payload } | { refuse: { code: string; message: string } } | { silent: true };

interface FakeDaemon {
  home: string;
  requests: Array<{ topic: string; payload: Payload }>;
  close(): Promise<void>;
}

const TOKEN = "ab".repeat(32);

async function fakeDaemon(answer: (req: { topic: string; payload: Payload }) => Answer): Promise<FakeDaemon> {
  const home = tempHome();
  fs.mkdirSync(path.join(home, "run"), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(home, "run", "system.token"), TOKEN, { mode: 0o600 });
  const requests: FakeDaemon["requests"] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    const decoder = new FrameDecoder(MAX_CLIENT_FRAME_BYTES);
    let shook = false;
    socket.on("data", (chunk) => {
      decoder.push(chunk);
      for (let body = decoder.next(); body !== null; body = decoder.next()) {
        const frame = parseFrameJson(body) as Payload;
        if (!shook) {
          shook = true;
          const ok = frame.token === TOKEN;
          socket.write(encodeFrame({ status: ok ? "ok" : "error", protocol_version: 1, server_version: "fake", ...(ok ? {} : { reason: "authentication failed" }) }));
          continue;
        }
        const req = { topic: String(frame.topic), payload: frame.payload as Payload };
        requests.push(req);
        const a = answer(req);
        const message = (topic: string, payload: Payload) =>
          socket.write(encodeFrame({ topic, payload, signature: null, source_id: "00000000-0000-0000-0000-000000000000", timestamp: new Date().toISOString(), seq: 1 }));
        if ("refuse" in a) message("astrid.v1.error", { type: "raw_json", ...a.refuse });
        else if ("reply" in a) {
          // Something for someone else first: the CLI must wait for its own request_id.
          message(req.topic.replace("astrid.v1.admin.", "astrid.v1.admin.response."), { type: "raw_json", request_id: "not-yours", status: "Success", data: null });
          message(req.topic.replace("astrid.v1.admin.", "astrid.v1.admin.response."), { type: "raw_json", request_id: req.payload.request_id, ...a.reply });
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(path.join(home, "run", "system.sock"), resolve));
  return {
    home,
    requests,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Runs the CLI without blocking this process (the fake daemon lives in it). */
function astrid(home: string, args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("exit", (code) => resolve({ code, out, err }));
  });
}

const fakes: FakeDaemon[] = [];
afterEach(async () => {
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});
async function daemon(answer: Parameters<typeof fakeDaemon>[0]): Promise<FakeDaemon> {
  const fake = await fakeDaemon(answer);
  fakes.push(fake);
  return fake;
}

const link = { platform: "discord", platform_user_id: "80351110224678912345", principal: "alice", method: "admin", display_name: "Alice", linked_at: "2025-01-01T00:00:00.000Z" };

describe("issue #9: astrid identity", () => {
  it("link sends IdentityLink on astrid.v1.admin.identity.link, a long numeric user id kept as text", async () => {
    const fake = await daemon(() => ({ reply: { status: "Success", data: link } }));
    const r = await astrid(fake.home, ["identity", "link", "discord", "80351110224678912345", "alice", "--display-name", "Alice"]);
    expect(r).toEqual({ code: 0, out: 'Linked discord user 80351110224678912345 ("Alice") to principal alice.\n', err: "" });
    expect(fake.requests).toEqual([{
      topic: "astrid.v1.admin.identity.link",
      payload: {
        type: "raw_json",
        request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        method: "IdentityLink",
        params: { platform: "discord", platform_user_id: "80351110224678912345", principal: "alice", display_name: "Alice" },
      },
    }]);
  });

  it("link --json prints the daemon's data; a replaced link is named", async () => {
    const data = { ...link, replaced: { principal: "bob", method: "claimed" } };
    const fake = await daemon(() => ({ reply: { status: "Success", data } }));
    expect(JSON.parse((await astrid(fake.home, ["identity", "link", "discord", "1", "alice", "--json"])).out)).toEqual(data);
    expect((await astrid(fake.home, ["identity", "link", "discord", "1", "alice"])).out).toBe('Linked discord user 80351110224678912345 ("Alice") to principal alice (was bob, claimed).\n');
  });

  it("unlink: the daemon's coded error is the CLI's, exit 1", async () => {
    const fake = await daemon(() => ({ reply: { status: "Error", data: "discord user \"9\" has no identity link", code: "ASTRID_ERR_NOT_FOUND" } }));
    const r = await astrid(fake.home, ["identity", "unlink", "discord", "9"]);
    expect(r).toEqual({ code: 1, out: "", err: 'astrid: discord user "9" has no identity link [ASTRID_ERR_NOT_FOUND]\n' });
    expect(fake.requests[0]).toMatchObject({ topic: "astrid.v1.admin.identity.unlink", payload: { method: "IdentityUnlink", params: { platform: "discord", platform_user_id: "9" } } });
    const json = await astrid(fake.home, ["identity", "unlink", "discord", "9", "--json"]);
    expect(JSON.parse(json.out)).toEqual({ error: { code: "ASTRID_ERR_NOT_FOUND", message: 'discord user "9" has no identity link' } });
  });

  it("an error reply without a code (the reference's shape) is ASTRID_ERR_INTERNAL", async () => {
    const fake = await daemon(() => ({ reply: { status: "Error", data: "permission denied for principal x: missing capability identity:unlink" } }));
    expect((await astrid(fake.home, ["identity", "unlink", "web", "u"])).err).toBe("astrid: permission denied for principal x: missing capability identity:unlink [ASTRID_ERR_INTERNAL]\n");
  });

  it("list prints a table, and --all follows next_cursor to the end", async () => {
    const pages: Record<string, Payload> = {
      first: { links: [link], next_cursor: "c1" },
      c1: { links: [{ platform: "web", platform_user_id: "bob@example.com", principal: "bob", method: "claimed", linked_at: "x" }] },
    };
    const fake = await daemon(({ payload }) => ({ reply: { status: "IdentityList", data: pages[String((payload.params as Payload).cursor ?? "first")] } }));
    const one = await astrid(fake.home, ["identity", "list"]);
    expect(one).toEqual({
      code: 0,
      out: "PLATFORM  USER                  PRINCIPAL  METHOD  NAME\ndiscord   80351110224678912345  alice      admin   Alice\n",
      err: "More links follow: add --cursor c1 (or --all).\n",
    });
    fake.requests.length = 0;
    const all = await astrid(fake.home, ["identity", "list", "--all", "--principal", "alice", "--limit", "1", "--json"]);
    expect(JSON.parse(all.out)).toEqual({ links: [link, pages.c1!.links![0 as never]] });
    expect(fake.requests.map((r) => r.payload.params)).toEqual([{ principal: "alice", limit: 1 }, { principal: "alice", limit: 1, cursor: "c1" }]);
    expect(fake.requests.every((r) => r.topic === "astrid.v1.admin.identity.list" && r.payload.method === "IdentityList")).toBe(true);
  });

  it("an empty list says so on stderr", async () => {
    const fake = await daemon(() => ({ reply: { status: "IdentityList", data: { links: [] } } }));
    expect(await astrid(fake.home, ["identity", "list", "web"])).toEqual({ code: 0, out: "", err: "No identity links.\n" });
    expect(fake.requests[0]!.payload.params).toEqual({ platform: "web" });
  });

  it("a daemon that refuses the admin topic is reported at once with its code", async () => {
    const fake = await daemon(() => ({ refuse: { code: "ASTRID_ERR_TOPIC_DENIED", message: 'clients may not publish on "astrid.v1.admin.identity.list"' } }));
    const started = Date.now();
    const r = await astrid(fake.home, ["identity", "list"]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/refused the IdentityList request: clients may not publish .* \[ASTRID_ERR_TOPIC_DENIED\]\n$/);
    expect(Date.now() - started).toBeLessThan(8000);
  });

  it("bad arguments are refused before anything is sent", async () => {
    const fake = await daemon(() => ({ silent: true }));
    const cases: Array<[string[], RegExp]> = [
      [["identity", "link", "Discord", "1", "alice"], /platform "Discord" must be 1-32 characters/],
      [["identity", "link", "discord", "1", "al ice"], /principal "al ice" must be 1-64 characters/],
      [["identity", "link", "discord", "a\nb", "alice"], /user id "a\\nb" must be 1-256 printable/],
      [["identity", "link", "discord", "1", "alice", "--display-name", "x\ny"], /--display-name must be 1-256 printable/],
      [["identity", "list", "--limit", "0"], /--limit must be a whole number from 1 to 1000/],
      [["identity", "link", "discord", "1"], /Not enough non-option arguments/],
      [["identity", "frobnicate"], /Unknown argument: frobnicate/],
    ];
    for (const [args, message] of cases) {
      const r = await astrid(fake.home, args);
      // Issue #12: usage errors exit 2.
      expect(r.code).toBe(2);
      expect(r.err).toMatch(message);
      expect(r.err).toMatch(/\[ASTRID_ERR_INVALID_ARGUMENT\]\n$/);
    }
    expect(fake.requests).toEqual([]);
  });

  it("with no daemon: ASTRID_ERR_DAEMON_NOT_RUNNING", async () => {
    const r = await astrid(tempHome(), ["identity", "list"]);
    expect(r).toMatchObject({ code: 1, err: expect.stringMatching(/No Astrid daemon is running.*\[ASTRID_ERR_DAEMON_NOT_RUNNING\]\n$/) });
  });
});
