/**
 * The socket calls' list matching (`net_connect`, `net_tcp_bind`, `net_udp` entries: host patterns with `:port` or
 * `:*`, `bind:` entries for local addresses) and the guard's lookup answer (only reachable addresses). The sockets
 * themselves are exercised against the real daemon in spec/integration/wasm-net.test.ts.
 */
import { netListCovers } from "../../../kernel/capsules/host-net";
import { AddressGuard } from "../../../kernel/net/address-guard";
import { isAstridError } from "../../../protocol/errors";

describe("netListCovers", () => {
  it("matches net's host patterns, a port limiting an entry and :* meaning any port", () => {
    const list = ["api.example.com:443", "*.example.org", "127.0.0.1:*", "[::1]:8080", "bind:0.0.0.0:*"];
    expect(netListCovers(list, "api.example.com", 443)).toBe(true);
    expect(netListCovers(list, "api.example.com", 80)).toBe(false);
    expect(netListCovers(list, "a.example.org", 22)).toBe(true);
    expect(netListCovers(list, "example.org", 22)).toBe(false);
    expect(netListCovers(list, "127.0.0.1", 9)).toBe(true);
    expect(netListCovers(list, "::1", 8080)).toBe(true);
    expect(netListCovers(list, "::1", 8081)).toBe(false);
    // A bind: entry is no peer entry.
    expect(netListCovers(list, "0.0.0.0", 53)).toBe(false);
    expect(netListCovers([], "api.example.com", 443)).toBe(false);
  });

  it("with a null port (a lookup without one) ignores the entry's port", () => {
    expect(netListCovers(["api.example.com:443"], "api.example.com", null)).toBe(true);
    expect(netListCovers(["api.example.com:443"], "other.com", null)).toBe(false);
  });

  it("selects and strips bind: entries for local addresses", () => {
    const list = ["bind:127.0.0.1:*", "bind:[::1]:5353", "10.0.0.1"];
    expect(netListCovers(list, "127.0.0.1", 0, "bind:")).toBe(true);
    expect(netListCovers(list, "::1", 5353, "bind:")).toBe(true);
    expect(netListCovers(list, "::1", 53, "bind:")).toBe(false);
    expect(netListCovers(list, "0.0.0.0", 0, "bind:")).toBe(false);
    expect(netListCovers(list, "10.0.0.1", 0, "bind:")).toBe(false);
  });
});

describe("AddressGuard.reachableAddresses", () => {
  const guard = new AddressGuard({
    seams: { dns: { "mixed.test": ["93.184.216.34", "10.0.0.1", "::1"], "private.test": ["192.168.1.1"] }, publicAddresses: [] },
    resolve: () => Promise.reject(Object.assign(new Error("nope"), { code: "ENOTFOUND" })),
  });

  it("leaves out private, loopback and other unreachable answers", async () => {
    expect(await guard.reachableAddresses("mixed.test")).toEqual(["93.184.216.34"]);
    expect(await guard.reachableAddresses("private.test")).toEqual([]);
    expect(await guard.reachableAddresses("localhost")).toEqual([]);
    expect(await guard.reachableAddresses("[2606:4700::1]")).toEqual(["2606:4700::1"]);
    expect(await guard.reachableAddresses("127.0.0.1")).toEqual([]);
  });

  it("reports a name that does not resolve", async () => {
    const err: unknown = await guard.reachableAddresses("nowhere.test").catch((e: unknown) => e);
    expect(isAstridError(err) && err.code).toBe("ASTRID_ERR_HTTP_FAILED");
  });
});
