/**
 * The `model.*` host calls: a capsule with `[capabilities] model = true`, acting for a principal that holds
 * `self:net:http`, streams chat completions from the operator's language-model endpoint (OPENAI_BASE_URL). The
 * kernel makes the HTTP call (the `openai` client, model-stream.ts) with the operator's key, so the key never
 * enters capsule memory, and only the endpoint the operator configured is reached — which is why it may be on
 * loopback (a local Ollama or llama.cpp server) while capsules' own `http.request` stays behind the network guard.
 * Bounds: 4 open streams per capsule, a request of at most 4 MiB, 16 Mi characters per answer, no retries,
 * ASTRID_AGENT_TIMEOUT_MS to the response headers and between chunks, and
 * a stream nobody reads for 60 s is dropped. A stream is aborted when the capsule closes it or its run ends.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";
import { endpointClient, endpointLabel, ModelStream, type EndpointClient } from "../model/model-stream";
import type { ModelEndpointSettings } from "../model/model-endpoint";

/** Most streams one capsule may have open at once. */
export const MAX_MODEL_STREAMS_PER_CAPSULE = 4;
/** Largest request body (the conversation and the tools), serialised. */
export const MAX_MODEL_REQUEST_BYTES = 4 * 1024 * 1024;
/** Longest a `model.stream_read` waits for something to arrive (the host's deadline for the call is longer). */
export const MODEL_READ_WAIT_MS = 20_000;
/** A stream with no read for this long is taken as abandoned and aborted. */
export const MODEL_STREAM_ABANDON_MS = 60_000;

/** A tool offered to the model: a capsule's tool, by the name that routes it (`tool.v1.execute.<name>`). */
export interface OfferedTool {
  capsule: string;
  name: string;
  description: string;
  input_schema?: unknown;
}

const MessageSchema = z.looseObject({
  role: z.enum(["system", "user", "assistant", "tool"]),
  content: z.union([z.string(), z.null(), z.array(z.unknown())]).optional(),
  tool_calls: z.array(z.unknown()).max(64).optional(),
  tool_call_id: z.string().max(256).optional(),
  name: z.string().max(256).optional(),
});
const ToolSchema = z.strictObject({
  type: z.literal("function"),
  function: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "1–64 of A-Z a-z 0-9 _ -"),
    description: z.string().max(4096).optional(),
    parameters: z.unknown().optional(),
  }),
});
const ChatRequestSchema = z.strictObject({
  messages: z.array(MessageSchema).min(1).max(4096),
  tools: z.array(ToolSchema).max(256).optional(),
  model: z.string().min(1).max(256).optional(),
  temperature: z.number().min(0).max(2).optional(),
  max_tokens: z.number().int().min(1).max(1_000_000).optional(),
});
const StreamId = z.string().uuid();

interface OpenStream {
  stream: ModelStream;
  abandon: NodeJS.Timeout;
  startedAt: number;
}

/** Serves `model.*` for every capsule. */
export class ModelService implements HostService {
  private readonly byRun = new WeakMap<CapsuleRun, Map<string, OpenStream>>();
  private readonly all = new Set<OpenStream>();
  /** The `openai` client for the operator's endpoint, made on first use. */
  private endpoint: EndpointClient | null = null;

  constructor(
    private readonly host: HostContext,
    /** The tools ready capsules offer (the supervisor knows them). */
    private readonly tools: () => OfferedTool[],
  ) {}

  private get settings(): ModelEndpointSettings | undefined {
    return this.host.model;
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    const settings = this.settings;
    const manifestAllows = call.run.record.manifest.capabilities.model === true;
    const origin = settings?.baseUrl ?? "(none)";
    switch (call.call) {
      case "model.info":
        await call.permit({ kind: "model", target: origin, allowedByManifest: manifestAllows, capability: null });
        return { configured: settings?.baseUrl != null, model: settings?.model ?? null, endpoint: settings?.baseUrl ?? null };
      case "model.tools":
        await call.permit({ kind: "model", target: origin, allowedByManifest: manifestAllows, capability: null });
        return this.tools();
      case "model.stream_open":
        await call.permit({ kind: "model", target: origin, allowedByManifest: manifestAllows, capability: CAPSULE_HOST_CAPABILITIES.http });
        return this.open(call, args[0], settings);
      case "model.stream_read":
        return this.find(call, args[0]).then(async (open) => {
          open.abandon.refresh();
          const read = await open.stream.read(MODEL_READ_WAIT_MS);
          if (read.done) this.forget(call.run, String(args[0]), open, "done");
          return read;
        }).catch((err: unknown) => {
          const open = this.byRun.get(call.run)?.get(String(args[0]));
          if (open) this.forget(call.run, String(args[0]), open, (err as Error).message);
          throw err;
        });
      case "model.stream_close": {
        const id = StreamId.safeParse(args[0]);
        if (!id.success) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "model.stream_close: the stream id must be the id stream_open returned");
        const open = this.byRun.get(call.run)?.get(id.data);
        if (!open) return false;
        this.forget(call.run, id.data, open, "closed by the capsule");
        return true;
      }
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown model call ${call.call}`);
    }
  }

  private async open(call: HostCall, raw: unknown, settings: ModelEndpointSettings | undefined): Promise<{ id: string; model: string }> {
    if (!settings || settings.baseUrl === null) {
      throw new AstridError("ASTRID_ERR_MODEL_NOT_CONFIGURED", "no model endpoint is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) in the daemon's environment and restart it");
    }
    const parsed = ChatRequestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `model.stream_open: ${issue.path.join(".") || "request"}: ${issue.message}`);
    }
    const request = parsed.data;
    const size = Buffer.byteLength(JSON.stringify(request));
    if (size > MAX_MODEL_REQUEST_BYTES) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `model.stream_open: the request is ${size} bytes; at most ${MAX_MODEL_REQUEST_BYTES} (shorten the conversation)`);
    }
    let streams = this.byRun.get(call.run);
    if (!streams) this.byRun.set(call.run, (streams = new Map()));
    if (streams.size >= MAX_MODEL_STREAMS_PER_CAPSULE) {
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `model.stream_open: ${call.run.record.name} already has ${MAX_MODEL_STREAMS_PER_CAPSULE} model streams open; close one first`);
    }
    const model = request.model ?? settings.model;
    const id = randomUUID();
    this.host.logger.info("model request", {
      capsule: call.run.record.name, principal: call.principal, endpoint: endpointLabel(settings), model, messages: request.messages.length, tools: request.tools?.length ?? 0,
    });
    // The stream exists at once (its status comes with the first read), so a cancel can abort a slow endpoint.
    const stream = new ModelStream(settings, (this.endpoint ??= endpointClient(settings)).client, { ...request, model });
    const open: OpenStream = {
      stream,
      startedAt: Date.now(),
      abandon: setTimeout(() => this.forget(call.run, id, open, `not read for ${MODEL_STREAM_ABANDON_MS} ms`), MODEL_STREAM_ABANDON_MS),
    };
    open.abandon.unref();
    streams.set(id, open);
    this.all.add(open);
    return { id, model };
  }

  private async find(call: HostCall, raw: unknown): Promise<OpenStream> {
    const id = StreamId.safeParse(raw);
    const open = id.success ? this.byRun.get(call.run)?.get(id.data) : undefined;
    if (!open) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: no open model stream ${JSON.stringify(String(raw).slice(0, 64))} (finished, closed, or never opened)`);
    }
    return open;
  }

  private forget(run: CapsuleRun, id: string, open: OpenStream, why: string): void {
    clearTimeout(open.abandon);
    open.stream.close();
    this.all.delete(open);
    const streams = this.byRun.get(run);
    if (streams?.get(id) === open) {
      streams.delete(id);
      // Endpoint messages are scrubbed of the key before they become errors; `why` is one of those or ours.
      this.host.logger.info("model stream ended", { capsule: run.record.name, why: why.slice(0, 500), ms: Date.now() - open.startedAt });
    }
  }

  endRun(run: CapsuleRun): void {
    const streams = this.byRun.get(run);
    if (!streams) return;
    for (const [id, open] of [...streams]) this.forget(run, id, open, "the capsule's run ended");
    streams.clear();
  }

  async close(): Promise<void> {
    for (const open of this.all) {
      clearTimeout(open.abandon);
      open.stream.close();
    }
    this.all.clear();
    await this.endpoint?.agent.close().catch(() => undefined);
    this.endpoint = null;
  }
}
