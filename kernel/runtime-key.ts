/**
 * `keys/runtime.key` (reference §1.2): the 32-byte Ed25519 seed that signs the audit log. Generated (0600, temp +
 * rename) when absent; any other length is a fatal boot error.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { AstridError } from "../protocol/errors";

/** Bytes in a seed. */
export const RUNTIME_KEY_BYTES = 32;

/** Reads the seed, or throws ASTRID_ERR_RUNTIME_KEY_INVALID; never creates one. */
export function readRuntimeKey(keyPath: string): Buffer {
  let seed: Buffer;
  try {
    seed = fs.readFileSync(keyPath);
  } catch (err) {
    throw new AstridError("ASTRID_ERR_RUNTIME_KEY_INVALID", `cannot read the runtime key ${keyPath}: ${(err as Error).message}`, { cause: err });
  }
  if (seed.length !== RUNTIME_KEY_BYTES) {
    throw new AstridError("ASTRID_ERR_RUNTIME_KEY_INVALID",
      `invalid runtime key: ${keyPath} holds ${seed.length} bytes, expected ${RUNTIME_KEY_BYTES}. ` +
        "Restore the original key (the audit log is signed with it); remove it only to start a new signing identity.");
  }
  return seed;
}

/**
 * Makes the key file owner-only again when it is not (a copy or restore that lost its mode); returns the mode it
 * had, or null when it was already 0600 (or stricter).
 */
export function tightenRuntimeKeyMode(keyPath: string): number | null {
  // A symlinked key is the operator's arrangement: its target's mode is theirs to keep.
  if (fs.lstatSync(keyPath).isSymbolicLink()) return null;
  const mode = fs.statSync(keyPath).mode & 0o777;
  if ((mode & 0o077) === 0) return null;
  fs.chmodSync(keyPath, 0o600);
  return mode;
}

/** Loads the seed, generating it when the file does not exist. */
export function loadOrCreateRuntimeKey(keyPath: string): Buffer {
  if (fs.existsSync(keyPath)) return readRuntimeKey(keyPath);
  const seed = randomBytes(RUNTIME_KEY_BYTES);
  fs.mkdirSync(path.dirname(keyPath), { recursive: true, mode: 0o700 });
  const tmp = `${keyPath}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, "w", 0o600);
  try {
    fs.writeSync(fd, seed);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, keyPath);
  return seed;
}
