/** Shared bits of the benchmark scripts: numeric `--name value` options and the statistics they print. */

const args = process.argv.slice(2);

/** The number after `--name`, or `fallback`. */
export function option(name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
}

/** The whole number ≥ 1 after `--name`, or `fallback`; anything else ends `script` with exit code 2, naming it. */
export function count(script: string, name: string, fallback: number): number {
  const value = option(name, fallback);
  if (Number.isInteger(value) && value >= 1) return value;
  console.error(`${script}: --${name} must be a whole number ≥ 1 (got ${String(value)})`);
  return process.exit(2);
}

/** True when `--name` was given. */
export function flag(name: string): boolean {
  return args.includes(`--${name}`);
}

/** The median of `xs` (the mean of the middle two for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The `p`th percentile of `xs` (nearest rank). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((s.length * p) / 100))]!;
}

/** Resolves after `ms`. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
