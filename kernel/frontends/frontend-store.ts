/**
 * Adding, removing and listing frontend credentials on disk (`astrid frontend …`). Works whether or not a daemon
 * runs: a running daemon sees the change through the directory's mtime (see frontend-credentials.ts). Every write
 * is a 0600 temp file made durable and then put in place in one step, so a reader never sees half a file.
 */
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { AstridError, isAstridError } from "../../protocol/errors";
import {
  checkFrontendName,
  DEFAULT_UNLINKED_POLICY,
  FRONTEND_FILE_EXTENSION,
  FRONTEND_TOKEN_EXTENSION,
  FrontendRecordSchema,
  parseFrontendFile,
  serialiseFrontendFile,
  tokenDigest,
  type FrontendRecord,
  type UnlinkedPolicy,
} from "./frontend-file";

/** What `astrid frontend add` asks for. */
export interface AddFrontendOptions {
  /** `etc/frontends` of the home; created (0700) when missing. */
  dir: string;
  name: string;
  platforms: string[];
  unlinked?: UnlinkedPolicy;
  /** Where to write the token instead of `<dir>/<name>.token`; must not exist yet. */
  tokenFile?: string;
  /** Creation time, for tests. */
  now?: Date;
}

/** A frontend just added. The token itself is only in `tokenFile`. */
export interface AddedFrontend {
  record: FrontendRecord;
  /** The credential file. */
  file: string;
  /** The file holding the token (64 hex chars, no newline, 0600). */
  tokenFile: string;
}

/** A frontend just removed, and which of its files went with it. */
export interface RemovedFrontend {
  name: string;
  file: string;
  /** Token files deleted (the default one, and the `--token-file` one when the credential recorded it). */
  tokenFilesRemoved: string[];
}

/** The credentials on disk, and the files that are not valid ones. */
export interface FrontendListing {
  frontends: Array<FrontendRecord & { file: string }>;
  /** One message per malformed file, naming the file and line. */
  problems: string[];
}

/** The credential file of `name`. */
export function frontendFile(dir: string, name: string): string {
  return path.join(dir, name + FRONTEND_FILE_EXTENSION);
}

/** The token file `astrid frontend add` writes unless given `--token-file`. */
export function defaultTokenFile(dir: string, name: string): string {
  return path.join(dir, name + FRONTEND_TOKEN_EXTENSION);
}

/**
 * Creates a credential and its token. Fails with ASTRID_ERR_FRONTEND_INVALID for a bad name, platform or policy,
 * a name already taken, or a `--token-file` that exists; nothing is left behind on failure.
 */
export async function addFrontend(options: AddFrontendOptions): Promise<AddedFrontend> {
  checkFrontendName(options.name);
  const tokenFile = options.tokenFile === undefined ? defaultTokenFile(options.dir, options.name) : path.resolve(options.tokenFile);
  const token = randomBytes(32);
  const candidate = {
    name: options.name,
    platforms: [...new Set(options.platforms)],
    unlinked: options.unlinked ?? DEFAULT_UNLINKED_POLICY,
    created_at: (options.now ?? new Date()).toISOString(),
    token_sha256: tokenDigest(token),
    ...(options.tokenFile === undefined ? {} : { token_file: tokenFile }),
  };
  const parsed = FrontendRecordSchema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const flag = issue.path[0] === "platforms" ? "--platform" : issue.path[0] === "unlinked" ? "--unlinked" : String(issue.path[0]);
    throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `${flag}: ${issue.message}${issue.path.length > 1 ? ` (item ${Number(issue.path[1]) + 1})` : ""}`);
  }
  const record = parsed.data;
  await fs.mkdir(options.dir, { recursive: true, mode: 0o700 });
  const file = frontendFile(options.dir, options.name);
  // The credential first, exclusively: of two adds of one name the second fails before touching any token file.
  // Nobody holds the token yet, so a credential without its token file for a moment admits no one.
  try {
    await placeExclusive(file, serialiseFrontendFile(record));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `frontend ${JSON.stringify(options.name)} already exists (${file}); \`astrid frontend remove ${options.name}\` revokes it first`);
    }
    throw err;
  }
  try {
    if (options.tokenFile === undefined) await placeReplacing(tokenFile, token.toString("hex"));
    else await placeExclusive(tokenFile, token.toString("hex"));
  } catch (err) {
    await fs.rm(file, { force: true });
    if ((err as NodeJS.ErrnoException).code === "EEXIST") {
      throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `--token-file ${tokenFile} already exists; name a new file (it is never overwritten)`);
    }
    throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `cannot write the token file ${tokenFile}: ${(err as Error).message}`, { cause: err });
  }
  return { record, file, tokenFile };
}

/**
 * Deletes a credential (revoking its token: a running daemon admits no new handshake with it) and its token
 * files. Fails with ASTRID_ERR_NOT_FOUND when there is no such frontend.
 */
export async function removeFrontend(dir: string, name: string): Promise<RemovedFrontend> {
  checkFrontendName(name);
  const file = frontendFile(dir, name);
  let recorded: string | undefined;
  try {
    recorded = parseFrontendFile(await fs.readFile(file, "utf8"), file, name).token_file;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `no frontend named ${JSON.stringify(name)} (no ${file}); see astrid frontend list`);
    }
    // A malformed credential is still removed: that is what the operator asked for.
    if (!isAstridError(err)) throw err;
  }
  try {
    await fs.unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new AstridError("ASTRID_ERR_NOT_FOUND", `no frontend named ${JSON.stringify(name)} (no ${file}); see astrid frontend list`);
    }
    throw err;
  }
  const tokenFilesRemoved: string[] = [];
  for (const tokenFile of new Set([defaultTokenFile(dir, name), ...(recorded === undefined ? [] : [recorded])])) {
    try {
      await fs.unlink(tokenFile);
      tokenFilesRemoved.push(tokenFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  return { name, file, tokenFilesRemoved };
}

/** Every credential in `dir`, sorted by name, with a message for each file that is not a valid one. */
export async function listFrontends(dir: string): Promise<FrontendListing> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => n.endsWith(FRONTEND_FILE_EXTENSION)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { frontends: [], problems: [] };
    throw err;
  }
  const listing: FrontendListing = { frontends: [], problems: [] };
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      const record = parseFrontendFile(await fs.readFile(file, "utf8"), file, name.slice(0, -FRONTEND_FILE_EXTENSION.length));
      listing.frontends.push({ ...record, file });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") continue;
      listing.problems.push(isAstridError(err) ? err.message : `${file}: ${(err as Error).message}`);
    }
  }
  return listing;
}

/** A durable 0600 temp file beside `target`, whose name no reader of the directory takes for a credential. */
async function writeTemp(target: string, content: string): Promise<string> {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const handle = await fs.open(tmp, "wx", 0o600);
  try {
    await handle.writeFile(content);
    await handle.sync();
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await fs.rm(tmp, { force: true });
    throw err;
  }
  return tmp;
}

/** Puts `content` at `target` whole, failing with EEXIST (and leaving nothing) when `target` exists. */
async function placeExclusive(target: string, content: string): Promise<void> {
  const tmp = await writeTemp(target, content);
  try {
    // link(2) refuses an existing target atomically, where rename(2) would replace it.
    await fs.link(tmp, target);
  } finally {
    await fs.rm(tmp, { force: true });
  }
}

/** Puts `content` at `target` whole, replacing what was there. */
async function placeReplacing(target: string, content: string): Promise<void> {
  const tmp = await writeTemp(target, content);
  try {
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}
