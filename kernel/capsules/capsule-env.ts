/**
 * `[env]` values for a capsule (reference §6.5, without onboarding yet): the operator's
 * `home/default/.config/env/<name>.env.json`, else the capsule's own `.env.json`, else each key's `default`.
 * A file that is not a JSON object of strings is ignored, as the reference does.
 */
import fs from "node:fs";
import path from "node:path";
import type { AstridHome } from "../home";
import type { CapsuleRecord } from "./registry";

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

/** The resolved `[env]` of a capsule. */
export function capsuleEnv(home: AstridHome, record: CapsuleRecord): Record<string, string> {
  const stored =
    readEnvFile(path.join(home.principalHome("default"), ".config", "env", `${record.name}.env.json`)) ??
    readEnvFile(path.join(record.dir, ".env.json")) ??
    {};
  const env: Record<string, string> = {};
  for (const [key, spec] of Object.entries(record.manifest.env)) {
    if (stored[key] !== undefined) env[key] = stored[key];
    else {
      const fallback = (spec as { default?: unknown } | null)?.default;
      if (fallback !== undefined) env[key] = typeof fallback === "string" ? fallback : fallback === null ? "" : JSON.stringify(fallback);
    }
  }
  return env;
}
