/**
 * Soak: for SOAK_SECONDS (20 under a plain `jest` run; `npm run soak` runs 300) the real daemon serves 64
 * frontends chatting in their own sessions, a capsule whose code is edited every few seconds (hot reload), a client
 * making management and admin requests, and one client that never reads. Each frontend checks it gets exactly its
 * own replies; at the end no message was lost or misrouted, and the daemon's fds, threads and RSS (from /proc,
 * measured and printed at start and end) stayed within the bounds below.
 */
import fs from "node:fs";
import path from "node:path";
import { adminRequest } from "../../protocol/admin-request";
import type { DaemonClient } from "../../protocol/client";
import { encodeFrame } from "../../protocol/framing";
import type { IpcMessage } from "../../protocol/ipc-message";
import { cleanup, connect, RawClient, sleep, spawnDaemon, tempHome, until, type RunningDaemon } from "../helpers/daemon";
import { writeTagCapsule, writeTagCode } from "../helpers/tag-capsule";

const SECONDS = Number(process.env.SOAK_SECONDS ?? 20);
const FRONTENDS = 64;
const EDIT_EVERY_MS = 3000;
/** Each frontend's pause between a reply and its next prompt. */
const THINK_MS = 50;
/** How long a reply may take before it counts as lost (a loaded 2-core runner, a reload beside it). */
const REPLY_DEADLINE_MS = 15_000;
/** Bounds on growth between the start and the end of the run (the same clients connected at both). */
const MAX_FD_GROWTH = 8;
const MAX_THREAD_GROWTH = 2;
const MAX_RSS_GROWTH_MB = 150;

afterAll(cleanup);

interface Sample { fds: number; threads: number; rssMb: number }

function sample(pid: number): Sample {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return {
    fds: fs.readdirSync(`/proc/${pid}/fd`).length,
    threads: fs.readdirSync(`/proc/${pid}/task`).length,
    rssMb: Math.round(Number(/VmRSS:\s+(\d+)/.exec(status)![1]) / 102.4) / 10,
  };
}

/** One frontend: prompts in its own session, one at a time, and checks every message it gets is its own. */
class Frontend {
  sent = 0;
  answered = 0;
  misrouted: string[] = [];
  private waiting: { text: string; resolve: () => void } | undefined;

  constructor(readonly c: DaemonClient, readonly session: string) {
    c.on("message", (m: IpcMessage) => {
      if (m.topic !== "agent.v1.response") return;
      const expected = this.waiting ? `chatter: ${this.waiting.text}` : undefined;
      if (m.payload.session_id !== session || m.payload.text !== expected) {
        this.misrouted.push(`${String(m.payload.session_id)}: ${String(m.payload.text)}`);
        return;
      }
      this.answered++;
      const w = this.waiting!;
      this.waiting = undefined;
      w.resolve();
    });
  }

  async run(until: number): Promise<void> {
    while (Date.now() < until) {
      const text = `${this.session} #${++this.sent}`;
      let timer: NodeJS.Timeout | undefined;
      const answered = await new Promise<boolean>((resolve) => {
        this.waiting = { text, resolve: () => resolve(true) };
        timer = setTimeout(() => resolve(false), REPLY_DEADLINE_MS);
        this.c.publish("user.v1.prompt", { type: "user_input", text, session_id: this.session });
      });
      clearTimeout(timer);
      if (!answered) {
        this.waiting = undefined;
        return; // counted as lost: sent > answered
      }
      // A person types between prompts; the pause also leaves the 2-core runner some room for its other tests.
      await sleep(THINK_MS);
    }
  }
}

function requestFrame(method: string, params: unknown, id: string): Buffer {
  return encodeFrame({
    topic: "astrid.v1.request.soak", signature: null, source_id: "00000000-0000-0000-0000-000000000000", timestamp: new Date().toISOString(), seq: 0,
    payload: { type: "raw_json", request_id: id, method, params },
  });
}

describe("soak", () => {
  let d: RunningDaemon;

  it(`${FRONTENDS} frontends, a capsule edited every ${EDIT_EVERY_MS / 1000} s, management and admin requests and a client that never reads, for ${SECONDS} s`, async () => {
    const workspace = tempHome();
    const root = path.join(workspace, ".astrid", "capsules");
    writeTagCapsule(root, "chatter", "chatter");
    const edited = writeTagCapsule(root, "edited", "edit 0", false);
    d = await spawnDaemon({ args: ["--workspace", workspace, "--watch"] });
    const pid = d.child.pid!;
    const beforeClients = sample(pid);

    const frontends = await Promise.all(Array.from({ length: FRONTENDS }, async (_, i) => new Frontend(await connect(d), `soak-${i}`)));
    const operator = await connect(d);
    await operator.request("KvSet", { scope: "test:soak", key: "big", value: Buffer.alloc(256 * 1024, 7).toString("base64"), encoding: "base64" });
    const deaf = await RawClient.authenticated(d);
    deaf.socket.pause();
    // Warm up (every frontend answered once, JIT and buffers settled), then the start sample.
    const warm = Date.now() + 1500;
    await Promise.all(frontends.map((f) => f.run(warm)));
    const start = sample(pid);

    const end = Date.now() + SECONDS * 1000;
    let edits = 0;
    let managed = 0;
    let refused = 0;
    let deafAsks = 0;
    const editing = (async () => {
      while (Date.now() + EDIT_EVERY_MS < end) {
        await sleep(EDIT_EVERY_MS);
        writeTagCode(edited, `edit ${++edits}`, false);
      }
    })();
    const managing = (async () => {
      const asks = [
        () => operator.request("GetStatus"), () => operator.request("ListCapsules"), () => operator.request("GetCapsuleMetadata"),
        () => operator.request("ListClients"), () => operator.request("KvSet", { key: `k${managed % 50}`, value: String(managed) }),
        () => operator.request("KvGet", { key: `k${managed % 50}` }), () => adminRequest(operator, "AgentList"), () => adminRequest(operator, "GroupList"),
      ];
      while (Date.now() < end) {
        const r = (await asks[managed++ % asks.length]!()) as { status: string };
        if (r.status === "Error") refused++;
        await sleep(20);
      }
    })();
    const deafening = (async () => {
      while (Date.now() < end && !deaf.closed) {
        deaf.socket.write(requestFrame("KvGet", { scope: "test:soak", key: "big" }, `deaf-${++deafAsks}`));
        await sleep(100);
      }
    })();
    await Promise.all([...frontends.map((f) => f.run(end)), editing, managing, deafening]);
    // The reloads have settled before the end sample (the edited capsule is one worker again).
    await until(async () => ((await operator.request("GetCapsuleMetadata")).data as Array<{ name: string; state: string }>).find((m) => m.name === "edited")?.state, (s) => s === "ready", 15_000);
    await sleep(500);
    const finish = sample(pid);

    const sent = frontends.reduce((n, f) => n + f.sent, 0);
    const answered = frontends.reduce((n, f) => n + f.answered, 0);
    const misrouted = frontends.flatMap((f) => f.misrouted);
    const status = (await operator.request("GetStatus")).data as { connected_clients: number; loaded_capsules: string[] };
    deaf.destroy();
    await Promise.all(frontends.map((f) => f.c.close()));
    await operator.close();
    await sleep(1000);
    const afterClients = sample(pid);
    process.stdout.write(`SOAK ${JSON.stringify({
      seconds: SECONDS, frontends: FRONTENDS, prompts: sent, replies: answered, lost: sent - answered, misrouted: misrouted.length,
      capsule_edits: edits, management_requests: managed, refused_requests: refused, deaf_requests: deafAsks, deaf_disconnected: deaf.closed,
      before_clients: beforeClients, start, end: finish, after_clients: afterClients,
    })}\n`);

    expect(misrouted).toEqual([]);
    expect(sent - answered).toBe(0);
    expect(sent).toBeGreaterThan(FRONTENDS * 2);
    expect(edits).toBeGreaterThanOrEqual(Math.floor(SECONDS * 1000 / EDIT_EVERY_MS) - 2);
    expect(refused).toBe(0);
    expect(status.loaded_capsules).toEqual(expect.arrayContaining(["chatter", "edited"]));
    expect(finish.fds - start.fds).toBeLessThanOrEqual(MAX_FD_GROWTH);
    expect(finish.threads - start.threads).toBeLessThanOrEqual(MAX_THREAD_GROWTH);
    expect(finish.rssMb - start.rssMb).toBeLessThanOrEqual(MAX_RSS_GROWTH_MB);
    // The clients' fds are given back once they leave.
    expect(afterClients.fds - beforeClients.fds).toBeLessThanOrEqual(MAX_FD_GROWTH);
    d.child.kill("SIGTERM");
    expect(await d.exited).toBe(0);
  }, (SECONDS + 90) * 1000);
});
