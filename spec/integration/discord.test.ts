/**
 * Issue #11: the Discord bridge. Discord cannot be reached from CI, so the bridge (discord/bridge.ts) runs in this
 * process against an in-process fake of its seam (discord/seam.ts) — and against a REAL daemon with the talker
 * fixture capsule, through the client SDK and a real frontend credential. The `astrid discord` command itself is run
 * as a process for what it decides before reaching Discord (the token).
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { connect as sdkConnect, type AstridClient } from "../../client";
import { DiscordBridge, MAX_PROMPT_CHARS, sessionOfChannel } from "../../discord/bridge";
import type { SeamUser } from "../../discord/seam";
import { adminRequest } from "../../protocol/admin-request";
import { FakeDiscord, type FakeMessage } from "../helpers/fake-discord";
import { CLI_BIN, cleanup, connect, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const alice: SeamUser = { id: "80351110224678912", displayName: "alice", bot: false };
const bob: SeamUser = { id: "80351110224678913", displayName: "bob", bot: false };
const otherBot: SeamUser = { id: "80351110224678914", displayName: "spam bot", bot: true };
const LISTENED = "300000000000000001";
const QUIET = "300000000000000002";
const THREAD = "300000000000000003";

let d: RunningDaemon;
let fake: FakeDiscord;
let client: AstridClient;
let bridge: DiscordBridge;
const logs: string[] = [];

/** Waits until `channel` holds a bot message whose text satisfies `test`. */
function botMessage(channel: string, test: (content: string) => boolean, timeoutMs = 10_000): Promise<FakeMessage> {
  return until(() => fake.inChannel(channel).find((m) => test(m.content)), (m) => m !== undefined, timeoutMs).then((m) => m!);
}

beforeAll(async () => {
  const workspace = tempHome();
  fs.cpSync(path.join(ROOT, "spec", "fixtures", "discord", "talker"), path.join(workspace, ".astrid", "capsules", "talker"), { recursive: true });
  d = await spawnDaemon({ args: ["--workspace", workspace] });
  const env = { ...process.env, ASTRID_HOME: d.home };
  const added = spawnSync(process.execPath, [CLI_BIN, "frontend", "add", "discord-test", "--platform", "discord", "--unlinked", "restricted"], { env, encoding: "utf8", timeout: 20_000 });
  expect(added.status).toBe(0);
  // The bridge's principal may list commands (astrid discord grants this itself, as the operator).
  const op = await connect(d);
  const created = await adminRequest(op, "AgentCreate", { name: "discord-test", groups: ["restricted"], grants: ["self:capsule:list"] });
  expect(created.status).not.toBe("Error");
  await op.close();
  client = await sdkConnect({ home: d.home, credential: "discord-test", clientName: "discord bridge test" });
  fake = new FakeDiscord();
  bridge = new DiscordBridge({ client, seam: fake, channels: new Set([LISTENED]), log: (l) => logs.push(l) });
  await bridge.start();
}, 40_000);

afterAll(async () => {
  bridge?.close();
  await client?.close();
  d?.child.kill("SIGTERM");
  await d?.exited;
  await cleanup();
});

describe("issue #11: the Discord bridge (fake seam, real daemon)", () => {
  it("registers the daemon's commands (GetCommands) as slash commands, and answers one in the channel", async () => {
    expect(fake.commands).toContainEqual({ name: "ping", description: "Answers pong and what follows" });
    const ack = await fake.command(LISTENED, alice, "ping", "hello there");
    expect(ack.content).toBe("alice used /ping hello there");
    await botMessage(LISTENED, (c) => c === "pong hello there");
    const unknown = await fake.command(LISTENED, alice, "nope", "");
    expect(unknown).toMatchObject({ ephemeral: true, content: expect.stringContaining("not a command") });
  });

  it("answers mentions anywhere and every message in a listened channel, as a reply; ignores bots and unaddressed talk", async () => {
    const asked = fake.post(QUIET, alice, "hello bridge", { mention: true });
    const answer = await botMessage(QUIET, (c) => c === "echo: hello bridge");
    expect(answer.replyTo).toBe(asked);
    fake.post(LISTENED, bob, "no mention needed");
    await botMessage(LISTENED, (c) => c === "echo: no mention needed");
    fake.post(QUIET, bob, "just chatting, not to the bot");
    fake.post(LISTENED, otherBot, "I am a bot");
    fake.post(LISTENED, { ...alice, id: fake.botUserId, bot: true }, "my own message");
    await sleep(800);
    expect(fake.messages.some((m) => /just chatting|I am a bot|my own message/.test(m.content))).toBe(false);
  });

  it("streams: the first delta is posted at once, then edited in place (at most once a second) to the final text; typing shows meanwhile", async () => {
    const typingBefore = fake.typing.length;
    const asked = fake.post(LISTENED, alice, "stream: finished");
    const msg = await botMessage(LISTENED, (c) => c.startsWith("part one"));
    expect(msg.replyTo).toBe(asked);
    expect(msg.content).toBe("part one ");
    expect(fake.typing.length).toBeGreaterThan(typingBefore);
    await until(() => msg.content, (c) => c === "part one part two finished", 10_000);
    expect(msg.history.map((h) => h.content)).toContain("part one ");
    for (let i = 1; i < msg.history.length; i++) expect(msg.history[i]!.at - msg.history[i - 1]!.at).toBeGreaterThanOrEqual(950);
    // One message: the edits replaced the text, nothing new was posted for this turn.
    expect(fake.inChannel(LISTENED).filter((m) => m.content.includes("part two")).length).toBe(1);
  });

  it("a 10 000-character reply is split into messages of at most 2 000 characters that together are the reply", async () => {
    const asked = fake.post(THREAD, bob, "long: 10000", { mention: true });
    const first = await botMessage(THREAD, (c) => c.startsWith("0000 "));
    expect(first.replyTo).toBe(asked);
    // Wait until the reply is complete: the last line of the text is there and nothing changes for a while.
    await until(() => fake.inChannel(THREAD).map((m) => m.content).join(""), (t) => t.length === 10_000, 15_000);
    const parts = fake.inChannel(THREAD);
    expect(parts.length).toBeGreaterThanOrEqual(5);
    expect(parts.length).toBeLessThanOrEqual(7);
    for (const p of parts) expect(p.content.length).toBeLessThanOrEqual(2000);
    let expected = "";
    for (let i = 0; expected.length < 10_000; i++) expected += `${String(i).padStart(4, "0")} ${"x".repeat(94)}\n`;
    expect(parts.map((p) => p.content).join("")).toBe(expected.slice(0, 10_000));
    // Cut at line ends (each part but the last ends with a newline), and each message edited at most once a second.
    for (const p of parts.slice(0, -1)) expect(p.content.endsWith("\n")).toBe(true);
    for (const p of parts) for (let i = 1; i < p.history.length; i++) expect(p.history[i]!.at - p.history[i - 1]!.at).toBeGreaterThanOrEqual(950);
  });

  it("a 4 000-character message reaches the agent whole; a longer one is refused with a clear message and not sent", async () => {
    fake.post(LISTENED, alice, "y".repeat(MAX_PROMPT_CHARS));
    await botMessage(LISTENED, (c) => c === `received ${MAX_PROMPT_CHARS} characters`);
    fake.post(LISTENED, alice, "z".repeat(MAX_PROMPT_CHARS + 1));
    const refusal = await botMessage(LISTENED, (c) => c.includes("ASTRID_ERR_MESSAGE_TOO_LARGE"));
    expect(refusal.content).toContain(`${MAX_PROMPT_CHARS + 1} characters`);
    await sleep(500);
    expect(fake.messages.some((m) => m.content === `received ${MAX_PROMPT_CHARS + 1} characters`)).toBe(false);
  });

  it("an approval request is a message with buttons: only the person who asked may press them, and the answer reaches the capsule", async () => {
    fake.post(LISTENED, alice, "approve: production");
    const ask = await botMessage(LISTENED, (c) => c.includes("🔐") && c.includes("production"));
    expect(ask.content).toContain("talker");
    expect(ask.content).toContain("deploy");
    expect(ask.buttons!.map((b) => b.label)).toEqual(["Approve once", "Approve for this conversation", "Always approve", "Deny"]);
    const session = ask.buttons!.find((b) => b.customId.endsWith(":approve_session"))!;
    const byBob = await fake.press(ask, session.customId, bob);
    expect(byBob.privately).toContain("Only the person");
    const byAlice = await fake.press(ask, session.customId, alice);
    expect(byAlice.update!.buttons).toEqual([]);
    expect(ask.content).toContain("→ Approve for this conversation (alice)");
    await botMessage(LISTENED, (c) => c === "decision: approve_session");
    const again = await fake.press(ask, session.customId, alice);
    expect(again.privately).toContain("no longer open");
  });

  it("each channel is a session and each Discord user a platform identity: replies reach only their own channel", async () => {
    const channels = ["400000000000000001", "400000000000000002"];
    fake.post(channels[0]!, alice, "only-in-one", { mention: true });
    fake.post(channels[1]!, bob, "only-in-two", { mention: true });
    await botMessage(channels[0]!, (c) => c === "echo: only-in-one");
    await botMessage(channels[1]!, (c) => c === "echo: only-in-two");
    expect(fake.inChannel(channels[0]!).map((m) => m.content)).toEqual(["echo: only-in-one"]);
    expect(fake.inChannel(channels[1]!).map((m) => m.content)).toEqual(["echo: only-in-two"]);
    expect(sessionOfChannel(channels[0]!)).toBe(`discord-${channels[0]}`);
    // Each Discord user acts as a provisioned principal of their own (unlinked policy restricted).
    const profiles = fs.readdirSync(path.join(d.home, "etc", "profiles"));
    for (const u of [alice, bob]) expect(profiles.some((f) => f.startsWith(`discord-${u.id}-`))).toBe(true);
    expect(logs).toEqual([]);
  });

  it("`astrid status` lists the connected frontend: its name, credential, users, sessions and bytes in and out", () => {
    const env = { ...process.env, ASTRID_HOME: d.home };
    const human = spawnSync(process.execPath, [CLI_BIN, "status"], { env, encoding: "utf8", timeout: 20_000 });
    expect(human.status).toBe(0);
    const line = /- discord bridge test \(credential discord-test\): (\d+) users, (\d+) sessions, ([\d.]+ (?:B|KiB|MiB)) in \/ ([\d.]+ (?:B|KiB|MiB)) out/.exec(human.stdout);
    expect(line).not.toBeNull();
    expect(human.stdout).toContain("Frontends: 1 connected");
    const json = spawnSync(process.execPath, [CLI_BIN, "status", "--json"], { env, encoding: "utf8", timeout: 20_000 });
    const bridgeConn = (JSON.parse(json.stdout) as { clients: Array<Record<string, unknown>> }).clients.find((c) => c.frontend === "discord-test")!;
    // alice and bob; sessions: every channel either of them spoke in (at least the five channels used above).
    expect(bridgeConn).toMatchObject({ via: "frontend", client_name: "discord bridge test", users: 2 });
    expect(bridgeConn.sessions).toBeGreaterThanOrEqual(5);
    // The 4 000-character prompt went in; the 10 000-character reply came out (its deltas and its whole).
    expect(bridgeConn.bytes_in).toBeGreaterThan(4000);
    expect(bridgeConn.bytes_out).toBeGreaterThan(20_000);
    expect(line![1]).toBe("2");
  });

  it("`astrid discord` with a missing or malformed token exits 1 with ASTRID_ERR_DISCORD_TOKEN_INVALID, before touching the daemon or Discord", () => {
    const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: d.home };
    delete env.ASTRID_DISCORD_TOKEN;
    const missing = spawnSync(process.execPath, [CLI_BIN, "discord"], { env, encoding: "utf8", timeout: 20_000 });
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/no Discord bot token: set ASTRID_DISCORD_TOKEN.*\[ASTRID_ERR_DISCORD_TOKEN_INVALID\]/);
    const secret = "not-a-token-but-a-secret-password";
    const bad = spawnSync(process.execPath, [CLI_BIN, "discord"], { env: { ...env, ASTRID_DISCORD_TOKEN: secret }, encoding: "utf8", timeout: 20_000 });
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("ASTRID_DISCORD_TOKEN is not a Discord bot token");
    expect(bad.stderr).toContain("[ASTRID_ERR_DISCORD_TOKEN_INVALID]");
    expect(bad.stderr + bad.stdout).not.toContain(secret);
    const file = path.join(tempHome(), "token");
    fs.writeFileSync(file, "abc.def.ghi\n");
    const fromFile = spawnSync(process.execPath, [CLI_BIN, "discord", "--token-file", file], { env, encoding: "utf8", timeout: 20_000 });
    expect(fromFile.status).toBe(1);
    expect(fromFile.stderr).toContain("[ASTRID_ERR_DISCORD_TOKEN_INVALID]");
    const badChannel = spawnSync(process.execPath, [CLI_BIN, "discord", "--channel", "general"], { env, encoding: "utf8", timeout: 20_000 });
    expect(badChannel.status).toBe(2);
    expect(badChannel.stderr).toMatch(/--channel general is not a Discord channel id .*\[ASTRID_ERR_INVALID_ARGUMENT\]/);
    // Nothing was created: the token is checked first.
    expect(fs.existsSync(path.join(d.home, "etc", "frontends", "discord.toml"))).toBe(false);
  });
});
