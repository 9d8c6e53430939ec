/**
 * Issue #11: the seam over a REAL discord.js Client, without a network: the client's REST calls are replaced
 * (`client.rest.request`), gateway events are fed in as Discord's raw payloads, and the REST calls discord.js makes
 * are what is asserted — what Discord would receive.
 */
import { ChannelType, Client, ClientApplication, ClientUser, ComponentType, Events, InteractionType, type DMChannel } from "discord.js";
import { seamOfClient } from "../../../discord/discord-js-seam";
import type { ButtonPress, CommandUse, IncomingMessage } from "../../../discord/seam";

const BOT = "1000000000000000001";
const ALICE = { id: "80351110224678912", username: "alice", global_name: "Alice", discriminator: "0" };
const CHANNEL = "300000000000000001";

interface RestCall {
  method: string;
  fullRoute: string;
  body?: Record<string, unknown>;
}

function rawMessage(id: string, content: string, author: object, mentions: object[] = []) {
  return {
    id, channel_id: CHANNEL, content, author, timestamp: new Date().toISOString(), type: 0, attachments: [], embeds: [], mentions,
    mention_roles: [], pinned: false, tts: false, edited_timestamp: null, mention_everyone: false, components: [],
  };
}

let client: Client;
let calls: RestCall[];
let channel: DMChannel;

beforeEach(() => {
  client = new Client({ intents: [] });
  calls = [];
  let n = 0;
  (client.rest as unknown as { request: (r: RestCall) => Promise<unknown> }).request = async (req) => {
    calls.push(req);
    if (req.method === "POST" && req.fullRoute.endsWith("/messages")) return rawMessage(`5000000000000000${String(++n).padStart(2, "0")}`, String(req.body?.content), { id: BOT, username: "bot", discriminator: "0" });
    if (req.method === "PATCH") return rawMessage(req.fullRoute.split("/").pop()!, String(req.body?.content), { id: BOT, username: "bot", discriminator: "0" });
    if (req.method === "PUT") return [];
    return {};
  };
  client.user = new (ClientUser as unknown as new (c: Client, raw: object) => ClientUser)(client, { id: BOT, username: "bot", discriminator: "0", bot: true });
  channel = (client.channels as unknown as { _add(raw: object): DMChannel })._add({ id: CHANNEL, type: ChannelType.DM, recipients: [ALICE] });
});

afterEach(async () => {
  await client.destroy();
});

const interactionBase = { application_id: BOT, version: 1, channel_id: CHANNEL, channel: { id: CHANNEL, type: ChannelType.DM }, user: ALICE, locale: "en-US", app_permissions: "0", entitlements: [], authorizing_integration_owners: {}, context: 1 };
const handle = (raw: object) => (client as unknown as { actions: { InteractionCreate: { handle(raw: object): void } } }).actions.InteractionCreate.handle(raw);

describe("issue #11: the discord.js seam (real discord.js, REST replaced)", () => {
  it("a message becomes an IncomingMessage; typing, a reply with buttons and an edit become Discord's REST calls, mentions off", async () => {
    const seen: IncomingMessage[] = [];
    seamOfClient(client).onMessage((m) => seen.push(m));
    const raw = rawMessage("400000000000000001", `<@${BOT}> hello`, ALICE, [{ id: BOT, username: "bot", discriminator: "0" }]);
    client.emit(Events.MessageCreate, (channel.messages as unknown as { _add(raw: object): never })._add(raw));
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ id: "400000000000000001", content: `<@${BOT}> hello`, author: { id: ALICE.id, displayName: "Alice", bot: false }, direct: true, mentionsBot: true });
    await seen[0]!.channel.sendTyping();
    const posted = await seen[0]!.channel.send({ content: "hi @everyone", replyTo: "400000000000000001", buttons: [{ customId: "astrid-approval:1:deny", label: "Deny", style: "danger" }] });
    await posted.edit({ content: "edited", buttons: [] });
    expect(calls.map((c) => `${c.method} ${c.fullRoute}`)).toEqual([
      `POST /channels/${CHANNEL}/typing`,
      `POST /channels/${CHANNEL}/messages`,
      `PATCH /channels/${CHANNEL}/messages/${posted.id}`,
    ]);
    expect(calls[1]!.body).toMatchObject({
      content: "hi @everyone",
      allowed_mentions: { parse: [] },
      message_reference: { message_id: "400000000000000001", fail_if_not_exists: false },
      components: [{ type: 1, components: [{ type: 2, custom_id: "astrid-approval:1:deny", label: "Deny", style: 4 }] }],
    });
    expect(calls[2]!.body).toMatchObject({ content: "edited", components: [], allowed_mentions: { parse: [] } });
  });

  it("a slash command and a button press become CommandUse and ButtonPress; their answers are interaction callbacks", async () => {
    const seam = seamOfClient(client);
    const uses: CommandUse[] = [];
    const presses: ButtonPress[] = [];
    seam.onCommand((u) => uses.push(u));
    seam.onButton((p) => presses.push(p));
    handle({ ...interactionBase, id: "500000000000000001", type: InteractionType.ApplicationCommand, token: "t1", data: { id: "600000000000000001", name: "ping", type: 1, options: [{ name: "text", type: 3, value: "hello" }] } });
    handle({ ...interactionBase, id: "500000000000000002", type: InteractionType.MessageComponent, token: "t2", data: { custom_id: "astrid-approval:1:deny", component_type: ComponentType.Button }, message: rawMessage("700000000000000001", "ask", { id: BOT, username: "bot", discriminator: "0" }) });
    expect(uses).toHaveLength(1);
    expect(uses[0]).toMatchObject({ name: "ping", text: "hello", user: { id: ALICE.id, displayName: "Alice" } });
    expect(uses[0]!.channel.id).toBe(CHANNEL);
    expect(presses).toHaveLength(1);
    expect(presses[0]).toMatchObject({ customId: "astrid-approval:1:deny", channelId: CHANNEL, user: { id: ALICE.id } });
    await uses[0]!.reply({ content: "only you", ephemeral: true });
    await presses[0]!.update({ content: "done", buttons: [] });
    expect(calls.map((c) => `${c.method} ${c.fullRoute}`)).toEqual(["POST /interactions/500000000000000001/t1/callback", "POST /interactions/500000000000000002/t2/callback"]);
    expect(calls[0]!.body).toMatchObject({ type: 4, data: { content: "only you", flags: 64, allowed_mentions: { parse: [] } } });
    expect(calls[1]!.body).toMatchObject({ type: 7, data: { content: "done", components: [] } });
  });

  it("setCommands registers each command with an optional text option; before login it is a coded error", async () => {
    const seam = seamOfClient(client);
    await expect(seam.setCommands([])).rejects.toMatchObject({ code: "ASTRID_ERR_DISCORD_UNREACHABLE" });
    client.application = new (ClientApplication as unknown as new (c: Client, raw: object) => ClientApplication)(client, { id: BOT });
    await seam.setCommands([{ name: "ping", description: "Answers pong" }]);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ method: "PUT", fullRoute: `/applications/${BOT}/commands` });
    expect(calls[0]!.body).toEqual([expect.objectContaining({ name: "ping", description: "Answers pong", options: [expect.objectContaining({ name: "text", type: 3, required: false })] })]);
  });
});
