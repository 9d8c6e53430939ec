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

  /** Refuses removing a workspace directory that holds the workspace's capsules or $ASTRID_HOME. */
  private async guardWorkspaceTree(physical: string, guest: string): Promise<void> {
    const roots = await this.roots();
    await refuseContaining([path.join(roots.workspace, ".astrid", "capsules"), roots.home], physical, guest);
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
      (rel) => guestName({ root: "cwd", rel }), (physical, guest) => this.guardWorkspaceTree(physical, guest));
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
    const physical = await resolveInside(rootReal, p.rel, guestName(p));
    if (p.root === "home") await this.refuseSettings(principal, physical, guestName(p));
    return { physical, rootReal };
  }

  /**
   * Refuses any access to the operator's capsule settings (`home://.config/env/`: every capsule's `[env]` values,
   * API keys among them). A capsule reads its own through `env`, never another's through the VFS.
   */
  private async refuseSettings(principal: string, physical: string, guest: string): Promise<void> {
    const settings = path.join(await fs.realpath(this.home.principalHome(principal)), ".config", "env");
    const real = await fs.realpath(settings).catch(() => settings);
    if (isInside(real, physical) || isInside(settings, physical)) {
      throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guest} holds the operator's capsule settings; a capsule reads its own with env.get, not through the VFS`);
    }
  }

  /** Refuses a home write that lands in the principal's installed capsules or its capsule settings (through a link or not). */
  private async refuseProtectedHome(principal: string, physical: string, guest: string): Promise<void> {
    const home = await fs.realpath(this.home.principalHome(principal));
    await refuseProtected(path.join(home, ".local", "capsules"), physical, guest);
    await this.refuseSettings(principal, physical, guest);
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

  /**
   * `fs.removeDirAll`: a directory and everything in it (staged under the workspace). Links inside are removed as
   * links, never followed; a directory named through a final link is refused, and so are a root itself and a
   * directory holding the capsules' places or $ASTRID_HOME. Returns how many entries were inside.
   */
  async removeDirAll(principal: string, p: GuestPath): Promise<number> {
    this.checkWritable(p);
    this.checkPrincipal(principal);
    const guest = guestName(p);
    if (p.rel === "") throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guest} is a root of the VFS; fs-remove-dir-all removes directories inside it`);
    for (const q of PROTECTED) {
      if (p.root === q.root && q.rel.startsWith(`${p.rel}/`)) throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guest} holds ${guestName(q)}, where capsules are installed; the VFS does not remove it`);
    }
    if (p.root === "cwd") return (await this.overlay(principal)).removeDirAll(p.rel);
    const rootReal = await this.ownRoot(principal, p.root);
    const target = path.join(await resolveInside(rootReal, parentOf(p.rel), guest), path.basename(p.rel));
    await this.refuseProtectedHome(principal, target, guest);
    const st = await fs.lstat(target).catch((err: unknown) => {
      throw ioError(err, guest);
    });
    if (st.isSymbolicLink()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a symlink; fs-remove-dir-all does not follow links (remove the link with fs-unlink)`);
    if (!st.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a file, not a directory`);
    const home = await fs.realpath(this.home.principalHome(principal));
    // The principal's installed capsules and the operator's capsule settings are the daemon's, not the capsule's.
    await refuseContaining([path.join(home, ".local", "capsules"), path.join(home, ".config", "env")], target, guest);
    const count = await countTree(target);
    // fs.rm removes links inside as links: nothing outside the directory is touched.
    await fs.rm(target, { recursive: true }).catch((err: unknown) => {
      throw ioError(err, guest);
    });
    return count;
  }

  /**
   * `fs.canonicalize`: the path with every symlink resolved, as a guest path of the same root (never a host path).
   * The path must exist (in the principal's view); a link out of the root is an escape.
   */
  async canonicalize(principal: string, p: GuestPath): Promise<string> {
    const guest = guestName(p);
    if (!(await this.stat(principal, p))) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guest)} does not exist`);
    const rootReal = p.root === "cwd" ? (await this.roots()).workspace : await this.ownRoot(principal, p.root);
    const physical = p.root === "cwd" ? await this.resolveWorkspace(p.rel, guest) : await resolveInside(rootReal, p.rel, guest);
    if (p.root === "home") await this.refuseSettings(principal, physical, guest);
    return guestName({ root: p.root, rel: relativeIn(rootReal, physical) });
  }

  /**
   * `fs.readLink`: where a symlink points, as a guest path of the link's root (the link itself is not followed
   * further). A link whose target is outside that root (or in $ASTRID_HOME) is an escape: its target is not shown.
   */
  async readLink(principal: string, p: GuestPath): Promise<string> {
    this.checkPrincipal(principal);
    const guest = guestName(p);
    let rootReal: string;
    let at: { dir: string; target: string };
    if (p.root === "cwd") {
      rootReal = (await this.roots()).workspace;
      at = await (await this.overlay(principal)).readLink(p.rel);
    } else {
      rootReal = await this.ownRoot(principal, p.root);
      if (p.rel === "") throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is not a symlink`);
      const dir = await resolveInside(rootReal, parentOf(p.rel), guest);
      const physical = path.join(dir, path.basename(p.rel));
      if (p.root === "home") await this.refuseSettings(principal, physical, guest);
      const st = await fs.lstat(physical).catch((err: unknown) => {
        throw ioError(err, guest);
      });
      if (!st.isSymbolicLink()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is not a symlink`);
      at = { dir, target: await fs.readlink(physical).catch((err: unknown) => { throw ioError(err, guest); }) };
    }
    const target = path.resolve(at.dir, at.target);
    if (!isInside(rootReal, target)) throw escapeError(guest, "is a symlink that points outside its root");
    const roots = await this.roots();
    if (p.root === "cwd" && !isInside(roots.home, roots.workspace) && isInside(roots.home, target)) {
      throw escapeError(guest, "is a symlink into $ASTRID_HOME (the daemon's own files are not part of the workspace)");
    }
    return guestName({ root: p.root, rel: relativeIn(rootReal, target) });
  }

  /**
   * `fs.hardLink`: `link` becomes another name of the file `src`, in the same root. Under the workspace the link is
   * staged as a copy of `src` (see Overlay.hardLink); in home:// and /tmp it is a real hard link.
   */
  async hardLink(principal: string, src: GuestPath, link: GuestPath): Promise<void> {
    if (src.root !== link.root) throw new AstridError("ASTRID_ERR_VFS_CROSS_ROOT", `${guestName(src)} and ${guestName(link)} are in different roots; a hard link stays in one`);
    this.checkWritable(src);
    this.checkWritable(link);
    this.checkPrincipal(principal);
    if (src.root === "cwd") return (await this.overlay(principal)).hardLink(src.rel, link.rel);
    const rootReal = await this.ownRoot(principal, src.root);
    const from = await resolveInside(rootReal, src.rel, guestName(src));
    const to = path.join(await resolveInside(rootReal, parentOf(link.rel), guestName(link)), path.basename(link.rel));
    await this.refuseProtectedHome(principal, from, guestName(src));
    await this.refuseProtectedHome(principal, to, guestName(link));
    const st = await fs.stat(from).catch((err: unknown) => {
      throw ioError(err, guestName(src));
    });
    if (!st.isFile()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guestName(src))} is ${st.isDirectory() ? "a directory" : "not a regular file"} (hard links are for files)`);
    if (link.rel === "" || (await fs.lstat(to).catch(() => null))) throw new AstridError("ASTRID_ERR_VFS_EXISTS", `${JSON.stringify(guestName(link))} already exists`);
    await fs.link(from, to).catch((err: unknown) => {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new AstridError("ASTRID_ERR_VFS_EXISTS", `${JSON.stringify(guestName(link))} already exists`, { cause: err });
      throw ioError(err, guestName(link));
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

const parentOf = (rel: string) => (rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");

/** `physical` (inside `rootReal`) as a `/`-separated path relative to it. */
function relativeIn(rootReal: string, physical: string): string {
  return path.relative(rootReal, physical).split(path.sep).join("/");
}

/** The entries below a real directory, recursing into directories only (links are counted, never followed). */
async function countTree(dir: string): Promise<number> {
  let count = 0;
  for (const entry of await fs.readdir(dir, { withFileTypes: true })) {
    count++;
    if (entry.isDirectory()) count += await countTree(path.join(dir, entry.name));
  }
  return count;
}

/** Throws ASTRID_ERR_VFS_PATH_PROTECTED when removing the directory `physical` would remove one of `dirs`. */
async function refuseContaining(dirs: string[], physical: string, guest: string): Promise<void> {
  for (const dir of dirs) {
    const real = await fs.realpath(dir).catch(() => dir);
    if (isInside(physical, real) || isInside(physical, dir)) {
      throw new AstridError("ASTRID_ERR_VFS_PATH_PROTECTED", `${guest} holds files of the daemon or its capsules; the VFS does not remove it`);
    }
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
