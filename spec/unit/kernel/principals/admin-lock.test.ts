/** Issue #9: the admin write lock runs changes one at a time, in order, with a bounded queue. */
import { AdminLock, ADMIN_LOCK_QUEUE_LIMIT } from "../../../../kernel/principals/admin-lock";

describe("issue #9: admin write lock", () => {
  it("runs holders one at a time in arrival order, passing results and errors through", async () => {
    const lock = new AdminLock();
    const order: string[] = [];
    let inside = 0;
    const hold = (name: string, fail = false) => lock.run(async () => {
      inside++;
      expect(inside).toBe(1);
      order.push(name);
      await new Promise((r) => setTimeout(r, 2));
      inside--;
      if (fail) throw new Error(name);
      return name;
    });
    const results = await Promise.allSettled([hold("a"), hold("b", true), hold("c")]);
    expect(order).toEqual(["a", "b", "c"]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
  });

  it(`refuses a writer beyond ${ADMIN_LOCK_QUEUE_LIMIT} waiting, and takes writers again once they are done`, async () => {
    const lock = new AdminLock();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held = Array.from({ length: ADMIN_LOCK_QUEUE_LIMIT }, () => lock.run(() => gate));
    await expect(lock.run(async () => "late")).rejects.toMatchObject({ code: "ASTRID_ERR_RATE_LIMITED" });
    release();
    await Promise.all(held);
    await expect(lock.run(async () => "again")).resolves.toBe("again");
  });
});
