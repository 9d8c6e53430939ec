/**
 * The Discord bridge: Discord messages and slash commands become prompts in the daemon, through the client SDK and
 * the bridge's frontend credential, each speaking for its Discord user (platform `discord`). A channel, thread or
 * DM is a session (`discord-<channel id>`); since the daemon keys sessions by principal, each person in a channel
 * has their own conversation there. Replies stream into the channel (ReplyStream), a typing indicator runs while
 * the agent works, and an approval a capsule asks for is a message with buttons only the person who asked can press.
 * Everything Discord-side goes through the seam (`seam.ts`), so this file never touches discord.js.
 */
import type { AstridClient, PlatformUser } from "../client/astrid-client";
import type { Turn } from "../client/turn";
import type { ApprovalDecision, ApprovalRequiredEvent } from "../client/turn-events";
import { isAstridError } from "../protocol/errors";
import { isDisplayName } from "../protocol/identity-names";
import { CAPSULES_LOADED_TOPIC } from "../protocol/topics";
import { ReplyStream } from "./reply-stream";
import type { ButtonPress, CommandUse, DiscordSeam, IncomingMessage, SeamButton, SeamChannel, SeamUser, SlashCommand } from "./seam";

/** The platform name Discord users have in the daemon (identity links, frontend credentials). */
export const DISCORD_PLATFORM = "discord";
/** Discord's own limit on what a person can type in one message (with Nitro); longer text is refused here. */
export const MAX_PROMPT_CHARS = 4000;
/** Turns the bridge runs at once over all channels; past it a new message is told to wait. */
export const MAX_OPEN_TURNS = 64;
/** Approval requests whose buttons still work; past it the oldest stop working (the daemon times them out). */
const MAX_OPEN_APPROVALS = 256;
/** Discord allows at most 100 global slash commands. */
const MAX_SLASH_COMMANDS = 100;
const COMMAND_NAME = /^[a-z0-9_-]{1,32}$/;

const DECISION_BUTTONS: Record<ApprovalDecision, Omit<SeamButton, "customId">> = {
  approve: { label: "Approve once", style: "success" },
  approve_session: { label: "Approve for this conversation", style: "primary" },
  approve_always: { label: "Always approve", style: "secondary" },
  deny: { label: "Deny", style: "danger" },
};

/** Options of a DiscordBridge. */
export interface DiscordBridgeOptions {
  client: AstridClient;
  seam: DiscordSeam;
  /** Channel ids where every message is a prompt; elsewhere only DMs and messages that mention the bot are. */
  channels?: ReadonlySet<string>;
  /** Least time between two rounds of edits of one reply (ms, default 1000). */
  editIntervalMs?: number;
  /** How often the typing indicator is renewed while the agent works (ms, default 8000; Discord shows it ~10 s). */
  typingIntervalMs?: number;
  /** Deadline of one turn (ms, default 120 000). */
  turnTimeoutMs?: number;
  /** Most messages one reply may take (default 10). */
  maxReplyMessages?: number;
  /** Where the bridge reports problems (default: nowhere). */
  log?: (line: string) => void;
}

/** The session a Discord channel, thread or DM is. */
export function sessionOfChannel(channelId: string): string {
  return `discord-${channelId}`;
}

/** The platform user a Discord user is. */
export function platformUserOf(user: SeamUser): PlatformUser {
  // The daemon takes printable names only (no control or format characters, no separator but the ASCII space):
  // a Discord name with a zero-width joiner or a no-break space would otherwise get every message refused.
  const name = Array.from(user.displayName.replace(/\p{C}/gu, "").replace(/\p{Z}/gu, " ")).slice(0, 64).join("").trim();
  return { platform: DISCORD_PLATFORM, platform_user_id: user.id, ...(isDisplayName(name) ? { display_name: name } : {}) };
}

/** A running bridge. */
export class DiscordBridge {
  private readonly open = new Map<string, ReplyStream>();
  private readonly approvals = new Map<string, { requestId: string; discordUser: string; user: PlatformUser; text: string }>();
  private approvalCounter = 0;
  private commands = new Set<string>();
  private readonly offs: Array<() => void> = [];
  private closed = false;

  constructor(private readonly options: DiscordBridgeOptions) {}

  /** Listens to Discord and registers the daemon's slash commands. */
  async start(): Promise<void> {
    const { seam, client } = this.options;
    seam.onMessage((m) => void this.onMessage(m).catch((err) => this.log(`message ${m.id}: ${String(err)}`)));
    seam.onCommand((u) => void this.onCommand(u).catch((err) => this.log(`/${u.name}: ${String(err)}`)));
    seam.onButton((p) => void this.onButton(p).catch((err) => this.log(`button ${p.customId}: ${String(err)}`)));
    this.offs.push(client.on(CAPSULES_LOADED_TOPIC, () => void this.syncCommands().catch((err) => this.log(`slash commands: ${String(err)}`))));
    await this.syncCommands();
  }

  /** Turns in progress. */
  get openTurns(): number {
    return this.open.size;
  }

  /** Registers the commands capsules declare (GetCommands) as Discord slash commands. */
  async syncCommands(): Promise<SlashCommand[]> {
    const reply = await this.options.client.request("GetCommands", undefined, { topicSuffix: "get_commands" });
    const wanted: SlashCommand[] = [];
    const names = new Set<string>();
    for (const c of Array.isArray(reply.data) ? (reply.data as Array<{ name?: unknown; description?: unknown }>) : []) {
      const name = String(c.name ?? "").toLowerCase();
      if (!COMMAND_NAME.test(name) || names.has(name) || wanted.length >= MAX_SLASH_COMMANDS) {
        this.log(`slash command ${JSON.stringify(c.name)} not registered (Discord allows 100 names of a-z 0-9 _ -, up to 32 long)`);
        continue;
      }
      names.add(name);
      const description = String(c.description ?? "").trim().slice(0, 100) || "No description";
      wanted.push({ name, description });
    }
    await this.options.seam.setCommands(wanted);
    this.commands = names;
    return wanted;
  }

  /** Stops: open replies stop updating, listeners are removed. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.offs.splice(0)) off();
    for (const stream of this.open.values()) stream.destroy();
    this.open.clear();
  }

  private log(line: string): void {
    this.options.log?.(line);
  }

  private listensIn(message: IncomingMessage): boolean {
    return message.direct || message.mentionsBot || (this.options.channels?.has(message.channel.id) ?? false);
  }

  private async onMessage(message: IncomingMessage): Promise<void> {
    if (this.closed || message.author.bot || message.author.id === this.options.seam.botUserId || !this.listensIn(message)) return;
    const bot = this.options.seam.botUserId;
    const text = message.content.replace(new RegExp(`<@!?${bot}>`, "g"), "").trim();
    if (text === "") return;
    const say = (content: string) => message.channel.send({ content, replyTo: message.id });
    if (text.length > MAX_PROMPT_CHARS) {
      await say(`⚠️ That message is ${text.length} characters; the bridge takes at most ${MAX_PROMPT_CHARS}. Nothing was sent. [ASTRID_ERR_MESSAGE_TOO_LARGE]`);
      return;
    }
    await this.run(message.channel, message.author, message.id, text, false, say);
  }

  private async onCommand(use: CommandUse): Promise<void> {
    if (this.closed) return;
    if (!this.commands.has(use.name)) {
      await use.reply({ content: `/${use.name} is not a command of this daemon anymore.`, ephemeral: true });
      return;
    }
    const text = `/${use.name}${use.text.trim() ? ` ${use.text.trim()}` : ""}`;
    if (text.length > MAX_PROMPT_CHARS) {
      await use.reply({ content: `⚠️ At most ${MAX_PROMPT_CHARS} characters. [ASTRID_ERR_MESSAGE_TOO_LARGE]`, ephemeral: true });
      return;
    }
    // The interaction must be answered within 3 s; the reply itself streams into the channel like any other.
    await use.reply({ content: `${use.user.displayName} used ${text.slice(0, 1900)}` });
    await this.run(use.channel, use.user, undefined, text, true, (content) => use.channel.send({ content }));
  }

  /** Runs one turn for one person in one channel, one at a time per person and channel. */
  private async run(channel: SeamChannel, author: SeamUser, replyTo: string | undefined, text: string, command: boolean, say: (content: string) => Promise<unknown>): Promise<void> {
    const key = `${channel.id}\u0000${author.id}`;
    if (this.open.has(key)) {
      await say("⏳ Still answering your previous message; send this again when it is done.");
      return;
    }
    if (this.open.size >= MAX_OPEN_TURNS) {
      await say(`⏳ The bridge is answering ${MAX_OPEN_TURNS} messages already; try again in a moment. [ASTRID_ERR_RATE_LIMITED]`);
      return;
    }
    const user = platformUserOf(author);
    const stream = new ReplyStream(channel, {
      ...(replyTo ? { replyTo } : {}),
      editIntervalMs: this.options.editIntervalMs ?? 1000,
      maxMessages: this.options.maxReplyMessages ?? 10,
      onError: (err) => this.log(`channel ${channel.id}: Discord refused a post or edit: ${String(err)}`),
    });
    this.open.set(key, stream);
    const typing = new TypingIndicator(channel, this.options.typingIntervalMs ?? 8000);
    let turn: Turn;
    try {
      turn = this.options.client.prompt(sessionOfChannel(channel.id), text, { user, command, timeoutMs: this.options.turnTimeoutMs ?? 120_000 });
    } catch (err) {
      this.open.delete(key);
      await stream.fail(errorLine(err));
      return;
    }
    typing.start();
    try {
      for await (const event of turn) {
        if (event.type === "delta") stream.append(event.text);
        else if (event.type === "response") {
          typing.stop();
          await stream.finish(event.text);
        } else if (event.type === "approval_required") await this.askApproval(channel, author, user, event);
        else if (event.type === "elicit_request") await channel.send({ content: `A capsule asks for “${event.field.key}”; answer it with \`astrid chat\`: Discord cannot take it.` });
      }
    } catch (err) {
      await stream.fail(errorLine(err));
    } finally {
      typing.stop();
      this.open.delete(key);
    }
  }

  private async askApproval(channel: SeamChannel, author: SeamUser, user: PlatformUser, event: ApprovalRequiredEvent): Promise<void> {
    const n = String(++this.approvalCounter);
    const text = `🔐 ${event.capsule ? `**${event.capsule}** asks` : "A capsule asks"} to **${event.action}** \`${event.resource}\`${event.reason ? ` (${event.reason})` : ""}. Only ${author.displayName} can answer.`.slice(0, 1800);
    this.approvals.set(n, { requestId: event.request_id, discordUser: author.id, user, text });
    while (this.approvals.size > MAX_OPEN_APPROVALS) this.approvals.delete(this.approvals.keys().next().value as string);
    const options = event.options.length > 0 ? event.options : (Object.keys(DECISION_BUTTONS) as ApprovalDecision[]);
    await channel.send({ content: text, buttons: options.map((d) => ({ customId: `astrid-approval:${n}:${d}`, ...DECISION_BUTTONS[d] })) });
  }

  private async onButton(press: ButtonPress): Promise<void> {
    const m = /^astrid-approval:(\d+):(approve|approve_session|approve_always|deny)$/.exec(press.customId);
    if (!m) return;
    const open = this.approvals.get(m[1]!);
    if (!open) {
      await press.replyPrivately("This request is no longer open (it was answered or timed out).");
      return;
    }
    if (press.user.id !== open.discordUser) {
      await press.replyPrivately("Only the person whose message asked for this can answer it.");
      return;
    }
    const decision = m[2] as ApprovalDecision;
    this.approvals.delete(m[1]!);
    try {
      this.options.client.answerApproval(open.requestId, decision, { user: open.user });
    } catch (err) {
      await press.replyPrivately(errorLine(err));
      return;
    }
    await press.update({ content: `${open.text}\n→ ${DECISION_BUTTONS[decision].label} (${press.user.displayName})`, buttons: [] });
  }
}

function errorLine(err: unknown): string {
  const code = isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL";
  return `⚠️ ${err instanceof Error ? err.message : String(err)} [${code}]`;
}

/** "<bot> is typing…" while the agent works: Discord shows it ~10 s, so it is renewed until stopped. */
class TypingIndicator {
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly channel: SeamChannel, private readonly intervalMs: number) {}

  start(): void {
    if (this.timer) return;
    const send = () => void this.channel.sendTyping().catch(() => undefined);
    send();
    this.timer = setInterval(send, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
