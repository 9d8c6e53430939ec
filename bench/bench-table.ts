/**
 * The rows a benchmark contributes to `npm run bench`'s table. Every script ends with one `BENCH_JSON {...}` line;
 * `bench/run-all.ts` collects them. A ratio is always "higher is better" (floor / figure for times, figure / floor for
 * rates), and `target` is the least acceptable ratio, so one comparison gives every row's verdict.
 */
export interface BenchRow {
  /** What was measured, e.g. "GetStatus round trips, 32 clients". */
  name: string;
  /** The measured figure, with its unit. */
  figure: number;
  /** The baseline measured in the same run, in the same unit. */
  floor: number;
  unit: string;
  /** Higher is better. */
  ratio: number;
  /** The least acceptable ratio; null for a figure kept for the record without a target. */
  target: number | null;
}

export const BENCH_JSON_PREFIX = "BENCH_JSON ";

/** A rate (higher is better) against its floor: the ratio is figure / floor. */
export function rateRow(name: string, figure: number, floor: number, unit: string, target: number | null): BenchRow {
  return { name, figure, floor, unit, ratio: figure / floor, target };
}

/** A time (lower is better) against its floor: the ratio is floor / figure. */
export function timeRow(name: string, figure: number, floor: number, unit: string, target: number | null): BenchRow {
  return { name, figure, floor, unit, ratio: floor / figure, target };
}

/** Prints the machine-readable line `bench/run-all.ts` reads; call once, last. */
export function emitRows(rows: BenchRow[]): void {
  console.log(BENCH_JSON_PREFIX + JSON.stringify({ rows }));
}
