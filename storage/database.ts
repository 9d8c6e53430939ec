/**
 * Opening `var/state.db`: refuse anything that is not a healthy database of ours, with the file named, and never
 * start over or overwrite. Readers (the kernel's boot checks, `astrid audit`) open it here; the storage worker, its
 * one writer, opens it through `openCheckedDatabase` and adds the schema (workers/storage/database.ts). Schema and
 * format are described in docs/storage-format.md.
 */
import fs from "node:fs";
import Database from "better-sqlite3";
import { AstridError } from "../protocol/errors";

/**
 * Opens an existing state database for reading (`astrid audit`, with or without a running daemon). The handle is
 * read-write at the SQLite level only so that closing it as the last connection removes the -wal/-shm files a
 * WAL reader creates; nothing is ever written through it.
 */
export function openStateDatabaseReadOnly(dbPath: string): Database.Database {
  if (!fs.existsSync(dbPath)) {
    throw new AstridError("ASTRID_ERR_STORAGE_CORRUPT", `${dbPath} does not exist: no daemon has run on this ASTRID_HOME yet`);
  }
  return openCheckedDatabase(dbPath, { create: false });
}

/** How `openCheckedDatabase` opens the file, and what the writer does around the integrity check. */
export interface CheckedOpenOptions {
  /** Create the file when absent (the writer); a reader requires it to exist. */
  create: boolean;
  /**
   * Larger files that were closed cleanly (no -wal left beside them) get only the structural check at open: the
   * header's size against the file's, and the schema readable. `quick_check` reads every page (~1 s for a log of
   * 300 000 entries), so the daemon leaves it to the background walk of the audit log, which opens the file through
   * `openStateDatabaseReadOnly` and runs it in full. Unset: always the full check.
   */
  fullCheckUpToBytes?: number;
  /** Runs on the fresh handle before the integrity check (the writer's journal settings). */
  beforeCheck?: (db: Database.Database) => void;
  /**
   * Runs after the check passed (the writer's schema). An error whose message starts with "is " or "was " is
   * reported as what the file is, any other as a failed integrity check.
   */
  afterCheck?: (db: Database.Database) => void;
}

/**
 * Opens `dbPath` and runs SQLite's quick_check; an empty existing file, one SQLite cannot open, or one failing a
 * check is refused with ASTRID_ERR_STORAGE_CORRUPT naming the file, and left untouched.
 */
export function openCheckedDatabase(dbPath: string, options: CheckedOpenOptions): Database.Database {
  const corrupt = (why: string, cause?: unknown) =>
    new AstridError("ASTRID_ERR_STORAGE_CORRUPT",
      `${dbPath} ${why}. It was left untouched; move it aside to start with empty state, or restore a backup.`, { cause });
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dbPath);
  } catch {
    // Absent: created below when `create` is set; a reader gets SQLite's own refusal.
  }
  // SQLite treats an empty file as a new database; for us an empty existing file means truncation.
  if (stat && stat.size === 0) throw corrupt("exists but is empty (truncated?)");
  // Looked at before opening: opening a WAL database creates the -wal file.
  const fullCheck = options.fullCheckUpToBytes === undefined || !stat || stat.size <= options.fullCheckUpToBytes || walLeftBehind(dbPath);
  let db: Database.Database;
  try {
    db = new Database(dbPath, options.create ? {} : { fileMustExist: true });
  } catch (err) {
    throw corrupt(`cannot be opened: ${(err as Error).message}`, err);
  }
  try {
    options.beforeCheck?.(db);
    db.pragma("busy_timeout = 5000");
    if (fullCheck) {
      const check = db.pragma("quick_check", { simple: true });
      if (check !== "ok") throw new Error(String(check));
    } else {
      structuralCheck(db, stat!.size);
    }
    options.afterCheck?.(db);
  } catch (err) {
    db.close();
    const message = (err as Error).message;
    throw corrupt(/^(is|was) /.test(message) ? message : `fails its integrity check: ${message}`, err);
  }
  return db;
}

/** True when a non-empty -wal file is beside the database: it was not closed cleanly (or is open elsewhere). */
function walLeftBehind(dbPath: string): boolean {
  try {
    return fs.statSync(`${dbPath}-wal`).size > 0;
  } catch {
    return false;
  }
}

/**
 * What can be checked without reading every page: the schema parses, and the file holds every page its header
 * counts (a cleanly closed WAL database has all its pages in the main file, so a shorter file was truncated).
 */
function structuralCheck(db: Database.Database, fileSize: number): void {
  db.prepare("SELECT count(*) FROM sqlite_master").get();
  const pages = db.pragma("page_count", { simple: true }) as number;
  const pageSize = db.pragma("page_size", { simple: true }) as number;
  if (pages * pageSize > fileSize) throw new Error(`its header counts ${pages} pages of ${pageSize} bytes but the file has ${fileSize} bytes (truncated)`);
}
