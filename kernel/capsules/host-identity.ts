/**
 * The `identity.*` host calls: a capsule (an uplink bridging a platform, say) resolves and manages the links of
 * platform users to principals — the links `astrid identity link` and frontends make. Gated twice, as every host
 * call: the manifest's `[capabilities] identity` names a level (`resolve` < `link` < `admin`), and the acting
 * principal must hold the admin API's capability for the same act (`identity:list` to resolve or list,
 * `identity:link`, `identity:unlink`). A capsule never replaces another principal's link (`already linked`), links
 * only to a principal that exists, and each change is audited. Creating a principal (`identity.create_user`) takes
 * the strongest gate — the manifest level `admin` and the principal's `agent:create`, what `astrid agent create`
 * needs — and goes the same way as that command (kernel/principals/agent-create.ts).
 */
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { AstridError } from "../../protocol/errors";
import { PlatformSchema, PlatformUserIdSchema, PrincipalIdSchema } from "../../protocol/identity-names";
import { ADMIN_CAPABILITIES } from "../../protocol/required-capabilities";
import type { HostCall, HostContext, HostService } from "./host-call";

/** The manifest levels, each allowing what the ones before it allow. */
const LEVELS = ["resolve", "link", "admin"] as const;

/** Per call: the manifest level it needs and the principal capability (the admin API's for the same act). */
const GATES = {
  "identity.resolve": { level: "resolve", capability: "identity:list" },
  "identity.list_links": { level: "link", capability: "identity:list" },
  "identity.link": { level: "link", capability: "identity:link" },
  "identity.unlink": { level: "link", capability: "identity:unlink" },
  "identity.create_user": { level: "admin", capability: ADMIN_CAPABILITIES.agentCreate },
} as const;
type IdentityCall = keyof typeof GATES;

const UserArgs = z.tuple([PlatformSchema, PlatformUserIdSchema]);
const LinkArgs = z.tuple([PlatformSchema, PlatformUserIdSchema, PrincipalIdSchema]);
const PrincipalArgs = z.tuple([PrincipalIdSchema]);
/** The new principal's name (the reference's display name); none: a fresh UUID, as the reference's user ids are. */
const CreateArgs = z.union([z.tuple([]), z.tuple([z.undefined()]), z.tuple([z.null()]), z.tuple([PrincipalIdSchema])]);

function parse<T>(schema: z.ZodType<T>, args: unknown[], call: string): T {
  const parsed = schema.safeParse(args);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `${call}: argument ${issue.path.map(String).join(".")} ${issue.message}`);
}

/** The highest level a manifest's `identity` list names (-1: none). */
function declaredLevel(entries: readonly string[]): number {
  return Math.max(-1, ...entries.map((e) => LEVELS.indexOf(e as (typeof LEVELS)[number])));
}

/** IdentityService: the `identity` family of capsule calls. */
export class IdentityService implements HostService {
  constructor(private readonly host: HostContext) {}

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    const name = call.call as IdentityCall;
    const gate = GATES[name];
    if (!gate) throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${call.call}`);
    const identity = this.host.identity;
    if (!identity) throw new AstridError("ASTRID_ERR_INTERNAL", "identity links are not kept by this daemon");
    const target = args.filter((a) => typeof a === "string").join(":").slice(0, 256);
    await call.permit({
      kind: "identity",
      target: `${gate.level} ${target}`,
      allowedByManifest: declaredLevel(call.run.record.manifest.capabilities.identity) >= LEVELS.indexOf(gate.level),
      capability: gate.capability,
    });
    switch (name) {
      case "identity.resolve": {
        const [platform, user] = parse(UserArgs, args, name);
        const found = await identity.links.resolve(platform, user);
        if (!found) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${platform} user ${JSON.stringify(user)} has no identity link`);
        return { principal: found.principal };
      }
      case "identity.list_links": {
        const [principal] = parse(PrincipalArgs, args, name);
        return (await identity.links.linksOf(principal)).map((l) => ({ platform: l.platform, platform_user_id: l.platform_user_id, linked_at: l.linked_at, method: l.method }));
      }
      case "identity.link": {
        const [platform, user, principal] = parse(LinkArgs, args, name);
        if (!(await identity.principalExists(principal))) {
          throw new AstridError("ASTRID_ERR_PRINCIPAL_NOT_FOUND", `principal ${principal} does not exist (no profile); the operator creates it with \`astrid agent create\``);
        }
        const existing = await identity.links.resolve(platform, user);
        if (existing && existing.principal !== principal) {
          throw new AstridError("ASTRID_ERR_IDENTITY_ALREADY_LINKED", `${platform} user ${JSON.stringify(user)} is linked to another principal; only the operator relinks it (\`astrid identity link\`)`);
        }
        await identity.links.link(platform, user, principal, "claimed");
        this.audit(call, "identity_link", { platform, platform_user_id: user, linked_principal: principal });
        return null;
      }
      case "identity.unlink": {
        const [platform, user] = parse(UserArgs, args, name);
        const removed = await identity.links.unlink(platform, user);
        if (!removed) throw new AstridError("ASTRID_ERR_NOT_FOUND", `${platform} user ${JSON.stringify(user)} has no identity link`);
        this.audit(call, "identity_unlink", { platform, platform_user_id: user, linked_principal: removed.principal });
        return null;
      }
      case "identity.create_user": {
        const [asked] = parse(CreateArgs, args, name);
        if (!identity.createPrincipal) throw new AstridError("ASTRID_ERR_INTERNAL", "this daemon does not create principals for capsules");
        const principal = asked ?? randomUUID();
        try {
          const created = await identity.createPrincipal(principal);
          this.audit(call, "identity_create_user", { created_principal: created.principal });
          return { user_id: created.principal };
        } catch (err) {
          this.audit(call, "identity_create_user", { created_principal: principal, error: (err as Error).message });
          throw err;
        }
      }
    }
  }

  private audit(call: HostCall, change: "identity_link" | "identity_unlink" | "identity_create_user", detail: Record<string, unknown>): void {
    this.host.audit.capsule(change, call.run.record.name, { call: call.call, principal: call.principal, ...detail });
  }
}
