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
  let db: Database.Database;
  try {
    db = new Database(dbPath, options.create ? {} : { fileMustExist: true });
  } catch (err) {
    throw corrupt(`cannot be opened: ${(err as Error).message}`, err);
  }
  try {
    options.beforeCheck?.(db);
    db.pragma("busy_timeout = 5000");
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(String(check));
    options.afterCheck?.(db);
  } catch (err) {
    db.close();
    const message = (err as Error).message;
    throw corrupt(/^(is|was) /.test(message) ? message : `fails its integrity check: ${message}`, err);
  }
  return db;
}
