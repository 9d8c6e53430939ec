/**
 * The frontend client library: connect to a daemon's socket, handshake, publish, and make management requests
 * whose replies are matched by `request_id`. Used by the `astrid` CLI, the tests and the benchmarks; a Discord
 * or web bridge can use it the same way.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import net from "node:net";
import { AstridError, isErrorCode } from "./errors";
import { encodeFrame, FrameDecoder, MAX_SERVER_FRAME_BYTES, parseFrameJson } from "./framing";
import { isJsonObject, NIL_UUID } from "./json-object";
import type { IpcMessage, IpcPayload } from "./ipc-message";
import type { KernelMethod, KernelResponse } from "./kernel-request";
import { REQUEST_TOPIC_PREFIX, RESPONSE_TOPIC_PREFIX } from "./topics";
import { DAEMON_VERSION, PROTOCOL_VERSION } from "./version";
import { nowRfc3339 } from "./timestamp";

/** How to reach a daemon. */
export interface ConnectOptions {
  socketPath: string;
  /** The 64-hex session token from `run/system.token`. */
  token: string;
  clientVersion?: string;
  /** Shown by name in GetStatus (`client_name` in the handshake). */
  clientName?: string;
  protocolVersion?: number;
  /** Deadline for connect + handshake; default 10 s like the reference CLI. */
  timeoutMs?: number;
}

/** A response with the request id it answered. */
export type KernelReply = KernelResponse & { request_id?: string };

/** Events: `message` (IpcMessage), `close` (). */
export class DaemonClient extends EventEmitter {
  private readonly pending = new Map<string, { resolve: (r: KernelReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closed = false;

  private constructor(
    private readonly socket: net.Socket,
    private readonly decoder: FrameDecoder,
    /** The daemon's handshake reply. */
    readonly serverVersion: string,
  ) {
    super();
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => this.onClose());
    socket.on("error", () => {
      /* surfaced through close */
    });
  }

  /** Connects and handshakes; rejects with the daemon's coded error when it refuses. */
  static connect(options: ConnectOptions): Promise<DaemonClient> {
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const socket = net.connect(options.socketPath);
      const decoder = new FrameDecoder(MAX_SERVER_FRAME_BYTES);
      const onError = (err: NodeJS.ErrnoException) => {
        const code = err.code === "ENOENT" || err.code === "ECONNREFUSED" ? "ASTRID_ERR_DAEMON_NOT_RUNNING" : "ASTRID_ERR_CONNECTION_CLOSED";
        fail(new AstridError(code, `cannot connect to ${options.socketPath}: ${err.message}`, { cause: err }));
      };
      const onClose = () => fail(new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the daemon closed the connection during the handshake"));
      const onConnect = () => {
        socket.write(
          encodeFrame({
            token: options.token,
            protocol_version: options.protocolVersion ?? PROTOCOL_VERSION,
            client_version: options.clientVersion ?? DAEMON_VERSION,
            ...(options.clientName === undefined ? {} : { client_name: options.clientName }),
          }),
        );
      };
      const onData = (chunk: Buffer) => {
        try {
          decoder.push(chunk);
          const body = decoder.next();
          if (body === null) return;
          const reply = parseFrameJson(body);
          if (!isJsonObject(reply) || reply.status !== "ok") {
            const code = isJsonObject(reply) && isErrorCode(reply.code) ? reply.code : "ASTRID_ERR_AUTH_FAILED";
            const reason = isJsonObject(reply) && typeof reply.reason === "string" ? reply.reason : "handshake refused";
            fail(new AstridError(code, `Daemon rejected connection: ${reason}`));
            return;
          }
          detach();
          const client = new DaemonClient(socket, decoder, String(reply.server_version));
          resolve(client);
          // Frames that arrived with the handshake reply (e.g. the offline backlog) are delivered on the next
          // tick, once the caller has had a chance to attach listeners.
          if (decoder.pendingBytes > 0) setImmediate(() => client.drain());
        } catch (err) {
          fail(err as Error);
        }
      };
      const timer = setTimeout(
        () => fail(new AstridError("ASTRID_ERR_TIMEOUT", `handshake with ${options.socketPath} timed out after ${timeoutMs} ms`)),
        timeoutMs,
      );
      const detach = () => {
        clearTimeout(timer);
        socket.off("error", onError).off("close", onClose).off("connect", onConnect).off("data", onData);
      };
      const fail = (err: Error) => {
        detach();
        socket.destroy();
        reject(err);
      };
      socket.on("error", onError).on("close", onClose).on("connect", onConnect).on("data", onData);
    });
  }

  /**
   * Publishes one message; `payload` is sent as given (include `"type"`). `envelope.user` (frontends only) names the
   * platform user the message speaks for.
   */
  publish(topic: string, payload: IpcPayload, envelope: { user?: { platform: string; platform_user_id: string; display_name?: string } } = {}): void {
    if (this.closed) throw new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the connection is closed");
    const message: IpcMessage = {
      topic,
      payload,
      signature: null,
      source_id: NIL_UUID,
      timestamp: nowRfc3339(),
      seq: 0,
      ...(envelope.user === undefined ? {} : { user: envelope.user }),
    };
    this.socket.write(encodeFrame(message));
  }

  /** Sends a management request and resolves with its reply (matched by a fresh request_id). */
  request(
    method: KernelMethod,
    params?: Record<string, unknown>,
    options: { topicSuffix?: string; timeoutMs?: number } = {},
  ): Promise<KernelReply> {
    const requestId = randomUUID();
    const suffix = options.topicSuffix ?? method.replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
    const timeoutMs = options.timeoutMs ?? 10_000;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new AstridError("ASTRID_ERR_TIMEOUT", `${method} got no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      try {
        const body: Record<string, unknown> = { type: "raw_json", request_id: requestId, method };
        if (params !== undefined) body.params = params;
        this.publish(REQUEST_TOPIC_PREFIX + suffix, body as IpcPayload);
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(requestId);
        reject(err as Error);
      }
    });
  }

  /** Closes the connection; pending requests reject with ASTRID_ERR_CONNECTION_CLOSED. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.socket.once("close", () => resolve());
      this.socket.end();
    });
  }

  /** Resolves once the daemon has closed the connection. */
  waitClosed(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => this.once("close", resolve));
  }

  private onData(chunk: Buffer): void {
    this.decoder.push(chunk);
    this.drain();
  }

  private drain(): void {
    try {
      for (let body = this.decoder.next(); body !== null; body = this.decoder.next()) {
        const message = parseFrameJson(body);
        if (isJsonObject(message) && typeof message.topic === "string") this.dispatch(message as unknown as IpcMessage);
      }
    } catch (err) {
      this.emit("protocol-error", err);
      this.socket.destroy();
    }
  }

  private dispatch(message: IpcMessage): void {
    const payload = message.payload;
    if (message.topic.startsWith(RESPONSE_TOPIC_PREFIX) && isJsonObject(payload) && typeof payload.request_id === "string") {
      const waiter = this.pending.get(payload.request_id);
      if (waiter) {
        this.pending.delete(payload.request_id);
        clearTimeout(waiter.timer);
        const { type: _type, ...reply } = payload;
        waiter.resolve(reply as KernelReply);
        return;
      }
    }
    this.emit("message", message);
  }

  private onClose(): void {
    this.closed = true;
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.reject(new AstridError("ASTRID_ERR_CONNECTION_CLOSED", "the daemon closed the connection before replying"));
      this.pending.delete(id);
    }
    this.emit("close");
  }
}
