/**
 * The network guard of capsules' outbound HTTP: resolves a URL's host and refuses it when **any** address it
 * resolves to is not a public internet address (kernel/net/address-table.ts says which are not). The address it
 * returns is the one the connection is then pinned to (kernel/net/guarded-fetch.ts), so a DNS answer that changes
 * between the check and the connect (DNS rebinding) cannot steer the request anywhere the check did not see.
 *
 * Test seams (only with ASTRID_TEST_FAULTS=1, see kernel/config.ts): static name → address answers that replace
 * DNS for those names (ASTRID_TEST_DNS), and addresses the guard treats as public (ASTRID_TEST_PUBLIC_ADDRESSES), so
 * tests can reach a server on 127.0.0.1 while every other loopback address stays refused.
 */
import dns from "node:dns";
import net from "node:net";
import { AstridError } from "../../protocol/errors";
import { blockedRange, canonicalIp } from "./address-table";
import { normalizeUrlHost } from "./host-pattern";

/** An address the guard accepted, to connect to. */
export interface VettedAddress {
  /** The host as the URL names it (normalised). */
  host: string;
  address: string;
  family: 4 | 6;
}

/** The test seams; absent in a daemon without ASTRID_TEST_FAULTS=1. */
export interface GuardSeams {
  /** Static answers, by host name (lower case): they replace DNS for those names. */
  dns: Readonly<Record<string, readonly string[]>>;
  /** Addresses treated as public (canonical text). */
  publicAddresses: readonly string[];
}

/** Resolves a name to every address it has. */
export type Resolver = (host: string) => Promise<ReadonlyArray<{ address: string; family: number }>>;

/** Most addresses of one name that are checked; a longer answer is refused rather than half-checked. */
const MAX_ADDRESSES = 64;

const systemResolver: Resolver = (host) => dns.promises.lookup(host, { all: true, order: "verbatim" });

/** Vets hosts for outbound HTTP. */
export class AddressGuard {
  private readonly seams: GuardSeams | null;
  private readonly resolve: Resolver;
  private readonly publicAddresses: ReadonlySet<string>;

  constructor(options: { seams?: GuardSeams | null; resolve?: Resolver } = {}) {
    this.seams = options.seams ?? null;
    this.resolve = options.resolve ?? systemResolver;
    this.publicAddresses = new Set((this.seams?.publicAddresses ?? []).map((a) => canonicalIp(a) ?? a));
  }

  /**
   * The address to connect to for `hostname` (a URL's hostname: an IP literal, bracketed or not, or a name).
   * Throws ASTRID_ERR_NET_ADDRESS_BLOCKED when the host is, or resolves to, an address capsules may not reach, and
   * ASTRID_ERR_HTTP_FAILED when the name does not resolve.
   */
  async vet(hostname: string): Promise<VettedAddress> {
    const host = normalizeUrlHost(hostname);
    const literal = canonicalIp(host);
    if (literal !== null) {
      this.check(host, literal, literal);
      return { host, address: literal, family: net.isIP(literal) as 4 | 6 };
    }
    const overridden = this.seams?.dns[host];
    // RFC 6761: `localhost` and every name under it are loopback, whatever a resolver answers.
    if (overridden === undefined && (host === "localhost" || host.endsWith(".localhost"))) {
      throw blocked(host, `${JSON.stringify(host)} is a loopback name (localhost)`);
    }
    let answers: ReadonlyArray<{ address: string; family: number }>;
    if (overridden !== undefined) {
      answers = overridden.map((address) => ({ address, family: net.isIP(address) }));
    } else {
      try {
        answers = await this.resolve(host);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        throw new AstridError("ASTRID_ERR_HTTP_FAILED", `cannot resolve ${JSON.stringify(host)}${code ? ` (${code})` : ""}`, { cause: err });
      }
    }
    if (answers.length === 0) throw new AstridError("ASTRID_ERR_HTTP_FAILED", `cannot resolve ${JSON.stringify(host)}: no addresses`);
    if (answers.length > MAX_ADDRESSES) {
      throw new AstridError("ASTRID_ERR_NET_ADDRESS_BLOCKED", `${JSON.stringify(host)} resolves to ${answers.length} addresses, more than the ${MAX_ADDRESSES} the guard checks`);
    }
    const addresses = answers.map((a) => canonicalIp(a.address) ?? a.address);
    // Every address is checked, not only the one used: a name that mixes public and private answers is refused.
    for (const address of addresses) this.check(host, address, `${JSON.stringify(host)} resolves to ${address}`);
    const chosen = addresses[0]!;
    return { host, address: chosen, family: net.isIP(chosen) as 4 | 6 };
  }

  /**
   * Every address `hostname` resolves to that capsules may reach, the others left out (a socket capsule's
   * `lookup-host`); empty when none is. Throws ASTRID_ERR_HTTP_FAILED when the name does not resolve.
   */
  async reachableAddresses(hostname: string): Promise<string[]> {
    const host = normalizeUrlHost(hostname);
    const literal = canonicalIp(host);
    let addresses: string[];
    if (literal !== null) addresses = [literal];
    else if (this.seams?.dns[host] !== undefined) addresses = [...this.seams.dns[host]!];
    else if (host === "localhost" || host.endsWith(".localhost")) return [];
    else {
      try {
        addresses = (await this.resolve(host)).map((a) => a.address);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "";
        throw new AstridError("ASTRID_ERR_HTTP_FAILED", `cannot resolve ${JSON.stringify(host)}${code ? ` (${code})` : ""}`, { cause: err });
      }
    }
    const canonical = addresses.slice(0, MAX_ADDRESSES).map((a) => canonicalIp(a) ?? a);
    return [...new Set(canonical)].filter((a) => this.publicAddresses.has(a) || blockedRange(a) === null);
  }

  private check(host: string, address: string, how: string): void {
    if (this.publicAddresses.has(address)) return;
    const range = blockedRange(address);
    if (!range) return;
    const article = /^[aeiou]/i.test(range.what) ? "an" : "a";
    throw blocked(host, `${how}, ${article} ${range.what} address (${range.range})`);
  }
}

function blocked(host: string, why: string): AstridError {
  return new AstridError("ASTRID_ERR_NET_ADDRESS_BLOCKED", `refused to connect to ${JSON.stringify(host)}: ${why}; capsules may reach public internet addresses only`);
}
