/**
 * Guest paths of the VFS: what a capsule may name (`cwd://x`, `home://x`, `/tmp/x`, a bare relative path), their one
 * canonical spelling, the manifest entries that cover them, and their place on disk. Parsing is lexical and refuses
 * every `..` that would climb out of its root; placing on disk then follows symlinks and refuses any whose target
 * leaves the root (a link in the workspace to $ASTRID_HOME/keys reads as an escape, not as the key).
 */
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";

/** The three roots a guest path lives in: the workspace, the principal's home, the principal's temporary dir. */
export type VfsRoot = "cwd" | "home" | "tmp";

/** A parsed guest path: its root and its `/`-separated path inside it ("" for the root itself, never `.`/`..`). */
export interface GuestPath {
  root: VfsRoot;
  rel: string;
}

/** Largest file a read returns or a write accepts, in bytes. */
export const MAX_VFS_FILE_BYTES = 10 * 1024 * 1024;
/** Longest guest path, in UTF-8 bytes. */
export const MAX_GUEST_PATH_BYTES = 4096;
/** Longest single name in a path, in UTF-8 bytes (the common filesystem limit). */
const MAX_NAME_BYTES = 255;

const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;

function invalid(raw: string, why: string): AstridError {
  return new AstridError("ASTRID_ERR_VFS_PATH_INVALID", `path ${JSON.stringify(raw.slice(0, 256))} ${why}`);
}

/** The error for a path that leaves its root. */
export function escapeError(raw: string, why: string): AstridError {
  return new AstridError("ASTRID_ERR_VFS_PATH_ESCAPE", `path ${JSON.stringify(raw.slice(0, 256))} ${why}`);
}

/**
 * Parses a guest path. `cwd://x` and bare relative paths are in the workspace, `home://x` in the principal's home,
 * `/tmp` and `/tmp/x` in its temporary directory. Refuses (coded) NUL bytes, unknown schemes, other absolute paths
 * and any `..` that climbs above the root.
 */
export function parseGuestPath(raw: unknown): GuestPath {
  if (typeof raw !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "a path must be a string");
  if (raw.length === 0) throw invalid(raw, "is empty (the workspace itself is cwd://)");
  if (Buffer.byteLength(raw) > MAX_GUEST_PATH_BYTES) throw invalid(raw, `is longer than ${MAX_GUEST_PATH_BYTES} bytes`);
  if (raw.includes("\u0000")) throw invalid(raw, "contains a NUL byte");
  let root: VfsRoot;
  let rest: string;
  const scheme = SCHEME.exec(raw);
  if (scheme) {
    if (scheme[1] === "cwd") root = "cwd";
    else if (scheme[1] === "home") root = "home";
    else throw invalid(raw, `has an unknown scheme ${scheme[1]}:// (use cwd://, home:// or /tmp/)`);
    rest = raw.slice(scheme[0].length);
  } else if (raw === "/tmp" || raw.startsWith("/tmp/")) {
    root = "tmp";
    rest = raw.slice(4);
  } else if (raw.startsWith("/")) {
    throw escapeError(raw, "is an absolute path outside /tmp (name workspace files cwd://… and your home's home://…)");
  } else {
    root = "cwd";
    rest = raw;
  }
  const segments: string[] = [];
  for (const segment of rest.split("/")) {
    if (segment === "" || segment === ".") continue;
    if (segment === "..") {
      if (segments.length === 0) throw escapeError(raw, `climbs out of ${rootName(root)} with ..`);
      segments.pop();
      continue;
    }
    if (Buffer.byteLength(segment) > MAX_NAME_BYTES) throw invalid(raw, `has a name longer than ${MAX_NAME_BYTES} bytes`);
    segments.push(segment);
  }
  return { root, rel: segments.join("/") };
}

/** How a root is spelled in messages and canonical paths. */
export function rootName(root: VfsRoot): string {
  return root === "tmp" ? "/tmp" : `${root}://`;
}

/** The canonical spelling of a guest path: `cwd://a/b`, `home://a`, `/tmp/a` (`cwd://`, `home://`, `/tmp` for roots). */
export function guestName(p: GuestPath): string {
  if (p.root === "tmp") return p.rel === "" ? "/tmp" : `/tmp/${p.rel}`;
  return `${p.root}://${p.rel}`;
}

/**
 * Whether a manifest `fs_read`/`fs_write` entry covers `target`. `*` covers every path; otherwise the entry is read as
 * a guest path and covers itself and everything beneath it, segment by segment (`cwd://src` covers `cwd://src/a.ts`,
 * not `cwd://srcx`). An entry that is not a valid guest path covers nothing.
 */
export function entryCovers(entry: string, target: GuestPath): boolean {
  if (entry === "*") return true;
  let parsed: GuestPath;
  try {
    parsed = parseGuestPath(entry);
  } catch {
    return false;
  }
  if (parsed.root !== target.root) return false;
  return parsed.rel === "" || target.rel === parsed.rel || target.rel.startsWith(`${parsed.rel}/`);
}

/** Whether `child` (absolute, normalised) is `parent` or beneath it. */
export function isInside(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException | null)?.code;

/**
 * Where `rel` lives under `rootReal` (the root's realpath): the realpath of its deepest existing ancestor, joined
 * with the names that do not exist yet. Refuses (ASTRID_ERR_VFS_PATH_ESCAPE) a symlink on the way that points out of
 * the root, a dangling one (where a write through it would land is not ours to check), and a symlink loop.
 * `guest` is the path as the capsule named it, for messages.
 */
export async function resolveInside(rootReal: string, rel: string, guest: string): Promise<string> {
  const segments = rel === "" ? [] : rel.split("/");
  for (let i = segments.length; i >= 0; i--) {
    const candidate = path.join(rootReal, ...segments.slice(0, i));
    let real: string;
    try {
      real = await fs.realpath(candidate);
    } catch (err) {
      const code = errno(err);
      if (code === "ELOOP") throw escapeError(guest, "runs into a symlink loop");
      if (code !== "ENOENT" && code !== "ENOTDIR") throw ioError(err, guest);
      if (i === 0) throw new AstridError("ASTRID_ERR_NOT_FOUND", `the root of ${JSON.stringify(guest)} does not exist`);
      const link = await fs.lstat(candidate).catch(() => null);
      if (link?.isSymbolicLink()) throw escapeError(guest, "goes through a symlink whose target does not exist");
      continue;
    }
    if (!isInside(rootReal, real)) throw escapeError(guest, "goes through a symlink that points outside its root");
    return path.join(real, ...segments.slice(i));
  }
  /* istanbul ignore next: the loop returns or throws at i = 0 */
  throw new AstridError("ASTRID_ERR_INTERNAL", "unreachable");
}

/** A filesystem error as the coded error a capsule or operator sees. */
export function ioError(err: unknown, guest: string): AstridError {
  const shown = JSON.stringify(guest.slice(0, 256));
  switch (errno(err)) {
    case "ENOENT":
      return new AstridError("ASTRID_ERR_NOT_FOUND", `${shown} does not exist`, { cause: err });
    case "ENOTDIR":
      return new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${shown}: a part of the path is a file, not a directory`, { cause: err });
    case "EISDIR":
      return new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${shown} is a directory`, { cause: err });
    case "ELOOP":
      return escapeError(guest, "is a symlink (the VFS does not follow links it has not checked)");
    default:
      return new AstridError("ASTRID_ERR_VFS_IO", `${shown}: ${(err as Error).message}`, { cause: err });
  }
}
