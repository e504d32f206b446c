// One side-by-side comparison: both servers run at once (each pinned to the server core, idle
// while the other is measured), rounds alternate which goes first, medians and ratios printed.
import { startChild, type BenchServer, type CpuStats } from './child.js';
import type { LoadResult, Window } from './load.js';
import { median, table } from './stats.js';

export interface Side {
  readonly name: string;
  readonly script: string;
  readonly args: string[];
  readonly nodeArgs?: string[];
  readonly cpus?: string;
}

export interface SideResult { name: string; perSecond: number[]; perCpuSecond: number[]; errors: number; cpuShare: number[] }

export interface Comparison { sides: SideResult[]; rounds: number; ratio: number; cpuRatio: number; markdown: string }

/** Runs `load` against each side, `rounds` times, alternating the order, within `maxMs`. */
export async function compare(sides: readonly [Side, Side], rounds: number, maxMs: number, unit: string, load: (port: number, window: Window) => Promise<LoadResult>): Promise<Comparison> {
  const servers: BenchServer[] = [];
  try {
    for (const s of sides) servers.push(await startChild(s.script, s.args, { ...(s.nodeArgs ? { nodeArgs: s.nodeArgs } : {}), ...(s.cpus ? { cpus: s.cpus } : {}) }));
    const results: SideResult[] = sides.map((s) => ({ name: s.name, perSecond: [], perCpuSecond: [], errors: 0, cpuShare: [] }));
    const start = Date.now();
    let done = 0;
    for (let round = 0; round < rounds && (done < 3 || Date.now() - start < maxMs); round++, done++) {
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        const server = servers[i] as BenchServer;
        // Server CPU is read at the edges of the measured window (after the warm-up).
        let before: CpuStats | undefined;
        let after: CpuStats | undefined;
        const r = await load(server.port, { start: async () => { before = await server.ask<CpuStats>('stats'); }, end: async () => { after = await server.ask<CpuStats>('stats'); } });
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
      ['server', `${unit}/s (median)`, `${unit}/s per rounds`, `${unit} per server CPU-second (median)`, 'server CPU busy', 'errors'],
      results.map((r) => [r.name, median(r.perSecond), r.perSecond.map((x) => Math.round(x)).join(', '), median(r.perCpuSecond), `${Math.round(median(r.cpuShare) * 100)} %`, r.errors]),
    ) + `\n\nratio ${a.name} / ${b.name}: **${ratio.toFixed(3)}** by ${unit}/s, **${cpuRatio.toFixed(3)}** by ${unit} per server CPU-second (${a.perSecond.length} rounds each, alternating).`;
    return { sides: results, rounds: a.perSecond.length, ratio, cpuRatio, markdown };
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
