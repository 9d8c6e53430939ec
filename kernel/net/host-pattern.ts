/**
 * The host lists of outbound HTTP: a capsule manifest's `[capabilities] net` and a principal profile's
 * `[network] egress` use the same entries, matched against a URL's host and port.
 *
 * - `example.com` — that host and every name under it (`api.example.com`), as in the reference;
 * - `*.example.com` — only the names under it, not `example.com` itself;
 * - `*` — any host;
 * - any of those with `:port` (`example.com:8443`, `*:443`, `[2001:db8::1]:80`) — that port only; without one, any port.
 * - an IP address (`93.184.216.34`, `[2606:4700::1]`) — that address only, as written in the URL.
 *
 * Names are compared the way URLs spell them: lower case, punycode for international names, no trailing dot.
 */
import { domainToASCII } from "node:url";
import { canonicalIp } from "./address-table";

/** A parsed host entry. */
export interface HostPattern {
  /** `any` for `*`, `subdomains` for `*.x`, `domain` for a name (itself and below), `address` for an IP. */
  kind: "any" | "subdomains" | "domain" | "address";
  /** The normalised name or canonical address ("" for `any`). */
  host: string;
  /** The port the entry is limited to, or null for any port. */
  port: number | null;
}

/** The host of a URL as patterns see it: `URL.hostname` without brackets or a trailing dot. */
export function normalizeUrlHost(hostname: string): string {
  const bare = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1) : hostname;
  const ip = canonicalIp(bare);
  if (ip !== null) return ip;
  return bare.endsWith(".") ? bare.slice(0, -1) : bare;
}

/** Parses one entry; null when it cannot name a host (it then matches nothing). */
export function parseHostPattern(entry: string): HostPattern | null {
  let text = entry.trim().toLowerCase();
  if (text === "") return null;
  let port: number | null = null;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracketed) {
    const ip = canonicalIp(bracketed[1]!);
    if (ip === null || !ip.includes(":")) return null;
    port = bracketed[2] !== undefined ? Number(bracketed[2]) : null;
    return port !== null && (port < 1 || port > 65_535) ? null : { kind: "address", host: ip, port };
  }
  // A bare IPv6 address has several colons; a host:port has one.
  if (text.split(":").length === 2) {
    const [host, digits] = text.split(":") as [string, string];
    if (!/^\d{1,5}$/.test(digits)) return null;
    port = Number(digits);
    if (port < 1 || port > 65_535) return null;
    text = host;
  }
  const ip = canonicalIp(text);
  if (ip !== null) return { kind: "address", host: ip, port };
  if (text === "*") return { kind: "any", host: "", port };
  const wildcard = text.startsWith("*.");
  const name = wildcard ? text.slice(2) : text;
  if (/[*\s/\\?#@%[\]]/.test(name)) return null;
  const ascii = domainToASCII(name.endsWith(".") ? name.slice(0, -1) : name);
  if (ascii === "" || ascii.includes("/")) return null;
  return { kind: wildcard ? "subdomains" : "domain", host: ascii, port };
}

/** True when `pattern` covers `host` (normalised, see normalizeUrlHost) on `port`. */
export function patternCovers(pattern: HostPattern, host: string, port: number): boolean {
  if (pattern.port !== null && pattern.port !== port) return false;
  switch (pattern.kind) {
    case "any":
      return true;
    case "address":
      return host === pattern.host;
    case "subdomains":
      // A name entry never covers an IP address by its digits (`0.1` must not cover `127.0.0.1`).
      return canonicalIp(host) === null && host.endsWith(`.${pattern.host}`);
    case "domain":
      return canonicalIp(host) === null && (host === pattern.host || host.endsWith(`.${pattern.host}`));
  }
}

/** True when some entry of `entries` covers `host` on `port`. */
export function hostListCovers(entries: readonly string[], host: string, port: number): boolean {
  return entries.some((entry) => {
    const pattern = parseHostPattern(entry);
    return pattern !== null && patternCovers(pattern, host, port);
  });
}
