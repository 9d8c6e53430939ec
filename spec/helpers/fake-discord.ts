/**
 * An in-process fake of the Discord bridge's seam (discord/seam.ts): Discord as the bridge sees it, in memory,
 * with what it posted and every edit (and when), typing, slash command registrations, and button presses.
 */
import { DISCORD_MESSAGE_LIMIT, type ButtonPress, type CommandUse, type DiscordSeam, type IncomingMessage, type OutgoingMessage, type SeamChannel, type SeamUser, type SlashCommand } from "../../discord/seam";

/** One message the fake Discord holds, with every text it had. */
export interface FakeMessage {
  id: string;
  channel: string;
  content: string;
  history: Array<{ content: string; at: number }>;
  buttons: OutgoingMessage["buttons"];
  replyTo?: string;
}

/** Discord as the bridge sees it through the seam, in memory. */
export class FakeDiscord implements DiscordSeam {
  readonly botUserId = "1000000000000000001";
  private next = 2000000000000000000n;
  readonly messages: FakeMessage[] = [];
  readonly typing: Array<{ channel: string; at: number }> = [];
  commands: SlashCommand[] = [];
  private messageFns: Array<(m: IncomingMessage) => void> = [];
  private commandFns: Array<(u: CommandUse) => void> = [];
  private buttonFns: Array<(p: ButtonPress) => void> = [];

  id(): string {
    return String(this.next++);
  }

  channel(id: string): SeamChannel {
    return {
      id,
      sendTyping: async () => void this.typing.push({ channel: id, at: Date.now() }),
      send: async (m) => {
        expect(m.content.length).toBeGreaterThan(0);
        expect(m.content.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
        const msg: FakeMessage = { id: this.id(), channel: id, content: m.content, history: [{ content: m.content, at: Date.now() }], buttons: m.buttons, ...(m.replyTo ? { replyTo: m.replyTo } : {}) };
        this.messages.push(msg);
        return {
          id: msg.id,
          edit: async (e) => {
            expect(e.content.length).toBeLessThanOrEqual(DISCORD_MESSAGE_LIMIT);
            msg.content = e.content;
            msg.history.push({ content: e.content, at: Date.now() });
            if (e.buttons !== undefined) msg.buttons = e.buttons;
          },
        };
      },
    };
  }

  onMessage(fn: (m: IncomingMessage) => void): void {
    this.messageFns.push(fn);
  }
  onCommand(fn: (u: CommandUse) => void): void {
    this.commandFns.push(fn);
  }
  onButton(fn: (p: ButtonPress) => void): void {
    this.buttonFns.push(fn);
  }
  async setCommands(commands: SlashCommand[]): Promise<void> {
    this.commands = commands;
  }

  /** Someone posts `content` in `channel`; returns the message id. */
  post(channel: string, author: SeamUser, content: string, options: { mention?: boolean; direct?: boolean } = {}): string {
    const id = this.id();
    const text = options.mention ? `<@${this.botUserId}> ${content}` : content;
    for (const fn of this.messageFns) fn({ id, content: text, author, channel: this.channel(channel), direct: options.direct ?? false, mentionsBot: options.mention ?? false });
    return id;
  }

  /** Someone uses a slash command; resolves with the interaction's reply. */
  command(channel: string, user: SeamUser, name: string, text: string): Promise<OutgoingMessage & { ephemeral?: boolean }> {
    return new Promise((resolve) => {
      for (const fn of this.commandFns) fn({ name, text, user, channel: this.channel(channel), reply: async (m) => resolve(m) });
    });
  }

  /** Someone presses a button; resolves with what the bridge did: updated the message, or answered privately. */
  press(message: FakeMessage, customId: string, user: SeamUser): Promise<{ update?: OutgoingMessage; privately?: string }> {
    return new Promise((resolve) => {
      for (const fn of this.buttonFns) {
        fn({
          customId, user, channelId: message.channel,
          update: async (m) => {
            message.content = m.content;
            message.history.push({ content: m.content, at: Date.now() });
            if (m.buttons !== undefined) message.buttons = m.buttons;
            resolve({ update: m });
          },
          replyPrivately: async (content) => resolve({ privately: content }),
        });
      }
    });
  }

  /** The bot's messages in `channel` that answer message `replyTo` (the first) and the ones that follow it. */
  inChannel(channel: string): FakeMessage[] {
    return this.messages.filter((m) => m.channel === channel);
  }
}

