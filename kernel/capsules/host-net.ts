/**
 * The `net.*` host calls: sockets for capsules (`astrid:net/host@1.0.0`, and the 0.1.0 world's `net-*` over it).
 *
 * - Outbound TCP (`net.connect_tcp`) and name lookups (`net.lookup`) are gated by the manifest's `[capabilities]
 *   net_connect` (host patterns as `net`'s, kernel/net/host-pattern.ts, plus `:*` for any port), the principal's
 *   `self:net:socket` and its `[network] egress`, then the address guard (kernel/net/address-guard.ts, the one
 *   outbound HTTP uses, its test seams included): a host that is or resolves to a private, loopback, link-local,
 *   multicast or unspecified address is refused, and the connection is pinned to the address that was vetted.
 * - The capsule's Unix listener (`net.bind_unix`, gated by a non-empty `net_bind`): a socket file of its own at
 *   `run/capsules/<name>.sock` (mode 0600, in the 0700 `run/`; removed when the run ends). Each connection must open
 *   with the daemon socket's handshake (the operator's session token, protocol version 1) before the capsule sees it.
 * - TCP listeners (`net.bind_tcp`, `net_tcp_bind`) and UDP sockets (`net.udp_*`, `net_udp`: `bind:` entries for the
 *   local address, plain entries for peers; the address guard on every send-to and at connect).
 *
 * Every socket belongs to one capsule run and is closed when the run ends; a wait in progress then fails. Limits per
 * run: 8 streams (outbound and accepted together), 4 TCP listeners, 4 UDP sockets. A stream buffers at most 256 KiB
 * unread (or one whole frame of at most 10 MiB while a framed read waits for it) and pauses its socket beyond that,
 * so a peer that floods the capsule fills its own send buffer, not the daemon's memory.
 */
import dgram from "node:dgram";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { AstridError, type ErrorCode } from "../../protocol/errors";
import { FRAME_HEADER_BYTES, MAX_HANDSHAKE_BYTES, encodeFrame } from "../../protocol/framing";
import { AUTH_FAILED_REASON, HandshakeRequestSchema, protocolMismatchReason, tokenMatches, type HandshakeResponse } from "../../protocol/handshake";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import { DAEMON_VERSION, PROTOCOL_VERSION } from "../../protocol/version";
import { canonicalIp } from "../net/address-table";
import { AddressGuard } from "../net/address-guard";
import { parseHostPattern, patternCovers, normalizeUrlHost } from "../net/host-pattern";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService, ManifestEntryKind } from "./host-call";

/** Largest frame `read`/`write` move (the daemon socket's client frame limit). */
export const MAX_NET_FRAME_BYTES = 10 * 1024 * 1024;
/** Streams (outbound TCP and accepted connections together) one capsule run may hold. */
export const MAX_NET_STREAMS = 8;
export const MAX_TCP_LISTENERS = 4;
export const MAX_UDP_SOCKETS = 4;
/** Unread bytes a stream holds before its socket is paused (a framed read waiting for a larger frame may hold it). */
export const STREAM_BUFFER_BYTES = 256 * 1024;
/** Unsent bytes a stream lets Node queue before a write waits for the peer to take some. */
const WRITE_BUFFER_BYTES = 1024 * 1024;
/** Connections a listener holds for the capsule to accept; more are closed at once. */
const ACCEPT_BACKLOG = 16;
/** Datagrams (and bytes) a UDP socket holds unread; more are dropped, as the network would. */
const UDP_QUEUE = 64;
const UDP_QUEUE_BYTES = 1024 * 1024;
const MAX_DATAGRAM_BYTES = 65_507;
/** An outbound connect's deadline. */
export const CONNECT_TIMEOUT_MS = 30_000;
/** The longest one call waits in the kernel; a longer (or unbounded) wait is the guest calling again. */
export const MAX_WAIT_MS = 60_000;
/** A framed `read` without a read timeout looks for this long (the reference proxy's polling window). */
export const FRAME_POLL_MS = 50;
/** A new connection on the capsule's listener must complete its handshake within this. */
const HANDSHAKE_TIMEOUT_MS = 5000;

const fail = (code: ErrorCode, message: string): never => {
  throw new AstridError(code, message);
};

/** `ip:port`, IPv6 bracketed. */
const hostPort = (address: string | undefined, port: number | undefined) =>
  address === undefined || port === undefined ? "" : net.isIPv6(address) ? `[${address}]:${port}` : `${address}:${port}`;

/** A Node socket error as the kernel's code for it. */
function socketError(err: NodeJS.ErrnoException, what: string): AstridError {
  const code = err.code ?? "";
  const map: Record<string, ErrorCode> = {
    ECONNREFUSED: "ASTRID_ERR_NET_CONNECTION_REFUSED",
    ECONNRESET: "ASTRID_ERR_NET_CONNECTION_RESET",
    EPIPE: "ASTRID_ERR_NET_CLOSED",
    ERR_STREAM_DESTROYED: "ASTRID_ERR_NET_CLOSED",
    ETIMEDOUT: "ASTRID_ERR_TIMEOUT",
    EADDRINUSE: "ASTRID_ERR_NET_ADDRESS_IN_USE",
    EADDRNOTAVAIL: "ASTRID_ERR_REQUEST_INVALID",
    EACCES: "ASTRID_ERR_REQUEST_INVALID",
  };
  return new AstridError(map[code] ?? "ASTRID_ERR_NET_FAILED", `${what}: ${err.message}`);
}

/**
 * True when some entry covers `host` on `port` (null: any port). Entries are `net`'s host patterns, and a `:*` port
 * means any port (`127.0.0.1:*`, `[::1]:*`); `prefix` (`bind:`) selects and strips the entries that carry it.
 */
export function netListCovers(entries: readonly string[], host: string, port: number | null, prefix = ""): boolean {
  return entries.some((raw) => {
    let entry = raw.trim();
    if (prefix !== "") {
      if (!entry.toLowerCase().startsWith(prefix)) return false;
      entry = entry.slice(prefix.length);
    } else if (/^bind:/i.test(entry)) {
      return false; // a local-address entry is not a peer entry
    }
    if (entry.endsWith(":*")) entry = entry.slice(0, -2);
    const pattern = parseHostPattern(entry);
    if (pattern === null) return false;
    if (port === null) return patternCovers({ ...pattern, port: null }, host, 0);
    return patternCovers(pattern, host, port);
  });
}

/** A wait that ends when `ready()` holds, when `ms` pass, or when the run ends (each wake re-checks). */
class Waiters {
  private readonly wakers = new Set<() => void>();
  wake(): void {
    for (const w of [...this.wakers]) w();
  }
  /** Resolves true when `ready()` held within `ms`, false when the time ran out. */
  until(ready: () => boolean, ms: number, ended: () => boolean): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    if (ms <= 0 || ended()) return Promise.resolve(false);
    return new Promise((resolve) => {
      const done = (value: boolean) => {
        clearTimeout(timer);
        this.wakers.delete(check);
        resolve(value);
      };
      const check = () => {
        if (ready()) done(true);
        else if (ended()) done(false);
      };
      const timer = setTimeout(() => done(ready()), ms);
      this.wakers.add(check);
    });
  }
}

/** Options a stream keeps; those Node cannot read back are the values last set. */
interface StreamOptions {
  nodelay: boolean;
  keepaliveSecs: number | null;
  lingerMs: number | null;
  reuseaddr: boolean;
  readTimeoutMs: number | null;
  writeTimeoutMs: number | null;
}

/** One connected stream: its socket, the bytes received and not yet read, and how it ended. */
class NetStream {
  readonly waiters = new Waiters();
  private chunks: Buffer[] = [];
  buffered = 0;
  /** The peer finished sending (or the read side was shut). */
  eof = false;
  /** Why the stream broke, if it did. */
  failure: AstridError | null = null;
  destroyed = false;
  writeShut = false;
  /** A write is under way: one at a time, so the kernel holds at most one unsent write per stream beyond its buffer. */
  writing = false;
  /** The whole frame a framed read waits for (prefix included); the buffer may grow to it. */
  private wanted = 0;
  readonly options: StreamOptions = { nodelay: false, keepaliveSecs: null, lingerMs: null, reuseaddr: false, readTimeoutMs: null, writeTimeoutMs: null };

  constructor(readonly socket: net.Socket, readonly kind: "tcp" | "unix", private readonly announce: () => void, initial?: Buffer) {
    if (initial && initial.length > 0) this.push(initial);
    socket.on("data", (chunk: Buffer) => this.push(chunk));
    socket.on("end", () => {
      this.eof = true;
      this.changed();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.failure ??= socketError(err, "the connection failed");
      this.changed();
    });
    socket.on("close", () => {
      this.destroyed = true;
      this.eof = true;
      this.changed();
    });
    // Accepted sockets arrive paused (pauseOnConnect): reading starts now, under the buffer's limit.
    socket.resume();
    this.flowControl();
  }

  private push(chunk: Buffer): void {
    if (this.eof) return; // a read side the capsule shut keeps nothing
    const wasEmpty = this.buffered === 0;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.flowControl();
    if (wasEmpty || (this.wanted > 0 && this.buffered >= this.wanted)) this.changed();
  }

  /** Pauses the socket while the buffer is full, resumes it when there is room. */
  private flowControl(): void {
    if (this.destroyed) return;
    const limit = Math.max(STREAM_BUFFER_BYTES, this.wanted);
    if (this.buffered >= limit) this.socket.pause();
    else if (this.socket.isPaused()) this.socket.resume();
  }

  private changed(): void {
    this.waiters.wake();
    this.announce();
  }

  /** The first `n` buffered bytes (n ≤ buffered), taken off the buffer or not. */
  private bytes(n: number, consume: boolean): Buffer {
    const joined = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = Buffer.from(joined.subarray(0, n));
    if (consume) {
      const rest = joined.subarray(n);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.buffered = rest.length;
      this.flowControl();
    } else {
      this.chunks = joined.length > 0 ? [joined] : [];
    }
    return out;
  }

  /** The length the buffered frame declares, or null before its prefix is in. */
  private declared(): number | null {
    if (this.buffered < FRAME_HEADER_BYTES) return null;
    return this.bytes(FRAME_HEADER_BYTES, false).readUInt32BE(0);
  }

  /** True when a read of `mode` has something to answer (data, the end, or the failure). */
  readable(mode: "frame" | "bytes"): boolean {
    if (this.failure || this.eof) return true;
    if (mode === "bytes") return this.buffered > 0;
    const length = this.declared();
    if (length === null) return false;
    if (length > MAX_NET_FRAME_BYTES) return true;
    this.wanted = FRAME_HEADER_BYTES + length;
    this.flowControl();
    return this.buffered >= this.wanted;
  }

  /** A complete frame, `closed` at the end, or `pending`; a frame over the limit breaks the stream. */
  takeFrame(): { status: "data"; data: Buffer } | { status: "closed" } | { status: "pending" } {
    const length = this.declared();
    if (length !== null && length > MAX_NET_FRAME_BYTES) {
      // The stream cannot be resynchronised after a bogus prefix: it closes, and later reads see it closed.
      this.close();
      this.chunks = [];
      this.buffered = 0;
      this.failure = new AstridError("ASTRID_ERR_FRAME_TOO_LARGE", `the peer sent a frame of ${length} bytes, more than ${MAX_NET_FRAME_BYTES} (10 MiB); the stream was closed`);
      throw this.failure;
    }
    if (length !== null && this.buffered >= FRAME_HEADER_BYTES + length) {
      const frame = this.bytes(FRAME_HEADER_BYTES + length, true).subarray(FRAME_HEADER_BYTES);
      this.wanted = 0;
      this.flowControl();
      return { status: "data", data: frame };
    }
    if (this.failure && !this.eof) throw this.failure;
    if (this.eof || this.failure) return { status: "closed" };
    return { status: "pending" };
  }

  /** Up to `max` bytes, consumed or peeked; empty when none came; `closed` past the end. */
  takeBytes(max: number, consume: boolean): Buffer {
    if (this.buffered > 0) return this.bytes(Math.min(max, this.buffered), consume);
    if (this.failure) throw this.failure;
    if (this.eof) return fail("ASTRID_ERR_NET_CLOSED", "the stream is closed (the peer finished sending, or its read side was shut)");
    return Buffer.alloc(0);
  }

  shutdown(how: "receive" | "send" | "both"): void {
    if (how !== "send") {
      this.eof = true;
      this.chunks = [];
      this.buffered = 0;
      this.wanted = 0;
      this.changed();
    }
    if (how !== "receive" && !this.writeShut) {
      this.writeShut = true;
      this.socket.end();
    }
  }

  close(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.eof = true;
    if (this.options.lingerMs === 0) this.socket.resetAndDestroy();
    else this.socket.destroy();
    this.changed();
  }
}

/** A listener: the connections that arrived (and, for the Unix one, passed the handshake), waiting to be accepted. */
class Listener {
  readonly waiters = new Waiters();
  readonly pending: Array<{ socket: net.Socket; initial?: Buffer }> = [];
  closed = false;
  constructor(readonly server: net.Server, readonly kind: "tcp" | "unix", readonly socketPath?: string) {}
}

/** A UDP socket with its unread datagrams. */
class UdpHandle {
  readonly waiters = new Waiters();
  readonly queue: Array<{ data: Buffer; host: string; port: number }> = [];
  queuedBytes = 0;
  peer: { host: string; port: number } | null = null;
  readTimeoutMs: number | null = null;
  closed = false;
  constructor(readonly socket: dgram.Socket) {}
}

type Handle = { kind: "stream"; stream: NetStream } | { kind: "listener"; listener: Listener } | { kind: "udp"; udp: UdpHandle };

/** What one capsule run holds. */
class RunSockets {
  readonly handles = new Map<string, Handle>();
  private next = 1;
  unixListener: string | null = null;
  ended = false;
  /** Binds under way (a slot each, taken before the bind awaits, so concurrent binds cannot pass the limit together). */
  readonly binding = { "tcp-listener": 0, udp: 0 };
  constructor(readonly run: CapsuleRun) {}
  add(handle: Handle): string {
    const id = `${handle.kind[0]}${this.next++}`;
    this.handles.set(id, handle);
    return id;
  }
  count(kind: "stream" | "tcp-listener" | "udp"): number {
    let n = kind === "stream" ? 0 : this.binding[kind];
    for (const h of this.handles.values()) {
      if (kind === "stream" ? h.kind === "stream" : kind === "udp" ? h.kind === "udp" : h.kind === "listener" && h.listener.kind === "tcp") n++;
    }
    return n;
  }
}

const str = (v: unknown, what: string): string => (typeof v === "string" && v.length <= 1024 ? v : fail("ASTRID_ERR_REQUEST_INVALID", `${what} must be a string of at most 1024 characters`));
const int = (v: unknown, what: string, min: number, max: number): number =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max ? v : fail("ASTRID_ERR_REQUEST_INVALID", `${what} must be a whole number from ${min} to ${max}`);
const optMs = (v: unknown, what: string): number | null => (v === null || v === undefined ? null : int(v, what, 0, 2 ** 52));
const bytesArg = (v: unknown, what: string): Buffer =>
  v instanceof Uint8Array ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : fail("ASTRID_ERR_REQUEST_INVALID", `${what} must be bytes`);

/** NetService: the `net` family of capsule calls. */
export class NetService implements HostService {
  private readonly guard: AddressGuard;
  private readonly runs = new Map<CapsuleRun, RunSockets>();
  /** The run that holds each capsule's Unix socket path (a reload's new run takes it over). */
  private readonly unixOwners = new Map<string, RunSockets>();
  /** Per capsule name, the changes to its socket file (a bind, a removal), one after the other. */
  private readonly socketFiles = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly host: HostContext) {
    this.guard = new AddressGuard({ seams: host.testFaults && host.netSeams ? host.netSeams : null });
  }

  /** Where capsule `name`'s Unix listener lives. */
  socketPath(name: string): string {
    return path.join(this.host.home.runDir, "capsules", `${name}.sock`);
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    if (this.closed) throw new AstridError("ASTRID_ERR_SHUTTING_DOWN", "the daemon is stopping");
    const mine = this.socketsOf(call.run);
    switch (call.call) {
      case "net.connect_tcp":
        return this.connectTcp(call, mine, str(args[0], "host"), int(args[1], "port", 1, 65_535));
      case "net.lookup":
        return this.lookup(call, str(args[0], "host"));
      case "net.bind_unix":
        return this.bindUnix(call, mine);
      case "net.bind_tcp":
        return this.bindTcp(call, mine, str(args[0], "host"), int(args[1], "port", 0, 65_535));
      case "net.accept":
        return this.accept(mine, str(args[0], "listener"), int(args[1], "wait_ms", 0, MAX_WAIT_MS));
      case "net.read":
        return this.read(mine, str(args[0], "stream"), str(args[1], "mode"), int(args[2] ?? 0, "max_bytes", 0, 2 ** 32 - 1),
          args[3] === undefined ? null : int(args[3], "wait_ms", 0, MAX_WAIT_MS));
      case "net.write":
        return this.write(mine, str(args[0], "stream"), bytesArg(args[1], "data"), args[2] === true);
      case "net.ready":
        return this.ready(mine, str(args[0], "handle"));
      case "net.shutdown": {
        const how = str(args[1], "how");
        if (how !== "receive" && how !== "send" && how !== "both") return fail("ASTRID_ERR_REQUEST_INVALID", "how must be receive, send or both");
        this.streamOf(mine, str(args[0], "stream")).shutdown(how);
        return null;
      }
      case "net.option":
        return this.option(mine, str(args[0], "stream"), str(args[1], "option"), args.length > 2, args[2]);
      case "net.close":
        this.closeHandle(mine, str(args[0], "handle"));
        return null;
      case "net.udp_bind":
        return this.udpBind(call, mine, str(args[0], "host"), int(args[1], "port", 0, 65_535));
      case "net.udp_send":
        return this.udpSend(call, mine, str(args[0], "socket"), bytesArg(args[1], "data"), args[2] === undefined || args[2] === null ? null : str(args[2], "peer host"),
          args[3] === undefined || args[3] === null ? null : int(args[3], "peer port", 1, 65_535));
      case "net.udp_recv":
        return this.udpRecv(mine, str(args[0], "socket"), int(args[1], "max_bytes", 0, 2 ** 32 - 1));
      case "net.udp_connect":
        return this.udpConnect(call, mine, str(args[0], "socket"), args[1] === null ? null : str(args[1], "peer host"), args[1] === null ? 0 : int(args[2], "peer port", 1, 65_535));
      default:
        return fail("ASTRID_ERR_REQUEST_INVALID", `unknown net call ${call.call}`);
    }
  }

  endRun(run: CapsuleRun): void {
    const mine = this.runs.get(run);
    if (!mine) return;
    this.runs.delete(run);
    mine.ended = true;
    for (const id of [...mine.handles.keys()]) this.closeHandle(mine, id);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const run of [...this.runs.keys()]) this.endRun(run);
    // The socket files' removals: nothing is left in run/ once the daemon has stopped.
    await Promise.all(this.socketFiles.values());
  }

  private socketsOf(run: CapsuleRun): RunSockets {
    if (run.ended) return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    let mine = this.runs.get(run);
    if (!mine) this.runs.set(run, (mine = new RunSockets(run)));
    return mine;
  }

  private handleOf(mine: RunSockets, id: string): Handle {
    return mine.handles.get(id) ?? fail("ASTRID_ERR_NOT_FOUND", `no socket ${JSON.stringify(id)} in this capsule (closed, or never opened)`);
  }

  private streamOf(mine: RunSockets, id: string): NetStream {
    const h = this.handleOf(mine, id);
    return h.kind === "stream" ? h.stream : fail("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(id)} is not a stream`);
  }

  /** The manifest list and the principal's capability (and egress for outbound peers), audited like every gated call. */
  private async permit(call: HostCall, kind: ManifestEntryKind, target: string, allowed: boolean, egress?: { host: string; port: number | null }): Promise<void> {
    await call.permit({ kind, target, allowedByManifest: allowed, capability: CAPSULE_HOST_CAPABILITIES.netSocket });
    if (!egress) return;
    const list = (await this.host.principals.profile(call.principal)).network.egress;
    if (list.length > 0 && !netListCovers(list, egress.host, egress.port)) {
      const detail = `principal ${call.principal}'s [network] egress does not cover ${target}`;
      this.host.audit.capsule("denied", call.run.record.name, { call: call.call, principal: call.principal, capability: CAPSULE_HOST_CAPABILITIES.netSocket, manifest: kind, target, detail });
      fail("ASTRID_ERR_PERMISSION_DENIED", `${call.run.record.name}: ${call.call} of ${JSON.stringify(target)}: ${detail}`);
    }
  }

  /** A host as a socket call names it (name or IP literal, IPv6 with or without brackets), normalised. */
  private hostOf(raw: string): string {
    const host = normalizeUrlHost(raw.trim().toLowerCase());
    if (host === "" || /[\s/\\?#@%]/.test(host)) return fail("ASTRID_ERR_REQUEST_INVALID", `${JSON.stringify(raw.slice(0, 200))} is not a host name or IP address`);
    return host;
  }

  /** The address the guard allows for `host` (its errors as the net calls' codes). */
  private async vet(host: string) {
    try {
      return await this.guard.vet(host);
    } catch (err) {
      if ((err as AstridError).code === "ASTRID_ERR_HTTP_FAILED") throw new AstridError("ASTRID_ERR_NET_UNRESOLVABLE", (err as Error).message);
      throw err;
    }
  }

  private async connectTcp(call: HostCall, mine: RunSockets, rawHost: string, port: number) {
    const host = this.hostOf(rawHost);
    const target = hostPort(host, port);
    await this.permit(call, "net_connect", target, netListCovers(call.run.record.manifest.capabilities.net_connect ?? [], host, port), { host, port });
    const vetted = await this.vet(host);
    // Counted before and after the connect: the run may have filled its slots (or ended) meanwhile.
    const full = () => mine.count("stream") >= MAX_NET_STREAMS && fail("ASTRID_ERR_NET_SOCKET_LIMIT", `${call.run.record.name} already holds ${MAX_NET_STREAMS} streams; close one first`);
    full();
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: vetted.address, port, family: vetted.family });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new AstridError("ASTRID_ERR_TIMEOUT", `connect to ${target}: no answer within ${CONNECT_TIMEOUT_MS} ms`));
      }, CONNECT_TIMEOUT_MS);
      s.once("connect", () => {
        clearTimeout(timer);
        s.removeAllListeners("error");
        resolve(s);
      });
      s.once("error", (err) => {
        clearTimeout(timer);
        reject(socketError(err, `connect to ${target}`));
      });
    });
    if (mine.ended) {
      socket.destroy();
      return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    }
    try {
      full();
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return this.adopt(mine, socket, "tcp");
  }

  /** A connected socket becomes one of the run's streams; its description is the call's answer. */
  private adopt(mine: RunSockets, socket: net.Socket, kind: "tcp" | "unix", initial?: Buffer) {
    const stream = new NetStream(socket, kind, () => mine.run.posted?.(), initial);
    const id = mine.add({ kind: "stream", stream });
    return { id, kind, peer: kind === "tcp" ? hostPort(socket.remoteAddress, socket.remotePort) : "", local: kind === "tcp" ? hostPort(socket.localAddress, socket.localPort) : "" };
  }

  private async lookup(call: HostCall, raw: string): Promise<string[]> {
    let text = raw.trim();
    let port: number | null = null;
    const withPort = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? (text.split(":").length === 2 ? /^([^:]+):(\d{1,5})$/.exec(text) : null);
    if (withPort) {
      text = withPort[1]!;
      port = int(Number(withPort[2]), "port", 0, 65_535);
    }
    const host = this.hostOf(text);
    const caps = call.run.record.manifest.capabilities;
    const covered = netListCovers(caps.net_connect ?? [], host, port) || netListCovers(caps.net_udp ?? [], host, port);
    await this.permit(call, "net_connect", port === null ? host : hostPort(host, port), covered, { host, port });
    let addresses: string[];
    try {
      addresses = await this.guard.reachableAddresses(host);
    } catch (err) {
      if ((err as AstridError).code === "ASTRID_ERR_HTTP_FAILED") throw new AstridError("ASTRID_ERR_NET_UNRESOLVABLE", (err as Error).message);
      throw err;
    }
    return addresses.map((a) => (port === null ? a : hostPort(a, port)));
  }

  private async bindUnix(call: HostCall, mine: RunSockets) {
    const name = call.run.record.name;
    const allowed = (call.run.record.manifest.capabilities.net_bind ?? []).some((e) => e.trim() !== "");
    await call.permit({ kind: "net_bind", target: "unix", allowedByManifest: allowed, capability: CAPSULE_HOST_CAPABILITIES.netSocket });
    // A run that ended while the check awaited must not take the path from the run that replaced it.
    if (mine.ended) return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    if (mine.unixListener !== null && mine.handles.has(mine.unixListener)) return { id: mine.unixListener, path: this.socketPath(name) };
    const token = this.host.sessionToken?.();
    if (!token) return fail("ASTRID_ERR_NET_FAILED", "the daemon's session token is not ready yet; bind again in a moment");
    return this.onSocketFile(name, () => this.bindSocketFile(mine, name, token));
  }

  /** Runs `work` once the capsule's earlier socket-file changes are done (the kernel's thread never waits on disk). */
  private onSocketFile<T>(name: string, work: () => Promise<T>): Promise<T> {
    const next = (this.socketFiles.get(name) ?? Promise.resolve()).then(work, work);
    const settled = next.catch(() => undefined);
    this.socketFiles.set(name, settled);
    void settled.then(() => {
      if (this.socketFiles.get(name) === settled) this.socketFiles.delete(name);
    });
    return next;
  }

  private async bindSocketFile(mine: RunSockets, name: string, token: Buffer) {
    if (mine.ended) return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    const socketPath = this.socketPath(name);
    if (mine.unixListener !== null && mine.handles.has(mine.unixListener)) return { id: mine.unixListener, path: socketPath };
    // One path per capsule name: a reload's new run takes it over from the run it replaces (whose listener closes
    // here without removing the file: it is replaced below).
    const previous = this.unixOwners.get(name);
    if (previous && previous !== mine && previous.unixListener !== null) {
      this.unixOwners.delete(name);
      this.closeHandle(previous, previous.unixListener);
    }
    await fs.promises.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o700 });
    await fs.promises.chmod(path.dirname(socketPath), 0o700);
    await fs.promises.rm(socketPath, { force: true }); // a file left by a daemon that crashed, or by the previous run
    const server = net.createServer({ pauseOnConnect: true });
    const listener = new Listener(server, "unix", socketPath);
    server.on("connection", (socket) => this.handshake(mine, listener, socket, token));
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(socketError(err, `bind ${socketPath}`)));
      server.listen(socketPath, () => resolve());
    });
    server.on("error", (err) => this.host.logger.warn("capsule socket error", { capsule: name, error: err.message }));
    await fs.promises.chmod(socketPath, 0o600);
    if (mine.ended) {
      server.close();
      await fs.promises.rm(socketPath, { force: true });
      return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    }
    const id = mine.add({ kind: "listener", listener });
    mine.unixListener = id;
    this.unixOwners.set(name, mine);
    this.host.logger.info("capsule socket bound", { capsule: name, path: socketPath });
    return { id, path: socketPath };
  }

  /**
   * The daemon socket's handshake (reference §3.2), on a connection to a capsule's socket: the first frame (≤ 4 KiB,
   * within 5 s) must carry the operator's session token and protocol version 1; the reply is the daemon's. Only a
   * connection that passed reaches the capsule; bytes after the handshake frame are its first data.
   */
  private handshake(mine: RunSockets, listener: Listener, socket: net.Socket, token: Buffer): void {
    let received = Buffer.alloc(0);
    const drop = () => socket.destroy();
    const timer = setTimeout(drop, HANDSHAKE_TIMEOUT_MS);
    const reply = (response: HandshakeResponse) => socket.end(encodeFrame(response));
    const base = { protocol_version: PROTOCOL_VERSION, server_version: DAEMON_VERSION };
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < FRAME_HEADER_BYTES) return;
      const length = received.readUInt32BE(0);
      if (length > MAX_HANDSHAKE_BYTES) return finish(drop);
      if (received.length < FRAME_HEADER_BYTES + length) return;
      const body = received.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
      const rest = Buffer.from(received.subarray(FRAME_HEADER_BYTES + length));
      let value: unknown;
      try {
        value = JSON.parse(body.toString("utf8"));
      } catch {
        return finish(drop);
      }
      const parsed = HandshakeRequestSchema.safeParse(value);
      if (!parsed.success) return finish(() => reply({ status: "error", ...base, reason: "invalid handshake", code: "ASTRID_ERR_HANDSHAKE_INVALID" }));
      if (parsed.data.protocol_version !== PROTOCOL_VERSION) {
        return finish(() => reply({ status: "error", ...base, reason: protocolMismatchReason(parsed.data.protocol_version), code: "ASTRID_ERR_PROTOCOL_MISMATCH" }));
      }
      if (!tokenMatches(token, parsed.data.token)) {
        this.host.audit.capsule("denied", mine.run.record.name, { call: "net.accept", detail: `a connection to the capsule's socket failed the handshake: ${AUTH_FAILED_REASON}` });
        return finish(() => reply({ status: "error", ...base, reason: AUTH_FAILED_REASON, code: "ASTRID_ERR_AUTH_FAILED" }));
      }
      finish(() => {
        if (listener.closed || listener.pending.length >= ACCEPT_BACKLOG) return drop();
        socket.pause();
        socket.write(encodeFrame({ status: "ok", ...base } satisfies HandshakeResponse));
        listener.pending.push({ socket, initial: rest });
        listener.waiters.wake();
        mine.run.posted?.();
      });
    };
    const finish = (then: () => void) => {
      clearTimeout(timer);
      socket.off("data", onData);
      then();
    };
    socket.on("data", onData);
    socket.on("error", () => undefined);
    socket.on("close", () => clearTimeout(timer));
    socket.resume();
  }

  private async bindTcp(call: HostCall, mine: RunSockets, rawHost: string, port: number) {
    const host = this.hostOf(rawHost);
    if (canonicalIp(host) === null) return fail("ASTRID_ERR_REQUEST_INVALID", `bind-tcp needs an IP address to bind, not ${JSON.stringify(rawHost.slice(0, 200))}`);
    // An ephemeral port (0) is named `:*`, the entry that covers it.
    await this.permit(call, "net_tcp_bind", port === 0 ? `${hostPort(host, 1).slice(0, -2)}:*` : hostPort(host, port), netListCovers((call.run.record.manifest.capabilities.net_tcp_bind ?? []).map((e) => e.replace(/^bind:/i, "")), host, port));
    if (mine.count("tcp-listener") >= MAX_TCP_LISTENERS) return fail("ASTRID_ERR_NET_SOCKET_LIMIT", `${call.run.record.name} already holds ${MAX_TCP_LISTENERS} TCP listeners; drop one first`);
    mine.binding["tcp-listener"]++;
    try {
      return await this.listenTcp(mine, host, port);
    } finally {
      mine.binding["tcp-listener"]--;
    }
  }

  private async listenTcp(mine: RunSockets, host: string, port: number) {
    const server = net.createServer({ pauseOnConnect: true });
    const listener = new Listener(server, "tcp");
    server.on("connection", (socket) => {
      if (listener.closed || listener.pending.length >= ACCEPT_BACKLOG) return socket.destroy();
      socket.on("error", () => undefined);
      listener.pending.push({ socket });
      listener.waiters.wake();
      mine.run.posted?.();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(socketError(err, `bind ${hostPort(host, port)}`)));
      server.listen({ host, port, exclusive: true }, () => resolve());
    });
    server.on("error", () => undefined);
    if (mine.ended) {
      server.close();
      return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    }
    const id = mine.add({ kind: "listener", listener });
    const address = server.address() as net.AddressInfo;
    return { id, local: hostPort(address.address, address.port) };
  }

  /** The next connection (waiting up to `waitMs`), or null; `ASTRID_ERR_NET_SOCKET_LIMIT` while the run holds 8 streams. */
  private async accept(mine: RunSockets, id: string, waitMs: number) {
    const h = this.handleOf(mine, id);
    if (h.kind !== "listener") return fail("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(id)} is not a listener`);
    const { listener } = h;
    const full = () => mine.count("stream") >= MAX_NET_STREAMS && fail("ASTRID_ERR_NET_SOCKET_LIMIT", `this capsule already holds ${MAX_NET_STREAMS} streams; close one first`);
    full();
    for (;;) {
      const got = await listener.waiters.until(() => listener.pending.length > 0 || listener.closed, waitMs, () => mine.ended);
      if (mine.ended || listener.closed) return fail("ASTRID_ERR_NET_CLOSED", "the listener is closed");
      if (!got) return null;
      full(); // the connection stays queued for a later accept
      const next = listener.pending.shift()!;
      if (next.socket.destroyed) continue; // it went away while waiting to be accepted
      return this.adopt(mine, next.socket, listener.kind, next.initial);
    }
  }

  /** `waitMs`: how long a byte read waits (an input stream's non-blocking read: 0), instead of the read timeout. */
  private async read(mine: RunSockets, id: string, mode: string, maxBytes: number, waitMs: number | null) {
    const stream = this.streamOf(mine, id);
    if (mode !== "frame" && mode !== "bytes" && mode !== "peek") return fail("ASTRID_ERR_REQUEST_INVALID", "mode must be frame, bytes or peek");
    const timeout = stream.options.readTimeoutMs;
    const kind = mode === "frame" ? "frame" : "bytes";
    const wait = waitMs ?? timeout ?? (mode === "frame" ? FRAME_POLL_MS : MAX_WAIT_MS);
    const got = await stream.waiters.until(() => stream.readable(kind), Math.min(wait, MAX_WAIT_MS), () => mine.ended);
    if (mine.ended) return fail("ASTRID_ERR_NET_CLOSED", "the capsule is stopping");
    if (mode === "frame") return stream.takeFrame();
    // Without a read timeout a byte read has no deadline: the guest calls again (`again`) after each wait.
    if (!got && timeout === null && waitMs === null) return { status: "again" };
    return { status: "data", data: stream.takeBytes(Math.min(maxBytes, MAX_NET_FRAME_BYTES), mode === "bytes") };
  }

  private async write(mine: RunSockets, id: string, data: Buffer, framed: boolean) {
    const stream = this.streamOf(mine, id);
    if (framed && data.length > MAX_NET_FRAME_BYTES) return fail("ASTRID_ERR_FRAME_TOO_LARGE", `a frame of ${data.length} bytes is more than ${MAX_NET_FRAME_BYTES} (10 MiB); nothing was sent`);
    if (!framed && data.length > MAX_NET_FRAME_BYTES) data = data.subarray(0, MAX_NET_FRAME_BYTES);
    if (stream.failure) throw stream.failure;
    if (stream.destroyed || stream.writeShut) return fail("ASTRID_ERR_NET_CLOSED", "the stream is closed for writing");
    if (stream.writing) return fail("ASTRID_ERR_NET_FAILED", "a write on this stream is still under way; wait for it before the next");
    stream.writing = true;
    try {
      return await this.writeWhenRoom(mine, stream, data, framed);
    } finally {
      stream.writing = false;
    }
  }

  /** Writes once the socket's buffer has room: a frame whole, bytes up to the room there is (the answer says how many). */
  private async writeWhenRoom(mine: RunSockets, stream: NetStream, data: Buffer, framed: boolean) {
    const { socket } = stream;
    while (socket.writableLength >= WRITE_BUFFER_BYTES) {
      const timeout = stream.options.writeTimeoutMs;
      const room = await new Promise<boolean>((resolve) => {
        const done = (v: boolean) => {
          clearTimeout(timer);
          socket.off("drain", onDrain);
          socket.off("close", onDrain);
          stream.waiters.wake();
          resolve(v);
        };
        const onDrain = () => done(true);
        const timer = setTimeout(() => done(false), Math.min(timeout ?? MAX_WAIT_MS, MAX_WAIT_MS));
        socket.once("drain", onDrain);
        socket.once("close", onDrain);
      });
      if (mine.ended || stream.destroyed) return fail("ASTRID_ERR_NET_CLOSED", "the stream is closed");
      if (!room) return timeout === null ? { status: "again" } : fail("ASTRID_ERR_TIMEOUT", `the peer took nothing for ${timeout} ms (write timeout)`);
    }
    if (!framed) data = data.subarray(0, WRITE_BUFFER_BYTES - socket.writableLength);
    if (framed) {
      const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      head.writeUInt32BE(data.length, 0);
      socket.write(Buffer.concat([head, data]));
    } else {
      socket.write(Buffer.from(data));
    }
    return { status: "written", written: data.length };
  }

  /** Whether a wait on the handle would end now (a readable stream, a connection to accept, a datagram). */
  private ready(mine: RunSockets, id: string): boolean {
    const h = mine.handles.get(id);
    if (!h) return true; // a closed handle is "ready": the next call on it reports that
    if (h.kind === "stream") return h.stream.readable("bytes");
    if (h.kind === "listener") return h.listener.pending.length > 0 || h.listener.closed;
    return h.udp.queue.length > 0 || h.udp.closed;
  }

  private option(mine: RunSockets, id: string, name: string, set: boolean, value: unknown): unknown {
    const h = this.handleOf(mine, id);
    if (h.kind === "udp") {
      if (name === "read-timeout" && set) {
        h.udp.readTimeoutMs = optMs(value, "timeout");
        return null;
      }
      if (name === "local-addr") {
        const a = h.udp.socket.address();
        return hostPort(a.address, a.port);
      }
      if (name === "peer-addr") return h.udp.peer ? hostPort(h.udp.peer.host, h.udp.peer.port) : null;
      return fail("ASTRID_ERR_REQUEST_INVALID", `unknown UDP option ${name}`);
    }
    if (h.kind === "listener") {
      if (name !== "local-addr") return fail("ASTRID_ERR_REQUEST_INVALID", `unknown listener option ${name}`);
      if (h.listener.kind === "unix") return fail("ASTRID_ERR_NET_NOT_TCP", "a Unix listener has no IP address");
      const a = h.listener.server.address() as net.AddressInfo;
      return hostPort(a.address, a.port);
    }
    const { stream } = h;
    const o = stream.options;
    // Timeouts apply to every stream; the rest are TCP options.
    if (name === "read-timeout") return set ? ((o.readTimeoutMs = optMs(value, "timeout")), null) : o.readTimeoutMs;
    if (name === "write-timeout") return set ? ((o.writeTimeoutMs = optMs(value, "timeout")), null) : o.writeTimeoutMs;
    // How much an output stream may write now without waiting (`check-write`); 0 once it cannot write at all.
    if (name === "write-room") {
      if (stream.failure) throw stream.failure;
      if (stream.destroyed || stream.writeShut) return fail("ASTRID_ERR_NET_CLOSED", "the stream is closed for writing");
      return Math.max(0, WRITE_BUFFER_BYTES - stream.socket.writableLength);
    }
    if (stream.kind !== "tcp") return fail("ASTRID_ERR_NET_NOT_TCP", `${name} applies to TCP streams, not to a Unix-domain stream`);
    const s = stream.socket;
    switch (name) {
      case "peer-addr":
        return hostPort(s.remoteAddress, s.remotePort) || fail("ASTRID_ERR_NET_CLOSED", "the stream is closed");
      case "local-addr":
        return hostPort(s.localAddress, s.localPort) || fail("ASTRID_ERR_NET_CLOSED", "the stream is closed");
      case "nodelay":
        if (!set) return o.nodelay;
        o.nodelay = value === true;
        s.setNoDelay(o.nodelay);
        return null;
      case "keepalive": {
        if (!set) return o.keepaliveSecs;
        const secs = value === null || value === undefined ? null : int(value, "keepalive seconds", 1, 2 ** 31 / 1000);
        o.keepaliveSecs = secs;
        s.setKeepAlive(secs !== null, secs === null ? 0 : secs * 1000);
        return null;
      }
      case "linger": {
        if (!set) return o.lingerMs;
        const ms = optMs(value, "linger");
        // Node closes gracefully, or with a reset (`resetAndDestroy`): it cannot drain for a set time.
        if (ms !== null && ms !== 0) return fail("ASTRID_ERR_NET_FAILED", "only linger none (graceful close) or 0 (reset on close) is supported by this host");
        o.lingerMs = ms;
        return null;
      }
      case "reuseaddr":
        // Stored only: SO_REUSEADDR has no effect on a connected stream (Node sets it on every listener it binds).
        if (!set) return o.reuseaddr;
        o.reuseaddr = value === true;
        return null;
      case "hop-limit":
        return fail("ASTRID_ERR_NET_FAILED", "this host cannot read or set a TCP stream's IP_TTL / hop limit (Node offers no such option)");
      default:
        return fail("ASTRID_ERR_REQUEST_INVALID", `unknown stream option ${name}`);
    }
  }

  private closeHandle(mine: RunSockets, id: string): void {
    const h = mine.handles.get(id);
    if (!h) return;
    mine.handles.delete(id);
    if (h.kind === "stream") {
      h.stream.close();
      return;
    }
    if (h.kind === "udp") {
      h.udp.closed = true;
      try {
        h.udp.socket.close();
      } catch {
        // already closed
      }
      h.udp.waiters.wake();
      return;
    }
    const { listener } = h;
    listener.closed = true;
    listener.server.close();
    for (const p of listener.pending.splice(0)) p.socket.destroy();
    listener.waiters.wake();
    if (listener.socketPath) {
      if (mine.unixListener === id) mine.unixListener = null;
      const name = mine.run.record.name;
      if (this.unixOwners.get(name) === mine) {
        this.unixOwners.delete(name);
        const file = listener.socketPath;
        void this.onSocketFile(name, () => fs.promises.rm(file, { force: true })).catch(() => undefined);
      }
    }
  }

  // ---- UDP ----------------------------------------------------------------------------------------------------

  private udpOf(mine: RunSockets, id: string): UdpHandle {
    const h = this.handleOf(mine, id);
    return h.kind === "udp" ? h.udp : fail("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(id)} is not a UDP socket`);
  }

  private async udpBind(call: HostCall, mine: RunSockets, rawHost: string, port: number) {
    const host = this.hostOf(rawHost);
    const ip = canonicalIp(host) ?? fail("ASTRID_ERR_REQUEST_INVALID", `udp-bind needs an IP address to bind, not ${JSON.stringify(rawHost.slice(0, 200))}`);
    await this.permit(call, "net_udp", `bind:${port === 0 ? `${hostPort(ip, 1).slice(0, -2)}:*` : hostPort(ip, port)}`, netListCovers(call.run.record.manifest.capabilities.net_udp ?? [], ip, port, "bind:"));
    if (mine.count("udp") >= MAX_UDP_SOCKETS) return fail("ASTRID_ERR_NET_SOCKET_LIMIT", `${call.run.record.name} already holds ${MAX_UDP_SOCKETS} UDP sockets; drop one first`);
    mine.binding.udp++;
    try {
      return await this.bindUdp(mine, ip, port);
    } finally {
      mine.binding.udp--;
    }
  }

  private async bindUdp(mine: RunSockets, ip: string, port: number) {
    const socket = dgram.createSocket({ type: net.isIPv6(ip) ? "udp6" : "udp4" });
    const udp = new UdpHandle(socket);
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (err) => reject(socketError(err, `bind ${hostPort(ip, port)}`)));
      socket.bind({ address: ip, port, exclusive: true }, () => resolve());
    });
    socket.on("error", () => undefined);
    socket.on("message", (data, rinfo) => {
      const from = canonicalIp(rinfo.address) ?? rinfo.address;
      if (udp.peer && (udp.peer.host !== from || udp.peer.port !== rinfo.port)) return; // connected: others filtered
      if (udp.queue.length >= UDP_QUEUE || udp.queuedBytes + data.length > UDP_QUEUE_BYTES) return; // dropped, as a full buffer would
      udp.queue.push({ data, host: from, port: rinfo.port });
      udp.queuedBytes += data.length;
      udp.waiters.wake();
      mine.run.posted?.();
    });
    if (mine.ended) {
      socket.close();
      return fail("ASTRID_ERR_CAPSULE_UNAVAILABLE", "the capsule is stopping");
    }
    const id = mine.add({ kind: "udp", udp });
    const a = socket.address();
    return { id, local: hostPort(a.address, a.port) };
  }

  /** The peer's address, once the manifest's peer entries and the address guard allow it. */
  private async udpPeer(call: HostCall, rawHost: string, port: number) {
    const host = this.hostOf(rawHost);
    await this.permit(call, "net_udp", hostPort(host, port), netListCovers(call.run.record.manifest.capabilities.net_udp ?? [], host, port), { host, port });
    return this.vet(host);
  }

  private async udpSend(call: HostCall, mine: RunSockets, id: string, data: Buffer, peerHost: string | null, peerPort: number | null) {
    const udp = this.udpOf(mine, id);
    if (data.length > MAX_DATAGRAM_BYTES) return fail("ASTRID_ERR_REQUEST_INVALID", `a datagram of ${data.length} bytes is more than ${MAX_DATAGRAM_BYTES}`);
    let to: { host: string; port: number };
    if (peerHost === null) {
      to = udp.peer ?? fail("ASTRID_ERR_NET_FAILED", "the socket is not connected: use send-to, or connect first");
    } else {
      if (peerPort === null) return fail("ASTRID_ERR_REQUEST_INVALID", "send-to needs the peer's port");
      // Every send-to passes the manifest and the address guard (an unconnected socket has no vetted peer).
      const vetted = await this.udpPeer(call, peerHost, peerPort);
      to = { host: vetted.address, port: peerPort };
    }
    if (udp.closed) return fail("ASTRID_ERR_NET_CLOSED", "the socket is closed");
    await new Promise<void>((resolve, reject) => {
      try {
        udp.socket.send(data, to.port, to.host, (err) => (err ? reject(socketError(err, "send")) : resolve()));
      } catch (err) {
        reject(socketError(err as Error, "send")); // closed meanwhile: dgram throws at once
      }
    });
    return data.length;
  }

  private async udpRecv(mine: RunSockets, id: string, maxBytes: number) {
    const udp = this.udpOf(mine, id);
    const timeout = udp.readTimeoutMs;
    const got = await udp.waiters.until(() => udp.queue.length > 0 || udp.closed, Math.min(timeout ?? MAX_WAIT_MS, MAX_WAIT_MS), () => mine.ended);
    if (mine.ended || udp.closed) return fail("ASTRID_ERR_NET_CLOSED", "the socket is closed");
    if (!got) return timeout === null ? { status: "again" } : { status: "none" };
    const next = udp.queue.shift()!;
    udp.queuedBytes -= next.data.length;
    return { status: "data", data: next.data.subarray(0, maxBytes), host: next.host, port: next.port };
  }

  private async udpConnect(call: HostCall, mine: RunSockets, id: string, peerHost: string | null, peerPort: number) {
    const udp = this.udpOf(mine, id);
    if (peerHost === null) {
      udp.peer = null;
      return null;
    }
    const vetted = await this.udpPeer(call, peerHost, peerPort);
    udp.peer = { host: vetted.address, port: peerPort };
    // Datagrams queued from other peers before the connect are not the connected peer's.
    for (let i = udp.queue.length - 1; i >= 0; i--) {
      const q = udp.queue[i]!;
      if (q.host !== vetted.address || q.port !== peerPort) {
        udp.queuedBytes -= q.data.length;
        udp.queue.splice(i, 1);
      }
    }
    return null;
  }
}
