/**
 * The linear-memory ceiling of a WebAssembly capsule. A module defines its own memory, so the host cannot hand it a
 * smaller one; instead each memory the module defines gets `maximum = min(its own, the ceiling)` written into its
 * memory section before compiling. `memory.grow` past the ceiling then returns -1 inside the guest, as under the
 * reference's resource limiter, instead of taking the worker's memory.
 */

const PAGE = 65536;

/** Reads an unsigned LEB128 at `at`: its value and the offset after it. */
function readU32(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = bytes[at++];
    if (byte === undefined) throw new Error("truncated LEB128");
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7;
    if (shift > 35) throw new Error("LEB128 too long");
  }
}

function writeU32(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return out;
}

/**
 * `module` with every defined 32-bit memory capped at `maxBytes` (whole pages). Throws when a memory's minimum is
 * already above the ceiling (the guest cannot start within it) or it is a 64-bit memory (not capped here: refused).
 */
export function capMemories(module: Uint8Array, maxBytes: number): Uint8Array {
  const maxPages = Math.floor(maxBytes / PAGE);
  if (module.length < 8) throw new Error("not a WebAssembly module");
  const parts: Uint8Array[] = [module.subarray(0, 8)];
  let at = 8;
  while (at < module.length) {
    const id = module[at]!;
    const [size, bodyStart] = readU32(module, at + 1);
    const bodyEnd = bodyStart + size;
    if (id !== 5) {
      parts.push(module.subarray(at, bodyEnd));
      at = bodyEnd;
      continue;
    }
    let p = bodyStart;
    const [count, afterCount] = readU32(module, p);
    p = afterCount;
    const body: number[] = writeU32(count);
    for (let i = 0; i < count; i++) {
      const flags = module[p++]!;
      if (flags & 0x04) throw new Error("a 64-bit memory cannot be capped by this host");
      const [min, afterMin] = readU32(module, p);
      p = afterMin;
      let max = Infinity;
      if (flags & 0x01) [max, p] = readU32(module, p);
      if (min > maxPages) throw new Error(`its memory starts at ${min * 64} KiB, above the ${maxBytes} byte limit`);
      body.push(flags | 0x01, ...writeU32(min), ...writeU32(Math.min(max, maxPages)));
    }
    parts.push(Uint8Array.of(5, ...writeU32(body.length), ...body));
    at = bodyEnd;
  }
  const out = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}
