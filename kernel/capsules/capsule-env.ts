/**
 * `[env]` values for a capsule (reference §6.5). A stored value comes from the operator's
 * `home/default/.config/env/<name>.env.json`, else the capsule's own `.env.json` (a file that is not a JSON object
 * of strings is ignored, as the reference does). Per key: a stored value wins; otherwise more than one
 * `enum_values` needs the operator; otherwise a `default` is used; otherwise the operator is asked. Keys that need
 * the operator read as "" and are listed in one `astrid.v1.onboarding.required` event.
 */
import fs from "node:fs";
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

function readEnvFile(file: string): Record<string, string> | null {
  try {
    const value = JSON.parse(fs.readFileSync(file, "utf8")) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    if (!Object.values(value).every((v) => typeof v === "string")) return null;
    return value as Record<string, string>;
  } catch {
    return null;
  }
}

function asText(value: unknown): string {
  return typeof value === "string" ? value : value === null ? "" : JSON.stringify(value);
}

/** Where the operator's `[env]` values for capsule `name` live (written by onboarding frontends). */
export function operatorEnvDir(home: AstridHome): string {
  return path.join(home.principalHome("default"), ".config", "env");
}

/** The operator's env file of capsule `name`. */
export function operatorEnvFile(home: AstridHome, name: string): string {
  return path.join(operatorEnvDir(home), `${name}.env.json`);
}

/** The resolved `[env]` of a capsule. */
export function capsuleEnv(home: AstridHome, record: CapsuleRecord): ResolvedEnv {
  const stored =
    readEnvFile(operatorEnvFile(home, record.name)) ??
    readEnvFile(path.join(record.dir, ".env.json")) ??
    {};
  const values: Record<string, string> = {};
  const onboarding: OnboardingField[] = [];
  for (const [key, raw] of Object.entries(record.manifest.env)) {
    const spec = (raw ?? {}) as EnvSpec;
    const enums = Array.isArray(spec.enum_values) ? spec.enum_values.map(String) : [];
    if (stored[key] !== undefined) {
      values[key] = stored[key];
      continue;
    }
    if (enums.length <= 1 && spec.default !== undefined) {
      values[key] = asText(spec.default);
      continue;
    }
    values[key] = "";
    const field: OnboardingField = {
      key,
      prompt: typeof spec.request === "string" ? spec.request : `Please enter value for ${key}`,
      field_type: spec.type === "secret" ? "Secret" : spec.type === "array" ? "Array" : enums.length > 1 ? { Enum: enums } : "Text",
    };
    if (typeof spec.description === "string") field.description = spec.description;
    if (enums.length === 1) field.default = enums[0];
    else if (spec.default !== undefined) field.default = asText(spec.default);
    if (typeof spec.placeholder === "string") field.placeholder = spec.placeholder;
    onboarding.push(field);
  }
  return { values, onboarding };
}
