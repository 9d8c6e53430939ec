/**
 * What a frontend process (`astrid web`, `astrid discord`) does before it connects with its own credential: create
 * its default credential on first use, and give the credential's principal the capabilities it needs, as the
 * operator (whose session token a process of the same user can read).
 */
import fs from "node:fs";
import type { AstridHome } from "../../kernel/home";
import { addFrontend } from "../../kernel/frontends/frontend-store";
import { DaemonClient } from "../../protocol/client";
import { adminRequest } from "../../protocol/admin-request";
import { AstridError } from "../../protocol/errors";

/**
 * Creates the credential `name` for `platform` (unlinked users: restricted) when it is the frontend's default
 * name and does not exist yet; true when it was created. Another name must exist already.
 */
export async function ensureFrontendCredential(home: AstridHome, name: string, platform: string): Promise<boolean> {
  if (fs.existsSync(`${home.frontendsDir}/${name}.toml`)) return false;
  if (name !== platform) {
    throw new AstridError("ASTRID_ERR_AUTH_FAILED", `no frontend credential ${name}; create it with: astrid frontend add ${name} --platform ${platform} --unlinked restricted`);
  }
  await addFrontend({ dir: home.frontendsDir, name, platforms: [platform], unlinked: "restricted" });
  return true;
}

/** Creates the principal `name` in group `restricted` with `capabilities`, or grants them; why not, if it failed. */
export async function grantFrontend(home: AstridHome, name: string, capabilities: readonly string[], clientName: string): Promise<string | undefined> {
  let op: DaemonClient | undefined;
  try {
    op = await DaemonClient.connect({ socketPath: home.socketPath, token: fs.readFileSync(home.tokenPath, "utf8").trim(), clientName });
    const created = await adminRequest(op, "AgentCreate", { name, groups: ["restricted"], grants: [...capabilities] });
    if (created.status === "Error") {
      const granted = await adminRequest(op, "CapsGrant", { principal: name, capabilities: [...capabilities] });
      if (granted.status === "Error") return String(granted.data);
    }
    return undefined;
  } catch (err) {
    return (err as Error).message;
  } finally {
    await op?.close();
  }
}
