/**
 * The session token (reference §2.4): 32 CSPRNG bytes, 64 lowercase hex chars, regenerated every boot, written to
 * a temp sibling (0600, fsync) and renamed onto `run/system.token` so a reader never sees a partial token.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { decodeToken } from "../protocol/session-token-format";

/** The daemon's token for this boot. */
export class SessionToken {
  private constructor(readonly bytes: Buffer) {}

  /** A fresh random token. */
  static generate(): SessionToken {
    return new SessionToken(randomBytes(32));
  }

  /** The token as the 64 lowercase hex chars written to disk. */
  get hex(): string {
    return this.bytes.toString("hex");
  }

  /** Writes the token atomically at `tokenPath` with mode 0600. */
  write(tokenPath: string): void {
    const tmp = path.join(path.dirname(tokenPath), `system.${process.pid}.tmp`);
    const fd = fs.openSync(tmp, "w", 0o600);
    try {
      fs.writeSync(fd, this.hex);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, tokenPath);
  }
}

/** Reads a token file as clients do (trimmed, either case); null when absent or malformed. */
export function readTokenFile(tokenPath: string): string | null {
  let text: string;
  try {
    text = fs.readFileSync(tokenPath, "utf8");
  } catch {
    return null;
  }
  return decodeToken(text) === null ? null : text.trim();
}
