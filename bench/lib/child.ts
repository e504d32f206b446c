// Bench processes: the server in a child pinned to core 0, the load generator (this process)
// re-executed on core 1, both with taskset (util-linux) when it is there.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface, type Interface } from 'node:readline';
import { ensureDevPki } from '../../src/tls/dev-pki.js';
import type { DevPkiPaths } from '../../src/tls/dev-pki.js';

export const HAS_TASKSET = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset');
export const SERVER_CPUS = '0';
export const LOAD_CPUS = '1';

/**
 * Re-runs this script under `taskset -c LOAD_CPUS` (once) and exits with its code; returns
 * when this process is already the pinned one, or when taskset is missing.
 */
export function pinSelf(cpus = LOAD_CPUS): void {
  if (!HAS_TASKSET || process.env.CERTBOUND_BENCH_PINNED) return;
  const r = spawnSync('taskset', ['-c', cpus, process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, CERTBOUND_BENCH_PINNED: cpus } });
  process.exit(r.status ?? 1);
}

/** The dev PKI the benches use (created in .certbound on first run, like `certbound serve`). */
export async function benchPki(): Promise<DevPkiPaths> {
  return (await ensureDevPki('.certbound')).paths;
}

export interface BenchServer {
  readonly port: number;
  readonly child: ChildProcess;
  /** Sends one stdin command and resolves with its JSON answer. */
  ask<T>(command: string): Promise<T>;
  stop(): Promise<void>;
}

/** Starts `node [nodeArgs] script args` pinned to `cpus`; it prints {"port":N} first. */
export async function startChild(script: string, args: string[], opts: { cpus?: string; nodeArgs?: string[]; shellPrefix?: string } = {}): Promise<BenchServer> {
  const cpus = opts.cpus ?? SERVER_CPUS;
  const node = [process.execPath, ...(opts.nodeArgs ?? []), '--import', 'tsx', script, ...args];
  const argv = HAS_TASKSET ? ['taskset', '-c', cpus, ...node] : node;
  // A shell prefix (e.g. `ulimit -n 20000;`) runs in the child's shell before exec.
  const child = opts.shellPrefix
    ? spawn('sh', ['-c', `${opts.shellPrefix} exec "$@"`, 'sh', ...argv], { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: Interface = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  lines.on('line', (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else process.stderr.write(`[server] ${line}\n`);
  });
  const next = () => new Promise<string>((resolve, reject) => {
    waiting.push(resolve);
    child.once('exit', (code) => reject(new Error(`bench server exited (${code})`)));
  });
  const first = JSON.parse(await next()) as { port: number };
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    port: first.port,
    child,
    async ask<T>(command: string) {
      const answer = next();
      child.stdin!.write(command + '\n');
      return JSON.parse(await answer) as T;
    },
    async stop() {
      child.stdin!.end();
      const kill = setTimeout(() => child.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(kill);
    },
  };
}

export interface CpuStats { cpuMicros: number; handshakes: number; connections: number }
