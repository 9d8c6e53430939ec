/** Issue #3: the storage worker inside the real daemon: audit entries, kill -9 durability, damaged files, the CLI. */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, daemonLog, spawnDaemon, tempHome, until } from "../helpers/daemon";

afterAll(cleanup);

function astrid(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function tail(home: string, n = 1000): AuditEntry[] {
  const r = astrid(home, ["audit", "tail", "-n", String(n), "--json"]);
  expect(r.code).toBe(0);
  return r.out.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as AuditEntry);
}

describe("issue #3: audit entries from the kernel", () => {
  it("records capsule loads, connects, auth failures, requests (allowed and refused) and disconnects", async () => {
    const d = await spawnDaemon();
    const c = await connect(d);
    await c.request("GetStatus");
    await c.request("InstallCapsule", { source: "x", workspace: false });
    await c.publish("astrid.v1.request.bad", { type: "raw_json", method: "Nope" });
    await expect(connect(d, { token: "0".repeat(64) })).rejects.toMatchObject({ code: "ASTRID_ERR_AUTH_FAILED" });
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const actions = tail(d.home).map((e) => ({ type: e.action.type, method: e.action.method, change: e.action.change, status: e.outcome.status }));
    expect(actions).toEqual(expect.arrayContaining([
      { type: "capsule_lifecycle", method: undefined, change: "load", status: "success" },
      { type: "client_connected", method: undefined, change: undefined, status: "success" },
      { type: "admin_request", method: "GetStatus", change: undefined, status: "success" },
      { type: "admin_request", method: "InstallCapsule", change: undefined, status: "failure" },  // issue #12: the real outcome (a relative source is refused), not the admission
      { type: "admin_request", method: "Nope", change: undefined, status: "failure" },
      { type: "client_auth_failed", method: undefined, change: undefined, status: "failure" },
      { type: "client_disconnected", method: undefined, change: undefined, status: "success" },
    ]));
    const status = tail(d.home).find((e) => e.action.method === "GetStatus")!;
    expect(status).toMatchObject({ principal: "default", action: { required_capability: "system:status" }, session_id: "00000000-0000-0000-0000-000000000000" });
    expect(astrid(d.home, ["audit", "verify"])).toMatchObject({ code: 0, out: expect.stringMatching(/^Audit chain intact: \d+ entries/) });
    // The log and its signed head (the anchor); no -wal or -shm left behind.
    expect(fs.readdirSync(path.join(d.home, "var")).sort()).toEqual(["audit-head.json", "state.db"]);
  });

  it("every write whose reply arrived survives kill -9 during a write flood, and the chain still verifies", async () => {
    const d = await spawnDaemon();
    const c = await connect(d);
    const acked: string[] = [];
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const key = `w${w}-${i}`;
        try {
          const r = await c.request("KvSet", { key, value: `v-${key}` });
          if (r.status === "Success") acked.push(key);
        } catch {
          return; // the connection died with the daemon
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1500));
    d.child.kill("SIGKILL");
    stop = true;
    await Promise.all(writers);
    await d.exited;
    expect(acked.length).toBeGreaterThan(100);
    expect(astrid(d.home, ["audit", "verify"])).toMatchObject({ code: 0 });
    // As `astrid start` does after a crash: the dead daemon's ready file must not be mistaken for the new one's.
    fs.rmSync(path.join(d.home, "run", "system.ready"));
    const again = await spawnDaemon({ home: d.home });
    const c2 = await connect(again);
    const stored = new Set<string>();
    for (let cursor: string | undefined, first = true; first || cursor !== undefined; first = false) {
      const page = (await c2.request("KvList", { limit: 10_000, ...(cursor !== undefined ? { cursor } : {}) })) as { data: string[]; next_cursor?: string };
      for (const key of page.data) stored.add(key);
      cursor = page.next_cursor;
    }
    expect(acked.filter((k) => !stored.has(k))).toEqual([]);
    expect(await c2.request("GetStatus")).toMatchObject({ data: { audit_chain_intact: true } });
    await c2.close();
    again.child.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  }, 60_000);

  it("a SIGTERM the moment run/system.ready appears still drains queued entries and exits 0", async () => {
    for (let i = 0; i < 3; i++) {
      const d = await spawnDaemon();
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      expect(tail(d.home).some((e) => e.action.type === "capsule_lifecycle" && e.action.change === "load")).toBe(true);
    }
  });

  it("a tampered entry is named by `astrid audit verify` (exit 1) and reported by GetStatus; boot goes on", async () => {
    const d = await spawnDaemon();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const db = new Database(path.join(d.home, "var", "state.db"));
    const row = db.prepare("SELECT seq, content FROM audit ORDER BY seq LIMIT 1").get() as { seq: number; content: string };
    const id = (JSON.parse(row.content) as { id: string }).id;
    db.prepare("UPDATE audit SET content = ? WHERE seq = ?").run(row.content.replace("load", "lOad"), row.seq);
    db.close();
    const verify = astrid(d.home, ["audit", "verify"]);
    expect(verify.code).toBe(1);
    expect(verify.err).toMatch(new RegExp(`Audit chain broken at entry ${row.seq} \\(id ${id}\\): its content does not match its hash.*\\[ASTRID_ERR_AUDIT_BROKEN\\]`));
    expect(JSON.parse(astrid(d.home, ["audit", "verify", "--json"]).out)).toMatchObject({ intact: false, broken: { seq: row.seq, id } });
    const again = await spawnDaemon({ home: d.home });
    const c = await connect(again);
    // Boot verifies from its checkpoint; the walk that reaches entry 1 runs in the background and reports soon after.
    await until(() => c.request("GetStatus"), (r) => (r.data as { audit_chain_intact: boolean }).audit_chain_intact === false);
    await c.close();
    again.child.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  });

  it("a forged unsigned tail or a removed tail stays reported after the daemon signs new entries on top", async () => {
    const run = async (home: string) => {
      const d = await spawnDaemon({ home });
      const c = await connect(d);
      await c.request("GetStatus");
      await c.close();
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      return d.home;
    };
    // Forged: an entry chained correctly to the real head, head counter moved on; only the missing signature shows.
    const home = await run(tempHome());
    const db = new Database(path.join(home, "var", "state.db"));
    const head = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Buffer };
    const content = JSON.stringify({
      seq: head.seq + 1, id: "00000000-0000-4000-8000-000000000000", timestamp: "2026-01-01T00:00:00Z", session_id: "x",
      // A forged "break already recorded" marker (unsigned) that names another entry: it must not count.
      action: { type: "audit_chain_broken", broken_seq: 1, broken_id: null, reason: "nothing to see" },
      authorization: { type: "system" }, outcome: { status: "success", details: null },
      previous_hash: head.hash.toString("hex"),
    });
    db.prepare("INSERT INTO audit (seq, content, hash, signature) VALUES (?, ?, ?, NULL)").run(head.seq + 1, content, createHash("sha256").update(content).digest());
    db.prepare("UPDATE meta SET value = ? WHERE key = 'audit_head'").run(String(head.seq + 1));
    db.close();
    expect(astrid(home, ["audit", "verify"]).code).toBe(1);
    await run(home);
    await run(home);
    const verify = astrid(home, ["audit", "verify", "--json"]);
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.out)).toMatchObject({ intact: false, marked: true, broken: { seq: head.seq + 1, reason: expect.stringMatching(/not signed.*found at boot/) } });
    // One genuine record of the break (signed), however many boots saw it, beside the forged one.
    const markers = tail(home).filter((e) => e.action.type === "audit_chain_broken");
    expect(markers.map((m) => [m.action.reason, m.signature !== undefined])).toEqual([
      ["nothing to see", false],
      [expect.stringMatching(/not signed/), true],
    ]);

    // Removed tail: the head counter says more were written.
    const other = await run(tempHome());
    const db2 = new Database(path.join(other, "var", "state.db"));
    const last = (db2.prepare("SELECT max(seq) AS n FROM audit").get() as { n: number }).n;
    db2.prepare("DELETE FROM audit WHERE seq > ?").run(last - 2);
    db2.close();
    await run(other);
    const report = JSON.parse(astrid(other, ["audit", "verify", "--json"]).out) as { intact: boolean; marked: boolean; broken: { seq: number; reason: string } };
    expect(report).toMatchObject({ intact: false, marked: true, broken: { reason: expect.stringMatching(/found at boot/) } });
    expect(report.broken.seq).toBeLessThanOrEqual(last - 1);
  });

  it("`audit tail --follow` prints every entry in order, even after falling far behind, and a kill leaves no -wal", async () => {
    const d = await spawnDaemon();
    const follower = spawn(process.execPath, [CLI_BIN, "audit", "tail", "-n", "1", "--follow", "--json"], { env: { ...process.env, ASTRID_HOME: d.home } });
    let out = "";
    follower.stdout.on("data", (b: Buffer) => (out += b.toString()));
    // Complete lines only: the follower may be in the middle of writing the last one.
    const seqs = () => out.slice(0, out.lastIndexOf("\n") + 1).split("\n").filter(Boolean).map((l) => (JSON.parse(l) as AuditEntry).seq);
    const exited = new Promise((r) => follower.once("exit", r));
    try {
      await until(() => seqs().length, (n) => n >= 1);
      // -n 0 shows nothing (with --follow: only what comes next).
      const newOnly = spawnSync(process.execPath, [CLI_BIN, "audit", "tail", "-n", "0", "--json"], { env: { ...process.env, ASTRID_HOME: d.home }, encoding: "utf8" });
      expect(newOnly).toMatchObject({ status: 0, stdout: "" });
      follower.kill("SIGSTOP");
      // More than one query's worth (the old follower read only the newest 10 000 and skipped the rest).
      const clients = await Promise.all(Array.from({ length: 8 }, () => connect(d)));
      await Promise.all(clients.map(async (c) => {
        // KvSet: one entry per request (repeated status queries would be coalesced into a few).
        for (let i = 0; i < 1400; i++) await c.request("KvSet", { key: `k${i}`, value: "v" });
      }));
      await Promise.all(clients.map((c) => c.close()));
      d.child.kill("SIGTERM");
      expect(await d.exited).toBe(0);
      const last = (tail(d.home, 1)[0]!).seq;
      follower.kill("SIGCONT");
      await until(() => seqs().at(-1), (s) => s === last, 30_000);
      const got = seqs();
      expect(got.length).toBeGreaterThan(11_200);
      expect(got).toEqual(Array.from({ length: got.length }, (_, i) => got[0]! + i));
      follower.kill("SIGTERM");
      expect(await exited).toBe(0);
      // The log and its signed head (the anchor); no -wal or -shm left behind.
    expect(fs.readdirSync(path.join(d.home, "var")).sort()).toEqual(["audit-head.json", "state.db"]);
    } finally {
      follower.kill("SIGCONT");
      follower.kill("SIGKILL");
    }
  }, 90_000);

  it("refuses to start on a corrupt state.db, naming it, leaving it byte-for-byte and no socket or token", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "var"), { recursive: true });
    const db = path.join(home, "var", "state.db");
    fs.writeFileSync(db, "SQLite format 3\u0000" + "garbage".repeat(1000));
    const before = createHash("sha256").update(fs.readFileSync(db)).digest("hex");
    const d = await spawnDaemon({ home, waitReady: false });
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toMatch(new RegExp(`${db.replace(/[/.]/g, "\\$&")}.*\\[ASTRID_ERR_STORAGE_CORRUPT\\]`));
    expect(createHash("sha256").update(fs.readFileSync(db)).digest("hex")).toBe(before);
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
  });

  it("a runtime key of the wrong length is a fatal boot error with a clear message", async () => {
    const home = tempHome();
    fs.mkdirSync(path.join(home, "keys"), { recursive: true });
    fs.writeFileSync(path.join(home, "keys", "runtime.key"), Buffer.alloc(31));
    const d = await spawnDaemon({ home, waitReady: false });
    expect(await d.exited).toBe(1);
    expect(d.stderr()).toMatch(/invalid runtime key: .*runtime\.key holds 31 bytes, expected 32.*\[ASTRID_ERR_RUNTIME_KEY_INVALID\]/);
    expect(fs.readdirSync(path.join(home, "run"))).toEqual([]);
  });

  it("generates keys/runtime.key (32 bytes, 0600) and keeps it across boots", async () => {
    const d = await spawnDaemon();
    const key = path.join(d.home, "keys", "runtime.key");
    const first = fs.readFileSync(key);
    expect(first.length).toBe(32);
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.join(d.home, "var", "state.db")).mode & 0o777).toBe(0o600);
    d.child.kill("SIGTERM");
    await d.exited;
    // A database removed while its key stays: a new log starts, and says so in its first entry.
    fs.rmSync(path.join(d.home, "var", "state.db"));
    const fresh = await spawnDaemon({ home: d.home });
    fresh.child.kill("SIGTERM");
    await fresh.exited;
    expect(tail(d.home)[0]).toMatchObject({ seq: 1, action: { type: "audit_log_created", note: expect.stringMatching(/earlier var\/state\.db was removed/) } });
    expect(daemonLog(d.home)).toMatch(/state\.db is missing although keys\/runtime\.key exists/);
    // A restored copy that lost its mode is made owner-only again, with a warning.
    fs.chmodSync(key, 0o644);
    const again = await spawnDaemon({ home: d.home });
    expect(fs.readFileSync(key).equals(first)).toBe(true);
    expect(fs.statSync(key).mode & 0o777).toBe(0o600);
    expect(daemonLog(d.home)).toMatch(/"mode":"0644".*the runtime key was readable by others|the runtime key was readable by others.*"mode":"0644"/);
    again.child.kill("SIGTERM");
    await again.exited;
    // The key gone while its log stays: boot refuses (a new key would mark the old log broken for good).
    fs.renameSync(key, `${key}.moved`);
    const keyless = await spawnDaemon({ home: d.home, waitReady: false });
    expect(await keyless.exited).toBe(1);
    expect(keyless.stderr()).toMatch(/runtime\.key is missing .* holds an audit log signed with it.*\[ASTRID_ERR_RUNTIME_KEY_INVALID\]/);
    expect(fs.existsSync(key)).toBe(false);
    fs.renameSync(`${key}.moved`, key);
    expect(astrid(d.home, ["audit", "verify"]).code).toBe(0);
  });
});

describe("issue #3: astrid kv", () => {
  it("refuses invalid base64, lone surrogates and values over 8 MiB with coded errors", async () => {
    const d = await spawnDaemon();
    const c = await connect(d);
    expect(await c.request("KvSet", { key: "b", value: "!!!not base64", encoding: "base64" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID", data: expect.stringMatching(/not canonical base64/) });
    expect(await c.request("KvSet", { key: "b", value: "YR==", encoding: "base64" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID" });
    expect(await c.request("KvSet", { key: "b", value: "a\ud800b" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_REQUEST_INVALID", data: expect.stringMatching(/lone UTF-16 surrogate/) });
    // A refused request's audit entry keeps at most 256 characters of what it was sent.
    expect(await c.request("KvGet", { key: "k".repeat(100_000) })).toMatchObject({ status: "Error", code: "ASTRID_ERR_KV_KEY_INVALID" });
    expect(await c.request("KvSet", { key: "b", value: Buffer.from([0, 255]).toString("base64"), encoding: "base64" })).toMatchObject({ status: "Success" });
    // Bytes that are not UTF-8 come back as base64 only, and `astrid kv get` writes the bytes themselves.
    expect(await c.request("KvGet", { key: "b" })).toMatchObject({ data: { value: null, base64: "AP8=" } });
    expect(spawnSync(process.execPath, [CLI_BIN, "kv", "get", "b"], { env: { ...process.env, ASTRID_HOME: d.home } }).stdout).toEqual(Buffer.from([0, 255]));
    // A 7 MiB value of control bytes reads back whole (its reply once held it twice, escaped: over 50 MiB).
    const ctl = Buffer.alloc(7 * 1024 * 1024, 1);
    expect(await c.request("KvSet", { key: "ctl", value: ctl.toString("base64"), encoding: "base64" })).toMatchObject({ status: "Success" });
    const back = spawnSync(process.execPath, [CLI_BIN, "kv", "get", "ctl"], { env: { ...process.env, ASTRID_HOME: d.home }, maxBuffer: 64 * 1024 * 1024 });
    expect(back.status).toBe(0);
    expect(back.stdout.equals(ctl)).toBe(true);
    expect(await c.request("KvSet", { key: "a\ud800", value: "x" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_KV_KEY_INVALID" });
    expect(await c.request("KvGet", { key: "a\udc00" })).toMatchObject({ status: "Error", code: "ASTRID_ERR_KV_KEY_INVALID" });
    await c.request("KvSet", { key: "flush", value: "x" }); // an awaited call flushes the queued audit records
    const long = tail(d.home).find((e) => String((e.action.params as { key?: string } | undefined)?.key ?? "").startsWith("kkk"))!;
    expect((long.action.params as { key: string }).key).toBe(`${"k".repeat(256)}… (100000 chars)`);
    // Over the value limit yet inside one 10 MiB frame: refused with the storage's code, the connection stays.
    expect(await c.request("KvSet", { key: "big", value: "x".repeat(8 * 1024 * 1024 + 1) })).toMatchObject({ status: "Error", code: "ASTRID_ERR_KV_VALUE_TOO_LARGE" });
    expect((await c.request("GetStatus")).status).toBe("Status");
    await c.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("sets, gets and lists operator keys through the running daemon; says when none runs", async () => {
    const d = await spawnDaemon();
    expect(astrid(d.home, ["kv", "set", "greeting", "hello world"])).toMatchObject({ code: 0 });
    expect(astrid(d.home, ["kv", "get", "greeting"])).toEqual({ code: 0, out: "hello world\n", err: "" });
    expect(JSON.parse(astrid(d.home, ["kv", "list", "--json"]).out)).toEqual({ scope: "default:operator", keys: ["greeting"] });
    expect(astrid(d.home, ["kv", "get", "nope"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_NOT_FOUND\]/) });
    expect(astrid(d.home, ["kv", "get", "greeting", "--scope", "default:capsule:other"])).toMatchObject({ code: 1 });
    expect(astrid(d.home, ["kv", "set", "", "x"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_KV_KEY_INVALID\]/) });
    expect(astrid(d.home, ["kv", "list", "zzz"])).toEqual({ code: 0, out: "", err: 'No keys starting with "zzz" in default:operator.\n' });
    // The kernel's scopes are read-only over the socket; reading them is fine.
    expect(astrid(d.home, ["kv", "set", "x", "y", "--scope", "system:capsules"])).toMatchObject({ code: 1, err: expect.stringMatching(/cannot be written with KvSet.*\[ASTRID_ERR_KV_SCOPE_READONLY\]/) });
    expect(astrid(d.home, ["kv", "list", "--scope", "system:capsules"])).toMatchObject({ code: 0 });
    // Each KV request's audit entry says where it acted.
    const entries = tail(d.home).filter((e) => e.action.type === "admin_request" && e.action.method === "KvSet");
    expect(entries[0]!.action).toMatchObject({ params: { scope: "default:operator", key: "greeting" } });
    expect(JSON.stringify(entries)).not.toContain("hello world");
    d.child.kill("SIGTERM");
    await d.exited;
    expect(astrid(d.home, ["kv", "get", "greeting"])).toMatchObject({ code: 1, err: expect.stringMatching(/\[ASTRID_ERR_DAEMON_NOT_RUNNING\]/) });
  });
});
