/**
 * One open page: its WebSocket, its visitor (a platform user on the `web` platform) and its session. Prompts go to
 * the daemon through the SDK as that visitor; the turn's events come back to this tab only. One turn at a time per
 * tab; the approvals and elicitations shown to it are the only ones it may answer.
 */
import type { AstridClient, PlatformUser } from "../client/astrid-client";
import type { Turn } from "../client/turn";
import { isAstridError } from "../protocol/errors";
import type { Visitor } from "./login-gate";
import { PageMessageSchema, type ServerMessage } from "./tab-messages";

/** Unsent bytes a tab may leave queued before it is closed as not reading. */
export const MAX_TAB_BUFFERED_BYTES = 8 * 1024 * 1024;
/** Approval and elicit ids a tab remembers as answerable. */
const MAX_OPEN_QUESTIONS = 64;

/** The part of a `ws` WebSocket a tab uses (the package ships no types of its own). */
export interface TabSocket {
  readonly bufferedAmount: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  on(event: "message", listener: (data: Buffer, isBinary: boolean) => void): unknown;
  on(event: "close" | "error", listener: () => void): unknown;
}

/** What a tab needs from the server. */
export interface TabContext {
  client: () => AstridClient;
  maxPromptBytes: number;
  daemonUp: () => boolean;
  onHello: (tab: Tab) => void;
}

/** One page's WebSocket. */
export class Tab {
  session: string | undefined;
  private turn: Turn | undefined;
  private turnNumber = 0;
  private readonly questions = new Set<string>();
  /** Tool names by call id, for the result line (bounded: cleared with each turn). */
  private readonly tools = new Map<string, string>();
  closed = false;

  constructor(
    private readonly socket: TabSocket,
    readonly visitor: Visitor,
    private readonly ctx: TabContext,
  ) {
    socket.on("message", (data, isBinary) => this.onMessage(data, isBinary));
    socket.on("close", () => this.onClose());
    socket.on("error", () => undefined);
  }

  /** The platform user this tab speaks for. */
  get user(): PlatformUser {
    return { platform: "web", platform_user_id: this.visitor.id };
  }

  /** Sends one message, closing a tab that has stopped reading. */
  send(message: ServerMessage): void {
    if (this.closed) return;
    if (this.socket.bufferedAmount > MAX_TAB_BUFFERED_BYTES) {
      this.socket.close(1008, "the page is not reading its messages");
      return;
    }
    this.socket.send(JSON.stringify(message));
  }

  /** Shows an approval or elicitation to this tab and lets it answer that id. */
  ask(message: Extract<ServerMessage, { type: "approval_required" | "elicit_request" }>): void {
    this.questions.add(message.request_id);
    while (this.questions.size > MAX_OPEN_QUESTIONS) this.questions.delete(this.questions.values().next().value as string);
    this.send(message);
  }

  /** The daemon went away: the running turn cannot finish. */
  daemonLost(): void {
    this.send({ type: "daemon", state: "down" });
  }

  private error(code: string, message: string): void {
    this.send({ type: "error", code, message });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    if (isBinary) return this.error("ASTRID_ERR_MESSAGE_INVALID", "send JSON text frames");
    let value: unknown;
    try {
      value = JSON.parse(data.toString("utf8"));
    } catch {
      return this.error("ASTRID_ERR_MESSAGE_INVALID", "a message must be JSON");
    }
    const parsed = PageMessageSchema.safeParse(value);
    if (!parsed.success) return this.error("ASTRID_ERR_MESSAGE_INVALID", `unexpected message: ${parsed.error.issues[0]?.message ?? "invalid"}`);
    const m = parsed.data;
    if (m.type === "hello") {
      if (this.session !== undefined) return this.error("ASTRID_ERR_MESSAGE_INVALID", "this tab already said hello");
      this.session = m.session;
      this.send({ type: "ready", session: m.session, visitor: this.visitor.id, max_prompt_bytes: this.ctx.maxPromptBytes, daemon: this.ctx.daemonUp() ? "up" : "down" });
      this.ctx.onHello(this);
      return;
    }
    if (this.session === undefined) return this.error("ASTRID_ERR_MESSAGE_INVALID", "say hello first");
    try {
      if (m.type === "prompt") return this.prompt(m.text);
      if (m.type === "approval") {
        if (!this.questions.delete(m.request_id)) return this.error("ASTRID_ERR_NOT_FOUND", "no such approval request open in this tab");
        return this.ctx.client().answerApproval(m.request_id, m.decision, { user: this.user });
      }
      if (m.type === "elicit") {
        if (!this.questions.delete(m.request_id)) return this.error("ASTRID_ERR_NOT_FOUND", "no such question open in this tab");
        return this.ctx.client().answerElicit(m.request_id, { ...(m.value !== undefined ? { value: m.value } : {}), ...(m.values !== undefined ? { values: m.values } : {}) }, { user: this.user });
      }
      if (m.type === "refresh") return this.ctx.onHello(this);
    } catch (err) {
      this.error(isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL", err instanceof Error ? err.message : String(err));
    }
  }

  private prompt(text: string): void {
    const bytes = Buffer.byteLength(text);
    if (bytes > this.ctx.maxPromptBytes) {
      return this.error("ASTRID_ERR_MESSAGE_TOO_LARGE", `the prompt is ${bytes} bytes; this page accepts at most ${this.ctx.maxPromptBytes} (nothing was sent)`);
    }
    if (text.trim() === "") return this.error("ASTRID_ERR_INVALID_ARGUMENT", "the prompt is empty");
    if (this.turn?.open) return this.error("ASTRID_ERR_RATE_LIMITED", "wait for the reply to the previous prompt");
    const n = ++this.turnNumber;
    this.tools.clear();
    const turn = this.ctx.client().prompt(this.session!, text, { user: this.user });
    this.turn = turn;
    this.send({ type: "turn_start", turn: n });
    void (async () => {
      try {
        for await (const event of turn) {
          if (event.type === "delta") this.send({ type: "delta", turn: n, text: event.text });
          else if (event.type === "response") this.send({ type: "response", turn: n, text: event.text });
          else if (event.type === "tool_call") {
            if (this.tools.size < 256) this.tools.set(event.call_id, event.tool_name);
            this.send({ type: "tool", turn: n, name: event.tool_name, phase: "call" });
          } else if (event.type === "tool_result") {
            this.send({ type: "tool", turn: n, name: this.tools.get(event.call_id) ?? event.call_id, phase: "result", is_error: event.is_error });
          }
          // Approvals and elicitations reach the tab through the server's topic listeners, in a turn or not.
        }
      } catch (err) {
        this.send({ type: "turn_error", turn: n, code: isAstridError(err) ? err.code : "ASTRID_ERR_INTERNAL", message: err instanceof Error ? err.message : String(err) });
      }
    })();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    // A visitor who closes the tab mid-stream: stop listening for that turn; the agent's late replies are dropped.
    void this.turn?.return();
    if (this.session !== undefined) {
      try {
        this.ctx.client().leave(this.session, { user: this.user });
      } catch {
        // the daemon is away; the session is not joined there anymore anyway
      }
    }
  }
}
