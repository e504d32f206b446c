// Medians, ratios and markdown tables for the bench output.
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function table(header: readonly string[], rows: ReadonlyArray<readonly (string | number)[]>): string {
  const cell = (v: string | number) => (typeof v === 'number' ? fmt(v) : v);
  return [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');
}

export function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return Math.round(n).toLocaleString('en-US');
  if (Math.abs(n) >= 10) return n.toFixed(1);
  return n.toFixed(3);
}

/** The prefix of the lines that bench/report.ts collects into the targets table (and leaves out of the section). */
export const TARGET_PREFIX = '@@target ';

export interface TargetLine { readonly target: string; readonly measured: string; readonly goal: string; readonly met: boolean }

/** Prints one target's measured value for bench/report.ts's summary table. */
export function printTarget(t: TargetLine): void {
  console.log(TARGET_PREFIX + JSON.stringify(t));
}
