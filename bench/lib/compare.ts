// One side-by-side comparison: every server runs at once (each pinned to the server core, idle
// while another is measured), rounds alternate the order (forward, then backward), medians,
// per-round ranges and ratios per server CPU-second are printed. The first side is the one
// compared: ratios are first / each other side.
import { startChild, type BenchServer, type CpuStats } from './child.js';
import type { LoadResult, Window } from './load.js';
import { median, table } from './stats.js';

export const DEFAULT_ROUNDS = 5;

export interface Side {
  readonly name: string;
  readonly script?: string;
  readonly args?: string[];
  readonly nodeArgs?: string[];
  readonly cpus?: string;
  /** Starts a server that is not a bench-server.ts child (nginx); wins over script. */
  readonly start?: () => Promise<BenchServer>;
  /** The path the load asks for on this side (default: the load's own). */
  readonly path?: string;
  /** Runs once after the server started, before any round (e.g. checks it answers what it should). */
  readonly check?: (port: number) => Promise<void>;
}

export interface SideResult { name: string; perSecond: number[]; perCpuSecond: number[]; errors: number; cpuShare: number[] }

export interface Comparison {
  sides: SideResult[];
  rounds: number;
  /** First / second side, by wall-clock rate and by rate per server CPU-second (medians). */
  ratio: number;
  cpuRatio: number;
  markdown: string;
}

/** The ratio of two series round by round (a[i] / b[i]): its min and max give the spread. */
export function perRoundRatios(a: readonly number[], b: readonly number[]): number[] {
  return a.slice(0, b.length).map((x, i) => x / (b[i] as number));
}

export function range(xs: readonly number[], digits = 3): string {
  if (xs.length === 0) return 'n/a';
  return `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
}

/**
 * Runs `load` against each side, `rounds` times (at least 3 even past `maxMs`, none started
 * after it beyond those), alternating the order.
 */
export async function compare(sides: readonly Side[], rounds: number, maxMs: number, unit: string, load: (port: number, window: Window, side: Side) => Promise<LoadResult>): Promise<Comparison> {
  if (sides.length < 2) throw new Error('compare needs two sides or more');
  const servers: BenchServer[] = [];
  try {
    for (const s of sides) {
      const server = s.start ? await s.start() : await startChild(s.script as string, s.args ?? [], { ...(s.nodeArgs ? { nodeArgs: s.nodeArgs } : {}), ...(s.cpus ? { cpus: s.cpus } : {}) });
      servers.push(server);
      await s.check?.(server.port);
    }
    const results: SideResult[] = sides.map((s) => ({ name: s.name, perSecond: [], perCpuSecond: [], errors: 0, cpuShare: [] }));
    const start = Date.now();
    const forward = sides.map((_, i) => i);
    for (let round = 0; round < rounds && (round < 3 || Date.now() - start < maxMs); round++) {
      const order = round % 2 === 0 ? forward : [...forward].reverse();
      for (const i of order) {
        const server = servers[i] as BenchServer;
        // Server CPU is read at the edges of the measured window (after the warm-up).
        let before: CpuStats | undefined;
        let after: CpuStats | undefined;
        const r = await load(server.port, { start: async () => { before = await server.ask<CpuStats>('stats'); }, end: async () => { after = await server.ask<CpuStats>('stats'); } }, sides[i] as Side);
        if (!before || !after) throw new Error('the load generator did not report its window');
        const cpuSeconds = (after.cpuMicros - before.cpuMicros) / 1e6;
        const res = results[i] as SideResult;
        res.perSecond.push(r.perSecond);
        res.perCpuSecond.push(r.count / cpuSeconds);
        res.cpuShare.push(cpuSeconds / r.seconds);
        res.errors += r.errors;
      }
    }
    const [a, b] = results as [SideResult, SideResult];
    const ratio = median(a.perSecond) / median(b.perSecond);
    const cpuRatio = median(a.perCpuSecond) / median(b.perCpuSecond);
    const markdown = table(
      ['server', `${unit}/s (median)`, `${unit}/s per round`, `${unit} per server CPU-second (median)`, 'per CPU-second, min–max', 'server CPU busy', 'errors'],
      results.map((r) => [r.name, median(r.perSecond), r.perSecond.map((x) => Math.round(x)).join(', '), median(r.perCpuSecond), range(r.perCpuSecond, 0), `${Math.round(median(r.cpuShare) * 100)} %`, String(r.errors)]),
    ) + '\n\n' + table(
      [`ratio per server CPU-second`, 'median of medians', 'per round, min–max', `by ${unit}/s (wall clock)`],
      results.slice(1).map((o) => [`${a.name} / ${o.name}`, `**${(median(a.perCpuSecond) / median(o.perCpuSecond)).toFixed(3)}**`, range(perRoundRatios(a.perCpuSecond, o.perCpuSecond)), (median(a.perSecond) / median(o.perSecond)).toFixed(3)]),
    ) + `\n\n${a.perSecond.length} rounds each, alternating the order.`;
    return { sides: results, rounds: a.perSecond.length, ratio, cpuRatio, markdown };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
