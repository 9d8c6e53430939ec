/**
 * The chat-completions streaming wire format (`stream: true`), parsed by hand: the `openai` npm client is not a
 * dependency of this package, and the kernel needs only this much of it. The body is Server-Sent Events: lines
 * `data: <json>` separated by blank lines, `:` comments, and a final `data: [DONE]`. Each JSON chunk carries
 * `choices[0].delta` with `content` (text) and/or `tool_calls` (`{index, id?, function: {name?, arguments?}}`,
 * the arguments arriving in pieces), and at the end a `finish_reason`. No I/O here.
 */
import { AstridError } from "../../protocol/errors";

/** One tool call the model asked for, assembled from its pieces; `arguments` is the raw JSON text. */
export interface ModelToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** What one piece of body produced. */
export interface SseProgress {
  /** New answer text, in order. */
  text: string;
  /** True once `[DONE]` arrived (or a chunk said why it finished and the stream then ended). */
  done: boolean;
}

/** Longest SSE line buffered while waiting for its end (a chunk larger than this is not an honest delta). */
const MAX_LINE_CHARS = 1024 * 1024;
/** Most tool calls one answer may ask for, and longest arguments text of one. */
const MAX_TOOL_CALLS = 64;
const MAX_TOOL_ARGUMENT_CHARS = 1024 * 1024;

/** Incremental parser of one streamed chat completion. */
export class ChatCompletionsStream {
  private partial = "";
  private data: string[] = [];
  private readonly calls = new Map<number, ModelToolCall>();
  private finish: string | null = null;
  private finished = false;

  /** Feeds decoded body text; throws ASTRID_ERR_MODEL_STREAM for a chunk that is not valid chat-completions JSON. */
  push(text: string): SseProgress {
    let out = "";
    this.partial += text;
    let newline: number;
    while ((newline = this.partial.search(/\r\n|\n|\r/)) !== -1) {
      const line = this.partial.slice(0, newline);
      this.partial = this.partial.slice(newline + (this.partial.startsWith("\r\n", newline) ? 2 : 1));
      out += this.line(line);
      if (this.finished) break;
    }
    if (this.partial.length > MAX_LINE_CHARS) throw broken(`a line of the stream is longer than ${MAX_LINE_CHARS} characters`);
    return { text: out, done: this.finished };
  }

  /** The body ended: what the last event held, and whether the answer was complete. */
  end(): SseProgress {
    let out = "";
    if (!this.finished && this.partial !== "") out += this.line(this.partial);
    this.partial = "";
    if (!this.finished) out += this.line("");
    // Some servers end the body after a chunk with a finish_reason and no [DONE]: that answer is complete.
    if (!this.finished && this.finish !== null) this.finished = true;
    return { text: out, done: this.finished };
  }

  /** Why the answer finished (`stop`, `tool_calls`, `length`, …), when a chunk said so. */
  get finishReason(): string | null {
    return this.finish;
  }

  /** The tool calls asked for, in index order (complete once `done`). */
  get toolCalls(): ModelToolCall[] {
    return [...this.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, call]) => call);
  }

  private line(line: string): string {
    if (line === "") {
      // A blank line ends an event: its data lines, joined by newlines, are one JSON chunk.
      if (this.data.length === 0) return "";
      const payload = this.data.join("\n");
      this.data = [];
      return this.event(payload);
    }
    if (line.startsWith(":")) return "";
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    return "";
  }

  private event(payload: string): string {
    if (payload.trim() === "[DONE]") {
      this.finished = true;
      return "";
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(payload);
    } catch {
      throw broken(`a chunk is not JSON: ${JSON.stringify(payload.slice(0, 120))}`);
    }
    if (chunk === null || typeof chunk !== "object") throw broken("a chunk is not a JSON object");
    const error = (chunk as { error?: unknown }).error;
    if (error !== undefined && error !== null) {
      const message = typeof error === "object" ? (error as { message?: unknown }).message : error;
      throw broken(`the endpoint reported an error mid-stream: ${String(message).slice(0, 500)}`);
    }
    const choices = (chunk as { choices?: unknown }).choices;
    if (choices === undefined) return ""; // e.g. a usage-only chunk
    if (!Array.isArray(choices)) throw broken("a chunk's `choices` is not an array");
    const choice = choices[0] as { delta?: unknown; finish_reason?: unknown } | undefined;
    if (choice === undefined) return "";
    if (typeof choice.finish_reason === "string") this.finish = choice.finish_reason;
    const delta = choice.delta as { content?: unknown; tool_calls?: unknown } | undefined;
    if (delta === undefined || delta === null) return "";
    if (typeof delta !== "object") throw broken("a chunk's delta is not an object");
    if (delta.tool_calls !== undefined && delta.tool_calls !== null) this.toolPieces(delta.tool_calls);
    if (delta.content === undefined || delta.content === null) return "";
    if (typeof delta.content !== "string") throw broken("a chunk's delta.content is not text");
    return delta.content;
  }

  private toolPieces(pieces: unknown): void {
    if (!Array.isArray(pieces)) throw broken("a chunk's delta.tool_calls is not an array");
    for (const raw of pieces) {
      const piece = raw as { index?: unknown; id?: unknown; function?: { name?: unknown; arguments?: unknown } };
      const index = typeof piece?.index === "number" && Number.isInteger(piece.index) ? piece.index : 0;
      let call = this.calls.get(index);
      if (!call) {
        if (this.calls.size >= MAX_TOOL_CALLS) throw broken(`the model asked for more than ${MAX_TOOL_CALLS} tool calls at once`);
        call = { id: "", name: "", arguments: "" };
        this.calls.set(index, call);
      }
      if (typeof piece.id === "string") call.id = piece.id.slice(0, 256);
      if (typeof piece.function?.name === "string") call.name += piece.function.name;
      if (typeof piece.function?.arguments === "string") call.arguments += piece.function.arguments;
      if (call.name.length > 256 || call.arguments.length > MAX_TOOL_ARGUMENT_CHARS) throw broken("a tool call's name or arguments are too long");
    }
  }
}

function broken(why: string): AstridError {
  return new AstridError("ASTRID_ERR_MODEL_STREAM", `the model endpoint's stream is malformed: ${why}`);
}
