/**
 * The identity behind an agent (reference §5.4 AgentCreate/AgentDelete): AgentCreate links (`cli`, <name>) to the new
 * principal with method `system`; AgentDelete removes every link to it, so a later principal of the same name never
 * inherits someone's platform accounts. The links live in the identity store (kernel/identity); this module only
 * needs its shape. An identity here is the link itself, so the `astrid_user_id` AgentCreate reports is a name-based
 * UUID (v5) of the agent's name: stable, and the same however often the agent is re-created.
 */
import { createHash } from "node:crypto";

/** The platform an agent's own link names. */
export const AGENT_PLATFORM = "cli";

/** The identity-store calls this module makes (kernel/identity/identity-links.ts has them). */
export interface LinkStore {
  link(platform: string, platformUserId: string, principal: string, method: "system", displayName?: string): Promise<unknown>;
  unlink(platform: string, platformUserId: string): Promise<unknown>;
  linksOf(principal: string): Promise<Array<{ platform: string; platform_user_id: string }>>;
}

/** Users and links of agents, as the admin router uses them. */
export interface AgentIdentities {
  /** Links (`cli`, name) to principal `name`; returns the agent's user id. */
  create(name: string): Promise<string>;
  /** Undoes `create` (AgentCreate's rollback). */
  undo(name: string): Promise<void>;
  /** Removes every link to principal `name`; returns how many there were. */
  remove(name: string): Promise<number>;
}

/** Agent identities kept as identity links. */
export class LinkedAgentIdentities implements AgentIdentities {
  constructor(private readonly links: LinkStore) {}

  async create(name: string): Promise<string> {
    await this.links.link(AGENT_PLATFORM, name, name, "system", name);
    return agentUserId(name);
  }

  async undo(name: string): Promise<void> {
    await this.links.unlink(AGENT_PLATFORM, name);
  }

  async remove(name: string): Promise<number> {
    const links = await this.links.linksOf(name);
    for (const l of links) await this.links.unlink(l.platform, l.platform_user_id);
    return links.length;
  }
}

/** Fixed namespace of agents' user ids. */
const AGENT_NAMESPACE = Buffer.from("6f1c2a4e9b3d4f7a8c5e0d1b2a394857", "hex");

/** The UUID v5 of an agent's name in AGENT_NAMESPACE (RFC 9562 §5.5). */
export function agentUserId(name: string): string {
  const hash = createHash("sha1").update(AGENT_NAMESPACE).update(name, "utf8").digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
