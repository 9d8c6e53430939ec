/**
 * The allowance stores and the secret store on their own: max_uses consumed exactly once under contention, expiry,
 * workspace scope, persistence (0600) and a malformed file left untouched; secrets encrypted, bound to their slot.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AlwaysAllowances, SessionAllowances } from "../../../kernel/approvals/allowances";
import { SecretStore, SECRETS_SCOPE } from "../../../kernel/approvals/secret-store";
import type { Logger } from "../../../kernel/logger";
import type { StorageClient } from "../../../kernel/storage-client";

const dirs: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-appr-"));
  dirs.push(d);
  return d;
}
afterAll(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

function logger(lines: string[] = []): Logger {
  const log = (msg: string, fields?: unknown) => void lines.push(`${msg} ${JSON.stringify(fields ?? {})}`);
  return { debug: log, info: log, warn: log, error: log } as unknown as Logger;
}

const key = { principal: "alice", capsule: "git", action: "push", resource: "origin main" };

describe("session allowances", () => {
  it("answer only for the same principal, session, capsule, action and resource; the oldest go past the bound", () => {
    const s = new SessionAllowances(2);
    s.add(key, "s1");
    expect(s.has(key, "s1")).toBe(true);
    expect(s.has(key, "s2")).toBe(false);
    expect(s.has({ ...key, principal: "bob" }, "s1")).toBe(false);
    expect(s.has({ ...key, capsule: "other" }, "s1")).toBe(false);
    expect(s.has({ ...key, resource: "origin dev" }, "s1")).toBe(false);
    s.add(key, "s2");
    s.add(key, "s3");
    expect(s.size).toBe(2);
    expect(s.has(key, "s1")).toBe(false);
    expect(s.has(key, "s3")).toBe(true);
  });
});

describe("always allowances", () => {
  it("persist to a 0600 file and load back; alice's never answers for bob", async () => {
    const file = path.join(tmp(), "var", "allowances.json");
    const a = new AlwaysAllowances(file, logger());
    await a.load();
    expect(a.add(key, undefined)).toBe(true);
    await a.flush();
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const b = new AlwaysAllowances(file, logger());
    await b.load();
    expect(b.take({ ...key, principal: "bob" }, "/ws")).toBeNull();
    expect(b.take(key, "/ws")).toMatchObject(key);
    expect(b.take(key, "/elsewhere")).toMatchObject(key);
  });

  it("a workspace allowance matches only that workspace", async () => {
    const a = new AlwaysAllowances(path.join(tmp(), "a.json"), logger());
    await a.load();
    a.add(key, "/project-a");
    expect(a.take(key, "/project-b")).toBeNull();
    expect(a.take(key, "/project-a")).toMatchObject({ workspace: "/project-a" });
  });

  it("max_uses = 1 answers exactly one of ten simultaneous requests, and is then gone from the file", async () => {
    const file = path.join(tmp(), "a.json");
    fs.writeFileSync(file, JSON.stringify({ version: 1, allowances: [{ ...key, max_uses: 1, created_at: "2025-01-01T00:00:00Z" }] }));
    const a = new AlwaysAllowances(file, logger());
    const results = await Promise.all(Array.from({ length: 10 }, async () => {
      await a.load();
      return a.take(key, "/ws");
    }));
    expect(results.filter((r) => r !== null)).toHaveLength(1);
    await a.flush();
    expect(JSON.parse(fs.readFileSync(file, "utf8")).allowances).toEqual([]);
  });

  it("max_uses counts down; an expired allowance is pruned at lookup", async () => {
    const file = path.join(tmp(), "a.json");
    fs.writeFileSync(file, JSON.stringify({ version: 1, allowances: [
      { ...key, max_uses: 2, created_at: "2025-01-01T00:00:00Z" },
      { ...key, action: "old", expires_at: "2020-01-01T00:00:00Z", created_at: "2019-01-01T00:00:00Z" },
    ] }));
    const a = new AlwaysAllowances(file, logger());
    await a.load();
    expect(a.take({ ...key, action: "old" }, "/ws")).toBeNull();
    expect(a.take(key, "/ws")).not.toBeNull();
    expect(a.entries()).toEqual([expect.objectContaining({ action: "push", max_uses: 1 })]);
    expect(a.take(key, "/ws")).not.toBeNull();
    expect(a.take(key, "/ws")).toBeNull();
  });

  it("a malformed file grants nothing, is never overwritten, and says so in the log", async () => {
    const file = path.join(tmp(), "a.json");
    const text = '{"version":1,"allowances":[{"principal":"alice"}]}';
    fs.writeFileSync(file, text);
    const lines: string[] = [];
    const a = new AlwaysAllowances(file, logger(lines));
    await a.load();
    expect(a.take(key, "/ws")).toBeNull();
    expect(a.add(key, undefined)).toBe(false);
    await a.flush();
    expect(fs.readFileSync(file, "utf8")).toBe(text);
    expect(lines.join("\n")).toContain("the allowances file is malformed");
  });
});

/** An in-memory KV, as the storage client answers it. */
function memoryStorage(): StorageClient & { data: Map<string, Uint8Array> } {
  const data = new Map<string, Uint8Array>();
  return {
    data,
    get: async (scope: string, k: string) => data.get(`${scope}\u0000${k}`) ?? null,
    set: async (scope: string, k: string, v: Uint8Array) => void data.set(`${scope}\u0000${k}`, v),
  } as unknown as StorageClient & { data: Map<string, Uint8Array> };
}

describe("secret store", () => {
  it("stores encrypted per capsule, reads back, creates its key 0600 on first use", async () => {
    const keyPath = path.join(tmp(), "keys", "secrets.key");
    const storage = memoryStorage();
    const store = new SecretStore(keyPath, storage);
    expect(await store.has("llm", "api_key")).toBe(false);
    expect(await store.get("llm", "api_key")).toBeNull();
    await store.put("llm", "api_key", "sk-plain-value");
    expect(fs.statSync(keyPath).mode & 0o777).toBe(0o600);
    expect(fs.statSync(keyPath).size).toBe(32);
    expect(await store.has("llm", "api_key")).toBe(true);
    expect(await store.get("llm", "api_key")).toBe("sk-plain-value");
    expect(await store.has("other", "api_key")).toBe(false);
    const raw = Buffer.from(storage.data.get(`${SECRETS_SCOPE}\u0000llm:api_key`)!);
    expect(raw.includes(Buffer.from("sk-plain-value"))).toBe(false);
    // A new store (a restarted daemon) reads it with the same key file.
    expect(await new SecretStore(keyPath, storage).get("llm", "api_key")).toBe("sk-plain-value");
  });

  it("a ciphertext moved to another capsule's slot does not decrypt; a wrong-size key is a coded error", async () => {
    const dir = tmp();
    const storage = memoryStorage();
    const store = new SecretStore(path.join(dir, "secrets.key"), storage);
    await store.put("llm", "api_key", "v");
    storage.data.set(`${SECRETS_SCOPE}\u0000thief:api_key`, storage.data.get(`${SECRETS_SCOPE}\u0000llm:api_key`)!);
    await expect(store.get("thief", "api_key")).rejects.toMatchObject({ code: "ASTRID_ERR_SECRET_KEY_INVALID" });
    const bad = path.join(dir, "bad.key");
    fs.writeFileSync(bad, Buffer.alloc(7));
    await expect(new SecretStore(bad, storage).put("llm", "k", "v")).rejects.toMatchObject({ code: "ASTRID_ERR_SECRET_KEY_INVALID" });
  });

  it("refuses a value over 64 KiB", async () => {
    const store = new SecretStore(path.join(tmp(), "secrets.key"), memoryStorage());
    await expect(store.put("c", "k", "x".repeat(64 * 1024 + 1))).rejects.toMatchObject({ code: "ASTRID_ERR_REQUEST_INVALID" });
  });
});
