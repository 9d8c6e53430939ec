/**
 * `net` of the reference JS SDK: the capsule's own Unix socket (`bindUnix`, `accept`, `tryAccept`) and outbound TCP
 * (`connect`), as streams of frames (`recv`, `tryRecv`, `send`, `close`, async iteration), over the kernel's `net.*`
 * calls (kernel/capsules/host-net.ts) with the same checks as a WebAssembly capsule's: `net_connect`, `net_bind`,
 * the principal's `self:net:socket`, the network guard, 8 streams per capsule, everything closed when the capsule
 * stops. Host calls return promises here (the reference's block). Also `lookupHost` and `bindTcp` (accepted
 * through `accept`/`tryAccept`); `udpBind` is not offered.
 */
import type { SdkContext } from "./astrid-os-sdk-ipc";
import { SysError, hostCall, unsupported } from "./astrid-os-sdk-errors";

/** One kernel wait of a blocking `recv`/`accept` (the capsule's call deadline is longer). */
const WAIT_SLICE_MS = 10_000;

/** `recv` on a stream the peer closed (the reference's mpsc-shaped error). */
export class RecvError extends Error {
  override readonly name = "RecvError";
  readonly code = "EPIPE" as const;
  constructor() {
    super("stream closed");
  }
}

/** `send` on a stream that cannot take it. */
export class SendError extends Error {
  override readonly name = "SendError";
  readonly code = "EPIPE" as const;
  constructor(readonly reason?: string) {
    super(reason ? `stream closed: ${reason}` : "stream closed");
  }
}

type Frame = { status: "data"; data: Uint8Array } | { status: "closed" } | { status: "pending" };

export function netModule(ctx: SdkContext) {
  const call = <T>(label: string, name: Parameters<SdkContext["syscall"]>[0], ...args: unknown[]) =>
    hostCall(label, () => ctx.syscall(name, ...args)) as Promise<T>;

  class ListenerHandle {
    constructor(readonly id: string) {}
  }

  class StreamHandle {
    #closed = false;
    constructor(readonly id: string) {}

    #requireOpen(): void {
      if (this.#closed) throw SysError.api(`net stream ${this.id} is closed`);
    }

    async #read(label: string, waitMs: number): Promise<Uint8Array | null> {
      this.#requireOpen();
      const frame = await call<Frame>(label, "net.read", this.id, "frame", 0, waitMs);
      if (frame.status === "data") return frame.data;
      if (frame.status === "pending") return null;
      this.#closed = true;
      throw new RecvError();
    }

    /** A frame if one is there, else `{ kind: "empty" }`; RecvError once the peer closed. */
    async tryRecv(): Promise<Uint8Array | { kind: "empty" }> {
      return (await this.#read("net.tryRecv", 0)) ?? { kind: "empty" };
    }

    /** Waits for the next frame; RecvError once the peer closed. */
    async recv(): Promise<Uint8Array> {
      for (;;) {
        const frame = await this.#read("net.recv", WAIT_SLICE_MS);
        if (frame) return frame;
      }
    }

    async send(data: Uint8Array | string): Promise<void> {
      this.#requireOpen();
      const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
      try {
        while ((await call<{ status: string }>("net.send", "net.write", this.id, bytes, true)).status === "again");
      } catch (err) {
        throw new SendError((err as Error).message);
      }
    }

    close(): void {
      if (this.#closed) return;
      this.#closed = true;
      void ctx.syscall("net.close", this.id).catch(() => undefined);
    }

    async *[Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
      try {
        for (;;) {
          try {
            yield await this.recv();
          } catch (err) {
            if (err instanceof RecvError) return;
            throw err;
          }
        }
      } finally {
        this.close();
      }
    }
  }

  const connect = async (host: string, port: number) => new StreamHandle((await call<{ id: string }>(`net.connect(${JSON.stringify(host)}, ${port})`, "net.connect_tcp", host, port)).id);
  return {
    RecvError,
    SendError,
    ListenerHandle,
    StreamHandle,
    /** Binds the capsule's socket (`$ASTRID_HOME/run/capsules/<name>.sock`; needs `net_bind`). */
    bindUnix: async () => new ListenerHandle((await call<{ id: string }>("net.bindUnix", "net.bind_unix")).id),
    bindTcp: async (host: string, port: number) => new ListenerHandle((await call<{ id: string }>("net.bindTcp", "net.bind_tcp", host, port)).id),
    /** Waits for the next connection (one that passed the token handshake, on the Unix socket). */
    async accept(listener: ListenerHandle): Promise<StreamHandle> {
      for (;;) {
        const got = await call<{ id: string } | null>(`net.accept(${listener.id})`, "net.accept", listener.id, WAIT_SLICE_MS);
        if (got) return new StreamHandle(got.id);
      }
    },
    /** The next connection if one is waiting (none at the stream limit, as the reference's). */
    async tryAccept(listener: ListenerHandle): Promise<StreamHandle | undefined> {
      try {
        const got = await call<{ id: string } | null>(`net.tryAccept(${listener.id})`, "net.accept", listener.id, 0);
        return got ? new StreamHandle(got.id) : undefined;
      } catch (err) {
        if ((err as SysError).astridCode === "ASTRID_ERR_NET_SOCKET_LIMIT") return undefined;
        throw err;
      }
    },
    connect,
    connectTcp: connect,
    lookupHost: (host: string) => call<string[]>(`net.lookupHost(${JSON.stringify(host)})`, "net.lookup", host),
    udpBind: (): never => {
      throw unsupported("net.udpBind", "UDP is offered to WebAssembly capsules (astrid:net/host) only");
    },
  };
}
