/**
 * The static capability grammar and matcher of the management policy (reference §8.3):
 * `capability := segment (':' segment)*`, a segment being `*` or `[A-Za-z0-9_-]+`, at most 256 bytes.
 * Matching walks segments: a `*` in the pattern's last position absorbs one or more remaining segments
 * (`self:*` matches `self:capsule:install`, never `self`), a `*` elsewhere matches exactly one, and the pattern
 * `*` alone matches everything.
 */
import { AstridError } from "./errors";

/** Longest capability string, in UTF-8 bytes. */
export const MAX_CAPABILITY_BYTES = 256;

/** The pattern that matches every capability (group `admin`). */
export const ALL_CAPABILITIES = "*";

const SEGMENT = /^[A-Za-z0-9_-]+$/;

/** Why `capability` is not valid under §8.3, or null when it is. */
export function capabilityProblem(capability: unknown): string | null {
  if (typeof capability !== "string") return "a capability must be a string";
  if (capability.length === 0) return "it is empty";
  if (Buffer.byteLength(capability, "utf8") > MAX_CAPABILITY_BYTES) return `it is longer than ${MAX_CAPABILITY_BYTES} bytes`;
  for (const segment of capability.split(":")) {
    if (segment === "") return "it has an empty segment (segments are separated by a single ':')";
    if (segment === "*") continue;
    if (segment.includes("*")) {
      return segment === "**" ? "`**` is not allowed (a trailing `*` already matches any depth)" : `segment "${segment}" mixes \`*\` with other characters`;
    }
    if (!SEGMENT.test(segment)) return `segment "${segment}" may only hold A–Z, a–z, 0–9, _ and - (or be \`*\`)`;
  }
  return null;
}

/** True when `capability` is valid under §8.3. */
export function isCapability(capability: unknown): capability is string {
  return capabilityProblem(capability) === null;
}

/** Throws ASTRID_ERR_CAPABILITY_INVALID with the reference's text, `capability "x y" rejected: …`, unless valid. */
export function assertCapability(capability: unknown): asserts capability is string {
  const problem = capabilityProblem(capability);
  if (problem !== null) {
    // Not String(x) for an object: one without a prototype, or with a non-callable `toString`, makes it throw.
    const shown = typeof capability === "string" ? JSON.stringify(capability)
      : typeof capability === "object" && capability !== null ? `(${Array.isArray(capability) ? "an array" : "an object"})` : String(capability);
    throw new AstridError("ASTRID_ERR_CAPABILITY_INVALID", `capability ${shown} rejected: ${problem}`);
  }
}

/** True when the (valid) `pattern` grants the (valid) `capability` under §8.3's matching rules. */
export function capabilityMatches(pattern: string, capability: string): boolean {
  if (pattern === ALL_CAPABILITIES) return true;
  const p = pattern.split(":");
  const c = capability.split(":");
  const last = p.length - 1;
  if (p[last] === "*") {
    // The trailing `*` absorbs one or more segments: the capability needs at least as many as the pattern.
    if (c.length < p.length) return false;
    for (let i = 0; i < last; i++) if (p[i] !== "*" && p[i] !== c[i]) return false;
    return true;
  }
  if (p.length !== c.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i] !== "*" && p[i] !== c[i]) return false;
  return true;
}
