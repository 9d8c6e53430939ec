/**
 * Opening `var/state.db`: refuse anything that is not a healthy database of ours, with the file named, and never
 * start over or overwrite. Schema and format are described in docs/storage-format.md.
 */
import fs from "node:fs";
import Database from "better-sqlite3";
import { AstridError } from "../../protocol/errors";

/** The schema version this code writes. */
export const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv (
  scope TEXT NOT NULL,
  key   BLOB NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
  seq       INTEGER PRIMARY KEY,
  content   TEXT NOT NULL,
  hash      BLOB NOT NULL,
  signature BLOB
);
`;

/** Opens (creating if absent) the state database for writing, checked and migrated. */
export function openStateDatabase(dbPath: string): Database.Database {
  return open(dbPath, false);
}

/**
 * Opens an existing state database for reading (`astrid audit`, with or without a running daemon). The handle is
 * read-write at the SQLite level only so that closing it as the last connection removes the -wal/-shm files a
 * WAL reader creates; nothing is ever written through it.
 */
export function openStateDatabaseReadOnly(dbPath: string): Database.Database {
  if (!fs.existsSync(dbPath)) {
    throw new AstridError("ASTRID_ERR_STORAGE_CORRUPT", `${dbPath} does not exist: no daemon has run on this ASTRID_HOME yet`);
  }
  return open(dbPath, true);
}

function open(dbPath: string, readonly: boolean): Database.Database {
  const corrupt = (why: string, cause?: unknown) =>
    new AstridError("ASTRID_ERR_STORAGE_CORRUPT",
      `${dbPath} ${why}. It was left untouched; move it aside to start with empty state, or restore a backup.`, { cause });
  let stat: fs.Stats | undefined;
  try {
    stat = fs.statSync(dbPath);
  } catch {
    // Absent: created below (write mode only).
  }
  // SQLite treats an empty file as a new database; for us an empty existing file means truncation.
  if (stat && stat.size === 0) throw corrupt("exists but is empty (truncated?)");
  let db: Database.Database;
  try {
    db = new Database(dbPath, readonly ? { fileMustExist: true } : {});
  } catch (err) {
    throw corrupt(`cannot be opened: ${(err as Error).message}`, err);
  }
  try {
    if (!readonly) {
      fs.chmodSync(dbPath, 0o600);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
    }
    db.pragma("busy_timeout = 5000");
    const check = db.pragma("quick_check", { simple: true });
    if (check !== "ok") throw new Error(String(check));
    if (!readonly) {
      const hadTables = (db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number }).n > 0;
      db.exec(SCHEMA);
      const version = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string } | undefined;
      if (!version) {
        if (hadTables && !db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'audit'").get()) {
          throw new Error("is a SQLite database but not an Astrid state database");
        }
        db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
      } else if (Number(version.value) > SCHEMA_VERSION) {
        throw new Error(`was written by a newer daemon (schema ${version.value}, this one knows ${SCHEMA_VERSION})`);
      }
    }
  } catch (err) {
    db.close();
    const message = (err as Error).message;
    throw corrupt(/^(is|was) /.test(message) ? message : `fails its integrity check: ${message}`, err);
  }
  return db;
}
