// A real redis-server (Debian's) on a free loopback port, for fleet tests: no persistence, no
// config file, stopped with the test. stop() and start() again on the same port stand in for an
// outage; the keys are lost with it (as a restart without persistence).
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { freePort } from './exec.js';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Starts it (again) on the same port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (SIGKILL: no goodbye to the clients); resolves once it is gone. */
  stop(): Promise<void>;
  /** SIGSTOP / SIGCONT: a Redis that keeps its connections open but does not answer. */
  pause(): void;
  resume(): void;
  /** Runs redis-cli-like commands over RESP; resolves with the raw reply text. */
  command(...args: string[]): Promise<string>;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** Sends one RESP command and collects the reply until it goes quiet (bounded). */
export function respCommand(port: number, args: (string | Buffer)[], waitMs = 300): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const done = () => { s.destroy(); resolve(Buffer.concat(chunks)); };
    s.once('connect', () => {
      const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
      for (const a of args) { const b = Buffer.isBuffer(a) ? a : Buffer.from(a); parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')); }
      s.write(Buffer.concat(parts));
      timer = setTimeout(done, 2000);
    });
    s.on('data', (d: Buffer) => { chunks.push(d); if (timer) clearTimeout(timer); timer = setTimeout(done, waitMs); });
    s.once('error', reject);
  });
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | undefined;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    async start() {
      child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], { stdio: 'ignore' });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline) {
        if (await reachable(port)) return;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`redis-server did not start on ${port}`);
    },
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      c.kill('SIGCONT');
      await new Promise<void>((resolve) => { c.once('exit', () => resolve()); c.kill('SIGKILL'); });
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async command(...args: string[]) {
      return (await respCommand(port, args)).toString('latin1');
    },
  };
  await server.start();
  return server;
}
