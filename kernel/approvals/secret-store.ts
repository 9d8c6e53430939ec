/**
 * Capsule secrets: values a person typed into an `elicit.ask({type: "secret"})`, kept per capsule and encrypted at
 * rest with AES-256-GCM under `keys/secrets.key` (32 random bytes, 0600, created on first use). Each value is bound
 * to its capsule and key name (the GCM additional data), so a ciphertext copied to another capsule's slot does not
 * decrypt. The kernel's KV scope `system:capsule-secrets` holds the ciphertexts (no client may write `system:*`).
 * Values are never logged or audited; only key names are.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError } from "../../protocol/errors";
import type { StorageClient } from "../storage-client";

/** Bytes in the key. */
export const SECRET_KEY_BYTES = 32;
/** The kernel's KV scope of capsule secrets. */
export const SECRETS_SCOPE = "system:capsule-secrets";
/** Longest secret value, in UTF-8 bytes. */
export const MAX_SECRET_BYTES = 64 * 1024;

const IV_BYTES = 12;

/** Encrypted capsule secrets. */
export class SecretStore {
  private key: Promise<Buffer> | undefined;

  constructor(private readonly keyPath: string, private readonly storage: StorageClient) {}

  /** Stores (or replaces) `capsule`'s secret `name`. */
  async put(capsule: string, name: string, value: string): Promise<void> {
    const plain = Buffer.from(value, "utf8");
    if (plain.length > MAX_SECRET_BYTES) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `a secret may hold at most ${MAX_SECRET_BYTES} bytes`);
    const key = await this.loadKey();
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", key, iv);
    cipher.setAAD(aad(capsule, name));
    const ct = Buffer.concat([cipher.update(plain), cipher.final()]);
    const record = { v: 1, iv: iv.toString("base64"), tag: cipher.getAuthTag().toString("base64"), ct: ct.toString("base64") };
    await this.storage.set(SECRETS_SCOPE, slot(capsule, name), Buffer.from(JSON.stringify(record)));
  }

  /** True when `capsule` has a secret `name`. */
  async has(capsule: string, name: string): Promise<boolean> {
    return (await this.storage.get(SECRETS_SCOPE, slot(capsule, name))) !== null;
  }

  /** `capsule`'s secret `name`, decrypted; null when there is none. */
  async get(capsule: string, name: string): Promise<string | null> {
    const stored = await this.storage.get(SECRETS_SCOPE, slot(capsule, name));
    if (stored === null) return null;
    const key = await this.loadKey();
    try {
      const record = JSON.parse(Buffer.from(stored).toString("utf8")) as { v: number; iv: string; tag: string; ct: string };
      const decipher = createDecipheriv("aes-256-gcm", key, Buffer.from(record.iv, "base64"));
      decipher.setAAD(aad(capsule, name));
      decipher.setAuthTag(Buffer.from(record.tag, "base64"));
      return Buffer.concat([decipher.update(Buffer.from(record.ct, "base64")), decipher.final()]).toString("utf8");
    } catch (err) {
      throw new AstridError("ASTRID_ERR_SECRET_KEY_INVALID",
        `the stored secret ${JSON.stringify(name)} of ${capsule} does not decrypt with ${this.keyPath} (was the key replaced?); ask for it again`, { cause: err });
    }
  }

  /** The key, read or (once, on first use) created. */
  private loadKey(): Promise<Buffer> {
    this.key ??= readOrCreateKey(this.keyPath);
    // A failed read is retried on the next use (the operator may fix the file meanwhile).
    this.key.catch(() => (this.key = undefined));
    return this.key;
  }
}

function slot(capsule: string, name: string): string {
  return `${capsule}:${name}`;
}

function aad(capsule: string, name: string): Buffer {
  return Buffer.from(`astrid-capsule-secret\u0000${capsule}\u0000${name}`, "utf8");
}

async function readOrCreateKey(keyPath: string): Promise<Buffer> {
  try {
    const key = await fs.readFile(keyPath);
    if (key.length !== SECRET_KEY_BYTES) {
      throw new AstridError("ASTRID_ERR_SECRET_KEY_INVALID",
        `${keyPath} holds ${key.length} bytes, expected ${SECRET_KEY_BYTES}; restore it (stored capsule secrets need it) or remove it to start over (they are lost)`);
    }
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
      if (err instanceof AstridError) throw err;
      throw new AstridError("ASTRID_ERR_SECRET_KEY_INVALID", `cannot read ${keyPath}: ${(err as Error).message}`, { cause: err });
    }
  }
  const key = randomBytes(SECRET_KEY_BYTES);
  await fs.mkdir(path.dirname(keyPath), { recursive: true, mode: 0o700 });
  const tmp = `${keyPath}.${process.pid}.tmp`;
  const handle = await fs.open(tmp, "w", 0o600);
  try {
    await handle.writeFile(key);
    await handle.sync();
  } finally {
    await handle.close();
  }
  // link(2) refuses an existing name: if the key appeared meanwhile, that one wins and is read.
  try {
    await fs.link(tmp, keyPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    await fs.rm(tmp, { force: true });
    return readOrCreateKey(keyPath);
  }
  await fs.rm(tmp, { force: true });
  return key;
}
