/**
 * Fuzzing the pattern matchers against small reference models written here, differently (as regular expressions):
 * the two topic matchers of reference §7.2 (bus subscriptions; ACLs and interceptors), the capability matcher of
 * §8.3, the memo in front of topic matchers, the KV key entries, the host_process entries and the net host entries.
 */
import fc from "fast-check";
import { assertCapability, capabilityMatches, capabilityProblem, MAX_CAPABILITY_BYTES } from "../../protocol/capability";
import { memoTopicPredicate } from "../../protocol/topic-cache";
import { busTopicMatches, exactSegmentMatches, MAX_BUS_TOPIC_SEGMENTS } from "../../protocol/topic-match";
import { kvEntryCovers } from "../../kernel/capsules/syscall-gate";
import { canonicalIp } from "../../kernel/net/address-table";
import { hostListCovers, normalizeUrlHost, parseHostPattern, patternCovers } from "../../kernel/net/host-pattern";
import { argvCovered, hostProcessCovers } from "../../kernel/processes/command-match";
import { FUZZ_TIMEOUT_MS, hostileString, hostileValue, returnsOrThrowsCoded, runs } from "./fuzz-helpers";

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");

/** Reference bus matcher: `*` is any one segment (even empty); a trailing `.*` is one or more segments. */
function busModel(pattern: string, topic: string): boolean {
  if (topic.split(".").length > MAX_BUS_TOPIC_SEGMENTS) return false;
  const parts = pattern.split(".");
  const trailing = parts.length >= 2 && parts[parts.length - 1] === "*";
  const head = (trailing ? parts.slice(0, -1) : parts).map((s) => (s === "*" ? "[^.]*" : escape(s))).join("\\.");
  return new RegExp(`^${head}${trailing ? "(?:\\.[^.]*)+" : ""}$`, "s").test(topic);
}

/** Reference ACL matcher: no empty segment on either side, same count, `*` is one segment anywhere. */
function exactModel(pattern: string, topic: string): boolean {
  if (/(^|\.)(\.|$)/.test(pattern) || /(^|\.)(\.|$)/.test(topic)) return false;
  const re = pattern.split(".").map((s) => (s === "*" ? "[^.]+" : escape(s))).join("\\.");
  return new RegExp(`^${re}$`, "s").test(topic);
}

/** Reference capability matcher: `*` alone is everything; a last `*` is one or more segments, elsewhere one. */
function capabilityModel(pattern: string, capability: string): boolean {
  const parts = pattern.split(":");
  const re = parts.map((s, i) => (s !== "*" ? escape(s) : i === parts.length - 1 ? "[^:]+(?::[^:]+)*" : "[^:]+")).join(":");
  return new RegExp(`^${re}$`).test(capability);
}

/** Topics and patterns over a tiny alphabet, so matches are frequent. */
const segment = fc.constantFrom("a", "b", "v1", "*", "", "a*", "é");
const dotted = (max: number) => fc.array(segment, { minLength: 1, maxLength: max }).map((s) => s.join("."));
const topicish = fc.oneof({ arbitrary: dotted(6), weight: 4 }, { arbitrary: dotted(24), weight: 1 }, { arbitrary: hostileString, weight: 1 });

const capSegment = fc.constantFrom("a", "b", "self", "capsule", "*", "x-y_1");
const capability = fc.array(capSegment, { minLength: 1, maxLength: 5 }).map((s) => s.join(":"));

describe("fuzz: topic matchers against reference models", () => {
  it("busTopicMatches agrees with the model", () => {
    fc.assert(
      fc.property(topicish, topicish, (pattern, topic) => {
        expect(busTopicMatches(pattern, topic)).toBe(busModel(pattern, topic));
      }),
      runs(1000),
    );
  }, FUZZ_TIMEOUT_MS);

  it("exactSegmentMatches agrees with the model, and implies the bus matcher for the same pair", () => {
    fc.assert(
      fc.property(topicish, topicish, (pattern, topic) => {
        const exact = exactSegmentMatches(pattern, topic);
        expect(exact).toBe(exactModel(pattern, topic));
        if (exact && topic.split(".").length <= MAX_BUS_TOPIC_SEGMENTS) expect(busTopicMatches(pattern, topic)).toBe(true);
      }),
      runs(1000),
    );
  }, FUZZ_TIMEOUT_MS);

  it("a memoised predicate answers exactly like the predicate, past the cache's reset", () => {
    fc.assert(
      fc.property(topicish, fc.array(fc.oneof(topicish, fc.nat(5000).map(String)), { maxLength: 200 }), fc.boolean(), (pattern, topics, fill) => {
        const memo = memoTopicPredicate((t) => busTopicMatches(pattern, t));
        // Filling the cache (4096 topics) makes the generated ones straddle its reset.
        if (fill) for (let i = 0; i < 4090; i++) memo(`a.${i}`);
        for (const t of [...topics, ...topics]) expect(memo(t)).toBe(busTopicMatches(pattern, t));
      }),
      runs(100),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: capability grammar and matcher", () => {
  it("capabilityMatches agrees with the model on valid patterns and capabilities", () => {
    fc.assert(
      fc.property(capability, capability, (pattern, cap) => {
        expect(capabilityMatches(pattern, cap)).toBe(capabilityModel(pattern, cap));
      }),
      runs(1000),
    );
  }, FUZZ_TIMEOUT_MS);

  it("the grammar check agrees with the reference grammar and never throws; assertCapability only throws coded", () => {
    const candidates = fc.oneof(capability, hostileString, hostileValue, fc.string({ minLength: 250, maxLength: 260, unit: fc.constantFrom("a", ":", "é") }));
    const grammar = /^(?:\*|[A-Za-z0-9_-]+)(?::(?:\*|[A-Za-z0-9_-]+))*$/;
    fc.assert(
      fc.property(candidates, (value) => {
        const valid = typeof value === "string" && grammar.test(value) && Buffer.byteLength(value) <= MAX_CAPABILITY_BYTES;
        expect(capabilityProblem(value) === null).toBe(valid);
        expect(returnsOrThrowsCoded(() => assertCapability(value), ["ASTRID_ERR_CAPABILITY_INVALID"]).ok).toBe(valid);
      }),
      runs(800),
    );
  }, FUZZ_TIMEOUT_MS);
});

describe("fuzz: other allow-list matchers", () => {
  it("kvEntryCovers: `*` covers all, `p*` covers what starts with p, anything else only itself", () => {
    fc.assert(
      fc.property(fc.oneof(hostileString, fc.constantFrom("*", "notes:*", "notes:a")), fc.oneof(hostileString, fc.constantFrom("notes:", "notes:a", "notes:ab")), (entry, target) => {
        const model = entry.endsWith("*") ? target.startsWith(entry.slice(0, -1)) : entry === target;
        expect(kvEntryCovers(entry, target)).toBe(model);
      }),
      runs(500),
    );
  }, FUZZ_TIMEOUT_MS);

  it("argvCovered equals the joined-string rule for space-free arguments, and never covers a spaced one wrongly", () => {
    const word = fc.constantFrom("git", "status", "-s", "ls", "x");
    const entry = fc.oneof(fc.array(word, { minLength: 1, maxLength: 3 }).map((w) => w.join(" ")), fc.constantFrom("", " ", "git  status", " git", "git "));
    const argv = fc.array(fc.oneof({ arbitrary: word, weight: 4 }, { arbitrary: fc.constantFrom("status -s", "", "git status"), weight: 1 }), { maxLength: 4 });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 3 }), argv, (entries, args) => {
        const covered = argvCovered(entries, args);
        const spaceFree = args.every((a) => a !== "" && !a.includes(" "));
        const cleanEntries = entries.filter((e) => e.trim() !== "" && !e.split(" ").includes(""));
        if (spaceFree && args.length > 0) expect(covered).toBe(hostProcessCovers(cleanEntries, args.join(" ")));
        // Word by word: a covering entry's words are exactly the first arguments.
        if (covered) expect(entries.some((e) => e.split(" ").every((w, i) => w !== "" && args[i] === w))).toBe(true);
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);

  it("net host entries: parsing never throws; a name covers itself and names below it, on its port only", () => {
    const label = fc.constantFrom("example", "com", "api", "xn--bcher-kva", "b\u00fccher", "EXAMPLE");
    const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join("."));
    const entry = fc.oneof(hostileString, name, fc.tuple(fc.constantFrom("", "*."), name, fc.option(fc.integer({ min: 0, max: 70000 }), { nil: undefined })).map(([w, n, p]) => `${w}${n}${p === undefined ? "" : `:${p}`}`),
      fc.constantFrom("*", "*:443", "[::1]", "[::1]:80", "127.0.0.1", "0.1", "[2001:db8::1]:0", "::1", "*.", "*.*"));
    fc.assert(
      fc.property(entry, name, fc.integer({ min: 1, max: 65535 }), (text, host, port) => {
        const pattern = parseHostPattern(text);
        const normalizedHost = normalizeUrlHost(new URL(`http://${host}/`).hostname);
        expect(typeof hostListCovers([text], normalizedHost, port)).toBe("boolean");
        if (pattern === null) return;
        if (pattern.kind !== "address" && pattern.kind !== "any" && canonicalIp(pattern.host) !== null) {
          // A name the URL parser reads as an address (`0.1` is 0.0.0.1) names no host: it covers nothing.
          expect(patternCovers(pattern, pattern.host, pattern.port ?? port)).toBe(false);
          return;
        }
        if (pattern.kind === "domain") {
          expect(patternCovers(pattern, pattern.host, pattern.port ?? port)).toBe(true);
          expect(patternCovers(pattern, `sub.${pattern.host}`, pattern.port ?? port)).toBe(true);
          expect(patternCovers(pattern, `${pattern.host}x`, pattern.port ?? port)).toBe(false);
        }
        if (pattern.kind === "subdomains") expect(patternCovers(pattern, pattern.host, pattern.port ?? port)).toBe(false);
        if (pattern.port !== null) {
          expect(pattern.port >= 1 && pattern.port <= 65535).toBe(true);
          expect(patternCovers(pattern, normalizedHost, pattern.port === 1 ? 2 : pattern.port - 1)).toBe(false);
        }
      }),
      runs(600),
    );
  }, FUZZ_TIMEOUT_MS);
});
