/**
 * The `http.upload_*` host calls: a request whose body a capsule writes piece by piece (`astrid:http@1.1.0`'s
 * `http-upload`), so it never holds the whole body in its own memory. `upload_open` passes the checks of
 * `http.request` before anything is sent — scheme, manifest `net`, the principal's `self:net:http` and egress (the
 * caller checks them), and the address guard on the host — and counts against the capsule's 4 streams;
 * `upload_write` adds bytes, at most 10 MiB in all (the request body cap: past it the upload is dropped);
 * `upload_finish` sends the request, every hop checked again as a stream's are, and turns the upload into a
 * response stream (host-http-streams.ts). The kernel keeps the body until `finish` (it is bounded), so a redirect
 * that keeps the body (307/308) can send it again. An upload nobody writes to for 120 s is dropped, and every upload
 * of a capsule when its run ends.
 */
import { randomUUID } from "node:crypto";
import { AstridError } from "../../protocol/errors";
import type { HopCheck } from "../net/guarded-fetch";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall } from "./host-call";
import { HTTP_STREAM_IDLE_MS, MAX_HTTP_STREAMS, type HttpStreams, type ParsedRequest } from "./host-http-streams";

interface OpenUpload {
  readonly run: CapsuleRun;
  readonly req: ParsedRequest;
  readonly chunks: Buffer[];
  size: number;
  idle?: NodeJS.Timeout;
}

/** The uploads being written, of every capsule. */
export class HttpUploads {
  private readonly uploads = new Map<string, OpenUpload>();

  /** @param maxBodyBytes the request body cap, for the whole of an upload's body */
  constructor(private readonly streams: HttpStreams, private readonly maxBodyBytes: number) {}

  /** Uploads `run` holds (they count against its streams). */
  heldBy(run: CapsuleRun): number {
    let n = 0;
    for (const upload of this.uploads.values()) if (upload.run === run) n++;
    return n;
  }

  /** Starts an upload of `req` (its first hop checked by the caller); its body comes from `write`. */
  open(call: HostCall, req: ParsedRequest): { id: string; room: number } {
    const { run } = call;
    if (this.streams.heldBy(run) >= MAX_HTTP_STREAMS) {
      throw new AstridError("ASTRID_ERR_HTTP_STREAM_LIMIT", `${run.record.name}: ${MAX_HTTP_STREAMS} HTTP streams (uploads included) are open; close one first`);
    }
    const id = randomUUID();
    const upload: OpenUpload = { run, req, chunks: [], size: 0 };
    this.uploads.set(id, upload);
    this.touch(id, upload);
    return { id, room: this.maxBodyBytes };
  }

  /** Adds `data` (base64) to the body; answers the room left. Past the cap the upload is dropped. */
  write(call: HostCall, rawId: unknown, data: unknown): { room: number } {
    const [id, upload] = this.find(call, rawId);
    if (typeof data !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call.call}: the data must be base64 text`);
    const bytes = Buffer.from(data, "base64");
    if (upload.size + bytes.length > this.maxBodyBytes) {
      this.drop(id);
      throw new AstridError("ASTRID_ERR_HTTP_BODY_TOO_LARGE", `${call.call}: the request body would be ${upload.size + bytes.length} bytes, more than ${this.maxBodyBytes} (10 MiB); the upload was dropped`);
    }
    if (bytes.length > 0) upload.chunks.push(bytes);
    upload.size += bytes.length;
    this.touch(id, upload);
    return { room: this.maxBodyBytes - upload.size };
  }

  /** Sends the request with the body written, and answers its response as a stream. */
  async finish(call: HostCall, rawId: unknown, checkFor: (req: ParsedRequest) => HopCheck): Promise<{ id: string; status: number; headers: Record<string, string> }> {
    const [id, upload] = this.find(call, rawId);
    const body = Buffer.concat(upload.chunks, upload.size);
    // The upload becomes the stream: it leaves first so it does not count twice against the limit.
    this.drop(id);
    return this.streams.open(call, { ...upload.req, body }, checkFor(upload.req));
  }

  /** Drops an upload; false when it was not open. */
  close(call: HostCall, rawId: unknown): boolean {
    if (typeof rawId !== "string" || this.uploads.get(rawId)?.run !== call.run) return false;
    this.drop(rawId);
    return true;
  }

  /** Drops the uploads of a run that ended. */
  endRun(run: CapsuleRun): void {
    for (const [id, upload] of this.uploads) if (upload.run === run) this.drop(id);
  }

  /** Drops every upload (the daemon is stopping). */
  closeAll(): void {
    for (const id of [...this.uploads.keys()]) this.drop(id);
  }

  private find(call: HostCall, rawId: unknown): [string, OpenUpload] {
    const upload = typeof rawId === "string" ? this.uploads.get(rawId) : undefined;
    // Another capsule's upload is as unknown as a dropped one.
    if (!upload || upload.run !== call.run) {
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `${call.call}: no open HTTP upload with that id (finished, dropped, idle for ${HTTP_STREAM_IDLE_MS / 1000} s, or never opened)`);
    }
    return [rawId as string, upload];
  }

  private touch(id: string, upload: OpenUpload): void {
    clearTimeout(upload.idle);
    upload.idle = setTimeout(() => this.drop(id), HTTP_STREAM_IDLE_MS);
    upload.idle.unref();
  }

  private drop(id: string): void {
    const upload = this.uploads.get(id);
    if (!upload) return;
    this.uploads.delete(id);
    clearTimeout(upload.idle);
    upload.chunks.length = 0;
  }
}
