/**
 * `astrid:identity/host@1.0.0`: the links of platform users to principals, through the kernel's `identity.*` calls
 * (the manifest's `identity` level and the principal's `identity:*` capability). `identity-create-user` creates a
 * principal as `astrid agent create` does (manifest level `admin` and the principal's `agent:create`); its user id
 * is the principal's name, the display name when one is given (else a fresh UUID).
 */
import { check, DENIED } from "./guest-failure";
import type { GuestHost } from "./guest-host";

const IDENTITY_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-input",
  ASTRID_ERR_NOT_FOUND: "link-not-found",
  ASTRID_ERR_PRINCIPAL_NOT_FOUND: "user-not-found",
  ASTRID_ERR_IDENTITY_ALREADY_LINKED: "already-linked",
  ASTRID_ERR_STORAGE_UNAVAILABLE: "store-unavailable",
};

/** The package's functions, over `host`'s blocking calls. */
export function identityImports(host: GuestHost): Record<string, unknown> {
  return {
    identityResolve(request: { platform: string; platformUserId: string }) {
      const found = check(host.call("identity.resolve", request.platform, request.platformUserId), IDENTITY_ERRORS) as { principal: string };
      return { userId: found.principal, displayName: undefined };
    },
    identityLink(request: { platform: string; platformUserId: string; astridUserId: string }) {
      check(host.call("identity.link", request.platform, request.platformUserId, request.astridUserId), IDENTITY_ERRORS);
    },
    identityUnlink(request: { platform: string; platformUserId: string }) {
      check(host.call("identity.unlink", request.platform, request.platformUserId), IDENTITY_ERRORS);
    },
    identityCreateUser(request: { displayName?: string }) {
      const args = request.displayName === undefined ? [] : [request.displayName];
      const created = check(host.call("identity.create_user", ...args), IDENTITY_ERRORS) as { user_id: string };
      return { userId: created.user_id };
    },
    identityListLinks(principal: string) {
      const links = check(host.call("identity.list_links", principal), IDENTITY_ERRORS) as Array<{ platform: string; platform_user_id: string; linked_at: string; method: string }>;
      return links.map((l) => ({ platform: l.platform, platformUserId: l.platform_user_id, linkedAt: l.linked_at, method: l.method }));
    },
  };
}
