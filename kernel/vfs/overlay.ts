/**
 * One principal's overlay of the workspace: its writes land in an upper tree (`upper/<path>`) and its unlinks in a
 * whiteout list, so the real workspace (the lower layer) is untouched until the writes are committed. Reads through
 * the overlay see the upper layer over the lower one, minus the whiteouts. Changes are serialised per overlay; the
 * state is all on disk, so a restarted daemon finds the staged writes where it left them.
 */
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import { namesIn, readCapped, statOrNull, writeAtomic, type VfsStat } from "./files";
import { ioError } from "./paths";

/** Most bytes one principal may have staged in one workspace. */
export const MAX_STAGED_BYTES = 256 * 1024 * 1024;
/** Most files one principal may have staged in one workspace. */
export const MAX_STAGED_FILES = 10_000;

/** One staged change, as a diff lists it (`path` is workspace-relative). */
export interface OverlayChange {
  path: string;
  change: "added" | "modified" | "deleted";
  kind: "file" | "dir";
  /** The staged file's size; for a deletion, the size of the file it deletes; 0 for a directory. */
  size: number;
}

/** Where a path of the merged view lives. */
interface Node {
  layer: "upper" | "lower";
  physical: string;
  stat: VfsStat;
}

/** Finds a workspace path's place in the real workspace, refusing escapes (kernel/vfs/paths.ts `resolveInside`). */
export type LowerResolver = (rel: string, guest: string) => Promise<string>;
/** Refuses (throws) removing the real directory `physical` as a whole: one holding what no capsule may remove. */
export type TreeGuard = (physical: string, guest: string) => Promise<void>;

const join = (a: string, b: string) => (a === "" ? b : `${a}/${b}`);
const parentOf = (rel: string) => (rel.includes("/") ? rel.slice(0, rel.lastIndexOf("/")) : "");

/** A principal's staged view of one workspace. */
export class Overlay {
  private readonly upper: string;
  private readonly tempDir: string;
  private readonly whiteoutsFile: string;
  private whiteouts?: Set<string>;
  private usage?: { bytes: number; files: number };
  private chain: Promise<unknown> = Promise.resolve();
  /** Calls running or queued (an overlay with none may be dropped from the registry's cache). */
  pending = 0;

  constructor(
    /** `var/vfs/<principal>/<workspace id>`. */
    readonly dir: string,
    private readonly resolveLower: LowerResolver,
    /** Like `resolveLower`, for a place about to be written: also refuses the protected places. */
    private readonly resolveTarget: LowerResolver,
    /** How a workspace-relative path is shown (`cwd://a`). */
    private readonly guest: (rel: string) => string,
    /** Checked before a whole workspace directory is removed (staged, and again at commit). */
    private readonly guardTree: TreeGuard = async () => undefined,
  ) {
    this.upper = path.join(dir, "upper");
    this.tempDir = path.join(dir, "tmp");
    this.whiteoutsFile = path.join(dir, "whiteouts.json");
  }

  /** Runs `fn` after every earlier change of this overlay finished (reads do not wait). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.pending++;
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined).finally(() => this.pending--);
    return run;
  }

  /** Counts a read in `pending` (so the registry does not drop the overlay under it). */
  async reading<T>(fn: () => Promise<T>): Promise<T> {
    this.pending++;
    try {
      return await fn();
    } finally {
      this.pending--;
    }
  }

  private async loadWhiteouts(): Promise<Set<string>> {
    if (this.whiteouts) return this.whiteouts;
    let list: unknown = [];
    try {
      list = JSON.parse(await fs.readFile(this.whiteoutsFile, "utf8"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw new AstridError("ASTRID_ERR_VFS_IO", `${this.whiteoutsFile} is unreadable: ${(err as Error).message}`, { cause: err });
    }
    this.whiteouts = new Set(Array.isArray(list) ? list.filter((x): x is string => typeof x === "string") : []);
    return this.whiteouts;
  }

  private async saveWhiteouts(): Promise<void> {
    const set = await this.loadWhiteouts();
    await fs.mkdir(this.tempDir, { recursive: true, mode: 0o700 });
    await writeAtomic(this.whiteoutsFile, Buffer.from(JSON.stringify([...set].sort())), this.whiteoutsFile, { tempDir: this.tempDir, mode: 0o600 });
  }

  /** The upper layer's file or directory at `rel` (never a link: only this code writes there). */
  private async upperStat(rel: string): Promise<VfsStat | null> {
    const st = await fs.lstat(path.join(this.upper, rel)).catch(() => null);
    if (!st || !(st.isFile() || st.isDirectory())) return null;
    return { size: st.isFile() ? st.size : 0, is_file: st.isFile(), is_dir: st.isDirectory(), mtime_ms: Math.trunc(st.mtimeMs) };
  }

  /** Whether the lower layer's `rel` is hidden: it or an ancestor is whited out, or an ancestor is an upper file. */
  private async hidden(rel: string): Promise<boolean> {
    const whiteouts = await this.loadWhiteouts();
    const segments = rel === "" ? [] : rel.split("/");
    for (let i = 1; i <= segments.length; i++) {
      const prefix = segments.slice(0, i).join("/");
      if (whiteouts.has(prefix)) return true;
      if (i < segments.length) {
        const up = await this.upperStat(prefix);
        if (up?.is_file) return true;
      }
    }
    return false;
  }

  /** The lower layer's stat of `rel`, ignoring the overlay; null when absent (or no longer safely reachable). */
  private async lowerStat(rel: string): Promise<(VfsStat & { physical: string }) | null> {
    const physical = await this.resolveLower(rel, this.guest(rel));
    const st = await statOrNull(physical, this.guest(rel));
    return st ? { ...st, physical } : null;
  }

  /** Where `rel` lives in the merged view, or null. */
  private async lookup(rel: string): Promise<Node | null> {
    if (rel !== "") {
      const up = await this.upperStat(rel);
      if (up) return { layer: "upper", physical: path.join(this.upper, rel), stat: up };
      if (await this.hidden(rel)) return null;
    }
    const low = await this.lowerStat(rel);
    return low ? { layer: "lower", physical: low.physical, stat: { size: low.size, is_file: low.is_file, is_dir: low.is_dir, mtime_ms: low.mtime_ms } } : null;
  }

  /** `fs.stat` (null when absent). */
  stat(rel: string): Promise<VfsStat | null> {
    return this.reading(async () => (await this.lookup(rel))?.stat ?? null);
  }

  /** `fs.read`: the bytes, capped. */
  read(rel: string): Promise<Buffer> {
    return this.reading(async () => {
      const node = await this.lookup(rel);
      if (!node) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(this.guest(rel))} does not exist`);
      return readCapped(node.physical, this.guest(rel));
    });
  }

  /** `fs.readdir`: the merged, sorted names. */
  readdir(rel: string): Promise<string[]> {
    return this.reading(async () => {
      const node = await this.lookup(rel);
      if (!node) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(this.guest(rel))} does not exist`);
      if (!node.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(this.guest(rel))} is a file, not a directory`);
      const names = new Set<string>();
      if (rel === "" || !(await this.hidden(rel))) {
        const whiteouts = await this.loadWhiteouts();
        const low = await this.lowerStat(rel);
        if (low?.is_dir) for (const name of (await namesIn(low.physical, this.guest(rel))) ?? []) if (!whiteouts.has(join(rel, name))) names.add(name);
      }
      for (const name of (await namesIn(path.join(this.upper, rel), this.guest(rel))) ?? []) names.add(name);
      return [...names].sort();
    });
  }

  /** `fs.write` under the workspace: staged in the upper layer. The parent directory must exist (merged view). */
  write(rel: string, data: Uint8Array): Promise<void> {
    return this.exclusive(() => this.stage(rel, data));
  }

  /** A write, inside `exclusive`. */
  private async stage(rel: string, data: Uint8Array): Promise<void> {
    const guest = this.guest(rel);
    if (rel === "") throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is the workspace directory, not a file`);
    const existing = await this.lookup(rel);
    if (existing?.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a directory`);
    const parent = await this.lookup(parentOf(rel));
    if (!parent) throw new AstridError("ASTRID_ERR_NOT_FOUND", `the directory of ${JSON.stringify(guest)} does not exist (create it with fs.mkdir first)`);
    if (!parent.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(this.guest(parentOf(rel)))} is a file, not a directory`);
    // Where the write would land when committed must be inside the workspace now, too.
    await this.resolveTarget(rel, guest);
    const usage = await this.loadUsage();
    const replaced = existing?.layer === "upper" ? existing.stat.size : 0;
    const files = usage.files + (existing?.layer === "upper" ? 0 : 1);
    const bytes = usage.bytes - replaced + data.byteLength;
    if (files > MAX_STAGED_FILES || bytes > MAX_STAGED_BYTES) {
      throw new AstridError("ASTRID_ERR_VFS_TOO_LARGE",
        `staging ${JSON.stringify(guest)} would exceed this principal's staged-write limit (${MAX_STAGED_FILES} files, ${MAX_STAGED_BYTES} bytes); commit or discard first`);
    }
    await fs.mkdir(path.join(this.upper, parentOf(rel)), { recursive: true, mode: 0o700 });
    await fs.mkdir(this.tempDir, { recursive: true, mode: 0o700 });
    await writeAtomic(path.join(this.upper, rel), data, guest, { tempDir: this.tempDir, mode: 0o600 });
    usage.files = files;
    usage.bytes = bytes;
    const whiteouts = await this.loadWhiteouts();
    if (whiteouts.delete(rel)) await this.saveWhiteouts();
  }

  /** `fs.mkdir` under the workspace: the missing directories are staged (like `mkdir -p`). */
  mkdir(rel: string): Promise<void> {
    return this.exclusive(async () => {
      const segments = rel === "" ? [] : rel.split("/");
      for (let i = 1; i <= segments.length; i++) {
        const prefix = segments.slice(0, i).join("/");
        const node = await this.lookup(prefix);
        if (node && !node.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(this.guest(prefix))} is a file, not a directory`);
      }
      await this.resolveTarget(rel, this.guest(rel));
      await fs.mkdir(path.join(this.upper, rel), { recursive: true, mode: 0o700 });
    });
  }

  /** `fs.unlink` under the workspace: drops a staged file and whites out the workspace's own. */
  unlink(rel: string): Promise<void> {
    return this.exclusive(async () => {
      const guest = this.guest(rel);
      const node = rel === "" ? { stat: { is_dir: true } } : await this.lookup(rel);
      if (!node) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guest)} does not exist`);
      if (node.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a directory (fs.unlink removes files)`);
      if ((node as Node).layer === "upper") {
        await fs.rm(path.join(this.upper, rel));
        const usage = await this.loadUsage();
        usage.files--;
        usage.bytes -= (node as Node).stat.size;
      }
      if (!(await this.hidden(rel))) {
        const low = await this.lowerStat(rel);
        if (low && !low.is_dir) {
          (await this.loadWhiteouts()).add(rel);
          await this.saveWhiteouts();
        }
      }
    });
  }

  /**
   * `fs.removeDirAll` under the workspace: the staged part of the directory is dropped and the workspace's part is
   * whited out as a whole (the commit removes it). Links inside are entries, never followed; a directory named
   * through a link is refused. Returns how many entries (files, links, directories) were inside.
   */
  removeDirAll(rel: string): Promise<number> {
    return this.exclusive(async () => {
      const guest = this.guest(rel);
      const node = await this.lookup(rel);
      if (!node) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guest)} does not exist`);
      if (!node.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a file, not a directory`);
      const low = node.layer === "lower" || !(await this.hidden(rel)) ? await this.lowerEntry(rel) : null;
      if (node.layer === "lower" && low?.kind === "link") {
        throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is a symlink; fs-remove-dir-all does not follow links (remove the link with fs-unlink)`);
      }
      if (low?.kind === "dir") await this.guardTree(low.physical, guest);
      const count = await this.countMerged(rel);
      await fs.rm(path.join(this.upper, rel), { recursive: true, force: true });
      this.usage = undefined;
      const whiteouts = await this.loadWhiteouts();
      for (const w of [...whiteouts]) if (w.startsWith(`${rel}/`)) whiteouts.delete(w);
      if (low) whiteouts.add(rel);
      await this.saveWhiteouts();
      return count;
    });
  }

  /** The entries below `rel` in the merged view, recursing only into real directories (never through a link). */
  private async countMerged(rel: string): Promise<number> {
    const whiteouts = await this.loadWhiteouts();
    const names = new Set<string>();
    const up = await this.upperStat(rel);
    const lowerVisible = !(await this.hidden(rel)) && !up?.is_file;
    const low = lowerVisible ? await this.lowerEntry(rel) : null;
    if (low?.kind === "dir") for (const name of (await namesIn(low.physical, this.guest(rel))) ?? []) if (!whiteouts.has(join(rel, name))) names.add(name);
    if (up?.is_dir) for (const name of (await namesIn(path.join(this.upper, rel), this.guest(rel))) ?? []) names.add(name);
    let count = 0;
    for (const name of names) {
      const child = join(rel, name);
      count++;
      if ((await this.upperStat(child))?.is_dir || (!(await this.hidden(child)) && (await this.lowerEntry(child))?.kind === "dir")) count += await this.countMerged(child);
    }
    return count;
  }

  /** What the workspace has at `rel` itself (a final link not followed), or null; ignores the overlay. */
  private async lowerEntry(rel: string): Promise<{ kind: "dir" | "file" | "link"; physical: string } | null> {
    if (rel === "") return { kind: "dir", physical: await this.resolveLower("", this.guest("")) };
    let physical: string;
    try {
      physical = path.join(await this.resolveLower(parentOf(rel), this.guest(parentOf(rel))), path.basename(rel));
    } catch {
      return null;
    }
    const st = await fs.lstat(physical).catch(() => null);
    if (!st) return null;
    return { kind: st.isSymbolicLink() ? "link" : st.isDirectory() ? "dir" : "file", physical };
  }

  /**
   * `fs.readLink` under the workspace: the real directory holding the link and the link's text (a staged path is
   * never a link: only this code writes the upper layer).
   */
  readLink(rel: string): Promise<{ dir: string; target: string }> {
    return this.reading(async () => {
      const guest = this.guest(rel);
      const notLink = () => new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(guest)} is not a symlink`);
      if (rel === "" || (await this.upperStat(rel))) throw notLink();
      if (await this.hidden(rel)) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(guest)} does not exist`);
      const dir = await this.resolveLower(parentOf(rel), this.guest(parentOf(rel)));
      const physical = path.join(dir, path.basename(rel));
      const st = await fs.lstat(physical).catch((err: unknown) => {
        throw ioError(err, guest);
      });
      if (!st.isSymbolicLink()) throw notLink();
      return { dir, target: await fs.readlink(physical).catch((err: unknown) => { throw ioError(err, guest); }) };
    });
  }

  /**
   * `fs.hardLink` under the workspace: `link` is staged with `src`'s bytes. Every VFS write replaces a file whole, so
   * through the VFS a link and a copy made at link time read the same; the commit writes a regular file.
   */
  hardLink(src: string, link: string): Promise<void> {
    return this.exclusive(async () => {
      const node = await this.lookup(src);
      if (!node) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${JSON.stringify(this.guest(src))} does not exist`);
      if (node.stat.is_dir) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${JSON.stringify(this.guest(src))} is a directory (hard links are for files)`);
      if (await this.lookup(link)) throw new AstridError("ASTRID_ERR_VFS_EXISTS", `${JSON.stringify(this.guest(link))} already exists`);
      await this.stage(link, await readCapped(node.physical, this.guest(src)));
    });
  }

  /** Every staged change, sorted by path. */
  changes(): Promise<OverlayChange[]> {
    return this.reading(() => this.collect());
  }

  private async collect(): Promise<OverlayChange[]> {
    const out: OverlayChange[] = [];
    const lower = (rel: string) => this.lowerStat(rel).catch(() => null);
    const walk = async (dirRel: string): Promise<void> => {
      const entries = await fs.readdir(path.join(this.upper, dirRel), { withFileTypes: true }).catch(() => []);
      for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const rel = join(dirRel, entry.name);
        // Under a removed directory (a whited-out one), the workspace's own entry is gone: what is staged is new.
        if (entry.isDirectory()) {
          if (!(await lower(rel))?.is_dir || (await this.hidden(rel))) out.push({ path: rel, change: "added", kind: "dir", size: 0 });
          await walk(rel);
        } else if (entry.isFile()) {
          const st = await fs.lstat(path.join(this.upper, rel));
          out.push({ path: rel, change: (await lower(rel))?.is_file && !(await this.hidden(rel)) ? "modified" : "added", kind: "file", size: st.size });
        }
      }
    };
    await walk("");
    for (const rel of await this.loadWhiteouts()) {
      const up = await this.upperStat(rel);
      if (up?.is_file) continue;
      // A removed directory (fs.removeDirAll), even when a new one is staged in its place.
      if ((await this.lowerEntry(rel).catch(() => null))?.kind === "dir") {
        out.push({ path: rel, change: "deleted", kind: "dir", size: 0 });
        continue;
      }
      if (up) continue;
      const low = await lower(rel);
      if (low && !low.is_dir) out.push({ path: rel, change: "deleted", kind: "file", size: low.size });
    }
    // A removed directory and the new one staged in its place: the removal first (the order commit applies them).
    const rank = (c: OverlayChange) => (c.change === "deleted" ? 0 : 1);
    return out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : rank(a) - rank(b)));
  }

  /**
   * Applies the staged changes `select` picks (all by default) to the real workspace: deletions, then new
   * directories, then files (each written whole: temp file, then rename). What fails stays staged; the rest is
   * applied. Returns the paths applied; throws ASTRID_ERR_VFS_COMMIT_FAILED naming the failures, if any.
   */
  commit(select: (rel: string) => boolean = () => true): Promise<string[]> {
    return this.exclusive(async () => {
      const changes = (await this.collect()).filter((c) => select(c.path));
      const whiteouts = await this.loadWhiteouts();
      const committed: string[] = [];
      const failed: Array<{ path: string; error: string }> = [];
      const attempt = async (c: OverlayChange, apply: (guest: string) => Promise<void>) => {
        try {
          await apply(this.guest(c.path));
          committed.push(c.path);
        } catch (err) {
          failed.push({ path: c.path, error: (err as Error).message });
        }
      };
      for (const c of changes.filter((x) => x.change === "deleted")) {
        await attempt(c, async (guest) => {
          // The link itself, never what a link points to: resolve the directory, then unlink the name in it.
          const dir = await this.resolveTarget(parentOf(c.path), this.guest(parentOf(c.path)));
          const target = path.join(dir, path.basename(c.path));
          const st = await fs.lstat(target).catch(() => null);
          if (c.kind === "dir") {
            if (st && !st.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is no longer a directory in the workspace`);
            if (st) {
              await this.guardTree(target, guest);
              // fs.rm removes links inside as links: nothing outside the directory is touched.
              await fs.rm(target, { recursive: true }).catch((err: unknown) => { throw ioError(err, guest); });
            }
            whiteouts.delete(c.path);
            return;
          }
          if (st?.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is now a directory in the workspace`);
          if (st) await fs.unlink(target).catch((err: unknown) => { throw ioError(err, guest); });
          whiteouts.delete(c.path);
        });
      }
      for (const c of changes.filter((x) => x.kind === "dir" && x.change !== "deleted")) {
        await attempt(c, async (guest) => {
          const target = await this.resolveTarget(c.path, guest);
          await fs.mkdir(target, { recursive: true }).catch((err: unknown) => { throw ioError(err, guest); });
        });
      }
      for (const c of changes.filter((x) => x.kind === "file" && x.change !== "deleted")) {
        await attempt(c, async (guest) => {
          const target = await this.resolveTarget(c.path, guest);
          const existing = await fs.stat(target).catch(() => null);
          if (existing?.isDirectory()) throw new AstridError("ASTRID_ERR_VFS_WRONG_TYPE", `${guest} is now a directory in the workspace`);
          const data = await readCapped(path.join(this.upper, c.path), guest);
          await fs.mkdir(path.dirname(target), { recursive: true }).catch((err: unknown) => { throw ioError(err, guest); });
          await writeAtomic(target, data, guest, { mode: existing ? existing.mode & 0o777 : 0o644 });
          await fs.rm(path.join(this.upper, c.path));
          whiteouts.delete(c.path);
        });
      }
      await this.saveWhiteouts();
      await this.prune(select);
      this.usage = undefined;
      if (failed.length > 0) {
        const shown = failed.slice(0, 5).map((f) => `${this.guest(f.path)}: ${f.error}`).join("; ");
        throw new AstridError("ASTRID_ERR_VFS_COMMIT_FAILED",
          `committed ${committed.length} of ${committed.length + failed.length} staged changes; ${failed.length} failed and stay staged: ${shown}${failed.length > 5 ? "; …" : ""}`);
      }
      return committed.sort();
    });
  }

  /** Drops the staged changes `select` picks (all by default). Returns their paths. */
  discard(select: (rel: string) => boolean = () => true): Promise<string[]> {
    return this.exclusive(async () => {
      const changes = (await this.collect()).filter((c) => select(c.path));
      const whiteouts = await this.loadWhiteouts();
      for (const c of changes) {
        if (c.change === "deleted") whiteouts.delete(c.path);
        else if (c.kind === "file") await fs.rm(path.join(this.upper, c.path), { force: true });
      }
      await this.saveWhiteouts();
      await this.prune(select);
      this.usage = undefined;
      return changes.map((c) => c.path);
    });
  }

  /** Removes empty upper directories that are selected or that the workspace has anyway (they show nothing). */
  private async prune(select: (rel: string) => boolean): Promise<void> {
    const visit = async (rel: string): Promise<void> => {
      const entries = await fs.readdir(path.join(this.upper, rel), { withFileTypes: true }).catch(() => []);
      for (const entry of entries) if (entry.isDirectory()) await visit(join(rel, entry.name));
      if (rel === "") return;
      if ((await fs.readdir(path.join(this.upper, rel)).catch(() => ["?"])).length > 0) return;
      if (select(rel) || (await this.lowerStat(rel).catch(() => null))?.is_dir) await fs.rmdir(path.join(this.upper, rel)).catch(() => undefined);
    };
    await visit("");
  }

  /** Staged bytes and files, counted once from disk and then kept up to date. */
  private async loadUsage(): Promise<{ bytes: number; files: number }> {
    if (this.usage) return this.usage;
    const usage = { bytes: 0, files: 0 };
    const walk = async (dir: string): Promise<void> => {
      for (const entry of await fs.readdir(dir, { withFileTypes: true }).catch(() => [])) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (entry.isFile()) {
          usage.files++;
          usage.bytes += (await fs.lstat(full)).size;
        }
      }
    };
    await walk(this.upper);
    this.usage = usage;
    return usage;
  }
}
