/**
 * Opening `var/state.db` for writing: the storage worker is its one writer, so the schema it writes, creates and
 * migrates lives here; the checks every opener shares are in storage/database.ts.
 */
import fs from "node:fs";
import type Database from "better-sqlite3";
import { openCheckedDatabase } from "../../storage/database";

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

/** Databases up to this size get SQLite's full quick_check at every open (tens of milliseconds). */
const FULL_CHECK_UP_TO_BYTES = 32 * 1024 * 1024;

/** Opens (creating if absent) the state database for writing, checked and migrated. */
export function openStateDatabase(dbPath: string): Database.Database {
  return openCheckedDatabase(dbPath, {
    create: true,
    fullCheckUpToBytes: FULL_CHECK_UP_TO_BYTES,
    beforeCheck: (db) => {
      fs.chmodSync(dbPath, 0o600);
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = FULL");
    },
    afterCheck: (db) => {
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
    },
  });
}
