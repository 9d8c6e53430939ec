/**
 * The `model.*` host calls: a capsule with `[capabilities] model = true`, acting for a principal that holds
 * `self:net:http`, streams chat completions from the operator's language-model endpoint (OPENAI_BASE_URL). The
 * kernel makes the HTTP call (the `openai` client, model-stream.ts) with the operator's key, so the key never
 * enters capsule memory, and only the endpoint the operator configured is reached — which is why it may be on
 * loopback (a local Ollama or llama.cpp server) while capsules' own `http.request` stays behind the network guard.
 * Bounds: 4 open streams per capsule, a request of at most 4 MiB, 16 Mi characters per answer, no retries,
 * ASTRID_AGENT_TIMEOUT_MS to the response headers and between chunks, and
 * a stream nobody reads for 60 s is dropped. A stream is aborted when the capsule closes it or its run ends.
 * Without OPENAI_BASE_URL in the daemon's environment, the endpoint may come from the capsule's `[env]` (the
 * operator's answers to onboarding, read here at the capsule's start). So that nothing but the endpoint stands
 * between a prompt and its first token, `stream_open` can add the offered tools itself and publish the text as
 * deltas for the capsule as it arrives.
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import { exactSegmentMatches } from "../../protocol/topic-match";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";
import { endpointClient, endpointLabel, ModelStream, type EndpointClient } from "../model/model-stream";
import { DEFAULT_AGENT_MODEL, OPENAI_DEFAULT_BASE_URL, SecretValue, type ModelEndpointSettings } from "../model/model-endpoint";
import { ONBOARDING_REQUIRED_TOPIC } from "../../protocol/topics";
import { NIL_UUID } from "../../protocol/ipc-message";
import { endpointOnboarding } from "./capsule-env";

/** A model capsule that is not configured asks the operator (onboarding) at most this often. */
export const ONBOARDING_REPEAT_MS = 10_000;
/** Default of ASTRID_AGENT_TIMEOUT_MS, for an endpoint configured through `[env]` alone. */
const DEFAULT_TIMEOUT_MS = 120_000;

/** Most streams one capsule may have open at once. */
export const MAX_MODEL_STREAMS_PER_CAPSULE = 4;
/** Largest request body (the conversation and the tools), serialised. */
export const MAX_MODEL_REQUEST_BYTES = 4 * 1024 * 1024;
/** Longest a `model.stream_read` waits for something to arrive (the host's deadline for the call is longer). */
export const MODEL_READ_WAIT_MS = 20_000;
/** A stream with no read for this long is taken as abandoned and aborted. */
export const MODEL_STREAM_ABANDON_MS = 60_000;

/**
 * A tool offered to the model: a capsule's tool, by the name that routes it (`tool.v1.execute.<name>`), or a tool of
 * one of the operator's MCP servers, named `mcp__<server>__<tool>` and run with `mcp.call(server, tool, args)`.
 */
export interface OfferedTool {
  capsule: string;
  name: string;
  description: string;
  input_schema?: unknown;
  mcp?: { server: string; tool: string };
}

/** An offered tool as a chat-completions function tool (models need an object schema for the parameters). */
function functionOf(tool: OfferedTool): z.infer<typeof ToolSchema> {
  const schema = tool.input_schema;
  return {
    type: "function",
    function: {
      name: tool.name,
      description: `${tool.description} (from ${tool.capsule})`.slice(0, 4096),
      parameters: schema !== null && typeof schema === "object" && !Array.isArray(schema) ? schema : { type: "object", properties: {} },
    },
  };
}

/** The function name of an MCP tool: `mcp__<server>__<tool>` (null when it would not be a valid function name). */
export function mcpToolName(server: string, tool: string): string | null {
  const name = `mcp__${server}__${tool}`;
  return /^[A-Za-z0-9_-]{1,64}$/.test(name) ? name : null;
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
  // "offered": the tools capsules and MCP servers offer (model.tools), added by the kernel — no round trip for them.
  tools: z.union([z.array(ToolSchema).max(256), z.literal("offered")]).optional(),
  // The kernel publishes each piece of text as it arrives, `{...payload, text}` on `topic`, as the capsule.
  deltas: z.strictObject({ topic: z.string().min(1).max(256), payload: z.record(z.string(), z.unknown()) }).optional(),
  model: z.string().min(1).max(256).optional(),
  temperature: z.number().min(0).max(2).optional(),
  max_tokens: z.number().int().min(1).max(1_000_000).optional(),
});
const StreamId = z.string().uuid();

interface OpenStream {
  stream: ModelStream;
  abandon: NodeJS.Timeout;
  startedAt: number;
  /** What the log line says about the request (written once it ended: logging is not on the way to the endpoint). */
  logged: { principal: string; endpoint: string; model: string; messages: number; tools: number };
}

/** Serves `model.*` for every capsule. */
export class ModelService implements HostService {
  private readonly byRun = new WeakMap<CapsuleRun, Map<string, OpenStream>>();
  private readonly all = new Set<OpenStream>();
  /** The `openai` client per endpoint settings (the daemon's, or a capsule run's `[env]`), made on first use. */
  private readonly clients = new Map<ModelEndpointSettings, EndpointClient>();
  /** Endpoints configured by a model capsule's `[env]` (the daemon's environment configures none), per run. */
  private readonly runSettings = new WeakMap<CapsuleRun, ModelEndpointSettings>();
  /** The run of each capsule whose `[env]` configures an endpoint (agent selection asks). */
  private readonly configuredRuns = new Map<string, CapsuleRun>();
  /** When each run last asked the operator for its endpoint. */
  private readonly asked = new WeakMap<CapsuleRun, number>();

  constructor(
    private readonly host: HostContext,
    /** The tools ready capsules offer (the supervisor knows them). */
    private readonly tools: () => OfferedTool[],
    /** Publishes as `run` through the syscall gate (its ACL, size and rate checks): the relayed deltas. */
    private readonly publish: (run: CapsuleRun, topic: string, payload: Record<string, unknown>, principal: string) => void,
  ) {}

  /** True when capsule `name` has an endpoint: the daemon's environment, or its own `[env]`. */
  configured(name: string): boolean {
    return this.host.model?.baseUrl != null || this.configuredRuns.has(name);
  }

  /** The endpoint `run` uses: the daemon's environment wins over the capsule's `[env]`. */
  private settingsFor(run: CapsuleRun): ModelEndpointSettings | undefined {
    return this.host.model?.baseUrl != null ? this.host.model : (this.runSettings.get(run) ?? this.host.model);
  }

  /**
   * A model capsule's `[env]` endpoint, read by the kernel (the key never enters the capsule's worker) before the
   * capsule sets up; nothing when the daemon's environment configures one.
   */
  async beginRun(run: CapsuleRun): Promise<void> {
    const { manifest, name, dir } = run.record;
    const storedEnv = this.host.storedEnv;
    if (!storedEnv || manifest.capabilities.model !== true || this.host.model?.baseUrl != null || endpointOnboarding(run.record).length === 0) return;
    const stored = await storedEnv(name, dir);
    const url = (stored.OPENAI_BASE_URL ?? "").trim().replace(/\/+$/, "");
    const key = stored.OPENAI_API_KEY ?? "";
    if (url === "" && key === "") return;
    if (url !== "" && !/^https?:\/\/[^/]/.test(url)) {
      this.host.logger.warn("a model capsule's OPENAI_BASE_URL is not an http(s) URL; it stays unconfigured", { capsule: name });
      return;
    }
    this.runSettings.set(run, {
      baseUrl: url === "" ? OPENAI_DEFAULT_BASE_URL : url,
      apiKey: key === "" ? null : new SecretValue(key),
      model: (stored.ASTRID_AGENT_MODEL ?? "").trim() || this.host.model?.model || DEFAULT_AGENT_MODEL,
      defaultAgent: this.host.model?.defaultAgent ?? null,
      timeoutMs: this.host.model?.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    });
    this.configuredRuns.set(name, run);
  }

  /**
   * First use of an unconfigured endpoint: asks the operator for the capsule's endpoint fields (one
   * `astrid.v1.onboarding.required`; `astrid chat` asks and stores the answers), at most every ONBOARDING_REPEAT_MS.
   */
  private onboard(run: CapsuleRun): boolean {
    const fields = endpointOnboarding(run.record);
    if (fields.length === 0) return false;
    const last = this.asked.get(run);
    if (last === undefined || Date.now() - last >= ONBOARDING_REPEAT_MS) {
      this.asked.set(run, Date.now());
      this.host.bus.publish({
        topic: ONBOARDING_REQUIRED_TOPIC,
        payload: { type: "onboarding_required", capsule_id: run.record.name, fields } as never,
        source_id: NIL_UUID,
      });
    }
    return true;
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    const settings = this.settingsFor(call.run);
    const manifestAllows = call.run.record.manifest.capabilities.model === true;
    const origin = settings?.baseUrl ?? "(none)";
    switch (call.call) {
      case "model.info": {
        await call.permit({ kind: "model", target: origin, allowedByManifest: manifestAllows, capability: null });
        const configured = settings?.baseUrl != null;
        return { configured, model: settings?.model ?? null, endpoint: settings?.baseUrl ?? null, ...(!configured && this.onboard(call.run) ? { onboarding: true } : {}) };
      }
      case "model.tools":
        await call.permit({ kind: "model", target: origin, allowedByManifest: manifestAllows, capability: null });
        return [...this.tools(), ...(await this.mcpTools(call.run))];
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

  /**
   * The tools of the operator's running MCP servers that the capsule's `[capabilities] mcp` names (`"*"`: all of
   * them). Offering is not permission: each call goes through `mcp.call`, gated and audited like any capsule's.
   */
  private async mcpTools(run: CapsuleRun): Promise<OfferedTool[]> {
    const servers = this.host.mcp;
    const allowed = run.record.manifest.capabilities.mcp;
    if (!servers || allowed.length === 0) return [];
    const offered: OfferedTool[] = [];
    for (const server of servers.list()) {
      if (server.owner !== null || server.state !== "running" || !(allowed.includes("*") || allowed.includes(server.name))) continue;
      const tools = await servers.tools(server.name).catch(() => []);
      for (const tool of tools) {
        const name = mcpToolName(server.name, tool.name);
        if (name === null) continue;
        offered.push({
          capsule: `mcp:${server.name}`, name, description: tool.description ?? `${tool.name} of the MCP server ${server.name}`,
          ...(tool.input_schema !== undefined ? { input_schema: tool.input_schema } : {}), mcp: { server: server.name, tool: tool.name },
        });
      }
    }
    return offered;
  }

  private async open(call: HostCall, raw: unknown, settings: ModelEndpointSettings | undefined): Promise<{ id: string; model: string; tools?: Array<Pick<OfferedTool, "capsule" | "name" | "mcp">> }> {
    if (!settings || settings.baseUrl === null) {
      throw new AstridError("ASTRID_ERR_MODEL_NOT_CONFIGURED", "no model endpoint is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) in the daemon's environment and restart it");
    }
    const parsed = ChatRequestSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `model.stream_open: ${issue.path.join(".") || "request"}: ${issue.message}`);
    }
    const { deltas, tools: asked, ...rest } = parsed.data;
    if (deltas && !call.run.record.manifest.capabilities.ipc_publish.some((p) => exactSegmentMatches(p, deltas.topic))) {
      throw new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `model.stream_open: ${call.run.record.name} may not publish on ${deltas.topic} (not in ipc_publish)`);
    }
    const offered = asked === "offered" ? [...this.tools(), ...(await this.mcpTools(call.run))].slice(0, 256) : undefined;
    const tools = offered ? offered.map(functionOf) : asked;
    const request = { ...rest, ...(tools !== undefined && tools.length > 0 ? { tools } : {}) };
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
    // The stream exists at once (its status comes with the first read), so a cancel can abort a slow endpoint.
    let endpoint = this.clients.get(settings);
    if (!endpoint) this.clients.set(settings, (endpoint = endpointClient(settings)));
    const { run, principal } = call;
    let relaying = deltas !== undefined;
    const relay = deltas ? (text: string) => {
      if (!relaying) return;
      try {
        this.publish(run, deltas.topic, { ...deltas.payload, text }, principal);
      } catch (err) {
        // Said once, and no more deltas for this stream: the text still reaches the capsule (read), and its final
        // answer carries all of it.
        relaying = false;
        this.host.logger.warn("model deltas could not be relayed", { capsule: run.record.name, error: (err as Error).message.slice(0, 300) });
      }
    } : undefined;
    const stream = new ModelStream(settings, endpoint.client, { ...request, model }, relay);
    const open: OpenStream = {
      stream,
      startedAt: Date.now(),
      logged: { principal: call.principal, endpoint: endpointLabel(settings), model, messages: request.messages.length, tools: tools?.length ?? 0 },
      abandon: setTimeout(() => this.forget(call.run, id, open, `not read for ${MODEL_STREAM_ABANDON_MS} ms`), MODEL_STREAM_ABANDON_MS),
    };
    open.abandon.unref();
    streams.set(id, open);
    this.all.add(open);
    // What the capsule needs to route the model's calls (descriptions and schemas went to the endpoint).
    return { id, model, ...(offered ? { tools: offered.map(({ capsule, name, mcp }) => ({ capsule, name, ...(mcp ? { mcp } : {}) })) } : {}) };
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
      this.host.logger.info("model request", { capsule: run.record.name, ...open.logged, why: why.slice(0, 500), ms: Date.now() - open.startedAt });
    }
  }

  endRun(run: CapsuleRun): void {
    const streams = this.byRun.get(run);
    if (streams) {
      for (const [id, open] of [...streams]) this.forget(run, id, open, "the capsule's run ended");
      streams.clear();
    }
    const own = this.runSettings.get(run);
    if (own) {
      this.runSettings.delete(run);
      if (this.configuredRuns.get(run.record.name) === run) this.configuredRuns.delete(run.record.name);
      void this.clients.get(own)?.agent.close().catch(() => undefined);
      this.clients.delete(own);
    }
  }

  async close(): Promise<void> {
    for (const open of this.all) {
      clearTimeout(open.abandon);
      open.stream.close();
    }
    this.all.clear();
    await Promise.all([...this.clients.values()].map((endpoint) => endpoint.agent.close().catch(() => undefined)));
    this.clients.clear();
  }
}
