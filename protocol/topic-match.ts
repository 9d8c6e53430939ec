/**
 * The two topic matchers of reference §7.2. They differ on purpose; mixing them up breaks ACLs, response
 * delivery and interceptor routing.
 */

/** Topics deeper than this never match a bus subscription. */
export const MAX_BUS_TOPIC_SEGMENTS = 20;

/**
 * Bus-subscription matcher. A trailing `.*` matches one or more further segments (never zero): `a.b.*` matches
 * `a.b.c` and `a.b.c.d` but not `a.b`. Otherwise segment counts must be equal. Elsewhere `*` is one segment.
 */
export function busTopicMatches(pattern: string, topic: string): boolean {
  const t = topic.split(".");
  if (t.length > MAX_BUS_TOPIC_SEGMENTS) return false;
  const p = pattern.split(".");
  if (p.length >= 2 && p[p.length - 1] === "*") {
    const prefix = p.length - 1;
    if (t.length <= prefix) return false;
    for (let i = 0; i < prefix; i++) if (p[i] !== "*" && p[i] !== t[i]) return false;
    return true;
  }
  return segmentsEqual(p, t);
}

/**
 * Exact-segment matcher, for ACLs and interceptors: both sides need non-empty segments and equal counts; `*`
 * matches exactly one segment wherever it stands, so `a.b.*` does not match `a.b.c.d`.
 */
export function exactSegmentMatches(pattern: string, topic: string): boolean {
  const p = pattern.split(".");
  const t = topic.split(".");
  if (p.some((s) => s === "") || t.some((s) => s === "")) return false;
  return segmentsEqual(p, t);
}

function segmentsEqual(p: string[], t: string[]): boolean {
  if (p.length !== t.length) return false;
  for (let i = 0; i < p.length; i++) if (p[i] !== "*" && p[i] !== t[i]) return false;
  return true;
}

/** Longest topic a publisher may use, in UTF-8 bytes (reference §6.8). */
export const MAX_TOPIC_BYTES = 256;
/** Most segments a published topic may have (reference §6.8). */
export const MAX_PUBLISH_SEGMENTS = 8;

/** Why `topic` cannot be published, or null when it can. */
export function topicProblem(topic: string): string | null {
  if (topic.length === 0) return "topic is empty";
  if (Buffer.byteLength(topic) > MAX_TOPIC_BYTES) return `topic is longer than ${MAX_TOPIC_BYTES} bytes`;
  const segments = topic.split(".");
  if (segments.length > MAX_PUBLISH_SEGMENTS) return `topic has more than ${MAX_PUBLISH_SEGMENTS} segments`;
  if (segments.some((s) => s === "")) return "topic has an empty segment";
  if (segments.some((s) => s === "*")) return "a published topic may not contain `*`";
  return null;
}
