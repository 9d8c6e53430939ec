/**
 * Creating a principal (reference §5.4 AgentCreate): its profile and its identity link, made together or not at
 * all. The admin API's `AgentCreate` (`astrid agent create`) and a capsule's `identity-create-user` both come here,
 * so a principal is made one way whoever asks; each caller checks its own permission first.
 */
import { assertCapability } from "../../protocol/capability";
import { AstridError } from "../../protocol/errors";
import { DEFAULT_PRINCIPAL, isPrincipalId } from "../../protocol/identity-names";
import type { Logger } from "../logger";
import type { AgentIdentities } from "./agent-identity";
import { DEFAULT_AGENT_GROUP } from "./groups";
import type { PrincipalRegistry } from "./principals";
import { defaultProfile, type Profile } from "./profiles";

/** What creating a principal needs. */
export interface AgentCreateDeps {
  principals: PrincipalRegistry;
  identities: AgentIdentities;
  logger: Logger;
}

/** What was created: the principal and the user id of its identity. */
export interface CreatedAgent {
  principal: string;
  astrid_user_id: string;
}

/**
 * Creates principal `name` with `groups` (none: the `agent` group) and `grants`. Refuses (coded) an invalid name,
 * `default`, an existing principal and an invalid capability; rolls the identity link back if the profile cannot
 * be written.
 */
export async function createAgent(deps: AgentCreateDeps, params: { name: string; groups: readonly string[]; grants: readonly string[] }): Promise<CreatedAgent> {
  const { name } = params;
  if (!isPrincipalId(name)) {
    throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `principal name ${JSON.stringify(String(name).slice(0, 80))} must be 1-64 characters of [A-Za-z0-9_-]`);
  }
  if (name === DEFAULT_PRINCIPAL) {
    throw new AstridError("ASTRID_ERR_PRINCIPAL_RESERVED", `principal "${DEFAULT_PRINCIPAL}" is reserved for single-tenant bootstrap`);
  }
  for (const c of params.grants) assertCapability(c);
  const { profiles } = deps.principals;
  return deps.principals.lock.run(async () => {
    if (await profiles.exists(name)) throw new AstridError("ASTRID_ERR_PRINCIPAL_EXISTS", `principal ${name} already exists`);
    const profile: Profile = {
      ...defaultProfile(),
      groups: params.groups.length > 0 ? [...new Set(params.groups)] : [DEFAULT_AGENT_GROUP],
      grants: [...new Set(params.grants)],
    };
    const userId = await deps.identities.create(name);
    try {
      await profiles.write(name, profile);
    } catch (err) {
      // Roll back: no identity link without its profile.
      await deps.identities.undo(name).catch((e: unknown) => deps.logger.error("could not roll back an agent's identity", { principal: name, error: String(e) }));
      throw err;
    }
    deps.logger.info("agent created", { principal: name, groups: profile.groups });
    return { principal: name, astrid_user_id: userId };
  });
}
