/**
 * The `fs.*` host calls: a capsule's files, through the VFS (kernel/vfs/). Each call parses its path (a bad or
 * escaping one is refused and audited before anything else), then asks the permission gate — an `fs_read` or
 * `fs_write` entry covering the path, and the principal's `self:fs:read` / `self:fs:write` — then runs in the VFS
 * for the principal the capsule acts for (`fs.hard_link` checks both of its paths for writing). `fs.commit` and
 * `fs.discard` act on that principal's staged workspace writes that the capsule's `fs_write` entries cover, and are
 * audited.
 */
import { z } from "zod";
import { AstridError, isAstridError } from "../../protocol/errors";
import { CAPSULE_HOST_CAPABILITIES } from "../../protocol/required-capabilities";
import { MAX_VFS_FILE_BYTES, entryCovers, guestName, parseGuestPath, type GuestPath } from "../vfs/paths";
import { sharedVfs, type Vfs } from "../vfs/vfs";
import { tooLarge } from "../vfs/files";
import type { HostCall, HostContext, HostService } from "./host-call";

const Encoding = z.enum(["utf8", "base64"]).optional();
/** Longest `data` string a write takes before decoding: base64 of MAX_VFS_FILE_BYTES, and a little slack. */
const MAX_DATA_CHARS = Math.ceil(MAX_VFS_FILE_BYTES / 3) * 4 + 4;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

const READ_CALLS = new Set(["fs.read", "fs.exists", "fs.stat", "fs.readdir", "fs.canonicalize", "fs.read_link"]);

/** The bytes of a write's `data` (UTF-8 text, or base64), refusing more than the cap before decoding all of it. */
function decode(data: string, encoding: "utf8" | "base64", guest: string): Buffer {
  if (encoding === "base64") {
    if (data.length > MAX_DATA_CHARS) throw tooLarge(guest, Math.floor((data.length * 3) / 4));
    if (data.length % 4 !== 0 || !BASE64.test(data)) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `fs.write: data for ${guest} is not valid base64`);
    const bytes = Buffer.from(data, "base64");
    if (bytes.byteLength > MAX_VFS_FILE_BYTES) throw tooLarge(guest, bytes.byteLength);
    return bytes;
  }
  // A UTF-16 code unit is at most 3 UTF-8 bytes: a string of more than the cap in units is measured, not guessed.
  if (data.length > MAX_VFS_FILE_BYTES) throw tooLarge(guest, Buffer.byteLength(data));
  const bytes = Buffer.from(data, "utf8");
  if (bytes.byteLength > MAX_VFS_FILE_BYTES) throw tooLarge(guest, bytes.byteLength);
  return bytes;
}

/** FsService: the VFS behind a capsule's `fs` API. */
export class FsService implements HostService {
  private readonly vfs: Vfs;

  constructor(private readonly host: HostContext) {
    this.vfs = sharedVfs(host.home, host.workspace);
  }

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    if (call.call === "fs.commit" || call.call === "fs.discard") return this.settle(call);
    const write = !READ_CALLS.has(call.call);
    const path = this.parse(call, args[0], write);
    const guest = guestName(path);
    const caps = call.run.record.manifest.capabilities;
    const entries = write ? caps.fs_write : caps.fs_read;
    await call.permit({
      kind: write ? "fs_write" : "fs_read",
      target: guest,
      allowedByManifest: entries.some((entry) => entryCovers(entry, path)),
      capability: write ? CAPSULE_HOST_CAPABILITIES.fsWrite : CAPSULE_HOST_CAPABILITIES.fsRead,
    });
    // A hard link writes both names: the link path is checked like the source (reference: fs_write on both).
    const second = call.call === "fs.hard_link" ? this.parse(call, args[1], true) : undefined;
    if (second) {
      await call.permit({
        kind: "fs_write",
        target: guestName(second),
        allowedByManifest: caps.fs_write.some((entry) => entryCovers(entry, second)),
        capability: CAPSULE_HOST_CAPABILITIES.fsWrite,
      });
    }
    try {
      if (second) {
        await this.vfs.hardLink(call.principal, path, second);
        return null;
      }
      return await this.run(call, path, guest, args);
    } catch (err) {
      // A symlink out of the root (or into the protected places) is refused like a `..`: audited.
      if (isAstridError(err) && (err.code === "ASTRID_ERR_VFS_PATH_ESCAPE" || err.code === "ASTRID_ERR_VFS_PATH_PROTECTED")) this.refused(call, guest, err);
      throw err;
    }
  }

  /** The call's path, parsed; a refused one is audited. */
  private parse(call: HostCall, raw: unknown, write: boolean): GuestPath {
    try {
      return parseGuestPath(raw);
    } catch (err) {
      if (isAstridError(err) && err.code !== "ASTRID_ERR_REQUEST_INVALID") this.refused(call, typeof raw === "string" ? raw : "", err, write);
      throw err;
    }
  }

  private async run(call: HostCall, path: GuestPath, guest: string, args: unknown[]): Promise<unknown> {
    const { principal } = call;
    switch (call.call) {
      case "fs.read": {
        const encoding = Encoding.safeParse(args[1]);
        if (!encoding.success) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", 'fs.read: encoding must be "utf8" or "base64"');
        const bytes = await this.vfs.read(principal, path);
        return bytes.toString(encoding.data ?? "utf8");
      }
      case "fs.exists":
        return (await this.vfs.stat(principal, path)) !== null;
      case "fs.stat": {
        const st = await this.vfs.stat(principal, path);
        if (!st) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guest)} does not exist`);
        return st;
      }
      case "fs.readdir":
        return this.vfs.readdir(principal, path);
      case "fs.write": {
        const encoding = Encoding.safeParse(args[2]);
        if (!encoding.success) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", 'fs.write: encoding must be "utf8" or "base64"');
        if (typeof args[1] !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "fs.write: data must be a string (UTF-8 text, or base64 with encoding \"base64\")");
        await this.vfs.write(principal, path, decode(args[1], encoding.data ?? "utf8", guest));
        return null;
      }
      case "fs.mkdir":
        await this.vfs.mkdir(principal, path);
        return null;
      case "fs.unlink":
        await this.vfs.unlink(principal, path);
        return null;
      case "fs.remove_dir_all":
        return this.vfs.removeDirAll(principal, path);
      case "fs.canonicalize":
        return this.vfs.canonicalize(principal, path);
      case "fs.read_link":
        return this.vfs.readLink(principal, path);
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown call ${call.call}`);
    }
  }

  /**
   * `fs.commit` / `fs.discard`: the principal's staged workspace writes that this capsule's `fs_write` entries cover
   * (another capsule's writes for the same principal, outside them, stay staged). The capsule needs some `fs_write`
   * entry in the workspace, and the principal `self:fs:write`.
   */
  private async settle(call: HostCall): Promise<unknown> {
    const entries = call.run.record.manifest.capabilities.fs_write;
    const covers = (p: GuestPath) => entries.some((entry) => entryCovers(entry, p));
    const inWorkspace = entries.some((entry) => {
      if (entry === "*") return true;
      try {
        return parseGuestPath(entry).root === "cwd";
      } catch {
        return false;
      }
    });
    await call.permit({ kind: "fs_write", target: "cwd://", allowedByManifest: inWorkspace, capability: CAPSULE_HOST_CAPABILITIES.fsWrite });
    const change = call.call === "fs.commit" ? "commit" : "discard";
    const who = { principal: call.principal, capsule: call.run.record.name };
    try {
      const paths = change === "commit" ? await this.vfs.commit(call.principal, covers) : await this.vfs.discard(call.principal, covers);
      this.host.audit.vfs(change, { ...who, paths });
      return change === "commit" ? { committed: paths } : { discarded: paths };
    } catch (err) {
      this.host.audit.vfs(change, { ...who, paths: [], error: (err as Error).message });
      throw err;
    }
  }

  /** Audits a refused path (an escape, an invalid or protected path): never in `[capabilities]`, so no list named. */
  private refused(call: HostCall, path: string, err: AstridError, write = !READ_CALLS.has(call.call)): void {
    this.host.audit.capsule("denied", call.run.record.name, {
      call: call.call,
      principal: call.principal,
      capability: write ? CAPSULE_HOST_CAPABILITIES.fsWrite : CAPSULE_HOST_CAPABILITIES.fsRead,
      path: path.slice(0, 1024),
      code: err.code,
      detail: err.message,
    });
  }
}
