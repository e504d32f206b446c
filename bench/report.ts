// Runs every benchmark and writes docs/performance.md: the figures, the command behind each,
// the machine, and the profile of the certbound server under the keep-alive and handshake
// loads. Bounded: each bench is bounded in rounds and time; the whole run takes ~10 minutes.
// Usage: npm run build && node --import tsx bench/report.ts [--quick]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import { summarizeSources } from './lib/profile-summary.js';

const quick = process.argv.includes('--quick');
const PROFILE_DIR = '/tmp/certbound-profiles';

interface Run { title: string; command: string; output: string; ok: boolean; seconds: number; load: string }

function runBench(title: string, args: string[], timeoutS: number, nodeArgs: string[] = []): Run {
  const command = ['node', ...nodeArgs, '--import', 'tsx', ...args].join(' ');
  const load = loadavg().map((x) => x.toFixed(1)).join(' ');
  const t0 = Date.now();
  process.stderr.write(`report: ${command}\n`);
  const r = spawnSync(process.execPath, [...nodeArgs, '--import', 'tsx', ...args], { encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 16 << 20 });
  const ok = r.status === 0;
  const output = ok ? r.stdout.trim() : `(failed: ${r.error?.message ?? `exit ${r.status}`})\n\n${(r.stdout + r.stderr).trim().slice(-2000)}`;
  return { title, command, output, ok, seconds: (Date.now() - t0) / 1000, load };
}

function newestProfile(since: number): string | undefined {
  if (!existsSync(PROFILE_DIR)) return undefined;
  const files = readdirSync(PROFILE_DIR).map((f) => join(PROFILE_DIR, f)).filter((f) => statSync(f).mtimeMs >= since);
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
    `- Load average when the report started: ${loadavg().map((x) => x.toFixed(2)).join(' ')} (the machine is shared; see "Reading the figures")`,
    `- Date: ${new Date().toISOString()}`,
  ].join('\n');
}

const header = machine();
const r = quick ? ['3', '2'] : ['3', '4'];
const runs: Run[] = [];
runs.push(runBench('Keep-alive requests/s (bench 1)', ['bench/keepalive.ts', r[0] as string, r[1] as string, '32'], 300));
runs.push(runBench('Full handshakes/s (bench 2)', ['bench/handshakes.ts', r[0] as string, r[1] as string, '16'], 300));
runs.push(runBench('Resumed vs full handshakes (TLS 1.3 and 1.2 tickets)', ['bench/resumption.ts', quick ? '3' : '5', r[1] as string, '16'], 600));
runs.push(runBench('Memory per idle connection (bench 3)', ['bench/memory.ts', quick ? '1000' : '1000,5000', '3'], 600));
runs.push(runBench('Multi-core: 1 vs 2 workers', ['bench/cluster.ts', '3', r[1] as string], 400));
if (existsSync('bench/on-demand.ts')) runs.push(runBench('On-demand negotiation latency (issue 5)', ['bench/on-demand.ts', quick ? '60' : '200', '60'], 200));
if (existsSync('bench/ocsp-handshakes.ts')) runs.push(runBench('OCSP stapling cost (issue 6)', ['bench/ocsp-handshakes.ts', '--rounds', '3'], 400, ['--expose-gc']));

// Profiles of the certbound server under bench 1 and bench 2.
rmSync(PROFILE_DIR, { recursive: true, force: true });
mkdirSync(PROFILE_DIR, { recursive: true });
const profiles: Array<{ title: string; command: string; table: string }> = [];
for (const [title, script] of [['keep-alive (bench 1)', 'bench/keepalive.ts'], ['handshakes (bench 2)', 'bench/handshakes.ts']] as const) {
  const since = Date.now();
  const pr = runBench(title, [script, '3', '2', script.includes('keepalive') ? '32' : '16', '60', '--profile'], 200);
  const file = newestProfile(since);
  profiles.push({ title, command: pr.command, table: file ? summarizeSources(file, 14) : `(no profile written: ${pr.output.slice(0, 300)})` });
}

const section = (x: Run) => `## ${x.title}\n\n\`\`\`sh\n${x.command}\n\`\`\`\n\n(${x.seconds.toFixed(0)} s, load average at start ${x.load})\n\n${x.output}\n`;
const doc = readFileSync('bench/performance-notes.md', 'utf8')
  .replace('{{MACHINE}}', header)
  .replace('{{RESULTS}}', runs.map(section).join('\n'))
  .replace('{{PROFILES}}', profiles.map((p) => `### certbound server under ${p.title}\n\n\`\`\`sh\n${p.command}\n\`\`\`\n\n${p.table}\n`).join('\n'));
writeFileSync('docs/performance.md', doc);
process.stderr.write(`report: docs/performance.md written (${runs.filter((x) => !x.ok).length} bench(es) failed)\n`);
