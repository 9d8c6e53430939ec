/**
 * Test helpers that drive the real daemon: a temp ASTRID_HOME, the compiled `astrid-daemon` process, real Unix
 * socket clients (the library client and a raw one for malformed input).
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { DaemonClient } from "../../protocol/client";
import { encodeFrame, FrameDecoder, MAX_SERVER_FRAME_BYTES } from "../../protocol/framing";
import { NIL_UUID, type IpcMessage } from "../../protocol/ipc-message";

export const ROOT = path.resolve(__dirname, "..", "..");
export const DAEMON_BIN = path.join(ROOT, "dist", "bin", "astrid-daemon.js");
export const CLI_BIN = path.join(ROOT, "dist", "bin", "astrid.js");

const homes: string[] = [];
const children = new Set<ChildProcess>();

/** A fresh ASTRID_HOME under /tmp (short, so the socket path stays under 108 bytes). Removed after the file. */
export function tempHome(): string {
  const dir = fs.mkdtempSync("/tmp/astrid-t-");
  homes.push(dir);
  return dir;
}

/** Kills every daemon a test left running and removes the temp homes. Call from afterAll. */
export async function cleanup(): Promise<void> {
  const exits = [...children].map((child) => new Promise((r) => child.once("exit", r)));
  for (const child of children) child.kill("SIGKILL");
  await Promise.all(exits);
  for (const dir of homes.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * A suite's usual end: closes `clients`, stops `daemon` with SIGTERM expecting a clean exit (0), then `cleanup()`.
 * Either may be missing (a `beforeAll` that failed early).
 */
export async function stopDaemon(daemon: RunningDaemon | undefined, ...clients: Array<DaemonClient | undefined>): Promise<void> {
  for (const client of clients) await client?.close();
  if (daemon) {
    daemon.child.kill("SIGTERM");
    expect(await daemon.exited).toBe(0);
  }
  await cleanup();
}

/** A capsule as `GetCapsuleMetadata` describes it (the fields tests read; the rest stays reachable). */
export interface CapsuleMeta {
  name: string;
  state: string;
  restarts: number;
  last_error?: string;
  kind?: string;
  wasm?: { hash: string; source: string; exports: string[]; imports: string[]; max_memory_bytes: number; abi: string };
  [field: string]: unknown;
}

/** The daemon's capsules by name, as `GetCapsuleMetadata` answers them. */
export async function capsulesByName(client: DaemonClient): Promise<Record<string, CapsuleMeta>> {
  const list = (await client.request("GetCapsuleMetadata")).data as CapsuleMeta[];
  return Object.fromEntries(list.map((m) => [m.name, m]));
}

/** A running daemon process. */
export interface RunningDaemon {
  home: string;
  child: ChildProcess;
  socketPath: string;
  token: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or 128+signal). */
  exited: Promise<number>;
}

/** Options for spawning. */
export interface SpawnOptions {
  home?: string;
  args?: string[];
  env?: Record<string, string | undefined>;
  /** Wait for run/system.ready (default true). */
  waitReady?: boolean;
}

/**
 * A bundled-capsules directory holding only the CLI policy capsule, so a test daemon runs exactly the capsules its
 * test gives it. Tests of the real bundle (the built-in assistant) pass `ASTRID_BUNDLED_CAPSULES_DIR: undefined`.
 */
export function policyOnlyBundle(): string {
  const dir = tempHome();
  fs.cpSync(path.join(ROOT, "capsules", "astrid-capsule-cli"), path.join(dir, "astrid-capsule-cli"), { recursive: true });
  return dir;
}

/** Spawns `astrid-daemon` and (by default) waits until run/system.ready exists. */
export async function spawnDaemon(options: SpawnOptions = {}): Promise<RunningDaemon> {
  const home = options.home ?? tempHome();
  const env: NodeJS.ProcessEnv = { ...process.env, ASTRID_HOME: home, ASTRID_BUNDLED_CAPSULES_DIR: policyOnlyBundle(), ...options.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  // A daemon killed earlier in this home left its ready file (and token) behind; as the CLI does, remove the ready
  // file before spawning, so the wait below sees only this daemon's (it writes the token before it).
  if (options.waitReady !== false) fs.rmSync(path.join(home, "run", "system.ready"), { force: true });
  const child = spawn(process.execPath, [DAEMON_BIN, ...(options.args ?? [])], { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number>((resolve) =>
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? 128 + (signal ? os.constants.signals[signal] : 0));
    }),
  );
  const daemon: RunningDaemon = {
    home,
    child,
    socketPath: path.join(home, "run", "system.sock"),
    token: "",
    stdout: () => out,
    stderr: () => err,
    exited,
  };
  if (options.waitReady === false) return daemon;
  const ready = path.join(home, "run", "system.ready");
  const tokenFile = path.join(home, "run", "system.token");
  let done = false;
  void exited.then(() => (done = true));
  const deadline = Date.now() + 15_000;
  // The ready file was removed above and the daemon writes the token before it, so token-then-ready is never stale.
  while (!(fs.existsSync(tokenFile) && fs.existsSync(ready))) {
    if (done) throw new Error(`daemon exited before ready: ${err}`);
    if (Date.now() > deadline) throw new Error(`daemon not ready within 15 s: ${err}`);
    await sleep(20);
  }
  daemon.token = fs.readFileSync(path.join(home, "run", "system.token"), "utf8");
  return daemon;
}

/** Connects with the library client. */
export function connect(daemon: RunningDaemon, extra: Partial<Parameters<typeof DaemonClient.connect>[0]> = {}): Promise<DaemonClient> {
  return DaemonClient.connect({ socketPath: daemon.socketPath, token: daemon.token, ...extra });
}

/** Leaves a dead socket file at `<home>/run/system.sock` (as a crashed daemon does); returns its path. */
export async function makeStaleSocket(home: string): Promise<string> {
  fs.mkdirSync(path.join(home, "run"), { recursive: true });
  const sock = path.join(home, "run", "system.sock");
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  // Node removes the file on close; keep it as a dead socket by hard-linking it first.
  fs.linkSync(sock, `${sock}.keep`);
  await new Promise<void>((r) => server.close(() => r()));
  fs.renameSync(`${sock}.keep`, sock);
  return sock;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A client that acts as `principal`: a frontend credential of that name (`astrid frontend add`), presented in the
 * handshake. The principal's profile is whatever the test wrote under etc/profiles (none: no capabilities).
 */
export async function connectAs(daemon: RunningDaemon, principal: string): Promise<DaemonClient> {
  const tokenFile = path.join(daemon.home, "etc", "frontends", `${principal}.token`);
  if (!fs.existsSync(tokenFile)) {
    const r = spawnSync(process.execPath, [CLI_BIN, "frontend", "add", principal, "--platform", "test"], {
      env: { ...process.env, ASTRID_HOME: daemon.home }, encoding: "utf8", timeout: 20_000,
    });
    if (r.status !== 0) throw new Error(`astrid frontend add ${principal} failed: ${r.stderr}`);
  }
  return DaemonClient.connect({ socketPath: daemon.socketPath, token: fs.readFileSync(tokenFile, "utf8").trim() });
}

/** A raw socket client for malformed input: send any bytes, read frames, see the close. */
export class RawClient {
  readonly decoder = new FrameDecoder(MAX_SERVER_FRAME_BYTES);
  private readonly frames: unknown[] = [];
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on("data", (chunk: Buffer) => {
      this.decoder.push(chunk);
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this.frames.push(JSON.parse(f.toString()));
      this.wake();
    });
    socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
    socket.on("error", () => {});
  }

  /** Opens a raw connection. */
  static open(socketPath: string): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      socket.once("connect", () => resolve(new RawClient(socket)));
      socket.once("error", reject);
    });
  }

  /** Opens and completes a valid handshake. */
  static async authenticated(daemon: RunningDaemon): Promise<RawClient> {
    const c = await RawClient.open(daemon.socketPath);
    c.send(encodeFrame({ token: daemon.token, protocol_version: 1, client_version: "test" }));
    const reply = (await c.next()) as { status: string };
    if (reply.status !== "ok") throw new Error(`handshake refused: ${JSON.stringify(reply)}`);
    return c;
  }

  /** Writes raw bytes. */
  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Publishes a message as the reference CLI does (full envelope). */
  publish(topic: string, payload: unknown): void {
    const message: Omit<IpcMessage, "payload"> & { payload: unknown } = {
      topic, payload, signature: null, source_id: NIL_UUID, timestamp: new Date().toISOString(), seq: 0,
    };
    this.send(encodeFrame(message));
  }

  /** The next frame, or rejects after `timeoutMs` / when the connection closes first. */
  async next(timeoutMs = 5000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    while (this.frames.length === 0) {
      if (this.closed) throw new Error("connection closed");
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no frame before the deadline");
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.frames.shift();
  }

  /** The next frame on `topic`, skipping others. */
  async nextOn(topic: string, timeoutMs = 5000): Promise<IpcMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = (await this.next(Math.max(1, deadline - Date.now()))) as IpcMessage;
      if (f.topic === topic) return f;
    }
  }

  /** Frames received and not yet read. */
  get buffered(): number {
    return this.frames.length;
  }

  /** Resolves true once the daemon closed the connection, false after `timeoutMs`. */
  async waitClosed(timeoutMs = 7000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await sleep(10);
    return this.closed;
  }

  /** Closes from our side. */
  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Polls `what` every 100 ms until `ok` holds (resolving with that value) or `timeoutMs` passes (throwing). */
export async function until<T>(what: () => Promise<T> | T, ok: (v: T) => boolean, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await what();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`condition not met: ${JSON.stringify(v)}`);
    await sleep(100);
  }
}

/** Today's daemon log under `home` (JSON lines). */
export function daemonLog(home: string): string {
  const dir = path.join(home, "log");
  return fs.readFileSync(path.join(dir, fs.readdirSync(dir).find((f) => f.startsWith("astrid."))!), "utf8");
}
