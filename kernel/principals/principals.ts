/**
 * The principals of a home: groups, profiles and the authorizer behind one small interface (`Principals`) that the
 * routers, the socket server and the frontends use. Opened at boot (reference §2.2 steps 8–9): a malformed
 * `etc/groups.toml` aborts boot; `default` is seeded with group `admin` when its profile has no groups, grants or
 * revokes (a missing file counts as empty; a problem there only warns).
 */
import { QuotasSchema, type Quotas } from "../../protocol/admin-request";
import { AstridError } from "../../protocol/errors";
import { DEFAULT_PRINCIPAL, isPrincipalId } from "../../protocol/identity-names";
import { sweepTempFiles } from "./atomic-file";
import type { AstridHome } from "../home";
import { AdminLock } from "./admin-lock";
import { Authorizer, type CapabilityChecker, type Decision } from "./authorizer";
import { GroupStore } from "./groups";
import { defaultProfile, ProfileStore, type Profile } from "./profiles";

/** The result of `Principals.authorize`. */
export type AuthorizeResult = Decision;

/** The principal a bus message acts for: its stamped principal when valid, else `default` (reference §5.1). */
export function callerPrincipal(stamped: unknown): string {
  return isPrincipalId(stamped) ? stamped : DEFAULT_PRINCIPAL;
}

/** What the rest of the kernel asks about principals. */
export interface Principals {
  /** Whether `principal` holds `capability` (reference §8.6); a denial's `reason` is the text to show. */
  authorize(principal: string, capability: string): Promise<AuthorizeResult>;
  /** True when the principal has a profile file. */
  exists(principal: string): Promise<boolean>;
  /**
   * Creates the principal's profile with these groups (and grants) unless it already has one (which is left as it
   * is); for provisioning frontends and platform users. Runs under the admin write lock.
   */
  ensure(principal: string, options: { groups: readonly string[]; grants?: readonly string[] }): Promise<{ created: boolean }>;
  /** The principal's quotas (the defaults without a profile); throws ASTRID_ERR_PROFILE_INVALID for a broken file. */
  quotas(principal: string): Promise<Quotas>;
  /** False when the principal's profile says `enabled = false`, or cannot be read (fails closed). */
  enabled(principal: string): Promise<boolean>;
}

/** Where the principals module reports what it cannot act on. */
export interface PrincipalsLogger {
  warn(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
}

/** The kernel's principals: stores, authorizer and the admin write lock. */
export class PrincipalRegistry implements Principals, CapabilityChecker {
  /** Serialises every change to profiles and groups. */
  readonly lock = new AdminLock();
  readonly authorizer: Authorizer;

  private constructor(
    readonly profiles: ProfileStore,
    readonly groups: GroupStore,
    private readonly logger: PrincipalsLogger,
  ) {
    this.authorizer = new Authorizer(profiles, groups, (principal, group) =>
      logger.warn("profile names an unknown group; it is skipped (fails closed)", { principal, group }));
  }

  /** Loads the groups (a malformed file throws ASTRID_ERR_GROUPS_INVALID) and seeds `default`. */
  static async open(home: AstridHome, logger: PrincipalsLogger): Promise<PrincipalRegistry> {
    // A daemon killed mid-write leaves its temp files behind; none is in progress now.
    const swept = (await sweepTempFiles(home.profilesDir)) + (await sweepTempFiles(home.etcDir));
    if (swept > 0) logger.warn("removed temp files an interrupted policy write left behind", { files: swept });
    const groups = await GroupStore.load(home.groupsPath);
    const registry = new PrincipalRegistry(new ProfileStore(home.profilesDir), groups, logger);
    await registry.seedDefault();
    return registry;
  }

  /** For tests and tools: a registry over existing stores, without seeding. */
  static over(profiles: ProfileStore, groups: GroupStore, logger: PrincipalsLogger): PrincipalRegistry {
    return new PrincipalRegistry(profiles, groups, logger);
  }

  /** The decision, synchronous when the profile is cached: what the routers call on every request. */
  check(principal: string, capability: string): Decision | Promise<Decision> {
    return this.authorizer.check(principal, capability);
  }

  async authorize(principal: string, capability: string): Promise<AuthorizeResult> {
    return this.authorizer.check(principal, capability);
  }

  exists(principal: string): Promise<boolean> {
    return isPrincipalId(principal) ? this.profiles.exists(principal) : Promise.resolve(false);
  }

  ensure(principal: string, options: { groups: readonly string[]; grants?: readonly string[] }): Promise<{ created: boolean }> {
    if (!isPrincipalId(principal)) {
      return Promise.reject(new AstridError("ASTRID_ERR_REQUEST_INVALID", `${JSON.stringify(principal)} is not a principal id (1-64 characters of [A-Za-z0-9_-])`));
    }
    return this.lock.run(async () => {
      if (await this.profiles.exists(principal)) return { created: false };
      await this.profiles.write(principal, { ...defaultProfile(), groups: [...options.groups], grants: [...(options.grants ?? [])] });
      return { created: true };
    });
  }

  async quotas(principal: string): Promise<Quotas> {
    if (!isPrincipalId(principal)) return QuotasSchema.parse({});
    return { ...(await this.profiles.resolve(principal)).quotas };
  }

  async enabled(principal: string): Promise<boolean> {
    if (!isPrincipalId(principal)) return false;
    try {
      return (await this.profiles.resolve(principal)).enabled;
    } catch {
      return false;
    }
  }

  /** Reference §2.2 step 9: `default` gets group admin when its profile grants nothing and revokes nothing. */
  private async seedDefault(): Promise<void> {
    let current: Profile | null;
    try {
      current = await this.profiles.read(DEFAULT_PRINCIPAL);
    } catch (err) {
      this.logger.warn("the default principal's profile is invalid; it is not seeded, and its requests are denied until it is fixed", {
        file: this.profiles.pathOf(DEFAULT_PRINCIPAL), error: (err as Error).message,
      });
      return;
    }
    const profile = current ?? defaultProfile();
    if (profile.groups.length > 0 || profile.grants.length > 0 || profile.revokes.length > 0) return;
    try {
      await this.profiles.write(DEFAULT_PRINCIPAL, { ...profile, groups: ["admin"] });
      this.logger.info("seeded the default principal with group admin", { file: this.profiles.pathOf(DEFAULT_PRINCIPAL) });
    } catch (err) {
      this.logger.warn("could not seed the default principal's profile", { error: (err as Error).message });
    }
  }
}
