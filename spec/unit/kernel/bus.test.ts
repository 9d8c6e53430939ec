import { EventBus } from "../../../kernel/bus";

const src = "00000000-0000-0000-0000-000000000000";

describe("EventBus", () => {
  it("stamps a monotonically increasing seq from 1 and delivers by bus pattern", () => {
    const bus = new EventBus();
    const seen: Array<[string, number]> = [];
    bus.subscribe("a.*", ({ message }) => seen.push([message.topic, message.seq]));
    bus.publish({ topic: "a.b", payload: { type: "connect" }, source_id: src });
    bus.publish({ topic: "a", payload: { type: "connect" }, source_id: src });
    bus.publish({ topic: "a.b.c", payload: { type: "connect" }, source_id: src });
    expect(seen).toEqual([["a.b", 1], ["a.b.c", 3]]);
    expect(bus.lastSeq).toBe(3);
  });

  it("keeps publish order when a handler publishes while handling", () => {
    const bus = new EventBus();
    const order: string[] = [];
    bus.subscribe("x.*", ({ message }) => {
      order.push(`first:${message.topic}`);
      if (message.topic === "x.one") bus.publish({ topic: "x.two", payload: { type: "connect" }, source_id: src });
    });
    bus.subscribe("x.*", ({ message }) => order.push(`second:${message.topic}`));
    bus.publish({ topic: "x.one", payload: { type: "connect" }, source_id: src });
    expect(order).toEqual(["first:x.one", "second:x.one", "first:x.two", "second:x.two"]);
  });

  it("reports a throwing subscriber and still delivers to the others", () => {
    const errors: unknown[] = [];
    const bus = new EventBus((err) => errors.push(err));
    const got: number[] = [];
    bus.subscribe("t", () => {
      throw new Error("boom");
    });
    bus.subscribe("t", ({ message }) => got.push(message.seq));
    bus.publish({ topic: "t", payload: { type: "connect" }, source_id: src });
    expect(got).toEqual([1]);
    expect(errors).toHaveLength(1);
  });

  it("stops delivering after unsubscribe", () => {
    const bus = new EventBus();
    let n = 0;
    const off = bus.subscribe("t", () => n++);
    bus.publish({ topic: "t", payload: { type: "connect" }, source_id: src });
    off();
    bus.publish({ topic: "t", payload: { type: "connect" }, source_id: src });
    expect(n).toBe(1);
  });
});
