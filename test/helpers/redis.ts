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
  /** One command over RESP (binary-safe), its reply parsed (redisCall). */
  command(...args: (string | Buffer)[]): Promise<Resp>;
}

function reachable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

/** RESP reply parsed: bulk strings as Buffers (binary-safe), arrays, integers, simple strings; null for nil. */
export type Resp = Buffer | number | string | null | Resp[];

const TRUNCATED = new Error('truncated RESP reply');

function parseResp(b: Buffer, at = 0): [Resp, number] {
  const eol = b.indexOf('\r\n', at);
  if (eol < 0) throw TRUNCATED;
  const type = String.fromCharCode(b[at] as number);
  const head = b.subarray(at + 1, eol).toString('latin1');
  const next = eol + 2;
  switch (type) {
    case '+': return [head, next];
    case '-': throw new Error(`Redis error: ${head}`);
    case ':': return [Number(head), next];
    case '$': {
      const n = Number(head);
      if (n < 0) return [null, next];
      if (b.length < next + n + 2) throw TRUNCATED;
      return [b.subarray(next, next + n), next + n + 2];
    }
    case '*': {
      const n = Number(head);
      if (n < 0) return [null, next];
      const out: Resp[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const [v, q] = parseResp(b, p);
        out.push(v);
        p = q;
      }
      return [out, p];
    }
    default: throw new Error(`unknown RESP type ${type}`);
  }
}

/** One Redis command on a connection of its own; resolves with its reply parsed, as soon as it is complete (bounded: 3 s). */
export function redisCall(port: number, ...args: (string | Buffer)[]): Promise<Resp> {
  return new Promise((resolvePromise, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`no reply to ${String(args[0])}`)); }, 3000);
    s.once('connect', () => {
      const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
      for (const a of args) { const b = Buffer.isBuffer(a) ? a : Buffer.from(a); parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n')); }
      s.write(Buffer.concat(parts));
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      let reply: Resp;
      try {
        reply = parseResp(buf)[0];
      } catch (err) {
        if (err === TRUNCATED) return;
        clearTimeout(timer);
        s.destroy();
        reject(err as Error);
        return;
      }
      clearTimeout(timer);
      s.destroy();
      resolvePromise(reply);
    });
    s.once('error', (err) => { clearTimeout(timer); reject(err); });
  });
}

/** HGETALL as a map of Buffers. */
export async function redisHash(port: number, key: string): Promise<Map<string, Buffer>> {
  const r = await redisCall(port, 'HGETALL', key);
  const out = new Map<string, Buffer>();
  if (!Array.isArray(r)) return out;
  for (let i = 0; i + 1 < r.length; i += 2) out.set((r[i] as Buffer).toString('latin1'), r[i + 1] as Buffer);
  return out;
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
    command(...args: (string | Buffer)[]) {
      return redisCall(port, ...args);
    },
  };
  await server.start();
  return server;
}
