/**
 * A model capsule's endpoint `[env]` (kernel/capsules/capsule-env.ts): the bundled model agent's real manifest,
 * parsed as the loader parses it. Its endpoint keys are not asked for at load (the first use of the endpoint asks),
 * and the key never reaches the capsule's worker; other capsules' `[env]` resolve as the reference says.
 */
import fs from "node:fs";
import path from "node:path";
import { parseManifest } from "../../../protocol/capsule-manifest";
import { capsuleEnv, endpointOnboarding, MODEL_ENDPOINT_ENV } from "../../../kernel/capsules/capsule-env";
import type { CapsuleRecord } from "../../../kernel/capsules/registry";

const DIR = path.join(__dirname, "..", "..", "..", "capsules", "astrid-capsule-openai");

function record(text: string): CapsuleRecord {
  return { name: "x", manifest: parseManifest(text, DIR, () => true).manifest } as unknown as CapsuleRecord;
}

const modelAgent = record(fs.readFileSync(path.join(DIR, "Capsule.toml"), "utf8"));

describe("a model capsule's endpoint [env]", () => {
  it("is asked for on first use, never at load, and the key is never handed to the worker", () => {
    const none = capsuleEnv(modelAgent, {});
    expect(none.onboarding).toEqual([]);
    const stored = { OPENAI_BASE_URL: "http://127.0.0.1:11434/v1", OPENAI_API_KEY: "sk-secret", ASTRID_AGENT_MODEL: "llama3.2" };
    expect(capsuleEnv(modelAgent, stored).values).toEqual({ OPENAI_BASE_URL: "http://127.0.0.1:11434/v1", OPENAI_API_KEY: "", ASTRID_AGENT_MODEL: "llama3.2" });
    const fields = endpointOnboarding(modelAgent);
    expect(fields.map((f) => f.key)).toEqual([...MODEL_ENDPOINT_ENV]);
    expect(fields.find((f) => f.key === "OPENAI_API_KEY")).toMatchObject({ field_type: "Secret" });
  });

  it("the same keys in a capsule without `model = true` are ordinary [env]", () => {
    const plain = record(`[package]\nname = "x"\nversion = "0.1.0"\n[[component]]\nfile = "index.js"\n[env]\nOPENAI_API_KEY = { type = "secret" }\n`);
    expect(capsuleEnv(plain, {}).onboarding).toEqual([{ key: "OPENAI_API_KEY", prompt: "Please enter value for OPENAI_API_KEY", field_type: "Secret" }]);
    expect(capsuleEnv(plain, { OPENAI_API_KEY: "k" }).values).toEqual({ OPENAI_API_KEY: "k" });
    expect(endpointOnboarding(plain)).toEqual([]);
  });
});
