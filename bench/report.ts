// Runs every benchmark and writes docs/performance.md from bench/performance-notes.md: the
// figures, the command behind each, the machine, a table of the issue's targets against what
// was measured, and the profile of the certbound server under the keep-alive and handshake
// loads. Bounded: each bench is bounded in rounds and time; the whole run takes ~15 minutes
// (--quick: ~6).
// Usage: npm run build && node --import tsx bench/report.ts [--quick]
// One function per section (below): a new bench adds its function to SECTIONS.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { summarizeSources } from './lib/profile-summary.js';
import { table, TARGET_PREFIX, type TargetLine } from './lib/stats.js';

const quick = process.argv.includes('--quick');
const PROFILE_DIR = '/tmp/certbound-profiles';
/** Rounds and seconds per round of the load benches. */
const ROUNDS = quick ? '3' : '5';
const SECONDS = quick ? '2' : '4';

interface Run { title: string; command: string; output: string; ok: boolean; seconds: number; load: string; targets: TargetLine[] }

function runBench(title: string, args: string[], timeoutS: number, nodeArgs: string[] = []): Run {
  const command = ['node', ...nodeArgs, '--import', 'tsx', ...args].join(' ');
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  const t0 = Date.now();
  process.stderr.write(`report: ${command}\n`);
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', ...args], { encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 16 << 20 });
  const ok = r.status === 0;
  const lines = (r.stdout ?? '').split('\n');
  const targets = lines.filter((l) => l.startsWith(TARGET_PREFIX)).map((l) => JSON.parse(l.slice(TARGET_PREFIX.length)) as TargetLine);
  const stdout = lines.filter((l) => !l.startsWith(TARGET_PREFIX)).join('\n').trim();
  const output = ok ? stdout : `(failed: ${r.error?.message ?? `exit ${r.status}`})\n\n${(stdout + '\n' + (r.stderr ?? '')).trim().slice(-2000)}`;
  return { title, command, output, ok, seconds: (Date.now() - t0) / 1000, load, targets };
}

// ---- sections: each runs its bench(es) and returns the runs to print, in order ----

function keepAliveSection(): Run[] {
  return [runBench('Keep-alive requests/s (bench 1)', ['bench/keepalive.ts', ROUNDS, SECONDS, '32', '300', '--depth', '16'], 600)];
}

function handshakeSection(): Run[] {
  return [runBench('Full handshakes/s (bench 2)', ['bench/handshakes.ts', ROUNDS, SECONDS, '16', '300'], 500)];
}

function resumptionSection(): Run[] {
  return [runBench('Resumed vs full handshakes (TLS 1.3 and 1.2 tickets)', ['bench/resumption.ts', ROUNDS, SECONDS, '16', '600'], 900)];
}

function memorySection(): Run[] {
  return [runBench('Memory per idle connection (bench 3)', ['bench/memory.ts', quick ? '1000' : '1000,5000', '3'], 600)];
}

function clusterSection(): Run[] {
  return [runBench('Multi-core: 1 vs 2 workers', ['bench/cluster.ts', '3', SECONDS], 400)];
}

function onDemandSection(): Run[] {
  return [
    runBench('On-demand negotiation latency (issue 5)', ['bench/on-demand.ts', quick ? '60' : '200', '60'], 200),
    runBench('On-demand negotiation cost against a bare renegotiation', ['bench/on-demand-cost.ts', ROUNDS, SECONDS, '8', '300'], 500),
  ];
}

function trustChecksSection(): Run[] {
  return [
    runBench('OCSP stapling and revocation checking, on vs off', ['bench/trust-checks.ts', ROUNDS, SECONDS, '8', '300'], 700),
    // The stapler's memory per open OCSP handle (and the bare tls.Server stapling rate).
    runBench('OCSP stapling cost (issue 6)', ['bench/ocsp-handshakes.ts', '--rounds', '3'], 400, ['--expose-gc']),
  ];
}

const SECTIONS: ReadonlyArray<() => Run[]> = [keepAliveSection, handshakeSection, resumptionSection, memorySection, clusterSection, onDemandSection, trustChecksSection];

/** Profiles of the certbound server under bench 1 and bench 2. */
function profileSection(): string {
  rmSync(PROFILE_DIR, { recursive: true, force: true });
  mkdirSync(PROFILE_DIR, { recursive: true });
  const out: string[] = [];
  for (const [title, script] of [['keep-alive (bench 1)', 'bench/keepalive.ts'], ['handshakes (bench 2)', 'bench/handshakes.ts']] as const) {
    const since = Date.now();
    const pr = runBench(title, [script, '3', '2', script.includes('keepalive') ? '32' : '16', '60', '--profile', '--no-nginx'], 200);
    const file = newestProfile(since);
    const body = file ? summarizeSources(file, 14) : `(no profile written: ${pr.output.slice(0, 300)})`;
    out.push(`### certbound server under ${title}\n\n\`\`\`sh\n${pr.command}\n\`\`\`\n\n${body}\n`);
  }
  return out.join('\n');
}

function newestProfile(since: number): string | undefined {
  if (!existsSync(PROFILE_DIR)) return undefined;
  // The main thread's profiles only (a worker thread's have another sequence suffix).
  const files = readdirSync(PROFILE_DIR).filter((f) => /\.0\.\d+\.cpuprofile$/.test(f)).map((f) => join(PROFILE_DIR, f)).filter((f) => statSync(f).mtimeMs >= since);
  // The certbound server is the first child started: its profile has the lowest sequence.
  return files.sort()[0];
}

function machine(): string {
  const sh = (cmd: string) => spawnSync('sh', ['-c', cmd], { encoding: 'utf8' }).stdout.trim();
  const model = cpus()[0]?.model ?? 'unknown';
  return [
    `- CPU: ${model}, ${cpus().length} logical CPUs (\`nproc\`: ${sh('nproc')}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    `- Kernel: ${sh('uname -sr')}`,
    `- Node.js ${process.version}, OpenSSL ${process.versions.openssl} (Node's); \`openssl version\`: ${sh('openssl version')}`,
    `- fastify ${JSON.parse(readFileSync('node_modules/fastify/package.json', 'utf8')).version}, taskset: ${sh('command -v taskset') || 'absent'}`,
    `- nginx: ${sh('/usr/sbin/nginx -v 2>&1') || 'absent (the nginx columns are left out)'}`,
    `- Load average when the report started: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (the machine is shared; see "Reading the figures")`,
    `- Date: ${new Date().toISOString()}${quick ? ' (--quick: 3 rounds of 2 s; the published figures come from a full run)' : ''}`,
  ].join('\n');
}

function targetsTable(runs: readonly Run[]): string {
  const rows = runs.flatMap((r) => r.targets.map((t) => [t.target, t.measured, t.goal, t.met ? 'met' : '**not met**']));
  if (rows.length === 0) return '(no bench reported a target)';
  return table(['target (ratio per server CPU-second, medians)', 'measured', 'goal', ''], rows);
}

const header = machine();
const runs = SECTIONS.flatMap((section) => section());
const profiles = profileSection();
const section = (x: Run) => `## ${x.title}\n\n\`\`\`sh\n${x.command}\n\`\`\`\n\n(${x.seconds.toFixed(0)} s, load average at start ${x.load})\n\n${x.output}\n`;
const doc = readFileSync('bench/performance-notes.md', 'utf8')
  // Replacer functions: a `$` in a bench's output is text, not a replacement pattern.
  .replace('{{MACHINE}}', () => header)
  .replace('{{TARGETS}}', () => targetsTable(runs))
  .replace('{{RESULTS}}', () => runs.map(section).join('\n'))
  .replace('{{PROFILES}}', () => profiles);
writeFileSync('docs/performance.md', doc);
process.stderr.write(`report: docs/performance.md written (${runs.filter((x) => !x.ok).length} bench(es) failed)\n`);
