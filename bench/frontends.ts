/**
 * Session routing with many frontends. N frontends (one socket each, the operator's token) each send M prompts to
 * the bundled assistant in their own session, in a closed loop (the next prompt once the previous one's final
 * answer came), in two modes, each on a fresh daemon and home:
 *   routed     as the daemon works now: a session's events reach only the connections that joined it, so each
 *              frontend receives its own session's deltas and answers;
 *   broadcast  the comparison with what the daemon did before routing: every frontend first joins all N sessions
 *              (`client.v1.session.join`, waiting for each `client.v1.session.joined`), so it receives every event
 *              and has to read and discard the other sessions' frames, as with the old broadcast.
 * Per mode: whether every prompt got its right answer, the frames of other sessions received (misrouted; in
 * broadcast mode the ones each client had to discard), frames and bytes received by all clients, prompts/s,
 * p50/p99 prompt → final-answer latency, daemon CPU per prompt and the daemon's RSS (start, peak, end).
 *
 *   node dist/bench/frontends.js [--frontends 64] [--prompts 200] [--json]
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { DaemonClient } from "../protocol/client";
import { encodeFrame, FrameDecoder, MAX_SERVER_FRAME_BYTES, parseFrameJson } from "../protocol/framing";
import { isJsonObject, NIL_UUID, type IpcMessage } from "../protocol/ipc-message";
import { CLIENT_ERROR_TOPIC, SESSION_JOIN_TOPIC, SESSION_JOINED_TOPIC } from "../protocol/topics";
import { nowRfc3339 } from "../protocol/timestamp";
import { DAEMON_VERSION, PROTOCOL_VERSION } from "../protocol/version";
import { count, flag, option, percentile, sleep } from "./bench-options";
import { rssBytes, cpuSeconds, stopChild as stopDaemon } from "./processes";
import { emitRows, rateRow } from "./bench-table";


const FRONTENDS = count("frontends", "frontends", 64);
const PROMPTS = count("frontends", "prompts", 200);
const JSON_OUT = flag("json");

/** Deadlines: no wait in this bench is unbounded (a lost answer fails the run instead of hanging it). */
const BOOT_MS = 60_000;
const CONNECT_MS = 10_000;
const JOINS_MS = 30_000;
const ANSWER_MS = 60_000;
/** How often the daemon's RSS is read while a mode runs. */
const RSS_SAMPLE_MS = 100;

const DIST = path.resolve(__dirname, "..");
const DAEMON = path.join(DIST, "bin", "astrid-daemon.js");

type Mode = "routed" | "broadcast";

/** Everything this run created: removed and stopped by `cleanup`, on success, error or signal alike. */
const ownedDirs = new Set<string>();
const ownedChildren = new Set<ChildProcess>();
const ownedSockets = new Set<net.Socket>();

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(`/tmp/${prefix}`); // short: the socket path must stay under 108 bytes
  ownedDirs.add(dir);
  return dir;
}

/** A daemon of one mode. */
interface Running {
  child: ChildProcess;
  socketPath: string;
  token: string;
  dirs: string[];
}

/** Boots the daemon with the default bundle (the built-in assistant) and waits until its capsules are ready. */
async function boot(): Promise<Running> {
  const home = tempDir("astrid-bench-");
  // An empty workspace: no capsule from the current directory's .astrid/ joins the bundle.
  const workspace = tempDir("astrid-bench-ws-");
  const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, ASTRID_IDLE_TIMEOUT_SECS: "0" };
  delete env.ASTRID_BUNDLED_CAPSULES_DIR; // unset: the capsules shipped with the package
  const child = spawn(process.execPath, [DAEMON, "--no-watch", "--workspace", workspace], { env, stdio: ["ignore", "ignore", "pipe"] });
  ownedChildren.add(child);
  child.once("exit", () => ownedChildren.delete(child));
  let err = "";
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const ready = path.join(home, "run", "system.ready");
  const tokenFile = path.join(home, "run", "system.token");
  const deadline = Date.now() + BOOT_MS;
  while (!(fs.existsSync(tokenFile) && fs.existsSync(ready))) {
    if (child.exitCode !== null) throw new Error(`daemon exited with ${child.exitCode} during boot: ${err}`);
    if (Date.now() > deadline) throw new Error(`daemon not ready within ${BOOT_MS} ms: ${err}`);
    await sleep(10);
  }
  const running = { child, socketPath: path.join(home, "run", "system.sock"), token: fs.readFileSync(tokenFile, "utf8"), dirs: [home, workspace] };
  // Boot serves after 5 s even if capsules are still starting; the assistant must be up before the first prompt.
  const c = await DaemonClient.connect(running);
  try {
    for (;;) {
      const r = await c.request("GetCapsuleMetadata");
      const capsules = r.status === "CapsuleMetadata" ? r.data : [];
      if (capsules.some((m) => m.name === "astrid-capsule-assistant") && capsules.every((m) => m.state === "ready")) break;
      if (capsules.some((m) => m.state === "failed") || Date.now() > deadline) throw new Error(`capsules did not all start: ${JSON.stringify(r)}`);
      await sleep(50);
    }
  } finally {
    await c.close();
  }
  return running;
}


let cleaning: Promise<void> | undefined;
/** Closes every socket, stops every daemon this run started and removes every temp dir it made; idempotent. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const s of ownedSockets) s.destroy();
    await Promise.all([...ownedChildren].map((c) => stopDaemon(c)));
    for (const dir of ownedDirs) fs.rmSync(dir, { recursive: true, force: true });
    ownedDirs.clear();
  })();
  return cleaning;
}



/** Samples the daemon's RSS every RSS_SAMPLE_MS from `start()` until `stop()`, keeping the peak. */
class RssSampler {
  peak = 0;
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly pid: number) {}
  start(): void {
    this.sample();
    this.timer = setInterval(() => this.sample(), RSS_SAMPLE_MS);
  }
  /** Stops sampling; returns the last sample (which also counts towards the peak). */
  stop(): number {
    clearInterval(this.timer);
    return this.sample();
  }
  private sample(): number {
    const rss = rssBytes(this.pid);
    if (rss > this.peak) this.peak = rss;
    return rss;
  }
}

/**
 * One frontend: a socket client that counts every frame and byte it receives. Not DaemonClient, which does not
 * expose the bytes it read; the handshake and framing are the same code.
 */
class Frontend {
  frames = 0;
  /** agent.v1.* / session.v1.* frames of this frontend's own session. */
  ownFrames = 0;
  /** agent.v1.* / session.v1.* frames of any other session (or of none). */
  foreign = 0;
  answered = 0;
  /** Final answers whose text was not the sum asked for. */
  wrong = 0;
  private readonly decoder = new FrameDecoder(MAX_SERVER_FRAME_BYTES);
  private onFinal: ((text: string) => void) | undefined;
  private joinsAwaited = 0;
  private onJoinsDone: (() => void) | undefined;
  private failure: ((err: Error) => void) | undefined;
  private closed = false;

  private constructor(private readonly socket: net.Socket, readonly session: string) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => {
      this.closed = true;
      this.failure?.(new Error(`${session}: the connection closed`));
    });
    socket.on("error", () => {
      /* surfaced through close */
    });
  }

  /** Connects and handshakes with the session token. */
  static connect(d: Running, session: string): Promise<Frontend> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(d.socketPath);
      ownedSockets.add(socket);
      socket.once("close", () => ownedSockets.delete(socket));
      const decoder = new FrameDecoder(MAX_SERVER_FRAME_BYTES);
      const timer = setTimeout(() => fail(new Error(`${session}: handshake timed out after ${CONNECT_MS} ms`)), CONNECT_MS);
      const fail = (err: Error) => {
        clearTimeout(timer);
        socket.destroy();
        reject(err);
      };
      socket.once("error", fail);
      socket.once("connect", () =>
        socket.write(encodeFrame({ token: d.token, protocol_version: PROTOCOL_VERSION, client_version: DAEMON_VERSION, client_name: "bench-frontends" })));
      const onData = (chunk: Buffer) => {
        decoder.push(chunk);
        const body = decoder.next();
        if (body === null) return;
        const reply = parseFrameJson(body);
        if (!isJsonObject(reply) || reply.status !== "ok") return fail(new Error(`${session}: handshake refused: ${JSON.stringify(reply)}`));
        clearTimeout(timer);
        socket.off("data", onData).off("error", fail);
        // Nothing is sent unasked before the first prompt or join; bytes here would be lost to the counts.
        if (decoder.pendingBytes > 0) return fail(new Error(`${session}: ${decoder.pendingBytes} unexpected bytes after the handshake`));
        resolve(new Frontend(socket, session));
      };
      socket.on("data", onData);
    });
  }

  /** Bytes received so far, handshake included (callers take differences). */
  get bytesRead(): number {
    return this.socket.bytesRead;
  }

  /** Joins every session in `sessions` and resolves once each join was answered. */
  joinAll(sessions: string[]): Promise<void> {
    return this.deadline(JOINS_MS, `${sessions.length} joins`, new Promise<void>((resolve) => {
      this.joinsAwaited = sessions.length;
      this.onJoinsDone = resolve;
      for (const s of sessions) this.send(SESSION_JOIN_TOPIC, { type: "raw_json", session_id: s });
    }));
  }

  /** Sends one prompt in this frontend's session; resolves with its final answer's text. */
  ask(text: string): Promise<string> {
    return this.deadline(ANSWER_MS, `the answer to ${JSON.stringify(text)}`, new Promise<string>((resolve) => {
      this.onFinal = resolve;
      this.send("user.v1.prompt", { type: "user_input", text, session_id: this.session });
    }));
  }

  /** Counters back to zero, so that only the measured prompts count. */
  reset(): void {
    this.frames = this.ownFrames = this.foreign = this.answered = this.wrong = 0;
  }

  close(): void {
    this.failure = undefined;
    this.socket.destroy();
  }

  private send(topic: string, payload: Record<string, unknown>): void {
    const message: IpcMessage = { topic, payload: payload as IpcMessage["payload"], signature: null, source_id: NIL_UUID, timestamp: nowRfc3339(), seq: 0 };
    this.socket.write(encodeFrame(message));
  }

  /** `work` with a deadline; the connection closing or an error frame rejects it too. */
  private deadline<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`${this.session}: no ${what} within ${ms} ms`)), ms);
      const done = (err: Error | undefined, value?: T) => {
        clearTimeout(timer);
        this.failure = undefined;
        if (err) reject(err);
        else resolve(value as T);
      };
      this.failure = (err) => done(err);
      if (this.closed) return done(new Error(`${this.session}: the connection closed`));
      void work.then((v) => done(undefined, v));
    });
  }

  private onData(chunk: Buffer): void {
    this.decoder.push(chunk);
    for (let body = this.decoder.next(); body !== null; body = this.decoder.next()) {
      this.frames++;
      const m = parseFrameJson(body);
      if (!isJsonObject(m) || typeof m.topic !== "string" || !isJsonObject(m.payload)) continue;
      const { topic, payload } = m;
      if (topic.startsWith("agent.v1.") || topic.startsWith("session.v1.")) {
        if (payload.session_id !== this.session) {
          this.foreign++;
          continue;
        }
        this.ownFrames++;
        if (topic === "agent.v1.response" && payload.is_final === true) {
          const resolve = this.onFinal;
          this.onFinal = undefined;
          this.answered++;
          resolve?.(String(payload.text));
        }
      } else if (topic === SESSION_JOINED_TOPIC) {
        if (--this.joinsAwaited === 0) this.onJoinsDone?.();
      } else if (topic === CLIENT_ERROR_TOPIC) {
        this.failure?.(new Error(`${this.session}: error frame ${JSON.stringify(payload)}`));
      }
    }
  }
}

/** One mode's figures. */
interface ModeResult {
  mode: Mode;
  frontends: number;
  prompts_per_frontend: number;
  all_answered: boolean;
  answered: number;
  wrong_answers: number;
  misrouted_frames: number;
  frames_received: number;
  bytes_received: number;
  seconds: number;
  prompts_per_s: number;
  p50_ms: number;
  p99_ms: number;
  daemon_cpu_ms_per_prompt: number;
  bench_cpu_ms_per_prompt: number;
  rss_start_mb: number;
  rss_peak_mb: number;
  rss_end_mb: number;
}

/** Waits (≤ 5 s) until no frontend received a frame for 200 ms: the foreign copies of the last answers land. */
async function quiet(fronts: Frontend[]): Promise<void> {
  const total = () => fronts.reduce((n, f) => n + f.frames, 0);
  const deadline = Date.now() + 5000;
  for (let last = -1; Date.now() < deadline;) {
    const now = total();
    if (now === last) return;
    last = now;
    await sleep(200);
  }
}

async function runMode(mode: Mode): Promise<ModeResult> {
  const d = await boot();
  const pid = d.child.pid!;
  const sessions = Array.from({ length: FRONTENDS }, (_, k) => `bench-${k}`);
  const fronts: Frontend[] = [];
  try {
    fronts.push(...(await Promise.all(sessions.map((s) => Frontend.connect(d, s)))));
    if (mode === "broadcast") await Promise.all(fronts.map((f) => f.joinAll(sessions)));
    await quiet(fronts);
    for (const f of fronts) f.reset();
    const bytesBefore = fronts.map((f) => f.bytesRead);
    const rss = new RssSampler(pid);
    rss.start();
    const rssStart = rss.peak;
    const cpuBefore = cpuSeconds(pid);
    const benchCpuBefore = process.cpuUsage();
    const latencies: number[] = [];
    const started = process.hrtime.bigint();
    await Promise.all(fronts.map(async (f, k) => {
      for (let i = 0; i < PROMPTS; i++) {
        // A distinct sum per prompt, so an answer to a different prompt cannot pass for this one.
        const t = process.hrtime.bigint();
        const text = await f.ask(`${k}+${i}`);
        latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
        if (text !== `${k}+${i} = ${k + i}`) f.wrong++;
      }
    }));
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await quiet(fronts);
    const benchCpu = process.cpuUsage(benchCpuBefore);
    const cpu = cpuSeconds(pid) - cpuBefore;
    const rssEnd = rss.stop();
    const n = FRONTENDS * PROMPTS;
    const sum = (g: (f: Frontend) => number) => fronts.reduce((a, f) => a + g(f), 0);
    const answered = sum((f) => f.answered);
    const wrong = sum((f) => f.wrong);
    const mb = (b: number) => b / (1024 * 1024);
    return {
      mode,
      frontends: FRONTENDS,
      prompts_per_frontend: PROMPTS,
      all_answered: answered === n && wrong === 0,
      answered,
      wrong_answers: wrong,
      misrouted_frames: sum((f) => f.foreign),
      frames_received: sum((f) => f.frames),
      bytes_received: fronts.reduce((a, f, i) => a + f.bytesRead - bytesBefore[i]!, 0),
      seconds,
      prompts_per_s: n / seconds,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      daemon_cpu_ms_per_prompt: (cpu * 1000) / n,
      bench_cpu_ms_per_prompt: (benchCpu.user + benchCpu.system) / 1000 / n,
      rss_start_mb: mb(rssStart),
      rss_peak_mb: mb(rss.peak),
      rss_end_mb: mb(rssEnd),
    };
  } finally {
    for (const f of fronts) f.close();
    await stopDaemon(d.child);
    for (const dir of d.dirs) {
      fs.rmSync(dir, { recursive: true, force: true });
      ownedDirs.delete(dir);
    }
  }
}

function printTable(rows: ModeResult[]): void {
  const [routed, broadcast] = rows as [ModeResult, ModeResult];
  console.log(`Frontends: ${FRONTENDS} × ${PROMPTS} prompts ("k+i") through the bundled assistant, one session each, closed loop`);
  const header = ["mode", "all answered", "misrouted", "frames", "MB received", "prompts/s", "p50 ms", "p99 ms", "daemon CPU ms/prompt", "bench CPU ms/prompt", "RSS start/peak/end MB"];
  const cells = rows.map((r) => [
    r.mode, r.all_answered ? "yes" : `NO (${r.answered} answered, ${r.wrong_answers} wrong)`, String(r.misrouted_frames), String(r.frames_received),
    (r.bytes_received / 1048576).toFixed(1), r.prompts_per_s.toFixed(0), r.p50_ms.toFixed(1), r.p99_ms.toFixed(1),
    r.daemon_cpu_ms_per_prompt.toFixed(2), r.bench_cpu_ms_per_prompt.toFixed(2),
    `${r.rss_start_mb.toFixed(0)} / ${r.rss_peak_mb.toFixed(0)} / ${r.rss_end_mb.toFixed(0)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  for (const r of [header, ...cells]) console.log(r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  "));
  console.log(`routed / broadcast: throughput ${(routed.prompts_per_s / broadcast.prompts_per_s).toFixed(2)}, ` +
    `bytes received ${(routed.bytes_received / broadcast.bytes_received).toFixed(4)} (broadcast received ${(broadcast.bytes_received / routed.bytes_received).toFixed(1)}×)`);
  console.log("(misrouted: frames of another session a client received; in broadcast mode the ones it had to read and discard)");
}

async function main(): Promise<void> {
  const rows = [await runMode("routed"), await runMode("broadcast")];
  const [routed, broadcast] = rows as [ModeResult, ModeResult];
  if (JSON_OUT) {
    const ratios = {
      throughput_routed_over_broadcast: routed.prompts_per_s / broadcast.prompts_per_s,
      bytes_routed_over_broadcast: routed.bytes_received / broadcast.bytes_received,
    };
    process.stdout.write(`${JSON.stringify({ config: { frontends: FRONTENDS, prompts: PROMPTS }, modes: rows, ratios }, null, 2)}\n`);
  } else {
    printTable(rows);
    emitRows([rateRow(`${FRONTENDS} frontends, routed by session (floor: broadcast to every client)`, routed.prompts_per_s, broadcast.prompts_per_s, "prompts/s", 1)]);
  }
}

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => void cleanup().finally(() => process.exit(130)));
}

main()
  .then(() => cleanup())
  .catch(async (err: unknown) => {
    console.error(err);
    await cleanup();
    process.exit(1);
  });
