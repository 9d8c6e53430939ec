/** Which listen addresses only this machine can reach. */

/** True for an address that only this machine can reach (`localhost`, 127.0.0.0/8, `::1`). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}
