/**
 * The operator's language-model endpoint, as the daemon's config resolves it (OPENAI_BASE_URL, OPENAI_API_KEY,
 * ASTRID_AGENT_MODEL, ASTRID_DEFAULT_AGENT, ASTRID_AGENT_TIMEOUT_MS). The key is wrapped so that no log line, audit
 * entry, `--print-config` or `util.inspect` can print it by accident: only `reveal()` gives the text, and only the
 * kernel's model stream calls it, to hand it to the `openai` client (model-stream.ts) and to scrub echoes of it.
 */
import { inspect } from "node:util";

/** A secret from the environment: prints as "(set, hidden)" in JSON, string and inspect forms. */
export class SecretValue {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  /** The secret itself: for the one place that must send it (the endpoint's Authorization header). */
  reveal(): string {
    return this.#value;
  }

  toJSON(): string {
    return "(set, hidden)";
  }

  toString(): string {
    return "(set, hidden)";
  }

  [inspect.custom](): string {
    return "(set, hidden)";
  }
}

/** What the model host service and the agent selection need of the config. */
export interface ModelEndpointSettings {
  /** The chat-completions base URL (no trailing slash), e.g. `http://127.0.0.1:11434/v1`; null: none configured. */
  baseUrl: string | null;
  apiKey: SecretValue | null;
  /** The model asked for when the capsule names none. */
  model: string;
  /** The operator's default agent capsule for sessions that chose none; null: the built-in rule. */
  defaultAgent: string | null;
  /** Longest wait for the endpoint's first byte, and between two chunks of its stream. */
  timeoutMs: number;
}

/** The base URL the `openai` client uses when only a key is given. */
export const OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1";
/** The model asked for when ASTRID_AGENT_MODEL is unset (the OpenAI service's small model). */
export const DEFAULT_AGENT_MODEL = "gpt-4o-mini";
/** The bundled model agent capsule: the default agent when an endpoint is configured. */
export const MODEL_AGENT_CAPSULE = "astrid-capsule-openai";
/** The built-in assistant: the default agent otherwise. */
export const BUILTIN_AGENT_CAPSULE = "astrid-capsule-assistant";

/** Settings from the resolved config fields. */
export function modelEndpointSettings(config: {
  agentBaseUrl: string | null;
  agentApiKey: SecretValue | null;
  agentModel: string;
  defaultAgent: string | null;
  agentTimeoutMs: number;
}): ModelEndpointSettings {
  return {
    baseUrl: config.agentBaseUrl ?? (config.agentApiKey ? OPENAI_DEFAULT_BASE_URL : null),
    apiKey: config.agentApiKey,
    model: config.agentModel,
    defaultAgent: config.defaultAgent,
    timeoutMs: config.agentTimeoutMs,
  };
}
