import { busTopicMatches, exactSegmentMatches, topicProblem } from "../../../protocol/topic-match";

describe("bus-subscription matcher (reference §7.2)", () => {
  it.each([
    ["a.b.*", "a.b.c", true],
    ["a.b.*", "a.b.c.d", true],
    ["a.b.*", "a.b", false],
    ["astrid.v1.elicit.*", "astrid.v1.elicit", false],
    ["astrid.v1.request.*", "astrid.v1.request.status", true],
    ["a.*.c", "a.b.c", true],
    ["a.*.c", "a.b.c.d", false],
    ["a.b", "a.b", true],
    ["a.b", "a.b.c", false],
    ["*.b.*", "x.b.y.z", true],
  ])("%s vs %s → %s", (pattern, topic, expected) => {
    expect(busTopicMatches(pattern, topic)).toBe(expected);
  });

  it("never matches topics deeper than 20 segments", () => {
    const deep = Array.from({ length: 21 }, (_, i) => `s${i}`).join(".");
    expect(busTopicMatches("s0.*", deep)).toBe(false);
    expect(busTopicMatches("s0.*", deep.split(".").slice(0, 20).join("."))).toBe(true);
  });
});

describe("exact-segment matcher (ACLs, interceptors)", () => {
  it.each([
    ["a.b.*", "a.b.c", true],
    ["a.b.*", "a.b.c.d", false],
    ["a.b.*", "a.b", false],
    ["*.b.c", "a.b.c", true],
    ["astrid.v1.request.*", "astrid.v1.request.a.b", false],
    ["a.b", "a..b", false],
    ["a..b", "a..b", false],
    ["user.v1.prompt", "user.v1.prompt", true],
  ])("%s vs %s → %s", (pattern, topic, expected) => {
    expect(exactSegmentMatches(pattern, topic)).toBe(expected);
  });
});

describe("topicProblem", () => {
  it("accepts a plain topic and names what is wrong with bad ones", () => {
    expect(topicProblem("user.v1.prompt")).toBeNull();
    expect(topicProblem("")).toMatch(/empty/);
    expect(topicProblem("a..b")).toMatch(/empty segment/);
    expect(topicProblem("a.b.c.d.e.f.g.h.i")).toMatch(/segments/);
    expect(topicProblem("x".repeat(257))).toMatch(/256 bytes/);
    expect(topicProblem("a.*")).toMatch(/\*/);
  });
});
