/**
 * `astrid chat` (reference §9.2): talk to the daemon's agent capsules. Connects to the running daemon or spawns an
 * ephemeral one for the current workspace, then either sends one prompt and prints the reply (headless: `-p`, or
 * text piped on stdin) or reads prompts line by line (a terminal, or `--repl`). Replies stream in as
 * `agent.v1.stream.delta` chunks and end with the final `agent.v1.response` of this chat's session.
 */
import { randomUUID } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import readline from "node:readline";
import type { DaemonClient } from "../../protocol/client";
import { AstridError, isAstridError } from "../../protocol/errors";
import type { IpcMessage, IpcPayload } from "../../protocol/ipc-message";
import { APPROVAL_RESPONSE_PREFIX, APPROVAL_TOPIC, CLIENT_DISCONNECT_TOPIC, CLIENT_ERROR_TOPIC, ELICIT_RESPONSE_PREFIX, ELICIT_TOPIC, ONBOARDING_REQUIRED_TOPIC } from "../../protocol/topics";
import { parseUuid, UUID_FORMAT } from "../../protocol/uuid";
import type { AstridHome } from "../../kernel/home";
import { operatorEnvDir } from "../../kernel/capsules/capsule-env";
import { describeReloadEvent } from "./reload-events";
import { connect, daemonState, startDaemon } from "./daemon-control";

/** Exit status when no reply arrived in time (the reference's headless timeout status). */
export const CHAT_TIMEOUT_EXIT = 53;

const PROMPT_TOPIC = "user.v1.prompt";
const COMMAND_TOPIC = "cli.v1.command.execute";
const RESPONSE_TOPIC = "agent.v1.response";
const DELTA_TOPIC = "agent.v1.stream.delta";
const HISTORY_REQUEST_TOPIC = "session.v1.request.get_messages";
const HISTORY_RESPONSE_PREFIX = "session.v1.response.get_messages.";

/** What `astrid chat` was asked to do. */
export interface ChatOptions {
  /** Resume this session (a UUID); a new one otherwise. */
  session?: string;
  /** Headless: send this prompt (after any text piped on stdin) and exit after the reply. */
  prompt?: string;
  /** Read prompts line by line even when stdin is not a terminal. */
  repl: boolean;
  json: boolean;
  /** How long to wait for a reply. */
  timeoutSecs: number;
  /** The workspace of a daemon this command spawns. */
  workspace: string;
  /** `-y/--yes`: approve capsules' approval requests without asking when nobody can be asked (headless, piped). */
  yes?: boolean;
  /** `--agent NAME`: the agent capsule that answers this session (sent with each prompt as `context.agent`). */
  agent?: string;
}

/** With `-p`, piped text is read only if some arrives within this long (an idle inherited stdin must not hang). */
const PIPED_GRACE_MS = 200;

/** Runs a chat; resolves with the exit status. */
export async function runChat(home: AstridHome, options: ChatOptions): Promise<number> {
  // Canonical form, so that `-s` spelt with capitals or without hyphens resumes the same session.
  const session = options.session === undefined ? undefined : parseUuid(options.session);
  if (session === null) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", `--session must be ${UUID_FORMAT}, not ${JSON.stringify(options.session)}`);
  }
  if (!Number.isFinite(options.timeoutSecs) || options.timeoutSecs <= 0) {
    throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "--timeout must be a positive number of seconds");
  }
  const interactive = options.prompt === undefined && (process.stdin.isTTY === true || options.repl);
  // Read piped input before spawning anything: empty input with nothing else to send is a usage error.
  let text = options.prompt;
  if (!interactive && process.stdin.isTTY !== true) {
    const piped = (await readPiped(process.stdin, options.prompt === undefined ? undefined : PIPED_GRACE_MS)).trim();
    text = [piped, options.prompt?.trim()].filter((t) => t).join("\n\n");
  }
  if (!interactive && !text) throw new AstridError("ASTRID_ERR_INVALID_ARGUMENT", "nothing to send: give -p <text>, pipe text on stdin, or use a terminal");

  const client = await ensureDaemon(home, options);
  const chat = new Conversation(client, session ?? randomUUID(), options.json);
  if (options.agent !== undefined) chat.agent = options.agent;
  chat.questions = new AutoAnswers(client, options.yes === true, home);
  try {
    if (!interactive) {
      const outcome = await chat.send(topicFor(text!), text!, options.timeoutSecs * 1000);
      if (outcome === "lost") throw Conversation.lostError();
      if (outcome === "timeout") return chat.timedOut(options.timeoutSecs);
      return 0;
    }
    return await repl(chat, client, options, home);
  } finally {
    try {
      client.publish(CLIENT_DISCONNECT_TOPIC, { type: "disconnect", reason: "chat ended" } as IpcPayload);
    } catch {
      // the daemon went away first; nothing to say goodbye to
    }
    await client.close();
  }
}

/** Connects to the live daemon, or spawns an ephemeral one for the workspace (it idles out after the chat). */
async function ensureDaemon(home: AstridHome, options: ChatOptions): Promise<DaemonClient> {
  if ((await daemonState(home)) !== "live") {
    const progress = !options.json && process.stderr.isTTY === true;
    try {
      await startDaemon(home, {
        ephemeral: true,
        workspace: options.workspace,
        env: process.env,
        onPoll: progress ? (ms) => process.stderr.write(`\rStarting Astrid daemon… ${(ms / 1000).toFixed(1)} s`) : undefined,
      });
    } catch (err) {
      // Another chat or start brought a daemon up at the same moment: talk to that one.
      if (!isAstridError(err) || err.code !== "ASTRID_ERR_ALREADY_RUNNING") throw err;
    }
    if (progress) process.stderr.write("\r\x1b[K");
  }
  return connect(home);
}

/**
 * Where a line goes: a slash command (`/remember milk`, one line) to the capsules' commands, anything else to the
 * agent as a prompt — the same at the terminal, in `--repl` and with `-p`.
 */
function topicFor(text: string): string {
  const line = text.trim();
  return line.startsWith("/") && !line.includes("\n") ? COMMAND_TOPIC : PROMPT_TOPIC;
}

/** How one turn ended. */
type Outcome = "replied" | "timeout" | "cancelled" | "lost";

/**
 * One chat session over one connection: sends prompts, prints what comes back for this session. Each prompt
 * carries a fresh `context.turn_id`; an agent that echoes `turn_id` in its replies (the built-in assistant does)
 * lets a late reply to a timed-out or cancelled turn be told apart from the reply to the current one. Replies
 * without one are matched by session alone, as the reference does.
 */
class Conversation {
  private waiter: ((outcome: Outcome) => void) | undefined;
  private turn: string | undefined;
  private streamed = false;
  private readonly history = new Map<string, (messages: unknown[]) => void>();
  /** Turns the user cancelled (Ctrl-C): whatever still arrives for them is dropped, not shown. */
  private readonly cancelled = new Set<string>();
  /** The last turn ended by a cancel: replies without a turn_id arriving between turns are its leftovers. */
  private cancelledLast = false;
  /** Questions held until the current turn is over. */
  private readonly afterTurn: Array<() => void> = [];
  /** Set when the daemon closed the connection (it shut down or died): nothing more will arrive. */
  lost = false;
  /** Called once when the connection is lost (the REPL stops reading). */
  onLost: (() => void) | undefined;
  /** The agent capsule this session asked for (`--agent`), sent with each prompt; the daemon's choice otherwise. */
  agent: string | undefined;
  /** Who answers capsules' questions: the person at the terminal, or the --yes rule. */
  questions: Questions | undefined;

  constructor(private readonly client: DaemonClient, readonly session: string, private readonly json: boolean) {
    client.on("message", (message: IpcMessage) => this.onMessage(message));
    client.on("close", () => {
      this.lost = true;
      this.settle("lost");
      this.onLost?.();
    });
  }

  /** The error for a chat whose daemon went away. */
  static lostError(): AstridError {
    return new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the daemon closed the connection (it shut down or crashed; see astrid status and its log)");
  }

  /** Publishes a prompt (or a slash command) and resolves once its final reply arrived or the turn ended otherwise. */
  send(topic: string, text: string, timeoutMs: number): Promise<Outcome> {
    if (this.lost) return Promise.resolve("lost");
    this.streamed = false;
    this.cancelledLast = false;
    const turn = randomUUID();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle("timeout"), timeoutMs);
      this.waiter = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
      this.turn = turn;
      try {
        this.client.publish(topic, { type: "user_input", text, session_id: this.session, context: { turn_id: turn, ...(this.agent !== undefined ? { agent: this.agent } : {}) } } as IpcPayload);
      } catch (err) {
        clearTimeout(timer);
        this.waiter = undefined;
        reject(err as Error);
      }
    });
  }

  /** Stops waiting for the current reply and asks the agent to stop its turn (Ctrl-C). */
  cancel(): void {
    const turn = this.turn;
    this.settle("cancelled");
    try {
      this.client.publish(PROMPT_TOPIC, { type: "user_input", text: "", session_id: this.session, context: { action: "cancel_turn", turn_id: turn } } as IpcPayload);
    } catch {
      // the connection is gone; the close handler reports it
    }
  }

  get waiting(): boolean {
    return this.waiter !== undefined;
  }

  /** Prints the headless timeout message; returns the exit status for it. */
  timedOut(secs: number): number {
    if (this.streamed) process.stdout.write("\n");
    process.stderr.write(`astrid: no reply within ${secs} s — is an agent capsule loaded? (astrid capsule list) [ASTRID_ERR_TIMEOUT]\n`);
    return CHAT_TIMEOUT_EXIT;
  }

  /** The session's earlier messages from whichever capsule keeps them; [] when none answers within `timeoutMs`. */
  messages(timeoutMs: number): Promise<unknown[]> {
    const correlation = randomUUID().replace(/-/g, "");
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.history.delete(correlation);
        resolve([]);
      }, timeoutMs);
      this.history.set(correlation, (messages) => {
        clearTimeout(timer);
        this.history.delete(correlation);
        resolve(messages);
      });
      try {
        this.client.publish(HISTORY_REQUEST_TOPIC, { type: "raw_json", session_id: this.session, correlation_id: correlation } as IpcPayload);
      } catch {
        clearTimeout(timer);
        resolve([]);
      }
    });
  }

  private settle(outcome: Outcome): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (outcome === "cancelled") {
      this.cancelledLast = true;
      if (this.turn !== undefined) this.cancelled.add(this.turn);
    }
    if (outcome !== "replied") this.turn = undefined;
    if (this.streamed && outcome !== "replied") process.stdout.write("\n");
    this.streamed = false;
    waiter?.(outcome);
    for (const ask of this.afterTurn.splice(0)) ask();
  }

  private onMessage(message: IpcMessage): void {
    const payload = message.payload as Record<string, unknown>;
    if (message.topic.startsWith(HISTORY_RESPONSE_PREFIX)) {
      const data = (payload.type === "custom" ? payload.data : payload) as { messages?: unknown } | undefined;
      this.history.get(message.topic.slice(HISTORY_RESPONSE_PREFIX.length))?.(Array.isArray(data?.messages) ? data.messages : []);
      return;
    }
    if (message.topic === ONBOARDING_REQUIRED_TOPIC) {
      if (typeof payload.capsule_id !== "string" || !Array.isArray(payload.fields)) return;
      // Asked once the current turn is over: the agent's reply (which says what is asked, and why) comes first.
      const ask = () => this.questions?.onboarding(payload as unknown as OnboardingRequired);
      if (this.waiter) this.afterTurn.push(ask);
      else ask();
      return;
    }
    const reload = describeReloadEvent(message.topic, payload);
    if (reload !== undefined) {
      // A capsule author's edit was picked up (or did not load): said on stderr, where it cannot mix with replies.
      if (!this.json) process.stderr.write(`${reload}\n`);
      return;
    }
    if (message.topic === APPROVAL_TOPIC) {
      // The daemon sends a session's approvals only to that session's connections; the check is belt and braces.
      if (payload.type === "approval_required" && payload.session_id === this.session && typeof payload.request_id === "string") {
        this.questions?.approval(payload as unknown as ApprovalRequired);
      }
      return;
    }
    if (message.topic === ELICIT_TOPIC) {
      if (payload.type === "elicit_request" && typeof payload.request_id === "string") this.questions?.elicit(payload as unknown as ElicitRequest);
      return;
    }
    if (message.topic === CLIENT_ERROR_TOPIC) {
      process.stderr.write(`astrid: the daemon refused a message: ${String(payload.message ?? JSON.stringify(payload))}${payload.code ? ` [${String(payload.code)}]` : ""}\n`);
      return;
    }
    if (payload.session_id !== this.session || typeof payload.text !== "string") return;
    // A reply that names a turn other than the current one belongs to a turn that timed out or was cancelled; one
    // without a turn_id that arrives while no turn is awaited is late too (an agent that does not echo turn_id).
    const turnId = typeof payload.turn_id === "string" ? payload.turn_id : undefined;
    const late = turnId !== undefined ? turnId !== this.turn : this.waiter === undefined;
    // The user cancelled that turn: its reply is not wanted, and printing it would pass it off as an answer.
    if (late && (turnId === undefined ? this.cancelledLast : this.cancelled.has(turnId))) return;
    if (message.topic === DELTA_TOPIC) {
      if (this.json || late) return;
      this.streamed = true;
      process.stdout.write(payload.text);
    } else if (message.topic === RESPONSE_TOPIC && payload.is_final !== false) {
      if (this.json) {
        process.stdout.write(`${JSON.stringify({ session_id: this.session, response: payload.text, ...(late ? { late: true } : {}) })}\n`);
      } else if (late) {
        process.stdout.write(`(late reply to an earlier turn) ${payload.text}\n`);
      } else {
        process.stdout.write(this.streamed ? "\n" : `${payload.text}\n`);
      }
      if (late) return;
      this.streamed = false;
      this.settle("replied");
    }
  }
}

/** Reads prompts line by line until end of input or /quit; exit 53 when any prompt got no reply in time. */
async function repl(chat: Conversation, client: DaemonClient, options: ChatOptions, home: AstridHome): Promise<number> {
  const tty = process.stdin.isTTY === true && process.stdout.isTTY === true;
  const say = (line: string) => {
    if (!options.json) process.stdout.write(`${line}\n`);
  };
  // Notes about the chat (banner, cancelled, timed out) go to stderr: stdout carries replies only, so
  // `astrid chat --repl < prompts > replies` keeps a clean file.
  const note = (line: string) => {
    if (!options.json) process.stderr.write(`${line}\n`);
  };
  note(`Astrid chat — session ${chat.session}. /help lists commands, /quit leaves.`);
  if (options.session !== undefined) {
    const earlier = await chat.messages(2000);
    if (options.json) process.stdout.write(`${JSON.stringify({ session_id: chat.session, history: earlier })}\n`);
    else if (earlier.length > 0) {
      say("— earlier in this session —");
      for (const m of earlier as Array<{ role?: string; content?: string }>) say(`${m.role === "user" ? "you" : "astrid"}: ${m.content}`);
      say("—");
    }
  }
  const rl = readline.createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty, prompt: "you › " });
  // At a terminal the person answers capsules' questions; reading prompts from a pipe, the --yes rule does.
  if (tty) chat.questions = new TerminalQuestions(client, rl, () => chat.waiting, home);
  chat.onLost = () => {
    rl.close();
    process.stdin.destroy();
  };
  let timeouts = 0;
  rl.on("SIGINT", () => onInterrupt(rl, chat, note));
  // Leaving by Ctrl-D or a second Ctrl-C leaves the cursor after the prompt: end the line, or the shell's prompt
  // is glued onto ours.
  let leftByCommand = false;
  if (tty) rl.once("close", () => leftByCommand || process.stdout.write("\n"));
  if (tty) rl.prompt();
  for await (const raw of rl) {
    const line = raw.trim();
    if (line === "") {
      if (tty) rl.prompt();
      continue;
    }
    if (["/quit", "/exit", "/q"].includes(line)) {
      leftByCommand = true;
      break;
    }
    if (line === "/help") say(await help(client));
    else if (line === "/agent" || line.startsWith("/agent ")) say(await agentCommand(client, chat, line.slice("/agent".length).trim()));
    else if (line === "/clear") {
      if (tty) process.stdout.write("\x1b[2J\x1b[H");
    } else {
      const outcome = await chat.send(topicFor(line), line, options.timeoutSecs * 1000);
      if (outcome === "lost") break;
      if (outcome === "cancelled") note("(cancelled)");
      if (outcome === "timeout") {
        timeouts++;
        if (options.json) process.stdout.write(`${JSON.stringify({ session_id: chat.session, error: { code: "ASTRID_ERR_TIMEOUT", message: `no reply within ${options.timeoutSecs} s` } })}\n`);
        else note(`(no reply within ${options.timeoutSecs} s — is an agent capsule loaded? see astrid capsule list)`);
      }
    }
    if (tty) rl.prompt();
  }
  rl.close();
  if (chat.lost) throw Conversation.lostError();
  return timeouts > 0 ? CHAT_TIMEOUT_EXIT : 0;
}

/** What a Ctrl-C pressed on an empty line arms: a second one, before anything else is typed, leaves. */
const armedInterrupts = new WeakSet<readline.Interface>();

/**
 * Ctrl-C in the REPL, as readline-based shells do it: while a reply is awaited it cancels the turn; with a
 * half-typed line it discards the line and shows a fresh prompt; on an empty line it says how to leave, and a
 * second Ctrl-C in a row leaves. Exported for the terminal tests' readline seam.
 */
export function onInterrupt(rl: readline.Interface, chat: { readonly waiting: boolean; cancel(): void }, note: (line: string) => void): void {
  if (chat.waiting) {
    armedInterrupts.delete(rl);
    chat.cancel();
    return;
  }
  if (rl.line.length > 0) {
    armedInterrupts.delete(rl);
    // Node's own REPL does the same: end the visible line, forget what was typed, prompt again.
    (rl as unknown as { clearLine(): void }).clearLine();
    rl.prompt();
    return;
  }
  if (armedInterrupts.has(rl)) {
    rl.close();
    return;
  }
  armedInterrupts.add(rl);
  process.stdout.write("\n");
  note("(To leave, press Ctrl-C again, Ctrl-D, or type /quit)");
  rl.prompt();
  // Anything typed disarms it: only two Ctrl-C in a row leave.
  const input = (rl as unknown as { input?: NodeJS.ReadableStream }).input;
  input?.once("keypress", () => armedInterrupts.delete(rl));
}

/**
 * `/agent`: lists the loaded agents, `*` marking the one answering this session (its `--agent` or `/agent` choice,
 * else the daemon's default); `/agent NAME` makes NAME this session's agent from the next prompt on.
 */
async function agentCommand(client: DaemonClient, chat: { agent: string | undefined }, name: string): Promise<string> {
  let agents: Array<{ name: string; default_agent?: boolean }>;
  try {
    const reply = await client.request("GetCapsuleMetadata");
    agents = (reply.data as Array<{ name: string; agent?: boolean; state?: string; default_agent?: boolean }>).filter((c) => c.agent === true && c.state === "ready");
  } catch (err) {
    return `Cannot list the agents: ${(err as Error).message}`;
  }
  const names = agents.map((a) => a.name).sort();
  if (name !== "") {
    if (!names.includes(name)) return `No agent named ${JSON.stringify(name)} is loaded. Agents: ${names.join(", ") || "none"}.`;
    chat.agent = name;
    return `This session's agent is now ${name}.`;
  }
  if (names.length === 0) return "No agent is loaded (see astrid capsule list).";
  const current = chat.agent ?? agents.find((a) => a.default_agent === true)?.name;
  return names.map((n) => `${n === current ? "*" : " "} ${n}${agents.find((a) => a.name === n)?.default_agent ? " (default)" : ""}`).join("\n");
}

/** The built-in slash commands and the ones capsules declare (GetCommands). */
async function help(client: DaemonClient): Promise<string> {
  const lines = ["  /help     this list", "  /agent [NAME]  list the agents (* answers this session), or switch to NAME", "  /clear    clear the screen", "  /quit     leave (also /exit, /q, Ctrl-C, Ctrl-D)"];
  try {
    const reply = await client.request("GetCommands", undefined, { topicSuffix: "get_commands" });
    if (reply.status === "Commands") {
      for (const c of reply.data as Array<{ name: string; description: string; provider_capsule: string }>) {
        lines.push(`  /${c.name.padEnd(8)} ${c.description} (${c.provider_capsule})`);
      }
    }
  } catch {
    // the built-in list is still useful without the daemon's
  }
  return lines.join("\n");
}

/**
 * Reads piped input to its end. With `graceMs`, gives up at once if nothing (neither data nor end of input)
 * arrives within that time — `-p` with an inherited stdin that nobody writes to must not wait forever.
 */
function readPiped(stream: NodeJS.ReadStream, graceMs?: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const grace = graceMs === undefined ? undefined : setTimeout(() => {
      stream.off("data", onData).off("end", onEnd).off("error", reject);
      stream.pause();
      stream.unref?.();
      resolve("");
    }, graceMs);
    const onData = (chunk: Buffer) => {
      clearTimeout(grace);
      chunks.push(chunk);
    };
    const onEnd = () => {
      clearTimeout(grace);
      resolve(Buffer.concat(chunks).toString("utf8"));
    };
    stream.on("data", onData).once("end", onEnd).once("error", reject);
  });
}

/**
 * Answers the elicitation of a capsule being installed at this terminal (`astrid capsule install`): returns the
 * function that stops. Without a terminal nothing is answered here (another connection of the operator may).
 */
export function answerElicitations(client: DaemonClient): () => void {
  if (process.stdin.isTTY !== true || process.stdout.isTTY !== true) return () => undefined;
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: true });
  const questions = new TerminalQuestions(client, rl, () => true);
  const onMessage = (message: IpcMessage) => {
    const payload = message.payload as Record<string, unknown>;
    if (message.topic === ELICIT_TOPIC && payload.type === "elicit_request" && typeof payload.request_id === "string") {
      questions.elicit(payload as unknown as ElicitRequest);
    }
  };
  client.on("message", onMessage);
  return () => {
    client.off("message", onMessage);
    rl.close();
  };
}

/** A capsule's approval request, as the daemon sends it on `astrid.v1.approval`. */
interface ApprovalRequired {
  request_id: string;
  action: string;
  resource: string;
  reason: string;
  capsule?: string;
  session_id: string;
}

/** A capsule's question to the operator, as the daemon sends it on `astrid.v1.elicit`. */
interface ElicitRequest {
  request_id: string;
  capsule_id: string;
  field: { type: "text" | "secret" | "select" | "array"; key: string; description?: string; options?: string[]; default?: string };
}

/** A capsule's `[env]` that the operator must provide, as the daemon sends it on `astrid.v1.onboarding.required`. */
interface OnboardingRequired {
  capsule_id: string;
  fields: Array<{ key: string; prompt?: string; description?: string; field_type?: unknown; default?: string; placeholder?: string }>;
}

type Decision = "approve" | "approve_session" | "approve_always" | "deny";

/** Whoever answers the questions capsules ask during a chat. */
interface Questions {
  approval(request: ApprovalRequired): void;
  elicit(request: ElicitRequest): void;
  onboarding(request: OnboardingRequired): void;
}

/** The operator's `[env]` file of a capsule, which onboarding writes and the daemon reads at the capsule's load. */
function envFileOf(home: AstridHome, capsule: string): string {
  return path.join(operatorEnvDir(home), `${capsule}.env.json`);
}

/** Says where to put a capsule's `[env]` values when nobody at this chat can be asked. */
function onboardingAdvice(home: AstridHome, request: OnboardingRequired): string {
  return `astrid: capsule ${request.capsule_id} needs configuration (${request.fields.map((f) => f.key).join(", ")}): answer in an interactive astrid chat, or write ${envFileOf(home, request.capsule_id)} and run astrid capsule reload\n`;
}

/**
 * Stores onboarding answers the way the reference's TUI does: merged into the operator's `<capsule>.env.json`
 * (0600: it may hold a secret), then ReloadCapsules so the capsule loads with them. Values are never printed.
 */
async function storeOnboarding(client: DaemonClient, home: AstridHome, capsule: string, answers: Record<string, string>): Promise<string> {
  const file = envFileOf(home, capsule);
  let stored: Record<string, string> = {};
  try {
    const old = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
    if (old !== null && typeof old === "object" && !Array.isArray(old)) stored = old as Record<string, string>;
  } catch {
    // none yet, or unreadable: start afresh
  }
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify({ ...stored, ...answers }, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
  const reply = await client.request("ReloadCapsules", undefined, { timeoutMs: 60_000 });
  return reply.status === "Error" ? `Saved ${file}, but the reload failed: ${JSON.stringify(reply.data)}` : `Saved ${file}; ${capsule} reloaded with it.`;
}

/** Publishes a decision on `astrid.v1.approval.response.<id>`. */
function answerApproval(client: DaemonClient, request: ApprovalRequired, decision: Decision, reason?: string): void {
  try {
    client.publish(APPROVAL_RESPONSE_PREFIX + request.request_id,
      { type: "approval_response", request_id: request.request_id, decision, ...(reason !== undefined ? { reason } : {}) } as IpcPayload);
  } catch {
    // the connection is gone; the daemon times the request out as a denial
  }
}

/** What an approval request asks, in one line (the daemon already removed control characters). */
function describeApproval(request: ApprovalRequired): string {
  const capsule = request.capsule ?? /Capsule '([^']*)'/.exec(request.reason)?.[1] ?? "a capsule";
  return `${capsule} to ${request.action}${request.resource ? ` ${request.resource}` : ""}`;
}

/**
 * Nobody to ask (headless `-p`, or prompts piped into the REPL): approvals are denied, or with `--yes` approved
 * once (never remembered), as the reference's headless mode does. Elicitation is left to the operator's other
 * connections (`astrid capsule install`, an interactive chat): answering "cancel" here would fail an install that
 * someone elsewhere is about to answer.
 */
class AutoAnswers implements Questions {
  constructor(private readonly client: DaemonClient, private readonly yes: boolean, private readonly home: AstridHome) {}

  onboarding(request: OnboardingRequired): void {
    process.stderr.write(onboardingAdvice(this.home, request));
  }

  approval(request: ApprovalRequired): void {
    const what = describeApproval(request);
    if (this.yes) {
      process.stderr.write(`astrid: approved ${what} (--yes)\n`);
      answerApproval(this.client, request, "approve", "headless --yes mode");
    } else {
      process.stderr.write(`astrid: denied ${what} (headless mode; --yes approves)\n`);
      answerApproval(this.client, request, "deny", "headless mode");
    }
  }

  elicit(): void {}
}

/** The person at the terminal answers, one question at a time, between prompts or while a reply is awaited. */
class TerminalQuestions implements Questions {
  private queue: Promise<void> = Promise.resolve();
  /** Capsules whose onboarding is being asked: a repeat of the request meanwhile is not asked twice. */
  private readonly onboardingAsked = new Set<string>();

  constructor(private readonly client: DaemonClient, private readonly rl: readline.Interface, private readonly busy: () => boolean, private readonly home?: AstridHome) {}

  onboarding(request: OnboardingRequired): void {
    const home = this.home;
    if (home === undefined) return;
    if (this.onboardingAsked.has(request.capsule_id)) return;
    this.onboardingAsked.add(request.capsule_id);
    this.enqueue(async () => {
      try {
        process.stdout.write(`\n${request.capsule_id} needs configuration (an empty answer stores an empty value).\n`);
        const answers: Record<string, string> = {};
        for (const field of request.fields) {
          const secret = field.field_type === "Secret";
          const options = typeof field.field_type === "object" && field.field_type !== null ? (field.field_type as { Enum?: string[] }).Enum : undefined;
          process.stdout.write(`${field.prompt ?? field.key}${field.description ? ` — ${field.description}` : ""}\n`);
          if (options) options.forEach((o, i) => process.stdout.write(`  ${i + 1}) ${o}\n`));
          const hint = field.default !== undefined ? ` [${field.default}]` : field.placeholder !== undefined ? ` (e.g. ${field.placeholder})` : "";
          for (;;) {
            const raw = await this.ask(`${field.key}${hint}${secret ? " (hidden)" : ""} › `, secret);
            const text = raw.trim() === "" ? (field.default ?? "") : secret ? raw : raw.trim();
            const picked = options && text !== "" ? (/^\d+$/.test(text) ? options[Number(text) - 1] : options.find((o) => o === text)) : text;
            if (picked === undefined) {
              process.stdout.write(`Pick one of: ${options!.join(", ")}\n`);
              continue;
            }
            answers[field.key] = picked;
            break;
          }
        }
        process.stdout.write(`${await storeOnboarding(this.client, home, request.capsule_id, answers)}\n`);
      } catch (err) {
        process.stdout.write(`Could not store the configuration of ${request.capsule_id}: ${(err as Error).message}\n`);
      } finally {
        this.onboardingAsked.delete(request.capsule_id);
      }
    });
  }

  approval(request: ApprovalRequired): void {
    this.enqueue(async () => {
      process.stdout.write(`\n${request.reason}\n`);
      for (;;) {
        const answer = (await this.ask(`Allow ${describeApproval(request)}? [y]es / [s]ession / [a]lways / [n]o `)).trim().toLowerCase();
        const decision = ({ y: "approve", yes: "approve", s: "approve_session", session: "approve_session", a: "approve_always", always: "approve_always", n: "deny", no: "deny", "": "deny" } as Record<string, Decision>)[answer];
        if (decision) {
          answerApproval(this.client, request, decision);
          return;
        }
        process.stdout.write("Answer y, s, a or n.\n");
      }
    });
  }

  elicit(request: ElicitRequest): void {
    this.enqueue(async () => {
      const { field } = request;
      process.stdout.write(`\n${request.capsule_id} asks for ${field.key}${field.description ? `: ${field.description}` : ""}\n`);
      if (field.type === "select") (field.options ?? []).forEach((o, i) => process.stdout.write(`  ${i + 1}) ${o}\n`));
      const hint = field.type === "array" ? " (comma-separated)" : field.type === "select" ? " (number or name)" : "";
      const dflt = field.default !== undefined ? ` [${field.default}]` : "";
      let value: string | undefined;
      for (;;) {
        const raw = await this.ask(`${field.key}${hint}${dflt} (empty: ${field.default !== undefined ? "the default" : "cancel"}) › `, field.type === "secret");
        const text = raw.trim() === "" ? field.default : field.type === "secret" ? raw : raw.trim();
        if (text === undefined) break;
        if (field.type === "select") {
          const options = field.options ?? [];
          const picked = /^\d+$/.test(text) ? options[Number(text) - 1] : options.find((o) => o === text);
          if (picked === undefined) {
            process.stdout.write(`Pick one of: ${options.join(", ")}\n`);
            continue;
          }
          value = picked;
        } else {
          value = text;
        }
        break;
      }
      const answer = value === undefined ? {} : field.type === "array" ? { values: value.split(",").map((v) => v.trim()).filter((v) => v) } : { value };
      try {
        this.client.publish(ELICIT_RESPONSE_PREFIX + request.request_id, { type: "elicit_response", request_id: request.request_id, ...answer } as IpcPayload);
      } catch {
        // the connection is gone
      }
    });
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch(() => undefined).then(() => {
      if (!this.busy()) this.rl.prompt();
    });
  }

  /** Asks one line; with `secret`, what is typed is not echoed. */
  private ask(query: string, secret = false): Promise<string> {
    const rl = this.rl as unknown as { _writeToOutput: (s: string) => void };
    const write = rl._writeToOutput;
    if (secret) {
      // readline echoes through _writeToOutput: pass the question and the final newline, nothing typed.
      rl._writeToOutput = function (this: unknown, s: string) {
        if (s.includes(query) || s === "\r\n" || s === "\n") write.call(this, s.includes(query) ? query : s);
      };
    }
    return new Promise((resolve) => this.rl.question(query, (answer) => {
      rl._writeToOutput = write;
      resolve(answer);
    }));
  }
}
