/**
 * The stored `[env]` values of a capsule (reference §6.5): the operator's `<envDir>/<name>.env.json`, else the
 * capsule's own `.env.json`. A file that is not a JSON object of strings is ignored, as the reference does.
 */
import fs from "node:fs/promises";
import path from "node:path";

/** The operator's env file of capsule `name`. */
export function operatorEnvFile(envDir: string, name: string): string {
  return path.join(envDir, `${name}.env.json`);
}

/** Stored values for capsule `name` in `dir`; `{}` when neither file holds a JSON object of strings. */
export async function storedEnv(envDir: string, name: string, dir: string): Promise<Record<string, string>> {
  return (await readEnvFile(operatorEnvFile(envDir, name))) ?? (await readEnvFile(path.join(dir, ".env.json"))) ?? {};
}

async function readEnvFile(file: string): Promise<Record<string, string> | null> {
  try {
    const value = JSON.parse(await fs.readFile(file, "utf8")) as unknown;
    if (typeof value !== "object" || value === null || Array.isArray(value)) return null;
    if (!Object.values(value).every((v) => typeof v === "string")) return null;
    return value as Record<string, string>;
  } catch {
    return null;
  }
}
