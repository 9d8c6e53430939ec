/**
 * `astrid:net/host@1.0.0`: sockets through the kernel's `net.*` calls (kernel/capsules/host-net.ts owns every
 * socket; the guest holds ids). Outbound TCP and lookups pass the manifest's `net_connect`, the principal's
 * `self:net:socket` and the address guard; the capsule's Unix listener does the daemon socket's token handshake
 * before a connection reaches the guest. A blocking call (accept, a read without a read timeout) is a series of
 * kernel waits of at most a minute each, so the capsule's unload ends it (`closed`) within one wait at most — in
 * practice at once, since the kernel closes the run's sockets first. `read-stream`/`write-stream` are byte streams
 * (`astrid:io/streams`, stream-imports.ts) over the same kernel stream.
 */
import { check, DENIED, DISPOSE, fail } from "./guest-failure";
import type { GuestHost } from "./guest-host";
import { Pollable } from "./pollable";

const NET_ERRORS = {
  ...DENIED,
  ASTRID_ERR_NET_ADDRESS_BLOCKED: "airlock-rejected",
  ASTRID_ERR_NET_CONNECTION_REFUSED: "connection-refused",
  ASTRID_ERR_NET_CONNECTION_RESET: "connection-reset",
  ASTRID_ERR_NET_CLOSED: "closed",
  ASTRID_ERR_TIMEOUT: "timeout",
  ASTRID_ERR_NET_ADDRESS_IN_USE: "address-in-use",
  ASTRID_ERR_REQUEST_INVALID: "address-not-available",
  ASTRID_ERR_NET_UNRESOLVABLE: "name-unresolvable",
  ASTRID_ERR_NOT_FOUND: "invalid-handle",
  ASTRID_ERR_NET_NOT_TCP: "not-tcp",
  ASTRID_ERR_NET_SOCKET_LIMIT: "quota",
  // The capsule is unloading: its sockets are gone.
  ASTRID_ERR_CAPSULE_UNAVAILABLE: "closed",
};

/** The longest one kernel wait lasts (the kernel's cap); longer waits are several. */
const MAX_WAIT_MS = 60_000;

type ReadAnswer = { status: "data"; data: Uint8Array } | { status: "closed" } | { status: "pending" } | { status: "again" };
type Opened = { id: string; kind?: "tcp" | "unix"; local?: string };

/** Bytes the kernel can take as they are: a view over a larger buffer is copied (a clone would copy the buffer). */
const own = (data: Uint8Array) => (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice());
const ms = (value: bigint | undefined) => (value === undefined ? null : Number(value > 2n ** 52n ? 2n ** 52n : value));
const big = (value: unknown) => (value === null || value === undefined ? undefined : BigInt(value as number));

/** The stream classes of `astrid:io/streams` (jco checks returned resources by class: these exact ones). */
interface StreamClasses {
  InputStream: new (id: string) => unknown;
  OutputStream: new (id: string) => unknown;
}

/** The package's functions and resources, over `host`'s blocking calls. */
export function netImports(host: GuestHost, streams: StreamClasses): Record<string, unknown> {
  const call = (name: string, ...args: unknown[]) => check(host.call(name, ...args), NET_ERRORS);

  /** A socket id the guest holds; dropping it closes the socket in the kernel. */
  class Held {
    #id: string | null;
    constructor(id: string) {
      this.#id = id;
    }
    protected get id(): string {
      return this.#id ?? fail("invalid-handle");
    }
    protected ready(): boolean {
      return this.#id === null || call("net.ready", this.#id) === true;
    }
    [DISPOSE](): void {
      if (this.#id === null) return;
      host.call("net.close", this.#id);
      this.#id = null;
    }
  }

  class TcpStream extends Held {
    read() {
      const got = call("net.read", this.id, "frame", 0) as ReadAnswer;
      if (got.status === "data") return { tag: "data", val: got.data };
      return { tag: got.status === "closed" ? "closed" : "pending" };
    }
    write(data: Uint8Array): void {
      while ((call("net.write", this.id, own(data), true) as { status: string }).status === "again");
    }
    #bytes(mode: "bytes" | "peek", maxBytes: number): Uint8Array {
      for (;;) {
        const got = call("net.read", this.id, mode, maxBytes) as ReadAnswer;
        if (got.status === "data") return got.data;
        if (got.status === "closed") return fail("closed");
      }
    }
    readBytes(maxBytes: number): Uint8Array {
      return this.#bytes("bytes", maxBytes);
    }
    peek(maxBytes: number): Uint8Array {
      return this.#bytes("peek", maxBytes);
    }
    writeBytes(data: Uint8Array): number {
      for (;;) {
        const done = call("net.write", this.id, own(data), false) as { status: string; written?: number };
        if (done.status === "written") return done.written!;
      }
    }
    shutdown(how: string): void {
      call("net.shutdown", this.id, how);
    }
    peerAddr() {
      return call("net.option", this.id, "peer-addr") as string;
    }
    localAddr() {
      return call("net.option", this.id, "local-addr") as string;
    }
    setNodelay(on: boolean): void {
      call("net.option", this.id, "nodelay", on);
    }
    nodelay() {
      return call("net.option", this.id, "nodelay") as boolean;
    }
    setReadTimeout(timeoutMs: bigint | undefined): void {
      call("net.option", this.id, "read-timeout", ms(timeoutMs));
    }
    readTimeout() {
      return big(call("net.option", this.id, "read-timeout"));
    }
    setWriteTimeout(timeoutMs: bigint | undefined): void {
      call("net.option", this.id, "write-timeout", ms(timeoutMs));
    }
    writeTimeout() {
      return big(call("net.option", this.id, "write-timeout"));
    }
    setHopLimit(hops: number): void {
      call("net.option", this.id, "hop-limit", hops);
    }
    hopLimit() {
      return call("net.option", this.id, "hop-limit") as number;
    }
    setKeepalive(secs: bigint | undefined): void {
      call("net.option", this.id, "keepalive", ms(secs));
    }
    keepalive() {
      return big(call("net.option", this.id, "keepalive"));
    }
    setLinger(lingerMs: bigint | undefined): void {
      call("net.option", this.id, "linger", ms(lingerMs));
    }
    linger() {
      return big(call("net.option", this.id, "linger"));
    }
    setReuseaddr(on: boolean): void {
      call("net.option", this.id, "reuseaddr", on);
    }
    reuseaddr() {
      return call("net.option", this.id, "reuseaddr") as boolean;
    }
    subscribeReadable() {
      return new Pollable(host, () => this.ready());
    }
    /** The read half; dropping it leaves the stream open. */
    readStream() {
      return new streams.InputStream(this.id);
    }
    writeStream() {
      return new streams.OutputStream(this.id);
    }
  }

  /** What the Unix and TCP listeners share: accepting, blocking or within a timeout, and readiness. */
  class Accepting extends Held {
    accept() {
      for (;;) {
        const got = call("net.accept", this.id, MAX_WAIT_MS) as Opened | null;
        if (got) return new TcpStream(got.id);
      }
    }
    pollAccept(timeoutMs: bigint) {
      const wait = Number(timeoutMs > BigInt(MAX_WAIT_MS) ? BigInt(MAX_WAIT_MS) : timeoutMs);
      const result = host.call("net.accept", this.id, wait);
      // At the stream limit a poll answers none (the connection waits), as the reference's does.
      if (!result.ok && result.code === "ASTRID_ERR_NET_SOCKET_LIMIT") return undefined;
      const got = check(result, NET_ERRORS) as Opened | null;
      return got ? new TcpStream(got.id) : undefined;
    }
    subscribeReadiness() {
      return new Pollable(host, () => this.ready());
    }
  }
  class UnixListener extends Accepting {}
  class TcpListener extends Accepting {
    localAddr() {
      return call("net.option", this.id, "local-addr") as string;
    }
  }

  type Datagram = { status: "data"; data: Uint8Array; host: string; port: number } | { status: "none" } | { status: "again" };
  class UdpSocket extends Held {
    sendTo(data: Uint8Array, peerHost: string, peerPort: number): number {
      return call("net.udp_send", this.id, own(data), peerHost, peerPort) as number;
    }
    #recv(maxBytes: number) {
      for (;;) {
        const got = call("net.udp_recv", this.id, maxBytes) as Datagram;
        if (got.status !== "again") return got;
      }
    }
    recvFrom(maxBytes: number) {
      const got = this.#recv(maxBytes);
      return got.status === "data" ? { data: got.data, peerHost: got.host, peerPort: got.port } : undefined;
    }
    connect(peerHost: string, peerPort: number): void {
      call("net.udp_connect", this.id, peerHost, peerPort);
    }
    disconnect(): void {
      call("net.udp_connect", this.id, null);
    }
    send(data: Uint8Array): number {
      return call("net.udp_send", this.id, own(data), null, null) as number;
    }
    recv(maxBytes: number) {
      const got = this.#recv(maxBytes);
      return got.status === "data" ? got.data : undefined;
    }
    peerAddr() {
      return (call("net.option", this.id, "peer-addr") as string | null) ?? undefined;
    }
    setReadTimeout(timeoutMs: bigint | undefined): void {
      call("net.option", this.id, "read-timeout", ms(timeoutMs));
    }
    localAddr() {
      return call("net.option", this.id, "local-addr") as string;
    }
    subscribeReadable() {
      return new Pollable(host, () => this.ready());
    }
  }

  return {
    TcpStream,
    UnixListener,
    TcpListener,
    UdpSocket,
    bindUnix: () => new UnixListener((call("net.bind_unix") as Opened).id),
    bindTcp: (h: string, port: number) => new TcpListener((call("net.bind_tcp", h, port) as Opened).id),
    connectTcp: (h: string, port: number) => new TcpStream((call("net.connect_tcp", h, port) as Opened).id),
    udpBind: (h: string, port: number) => new UdpSocket((call("net.udp_bind", h, port) as Opened).id),
    lookupHost: (h: string) => call("net.lookup", h) as string[],
  };
}
