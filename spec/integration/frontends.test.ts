/**
 * Issue #9: frontends and the people behind them, end to end: credentials from `astrid frontend add`, platform
 * users resolved to principals (linked, provisioned or refused), the principal a frame claims ignored, sessions
 * kept per principal, revocation.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { encodeFrame } from "../../protocol/framing";
import type { IpcMessage } from "../../protocol/ipc-message";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, RawClient, ROOT, spawnDaemon, tempHome, type RunningDaemon } from "../helpers/daemon";

let d: RunningDaemon;

function astrid(args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

/** A raw connection that presents `token` and calls itself `name`. */
async function frontend(token: string, name: string): Promise<RawClient> {
  const c = await RawClient.open(d.socketPath);
  c.send(encodeFrame({ token, protocol_version: 1, client_version: "test", client_name: name }));
  const reply = (await c.next()) as { status: string; code?: string };
  if (reply.status !== "ok") throw Object.assign(new Error(`refused: ${JSON.stringify(reply)}`), { code: reply.code });
  return c;
}

function say(c: RawClient, text: string, sessionId: string, user?: Record<string, unknown>, extra: Record<string, unknown> = {}): void {
  c.send(encodeFrame({
    topic: "user.v1.prompt", signature: null, source_id: "00000000-0000-0000-0000-000000000000", timestamp: new Date().toISOString(), seq: 0,
    payload: { type: "user_input", text, session_id: sessionId }, ...(user ? { user } : {}), ...extra,
  }));
}

/** The next whoami answer (or error frame) this connection gets. */
async function answer(c: RawClient): Promise<IpcMessage> {
  for (;;) {
    const m = (await c.next(5000)) as IpcMessage;
    if (m.topic === "astrid.v1.error" || (m.topic === "agent.v1.response" && String(m.payload.text).startsWith("principal:"))) return m;
  }
}

function token(name: string): string {
  return fs.readFileSync(path.join(d.home, "etc", "frontends", `${name}.token`), "utf8").trim();
}

beforeAll(async () => {
  const ws = tempHome();
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "routing", "whoami"), path.join(ws, ".astrid", "capsules", "whoami"), { recursive: true });
  d = await spawnDaemon({ args: ["--workspace", ws] });
  expect(astrid(["frontend", "add", "discord-bot", "--platform", "discord", "--unlinked", "restricted"]).code).toBe(0);
  expect(astrid(["frontend", "add", "web-bridge", "--platform", "web"]).code).toBe(0);
}, 30_000);
afterAll(async () => {
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
  await cleanup();
});

describe("issue #9: frontends and the people behind them", () => {
  it("a frontend connects with its own credential, is shown by name in GetStatus, and acts as its own principal", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    // It claims to be `default`, in the envelope and in the payload: ignored.
    say(bot, "whoami", "bot-own", undefined, { principal: "default" });
    expect((await answer(bot)).payload.text).toBe("principal:discord-bot seen:1");
    const op = await connect(d);
    const listed = (await op.request("ListClients")).data as Array<{ principal: string; via: string; client_name?: string }>;
    expect(listed).toEqual(expect.arrayContaining([{ ...listed.find((c) => c.client_name === "discord")!, principal: "discord-bot", via: "frontend" }]));
    await op.close();
    bot.destroy();
  });

  it("an unlinked user under `restricted` gets a principal of its own, with its own data; another user gets another", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    say(bot, "whoami", "ann-1", { platform: "discord", platform_user_id: "111", display_name: "Ann" });
    const first = String((await answer(bot)).payload.text);
    expect(first).toMatch(/^principal:discord-111-[0-9a-f]{16} seen:1$/);
    say(bot, "whoami", "ann-1", { platform: "discord", platform_user_id: "111" });
    expect((await answer(bot)).payload.text).toBe(first.replace("seen:1", "seen:2"));
    say(bot, "whoami", "bob-1", { platform: "discord", platform_user_id: "222" });
    expect((await answer(bot)).payload.text).toMatch(/^principal:discord-222-[0-9a-f]{16} seen:1$/);
    // The provisioned principal is in group restricted: it may not even ask for the daemon's status.
    const principal = first.split(" ")[0]!.slice("principal:".length);
    const profile = fs.readFileSync(path.join(d.home, "etc", "profiles", `${principal}.toml`), "utf8");
    expect(profile).toMatch(/groups = \[\s*"restricted"\s*\]/);
    bot.destroy();
  });

  it("each message carries its attribution: verified for the frontend itself, claimed for a user it speaks for", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    say(bot, "how-do-you-know", "attr-1");
    expect((await answer(bot)).payload.text).toBe("principal:discord-bot via:verified");
    say(bot, "how-do-you-know", "attr-2", { platform: "discord", platform_user_id: "111" });
    expect((await answer(bot)).payload.text).toMatch(/^principal:discord-111-[0-9a-f]{16} via:claimed$/);
    bot.destroy();
  });

  it("interleaved prompts of two users keep each one's data apart (a capsule acts for the message it handles)", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    const users = ["race-a", "race-b"];
    for (let i = 0; i < 40; i++) for (const u of users) say(bot, "whoami", `race-${u}`, { platform: "discord", platform_user_id: u });
    const last = new Map<string, string>();
    for (let n = 0; n < 80; n++) {
      const m = await answer(bot);
      last.set(String(m.payload.session_id), String(m.payload.text));
    }
    // Each user's own counter reached 40 in its own scope: no write landed in the other's.
    for (const u of users) expect(last.get(`race-${u}`)).toMatch(new RegExp(`^principal:discord-${u}-[0-9a-f]{16} seen:40$`));
    bot.destroy();
  });

  it("a frontend claiming a platform it was not allowed is refused with a coded error (and audited)", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    say(bot, "whoami", "x-1", { platform: "web", platform_user_id: "v1" });
    expect((await answer(bot)).payload).toMatchObject({ code: "ASTRID_ERR_PLATFORM_DENIED" });
    bot.destroy();
    const tail = astrid(["audit", "tail", "-n", "200", "--json"]);
    const entries = tail.out.trim().split("\n").map((l) => JSON.parse(l) as AuditEntry);
    expect(entries.some((e) => (e.action as { type?: string }).type === "client_claim_denied")).toBe(true);
  });

  it("the session token speaks for the operator: it may not claim platform users", async () => {
    const op = await RawClient.authenticated(d);
    say(op, "whoami", "op-x", { platform: "web", platform_user_id: "v1" });
    expect((await answer(op)).payload).toMatchObject({ code: "ASTRID_ERR_PLATFORM_DENIED" });
    op.destroy();
  });

  it("under `refuse` an unlinked user is refused; once an admin links it, it acts as the linked principal", async () => {
    const web = await frontend(token("web-bridge"), "web");
    say(web, "whoami", "w-1", { platform: "web", platform_user_id: "visitor-7" });
    expect((await answer(web)).payload).toMatchObject({ code: "ASTRID_ERR_IDENTITY_UNLINKED" });
    expect(astrid(["agent", "create", "alice"]).code).toBe(0);
    const linked = astrid(["identity", "link", "web", "visitor-7", "alice"]);
    expect(linked).toMatchObject({ code: 0 });
    await new Promise((r) => setTimeout(r, 2100)); // past the resolution cache
    say(web, "whoami", "w-2", { platform: "web", platform_user_id: "visitor-7" });
    expect((await answer(web)).payload.text).toBe("principal:alice seen:1");
    web.destroy();
  });

  it("two frontends each see only their own sessions; joining another principal's session is refused and audited", async () => {
    const bot = await frontend(token("discord-bot"), "discord");
    const web = await frontend(token("web-bridge"), "web");
    const botSeen: IpcMessage[] = [];
    say(bot, "whoami", "iso-bot", { platform: "discord", platform_user_id: "333" });
    botSeen.push(await answer(bot));
    say(web, "whoami", "iso-web", { platform: "web", platform_user_id: "visitor-7" });
    expect((await answer(web)).payload.session_id).toBe("iso-web");
    // The bot hears nothing of the web session, and may not join alice's session by naming its owner.
    await expect(bot.nextOn("agent.v1.response", 500)).rejects.toThrow(/deadline/);
    const frame = (topic: string, payload: Record<string, unknown>) =>
      encodeFrame({ topic, payload: { type: "raw_json", ...payload }, signature: null, source_id: "x", timestamp: "", seq: 0 });
    bot.send(frame("client.v1.session.join", { session_id: "iso-web", owner: "alice" }));
    expect((await bot.nextOn("astrid.v1.error")).payload).toMatchObject({ code: "ASTRID_ERR_SESSION_DENIED" });
    // The same id without an owner is the bot's own session of that name: alice's events never reach it.
    bot.send(frame("client.v1.session.join", { session_id: "iso-web" }));
    expect((await bot.nextOn("client.v1.session.joined")).payload).toMatchObject({ session_id: "iso-web", owner: "discord-bot" });
    bot.send(frame("session.v1.request.get_messages", { session_id: "iso-web" }));
    say(web, "whoami", "iso-web", { platform: "web", platform_user_id: "visitor-7" });
    expect((await answer(web)).payload.session_id).toBe("iso-web");
    await expect(bot.nextOn("agent.v1.response", 500)).rejects.toThrow(/deadline/);
    expect(botSeen[0]!.payload.session_id).toBe("iso-bot");
    const tail = astrid(["audit", "tail", "-n", "300", "--json"]).out.trim().split("\n").map((l) => JSON.parse(l) as AuditEntry);
    expect(tail.some((e) => (e.action as { type?: string }).type === "client_session_denied")).toBe(true);
    bot.destroy();
    web.destroy();
  });

  it("`astrid frontend remove` revokes: the next handshake with that token is refused", async () => {
    const t = token("web-bridge");
    expect(astrid(["frontend", "remove", "web-bridge"]).code).toBe(0);
    await expect(frontend(t, "web")).rejects.toMatchObject({ code: "ASTRID_ERR_AUTH_FAILED" });
  });
});
