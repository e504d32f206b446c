// A small, bounded mTLS load generator (wrk has no client-certificate option and autocannon is
// not a dependency): raw TLS sockets, HTTP/1.1, one request in flight per connection or
// `depth` pipelined requests written at once (responses framed by Content-Length).
import { connect, createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { readFileSync } from 'node:fs';
import type { DevPkiPaths } from '../../src/tls/dev-pki.js';

export interface ClientMaterial { readonly context: SecureContext }

/** The dev client certificate and root CA as one client context (TLS 1.2 and 1.3 allowed). */
export function clientMaterial(pki: DevPkiPaths, extra: { maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): ClientMaterial {
  return { context: createSecureContext({ cert: readFileSync(pki.client), key: readFileSync(pki.clientKey), ca: readFileSync(pki.rootCa), ...extra }) };
}

export interface LoadResult {
  /** Completed 200 responses (or handshakes) inside the measured window. */
  readonly count: number;
  /** Non-200 answers, socket errors and resumed sessions (handshake mode) in the window. */
  readonly errors: number;
  readonly seconds: number;
  readonly perSecond: number;
  /** Handshake mode with `requestOCSP`: the counted connections that got a staple. */
  readonly stapled?: number;
}

/** Reads HTTP/1.1 responses with a Content-Length from a byte stream; returns [status, rest] per full response. */
export class ResponseReader {
  #buf: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the statuses of the responses completed by them. */
  push(chunk: Buffer): number[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const done: number[] = [];
    for (;;) {
      const end = this.#buf.indexOf('\r\n\r\n');
      if (end < 0) return done;
      const head = this.#buf.toString('latin1', 0, end);
      const m = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      const total = end + 4 + (m ? Number(m[1]) : 0);
      if (this.#buf.length < total) return done;
      done.push(Number(head.slice(9, 12)));
      this.#buf = this.#buf.subarray(total);
    }
  }
}

function open(port: number, material: ClientMaterial): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: material.context }, () => resolve(s));
    s.setNoDelay(true);
    s.once('error', reject);
  });
}

/** Called when the measured window opens and closes (the server's CPU is read there). */
export interface Window { start(): Promise<void>; end(): Promise<void> }

/**
 * Keep-alive load: `connections` established connections. With `depth` 1 (default) each sends
 * `GET path` again as soon as the previous answer is complete; with `depth` N > 1 each writes
 * N requests at once (one write) and the next N when all N answers are in (HTTP/1.1
 * pipelining). Counts answers for `seconds` after `warmupSeconds`.
 */
export async function keepAliveLoad(port: number, material: ClientMaterial, opts: { connections: number; seconds: number; warmupSeconds: number; path: string; depth?: number; window?: Window }): Promise<LoadResult> {
  const depth = Math.max(1, Math.min(64, opts.depth ?? 1));
  const sockets = await Promise.all(Array.from({ length: opts.connections }, () => open(port, material)));
  const request = Buffer.from(`GET ${opts.path} HTTP/1.1\r\nHost: localhost\r\n\r\n`.repeat(depth));
  let counting = false;
  let running = true;
  let count = 0;
  let errors = 0;
  for (const s of sockets) {
    const reader = new ResponseReader();
    let pending = depth;
    s.on('data', (chunk: Buffer) => {
      for (const status of reader.push(chunk)) {
        if (counting) {
          if (status === 200) count++;
          else errors++;
        }
        if (--pending === 0 && running) {
          pending = depth;
          s.write(request);
        }
      }
    });
    s.on('error', () => { if (counting) errors++; });
    s.on('close', () => { if (counting && running) errors++; });
    s.write(request);
  }
  const seconds = await measure(opts, (on) => { counting = on; });
  running = false;
  for (const s of sockets) s.destroy();
  return { count, errors, seconds, perSecond: count / seconds };
}

/**
 * The measured window shared by both loads: warm up, start the server-side window, count for
 * `seconds`, stop counting, end the window. Resolves with the seconds actually counted.
 */
async function measure(opts: { seconds: number; warmupSeconds: number; window?: Window }, setCounting: (on: boolean) => void): Promise<number> {
  await sleep(opts.warmupSeconds * 1000);
  await opts.window?.start();
  setCounting(true);
  const t0 = process.hrtime.bigint();
  await sleep(opts.seconds * 1000);
  setCounting(false);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  await opts.window?.end();
  return seconds;
}

/**
 * Handshake load: `concurrency` loops, each opening a new connection, sending one
 * `Connection: close` request and waiting for the answer. Without `resume` the client offers no
 * session, so every handshake is a full one (a resumed one counts as an error); with `resume`
 * each loop offers the last session the server handed it (a TLS 1.3 or TLS 1.2 ticket, by the
 * client context's versions), and a handshake that did not resume counts as an error.
 */
export async function handshakeLoad(port: number, material: ClientMaterial, opts: { concurrency: number; seconds: number; warmupSeconds: number; path: string; requestOCSP?: boolean; window?: Window; resume?: boolean }): Promise<LoadResult> {
  const request = Buffer.from(`GET ${opts.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  let counting = false;
  let running = true;
  let count = 0;
  let errors = 0;
  let stapled = 0;
  const one = (loop: { session: Buffer | undefined }) => new Promise<void>((resolve) => {
    let asExpected = true;
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: material.context, ...(opts.resume && loop.session ? { session: loop.session } : {}), ...(opts.requestOCSP ? { requestOCSP: true } : {}) }, () => {
      asExpected = s.isSessionReused() === (opts.resume === true);
      s.write(request);
    });
    if (opts.resume) s.on('session', (session: Buffer) => { loop.session = session; });
    s.setNoDelay(true);
    let gotStaple = false;
    if (opts.requestOCSP) s.once('OCSPResponse', (r: Buffer | null) => { gotStaple = (r?.length ?? 0) > 0; });
    const reader = new ResponseReader();
    let ok = false;
    s.on('data', (chunk: Buffer) => {
      for (const status of reader.push(chunk)) ok = status === 200;
      if (ok) s.destroy();
    });
    s.on('error', () => {});
    s.on('close', () => {
      if (counting) {
        if (ok && asExpected) count++;
        else errors++;
        // Counted with the connection (at its close), so that `stapled` <= `count`.
        if (ok && gotStaple) stapled++;
      }
      resolve();
    });
  });
  const loops = Array.from({ length: opts.concurrency }, async () => {
    const loop = { session: undefined as Buffer | undefined };
    while (running) await one(loop);
  });
  const seconds = await measure(opts, (on) => { counting = on; });
  running = false;
  await Promise.all(loops);
  return { count, errors, seconds, perSecond: count / seconds, ...(opts.requestOCSP ? { stapled } : {}) };
}

/**
 * Opens `n` connections (`batch` at a time), each with one answered request (200), and leaves
 * them idle. A 503 (certbound's load shedding while the batch's handshakes hold its event loop)
 * is asked again on the same connection after 200 ms, at most 10 times. Returns the sockets;
 * the caller destroys them.
 */
export async function openIdle(port: number, material: ClientMaterial, n: number, batch = 100): Promise<TLSSocket[]> {
  const request = Buffer.from('GET /bench HTTP/1.1\r\nHost: localhost\r\n\r\n');
  const out: TLSSocket[] = [];
  const ask = (s: TLSSocket) => new Promise<number>((resolve, reject) => {
    const reader = new ResponseReader();
    const onData = (chunk: Buffer) => {
      const statuses = reader.push(chunk);
      if (statuses.length === 0) return;
      s.off('data', onData);
      s.off('close', onClose);
      resolve(statuses[0] as number);
    };
    const onClose = () => reject(new Error('closed before an answer'));
    s.on('data', onData);
    s.once('close', onClose);
    s.write(request);
  });
  const oneIdle = async () => {
    const s = await open(port, material);
    s.on('error', () => {});
    let status = await ask(s);
    for (let attempt = 1; status === 503 && attempt < 10; attempt++) {
      await sleep(200);
      status = await ask(s);
    }
    if (status !== 200) throw new Error(`status ${status}`);
    out.push(s);
  };
  for (let i = 0; i < n; i += batch) await Promise.all(Array.from({ length: Math.min(batch, n - i) }, oneIdle));
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * The load benches' positional arguments: [rounds=5 (at least 3)] [seconds=5] [connections]
 * [maxSeconds=120]; `--depth N` (pipelined requests per connection) is read by the benches that take it.
 */
export function loadArgs(argv: readonly string[], defaultConnections: number): { rounds: number; seconds: number; connections: number; maxMs: number } {
  const args = argv.filter((a, i) => !a.startsWith('--') && !(argv[i - 1] ?? '').match(/^--(depth)$/));
  return {
    rounds: Math.max(3, Number(args[0] ?? 5)),
    seconds: Number(args[1] ?? 5),
    connections: Number(args[2] ?? defaultConnections),
    maxMs: Number(args[3] ?? 120) * 1000,
  };
}

/** The value of `--name N` in argv, or `fallback`. */
export function flagNumber(argv: readonly string[], name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : NaN;
  return Number.isFinite(v) ? v : fallback;
}

/** One connect + `GET path` + close; resolves with the status and body of the answer. */
export function fetchOnce(port: number, material: ClientMaterial, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'localhost', secureContext: material.context }, () => s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`GET ${path}: no answer in 10 s`)); }, 10_000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const at = text.indexOf('\r\n\r\n');
      resolve({ status: Number(text.slice(9, 12)), body: at < 0 ? '' : text.slice(at + 4) });
    });
    s.on('error', (err) => { clearTimeout(timer); reject(err); });
  });
}
