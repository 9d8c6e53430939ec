/**
 * Boot verifies the audit chain from a signed checkpoint and leaves the whole walk to a background thread; a signed
 * head outside the database (var/audit-head.json) finds a tail that was cut back to an earlier signed entry.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import type { AuditEntry } from "../../protocol/storage-messages";
import { CLI_BIN, cleanup, connect, daemonLog, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

afterAll(cleanup);

function astrid(home: string, args: string[]) {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 20_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

interface LogLine { message: string; [field: string]: unknown }

function logLines(home: string): LogLine[] {
  return daemonLog(home).trim().split("\n").map((l) => JSON.parse(l) as LogLine);
}

async function stop(d: RunningDaemon): Promise<void> {
  d.child.kill("SIGTERM");
  expect(await d.exited).toBe(0);
}

/** Boots a daemon on `home`, makes a few requests (entries), stops it. */
async function run(home: string, requests = 3): Promise<void> {
  const d = await spawnDaemon({ home, args: ["--quiet"] });
  const c = await connect(d);
  for (let i = 0; i < requests; i++) await c.request("GetStatus");
  await c.close();
  await stop(d);
}

function anchorFile(home: string): string {
  return path.join(home, "var", "audit-head.json");
}

describe("audit checkpoint and anchor", () => {
  it("the second boot verifies from the checkpoint and walks the whole chain in the background", async () => {
    const home = tempHome();
    await run(home);
    // The first boot had no checkpoint: it walked everything and recorded one over the verified chain.
    const first = logLines(home).find((l) => l.message === "audit chain verified")!;
    expect(first.from_checkpoint).toBeUndefined();
    const d = await spawnDaemon({ home, args: ["--quiet"] });
    const verified = logLines(home).filter((l) => l.message === "audit chain verified");
    expect(verified).toHaveLength(2);
    expect(verified[1]!.from_checkpoint).toEqual(expect.any(Number));
    expect(verified[1]!.from_checkpoint as number).toBeGreaterThan(1);
    // The whole walk starts once the daemon is ready, and ends soon after (a small log takes milliseconds).
    const ready = logLines(home).findLastIndex((l) => l.message === "daemon ready");
    await until(() => logLines(home).findIndex((l) => l.message === "audit chain verified in full (background)"), (i) => i > ready);
    await stop(d);
    expect(astrid(home, ["audit", "verify"])).toMatchObject({ code: 0 });
  });

  it("a tampered entry before the checkpoint is found by the background walk, recorded, and reported from then on", async () => {
    const home = tempHome();
    await run(home);
    await run(home);
    const db = new Database(path.join(home, "var", "state.db"));
    const row = db.prepare("SELECT seq, content FROM audit ORDER BY seq LIMIT 1").get() as { seq: number; content: string };
    db.prepare("UPDATE audit SET content = ? WHERE seq = ?").run(row.content.replace("load", "lOad"), row.seq);
    db.close();
    const d = await spawnDaemon({ home, args: ["--quiet"] });
    const c = await connect(d);
    await until(() => c.request("GetStatus"), (r) => (r.data as { audit_chain_intact: boolean }).audit_chain_intact === false);
    await c.close();
    await stop(d);
    expect(logLines(home).some((l) => l.message === "audit chain is broken (found by the background verification)" && l.seq === row.seq)).toBe(true);
    // The break is in the chain now (signed), so a boot that verifies only from the checkpoint still sees it.
    const again = await spawnDaemon({ home, args: ["--quiet"] });
    const c2 = await connect(again);
    expect(await c2.request("GetStatus")).toMatchObject({ data: { audit_chain_intact: false } });
    await c2.close();
    await stop(again);
    const verify = astrid(home, ["audit", "verify", "--json"]);
    expect(verify.code).toBe(1);
    expect(JSON.parse(verify.out)).toMatchObject({ intact: false, marked: true, broken: { seq: row.seq } });
    const entries = astrid(home, ["audit", "tail", "-n", "10000", "--json"]).out.trim().split("\n").map((l) => JSON.parse(l) as AuditEntry);
    expect(entries.filter((e) => e.action.type === "audit_chain_broken")).toHaveLength(1);
  });

  it("a tail cut back to an earlier signed entry verifies on its own, but not against the anchor", async () => {
    const home = tempHome();
    // Two daemons: the first one's entries end with a signed batch head the tail can be cut back to.
    await run(home, 5);
    await run(home, 5);
    const anchor = JSON.parse(fs.readFileSync(anchorFile(home), "utf8")) as { seq: number; hash: string; signature: string };
    const db = new Database(path.join(home, "var", "state.db"));
    const head = (db.prepare("SELECT max(seq) AS n FROM audit").get() as { n: number }).n;
    expect(anchor.seq).toBe(head);
    // Cut back to the newest earlier entry that carries a signature, and make the head counter agree: without the
    // anchor nothing in the database shows that entries were removed.
    const cutTo = (db.prepare("SELECT max(seq) AS n FROM audit WHERE signature IS NOT NULL AND seq < ?").get(head) as { n: number | null }).n!;
    expect(cutTo).toBeGreaterThan(0);
    db.prepare("DELETE FROM audit WHERE seq > ?").run(cutTo);
    db.prepare("UPDATE meta SET value = ? WHERE key = 'audit_head'").run(String(cutTo));
    db.close();
    const kept = fs.readFileSync(anchorFile(home));
    fs.renameSync(anchorFile(home), `${anchorFile(home)}.aside`);
    expect(astrid(home, ["audit", "verify"])).toMatchObject({ code: 0, out: `Audit chain intact: ${cutTo} entries, signed through entry ${cutTo}.\n` });
    fs.writeFileSync(anchorFile(home), kept);
    const verify = astrid(home, ["audit", "verify"]);
    expect(verify.code).toBe(1);
    const missing = cutTo + 1 === head ? `entry ${head} is` : `entries ${cutTo + 1}–${head} are`;
    expect(verify.err).toMatch(new RegExp(`${missing} missing: var/audit-head.json records a signed head at entry ${head} \\(the tail was cut\\).*\\[ASTRID_ERR_AUDIT_BROKEN\\]`));
    // A daemon booting on it reports and records the break.
    const d = await spawnDaemon({ home, args: ["--quiet"] });
    const c = await connect(d);
    expect(await c.request("GetStatus")).toMatchObject({ data: { audit_chain_intact: false } });
    await c.close();
    await stop(d);
    expect(JSON.parse(astrid(home, ["audit", "verify", "--json"]).out)).toMatchObject({ intact: false, marked: true });
  });

  it("an anchor that was edited or forged is not trusted", async () => {
    const home = tempHome();
    await run(home);
    const anchor = JSON.parse(fs.readFileSync(anchorFile(home), "utf8")) as { seq: number };
    fs.writeFileSync(anchorFile(home), JSON.stringify({ ...anchor, seq: anchor.seq + 100 }));
    const verify = astrid(home, ["audit", "verify"]);
    expect(verify.code).toBe(1);
    expect(verify.err).toMatch(/audit-head\.json cannot be trusted: .*signature/);
    expect(astrid(home, ["audit", "anchor"])).toMatchObject({ code: 1, err: expect.stringMatching(/cannot be trusted.*\[ASTRID_ERR_AUDIT_BROKEN\]/) });
    fs.writeFileSync(anchorFile(home), "{not json");
    expect(astrid(home, ["audit", "verify"]).err).toMatch(/cannot be trusted: it is not JSON/);
  });

  it("`astrid audit anchor` prints the signed head; before any daemon ran it says there is none", async () => {
    const home = tempHome();
    const none = astrid(home, ["audit", "anchor"]);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/ASTRID_ERR_AUDIT_NO_ANCHOR|ASTRID_ERR_RUNTIME_KEY/);
    await run(home);
    const text = astrid(home, ["audit", "anchor"]);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^Audit head: entry \d+, sha256 [0-9a-f]{64}, signed \d{4}-\d\d-\d\dT/);
    const json = JSON.parse(astrid(home, ["audit", "anchor", "--json"]).out) as { seq: number; hash: string; signature: string; written_at: string };
    const db = new Database(path.join(home, "var", "state.db"), { readonly: true });
    const last = db.prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").get() as { seq: number; hash: Buffer };
    db.close();
    expect(json).toMatchObject({ seq: last.seq, hash: last.hash.toString("hex"), signature: expect.any(String) });
  });

  it("a removed state.db with the key kept: the old anchor is moved aside, not held against the new log", async () => {
    const home = tempHome();
    await run(home);
    fs.rmSync(path.join(home, "var", "state.db"));
    await run(home);
    expect(astrid(home, ["audit", "verify"]).code).toBe(0);
    expect(fs.readdirSync(path.join(home, "var")).some((f) => f.startsWith("audit-head.json.removed-"))).toBe(true);
  });
});
