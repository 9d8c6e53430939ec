/**
 * One streamed chat completion from the operator's endpoint, made by the kernel on a capsule's behalf: the request
 * goes out with the operator's key (the capsule never holds it), the SSE body is parsed as it arrives
 * (chat-completions-sse.ts), and the capsule pulls what accumulated with `read` — a long poll, so a delta reaches
 * the capsule as soon as it arrives without one message per token. Errors of the endpoint become coded errors with
 * a message a user can act on; the key is scrubbed from anything the endpoint sends back.
 */
import { Agent, request, type Dispatcher } from "undici";
import { AstridError, isAstridError } from "../../protocol/errors";
import { ChatCompletionsStream, type ModelToolCall } from "./chat-completions-sse";
import type { ModelEndpointSettings } from "./model-endpoint";

/** What one `read` hands the capsule. */
export interface StreamRead {
  /** Answer text that arrived since the last read. */
  text: string;
  /** The answer is complete (then `finish_reason` and `tool_calls` are final). */
  done: boolean;
  finish_reason?: string | null;
  tool_calls?: ModelToolCall[];
}

/** Text held for the capsule before the body is paused (backpressure towards the endpoint). */
const PAUSE_ABOVE_CHARS = 256 * 1024;
/** Most body bytes of one answer. */
export const MAX_STREAM_BYTES = 16 * 1024 * 1024;
/** How much of an error body is read, and quoted. */
const ERROR_BODY_BYTES = 16 * 1024;
const ERROR_QUOTE_CHARS = 300;

/** Connections to the endpoint, pooled (keep-alive) and with a connect deadline. */
export function endpointAgent(settings: ModelEndpointSettings): Agent {
  return new Agent({ connect: { timeout: Math.min(settings.timeoutMs, 30_000) }, headersTimeout: settings.timeoutMs, bodyTimeout: settings.timeoutMs });
}

/** A streamed answer being received. */
export class ModelStream {
  private readonly parser = new ChatCompletionsStream();
  private readonly decoder = new TextDecoder();
  private readonly abort = new AbortController();
  private body: Dispatcher.ResponseData["body"] | null = null;
  private pending = "";
  private done = false;
  private failure: AstridError | null = null;
  private bytes = 0;
  private wake: (() => void) | null = null;
  private closed = false;

  /**
   * Starts POSTing `body` (a chat-completions request; `stream: true` is set here) to the endpoint. It returns at
   * once, so the capsule holds a stream it can close (a cancel) even while the endpoint has not answered yet; a
   * refusal (401, 429, 5xx, …) or an unreachable endpoint is thrown by the first `read`.
   */
  constructor(private readonly settings: ModelEndpointSettings, agent: Agent, body: Record<string, unknown>) {
    void this.begin(agent, body);
  }

  private async begin(agent: Agent, body: Record<string, unknown>): Promise<void> {
    const settings = this.settings;
    try {
      if (settings.baseUrl === null) throw new AstridError("ASTRID_ERR_MODEL_NOT_CONFIGURED", "no model endpoint is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) in the daemon's environment and restart it");
      const headers: Record<string, string> = { "content-type": "application/json", accept: "text/event-stream" };
      if (settings.apiKey) headers.authorization = `Bearer ${settings.apiKey.reveal()}`;
      let response: Dispatcher.ResponseData;
      try {
        response = await request(`${settings.baseUrl}/chat/completions`, {
          method: "POST", headers, body: JSON.stringify({ ...body, stream: true }), signal: this.abort.signal, dispatcher: agent,
        });
      } catch (err) {
        throw unreachable(settings, err);
      }
      if (response.statusCode !== 200) {
        const text = await errorBody(response.body, settings);
        throw refused(settings, response.statusCode, response.headers["retry-after"], text);
      }
      if (this.closed) {
        response.body.destroy();
        return;
      }
      this.body = response.body;
      this.body.on("data", (chunk: Buffer) => this.onData(chunk));
      this.body.on("end", () => this.onEnd());
      this.body.on("error", (err: Error) => this.onError(err));
    } catch (err) {
      if (this.closed) return;
      this.fail(isAstridError(err) ? err : new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", scrub(settings, String(err))));
      this.wake?.();
    }
  }

  /**
   * What arrived since the last read; waits up to `waitMs` when nothing did (then answers with empty text, not
   * done). A failure is thrown once the text before it was read.
   */
  async read(waitMs: number): Promise<StreamRead> {
    if (this.pending === "" && !this.done && this.failure === null && !this.closed) {
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
    if (this.body?.isPaused() && !this.closed) this.body.resume();
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
    this.body?.destroy();
    this.wake?.();
  }

  /** True once the answer completed, failed or was closed. */
  get finished(): boolean {
    return this.done || this.failure !== null || this.closed;
  }

  private final(text: string): StreamRead {
    return { text, done: true, finish_reason: this.parser.finishReason, tool_calls: this.parser.toolCalls };
  }

  private onData(chunk: Buffer): void {
    if (this.finished) return;
    this.bytes += chunk.length;
    try {
      if (this.bytes > MAX_STREAM_BYTES) throw new AstridError("ASTRID_ERR_MODEL_STREAM", `the model's answer is larger than ${MAX_STREAM_BYTES} bytes; it was cut off`);
      const progress = this.parser.push(this.decoder.decode(chunk, { stream: true }));
      this.pending += progress.text;
      if (progress.done) this.complete();
    } catch (err) {
      this.fail(isAstridError(err) ? err : new AstridError("ASTRID_ERR_MODEL_STREAM", String(err)));
      return;
    }
    if (this.pending.length > PAUSE_ABOVE_CHARS) this.body?.pause();
    this.wake?.();
  }

  private onEnd(): void {
    if (this.finished) return;
    try {
      const progress = this.parser.end();
      this.pending += progress.text;
      if (progress.done) this.complete();
      else this.fail(new AstridError("ASTRID_ERR_MODEL_STREAM", "the model endpoint closed the stream before the answer was complete (no [DONE]); the reply is cut off"));
    } catch (err) {
      this.fail(isAstridError(err) ? err : new AstridError("ASTRID_ERR_MODEL_STREAM", String(err)));
    }
    this.wake?.();
  }

  private onError(err: Error & { code?: string }): void {
    if (this.finished) return;
    if (err.code === "UND_ERR_BODY_TIMEOUT") {
      this.fail(new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `the model endpoint sent nothing for ${this.settings.timeoutMs} ms mid-answer (ASTRID_AGENT_TIMEOUT_MS); the reply is cut off`));
    } else {
      this.fail(new AstridError("ASTRID_ERR_MODEL_STREAM", `the connection to the model endpoint dropped mid-answer (${scrub(this.settings, err.message)}); the reply is cut off`));
    }
    this.wake?.();
  }

  private complete(): void {
    this.done = true;
    // The rest of the body (after [DONE]) is not needed; the connection goes back to the pool or is dropped.
    this.body?.destroy();
  }

  private fail(err: AstridError): void {
    this.failure = err;
    this.abort.abort();
    this.body?.destroy();
  }
}

/** The endpoint's origin, for messages (never the key; the path may say which API version, so keep it). */
export function endpointLabel(settings: ModelEndpointSettings): string {
  return settings.baseUrl ?? "(none)";
}

function unreachable(settings: ModelEndpointSettings, err: unknown): AstridError {
  const e = err as Error & { code?: string };
  const why = e.code === "UND_ERR_HEADERS_TIMEOUT"
    ? `no answer within ${settings.timeoutMs} ms (ASTRID_AGENT_TIMEOUT_MS)`
    : e.code === "UND_ERR_CONNECT_TIMEOUT" ? "the connection timed out" : scrub(settings, e.message || String(err));
  return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `cannot reach the model endpoint ${endpointLabel(settings)}: ${why} — is the server running? (OPENAI_BASE_URL)`);
}

function refused(settings: ModelEndpointSettings, status: number, retryAfter: string | string[] | undefined, body: string): AstridError {
  const said = body === "" ? "" : `: ${body}`;
  if (status === 401 || status === 403) {
    return new AstridError("ASTRID_ERR_MODEL_AUTH", `the model endpoint refused the API key (HTTP ${status})${said} — check OPENAI_API_KEY`);
  }
  if (status === 429) {
    const after = retrySeconds(Array.isArray(retryAfter) ? retryAfter[0] : retryAfter);
    return new AstridError("ASTRID_ERR_MODEL_RATE_LIMITED", `the model endpoint is rate limiting (HTTP 429)${after !== null ? `; retry after ${after} s` : ""}${said}`);
  }
  return new AstridError("ASTRID_ERR_MODEL_UNAVAILABLE", `the model endpoint ${endpointLabel(settings)} answered HTTP ${status}${said}${status === 404 ? ` — is ASTRID_AGENT_MODEL (${settings.model}) a model it serves, and the URL right?` : ""}`);
}

/** `Retry-After` as whole seconds (delta-seconds or an HTTP date), or null when absent or unreadable. */
export function retrySeconds(value: string | undefined): number | null {
  if (value === undefined) return null;
  if (/^\s*\d+\s*$/.test(value)) return Number(value);
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

/** The first bytes of an error body: the `error.message` of an OpenAI-style body, else the text; key scrubbed. */
async function errorBody(body: Dispatcher.ResponseData["body"], settings: ModelEndpointSettings): Promise<string> {
  let text = "";
  try {
    for await (const chunk of body) {
      text += Buffer.from(chunk as Buffer).toString("utf8");
      if (text.length >= ERROR_BODY_BYTES) break;
    }
  } catch {
    // the status says enough
  } finally {
    body.destroy();
  }
  let message = text;
  try {
    const parsed = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    const candidate = typeof parsed.error === "object" && parsed.error !== null ? parsed.error.message : parsed.error ?? parsed.message;
    if (typeof candidate === "string") message = candidate;
  } catch {
    // not JSON: the text itself
  }
  // eslint-disable-next-line no-control-regex
  return scrub(settings, message.replace(/[\u0000-\u001f\u007f]+/g, " ").trim().slice(0, ERROR_QUOTE_CHARS));
}

/** `text` with the API key replaced: an endpoint (or a proxy in front of it) may echo what it was sent. */
export function scrub(settings: ModelEndpointSettings, text: string): string {
  const key = settings.apiKey?.reveal();
  return key && key.length >= 4 ? text.split(key).join("(hidden)") : text;
}
