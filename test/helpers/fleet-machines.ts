// Fleet tests (test/fleet.test.ts): `certbound serve` processes standing in for machines (their
// pino lines collected), TLS visits that return /connection with the staple and the session, a
// slow OCSP relay that counts and can hold requests. Redis commands: test/helpers/redis.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { connect, type SecureVersion } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'certbound.js');

export type LogLine = Record<string, unknown>;

/** Polls `check` every 25 ms until it returns a value other than undefined/false, or throws after `ms` with `what`. */
export async function until<T>(what: string | (() => string), ms: number, check: () => T | undefined | false | Promise<T | undefined | false>): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() >= deadline) throw new Error(`not within ${ms} ms: ${typeof what === 'function' ? what() : what}`);
    await sleep(25);
  }
}

/** One `certbound serve` process: its port, its JSON log lines and the rest of its output. */
export class Machine {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  output = '';
  port = 0;
  readonly exited: Promise<number | null>;
  #partial = '';

  constructor(name: string, args: string[], cwd: string) {
    this.name = name;
    // Own process group: the test ends it (and any worker) with one kill.
    this.child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((r) => this.child.once('exit', (code) => r(code)));
    this.child.stdout?.on('data', (d: Buffer) => this.#take(d.toString()));
    this.child.stderr?.on('data', (d: Buffer) => { this.output += d.toString(); });
  }

  get pid(): number { return this.child.pid as number; }

  #take(text: string): void {
    this.output += text;
    const lines = (this.#partial + text).split('\n');
    this.#partial = lines.pop() ?? '';
    for (const line of lines) {
      if (!line.startsWith('{')) continue;
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        // Not a log line.
      }
    }
  }

  /** Waits for the banner; resolves with the port. */
  async listening(ms = 30_000): Promise<number> {
    const m = await until(() => `${this.name} banner; output:\n${this.output}`, ms, () => /certbound: serving https:\/\/[^:]+:(\d+)\//.exec(this.output) ?? (this.child.exitCode !== null ? new Error(`${this.name} exited ${this.child.exitCode}:\n${this.output}`) : undefined));
    if (m instanceof Error) throw m;
    this.port = Number(m[1]);
    return this.port;
  }

  /** The 'ocsp-update' lines so far. */
  ocsp(): LogLine[] {
    return this.logs.filter((l) => l.event === 'ocsp-update');
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    try {
      process.kill(-this.pid, signal);
    } catch {
      // Already gone.
    }
  }
}

export interface Visit<T = Record<string, unknown>> {
  status: number;
  body: T;
  /** The client resumed the session. */
  reused: boolean;
  /** The session to resume later (TLS 1.3: from the ticket after the handshake). */
  session: Buffer | undefined;
  /** The OCSP response the server stapled, if any. */
  staple: Buffer | undefined;
  protocol: string | null;
}

export interface VisitOptions { ca: string; cert?: string; key?: string; version?: SecureVersion; session?: Buffer | undefined; path?: string }

/** One connection: asks for the staple, GETs `path` (default /connection), waits for the ticket, closes. */
export function visit<T = Record<string, unknown>>(port: number, o: VisitOptions): Promise<Visit<T>> {
  return new Promise((resolvePromise, reject) => {
    let session: Buffer | undefined;
    let staple: Buffer | undefined;
    // requestOCSP is a TLSSocket option that tls.connect passes through (missing from @types/node 20).
    const options = {
      host: '127.0.0.1', port, servername: 'localhost', ca: o.ca, requestOCSP: true,
      ...(o.cert ? { cert: o.cert, key: o.key } : {}),
      ...(o.version ? { minVersion: o.version, maxVersion: o.version } : {}),
      ...(o.session ? { session: o.session } : {}),
    };
    const s = connect(options, () => s.write(`GET ${o.path ?? '/connection'} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    s.on('OCSPResponse', (r: Buffer) => { staple = r; });
    s.on('session', (sess: Buffer) => { session = sess; });
    let raw = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => { raw += d; });
    s.setTimeout(8000, () => s.destroy(new Error(`no answer from ${port}`)));
    s.on('error', reject);
    s.on('end', () => {
      try {
        const body = JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as T;
        resolvePromise({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(raw)?.[1]), body, reused: s.isSessionReused(), session: session ?? o.session, staple, protocol: s.getProtocol() });
      } catch {
        reject(new Error(`unexpected answer from ${port}: ${raw.slice(0, 300)}`));
      }
    });
  });
}

/**
 * An HTTP relay in front of the OCSP responder: counts requests, reports each one as it arrives,
 * and with `delayMs` holds it that long before passing it on; a request whose client went away
 * meanwhile (a killed machine) never reaches the responder.
 */
export class OcspRelay {
  delayMs = 0;
  arrivals = 0;
  dropped = 0;
  onArrival: (() => void) | undefined;
  readonly #server: http.Server;
  readonly #target: URL;

  constructor(target: string) {
    this.#target = new URL(target);
    this.#server = http.createServer((req, res) => {
      this.arrivals++;
      this.onArrival?.();
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        setTimeout(() => {
          if (req.socket.destroyed) { this.dropped++; return; }
          const up = http.request({ host: this.#target.hostname, port: this.#target.port, method: req.method, path: req.url, headers: { 'content-type': req.headers['content-type'] ?? 'application/ocsp-request' }, agent: false }, (r) => {
            res.writeHead(r.statusCode ?? 502, { 'content-type': r.headers['content-type'] ?? 'application/octet-stream' });
            r.pipe(res);
          });
          up.on('error', () => res.destroy());
          up.end(Buffer.concat(chunks));
        }, this.delayMs).unref();
      });
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.#server.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/`;
  }

  close(): Promise<void> {
    return new Promise((r) => { this.#server.close(() => r()); this.#server.closeAllConnections(); });
  }
}

export { redisCall, redisHash, type Resp } from './redis.js';
