/**
 * The seam between the Discord bridge and Discord: the few things the bridge does with discord.js, as plain
 * interfaces. `discord-js-seam.ts` implements them with a real discord.js Client; the tests implement them in
 * process (Discord cannot be reached from CI), so everything the bridge decides is tested against a real daemon.
 */

/** Discord's limit on a message's content, in characters. */
export const DISCORD_MESSAGE_LIMIT = 2000;

/** A button under a message (`custom_id` comes back in the button's interaction). */
export interface SeamButton {
  customId: string;
  label: string;
  style: "primary" | "secondary" | "success" | "danger";
}

/** What the bridge posts: plain text (mentions are never parsed: the model cannot ping anyone), optional buttons. */
export interface OutgoingMessage {
  content: string;
  /** Buttons in one row (at most 5); `[]` removes the ones a message had. */
  buttons?: SeamButton[];
  /** The message this one answers (shown as a reply). */
  replyTo?: string;
}

/** A message the bridge posted, which it may edit later. */
export interface PostedMessage {
  readonly id: string;
  edit(message: OutgoingMessage): Promise<void>;
}

/** A channel, thread or DM the bridge can write to. */
export interface SeamChannel {
  readonly id: string;
  /** Shows "<bot> is typing…" for about 10 s (or until the bot posts). */
  sendTyping(): Promise<void>;
  send(message: OutgoingMessage): Promise<PostedMessage>;
}

/** Who wrote something on Discord. */
export interface SeamUser {
  /** The user's snowflake. */
  id: string;
  /** The name shown (global name, else username). */
  displayName: string;
  bot: boolean;
}

/** A message someone posted where the bot can read it. */
export interface IncomingMessage {
  id: string;
  content: string;
  author: SeamUser;
  channel: SeamChannel;
  /** True in a direct message to the bot. */
  direct: boolean;
  /** True when the message mentions the bot. */
  mentionsBot: boolean;
}

/** A slash command someone used. */
export interface CommandUse {
  name: string;
  /** The command's `text` option, "" when not given. */
  text: string;
  user: SeamUser;
  channel: SeamChannel;
  /** Answers the interaction (within Discord's 3 s); later output goes to the channel. */
  reply(message: OutgoingMessage & { ephemeral?: boolean }): Promise<void>;
}

/** A press of one of the bridge's buttons. */
export interface ButtonPress {
  customId: string;
  user: SeamUser;
  channelId: string;
  /** Replaces the message the button is on (within Discord's 3 s). */
  update(message: OutgoingMessage): Promise<void>;
  /** Answers only the person who pressed it. */
  replyPrivately(content: string): Promise<void>;
}

/** A slash command to register with Discord. */
export interface SlashCommand {
  /** 1–32 characters of lowercase letters, digits, `-` and `_`. */
  name: string;
  /** 1–100 characters. */
  description: string;
}

/** Everything the bridge needs from Discord. */
export interface DiscordSeam {
  /** The bot's own user id (known once connected). */
  readonly botUserId: string;
  onMessage(fn: (message: IncomingMessage) => void): void;
  onCommand(fn: (use: CommandUse) => void): void;
  onButton(fn: (press: ButtonPress) => void): void;
  /** Replaces the bot's global slash commands with these. */
  setCommands(commands: SlashCommand[]): Promise<void>;
}
