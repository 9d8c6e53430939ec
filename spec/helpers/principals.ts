/**
 * In-memory pieces for unit tests of the principals module and the routers: a temp home with profiles and groups,
 * a logger that keeps its lines, an audit log that keeps its entries.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import winston from "winston";
import { AuditLog } from "../../kernel/audit-log";
import { AstridHome } from "../../kernel/home";
import type { Logger } from "../../kernel/logger";
import type { StorageClient } from "../../kernel/storage-client";
import type { AuditInput } from "../../protocol/storage-messages";

/** A temp ASTRID_HOME with etc/ (removed by `removeTempHomes`). */
export function tempPolicyHome(): AstridHome {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "astrid-p-"));
  fs.mkdirSync(path.join(root, "etc"), { mode: 0o700 });
  made.push(root);
  return new AstridHome(root);
}
const made: string[] = [];

/** Removes the homes `tempPolicyHome` made. */
export function removeTempHomes(): void {
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

/** Writes `etc/profiles/<principal>.toml`. */
export function writeProfile(home: AstridHome, principal: string, text: string): void {
  fs.mkdirSync(home.profilesDir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(home.profilePath(principal), text, { mode: 0o600 });
}

/** A logger whose lines are kept in `lines`. */
export function memoryLogger(): { logger: Logger; lines: Array<{ level: string; message: string; [k: string]: unknown }> } {
  const lines: Array<{ level: string; message: string; [k: string]: unknown }> = [];
  const stream = new Writable({
    objectMode: true,
    write(info: { level: string; message: string }, _encoding, next) {
      lines.push({ ...info });
      next();
    },
  });
  return { logger: winston.createLogger({ level: "debug", transports: [new winston.transports.Stream({ stream })] }), lines };
}

/** An audit log whose entries are kept in `entries`. */
export function memoryAudit(): { audit: AuditLog; entries: AuditInput[] } {
  const entries: AuditInput[] = [];
  const storage = { recordAudit: (e: AuditInput) => entries.push(e), takeLostAudit: () => undefined } as unknown as StorageClient;
  return { audit: new AuditLog(storage, "00000000-0000-0000-0000-000000000000"), entries };
}
