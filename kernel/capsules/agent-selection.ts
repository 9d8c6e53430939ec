/**
 * Exactly one agent answers a prompt. Capsules whose manifest says `[package] agent = true` are agents; a session
 * has one: the one its prompts chose (`context.agent`, e.g. `astrid chat --agent NAME`; remembered for the session),
 * else the operator's ASTRID_DEFAULT_AGENT, else the model agent when an endpoint is configured, else the built-in
 * assistant, else the first ready agent by name. `user.v1.prompt` reaches only that agent among agents; capsules
 * that are not agents keep receiving prompts they subscribe to (they are tools, loggers, or test fixtures that
 * predate agents) and see them through interceptors as before. A prompt naming an agent that is not loaded is
 * answered by the kernel itself with ASTRID_ERR_AGENT_UNKNOWN, never silently by another agent.
 */
import { randomUUID } from "node:crypto";
import type { BusEvent, EventBus } from "../bus";
import type { Logger } from "../logger";
import { sessionIdOf } from "../session-router";
import { BUILTIN_AGENT_CAPSULE, MODEL_AGENT_CAPSULE, type ModelEndpointSettings } from "../model/model-endpoint";
import type { CapsuleRun } from "./capsule-run";

/** The topic whose delivery among agents is arbitrated. */
export const PROMPT_TOPIC = "user.v1.prompt";
/** Sessions whose choice is remembered; past it the oldest choice is forgotten (the session falls back to the default). */
export const MAX_REMEMBERED_CHOICES = 65_536;
const AGENT_NAME = /^[a-z0-9-]{1,128}$/;

/** Picks each prompt's agent. */
export class AgentSelection {
  /** Each session's explicit choice, by principal and session id, oldest first. */
  private readonly choices = new Map<string, string>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly bus: EventBus,
    private readonly logger: Logger,
    private readonly settings: ModelEndpointSettings | undefined,
    /** The names of the ready capsules marked as agents. */
    private readonly readyAgents: () => string[],
    /** The source id of the kernel's own replies. */
    private readonly kernelSourceId: string,
    /** True when the model agent has an endpoint: the daemon's environment, or its `[env]` (onboarding). */
    private readonly modelConfigured: () => boolean = () => this.settings?.baseUrl != null,
  ) {
    // Subscribed before any capsule (the supervisor builds this first): a prompt naming an unknown agent is answered
    // once, here, whatever capsules are loaded.
    this.unsubscribe = bus.subscribe(PROMPT_TOPIC, (event) => void this.agentFor(event));
  }

  /** Whether `run` should receive `event` (false only for a prompt and an agent that is not the session's). */
  admits(run: CapsuleRun, event: BusEvent): boolean {
    if (event.message.topic !== PROMPT_TOPIC || run.record.manifest.package.agent !== true) return true;
    return this.agentFor(event) === run.record.name;
  }

  /** The session's agent as it stands (for `principal`'s `sessionId`), without a prompt. */
  current(principal: string, sessionId: string): string | null {
    const agents = this.readyAgents();
    return this.pick(agents, this.choices.get(keyOf(principal, sessionId)));
  }

  /** The agent of sessions that chose none. */
  defaultAgent(): string | null {
    return this.pick(this.readyAgents(), undefined);
  }

  close(): void {
    this.unsubscribe();
  }

  private agentFor(event: BusEvent): string | null {
    if (event.agent !== undefined) return event.agent;
    const { message } = event;
    const payload = message.payload as { context?: unknown } | undefined;
    const principal = message.principal ?? "default";
    const sessionId = sessionIdOf(payload) ?? "default";
    const key = keyOf(principal, sessionId);
    const agents = this.readyAgents();
    const context = payload?.context;
    const asked = context !== null && typeof context === "object" ? (context as { agent?: unknown }).agent : undefined;
    let chosen: string | null;
    if (typeof asked === "string" && asked !== "") {
      if (AGENT_NAME.test(asked) && agents.includes(asked)) {
        this.remember(key, asked);
        chosen = asked;
      } else {
        chosen = null;
        this.refuse(event, sessionId, principal, asked, agents);
      }
    } else {
      chosen = this.pick(agents, this.choices.get(key));
    }
    event.agent = chosen;
    return chosen;
  }

  /** The rule: the session's choice, the operator's default, the model agent, the built-in assistant, the first. */
  private pick(agents: string[], choice: string | undefined): string | null {
    const defaultAgent = this.settings?.defaultAgent ?? null;
    for (const candidate of [choice, defaultAgent, this.modelConfigured() ? MODEL_AGENT_CAPSULE : undefined, BUILTIN_AGENT_CAPSULE]) {
      if (candidate && agents.includes(candidate)) return candidate;
    }
    return [...agents].sort()[0] ?? null;
  }

  private remember(key: string, agent: string): void {
    this.choices.delete(key);
    this.choices.set(key, agent);
    if (this.choices.size > MAX_REMEMBERED_CHOICES) this.choices.delete(this.choices.keys().next().value!);
  }

  /** Answers a prompt that named an agent not loaded: the user sees why, and which agents there are. */
  private refuse(event: BusEvent, sessionId: string, principal: string, asked: string, agents: string[]): void {
    const shown = JSON.stringify(asked.slice(0, 128));
    this.logger.warn("prompt named an agent that is not loaded", { agent: asked.slice(0, 128), principal, session_id: sessionId.slice(0, 64) });
    const context = (event.message.payload as { context?: { turn_id?: unknown } }).context;
    const turn = typeof context?.turn_id === "string" ? { turn_id: context.turn_id.slice(0, 128) } : {};
    this.bus.publish({
      topic: "agent.v1.response",
      payload: {
        type: "agent_response",
        text: `No agent named ${shown} is loaded [ASTRID_ERR_AGENT_UNKNOWN]. Loaded agents: ${agents.length > 0 ? agents.join(", ") : "none"}.`,
        is_final: true,
        session_id: sessionId,
        code: "ASTRID_ERR_AGENT_UNKNOWN",
        ...turn,
      } as never,
      source_id: this.kernelSourceId || randomUUID(),
      principal,
    });
  }
}

function keyOf(principal: string, sessionId: string): string {
  return `${principal}\u0000${sessionId}`;
}
