/**
 * One streamed chat completion from the operator's endpoint, made by the kernel on a capsule's behalf through the
 * maintained `openai` client: the request goes out with the operator's key (the capsule never holds it), chunks are
 * taken as the client yields them, and the capsule pulls what accumulated with `read` — a long poll, so a delta
 * reaches the capsule as soon as it arrives without one message per token. Errors of the endpoint (and of the
 * client) become coded errors with a message a user can act on; the key is scrubbed from anything the endpoint
 * sends back. The client never retries (a retry would double the wait behind a failing endpoint) and logs nothing
 * (the daemon's log says what happened, once).
 */
import type OpenAI from "openai";
import type { Agent } from "undici";
import { AstridError, isAstridError } from "../../protocol/errors";
import type { ModelEndpointSettings } from "./model-endpoint";

/** One tool call the model asked for, assembled from its pieces; `arguments` is the raw JSON text. */
export interface ModelToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** What one `read` hands the capsule. */
export interface StreamRead {
  /** Answer text that arrived since the last read. */
  text: string;
  /** The answer is complete (then `finish_reason` and `tool_calls` are final). */
  done: boolean;
  finish_reason?: string | null;
  tool_calls?: ModelToolCall[];
}

/** Text held for the capsule before the stream is no longer pulled (backpressure towards the endpoint). */
const PAUSE_ABOVE_CHARS = 256 * 1024;
/** Most characters of one answer (text and tool-call arguments together). */
export const MAX_STREAM_CHARS = 16 * 1024 * 1024;
/** Most tool calls one answer may ask for, and longest name and arguments of one. */
const MAX_TOOL_CALLS = 64;
const MAX_TOOL_NAME_CHARS = 256;
const MAX_TOOL_ARGUMENT_CHARS = 1024 * 1024;
/**
 * openai and undici (together some 260 modules, a few hundred milliseconds) load on the first model call rather
 * than at every boot: most daemons never make one.
 */
function lib(): { OpenAI: typeof OpenAI; Agent: typeof Agent; fetch: typeof import("undici").fetch } {
  const openai = require("openai") as typeof import("openai");
  const undici = require("undici") as typeof import("undici");
  return { OpenAI: openai.OpenAI, Agent: undici.Agent, fetch: undici.fetch };
}

/** How much of an endpoint's error message is quoted. */
const ERROR_QUOTE_CHARS = 300;

/** The client the kernel uses for one endpoint, and the connection pool under it (closed with the service). */
export interface EndpointClient {
  client: OpenAI;
  agent: Agent;
}

/**
 * A client for the operator's endpoint: pooled connections with a connect deadline, ASTRID_AGENT_TIMEOUT_MS to the
 * response headers and between two pieces of the body (undici's own fetch, so its Agent applies), no retries. An
 * endpoint without a key (a local Ollama) gets no Authorization header at all.
 */
export function endpointClient(settings: ModelEndpointSettings): EndpointClient {
  const { OpenAI, Agent, fetch: undiciFetch } = lib();
  const agent = new Agent({ connect: { timeout: Math.min(settings.timeoutMs, 30_000) }, headersTimeout: settings.timeoutMs, bodyTimeout: settings.timeoutMs });
  const key = settings.apiKey?.reveal();
  const client = new OpenAI({
    baseURL: settings.baseUrl ?? undefined,
    // The client insists on a key; a keyless endpoint gets a placeholder that is never sent (header omitted below).
    apiKey: key ?? "unused",
    ...(key === undefined ? { defaultHeaders: { Authorization: null } } : {}),
    // Not the caller's environment: organisation and project only when the operator's config grows them.
    organization: null,
    project: null,
    maxRetries: 0,
    timeout: settings.timeoutMs,
    logLevel: "off",
    fetch: undiciFetch as unknown as typeof globalThis.fetch,
    fetchOptions: { dispatcher: agent } as never,
  });
  return { client, agent };
}

/** A streamed answer being received. */
export class ModelStream {
  private readonly abort = new AbortController();
  private readonly calls = new Map<number, ModelToolCall>();
  private finishReason: string | null = null;
  private pending = "";
  private chars = 0;
  private done = false;
  private failure: AstridError | null = null;
  private wake: (() => void) | null = null;
  /** Resolves the pull loop when the capsule has read what was held (set while paused). */
  private resume: (() => void) | null = null;
  private closed = false;

  /**
   * Starts the request (`body` is a chat-completions request; `stream: true` is set here). It returns at once, so
   * the capsule holds a stream it can close (a cancel) even while the endpoint has not answered yet; a refusal
   * (401, 429, 5xx, …) or an unreachable endpoint is thrown by the first `read`.
   */
  constructor(
    private readonly settings: ModelEndpointSettings,
    client: OpenAI,
    body: Record<string, unknown>,
    /** Called with each piece of text as it arrives (the kernel relays deltas without a trip through the capsule). */
    private readonly onText?: (text: string) => void,
  ) {
    void this.pull(client, body);
  }

  private async pull(client: OpenAI, body: Record<string, unknown>): Promise<void> {
    try {
      if (this.settings.baseUrl === null) throw new AstridError("ASTRID_ERR_MODEL_NOT_CONFIGURED", "no model endpoint is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) in the daemon's environment and restart it");
      const params = { ...body, stream: true } as unknown as OpenAI.ChatCompletionCreateParamsStreaming;
      const stream = await client.chat.completions.create(params, { signal: this.abort.signal });
      for await (const chunk of stream) {
        if (this.closed) return;
        const held = this.pending.length;
        this.take(chunk);
        // A chunk without text (the role, a piece of a tool call) is not worth waking the capsule for.
        if (this.pending.length > held) {
          this.onText?.(this.pending.slice(held));
          this.wake?.();
        }
        if (this.pending.length > PAUSE_ABOVE_CHARS) await new Promise<void>((resolve) => (this.resume = resolve));
        if (this.finished) return;
      }
      if (this.closed || this.finished) return;
      // The client ends quietly when the body ends, [DONE] or not: an answer without a finish_reason was cut off.
      if (this.finishReason === null) throw new AstridError("ASTRID_ERR_MODEL_STREAM", "the model endpoint closed the stream before the answer was complete; the reply is cut off");
      this.done = true;
    } catch (err) {
      if (this.closed) return;
      this.fail(this.coded(err));
    }
    this.wake?.();
  }

  /** One chunk: its text is held for the capsule, its tool-call pieces assembled, its finish_reason kept. */
  private take(chunk: OpenAI.ChatCompletionChunk): void {
    if (chunk === null || typeof chunk !== "object") throw broken("a chunk is not a JSON object");
    const choices = (chunk as { choices?: unknown }).choices;
    if (choices === undefined || choices === null) return; // e.g. a usage-only chunk
    if (!Array.isArray(choices)) throw broken("a chunk's `choices` is not an array");
    const choice = choices[0] as { delta?: unknown; finish_reason?: unknown } | undefined;
    if (choice === undefined || choice === null) return;
    if (typeof choice.finish_reason === "string") this.finishReason = choice.finish_reason;
    const delta = choice.delta as { content?: unknown; tool_calls?: unknown } | undefined | null;
    if (delta === undefined || delta === null) return;
    if (typeof delta !== "object") throw broken("a chunk's delta is not an object");
    if (delta.tool_calls !== undefined && delta.tool_calls !== null) this.toolPieces(delta.tool_calls);
    if (delta.content === undefined || delta.content === null) return;
    if (typeof delta.content !== "string") throw broken("a chunk's delta.content is not text");
    this.count(delta.content.length);
    this.pending += delta.content;
  }

  private toolPieces(pieces: unknown): void {
    if (!Array.isArray(pieces)) throw broken("a chunk's delta.tool_calls is not an array");
    for (const raw of pieces) {
      const piece = raw as { index?: unknown; id?: unknown; function?: { name?: unknown; arguments?: unknown } } | null;
      const index = typeof piece?.index === "number" && Number.isInteger(piece.index) ? piece.index : 0;
      let call = this.calls.get(index);
      if (!call) {
        if (this.calls.size >= MAX_TOOL_CALLS) throw broken(`the model asked for more than ${MAX_TOOL_CALLS} tool calls at once`);
        call = { id: "", name: "", arguments: "" };
        this.calls.set(index, call);
      }
      if (typeof piece?.id === "string") call.id = piece.id.slice(0, 256);
      if (typeof piece?.function?.name === "string") call.name += piece.function.name;
      if (typeof piece?.function?.arguments === "string") {
        this.count(piece.function.arguments.length);
        call.arguments += piece.function.arguments;
      }
      if (call.name.length > MAX_TOOL_NAME_CHARS || call.arguments.length > MAX_TOOL_ARGUMENT_CHARS) throw broken("a tool call's name or arguments are too long");
    }
  }

  private count(chars: number): void {
    this.chars += chars;
    if (this.chars > MAX_STREAM_CHARS) throw new AstridError("ASTRID_ERR_MODEL_STREAM", `the model's answer is longer than ${MAX_STREAM_CHARS} characters; it was cut off`);
  }

  /**
   * What arrived since the last read; waits up to `waitMs` when nothing did (then answers with empty text, not
   * done). A failure is thrown once the text before it was read.
   */
  async read(waitMs: number): Promise<StreamRead> {
    if (this.pending === "" && !this.finished) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.wake = null;
          resolve();
        }, waitMs);
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
    const text = this.pending;
    this.pending = "";
    this.unpause();
    if (text !== "") return this.done ? this.final(text) : { text, done: false };
    if (this.failure !== null) throw this.failure;
    if (this.done) return this.final("");
    if (this.closed) throw new AstridError("ASTRID_ERR_MODEL_STREAM", "the model stream was closed");
    return { text: "", done: false };
  }

  /** Aborts the request (the capsule closed it, its run ended, the daemon stops); idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.abort.abort();
    this.unpause();
    this.wake?.();
  }

  /** True once the answer completed, failed or was closed. */
  get finished(): boolean {
    return this.done || this.failure !== null || this.closed;
  }

  private unpause(): void {
    const resume = this.resume;
    this.resume = null;
    resume?.();
  }

  private final(text: string): StreamRead {
    const calls = [...this.calls.entries()].sort((a, b) => a[0] - b[0]).map(([, call]) => call);
    return { text, done: true, finish_reason: this.finishReason, tool_calls: calls };
  }

  private fail(err: AstridError): void {
    this.failure = err;
    this.abort.abort();
  }

  /** The coded error for whatever ended the request: the client's error classes, undici's, a parse error. */
  private coded(err: unknown): AstridError {
    if (isAstridError(err)) return err;
    const settings = this.settings;
    const { OpenAI } = lib();
    if (err instanceof OpenAI.APIConnectionTimeoutError) {
      return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `the model endpoint ${endpointLabel(settings)} did not answer within ${settings.timeoutMs} ms (ASTRID_AGENT_TIMEOUT_MS)`);
    }
    if (err instanceof OpenAI.APIConnectionError) {
      const cause = (err as { cause?: Error & { cause?: Error & { code?: string }; code?: string } }).cause;
      const detail = cause?.cause?.code ?? cause?.code ?? cause?.cause?.message ?? cause?.message ?? err.message;
      return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `cannot reach the model endpoint ${endpointLabel(settings)}: ${scrub(settings, String(detail))} — is the server running, and OPENAI_BASE_URL right?`);
    }
    if (err instanceof OpenAI.APIError) {
      const said = quoted(settings, err);
      const status = err.status;
      if (status === undefined) return new AstridError("ASTRID_ERR_MODEL_STREAM", `the model endpoint reported an error mid-answer${said}; the reply is cut off`);
      if (status === 401 || status === 403) {
        return new AstridError("ASTRID_ERR_MODEL_AUTH", `the model endpoint refused the API key (HTTP ${status})${said} — check OPENAI_API_KEY`);
      }
      if (status === 429) {
        const after = retrySeconds(err.headers?.get("retry-after") ?? undefined);
        return new AstridError("ASTRID_ERR_MODEL_RATE_LIMITED", `the model endpoint is rate limiting (HTTP 429)${said}; ${after !== null ? `retry after ${after} s` : "retry later"}`);
      }
      return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `the model endpoint ${endpointLabel(settings)} answered HTTP ${status}${said}${status === 404 ? ` — is ASTRID_AGENT_MODEL (${settings.model}) a model it serves, and the URL right?` : ""}`);
    }
    if (err instanceof SyntaxError) return broken(`a chunk is not JSON (${scrub(settings, err.message).slice(0, 120)})`);
    const e = err as Error & { code?: string; cause?: Error & { code?: string } };
    const code = e.cause?.code ?? e.code;
    if (code === "UND_ERR_BODY_TIMEOUT") {
      return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `the model endpoint sent nothing for ${settings.timeoutMs} ms mid-answer (ASTRID_AGENT_TIMEOUT_MS); the reply is cut off`);
    }
    const why = scrub(settings, [e.message, e.cause?.message].filter(Boolean).join(": ") || String(err));
    return new AstridError("ASTRID_ERR_MODEL_STREAM", `the connection to the model endpoint dropped mid-answer (${why.slice(0, ERROR_QUOTE_CHARS)}); the reply is cut off`);
  }
}

/** The endpoint's URL, for messages (never the key; the path may say which API version, so keep it). */
export function endpointLabel(settings: ModelEndpointSettings): string {
  return settings.baseUrl ?? "(none)";
}

/** `Retry-After` as whole seconds (delta-seconds or an HTTP date), or null when absent or unreadable. */
export function retrySeconds(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** The endpoint's own words (`error.message` of an OpenAI-style body, else its text) as `: <words>`; key scrubbed. */
function quoted(settings: ModelEndpointSettings, err: InstanceType<typeof OpenAI.APIError>): string {
  const body = err.error as { message?: unknown } | string | undefined | null;
  const raw = typeof body === "object" && body !== null && typeof body.message === "string" ? body.message
    : typeof body === "string" ? body : err.message.replace(/^\d{3} /, "").replace(/^status code \(no body\)$/, "");
  // eslint-disable-next-line no-control-regex
  const text = scrub(settings, raw).replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, ERROR_QUOTE_CHARS);
  return text === "" ? "" : `: ${text}`;
}

/** `text` with the API key replaced: an endpoint (or a proxy in front of it) may echo what it was sent. */
export function scrub(settings: ModelEndpointSettings, text: string): string {
  const key = settings.apiKey?.reveal();
  return key && key.length >= 4 ? text.split(key).join("(hidden)") : text;
}

function broken(why: string): AstridError {
  return new AstridError("ASTRID_ERR_MODEL_STREAM", `the model endpoint's stream is malformed: ${why}`);
}
