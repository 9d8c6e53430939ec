/**
 * The format of a frontend credential, `etc/frontends/<name>.toml`: who the frontend is, which platforms it may
 * speak for, what happens to its users who have no identity link, and the SHA-256 of its token (never the token).
 * No I/O here: the daemon's loader and the CLI's store read and write the files, and share these rules.
 */
import { createHash } from "node:crypto";
import { parse as parseToml, stringify as stringifyToml, TomlError } from "smol-toml";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { DEFAULT_PRINCIPAL, PlatformSchema, PRINCIPAL_ID_PATTERN } from "../../protocol/identity-names";
import { fieldLine } from "../../protocol/capsule-manifest";

/** What the daemon does with a message from a frontend's user who has no identity link. */
export const UNLINKED_POLICIES = ["refuse", "restricted", "agent"] as const;
/** One of `UNLINKED_POLICIES`. */
export type UnlinkedPolicy = (typeof UNLINKED_POLICIES)[number];
/** The policy `astrid frontend add` writes unless told otherwise. */
export const DEFAULT_UNLINKED_POLICY: UnlinkedPolicy = "refuse";

/** The extension of a credential file; anything else in the directory (the token files) is not read. */
export const FRONTEND_FILE_EXTENSION = ".toml";
/** The extension of a token file `astrid frontend add` writes beside the credential by default. */
export const FRONTEND_TOKEN_EXTENSION = ".token";

/** Longest list of platforms one frontend may claim. */
const MAX_PLATFORMS = 32;

/** A credential file's contents, validated. */
export const FrontendRecordSchema = z.strictObject({
  name: z.string(),
  platforms: z
    .array(PlatformSchema)
    .min(1, "must name at least one platform")
    .max(MAX_PLATFORMS, `at most ${MAX_PLATFORMS} platforms`)
    .refine((p) => new Set(p).size === p.length, "must not repeat a platform"),
  unlinked: z.enum(UNLINKED_POLICIES).default(DEFAULT_UNLINKED_POLICY),
  created_at: z.string().refine((s) => !Number.isNaN(Date.parse(s)), "must be an RFC 3339 date-time"),
  token_sha256: z.string().regex(/^[0-9a-f]{64}$/, "must be 64 lowercase hex characters (the SHA-256 of the token)"),
  /** Where `astrid frontend add --token-file` wrote the token, so `remove` can delete it too. */
  token_file: z.string().refine((p) => p.startsWith("/"), "must be an absolute path").optional(),
});
/** A frontend credential as stored. */
export type FrontendRecord = z.infer<typeof FrontendRecordSchema>;

/** Why `name` cannot name a frontend, or undefined when it can. */
export function frontendNameProblem(name: string): string | undefined {
  if (!PRINCIPAL_ID_PATTERN.test(name)) return `frontend name ${JSON.stringify(name)} must be 1-64 characters of [A-Za-z0-9_-] (a principal id)`;
  if (name === DEFAULT_PRINCIPAL) return `frontend name "${DEFAULT_PRINCIPAL}" is reserved for the operator`;
  return undefined;
}

/** Throws ASTRID_ERR_FRONTEND_INVALID unless `name` may name a frontend. */
export function checkFrontendName(name: string): void {
  const problem = frontendNameProblem(name);
  if (problem !== undefined) throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", problem);
}

/** Hex SHA-256 of a token's 32 raw bytes: what a credential file stores in place of the token. */
export function tokenDigest(token: Buffer): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Parses the text of `file` (whose base name, without `.toml`, must be the record's `name`). Throws
 * ASTRID_ERR_FRONTEND_INVALID naming the file, the line and the field.
 */
export function parseFrontendFile(text: string, file: string, expectedName: string): FrontendRecord {
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (err) {
    if (err instanceof TomlError) {
      throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `${file}:${err.line}:${err.column}: TOML syntax error: ${err.message.split("\n")[0]}`, { cause: err });
    }
    throw new AstridError("ASTRID_ERR_FRONTEND_INVALID", `${file}: cannot parse: ${(err as Error).message}`, { cause: err });
  }
  const invalid = (field: PropertyKey[], message: string) => {
    const line = fieldLine(text, field);
    return new AstridError("ASTRID_ERR_FRONTEND_INVALID", `${file}${line ? `:${line}` : ""}: field ${field.map(String).join(".") || "(root)"}: ${message}`);
  };
  const parsed = FrontendRecordSchema.safeParse(raw);
  if (!parsed.success) {
    // An unknown key comes first (it may be a misspelt known one), reported at its own line by name (zod puts it
    // in `keys`, not in the path).
    const issue = parsed.error.issues.find((i) => i.code === "unrecognized_keys") ?? parsed.error.issues[0]!;
    if (issue.code === "unrecognized_keys") throw invalid([...issue.path, issue.keys[0]!], "unknown key (not allowed in a frontend credential)");
    throw invalid(issue.path, issue.code === "invalid_type" && /received undefined/.test(issue.message) ? "missing" : issue.message);
  }
  if (parsed.data.name !== expectedName) {
    throw invalid(["name"], `is ${JSON.stringify(parsed.data.name)} but the file is named for ${JSON.stringify(expectedName)}`);
  }
  const nameProblem = frontendNameProblem(parsed.data.name);
  if (nameProblem !== undefined) throw invalid(["name"], nameProblem);
  return parsed.data;
}

/** The text of a credential file for `record`. */
export function serialiseFrontendFile(record: FrontendRecord): string {
  const header =
    "# An Astrid frontend credential (written by `astrid frontend add`; see docs/frontends.md).\n" +
    "# The token is not stored here, only its SHA-256. `astrid frontend remove` revokes it.\n";
  const ordered: Record<string, unknown> = {
    name: record.name,
    platforms: record.platforms,
    unlinked: record.unlinked,
    created_at: record.created_at,
    token_sha256: record.token_sha256,
  };
  if (record.token_file !== undefined) ordered.token_file = record.token_file;
  return header + stringifyToml(ordered);
}
