/**
 * Principal profiles, `etc/profiles/<principal>.toml` (reference §8.5): the fields and their defaults, the strict
 * schema (every table rejects unknown keys; a newer `profile_version` is an error), and the store. A missing file is
 * the defaults, which hold no capabilities; a malformed one is a hard error naming the file and line, so every
 * request of that principal is denied until it is fixed. Writes validate first and are atomic (0600). Profiles are
 * cached on first use; only the admin API's writes change the cache (a hand edit needs a restart — or, for a file
 * that failed to parse, only the fix: failures are never cached).
 */
import fs from "node:fs/promises";
import path from "node:path";
import { stringify as stringifyToml } from "smol-toml";
import { z } from "zod";
import { QuotasSchema } from "../../protocol/admin-request";
import { capabilityProblem } from "../../protocol/capability";
import { AstridError } from "../../protocol/errors";
import { isPrincipalId, PRINCIPAL_ID_PATTERN } from "../../protocol/identity-names";
import { readFileIfExists, writeFileAtomic } from "./atomic-file";
import { parsePolicyToml } from "./policy-toml";

/** The profile format this daemon reads and writes. */
export const PROFILE_VERSION = 1;

const capability = z.string({ error: "must be a string" }).superRefine((value, ctx) => {
  const problem = capabilityProblem(value);
  if (problem !== null) ctx.addIssue({ code: "custom", message: `capability ${JSON.stringify(value)} rejected: ${problem}` });
});
const nonBlank = z.string({ error: "must be a string" }).refine((s) => s.trim().length > 0, "must not be blank");
const list = <T extends z.ZodType>(item: T) => z.array(item, { error: "must be an array" }).default([]);

/** A profile file's schema, every default filled in. */
export const ProfileSchema = z.strictObject({
  profile_version: z
    .number({ error: "must be a whole number" })
    .int("must be a whole number")
    .min(1, "must be 1")
    .max(PROFILE_VERSION, `is newer than this daemon understands (${PROFILE_VERSION}); upgrade astrid-daemon`)
    .default(PROFILE_VERSION),
  enabled: z.boolean({ error: "must be true or false" }).default(true),
  groups: list(z.string({ error: "must be a string" }).regex(PRINCIPAL_ID_PATTERN, "a group name is 1-64 characters of [A-Za-z0-9_-]")),
  grants: list(capability),
  revokes: list(capability),
  auth: z
    .strictObject({
      methods: list(z.enum(["keypair", "passkey", "system"], { error: "must be keypair, passkey or system" })),
      public_keys: list(z.string({ error: "must be a string" }).min(1, "must not be empty")),
    })
    .prefault({}),
  network: z.strictObject({ egress: list(nonBlank) }).prefault({}),
  process: z.strictObject({ allow: list(nonBlank) }).prefault({}),
  quotas: QuotasSchema.prefault({}),
});

/** A principal's profile. */
export type Profile = z.output<typeof ProfileSchema>;

/** The profile of a principal with no file: enabled, no groups, no grants, so no capabilities. */
export function defaultProfile(): Profile {
  return ProfileSchema.parse({});
}

/** Parses the text of a profile file; throws ASTRID_ERR_PROFILE_INVALID naming the file, line and key. */
export function parseProfile(text: string, file: string): Profile {
  return parsePolicyToml(text, file, ProfileSchema, "ASTRID_ERR_PROFILE_INVALID");
}

/** Checks a profile about to be written; throws ASTRID_ERR_PROFILE_INVALID with `profile rejected: …`. */
export function validateProfile(profile: unknown): Profile {
  const parsed = ProfileSchema.safeParse(profile);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new AstridError("ASTRID_ERR_PROFILE_INVALID", `profile rejected: ${issue.path.map(String).join(".") || "(root)"}: ${issue.message}`);
}

/** The TOML text of a profile, every field written out. */
export function serializeProfile(profile: Profile): string {
  return `# Principal profile (see docs/principals.md). Written by the daemon; edits need a daemon restart.\n\n${stringifyToml(profile)}\n`;
}

/** Most profiles kept in memory; past it the oldest entry is dropped (it is read again on its next use). */
const CACHE_LIMIT = 4096;

/** Reads, caches and writes profiles. Writers serialise among themselves (the admin lock). */
export class ProfileStore {
  private readonly cache = new Map<string, Profile>();
  /** Bumped by every write and invalidation: a read that started before one must not cache what it read. */
  private epoch = 0;

  constructor(private readonly dir: string) {}

  /** `etc/profiles/<principal>.toml`; throws for an invalid principal id (no path is ever built from one). */
  pathOf(principal: string): string {
    if (!isPrincipalId(principal)) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${JSON.stringify(principal)} is not a principal id (1-64 characters of [A-Za-z0-9_-])`);
    return path.join(this.dir, `${principal}.toml`);
  }

  /** The cached profile, if any: lets a check of a known principal run without waiting. */
  cached(principal: string): Profile | undefined {
    return this.cache.get(principal);
  }

  /** The profile in force (cached): the file's, or the defaults when there is none; throws if the file is malformed. */
  async resolve(principal: string): Promise<Profile> {
    const hit = this.cache.get(principal);
    if (hit !== undefined) return hit;
    const epoch = this.epoch;
    const profile = (await this.read(principal)) ?? defaultProfile();
    if (epoch === this.epoch) this.remember(principal, profile);
    return profile;
  }

  /** The file's profile, uncached; null when there is no file; throws ASTRID_ERR_PROFILE_INVALID when malformed. */
  async read(principal: string): Promise<Profile | null> {
    const file = this.pathOf(principal);
    const text = await readFileIfExists(file);
    return text === null ? null : parseProfile(text, file);
  }

  /** True when the principal has a profile file. */
  async exists(principal: string): Promise<boolean> {
    try {
      await fs.access(this.pathOf(principal));
      return true;
    } catch {
      return false;
    }
  }

  /** Validates and writes a profile atomically (0600); the cache then holds what was written. */
  async write(principal: string, profile: Profile): Promise<Profile> {
    const checked = validateProfile(profile);
    this.epoch++;
    await writeFileAtomic(this.pathOf(principal), serializeProfile(checked));
    this.epoch++;
    this.remember(principal, checked);
    return checked;
  }

  /** Deletes a profile file; false when there was none. */
  async remove(principal: string): Promise<boolean> {
    this.invalidate(principal);
    try {
      await fs.unlink(this.pathOf(principal));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    } finally {
      // A read that raced the unlink may have seen the old file: it must not be cached.
      this.invalidate(principal);
    }
  }

  /** Every principal with a profile file, sorted. */
  async principals(): Promise<string[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw err;
    }
    return names
      .filter((n) => n.endsWith(".toml"))
      .map((n) => n.slice(0, -".toml".length))
      .filter(isPrincipalId)
      .sort();
  }

  /** Forgets a cached profile: its next use reads the file again. */
  invalidate(principal: string): void {
    this.epoch++;
    this.cache.delete(principal);
  }

  private remember(principal: string, profile: Profile): void {
    this.cache.delete(principal);
    this.cache.set(principal, profile);
    if (this.cache.size > CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
  }
}
