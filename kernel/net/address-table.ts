/**
 * Which IP addresses a capsule's outbound HTTP may never reach: private networks, loopback, link-local, cloud
 * metadata, unspecified, multicast, broadcast, shared (CGNAT), documentation and other reserved ranges, and any IPv6
 * form that embeds one of those IPv4 addresses (IPv4-mapped, SIIT, NAT64, 6to4, Teredo). Pure: no I/O, no DNS —
 * kernel/net/address-guard.ts resolves names and asks this table about every address it gets.
 *
 * A small table rather than node's `net.BlockList` because a refusal must say which range matched and why, and the
 * embedded-IPv4 forms need their IPv4 part checked against the IPv4 rules.
 */
import net from "node:net";

/** A blocked range: the CIDR that matched and what it is, for the refusal message. */
export interface BlockedRange {
  /** The range as written in the table (`10.0.0.0/8`), or the embedding's range (`::ffff:0:0/96`). */
  range: string;
  /** What the range is (`private network`, `loopback`, …). */
  what: string;
}

interface Rule {
  bytes: Uint8Array;
  prefix: number;
  range: string;
  what: string;
}

/** IPv4 rules; the more specific first, so the message names the most telling range. */
const V4_RULES: ReadonlyArray<readonly [string, string]> = [
  ["169.254.169.254/32", "cloud metadata service"],
  ["255.255.255.255/32", "broadcast"],
  ["0.0.0.0/8", "unspecified (\"this network\")"],
  ["10.0.0.0/8", "private network"],
  ["100.64.0.0/10", "shared address space (carrier-grade NAT)"],
  ["127.0.0.0/8", "loopback"],
  ["169.254.0.0/16", "link-local"],
  ["172.16.0.0/12", "private network"],
  ["192.0.0.0/24", "IETF protocol assignments"],
  ["192.0.2.0/24", "documentation (TEST-NET-1)"],
  ["192.88.99.0/24", "6to4 relay anycast (deprecated)"],
  ["192.168.0.0/16", "private network"],
  ["198.18.0.0/15", "benchmarking"],
  ["198.51.100.0/24", "documentation (TEST-NET-2)"],
  ["203.0.113.0/24", "documentation (TEST-NET-3)"],
  ["224.0.0.0/4", "multicast"],
  ["240.0.0.0/4", "reserved"],
];

/** IPv6 rules (embedded IPv4 forms are handled apart, before these). */
const V6_RULES: ReadonlyArray<readonly [string, string]> = [
  ["::/128", "unspecified"],
  ["::1/128", "loopback"],
  ["fd00:ec2::254/128", "cloud metadata service"],
  ["64:ff9b:1::/48", "local-use NAT64"],
  ["100::/64", "discard-only"],
  ["2001::/23", "IETF protocol assignments"],
  ["2001:db8::/32", "documentation"],
  ["3fff::/20", "documentation"],
  ["fc00::/7", "unique-local (private network)"],
  ["fe80::/10", "link-local"],
  ["fec0::/10", "site-local (deprecated)"],
  ["ff00::/8", "multicast"],
];

const rules = (table: ReadonlyArray<readonly [string, string]>): Rule[] =>
  table.map(([range, what]) => {
    const [address, prefix] = range.split("/") as [string, string];
    return { bytes: parseIp(address)!, prefix: Number(prefix), range, what };
  });

/**
 * The parsed tables, built on the first check rather than when the module loads (parsing them compiles node's IPv6
 * pattern, a cost every daemon start paid before any capsule made a network call).
 */
let parsed: ReturnType<typeof parseTables> | undefined;
const tables = () => (parsed ??= parseTables());

function parseTables() {
  return {
    V4: rules(V4_RULES),
    V6: rules(V6_RULES),
    /** Global unicast (2000::/3): a v6 address outside it (and outside the forms below) is not on the public internet. */
    GLOBAL_UNICAST: rules([["2000::/3", "global unicast"]])[0]!,
    /**
     * IPv6 forms that carry an IPv4 address, with where it sits; the IPv4 part is checked against the IPv4 rules.
     * Teredo's client address is stored inverted.
     */
    EMBEDDINGS: [
      { rule: rules([["::ffff:0:0/96", ""]])[0]!, extract: (b: Uint8Array) => b.slice(12, 16), name: "IPv4-mapped" },
      { rule: rules([["::ffff:0:0:0/96", ""]])[0]!, extract: (b: Uint8Array) => b.slice(12, 16), name: "IPv4-translated (SIIT)" },
      { rule: rules([["64:ff9b::/96", ""]])[0]!, extract: (b: Uint8Array) => b.slice(12, 16), name: "NAT64" },
      { rule: rules([["2002::/16", ""]])[0]!, extract: (b: Uint8Array) => b.slice(2, 6), name: "6to4" },
      { rule: rules([["2001::/32", ""]])[0]!, extract: (b: Uint8Array) => b.slice(12, 16).map((x) => x ^ 0xff), name: "Teredo" },
    ],
    /** The deprecated IPv4-compatible form (`::a.b.c.d`); `::` and `::1` are matched first by their own rules. */
    V4_COMPATIBLE: rules([["::/96", ""]])[0]!,
  };
}

/**
 * The bytes of an IP address literal: 4 for IPv4 (dotted quad only, as `net.isIPv4` accepts), 16 for IPv6 (with or
 * without brackets, `::` compression, a trailing dotted quad); null for anything else, zone ids included.
 */
export function parseIp(text: string): Uint8Array | null {
  const literal = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const family = net.isIP(literal);
  if (family === 4) return Uint8Array.from(literal.split(".").map(Number));
  if (family !== 6 || literal.includes("%")) return null;
  let head = literal;
  const tail: number[] = [];
  const quad = /(\d+\.\d+\.\d+\.\d+)$/.exec(literal);
  if (quad) {
    tail.push(...quad[1]!.split(".").map(Number));
    head = literal.slice(0, -quad[1]!.length);
    if (head.endsWith(":") && !head.endsWith("::")) head = head.slice(0, -1);
  }
  const groups = (part: string) => (part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)));
  const [left, right] = head.includes("::") ? head.split("::") as [string, string] : [head, undefined];
  const l = groups(left);
  const r = right === undefined ? [] : groups(right);
  const missing = 8 - tail.length / 2 - l.length - r.length;
  const words = [...l, ...new Array<number>(right === undefined ? 0 : missing).fill(0), ...r];
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[i * 2] = w >> 8;
    out[i * 2 + 1] = w & 0xff;
  });
  out.set(tail, 16 - tail.length);
  return out;
}

/** The canonical text of an address (`127.0.0.1`, `::ffff:7f00:1` → as node prints it), or null if not an IP. */
export function canonicalIp(text: string): string | null {
  const bytes = parseIp(text);
  if (!bytes) return null;
  if (bytes.length === 4) return bytes.join(".");
  const words = Array.from({ length: 8 }, (_, i) => ((bytes[i * 2]! << 8) | bytes[i * 2 + 1]!).toString(16));
  // The longest run of two or more zero words becomes `::` (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return words.join(":");
  return `${words.slice(0, best).join(":")}::${words.slice(best + bestLen).join(":")}`;
}

function within(bytes: Uint8Array, rule: Rule): boolean {
  if (bytes.length !== rule.bytes.length) return false;
  const whole = rule.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== rule.bytes[i]) return false;
  const rest = rule.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (bytes[whole]! & mask) === (rule.bytes[whole]! & mask);
}

/**
 * The blocked range an address falls in, or null when it is a public address. Anything that is not an IP literal
 * counts as blocked: the guard only ever asks about addresses it resolved, so an unparsable one is a bug to refuse.
 */
export function blockedRange(address: string): BlockedRange | null {
  const bytes = parseIp(address);
  if (!bytes) return { range: address, what: "not an IP address" };
  return blockedBytes(bytes);
}

function blockedBytes(bytes: Uint8Array): BlockedRange | null {
  const { V4, V6, EMBEDDINGS, V4_COMPATIBLE, GLOBAL_UNICAST } = tables();
  if (bytes.length === 4) {
    const rule = V4.find((r) => within(bytes, r));
    return rule ? { range: rule.range, what: rule.what } : null;
  }
  const exact = V6.find((r) => r.prefix === 128 && within(bytes, r));
  if (exact) return { range: exact.range, what: exact.what };
  for (const embedding of EMBEDDINGS) {
    if (!within(bytes, embedding.rule)) continue;
    const inner = blockedBytes(embedding.extract(bytes));
    return inner ? { range: `${embedding.rule.range} → ${inner.range}`, what: `${embedding.name} form of a ${inner.what} address` } : null;
  }
  if (within(bytes, V4_COMPATIBLE)) return { range: V4_COMPATIBLE.range, what: "IPv4-compatible (deprecated)" };
  const rule = V6.find((r) => within(bytes, r));
  if (rule) return { range: rule.range, what: rule.what };
  if (!within(bytes, GLOBAL_UNICAST)) return { range: "outside 2000::/3", what: "not a global unicast" };
  return null;
}
