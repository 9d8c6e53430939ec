/**
 * The VFS: what `fs.*` calls do once permitted, and what an operator's VfsDiff/VfsCommit/VfsDiscard do. Workspace
 * paths go through the acting principal's overlay (kernel/vfs/overlay.ts); `home://` and `/tmp` are the principal's
 * own and are read and written directly. Every path is placed on disk by `resolveInside` (no `..`, no symlink out of
 * its root) and, when `$ASTRID_HOME` lies inside the workspace, kept out of it.
 */
import { createHash } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { isPrincipalId } from "../../protocol/identity-names";
import type { AstridHome } from "../home";
import { namesIn, readCapped, statOrNull, writeAtomic, type VfsStat } from "./files";
import { Overlay, type OverlayChange } from "./overlay";
import { escapeError, guestName, ioError, isInside, resolveInside, type GuestPath } from "./paths";

/** Most principals' overlays kept open at once (an idle one is reopened from disk when needed). */
export const MAX_OPEN_OVERLAYS = 1024;

/** Places a capsule may not write even with a covering `fs_write` entry: other capsules' code. */
const PROTECTED: ReadonlyArray<GuestPath> = [
  { root: "cwd", rel: ".astrid/capsules" },
  { root: "home", rel: ".local/capsules" },
];

/** A change of the diff, with its guest path. */
export interface VfsChange extends Omit<OverlayChange, "path"> {
  /** `cwd://…`. */
  path: string;
}

/** The VFS of one daemon: one workspace, the principals' homes under one `$ASTRID_HOME`. */
export class Vfs {
  private readonly overlays = new Map<string, Overlay>();
  private realRoots?: Promise<{ workspace: string; home: string }>;

  constructor(
    private readonly home: AstridHome,
    /** The workspace root (`cwd://`), absolute. */
    readonly workspace: string,
  ) {}

  /** The realpaths of the workspace and of $ASTRID_HOME (computed once). */
  private roots(): Promise<{ workspace: string; home: string }> {
    this.realRoots ??= (async () => ({
      workspace: await fs.realpath(this.workspace).catch((err: unknown) => {
        throw new AstridError("ASTRID_ERR_VFS_IO", `the workspace ${this.workspace} is not usable: ${(err as Error).message}`, { cause: err });
      }),
      home: await fs.realpath(this.home.root),
    }))();
    const roots = this.realRoots;
    // A failure is not cached: the workspace may be created later.
    roots.catch(() => {
      if (this.realRoots === roots) this.realRoots = undefined;
    });
    return roots;
  }

  /** Where a workspace path is on disk: inside the workspace, never inside $ASTRID_HOME (when that is under it). */
  private async resolveWorkspace(rel: string, guest: string): Promise<string> {
    const roots = await this.roots();
    const physical = await resolveInside(roots.workspace, rel, guest);
    if (!isInside(roots.home, roots.workspace) && isInside(roots.home, physical)) {
      throw escapeError(guest, "is inside $ASTRID_HOME (the daemon's own files are not part of the workspace)");
    }
    return physical;
  }

  /** `resolveWorkspace` for a place about to be written: never into the workspace's capsules, even through a link. */
  private async resolveWorkspaceTarget(rel: string, guest: string): Promise<string> {
    const physical = await this.resolveWorkspace(rel, guest);
    const roots = await this.roots();
    await refuseProtected(path.join(roots.workspace, ".astrid", "capsules"), physical, guest);
    return physical;
  }

  /** The principal's overlay of the workspace (opened on first use). */
  private async overlay(principal: string): Promise<Overlay> {
    const roots = await this.roots();
    const id = createHash("sha256").update(roots.workspace).digest("hex").slice(0, 16);
    const key = `${principal}\u0000${id}`;
    let overlay = this.overlays.get(key);
    if (overlay) {
      // Most recently used last.
      this.overlays.delete(key);
      this.overlays.set(key, overlay);
      return overlay;
    }
    const dir = path.join(this.home.root, "var", "vfs", principal, id);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    // Which workspace these staged writes belong to, for people looking at var/vfs.
    await fs.writeFile(path.join(dir, "workspace"), `${roots.workspace}\n`, { mode: 0o600 });
    overlay = new Overlay(dir, (rel, guest) => this.resolveWorkspace(rel, guest), (rel, guest) => this.resolveWorkspaceTarget(rel, guest),
      (rel) => guestName({ root: "cwd", rel }));
    this.overlays.set(key, overlay);
    if (this.overlays.size > MAX_OPEN_OVERLAYS) {
      for (const [k, o] of this.overlays) {
        if (this.overlays.size <= MAX_OPEN_OVERLAYS) break;
        if (o.pending === 0 && k !== key) this.overlays.delete(k);
      }
    }
    return overlay;
  }

  /** The realpath of the principal's home (`home://`) or temporary directory (`/tmp`), created when missing. */
  private async ownRoot(principal: string, root: "home" | "tmp"): Promise<string> {
    const home = this.home.principalHome(principal);
    const dir = root === "home" ? home : path.join(home, ".local", "tmp");
    try {
      await fs.mkdir(home, { recursive: true, mode: 0o700 });
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      return await fs.realpath(dir);
    } catch (err) {
      throw ioError(err, guestName({ root, rel: "" }));
    }
  }

  private checkPrincipal(principal: string): void {
    if (!isPrincipalId(principal)) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `principal ${JSON.stringify(String(principal).slice(0, 80))} must be 1-64 characters of [A-Za-z0-9_-]`);
  }

  /** Either the overlay (workspace) or the physical place (home, tmp) of a guest path. */
  private async place(principal: string, p: GuestPath): Promise<{ overlay: Overlay } | { physical: string; rootReal: string }> {
    this.checkPrincipal(principal);
    if (p.root === "cwd") return { overlay: await this.overlay(principal) };
    const rootReal = await this.ownRoot(principal, p.root);
    return { physical: await resolveInside(rootReal, p.rel, guestName(p)), rootReal };
  }

  /** Refuses a home write that lands in the principal's installed capsules (through a link or not). */
  private async refuseProtectedHome(principal: string, physical: string, guest: string): Promise<void> {
    const home = await fs.realpath(this.home.principalHome(principal));
    await refuseProtected(path.join(home, ".local", "capsules"), physical, guest);
  }

  /** Refuses writes into the places no capsule may write (PROTECTED), as named. */
  private checkWritable(p: GuestPath): void {
    for (const q of PROTECTED) {
      if (p.root === q.root && (p.rel === q.rel || p.rel.startsWith(`${q.rel}/`))) {
        throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guestName(p)} is where capsules are installed; the VFS does not write there (use astrid capsule install)`);
      }
    }
  }

  /** `fs.stat`, or null when absent. */
  async stat(principal: string, p: GuestPath): Promise<VfsStat | null> {
    const at = await this.place(principal, p);
    return "overlay" in at ? at.overlay.stat(p.rel) : statOrNull(at.physical, guestName(p));
  }

  /** `fs.read`. */
  async read(principal: string, p: GuestPath): Promise<Buffer> {
    const at = await this.place(principal, p);
    return "overlay" in at ? at.overlay.read(p.rel) : readCapped(at.physical, guestName(p));
  }

  /** `fs.readdir`. */
  async readdir(principal: string, p: GuestPath): Promise<string[]> {
    const at = await this.place(principal, p);
    if ("overlay" in at) return at.overlay.readdir(p.rel);
    const st = await statOrNull(at.physical, guestName(p));
    if (!st) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guestName(p))} does not exist`);
    if (!st.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guestName(p))} is a file, not a directory`);
    return (await namesIn(at.physical, guestName(p))) ?? [];
  }

  /** `fs.write`: staged under the workspace, direct elsewhere. */
  async write(principal: string, p: GuestPath, data: Uint8Array): Promise<void> {
    this.checkWritable(p);
    const guest = guestName(p);
    const at = await this.place(principal, p);
    if ("overlay" in at) return at.overlay.write(p.rel, data);
    if (p.rel === "") throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is a directory`);
    await this.refuseProtectedHome(principal, at.physical, guest);
    const existing = await fs.stat(at.physical).catch(() => null);
    if (existing?.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a directory`);
    const parent = await statOrNull(path.dirname(at.physical), guest);
    if (!parent) throw new AstridError("ASTRID_ERR_NOT_FOUND", `the directory of ${JSON.stringify(guest)} does not exist (create it with fs.mkdir first)`);
    if (!parent.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `the directory of ${JSON.stringify(guest)} is a file`);
    await writeAtomic(at.physical, data, guest, { mode: existing ? existing.mode & 0o777 : 0o600 });
  }

  /** `fs.mkdir` (with parents). */
  async mkdir(principal: string, p: GuestPath): Promise<void> {
    this.checkWritable(p);
    const at = await this.place(principal, p);
    if ("overlay" in at) return at.overlay.mkdir(p.rel);
    await this.refuseProtectedHome(principal, at.physical, guestName(p));
    try {
      await fs.mkdir(at.physical, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST" || code === "ENOTDIR") throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guestName(p))} or a directory above it is a file`, { cause: err });
      throw ioError(err, guestName(p));
    }
  }

  /** `fs.unlink` (files only; a symlink is removed, not what it points to). */
  async unlink(principal: string, p: GuestPath): Promise<void> {
    this.checkWritable(p);
    const guest = guestName(p);
    this.checkPrincipal(principal);
    if (p.root === "cwd") return (await this.overlay(principal)).unlink(p.rel);
    if (p.rel === "") throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is a directory (fs.unlink removes files)`);
    const rootReal = await this.ownRoot(principal, p.root);
    const parentRel = p.rel.includes("/") ? p.rel.slice(0, p.rel.lastIndexOf("/")) : "";
    const dir = await resolveInside(rootReal, parentRel, guest);
    const target = path.join(dir, path.basename(p.rel));
    await this.refuseProtectedHome(principal, target, guest);
    const st = await fs.lstat(target).catch((err: unknown) => {
      throw ioError(err, guest);
    });
    if (st.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a directory (fs.unlink removes files)`);
    await fs.unlink(target).catch((err: unknown) => {
      throw ioError(err, guest);
    });
  }

  /** The principal's staged workspace changes. */
  async diff(principal: string): Promise<VfsChange[]> {
    this.checkPrincipal(principal);
    return (await (await this.overlay(principal)).changes()).map((c) => ({ ...c, path: guestName({ root: "cwd", rel: c.path }) }));
  }

  /** Applies the principal's staged changes (those `select` picks) to the workspace; returns their guest paths. */
  async commit(principal: string, select?: (p: GuestPath) => boolean): Promise<string[]> {
    this.checkPrincipal(principal);
    const overlay = await this.overlay(principal);
    const paths = await overlay.commit(select ? (rel) => select({ root: "cwd", rel }) : undefined);
    return paths.map((rel) => guestName({ root: "cwd", rel }));
  }

  /** Drops the principal's staged changes (those `select` picks); returns their guest paths. */
  async discard(principal: string, select?: (p: GuestPath) => boolean): Promise<string[]> {
    this.checkPrincipal(principal);
    const overlay = await this.overlay(principal);
    const paths = await overlay.discard(select ? (rel) => select({ root: "cwd", rel }) : undefined);
    return paths.map((rel) => guestName({ root: "cwd", rel }));
  }
}

/** Throws ASTRID_ERR_VFS_PATH_PROTECTED when `physical` is `dir` (or its realpath) or beneath it. */
async function refuseProtected(dir: string, physical: string, guest: string): Promise<void> {
  const real = await fs.realpath(dir).catch(() => dir);
  if (isInside(real, physical) || isInside(dir, physical)) {
    throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guest} is where capsules are installed; the VFS does not write there (use astrid capsule install)`);
  }
}

const shared = new Map<string, Vfs>();

/**
 * The one VFS of a home and workspace in this process: the capsules' `fs.*` service and the management requests
 * must share it, so that a commit and a write of the same principal are serialised by one overlay.
 */
export function sharedVfs(home: AstridHome, workspace: string): Vfs {
  const key = `${home.root}\u0000${workspace}`;
  let vfs = shared.get(key);
  if (!vfs) shared.set(key, (vfs = new Vfs(home, workspace)));
  return vfs;
}
