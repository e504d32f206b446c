// Summarizes a .cpuprofile (node --cpu-prof): self time by function and inclusive time of
// the functions whose names match a pattern, or self time inside one function's subtree.
// Usage: node --import tsx bench/lib/profile-summary.ts FILE [top=25] [--under FUNCTION]
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[]; hitCount?: number }
interface Profile { nodes: Node[]; samples: number[]; timeDeltas: number[] }

/** A profile as node id → node, child → parent, self time per node (idle samples left out: shares are of the busy time) and the busy total. */
function loadProfile(file: string): { byId: Map<number, Node>; parent: Map<number, number>; self: Map<number, number>; total: number } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  for (const n of p.nodes) if (n.callFrame.functionName === '(idle)') self.delete(n.id);
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  return { byId, parent, self, total };
}

export function summarize(file: string, top = 25): string {
  const { byId, parent, self, total } = loadProfile(file);
  const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules\/)?/, '')}:${n.callFrame.lineNumber + 1}`;
  const selfBy = new Map<string, number>();
  const inclBy = new Map<string, number>();
  for (const [id, t] of self) {
    const n = byId.get(id) as Node;
    selfBy.set(label(n), (selfBy.get(label(n)) ?? 0) + t);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const l = label(byId.get(cur) as Node);
      if (seen.has(l)) continue;
      seen.add(l);
      inclBy.set(l, (inclBy.get(l) ?? 0) + t);
    }
  }
  const pct = (t: number) => `${((100 * t) / total).toFixed(1)} %`;
  const rows = (m: Map<string, number>) => [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([l, t]) => `| ${pct(t)} | \`${l}\` |`).join('\n');
  return `busy: ${(total / 1e6).toFixed(2)} s. self time (top ${top}):\n\n| share | function |\n| --- | --- |\n${rows(selfBy)}\n\ninclusive time (top ${top}):\n\n| share | function |\n| --- | --- |\n${rows(inclBy)}`;
}

/**
 * The frames that matter for certbound's overhead: inclusive share of busy time of every
 * function in src/ (certbound's own code) and of the Node calls it makes on the hot paths.
 */
export function summarizeSources(file: string, top = 14): string {
  const { byId, parent, self, total } = loadProfile(file);
  const interesting = (n: Node) => n.callFrame.url.includes('/src/') || /^(TLSSocket\.getPeer\w+|X509Certificate|writev|\(garbage collector\)|createChildLogger|child|(?:preHandler|onRequest|onResponse)\w*)$/.test(n.callFrame.functionName);
  const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} (${n.callFrame.url.includes('/src/') ? n.callFrame.url.replace(/^.*\/src\//, 'src/') : n.callFrame.url.replace(/^.*\//, '') || 'native'})`;
  const incl = new Map<string, number>();
  for (const [id, t] of self) {
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur) as Node;
      if (!interesting(n)) continue;
      const l = label(n);
      if (seen.has(l)) continue;
      seen.add(l);
      incl.set(l, (incl.get(l) ?? 0) + t);
    }
  }
  const rows = [...incl].sort((a, b) => b[1] - a[1]).slice(0, top).map(([l, t]) => `| ${((100 * t) / total).toFixed(1)} % | \`${l}\` |`);
  return `Busy (non-idle) time ${(total / 1e6).toFixed(2)} s, including start-up. Inclusive share of busy time:\n\n| share | function |\n| --- | --- |\n${rows.join('\n')}`;
}

/**
 * Where the time under `functionName` goes: self time of every frame that has a frame of that
 * name among its callers, as a share of busy time and in ms.
 */
export function summarizeUnder(file: string, functionName: string, top = 25): string {
  const { byId, parent, self, total } = loadProfile(file);
  const label = (n: Node) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/^.*\/(node_modules\/)?/, '')}:${n.callFrame.lineNumber + 1}`;
  const by = new Map<string, number>();
  let under = 0;
  for (const [id, t] of self) {
    let inside = false;
    for (let cur: number | undefined = id; cur !== undefined && !inside; cur = parent.get(cur)) inside = (byId.get(cur) as Node).callFrame.functionName === functionName;
    if (!inside) continue;
    under += t;
    const l = label(byId.get(id) as Node);
    by.set(l, (by.get(l) ?? 0) + t);
  }
  const rows = [...by].sort((a, b) => b[1] - a[1]).slice(0, top).map(([l, t]) => `| ${((100 * t) / total).toFixed(1)} % | ${(t / 1000).toFixed(1)} | \`${l}\` |`);
  return `\`${functionName}\` and what it calls: ${((100 * under) / total).toFixed(1)} % of busy time (${(under / 1000).toFixed(0)} ms of ${(total / 1000).toFixed(0)} ms). Self time under it:\n\n| share | ms | function |\n| --- | --- | --- |\n${rows.join('\n')}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const u = args.indexOf('--under');
  const under = u >= 0 ? args.splice(u, 2)[1] : undefined;
  const top = Number(args[1] ?? 25);
  console.log(under ? summarizeUnder(args[0] as string, under, top) : summarize(args[0] as string, top));
}
