/**
 * Approvals and elicitation against the real daemon: fixture capsules ask, real clients answer over the socket.
 * Every frame each client receives is kept, so a question that reaches the wrong connection fails the test.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import type { DaemonClient } from "../../protocol/client";
import type { IpcMessage } from "../../protocol/ipc-message";
import { CLI_BIN, cleanup, connect, connectAs, daemonLog, ROOT, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";

const FIX = path.join(ROOT, "spec", "fixtures", "approvals");
const TIMEOUT_MS = 1500;

afterAll(cleanup);

/** A connection that keeps every frame and can answer approval questions by a rule. */
class Person {
  readonly frames: IpcMessage[] = [];
  answer: ((request: Record<string, unknown>) => string | undefined) | undefined;

  private constructor(readonly client: DaemonClient) {
    client.on("message", (m: IpcMessage) => {
      this.frames.push(m);
      const p = m.payload as Record<string, unknown>;
      if (m.topic === "astrid.v1.approval" && this.answer) {
        const decision = this.answer(p);
        if (decision) this.client.publish(`astrid.v1.approval.response.${String(p.request_id)}`, { type: "approval_response", request_id: p.request_id, decision } as never);
      }
    });
  }

  static async of(client: Promise<DaemonClient>): Promise<Person> {
    return new Person(await client);
  }

  approvals(): Array<Record<string, unknown>> {
    return this.frames.filter((m) => m.topic === "astrid.v1.approval").map((m) => m.payload as Record<string, unknown>);
  }

  /** Sends a prompt in `session` and resolves with the agent's reply text there. */
  async prompt(session: string, text: string, timeoutMs = 8000): Promise<string> {
    const before = this.frames.length;
    this.client.publish("user.v1.prompt", { type: "user_input", text, session_id: session });
    const reply = await until(() => this.frames.slice(before).find((m) => m.topic === "agent.v1.response" && m.payload.session_id === session), (m) => m !== undefined, timeoutMs);
    return String(reply!.payload.text);
  }
}

function astrid(home: string, args: string[]) {
  return spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ASTRID_HOME: home }, encoding: "utf8", timeout: 30_000 });
}

/** The audit entries (newest last) as `astrid audit tail --json` prints them. */
function auditEntries(home: string): Array<{ principal?: string; action: Record<string, unknown> }> {
  const r = astrid(home, ["audit", "tail", "-n", "2000", "--json"]);
  expect(r.status).toBe(0);
  return r.stdout.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
}

/** Every file under `dir`, recursively (the key files aside: they hold key bytes, not answers). */
function filesUnder(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return filesUnder(p);
    return e.isFile() ? [p] : [];
  });
}

function workspaceWith(...capsules: string[]): string {
  const ws = tempHome();
  for (const c of capsules) fs.cpSync(path.join(FIX, c), path.join(ws, ".astrid", "capsules", c), { recursive: true });
  return ws;
}

describe("approval.request", () => {
  let d: RunningDaemon;
  let alice: Person;
  let n = 0;
  const session = () => `s${++n}-${Date.now()}`;

  beforeAll(async () => {
    // The handler deadline is shorter than the approval wait: a capsule waiting for a person must not count as hung.
    d = await spawnDaemon({ args: ["--workspace", workspaceWith("asker", "snoop")], env: { ASTRID_APPROVAL_TIMEOUT_MS: String(TIMEOUT_MS), ASTRID_CAPSULE_HANDLER_TIMEOUT_MS: "1000" } });
    alice = await Person.of(connect(d));
  }, 30_000);
  afterAll(async () => {
    await alice.client.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  });

  it("approve: the request reaches the session with the wire shape, the capsule gets approved", async () => {
    const s = session();
    alice.answer = () => "approve";
    expect(await alice.prompt(s, "ask deploy | prod cluster")).toBe("decision:approve approved:true");
    const [req] = alice.approvals().filter((p) => p.session_id === s);
    expect(req).toEqual({
      type: "approval_required",
      request_id: expect.stringMatching(/^[0-9a-f-]{36}$/),
      action: "deploy",
      resource: "prod cluster",
      reason: "Capsule 'asker' requests approval: a test",
      capsule: "asker",
      session_id: s,
      options: ["approve", "approve_session", "approve_always", "deny"],
    });
  });

  it("deny: the capsule is told no", async () => {
    alice.answer = () => "deny";
    expect(await alice.prompt(session(), "ask rm | -rf /")).toBe("decision:deny approved:false");
  });

  it("approve_session: the same request in the same session is not asked again; in another session it is", async () => {
    const s1 = session();
    const s2 = session();
    alice.answer = () => "approve_session";
    expect(await alice.prompt(s1, "ask push | origin main")).toBe("decision:approve_session approved:true");
    alice.answer = undefined;
    expect(await alice.prompt(s1, "ask push | origin main")).toBe("decision:approve_session approved:true");
    expect(alice.approvals().filter((p) => p.session_id === s1)).toHaveLength(1);
    // Another resource is another question.
    alice.answer = () => "deny";
    expect(await alice.prompt(s1, "ask push | origin dev")).toBe("decision:deny approved:false");
    expect(await alice.prompt(s2, "ask push | origin main")).toBe("decision:deny approved:false");
    expect(alice.approvals().filter((p) => p.session_id === s2)).toHaveLength(1);
  });

  it("nobody answers: denied with decision timeout after ASTRID_APPROVAL_TIMEOUT_MS (the waiting handler is not killed as hung)", async () => {
    alice.answer = undefined;
    const t = Date.now();
    expect(await alice.prompt(session(), "ask wait | forever")).toBe("decision:timeout approved:false");
    const took = Date.now() - t;
    expect(took).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(took).toBeLessThan(TIMEOUT_MS + 3000);
    expect(daemonLog(d.home)).not.toContain("ran longer than");
  });

  it("only the session's connections are asked; answers from another session or principal are ignored", async () => {
    const s = session();
    const other = await Person.of(connect(d));
    other.client.publish("client.v1.session.join", { type: "raw_json", session_id: "elsewhere" } as never);
    const bob = await Person.of(connectAs(d, "bob"));
    await until(() => other.frames.some((m) => m.topic === "client.v1.session.joined"), (ok) => ok, 5000);
    alice.answer = undefined;
    const reply = alice.prompt(s, "ask publish | the release");
    const req = await until(() => alice.approvals().find((p) => p.session_id === s), (p) => p !== undefined, 5000);
    const id = String(req!.request_id);
    const respond = (p: Person) => p.client.publish(`astrid.v1.approval.response.${id}`, { type: "approval_response", request_id: id, decision: "approve_always" } as never);
    respond(other);
    respond(bob);
    await sleep(300);
    alice.client.publish(`astrid.v1.approval.response.${id}`, { type: "approval_response", request_id: id, decision: "deny" } as never);
    expect(await reply).toBe("decision:deny approved:false");
    expect(other.approvals()).toEqual([]);
    expect(bob.approvals()).toEqual([]);
    const log = daemonLog(d.home);
    expect(log.split("\n").filter((l) => l.includes("approval answer from outside the session ignored") && l.includes(id))).toHaveLength(2);
    // Nothing was remembered from the ignored approve_always.
    expect(fs.existsSync(path.join(d.home, "var", "allowances.json"))).toBe(false);
    await other.client.close();
    await bob.client.close();
  });

  it("a capsule cannot answer its own request (or see anyone's answers)", async () => {
    alice.answer = undefined;
    expect(await alice.prompt(session(), "ask escalate | self-approve")).toBe("decision:timeout approved:false");
    // The request reaches both capsules as an event, which may be delivered after the reply (the asker's handler
    // was busy waiting for its answer): wait for what they did with it.
    await until(() => daemonLog(d.home), (log) => log.includes("approval answer not from a client ignored"));
    const seenTopics = async () => {
      const seen = await alice.client.request("KvGet", { scope: "default:capsule:snoop", key: "seen" });
      return seen.data === null ? [] : (JSON.parse((seen.data as { value: string }).value) as Array<{ topic: string }>).map((e) => e.topic);
    };
    const topics = await until(seenTopics, (t) => t.includes("astrid.v1.approval"));
    expect(topics.filter((t) => t.includes(".response."))).toEqual([]);
  });

  it("bad input: an over-long action is refused; control characters are removed before anyone sees them", async () => {
    expect(await alice.prompt(session(), "long-action")).toMatch(/^error:ASTRID_ERR_REQUEST_INVALID .*action must be 1–256/);
    const s = session();
    alice.answer = () => "approve";
    expect(await alice.prompt(s, "ask de\u001b[31mploy\u202e | x\u0007y")).toBe("decision:approve approved:true");
    const [req] = alice.approvals().filter((p) => p.session_id === s);
    expect(req).toMatchObject({ action: "de[31mploy", resource: "xy" });
  });

  it("a wrong answer is refused to its sender, and the question stays open", async () => {
    const s = session();
    alice.answer = undefined;
    const reply = alice.prompt(s, "ask format | disk");
    const req = await until(() => alice.approvals().find((p) => p.session_id === s), (p) => p !== undefined, 5000);
    const id = String(req!.request_id);
    const errorsBefore = alice.frames.filter((m) => m.topic === "astrid.v1.error").length;
    alice.client.publish(`astrid.v1.approval.response.${id}`, { type: "approval_response", request_id: id, decision: "maybe" } as never);
    await until(() => alice.frames.filter((m) => m.topic === "astrid.v1.error").length, (k) => k > errorsBefore, 3000);
    alice.client.publish(`astrid.v1.approval.response.${id}`, { type: "approval_response", request_id: id, decision: "approve" } as never);
    expect(await reply).toBe("decision:approve approved:true");
  });

  it("elicit outside an install or upgrade hook is a coded error", async () => {
    expect(await alice.prompt(session(), "elicit")).toMatch(/^error:ASTRID_ERR_ELICIT_NOT_ALLOWED /);
  });

  it("every decision is audited with capsule, principal, action, resource and decision", async () => {
    const entries = auditEntries(d.home).filter((e) => e.action.change === "approval_granted" || e.action.change === "approval_denied");
    expect(entries).toEqual(expect.arrayContaining([
      expect.objectContaining({ principal: "default", action: expect.objectContaining({ change: "approval_granted", capsule: "asker", action: "deploy", resource: "prod cluster", decision: "approve" }) }),
      expect.objectContaining({ action: expect.objectContaining({ change: "approval_denied", capsule: "asker", action: "wait", decision: "timeout" }) }),
      expect.objectContaining({ action: expect.objectContaining({ change: "approval_granted", action: "push", decision: "approve_session", by: "session allowance" }) }),
    ]));
  });

  it("astrid chat -p denies without --yes and approves with it", async () => {
    const no = astrid(d.home, ["chat", "-p", "ask curl | example.com"]);
    expect(no.stdout).toBe("decision:deny approved:false\n");
    expect(no.stderr).toContain("astrid: denied asker to curl example.com (headless mode; --yes approves)");
    const yes = astrid(d.home, ["chat", "-p", "ask curl | example.com", "--yes"]);
    expect(yes.stdout).toBe("decision:approve approved:true\n");
    expect(yes.stderr).toContain("astrid: approved asker to curl example.com (--yes)");
    expect(yes.status).toBe(0);
  });
});

describe("approve_always", () => {
  it("survives a daemon restart (per principal, in var/allowances.json, 0600)", async () => {
    const ws = workspaceWith("asker");
    const home = tempHome();
    const env = { ASTRID_APPROVAL_TIMEOUT_MS: String(TIMEOUT_MS) };
    let d = await spawnDaemon({ home, args: ["--workspace", ws], env });
    let alice = await Person.of(connect(d));
    alice.answer = () => "approve_always";
    expect(await alice.prompt("a1", "ask read | ~/.ssh/config")).toBe("decision:approve_always approved:true");
    await alice.client.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    const file = path.join(home, "var", "allowances.json");
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(file, "utf8")).allowances).toEqual([
      expect.objectContaining({ principal: "default", capsule: "asker", action: "read", resource: "~/.ssh/config", workspace: ws }),
    ]);

    d = await spawnDaemon({ home, args: ["--workspace", ws], env });
    alice = await Person.of(connect(d));
    alice.answer = () => "deny";
    expect(await alice.prompt("a2", "ask read | ~/.ssh/config")).toBe("decision:approve_always approved:true");
    expect(alice.approvals()).toEqual([]);
    // Another principal (a frontend acting as bob) is asked: the allowance is alice's (default's) only.
    const bob = await Person.of(connectAs(d, "bob"));
    bob.answer = () => "deny";
    expect(await bob.prompt("b1", "ask read | ~/.ssh/config")).toBe("decision:deny approved:false");
    expect(bob.approvals()).toHaveLength(1);
    await bob.client.close();
    await alice.client.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, 60_000);
});

describe("elicit during install", () => {
  const SECRET = `sk-test-${Math.random().toString(36).slice(2)}-GUARD`;

  it("asks the operator; a secret is stored encrypted and readable only by its capsule; cancel and bad answers are handled", async () => {
    const ws = workspaceWith("asker", "snoop", "eager");
    const d = await spawnDaemon({ args: ["--workspace", ws], env: { ASTRID_APPROVAL_TIMEOUT_MS: String(TIMEOUT_MS) } });
    const op = await Person.of(connect(d));
    // The workspace's `eager` ran its install hook at boot, when nobody was connected to answer.
    expect((await op.client.request("KvGet", { scope: "default:capsule:eager", key: "early" })).data).toMatchObject({ value: "ASTRID_ERR_NOBODY_TO_ASK" });

    const answers: Record<string, unknown[]> = {
      app_name: [{ value: "my app" }],
      api_key: [{ value: SECRET }],
      region: [{ value: "mars" }, { value: "eu" }],
      tags: [{ values: ["a", "b"] }],
      nickname: [{}],
    };
    const asked: Array<Record<string, unknown>> = [];
    op.client.on("message", (m: IpcMessage) => {
      if (m.topic !== "astrid.v1.elicit") return;
      const p = m.payload as unknown as { request_id: string; field: { key: string } };
      asked.push(p);
      const send = () => {
        const next = answers[p.field.key]!.shift();
        op.client.publish(`astrid.v1.elicit.response.${p.request_id}`, { type: "elicit_response", request_id: p.request_id, ...(next as object) } as never);
        return answers[p.field.key]!.length > 0;
      };
      // A rejected answer (mars) is followed by the right one once the daemon said why.
      if (send()) setTimeout(send, 300);
    });
    const src = path.join(tempHome(), "configurable");
    fs.cpSync(path.join(FIX, "configurable"), src, { recursive: true });
    const installed = await op.client.request("InstallCapsule", { source: src, workspace: false }, { timeoutMs: 60_000 });
    expect(installed).toMatchObject({ status: "Success", data: { name: "configurable", state: "ready" } });
    expect(asked.map((a) => (a.field as { key: string }).key)).toEqual(["app_name", "api_key", "region", "tags", "nickname"]);
    expect(asked[0]).toEqual({
      type: "elicit_request", request_id: expect.stringMatching(/^[0-9a-f-]{36}$/), capsule_id: "configurable",
      field: { type: "text", key: "app_name", description: "What to call the app", default: "demo" },
    });
    expect(asked[2]!.field).toEqual({ type: "select", key: "region", description: "", options: ["us", "eu"] });
    expect(op.frames.some((m) => m.topic === "astrid.v1.error" && String(m.payload.message).includes("must be one of: us, eu"))).toBe(true);

    const kv = async (key: string) => ((await op.client.request("KvGet", { scope: "default:capsule:configurable", key })).data as { value: string }).value;
    expect(await kv("app_name")).toBe("my app");
    expect(await kv("api_key_stored")).toBe('{"ok":true}');
    expect(await kv("region")).toBe("eu");
    expect(await kv("tags")).toBe('["a","b"]');
    expect(await kv("nickname_error")).toBe("ASTRID_ERR_ELICIT_CANCELLED");

    // The capsule reads its secret back; another capsule asking for the same key name gets nothing.
    expect(await op.prompt("x1", "secret")).toBe(`has:true other:false reversed:${SECRET.split("").reverse().join("")}`);
    expect(await op.prompt("x2", "secret-of-configurable")).toBe("has:false secret:null");
    // The snoop capsule saw the questions but no answer.
    const seen = (JSON.parse(await (async () => ((await op.client.request("KvGet", { scope: "default:capsule:snoop", key: "seen" })).data as { value: string }).value)()) as Array<{ topic: string }>);
    expect(seen.map((e) => e.topic)).toContain("astrid.v1.elicit");
    expect(seen.filter((e) => e.topic.includes(".response."))).toEqual([]);
    expect((await op.client.request("KvGet", { scope: "default:capsule:snoop", key: "intercepted" })).data).toBeNull();

    // The key file is the owner's only; the elicit audit names the key, never the value.
    expect(fs.statSync(path.join(d.home, "keys", "secrets.key")).mode & 0o777).toBe(0o600);
    const elicits = auditEntries(d.home).filter((e) => e.action.change === "elicit" && e.action.capsule === "configurable");
    expect(elicits.map((e) => [e.action.key, e.action.outcome])).toEqual([
      ["app_name", "answered"], ["api_key", "secret_stored"], ["region", "answered"], ["tags", "answered"], ["nickname", "ASTRID_ERR_ELICIT_CANCELLED"],
    ]);
    await op.client.close();
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
    // The secret's bytes are nowhere under the home: not in state.db (KV, audit) or its WAL, not in the logs.
    const needle = Buffer.from(SECRET);
    const leaks = filesUnder(d.home).filter((f) => fs.readFileSync(f).includes(needle));
    expect(leaks).toEqual([]);
    expect(filesUnder(d.home).some((f) => f.endsWith("state.db"))).toBe(true);
  }, 60_000);
});
