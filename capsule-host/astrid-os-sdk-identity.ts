/**
 * The `identity`, `uplink` and `capabilities` namespaces of the `@astrid-os/sdk` surface: platform identity links,
 * uplinks and capability introspection, over the kernel's `identity.*`, `uplink.*` and `sys.*` calls.
 */
import { hostCall, SysError } from "./astrid-os-sdk-errors";
import type { SdkContext } from "./astrid-os-sdk-ipc";

/** `capabilities`: this capsule's declared `[capabilities]`, and another capsule's `allow_prompt_injection`. */
export function capabilitiesModule(ctx: SdkContext) {
  return {
    /** Whether the capsule that published as `sourceUuid` (a message's source id) declared `capability`; only `allow_prompt_injection` can be true. */
    check: (sourceUuid: string, capability: string): Promise<boolean> =>
      hostCall(`capabilities.check("${capability}")`, () => ctx.syscall("sys.check_capability", String(sourceUuid), String(capability))) as Promise<boolean>,
    /** The `[capabilities]` names this capsule's manifest declares. */
    enumerate: (): Promise<string[]> => hostCall("capabilities.enumerate", () => ctx.syscall("sys.capabilities")) as Promise<string[]>,
  };
}

/**
 * `identity`: the links of platform users to principals (the manifest's `identity` level and the principal's
 * `identity:*` capability); `createUser` creates a principal as `astrid agent create` does (level `admin` and the
 * principal's `agent:create`).
 */
export function identityModule(ctx: SdkContext) {
  const call = async <T>(label: string, name: Parameters<SdkContext["syscall"]>[0], ...args: string[]): Promise<T> => {
    try {
      return (await hostCall(label, () => ctx.syscall(name, ...args))) as T;
    } catch (err) {
      // The reference's identity tags for the refusals the daemon codes more generally.
      const astridCode = (err as SysError).astridCode;
      const code = astridCode === "ASTRID_ERR_NOT_FOUND" ? "link-not-found" : astridCode === "ASTRID_ERR_PRINCIPAL_NOT_FOUND" ? "user-not-found" : undefined;
      if (code === undefined) throw err;
      throw new SysError("HostError", (err as Error).message.replace(/^\[[^\]]*\] /, ""), { code, astridCode, cause: err });
    }
  };
  return {
    /** The principal a platform user acts as (`link-not-found` when none). */
    async resolve(platform: string, platformUserId: string): Promise<{ userId: string; displayName: string | undefined }> {
      const found = await call<{ principal: string }>(`identity.resolve("${platform}")`, "identity.resolve", String(platform), String(platformUserId));
      return { userId: found.principal, displayName: undefined };
    },
    /** Links a platform user to an existing principal (`already-linked` when linked to another). */
    async link(platform: string, platformUserId: string, astridUserId: string): Promise<void> {
      await call(`identity.link("${platform}")`, "identity.link", String(platform), String(platformUserId), String(astridUserId));
    },
    async unlink(platform: string, platformUserId: string): Promise<void> {
      await call(`identity.unlink("${platform}")`, "identity.unlink", String(platform), String(platformUserId));
    },
    async listLinks(astridUserId: string): Promise<Array<{ platform: string; platformUserId: string; linkedAt: string; method: string }>> {
      const links = await call<Array<{ platform: string; platform_user_id: string; linked_at: string; method: string }>>("identity.listLinks", "identity.list_links", String(astridUserId));
      return links.map((l) => ({ platform: l.platform, platformUserId: l.platform_user_id, linkedAt: l.linked_at, method: l.method }));
    },
    /** Creates principal `displayName` (or one named by a fresh UUID); answers its user id, the principal's name. */
    async createUser(displayName?: string): Promise<string> {
      const args = displayName === undefined || displayName === null ? [] : [String(displayName)];
      const created = await call<{ user_id: string }>("identity.createUser", "identity.create_user", ...args);
      return created.user_id;
    },
  };
}

/**
 * `uplink`: an uplink capsule's (`[capabilities] uplink = true`) platform users speak through it. `register` answers
 * the uplink's id; `send` hands in a linked platform user's message as their principal's prompt, and answers false
 * when the capsule's publish limit refused it this second.
 */
export function uplinkModule(ctx: SdkContext) {
  return {
    register: (name: string, platform: string, profile: string): Promise<string> =>
      hostCall(`uplink.register("${name}")`, () => ctx.syscall("uplink.register", String(name), String(platform), String(profile))) as Promise<string>,
    send: (uplinkId: string, platformUserId: string, content: string): Promise<boolean> =>
      hostCall("uplink.send", () => ctx.syscall("uplink.send", String(uplinkId), String(platformUserId), String(content))) as Promise<boolean>,
  };
}
