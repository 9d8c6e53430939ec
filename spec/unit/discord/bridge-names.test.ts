/**
 * Issue #11: a Discord user's name becomes a display name the daemon accepts, whatever Discord allowed in it.
 */
import fc from "fast-check";
import { platformUserOf, sessionOfChannel } from "../../../discord/bridge";
import { isDisplayName, isPlatformUserId } from "../../../protocol/identity-names";

describe("issue #11: Discord users and channels as the daemon sees them", () => {
  it("any display name maps to a valid display_name or none; the user id is kept as it is", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 200 }), (name) => {
      const user = platformUserOf({ id: "80351110224678912", displayName: name, bot: false });
      expect(user.platform).toBe("discord");
      expect(user.platform_user_id).toBe("80351110224678912");
      expect(isPlatformUserId(user.platform_user_id)).toBe(true);
      if (user.display_name !== undefined) expect(isDisplayName(user.display_name)).toBe(true);
    }));
    expect(platformUserOf({ id: "1", displayName: "a\u00a0b\u200dc\u2028d", bot: false }).display_name).toBe("a bc d");
    expect(platformUserOf({ id: "1", displayName: "\u200b", bot: false }).display_name).toBeUndefined();
    expect(platformUserOf({ id: "1", displayName: "😀".repeat(100), bot: false }).display_name).toBe("😀".repeat(64));
  });

  it("a channel's session id names the channel", () => {
    expect(sessionOfChannel("300000000000000001")).toBe("discord-300000000000000001");
  });
});
