/**
 * `[env]` values for a capsule (reference §6.5), resolved from the stored values the capsule loader reads: the
 * operator's `home/default/.config/env/<name>.env.json`, else the capsule's own `.env.json`. Per key: a stored value wins; otherwise more than one
 * `enum_values` needs the operator; otherwise a `default` is used; otherwise the operator is asked. Keys that need
 * the operator read as "" and are listed in one `astrid.v1.onboarding.required` event.
 */
import path from "node:path";
import type { AstridHome } from "../home";
import type { CapsuleRecord } from "./registry";

/** An `OnboardingField` (reference §3.5): `field_type` is "Text", "Secret", "Array" or `{"Enum": [...]}`. */
export interface OnboardingField {
  key: string;
  prompt: string;
  description?: string;
  field_type: "Text" | "Secret" | "Array" | { Enum: string[] };
  default?: string;
  placeholder?: string;
}

/** Resolved values and the fields the operator still has to provide. */
export interface ResolvedEnv {
  values: Record<string, string>;
  onboarding: OnboardingField[];
}

interface EnvSpec {
  type?: unknown;
  request?: unknown;
  description?: unknown;
  default?: unknown;
  enum_values?: unknown;
  placeholder?: unknown;
}

function asText(value: unknown): string {
  return typeof value === "string" ? value : value === null ? "" : JSON.stringify(value);
}

/** Where the operator's `[env]` values for capsules live, `<name>.env.json` each (written by onboarding frontends). */
export function operatorEnvDir(home: AstridHome): string {
  return path.join(home.principalHome("default"), ".config", "env");
}

/**
 * The `[env]` keys through which a capsule with `[capabilities] model = true` configures the operator's endpoint when
 * the daemon's environment does not (docs/agent.md). The kernel reads them itself (kernel/capsules/host-model.ts):
 * they are asked for on the capsule's first use of the endpoint, not at load, and the key never reaches its worker.
 */
export const MODEL_ENDPOINT_ENV = ["OPENAI_BASE_URL", "OPENAI_API_KEY", "ASTRID_AGENT_MODEL"] as const;
const MODEL_KEY_ENV = "OPENAI_API_KEY";

function endpointKey(record: CapsuleRecord, key: string): boolean {
  return record.manifest.capabilities.model === true && (MODEL_ENDPOINT_ENV as readonly string[]).includes(key);
}

/** The resolved `[env]` of a capsule, given its stored values (read by the capsule loader). */
export function capsuleEnv(record: CapsuleRecord, stored: Record<string, string>): ResolvedEnv {
  const values: Record<string, string> = {};
  const onboarding: OnboardingField[] = [];
  for (const [key, raw] of Object.entries(record.manifest.env)) {
    const spec = (raw ?? {}) as EnvSpec;
    const enums = Array.isArray(spec.enum_values) ? spec.enum_values.map(String) : [];
    if (endpointKey(record, key)) {
      values[key] = key === MODEL_KEY_ENV ? "" : (stored[key] ?? "");
      continue;
    }
    if (Object.hasOwn(stored, key)) {
      values[key] = stored[key]!;
      continue;
    }
    if (enums.length <= 1 && spec.default !== undefined) {
      values[key] = asText(spec.default);
      continue;
    }
    values[key] = "";
    onboarding.push(fieldOf(key, spec));
  }
  return { values, onboarding };
}

/** The endpoint fields a model capsule declares: what its first use of an unconfigured endpoint asks for. */
export function endpointOnboarding(record: CapsuleRecord): OnboardingField[] {
  return Object.entries(record.manifest.env).filter(([key]) => endpointKey(record, key))
    .map(([key, raw]) => fieldOf(key, (raw ?? {}) as EnvSpec));
}

function fieldOf(key: string, spec: EnvSpec): OnboardingField {
  const enums = Array.isArray(spec.enum_values) ? spec.enum_values.map(String) : [];
  const field: OnboardingField = {
    key,
    prompt: typeof spec.request === "string" ? spec.request : `Please enter value for ${key}`,
    field_type: spec.type === "secret" ? "Secret" : spec.type === "array" ? "Array" : enums.length > 1 ? { Enum: enums } : "Text",
  };
  if (typeof spec.description === "string") field.description = spec.description;
  if (enums.length === 1) field.default = enums[0];
  else if (spec.default !== undefined) field.default = asText(spec.default);
  if (typeof spec.placeholder === "string") field.placeholder = spec.placeholder;
  return field;
}
