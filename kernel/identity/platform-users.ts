/**
 * Who a frontend's message speaks for. A platform user (a Discord user, a web visitor) resolves through the
 * identity links to a principal; an unlinked one gets what the frontend's credential says: refused, or a principal
 * of its own (provisioned once, linked with method `claimed`) in the `restricted` or `agent` group.
 */
import { AstridError } from "../../protocol/errors";
import type { AuditLog } from "../audit-log";
import type { FrontendCredentials } from "../frontends/frontend-credentials";
import type { Logger } from "../logger";
import type { Principals } from "../principals/principals";
import type { PlatformUser, PlatformUserResolver } from "../socket-server";
import { provisionedPrincipalFor, type IdentityLinks } from "./identity-links";

/** How long a resolution is reused (an unlink takes effect for new messages within this). */
const CACHE_TTL_MS = 2000;
/** Resolutions kept at most (the oldest go first). */
const CACHE_LIMIT = 10_000;
/** New principals one frontend may provision per minute (each costs a profile file, a link and an audit entry). */
export const MAX_PROVISIONED_PER_MINUTE = 120;

/** Resolves frontends' platform users to principals. */
export class PlatformUsers implements PlatformUserResolver {
  private readonly cache = new Map<string, { principal: string; at: number }>();
  /** Per frontend: provisioning times within the last minute. */
  private readonly provisioned = new Map<string, number[]>();

  constructor(
    private readonly links: IdentityLinks,
    private readonly principals: Principals,
    private readonly credentials: FrontendCredentials,
    private readonly audit: AuditLog,
    private readonly logger: Logger,
  ) {}

  async resolve(frontend: string, user: PlatformUser): Promise<string> {
    const key = `${frontend}\u0000${user.platform}\u0000${user.platform_user_id}`;
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < CACHE_TTL_MS) return hit.principal;
    const principal = await this.lookup(frontend, user);
    this.cache.delete(key);
    this.cache.set(key, { principal, at: Date.now() });
    if (this.cache.size > CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    return principal;
  }

  private async lookup(frontend: string, user: PlatformUser): Promise<string> {
    const linked = await this.links.resolve(user.platform, user.platform_user_id);
    if (linked) return linked.principal;
    const policy = this.credentials.list().find((g) => g.name === frontend)?.unlinked ?? "refuse";
    if (policy === "refuse") {
      throw new AstridError("ASTRID_ERR_IDENTITY_UNLINKED",
        `${user.platform} user ${JSON.stringify(user.platform_user_id.slice(0, 64))} is not linked to a principal ` +
          `(link it with \`astrid identity link\`, or let frontend ${frontend} provision users: \`astrid frontend add ${frontend} --unlinked restricted\`)`);
    }
    const principal = provisionedPrincipalFor(user.platform, user.platform_user_id);
    if (!(await this.principals.exists(principal))) this.admitProvisioning(frontend);
    const { created } = await this.principals.ensure(principal, { groups: [policy] });
    await this.links.link(user.platform, user.platform_user_id, principal, "claimed", user.display_name);
    if (created) {
      this.logger.info("provisioned a principal for a platform user", { frontend, platform: user.platform, principal, group: policy });
      this.audit.identity("provisioned", { frontend, platform: user.platform, platform_user_id: user.platform_user_id.slice(0, 256), principal, group: policy });
    }
    return principal;
  }

  /** Throws ASTRID_ERR_RATE_LIMITED when `frontend` provisioned MAX_PROVISIONED_PER_MINUTE principals in the last minute. */
  private admitProvisioning(frontend: string): void {
    const now = Date.now();
    const recent = (this.provisioned.get(frontend) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= MAX_PROVISIONED_PER_MINUTE) {
      this.provisioned.set(frontend, recent);
      throw new AstridError("ASTRID_ERR_RATE_LIMITED", `frontend ${frontend} may provision at most ${MAX_PROVISIONED_PER_MINUTE} new users a minute; link them with \`astrid identity link\` instead`);
    }
    recent.push(now);
    this.provisioned.set(frontend, recent);
  }
}
