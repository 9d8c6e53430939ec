/**
 * The network guard's address table, host patterns and resolution rules, in many spellings: every private,
 * loopback, link-local, metadata, multicast and reserved address is refused in each of its forms (IPv4-mapped,
 * NAT64, 6to4, Teredo, numeric URL hosts), public ones pass, and a name is refused when any of its answers is bad.
 */
import { loadDaemonConfig } from "../../../kernel/config";
import { AddressGuard } from "../../../kernel/net/address-guard";
import { blockedRange, canonicalIp, parseIp } from "../../../kernel/net/address-table";
import { hostListCovers, normalizeUrlHost, parseHostPattern } from "../../../kernel/net/host-pattern";
import { isAstridError } from "../../../protocol/errors";

/** The address a URL's host comes to, as the guard is asked about it. */
const urlHost = (url: string) => normalizeUrlHost(new URL(url).hostname);

describe("address table", () => {
  it.each([
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.0.0.1", "private network"],
    ["10.255.255.255", "private network"],
    ["100.64.0.1", "carrier-grade NAT"],
    ["100.127.255.254", "carrier-grade NAT"],
    ["127.0.0.1", "loopback"],
    ["127.0.0.2", "loopback"],
    ["127.255.255.255", "loopback"],
    ["169.254.169.254", "cloud metadata"],
    ["169.254.1.1", "link-local"],
    ["172.16.0.1", "private network"],
    ["172.31.255.255", "private network"],
    ["192.168.1.1", "private network"],
    ["192.0.0.170", "IETF"],
    ["192.0.2.1", "documentation"],
    ["198.18.0.1", "benchmarking"],
    ["198.51.100.7", "documentation"],
    ["203.0.113.9", "documentation"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "broadcast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["0:0:0:0:0:0:0:1", "loopback"],
    ["[::1]", "loopback"],
    ["fe80::1", "link-local"],
    ["febf:ffff::1", "link-local"],
    ["fec0::1", "site-local"],
    ["fc00::1", "unique-local"],
    ["fd12:3456::1", "unique-local"],
    ["fd00:ec2::254", "cloud metadata"],
    ["ff02::1", "multicast"],
    ["2001:db8::1", "documentation"],
    ["100::1", "discard"],
    ["::ffff:127.0.0.1", "IPv4-mapped form of a loopback"],
    ["::ffff:7f00:1", "IPv4-mapped form of a loopback"],
    ["::ffff:10.0.0.1", "IPv4-mapped form of a private network"],
    ["::ffff:169.254.169.254", "IPv4-mapped form of a cloud metadata"],
    ["0:0:0:0:0:ffff:c0a8:0101", "IPv4-mapped form of a private network"],
    ["::ffff:0:127.0.0.1", "SIIT"],
    ["::127.0.0.1", "IPv4-compatible"],
    ["::8.8.8.8", "IPv4-compatible"],
    ["64:ff9b::127.0.0.1", "NAT64 form of a loopback"],
    ["64:ff9b::a9fe:a9fe", "NAT64 form of a cloud metadata"],
    ["64:ff9b:1::1", "local-use NAT64"],
    ["2002:7f00:1::1", "6to4 form of a loopback"],
    ["2002:c0a8:101::", "6to4 form of a private network"],
    ["2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo form of a loopback"],
    ["::2:1", "IPv4-compatible"],
    ["1::1", "not a global unicast"],
    ["4000::1", "not a global unicast"],
  ])("refuses %s (%s)", (address, what) => {
    const range = blockedRange(address);
    expect(range).not.toBeNull();
    expect(range!.what).toContain(what);
  });

  it.each(["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.32.0.1", "172.15.255.255", "100.128.0.1", "100.63.255.255", "169.253.0.1", "192.169.0.1", "223.255.255.255",
    "2606:4700:4700::1111", "2001:4860:4860::8888", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"])("lets public %s through", (address) => {
    expect(blockedRange(address)).toBeNull();
  });

  it("refuses what is not an IP address at all", () => {
    for (const text of ["", "localhost", "127.1", "0x7f000001", "2130706433", "fe80::1%eth0", "1.2.3.4.5", "::g"]) {
      expect(blockedRange(text)).toMatchObject({ what: "not an IP address" });
    }
  });

  it("parses and prints addresses canonically", () => {
    expect(Array.from(parseIp("::ffff:1.2.3.4")!)).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4]);
    expect(Array.from(parseIp("1:2:3:4:5:6:7:8")!)).toEqual([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]);
    expect(canonicalIp("0:0:0:0:0:0:0:1")).toBe("::1");
    expect(canonicalIp("::")).toBe("::");
    expect(canonicalIp("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(canonicalIp("::ffff:127.0.0.1")).toBe("::ffff:7f00:1");
    expect(canonicalIp("FE80::1")).toBe("fe80::1");
    expect(canonicalIp("[::1]")).toBe("::1");
    expect(canonicalIp("example.com")).toBeNull();
  });

  it("numeric URL hosts are normalised by the URL parser to addresses the table refuses", () => {
    for (const url of ["http://0x7f000001/", "http://2130706433/", "http://127.1/", "http://0177.0.0.1/", "http://%31%32%37.0.0.1/", "http://0/",
      "http://[::1]/", "http://[0:0:0:0:0:0:0:1]:8080/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:a9fe:a9fe]/", "http://0xa9.0xfe.0xa9.0xfe/", "http://3232235777/"]) {
      const host = urlHost(url);
      expect([url, blockedRange(host)]).toEqual([url, expect.objectContaining({ what: expect.any(String) })]);
      expect(canonicalIp(host)).not.toBeNull();
    }
  });
});

describe("host patterns (manifest net, profile egress)", () => {
  const covers = (entries: string[], url: string) => {
    const u = new URL(url);
    return hostListCovers(entries, urlHost(url), u.port ? Number(u.port) : u.protocol === "https:" ? 443 : 80);
  };

  it("a name covers itself and the names under it; *.name only those under it; * everything", () => {
    expect(covers(["example.com"], "https://example.com/")).toBe(true);
    expect(covers(["example.com"], "https://api.example.com/x")).toBe(true);
    expect(covers(["example.com"], "https://badexample.com/")).toBe(false);
    expect(covers(["example.com"], "https://example.com.evil.net/")).toBe(false);
    expect(covers(["*.example.com"], "https://example.com/")).toBe(false);
    expect(covers(["*.example.com"], "https://a.b.example.com/")).toBe(true);
    expect(covers(["*"], "http://anything.at.all:8080/")).toBe(true);
    expect(covers([], "https://example.com/")).toBe(false);
  });

  it("is case-insensitive, ignores a trailing dot and matches international names by punycode", () => {
    expect(covers(["Example.COM"], "https://EXAMPLE.com./")).toBe(true);
    expect(covers(["bücher.de"], "https://xn--bcher-kva.de/")).toBe(true);
  });

  it("a port limits the entry to that port (the scheme's default when the URL names none)", () => {
    expect(covers(["example.com:8443"], "https://example.com:8443/")).toBe(true);
    expect(covers(["example.com:8443"], "https://example.com/")).toBe(false);
    expect(covers(["example.com:443"], "https://example.com/")).toBe(true);
    expect(covers(["*:443"], "http://example.com/")).toBe(false);
    expect(covers(["example.com:99999"], "https://example.com/")).toBe(false);
  });

  it("an address entry covers only that address; a name never covers an address by its digits", () => {
    expect(covers(["93.184.216.34"], "http://93.184.216.34/")).toBe(true);
    expect(covers(["0.1"], "http://127.0.0.1/")).toBe(false);
    expect(covers(["0.0.1"], "http://127.0.0.1/")).toBe(false);
    expect(covers(["[2606:4700::1]:80"], "http://[2606:4700:0::1]/")).toBe(true);
    expect(covers(["2606:4700::1"], "http://[2606:4700::1]:8080/")).toBe(true);
  });

  it("entries that cannot name a host match nothing", () => {
    for (const bad of ["", "  ", "*.*.com", "ex*ample.com", "a/b", "host:port", "[zz]", "[1.2.3.4]"]) expect(parseHostPattern(bad)).toBeNull();
  });
});

describe("address guard", () => {
  const refusal = async (guard: AddressGuard, host: string) => {
    try {
      await guard.vet(host);
    } catch (err) {
      if (isAstridError(err)) return err;
      throw err;
    }
    throw new Error(`${host} was not refused`);
  };
  const resolveTo = (...addresses: string[]) => async () => addresses.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));

  it("pins the first answer of a name whose answers are all public", async () => {
    const guard = new AddressGuard({ resolve: resolveTo("93.184.216.34", "2606:2800:220:1::1") });
    await expect(guard.vet("example.com")).resolves.toEqual({ host: "example.com", address: "93.184.216.34", family: 4 });
  });

  it("refuses a name when any of its answers is not public, naming host, address and range", async () => {
    const err = await refusal(new AddressGuard({ resolve: resolveTo("93.184.216.34", "10.1.2.3") }), "mixed.example");
    expect(err.code).toBe("ASTRID_ERR_NET_ADDRESS_BLOCKED");
    expect(err.message).toContain('"mixed.example" resolves to 10.1.2.3, a private network address (10.0.0.0/8)');
  });

  it("refuses address literals without asking DNS, and localhost names whatever DNS says", async () => {
    const resolve = jest.fn(resolveTo("93.184.216.34"));
    const guard = new AddressGuard({ resolve });
    for (const host of ["127.0.0.1", "[::1]", "[::ffff:7f00:1]", "169.254.169.254", "localhost", "localhost.", "api.localhost"]) {
      expect((await refusal(guard, host)).code).toBe("ASTRID_ERR_NET_ADDRESS_BLOCKED");
    }
    expect(resolve).not.toHaveBeenCalled();
    expect((await refusal(guard, "169.254.169.254")).message).toContain("cloud metadata service");
  });

  it("a name that does not resolve is ASTRID_ERR_HTTP_FAILED", async () => {
    const guard = new AddressGuard({ resolve: async () => Promise.reject(Object.assign(new Error("nope"), { code: "ENOTFOUND" })) });
    const err = await refusal(guard, "no-such-name.invalid");
    expect(err.code).toBe("ASTRID_ERR_HTTP_FAILED");
    expect(err.message).toContain("ENOTFOUND");
    expect((await refusal(new AddressGuard({ resolve: resolveTo() }), "empty.example")).code).toBe("ASTRID_ERR_HTTP_FAILED");
  });

  it("test seams: static answers replace DNS; only the listed addresses count as public", async () => {
    const guard = new AddressGuard({
      resolve: resolveTo("93.184.216.34"),
      seams: { dns: { "public.test": ["127.0.0.1"], "private.test": ["10.0.0.1"], localhost: ["127.0.0.1"] }, publicAddresses: ["127.0.0.1"] },
    });
    await expect(guard.vet("public.test")).resolves.toMatchObject({ address: "127.0.0.1" });
    await expect(guard.vet("127.0.0.1")).resolves.toMatchObject({ address: "127.0.0.1" });
    expect((await refusal(guard, "private.test")).message).toContain("10.0.0.1");
    expect((await refusal(guard, "127.0.0.2")).code).toBe("ASTRID_ERR_NET_ADDRESS_BLOCKED");
    expect((await refusal(guard, "[::1]")).code).toBe("ASTRID_ERR_NET_ADDRESS_BLOCKED");
  });
});

describe("the seams' configuration", () => {
  const load = (env: Record<string, string>) => loadDaemonConfig({ ASTRID_HOME: "/srv/astrid", ...env });
  const refusal = (env: Record<string, string>) => {
    try {
      load(env);
    } catch (err) {
      if (isAstridError(err)) return err;
      throw err;
    }
    throw new Error("accepted");
  };

  it("are read only with ASTRID_TEST_FAULTS=1, and refused otherwise", () => {
    expect(load({ ASTRID_TEST_FAULTS: "1", ASTRID_TEST_DNS: "a.test=127.0.0.1,A.test=::1,b.test=10.0.0.1", ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.1,::1" })).toMatchObject({
      testDns: { "a.test": ["127.0.0.1", "::1"], "b.test": ["10.0.0.1"] },
      testPublicAddresses: ["127.0.0.1", "::1"],
    });
    expect(load({})).toMatchObject({ testDns: {}, testPublicAddresses: [] });
    for (const env of [{ ASTRID_TEST_DNS: "a.test=127.0.0.1" }, { ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.1", ASTRID_TEST_FAULTS: "0" }] as Array<Record<string, string>>) {
      const err = refusal(env);
      expect(err.code).toBe("ASTRID_ERR_CONFIG_INVALID");
      expect(err.message).toMatch(/ASTRID_TEST_(DNS|PUBLIC_ADDRESSES) must be unset unless ASTRID_TEST_FAULTS=1/);
    }
  });

  it("refuse malformed values, naming the variable", () => {
    for (const bad of ["", "a.test", "a.test=", "=1.2.3.4", "a.test=not-an-ip", "a.test=1.2.3.4=5", "a b=1.2.3.4"]) {
      expect(refusal({ ASTRID_TEST_FAULTS: "1", ASTRID_TEST_DNS: bad }).message).toContain("ASTRID_TEST_DNS must be name=address pairs");
    }
    expect(refusal({ ASTRID_TEST_FAULTS: "1", ASTRID_TEST_PUBLIC_ADDRESSES: "127.0.0.1,localhost" }).message).toContain("ASTRID_TEST_PUBLIC_ADDRESSES must be IP addresses");
  });
});
