/**
 * Issue #11: splitting replies at Discord's 2 000-character limit and coalescing edits of a streaming reply.
 */
import fc from "fast-check";
import { piecesOf, ReplyStream, splitForDiscord } from "../../../discord/reply-stream";
import type { OutgoingMessage, SeamChannel } from "../../../discord/seam";

/** A channel that records posts and edits with their times. */
function recordingChannel(): SeamChannel & { log: Array<{ op: "send" | "edit"; index: number; content: string; at: number }>; contents: string[] } {
  const log: Array<{ op: "send" | "edit"; index: number; content: string; at: number }> = [];
  const contents: string[] = [];
  return {
    id: "1",
    log,
    contents,
    sendTyping: async () => undefined,
    send: async (m: OutgoingMessage) => {
      const index = contents.push(m.content) - 1;
      log.push({ op: "send", index, content: m.content, at: Date.now() });
      return {
        id: String(index),
        edit: async (e: OutgoingMessage) => {
          contents[index] = e.content;
          log.push({ op: "edit", index, content: e.content, at: Date.now() });
        },
      };
    },
  };
}

describe("issue #11: splitForDiscord", () => {
  it("pieces are at most the limit, join to the text, and never split a surrogate pair", () => {
    fc.assert(fc.property(fc.string({ unit: "grapheme", maxLength: 3000 }), fc.integer({ min: 4, max: 50 }), (text, limit) => {
      const pieces = splitForDiscord(text, limit);
      expect(pieces.join("")).toBe(text);
      for (const p of pieces) {
        expect(p.length).toBeGreaterThan(0);
        expect(p.length).toBeLessThanOrEqual(limit);
        expect(/[\uD800-\uDBFF]$/.test(p)).toBe(false);
      }
    }));
  });

  it("cuts after a line break, else a space, in the second half of a piece; an earlier piece keeps its text as the reply grows", () => {
    expect(splitForDiscord("aaaa\nbbb ccc", 8)).toEqual(["aaaa\n", "bbb ccc"]);
    expect(splitForDiscord("aaaaa bbbbbbb", 8)).toEqual(["aaaaa ", "bbbbbbb"]);
    expect(splitForDiscord("a\naaaaaaaaaaa", 8)).toEqual(["a\naaaaaa", "aaaaa"]);
    const text = "word ".repeat(900);
    const first = splitForDiscord(text)[0]!;
    expect(splitForDiscord(text + "more text ".repeat(300))[0]).toBe(first);
  });

  it("a reply over the message budget is cut with a notice that says how much is missing", () => {
    const text = "x".repeat(50);
    const pieces = piecesOf(text, 2, 20);
    expect(pieces).toHaveLength(2);
    expect(pieces[1]!.length).toBeLessThanOrEqual(20 + 60);
    expect(piecesOf("y".repeat(30_000), 10).every((p) => p.length <= 2000)).toBe(true);
    const cut = piecesOf("y".repeat(30_000), 10);
    const shown = cut.join("").replace(/\n… \(reply cut: \d+ more characters not shown\)$/, "");
    expect(cut[9]).toMatch(new RegExp(`reply cut: ${30_000 - shown.length} more characters`));
  });
});

describe("issue #11: ReplyStream", () => {
  it("posts the first delta at once, coalesces the rest into at most one round of edits per interval, and ends on the final text", async () => {
    const channel = recordingChannel();
    const stream = new ReplyStream(channel, { editIntervalMs: 200 });
    stream.append("a");
    await new Promise((r) => setTimeout(r, 20));
    expect(channel.contents).toEqual(["a"]);
    for (let i = 0; i < 100; i++) {
      stream.append("b");
      await new Promise((r) => setTimeout(r, 5));
    }
    await stream.finish(`a${"b".repeat(100)}!`);
    expect(channel.contents).toEqual([`a${"b".repeat(100)}!`]);
    const edits = channel.log.filter((e) => e.op === "edit");
    // ~500 ms of deltas at one round per 200 ms: a handful of edits, not 100.
    expect(edits.length).toBeLessThanOrEqual(5);
    for (let i = 1; i < channel.log.length; i++) expect(channel.log[i]!.at - channel.log[i - 1]!.at).toBeGreaterThanOrEqual(190);
  });

  it("a final text shorter than the streamed one blanks the messages it no longer needs; an empty reply says so", async () => {
    const channel = recordingChannel();
    const stream = new ReplyStream(channel, { editIntervalMs: 10 });
    stream.append("z".repeat(4500));
    await new Promise((r) => setTimeout(r, 50));
    expect(channel.contents).toHaveLength(3);
    await stream.finish("short");
    expect(channel.contents).toEqual(["short", "…", "…"]);
    const empty = recordingChannel();
    await new ReplyStream(empty, { editIntervalMs: 10 }).finish("  ");
    expect(empty.contents).toEqual(["(the agent sent an empty reply)"]);
  });

  it("a post Discord refuses stops the stream (reported once) instead of retrying forever", async () => {
    const errors: unknown[] = [];
    const channel: SeamChannel = { id: "1", sendTyping: async () => undefined, send: async () => Promise.reject(new Error("Missing Permissions")) };
    const stream = new ReplyStream(channel, { editIntervalMs: 10, onError: (e) => errors.push(e) });
    stream.append("hello");
    await stream.finish("hello world");
    expect(errors).toHaveLength(1);
  });
});
