/**
 * `astrid:uplink/host@1.0.0` (wit/uplink.wit): an uplink capsule registers uplinks and hands in its platform users'
 * messages, through the kernel's `uplink.*` calls (kernel/capsules/host-uplink.ts).
 */
import { check, DENIED } from "./guest-failure";
import type { GuestHost } from "./guest-host";

const UPLINK_ERRORS = {
  ...DENIED,
  ASTRID_ERR_REQUEST_INVALID: "invalid-input",
  ASTRID_ERR_MESSAGE_TOO_LARGE: "invalid-input",
  ASTRID_ERR_IDENTITY_UNLINKED: "unlinked",
};

/** The package's functions, over `host`'s blocking calls. */
export function uplinkImports(host: GuestHost): Record<string, unknown> {
  return {
    uplinkRegister: (name: string, platform: string, profile: string) => check(host.call("uplink.register", name, platform, profile), UPLINK_ERRORS) as string,
    uplinkSend: (uplinkId: string, platformUserId: string, content: string) => check(host.call("uplink.send", uplinkId, platformUserId, content), UPLINK_ERRORS) as boolean,
  };
}
