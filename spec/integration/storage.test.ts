/** Issue #3: the storage worker through the kernel's client — real worker thread, real SQLite file. */
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { Piscina } from "piscina";
import { StorageClient } from "../../kernel/storage-client";
import { workerEntry } from "../../kernel/worker-entry";
import { storageError, type TaskResult } from "../../protocol/storage-messages";
import { publicKeyFromSeed, verifyChain } from "../../storage/audit-chain";
import { cleanup, tempHome } from "../helpers/daemon";

const silent = { error: () => {}, warn: () => {}, info: () => {}, debug: () => {} } as never;
const clients: StorageClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(cleanup);

async function open(dir = tempHome(), seed = randomBytes(32)) {
  const dbPath = path.join(dir, "state.db");
  const client = await StorageClient.open({ dbPath, seed, logger: silent, allowFaultInjection: true });
  clients.push(client);
  return { client, dbPath, seed, dir };
}

const text = (v: Uint8Array | null) => (v === null ? null : Buffer.from(v).toString("utf8"));
const code = (p: Promise<unknown>) => p.then(() => "resolved", (e: { code: string }) => e.code);
const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex");

describe("issue #3: KV", () => {
  it("gets, sets, deletes, lists and clears by prefix, values as bytes", async () => {
    const { client } = await open();
    await client.set("default:capsule:a", "k1", Buffer.from("v1"));
    await client.set("default:capsule:a", "k2", new Uint8Array([0, 255, 1]));
    expect(text(await client.get("default:capsule:a", "k1"))).toBe("v1");
    expect([...(await client.get("default:capsule:a", "k2"))!]).toEqual([0, 255, 1]);
    expect(await client.get("default:capsule:a", "missing")).toBeNull();
    expect(await client.listKeys("default:capsule:a", "")).toEqual(["k1", "k2"]);
    expect(await client.delete("default:capsule:a", "k1")).toBe(true);
    expect(await client.delete("default:capsule:a", "k1")).toBe(false);
    expect(await client.clearPrefix("default:capsule:a", "k")).toBe(1);
    expect(await client.listKeys("default:capsule:a")).toEqual([]);
  });

  it("never lets one scope read another's keys, whatever the key string holds", async () => {
    const { client } = await open();
    await client.set("alice:capsule:x", "secret", Buffer.from("A"));
    await client.set("alice:capsule:x", "../../bob:capsule:x/secret", Buffer.from("dots"));
    expect(await client.get("bob:capsule:x", "secret")).toBeNull();
    expect(await client.get("alice:capsule", "x:secret")).toBeNull();
    expect(await client.get("alice:capsule:", "x\u0000secret".replace("\u0000", ":"))).toBeNull();
    expect(await client.listKeys("bob:capsule:x", "")).toEqual([]);
    expect(await client.listKeys("alice:capsule:x", "..")).toEqual(["../../bob:capsule:x/secret"]);
    expect(await client.clearPrefix("bob:capsule:x", "")).toBe(0);
    expect(text(await client.get("alice:capsule:x", "secret"))).toBe("A");
  });

  it("refuses an empty key, a key or scope with NUL, and a 10 MiB value with coded errors; 8 MiB is fine", async () => {
    const { client } = await open();
    expect(await code(client.set("s", "", Buffer.from("x")))).toBe("ASTRID_ERR_KV_KEY_INVALID");
    expect(await code(client.get("s", "a\u0000b"))).toBe("ASTRID_ERR_KV_KEY_INVALID");
    expect(await code(client.set("s\u0000t", "k", Buffer.from("x")))).toBe("ASTRID_ERR_KV_SCOPE_INVALID");
    expect(await code(client.get("", "k"))).toBe("ASTRID_ERR_KV_SCOPE_INVALID");
    expect(await code(client.set("s", "k".repeat(1025), Buffer.from("x")))).toBe("ASTRID_ERR_KV_KEY_INVALID");
    expect(await code(client.set("s", "big", Buffer.alloc(10 * 1024 * 1024)))).toBe("ASTRID_ERR_KV_VALUE_TOO_LARGE");
    const max = randomBytes(8 * 1024 * 1024);
    await client.set("s", "max", max);
    expect(Buffer.from((await client.get("s", "max"))!).equals(max)).toBe(true);
  });

  it("handles 10 000 keys under one prefix, including keys with high code points", async () => {
    const { client } = await open();
    const keys = Array.from({ length: 10_000 }, (_, i) => `p/${String(i).padStart(5, "0")}`);
    await Promise.all(keys.map((k) => client.set("s", k, Buffer.from(k))));
    await client.set("s", "p\uffff", Buffer.from("edge"));
    await client.set("s", "q/1", Buffer.from("other"));
    expect(await client.listKeys("s", "p/")).toEqual(keys);
    expect(await client.listKeys("s", "p\uffff")).toEqual(["p\uffff"]);
    expect(await client.clearPrefix("s", "p/")).toBe(10_000);
    expect(await client.listKeys("s", "")).toEqual(["p\uffff", "q/1"]);
  });

  it("a worker crash rejects its calls with a coded error; the worker restarts and committed data survives", async () => {
    const { client } = await open();
    await client.set("s", "before", Buffer.from("1"));
    const inBatch = [client.crashForTest(), client.set("s", "same-batch", Buffer.from("x"))];
    expect(await Promise.all(inBatch.map(code))).toEqual(["ASTRID_ERR_STORAGE_UNAVAILABLE", "ASTRID_ERR_STORAGE_UNAVAILABLE"]);
    expect(text(await client.get("s", "before"))).toBe("1");
    expect(await client.get("s", "same-batch")).toBeNull();
    await client.set("s", "after", Buffer.from("2"));
    expect(text(await client.get("s", "after"))).toBe("2");
  });

  it("a read waits behind at most the batch in flight, however many writes were queued before it", async () => {
    const { client } = await open();
    const value = Buffer.alloc(256, 1);
    // Which turn of the event loop each call resolved in: calls of one batch resolve in one turn.
    let turn = 0;
    let spinning = true;
    const spin = () => {
      turn++;
      if (spinning) setImmediate(spin);
    };
    spin();
    const first = client.set("s", "first", value);
    // 5000 writes queue up while the first batch is in flight, then a read.
    const writes = Array.from({ length: 5000 }, (_, i) => client.set("s", `k${i}`, value).then(() => turn));
    const read = client.get("s", "k4999").then((v) => ({ v, turn }));
    await first;
    const [turns, r] = await Promise.all([Promise.all(writes), read]);
    spinning = false;
    expect(r.v).not.toBeNull();
    // One batch after the one in flight: every queued write and the read resolved together.
    expect(new Set([...turns, r.turn]).size).toBe(1);
  });

  it("close drains pending writes and leaves no -wal or -shm file", async () => {
    const { client, dir } = await open();
    const writes = Array.from({ length: 500 }, (_, i) => client.set("s", `k${i}`, Buffer.from(String(i))));
    await client.close();
    await Promise.all(writes);
    expect(fs.readdirSync(dir).sort()).toEqual(["state.db"]);
    const db = new Database(path.join(dir, "state.db"), { readonly: true });
    expect((db.prepare("SELECT count(*) AS n FROM kv").get() as { n: number }).n).toBe(500);
    db.close();
    expect(await code(client.get("s", "k1"))).toBe("ASTRID_ERR_SHUTTING_DOWN");
  });
});

describe("issue #3: refusing a damaged database", () => {
  it.each([
    ["garbage bytes", (f: string) => fs.writeFileSync(f, randomBytes(8192)), /cannot be opened|integrity|not a database/],
    ["an empty (truncated to 0) file", (f: string) => fs.writeFileSync(f, ""), /exists but is empty/],
  ])("refuses %s with a clear error naming the file, and never overwrites it", async (_name, damage, pattern) => {
    const dir = tempHome();
    const file = path.join(dir, "state.db");
    damage(file);
    const before = sha(file);
    const err = await StorageClient.open({ dbPath: file, seed: randomBytes(32), logger: silent }).then(() => null, (e: Error & { code: string }) => e);
    expect(err).toMatchObject({ code: "ASTRID_ERR_STORAGE_CORRUPT" });
    expect(err!.message).toContain(file);
    expect(err!.message).toMatch(pattern);
    expect(sha(file)).toBe(before);
  });

  it("refuses a database truncated mid-file", async () => {
    const { client, dbPath, dir } = await open();
    await Promise.all(Array.from({ length: 2000 }, (_, i) => client.set("s", `k${i}`, randomBytes(200))));
    await client.close();
    clients.pop();
    const size = fs.statSync(dbPath).size;
    fs.truncateSync(dbPath, Math.floor(size / 2));
    const before = sha(dbPath);
    await expect(StorageClient.open({ dbPath, seed: randomBytes(32), logger: silent })).rejects.toMatchObject({ code: "ASTRID_ERR_STORAGE_CORRUPT" });
    expect(sha(dbPath)).toBe(before);
    expect(fs.readdirSync(dir)).toEqual(["state.db"]);
  });
});

describe("issue #3: audit chain", () => {
  async function filled(n: number) {
    const opened = await open();
    for (let batch = 0; batch < 4; batch++) {
      await Promise.all(Array.from({ length: n / 4 }, (_, i) =>
        opened.client.appendAudit({ session_id: "s", principal: "default", action: { type: "test", i }, authorization: { type: "system" }, outcome: { status: "success" } })));
    }
    await opened.client.close();
    clients.pop();
    return opened;
  }

  it("chains and signs entries so that they verify entry by entry", async () => {
    const { dbPath, seed } = await filled(400);
    const db = new Database(dbPath);
    expect(verifyChain(db, publicKeyFromSeed(seed))).toEqual({ intact: true, entries: 400, signed_through: 400 });
    // Batch heads carry signatures; every entry is covered by the next signed head.
    const signed = (db.prepare("SELECT count(*) AS n FROM audit WHERE signature IS NOT NULL").get() as { n: number }).n;
    expect(signed).toBeGreaterThanOrEqual(4);
    expect(signed).toBeLessThan(400);
    db.close();
  });

  it("keeps unawaited entries in order among awaited ones and KV calls, one signature per batch", async () => {
    const { client, dbPath, seed } = await open();
    const entry = (i: number) => ({ session_id: "s", action: { type: "test", i }, authorization: { type: "system" }, outcome: { status: "success" as const } });
    // One tick: unawaited runs around an awaited entry and a KV write, so the batch holds several append ops.
    for (let i = 0; i < 10; i++) client.recordAudit(entry(i));
    const awaited = client.appendAudit(entry(10));
    const kv = client.set("s", "k", Buffer.from("v"));
    for (let i = 11; i < 300; i++) client.recordAudit(entry(i));
    expect(await awaited).toMatchObject({ seq: 11 });
    await kv;
    await client.close();
    clients.pop();
    const db = new Database(dbPath);
    const order = (db.prepare("SELECT content FROM audit ORDER BY seq").all() as Array<{ content: string }>)
      .map((r) => (JSON.parse(r.content) as { action: { i: number } }).action.i);
    expect(order).toEqual(Array.from({ length: 300 }, (_, i) => i));
    expect(verifyChain(db, publicKeyFromSeed(seed))).toEqual({ intact: true, entries: 300, signed_through: 300 });
    db.close();
  });

  it("a worker crash loses only the unawaited entries of its batch, logged; the chain stays whole", async () => {
    const errors: Array<[string, Record<string, unknown>]> = [];
    const logger = { error: (m: string, meta: Record<string, unknown>) => errors.push([m, meta]), warn: () => {}, info: () => {}, debug: () => {} } as never;
    const dir = tempHome();
    const seed = randomBytes(32);
    const client = await StorageClient.open({ dbPath: path.join(dir, "state.db"), seed, logger, allowFaultInjection: true });
    clients.push(client);
    await client.appendAudit({ session_id: "s", action: { type: "before" }, authorization: { type: "system" }, outcome: { status: "success" } });
    client.recordAudit({ session_id: "s", action: { type: "lost" }, authorization: { type: "system" }, outcome: { status: "success" } });
    expect(await code(client.crashForTest())).toBe("ASTRID_ERR_STORAGE_UNAVAILABLE");
    expect(errors).toContainEqual(["audit write failed", expect.objectContaining({ entries: 1 })]);
    client.recordAudit({ session_id: "s", action: { type: "after" }, authorization: { type: "system" }, outcome: { status: "success" } });
    await client.close();
    clients.pop();
    const db = new Database(path.join(dir, "state.db"));
    expect((db.prepare("SELECT content FROM audit ORDER BY seq").all() as Array<{ content: string }>).map((r) => (JSON.parse(r.content) as { action: { type: string } }).action.type))
      .toEqual(["before", "after"]);
    expect(verifyChain(db, publicKeyFromSeed(seed))).toMatchObject({ intact: true, entries: 2 });
    db.close();
  });

  it("a verify or tail in the same batch as new entries sees them signed", async () => {
    const { client } = await open();
    const entry = (type: string) => ({ session_id: "s", action: { type }, authorization: { type: "system" }, outcome: { status: "success" as const } });
    client.recordAudit(entry("a"));
    const appended = client.appendAudit(entry("b"));
    const [report, tail] = await Promise.all([client.verifyAudit(), client.tailAudit(5)]);
    expect(report).toEqual({ intact: true, entries: 2, signed_through: 2 });
    expect(tail.map((e) => e.action.type)).toEqual(["a", "b"]);
    expect(tail[1]!.signature).toEqual(expect.any(String));
    await appended;
    client.recordAudit(entry("c"));
    expect(await client.verifyAudit()).toEqual({ intact: true, entries: 3, signed_through: 3 });
  });

  it("an entry that cannot be serialised is refused alone: recording logs and drops it, appending rejects", async () => {
    const errors: string[] = [];
    const logger = { error: (m: string) => errors.push(m), warn: () => {}, info: () => {}, debug: () => {} } as never;
    const client = await StorageClient.open({ dbPath: path.join(tempHome(), "state.db"), seed: randomBytes(32), logger });
    clients.push(client);
    const ok = { session_id: "s", action: { type: "ok" }, authorization: { type: "system" }, outcome: { status: "success" as const } };
    const cyclic: Record<string, unknown> = { type: "cyclic" };
    cyclic.self = cyclic;
    client.recordAudit(ok);
    expect(() => client.recordAudit({ ...ok, action: { type: "big", n: 10n } })).not.toThrow();
    expect(() => client.recordAudit({ ...ok, action: cyclic as { type: string } })).not.toThrow();
    expect(() => client.recordAudit({ ...ok, session_id: undefined as unknown as string })).not.toThrow();
    expect(await code(client.appendAudit({ ...ok, action: { type: "big", n: 1n } }))).toBe("ASTRID_ERR_INTERNAL");
    client.recordAudit(ok);
    expect(errors.filter((m) => m === "audit entry dropped")).toHaveLength(3);
    expect(await client.verifyAudit()).toEqual({ intact: true, entries: 2, signed_through: 2 });
  });

  it("names the entry whose stored bytes were flipped", async () => {
    const { dbPath, seed } = await filled(40);
    const db = new Database(dbPath);
    const row = db.prepare("SELECT content FROM audit WHERE seq = 17").get() as { content: string };
    const id = (JSON.parse(row.content) as { id: string }).id;
    db.prepare("UPDATE audit SET content = ? WHERE seq = 17").run(row.content.replace('"test"', '"tesT"'));
    expect(verifyChain(db, publicKeyFromSeed(seed))).toMatchObject({ intact: false, broken: { seq: 17, id, reason: expect.stringMatching(/does not match its hash/) } });
    db.close();
  });

  it("names the gap when a row in the middle is deleted, and a removed tail", async () => {
    const { dbPath, seed } = await filled(40);
    const db = new Database(dbPath);
    db.prepare("DELETE FROM audit WHERE seq = 20").run();
    expect(verifyChain(db, publicKeyFromSeed(seed))).toMatchObject({ intact: false, broken: { seq: 20, reason: expect.stringMatching(/entry 20 is missing/) } });
    db.close();
    const other = await filled(40);
    const db2 = new Database(other.dbPath);
    db2.prepare("DELETE FROM audit WHERE seq > 30").run();
    expect(verifyChain(db2, publicKeyFromSeed(other.seed)).intact).toBe(false);
    db2.close();
  });

  it("names tampering with column types, the recorded head or the tables instead of failing", async () => {
    const cases: Array<[string, RegExp]> = [
      ["UPDATE audit SET hash = 'abc' WHERE seq = 10", /entry 10|hash is not 32 bytes/],
      ["UPDATE audit SET signature = 'abc' WHERE seq = 40", /signature is not bytes/],
      ["UPDATE audit SET content = x'00ff' WHERE seq = 5", /content is not text/],
      ["UPDATE meta SET value = 'x' WHERE key = 'audit_head'", /recorded head .* is not a number/],
      ["DROP TABLE audit", /tables are missing/],
    ];
    for (const [sql, reason] of cases) {
      const { dbPath, seed } = await filled(40);
      const db = new Database(dbPath);
      db.exec(sql);
      expect(verifyChain(db, publicKeyFromSeed(seed))).toMatchObject({ intact: false, broken: { reason: expect.stringMatching(reason) } });
      db.close();
    }
  });

  it("rejects a chain checked with another key", async () => {
    const { dbPath } = await filled(8);
    const db = new Database(dbPath);
    expect(verifyChain(db, publicKeyFromSeed(randomBytes(32)))).toMatchObject({ intact: false, broken: { reason: expect.stringMatching(/signature is invalid/) } });
    db.close();
  });
});

describe("storage worker replies", () => {
  it("refuse an op the client did not check with the registry's code, and the client's error keeps it", async () => {
    // Straight to the worker, past the client's own checks: what the worker says must already be a coded error.
    const pool = new Piscina({
      filename: workerEntry("storage"),
      maxThreads: 1,
      workerData: { dbPath: path.join(tempHome(), "state.db"), seed: randomBytes(32), allowFaultInjection: false },
    });
    try {
      const reply = (await pool.run({ ops: [{ op: "kv.get", scope: "", key: "k" }, { op: "audit.append", bodies: ["{}"] }] })) as TaskResult;
      expect(reply).toEqual({
        results: [
          { ok: false, code: "ASTRID_ERR_KV_SCOPE_INVALID", message: expect.stringMatching(/scope/) },
          { ok: false, code: "ASTRID_ERR_INTERNAL", message: expect.stringMatching(/auditBody/) },
        ],
      });
      const first = "results" in reply ? reply.results[0]! : undefined;
      expect(first && !first.ok && storageError(first)).toMatchObject({ name: "AstridError", code: "ASTRID_ERR_KV_SCOPE_INVALID" });
    } finally {
      await pool.run({ close: true });
      await pool.destroy();
    }
  });
});
