/**
 * The authorization algorithm (reference §8.6), in its order: resolve the caller's profile (an unusable profile
 * denies) → `enabled` → revokes (beat everything, `admin` included) → grants → groups (an unknown group is skipped
 * with a warning: it fails closed) → deny. The texts of the denials are the reference's.
 */
import { capabilityMatches } from "../../protocol/capability";
import { isAstridError, type ErrorCode } from "../../protocol/errors";
import type { GroupStore } from "./groups";
import type { Profile, ProfileStore } from "./profiles";

/** A check's outcome: allowed (and through what), or denied with the message the caller sees. */
export type Decision =
  | { allowed: true; reason: string; via: string }
  | { allowed: false; reason: string; code: ErrorCode; why: DenialKind };

/** Why a check denied: the profile is unusable, the principal disabled, the capability revoked, or not held. */
export type DenialKind = "unusable" | "disabled" | "revoked" | "missing";

/** What a router needs: a decision per (principal, capability), synchronous when it can be. */
export interface CapabilityChecker {
  check(principal: string, capability: string): Decision | Promise<Decision>;
}

/** Reports an unknown group named by a profile (once per principal and group). */
export type UnknownGroupWarning = (principal: string, group: string) => void;

/** Decides whether a principal holds a capability. */
export class Authorizer implements CapabilityChecker {
  private readonly warned = new Set<string>();

  constructor(
    private readonly profiles: ProfileStore,
    private readonly groups: GroupStore,
    private readonly warn: UnknownGroupWarning = () => {},
  ) {}

  /** The decision; synchronous when the profile is cached (the common case), so a request is not delayed. */
  check(principal: string, capability: string): Decision | Promise<Decision> {
    const cached = this.profiles.cached(principal);
    if (cached !== undefined) return this.decide(principal, cached, capability);
    return this.profiles.resolve(principal).then(
      (profile) => this.decide(principal, profile, capability),
      (err: unknown) => unusable(principal, capability, err),
    );
  }

  /** The decision for a resolved profile, against the current group snapshot. */
  decide(principal: string, profile: Profile, capability: string): Decision {
    const denied = (why: DenialKind, text: string): Decision =>
      ({ allowed: false, reason: `permission denied for principal ${principal}: ${text}`, code: "ASTRID_ERR_PERMISSION_DENIED", why });
    if (!profile.enabled) return denied("disabled", "agent is disabled");
    const revoke = profile.revokes.find((pattern) => capabilityMatches(pattern, capability));
    if (revoke !== undefined) return denied("revoked", `capability ${capability} is revoked via "${revoke}"`);
    const allowed = (via: string): Decision => ({ allowed: true, reason: `policy allow: ${principal} holds ${capability}`, via });
    const grant = profile.grants.find((pattern) => capabilityMatches(pattern, capability));
    if (grant !== undefined) return allowed(`grant "${grant}"`);
    const config = this.groups.snapshot();
    for (const name of profile.groups) {
      const group = config.get(name);
      if (group === undefined) {
        this.warnOnce(principal, name);
        continue;
      }
      const pattern = group.capabilities.find((p) => capabilityMatches(p, capability));
      if (pattern !== undefined) return allowed(`group ${name} ("${pattern}")`);
    }
    return denied("missing", `missing capability ${capability}`);
  }

  private warnOnce(principal: string, group: string): void {
    const key = `${principal}\u0000${group}`;
    if (this.warned.has(key)) return;
    if (this.warned.size >= 4096) this.warned.clear();
    this.warned.add(key);
    this.warn(principal, group);
  }
}

/** The denial for a profile that cannot be read: the reference's MissingCapability text, and why (file and line). */
function unusable(principal: string, capability: string, err: unknown): Decision {
  const why = err instanceof Error ? err.message : String(err);
  return {
    allowed: false,
    reason: `permission denied for principal ${principal}: missing capability ${capability} (its profile cannot be used: ${why})`,
    code: isAstridError(err) && err.code === "ASTRID_ERR_PROFILE_INVALID" ? "ASTRID_ERR_PROFILE_INVALID" : "ASTRID_ERR_PERMISSION_DENIED",
    why: "unusable",
  };
}
