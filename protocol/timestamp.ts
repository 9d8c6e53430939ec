/**
 * RFC 3339 UTC timestamps for envelopes. Formatting a Date costs more than the rest of a small publish, and
 * messages arrive many per millisecond under load, so the string is reused within the same millisecond.
 */
let lastMs = -1;
let lastIso = "";

/** The current time as an RFC 3339 UTC string with milliseconds. */
export function nowRfc3339(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
}
