/**
 * The seam (`seam.ts`) implemented with a real discord.js Client: the only file that touches discord.js. Every
 * message the bot posts has mentions switched off (`allowedMentions: {parse: []}`), so neither the model nor a
 * user's display name can ping @everyone or anyone else. Loaded only by `astrid discord`.
 */
import {
  ActionRowBuilder, ButtonBuilder, ButtonStyle, Client, Events, GatewayIntentBits, MessageFlags, Partials, SlashCommandBuilder,
  type Message, type MessageEditOptions, type MessageCreateOptions, type SendableChannels, type User,
} from "discord.js";
import { AstridError } from "../protocol/errors";
import type { ButtonPress, CommandUse, DiscordSeam, IncomingMessage, OutgoingMessage, PostedMessage, SeamChannel, SeamUser, SlashCommand } from "./seam";

/** Longest wait for Discord's gateway to accept the bot. */
const LOGIN_TIMEOUT_MS = 30_000;
const NO_MENTIONS = { parse: [] as [] };
const STYLES = { primary: ButtonStyle.Primary, secondary: ButtonStyle.Secondary, success: ButtonStyle.Success, danger: ButtonStyle.Danger };

function rows(message: OutgoingMessage): ActionRowBuilder<ButtonBuilder>[] | undefined {
  if (message.buttons === undefined) return undefined;
  if (message.buttons.length === 0) return [];
  const row = new ActionRowBuilder<ButtonBuilder>();
  for (const b of message.buttons.slice(0, 5)) row.addComponents(new ButtonBuilder().setCustomId(b.customId).setLabel(b.label).setStyle(STYLES[b.style]));
  return [row];
}

function createOptions(message: OutgoingMessage): MessageCreateOptions {
  const components = rows(message);
  return {
    content: message.content,
    allowedMentions: NO_MENTIONS,
    ...(components ? { components } : {}),
    ...(message.replyTo ? { reply: { messageReference: message.replyTo, failIfNotExists: false } } : {}),
  };
}

function editOptions(message: OutgoingMessage): MessageEditOptions {
  const components = rows(message);
  return { content: message.content, allowedMentions: NO_MENTIONS, ...(components ? { components } : {}) };
}

function posted(message: Message): PostedMessage {
  return { id: message.id, edit: async (m) => void (await message.edit(editOptions(m))) };
}

function channelOf(channel: SendableChannels): SeamChannel {
  return {
    id: channel.id,
    sendTyping: () => channel.sendTyping(),
    send: async (m) => posted(await channel.send(createOptions(m))),
  };
}

function userOf(user: User, nickname?: string | null): SeamUser {
  return { id: user.id, displayName: nickname ?? user.globalName ?? user.username, bot: user.bot };
}

/** A connected discord.js seam and the function that disconnects it. */
export interface DiscordJsConnection {
  seam: DiscordSeam;
  close(): Promise<void>;
}

/**
 * Logs in with `token` and resolves once Discord's gateway accepted it. A token Discord refuses is
 * ASTRID_ERR_DISCORD_TOKEN_INVALID; a gateway that cannot be reached, ASTRID_ERR_DISCORD_UNREACHABLE.
 */
export async function connectDiscord(token: string): Promise<DiscordJsConnection> {
  const client = new Client({
    intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.MessageContent, GatewayIntentBits.DirectMessages],
    partials: [Partials.Channel],
    allowedMentions: NO_MENTIONS,
  });
  const ready = new Promise<void>((resolve) => client.once(Events.ClientReady, () => resolve()));
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.login(token).then(() => ready),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new AstridError("ASTRID_ERR_DISCORD_UNREACHABLE", `Discord's gateway did not accept the bot within ${LOGIN_TIMEOUT_MS / 1000} s`)), LOGIN_TIMEOUT_MS);
      }),
    ]);
  } catch (err) {
    await client.destroy();
    const e = err as { code?: unknown; status?: unknown; message?: string };
    if (e.code === "TokenInvalid" || e.status === 401) {
      throw new AstridError("ASTRID_ERR_DISCORD_TOKEN_INVALID", "Discord refused the bot token (reset it in the developer portal and set ASTRID_DISCORD_TOKEN again)", { cause: err });
    }
    if (err instanceof AstridError) throw err;
    throw new AstridError("ASTRID_ERR_DISCORD_UNREACHABLE", `cannot reach Discord: ${e.message ?? String(err)}`, { cause: err });
  } finally {
    clearTimeout(timer);
  }
  return { seam: seamOfClient(client), close: () => client.destroy() };
}

/** The seam over a discord.js Client (logged in, or built by a test with its REST calls replaced). */
export function seamOfClient(client: Client): DiscordSeam {
  return {
    get botUserId() {
      return client.user?.id ?? "";
    },
    onMessage(fn: (message: IncomingMessage) => void) {
      client.on(Events.MessageCreate, (m) => {
        if (!m.channel.isSendable()) return;
        fn({
          id: m.id, content: m.content, author: userOf(m.author, m.member?.nickname), channel: channelOf(m.channel),
          direct: m.channel.isDMBased(), mentionsBot: client.user !== null && m.mentions.users.has(client.user.id),
        });
      });
    },
    onCommand(fn: (use: CommandUse) => void) {
      client.on(Events.InteractionCreate, (i) => {
        if (!i.isChatInputCommand()) return;
        const channel = i.channel;
        if (!channel?.isSendable()) {
          void i.reply({ content: "The bot cannot post in this channel.", flags: MessageFlags.Ephemeral }).catch(() => undefined);
          return;
        }
        fn({
          name: i.commandName, text: i.options.getString("text") ?? "", user: userOf(i.user), channel: channelOf(channel),
          reply: async (m) => void (await i.reply({ content: m.content, allowedMentions: NO_MENTIONS, ...(m.ephemeral ? { flags: MessageFlags.Ephemeral } : {}) })),
        });
      });
    },
    onButton(fn: (press: ButtonPress) => void) {
      client.on(Events.InteractionCreate, (i) => {
        if (!i.isButton()) return;
        fn({
          customId: i.customId, user: userOf(i.user), channelId: i.channelId,
          update: async (m) => void (await i.update({ content: m.content, allowedMentions: NO_MENTIONS, components: rows(m) ?? [] })),
          replyPrivately: async (content) => void (await i.reply({ content, flags: MessageFlags.Ephemeral })),
        });
      });
    },
    async setCommands(commands: SlashCommand[]) {
      if (!client.application) throw new AstridError("ASTRID_ERR_DISCORD_UNREACHABLE", "not connected to Discord yet: slash commands cannot be registered");
      await client.application.commands.set(commands.map((c) =>
        new SlashCommandBuilder().setName(c.name).setDescription(c.description)
          .addStringOption((o) => o.setName("text").setDescription("What to pass to the command").setRequired(false)).toJSON()));
    },
  };
}
