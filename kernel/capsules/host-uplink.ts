/**
 * The `uplink.*` host calls: a capsule bridging a chat platform registers an uplink, then hands the kernel each
 * platform user's message. The kernel resolves the user through the identity links (`astrid identity link`) and
 * publishes the message as that principal's prompt (`user.v1.prompt`, attributed `claimed`, source the capsule), in
 * a session kept per (uplink, platform user) for the run's life — so the assistant answers on `agent.v1.response`
 * as it answers a socket frontend. Only a capsule whose manifest sets `[capabilities] uplink = true` may; uplinks end
 * with the run. Registrations, sends and refusals are audited.
 */
import { randomUUID } from "node:crypto";
import { AstridError, isAstridError } from "../../protocol/errors";
import { isPlatform, isPlatformUserId } from "../../protocol/identity-names";
import { MAX_CAPSULE_TEXT_CHARS } from "../../protocol/capsule-limits";
import type { CapsuleRun } from "./capsule-run";
import type { HostCall, HostContext, HostService } from "./host-call";

/** Most uplinks one capsule run may register. */
export const MAX_UPLINKS_PER_RUN = 16;
/** Longest uplink name, in characters. */
export const MAX_UPLINK_NAME_CHARS = 64;
/** Longest message an uplink may hand in (what a capsule may put in any text it sends the kernel). */
export const MAX_UPLINK_CONTENT_CHARS = MAX_CAPSULE_TEXT_CHARS;
/** Sessions one uplink remembers (one per platform user); beyond it the longest-unused one is forgotten. */
export const MAX_UPLINK_SESSIONS = 1024;
/** The profiles an uplink may declare; `human` is taken as `chat`, as the reference does. */
const PROFILES = new Set(["chat", "interactive", "notify", "bridge"]);
/** The topic a frontend's prompt goes on, and so an uplink's. */
const PROMPT_TOPIC = "user.v1.prompt";

/** One registered uplink of a run. */
interface Uplink {
  id: string;
  name: string;
  platform: string;
  profile: string;
  /** Platform user id → session id (insertion order is use order: a hit is moved to the end). */
  sessions: Map<string, string>;
}

/** Publishes `payload` on `topic` for `principal`, attributed `claimed`, with the capsule's size and rate limits. */
export type UplinkPublish = (run: CapsuleRun, topic: string, payload: Record<string, unknown>, principal: string) => void;

/** UplinkService: the `uplink` family of capsule calls. */
export class UplinkService implements HostService {
  private readonly uplinks = new WeakMap<CapsuleRun, Map<string, Uplink>>();

  constructor(private readonly host: HostContext, private readonly publish: UplinkPublish) {}

  async handle(call: HostCall, args: unknown[]): Promise<unknown> {
    switch (call.call) {
      case "uplink.register":
        return this.register(call, args);
      case "uplink.send":
        return this.send(call, args);
      default:
        throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `unknown capsule call ${call.call}`);
    }
  }

  endRun(run: CapsuleRun): void {
    this.uplinks.delete(run);
  }

  private register(call: HostCall, args: unknown[]): string {
    const [name, platformArg, profileArg] = args;
    this.requireCapability(call, typeof name === "string" ? name.slice(0, 64) : "");
    if (typeof name !== "string" || name.length < 1 || name.length > MAX_UPLINK_NAME_CHARS) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `uplink.register: name must be 1-${MAX_UPLINK_NAME_CHARS} characters`);
    }
    const platform = typeof platformArg === "string" ? platformArg.trim().toLowerCase() : platformArg;
    if (!isPlatform(platform)) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "uplink.register: platform must be 1-32 characters of [a-z0-9_-], as identity links name it (e.g. discord)");
    }
    const asked = typeof profileArg === "string" ? profileArg.toLowerCase() : "";
    const profile = asked === "human" ? "chat" : asked;
    if (!PROFILES.has(profile)) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `uplink.register: profile must be chat, interactive, notify or bridge (human means chat), not ${JSON.stringify(String(profileArg).slice(0, 32))}`);
    }
    let mine = this.uplinks.get(call.run);
    if (!mine) this.uplinks.set(call.run, (mine = new Map()));
    if (mine.size >= MAX_UPLINKS_PER_RUN) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `uplink.register: ${call.run.record.name} already registered ${MAX_UPLINKS_PER_RUN} uplinks (the most one run may)`);
    }
    const id = randomUUID();
    mine.set(id, { id, name, platform, profile, sessions: new Map() });
    this.host.audit.capsule("uplink_register", call.run.record.name, { call: call.call, principal: call.principal, uplink_id: id, uplink_name: name, platform, profile });
    return id;
  }

  private async send(call: HostCall, args: unknown[]): Promise<boolean> {
    const [idArg, userArg, content] = args;
    this.requireCapability(call, typeof idArg === "string" ? idArg.slice(0, 64) : "");
    const shownId = typeof idArg === "string" ? JSON.stringify(idArg.slice(0, 64)) : `(${typeof idArg})`;
    const uplink = typeof idArg === "string" ? this.uplinks.get(call.run)?.get(idArg) : undefined;
    if (!uplink) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", `uplink.send: uplink ${shownId} was not registered by this run of ${call.run.record.name} (register it with uplink.register first)`);
    }
    if (!isPlatformUserId(userArg)) {
      throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "uplink.send: platform user id must be 1-256 printable characters");
    }
    if (typeof content !== "string") throw new AstridError("ASTRID_ERR_REQUEST_INVALID", "uplink.send: content must be a string");
    if (content.length > MAX_UPLINK_CONTENT_CHARS) {
      throw new AstridError("ASTRID_ERR_MESSAGE_TOO_LARGE", `uplink.send: content of ${content.length} characters exceeds ${MAX_UPLINK_CONTENT_CHARS}`);
    }
    const identity = this.host.identity;
    if (!identity) throw new AstridError("ASTRID_ERR_INTERNAL", "identity links are not kept by this daemon");
    const linked = await identity.links.resolve(uplink.platform, userArg);
    const target = `${uplink.platform}:${userArg}`.slice(0, 256);
    if (!linked) {
      this.host.audit.capsule("denied", call.run.record.name, { call: call.call, principal: call.principal, capability: null, manifest: "uplink", target, detail: "platform user has no identity link" });
      throw new AstridError("ASTRID_ERR_IDENTITY_UNLINKED", `uplink.send: ${uplink.platform} user ${JSON.stringify(userArg)} is not linked to a principal; the operator links them with \`astrid identity link ${uplink.platform} <user-id> <principal>\``);
    }
    // The run may have ended while the link was looked up: its uplinks are gone, so the message is not taken.
    if (call.run.ended) return false;
    const sessionId = this.sessionOf(uplink, userArg);
    const payload = {
      type: "user_input",
      text: content,
      session_id: sessionId,
      context: { turn_id: randomUUID(), uplink_id: uplink.id, platform: uplink.platform, platform_user_id: userArg },
    };
    try {
      this.publish(call.run, PROMPT_TOPIC, payload, linked.principal);
    } catch (err) {
      // A full publish window is the reference's full channel: the message is not taken, and the capsule is told so.
      if (isAstridError(err) && err.code === "ASTRID_ERR_RATE_LIMITED") return false;
      throw err;
    }
    this.host.audit.capsule("uplink_send", call.run.record.name, {
      call: call.call, principal: call.principal, claimed: linked.principal, uplink_id: uplink.id, platform: uplink.platform, platform_user_id: userArg, session_id: sessionId,
    });
    return true;
  }

  /** Refuses (audited) a capsule whose manifest does not set `[capabilities] uplink = true`. */
  private requireCapability(call: HostCall, target: string): void {
    if (call.run.record.manifest.capabilities.uplink) return;
    const name = call.run.record.name;
    this.host.audit.capsule("denied", name, { call: call.call, principal: call.principal, capability: null, manifest: "uplink", target, detail: "not an uplink capsule" });
    throw new AstridError("ASTRID_ERR_CAPABILITY_DENIED", `${name}: ${call.call} is only for uplink capsules (set [capabilities] uplink = true in its Capsule.toml)`);
  }

  /** The session of a platform user on an uplink: the same one for the run's life (while remembered). */
  private sessionOf(uplink: Uplink, user: string): string {
    const known = uplink.sessions.get(user);
    if (known) {
      uplink.sessions.delete(user);
      uplink.sessions.set(user, known);
      return known;
    }
    const session = randomUUID();
    uplink.sessions.set(user, session);
    if (uplink.sessions.size > MAX_UPLINK_SESSIONS) uplink.sessions.delete(uplink.sessions.keys().next().value!);
    return session;
  }
}
