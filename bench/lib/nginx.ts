// nginx as a reference server of the benches (Debian's package, /usr/sbin/nginx): one worker,
// pinned to the server core like the Node servers, the same dev-PKI certificates,
// `ssl_verify_client on` with the same CA bundle, the same bytes on GET /bench. The config,
// pid, logs and temp paths live in a temp dir written at run time (no root needed); the
// worker's CPU time is read from /proc.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { DevPkiPaths } from '../../src/tls/dev-pki.js';
import { HAS_TASKSET, SERVER_CPUS, type BenchServer, type CpuStats } from './child.js';
import { SAME_LENGTH_BODY } from './body.js';

export const NGINX = process.env.CERTBOUND_BENCH_NGINX ?? '/usr/sbin/nginx';

/** Why nginx cannot be benched here (and how to get it), or undefined when it can. */
export function nginxMissing(): string | undefined {
  if (existsSync(NGINX)) return undefined;
  return `nginx column skipped: ${NGINX} not found. Install Debian's package (\`sudo apt-get install nginx-light\` or \`nginx\`), or point CERTBOUND_BENCH_NGINX at an nginx binary.`;
}

/** The nginx.conf of the bench (a pure function of its inputs; startNginx writes and runs it). */
export function nginxConfig(dir: string, port: number, pki: Pick<DevPkiPaths, 'server' | 'serverKey' | 'caBundle'>): string {
  // nginx strings in single quotes: the JSON body holds none.
  return `worker_processes 1;
daemon off;
master_process on;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  # The Node servers keep a connection 65 s and serve any number of requests on it.
  keepalive_timeout 65s;
  keepalive_requests 1000000000;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${pki.server};
    ssl_certificate_key ${pki.serverKey};
    ssl_client_certificate ${pki.caBundle};
    ssl_verify_client on;
    ssl_verify_depth 4;
    ssl_protocols TLSv1.2 TLSv1.3;
    location = /bench {
      default_type 'application/json; charset=utf-8';
      return 200 '${SAME_LENGTH_BODY}';
    }
  }
}
`;
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once 127.0.0.1:port accepts a TCP connection; at most `ms`. */
async function waitForPort(port: number, ms: number, child: ChildProcess): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode})`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = netConnect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nginx did not listen on ${port} within ${ms} ms`);
}

/** The pids whose parent is `ppid` (from /proc/<pid>/stat). */
function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      // Fields after the command name (which may hold spaces): state ppid ...
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid) out.push(Number(name));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

/** CPU time (µs) a process has run: /proc/<pid>/schedstat (ns), else utime + stime of /proc/<pid>/stat (ticks of 10 ms). */
export function procCpuMicros(pid: number): number {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'latin1').split(' ')[0]) / 1000;
  } catch {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10_000;
  }
}

let signalsHandled = false;
/** SIGINT and SIGTERM end this process through process.exit, so that 'exit' handlers run. */
function exitOnSignals(): void {
  if (signalsHandled) return;
  signalsHandled = true;
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
}

/** Starts nginx (master + one worker) pinned to the server core; `stats` reads the worker's CPU time. */
export async function startNginx(pki: DevPkiPaths): Promise<BenchServer> {
  const dir = mkdtempSync(join(tmpdir(), 'certbound-nginx-'));
  const port = await freePort();
  writeFileSync(join(dir, 'nginx.conf'), nginxConfig(dir, port, { server: resolve(pki.server), serverKey: resolve(pki.serverKey), caBundle: resolve(pki.caBundle) }));
  const argv = [NGINX, '-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')];
  const child = HAS_TASKSET ? spawn('taskset', ['-c', SERVER_CPUS, ...argv], { stdio: ['ignore', 'inherit', 'inherit'] }) : spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'inherit', 'inherit'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  // nginx does not notice its parent's end (the Node servers do: their stdin closes): stop it
  // when this process exits, also on SIGINT/SIGTERM (a report's timeout).
  const found: { worker?: number } = {};
  const onExit = () => {
    // The master ends its worker on SIGTERM; the worker is killed too in case the master cannot.
    if (child.exitCode === null) child.kill('SIGTERM');
    if (found.worker !== undefined) try { process.kill(found.worker, 'SIGKILL'); } catch { /* gone */ }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);
  exitOnSignals();
  const cleanup = () => { process.off('exit', onExit); rmSync(dir, { recursive: true, force: true }); };
  try {
    await waitForPort(port, 10_000, child);
  } catch (err) {
    child.kill('SIGTERM');
    const log = existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8').slice(-1000) : '';
    cleanup();
    throw new Error(`${(err as Error).message}${log ? `\n${log}` : ''}`);
  }
  // taskset execs nginx, so the child's pid is the master's.
  const workers = childrenOf(child.pid as number);
  if (workers.length !== 1) {
    child.kill('SIGTERM');
    cleanup();
    throw new Error(`expected one nginx worker, found ${workers.length}`);
  }
  const workerPid = workers[0] as number;
  found.worker = workerPid;
  return {
    port,
    child,
    async ask<T>(command: string): Promise<T> {
      if (command !== 'stats') throw new Error(`nginx bench server: no command ${command}`);
      return { cpuMicros: procCpuMicros(workerPid), handshakes: NaN, connections: NaN } satisfies CpuStats as T;
    },
    async stop() {
      // SIGTERM: fast stop; SIGKILL after 8 s.
      child.kill('SIGTERM');
      const kill = setTimeout(() => child.kill('SIGKILL'), 8000);
      await exited;
      clearTimeout(kill);
      cleanup();
    },
  };
}
