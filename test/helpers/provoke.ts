// Provoking CB_ERR_* codes for real, for test/error-walk.test.ts and test/startup-errors.test.ts:
// a row says how (the `certbound` command over bad files and flags, in a new process as a user
// runs it; a library call; or a request to a real server) and `provoke` checks that the code
// came out as it should. Fixtures are built on first use and shared by the rows of a file.
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { createServer as createNetServer } from 'node:net';
import { Agent, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { TestContext } from 'node:test';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Fastify from 'fastify';
import { CertboundError, ERRORS, type ErrorCode } from '../../src/errors.js';
import { certboundPlugin } from '../../src/server/plugin.js';
import { createServer, type CreateServerOptions } from '../../src/server/server.js';
import { ConnectionRegistry } from '../../src/server/registry.js';
import { createDevPki, type DevPkiPaths } from '../../src/tls/dev-pki.js';
import { devPki, tempDir } from './pki.js';
import { freePort, run, type RunResult } from './exec.js';

const ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(ROOT, 'bin', 'certbound.js');
/** A command that has not exited by then is taken as hung (a start-up that left something open). */
const CLI_TIMEOUT_MS = 15_000;

export interface Reply { status: number; body: string }

/** Shared by the rows of a test file; the costly parts are made on first use. */
export interface Fixtures {
  readonly pki: DevPkiPaths;
  /** Scratch directory, where the CLI rows run. */
  readonly dir: string;
  /** Writes `content` to `name` in the scratch directory (mode 0644); returns its path. */
  file(name: string, content: string | Buffer): string;
  /** `--cert --key --ca --host --port 0` of the shared dev PKI. */
  readonly tlsFlags: string[];
  /** createServer options with the shared dev PKI, no logger, no load shedding. */
  serverOptions(extra?: Partial<CreateServerOptions>): CreateServerOptions;
  /** A port something else listens on. */
  busyPort(): Promise<number>;
  /** A dev PKI of the row's own (serving it writes into it), its AIA OCSP URL on a free port. */
  ownDevPki(name: string): Promise<DevPkiPaths>;
  /** The dev server key encrypted with the passphrase 'right'. */
  encryptedKey(): string;
  /** An X25519 certificate from the dev root and its key: they parse and match, but TLS cannot serve them. */
  x25519(): Promise<{ cert: string; key: string }>;
  /** A directory the unprivileged user of the CLI rows owns and cannot write. */
  readOnlyDir(name: string): string;
  /** A file the unprivileged user of the CLI rows cannot read. */
  unreadable(name: string, content: string | Buffer): string;
  /** A certbound server (`optional`, a mapper that denies what it does not map) with a route for each refusal; `replies` has what it sent, by URL. */
  tlsServer(): Promise<{ port: number; replies: Map<string, Reply> }>;
  /** A plain-HTTP fastify app with the plugin: `/early` declared before it, `/required` after. */
  httpApp(): Promise<{ port: number }>;
}

type Provocation =
  | { kind: 'cli'; args: (fx: Fixtures) => string[] | Promise<string[]>; nodeArgs?: string[]; unprivileged?: boolean }
  | { kind: 'call'; run: (fx: Fixtures) => unknown }
  | { kind: 'request'; run: (fx: Fixtures) => Promise<Reply> }
  | { kind: 'warning'; run: (fx: Fixtures) => Promise<string> | string };

export interface Row { readonly what: string; readonly mentions?: RegExp; readonly provoke: Provocation }

/** `certbound ARGS` exits 1 with one line `certbound: CODE: message` (matching `mentions`) on stderr. */
export const cli = (what: string, args: (fx: Fixtures) => string[] | Promise<string[]>, mentions?: RegExp, more: { nodeArgs?: string[]; unprivileged?: boolean } = {}): Row =>
  ({ what, ...(mentions ? { mentions } : {}), provoke: { kind: 'cli', args, ...more } });
/** `fn` throws (or rejects with) a CertboundError with the code. */
export const call = (what: string, fn: (fx: Fixtures) => unknown, mentions?: RegExp): Row =>
  ({ what, ...(mentions ? { mentions } : {}), provoke: { kind: 'call', run: fn } });
/** `fn` answers the reply of a real server: the code's HTTP status and a JSON body with the code. */
export const request = (what: string, fn: (fx: Fixtures) => Promise<Reply>): Row => ({ what, provoke: { kind: 'request', run: fn } });
/** A code that is reported, not thrown (a warning that lets the rest work): `fn` answers the text that reports it, `CODE: message`. */
export const warning = (what: string, fn: (fx: Fixtures) => Promise<string> | string, mentions?: RegExp): Row =>
  ({ what, ...(mentions ? { mentions } : {}), provoke: { kind: 'warning', run: fn } });

/** The user that CLI rows marked `unprivileged` run as: nobody when the tests run as root (root reads and writes anything). */
const UNPRIVILEGED: { uid?: number; gid?: number } = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};

function memo<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

export async function makeFixtures(t: TestContext): Promise<Fixtures> {
  const pki = await devPki();
  const dir = tempDir('certbound-provoke-');
  // The unprivileged user of some CLI rows must reach the scratch files.
  chmodSync(dir, 0o755);
  const file = (name: string, content: string | Buffer) => {
    const path = join(dir, name);
    writeFileSync(path, content);
    chmodSync(path, 0o644);
    return path;
  };
  const serverOptions = (extra: Partial<CreateServerOptions> = {}): CreateServerOptions => ({
    cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), logger: false, underPressure: false, ...extra,
  });
  let encrypted: string | undefined;

  return {
    pki, dir, file, serverOptions,
    tlsFlags: ['--cert', pki.server, '--key', pki.serverKey, '--ca', pki.caBundle, '--host', '127.0.0.1', '--port', '0'],
    busyPort: memo(async () => {
      const busy = createNetServer();
      await new Promise<void>((ok) => busy.listen(0, '127.0.0.1', ok));
      t.after(() => new Promise<void>((ok) => busy.close(() => ok())));
      return (busy.address() as AddressInfo).port;
    }),
    ownDevPki: async (name) => createDevPki(join(dir, `pki-${name}`), { ocspUrl: `http://127.0.0.1:${await freePort()}/` }),
    encryptedKey: () => (encrypted ??= createPrivateKey(readFileSync(pki.serverKey)).export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'right' }) as string),
    x25519: memo(async () => {
      // Issued by openssl: pkijs makes no X25519 certificates.
      const pair = generateKeyPairSync('x25519');
      const pub = file('x25519.pub', pair.publicKey.export({ format: 'pem', type: 'spki' }));
      const key = file('x25519.key', pair.privateKey.export({ format: 'pem', type: 'pkcs8' }));
      const csr = join(dir, 'x25519.csr');
      const cert = join(dir, 'x25519.pem');
      for (const args of [
        ['req', '-new', '-key', pki.rootCaKey, '-subj', '/CN=x25519', '-out', csr],
        ['x509', '-req', '-in', csr, '-CA', pki.rootCa, '-CAkey', pki.rootCaKey, '-force_pubkey', pub, '-days', '2', '-out', cert],
      ]) {
        const r = await run('openssl', args);
        assert.equal(r.code, 0, r.stderr);
      }
      return { cert, key };
    }),
    readOnlyDir: (name) => {
      const path = join(dir, name);
      mkdirSync(path);
      if (UNPRIVILEGED.uid !== undefined) chownSync(path, UNPRIVILEGED.uid, UNPRIVILEGED.gid ?? UNPRIVILEGED.uid);
      chmodSync(path, 0o555);
      return path;
    },
    unreadable: (name, content) => {
      const path = file(name, content);
      chmodSync(path, UNPRIVILEGED.uid !== undefined ? 0o600 : 0o000);
      return path;
    },
    tlsServer: memo(async () => {
      const replies = new Map<string, Reply>();
      const server = createServer(serverOptions({ clientAuth: 'optional', referenceRoutes: true, mapper: { denyUnmapped: true } }));
      server.app.addHook('onSend', async (req, reply, payload) => {
        replies.set(req.url, { status: reply.statusCode, body: String(payload) });
        return payload;
      });
      server.app.get('/required', { config: { clientCertificate: 'required' } }, async () => 'served');
      server.app.get('/bound', { config: { channelBinding: true } }, async () => 'served');
      server.app.post('/negotiate-early', { onRequest: async (req) => { await req.negotiateClientCertificate(); } }, async () => 'served');
      // A handshake certbound does not record: what a client-initiated renegotiation would be
      // if the renegotiation guard let one through.
      server.app.get('/renegotiate-unrecorded', (req, reply) => {
        const socket = req.raw.socket as TLSSocket;
        const entry = ConnectionRegistry.entryOf(socket);
        assert.ok(entry);
        entry.expectServerHandshake(true);
        socket.renegotiate({ rejectUnauthorized: false }, (err) => {
          entry.expectServerHandshake(false);
          void reply.send({ renegotiated: !err });
        });
      });
      const { port } = await server.listen({ host: '127.0.0.1', port: 0 });
      t.after(() => server.close());
      return { port, replies };
    }),
    httpApp: memo(async () => {
      const app = Fastify();
      app.get('/early', { config: { clientCertificate: 'required' } }, async () => 'served');
      await app.register(certboundPlugin, {});
      app.get('/required', { config: { clientCertificate: 'required' } }, async () => 'served');
      await app.listen({ host: '127.0.0.1', port: 0 });
      t.after(() => app.close());
      return { port: (app.server.address() as AddressInfo).port };
    }),
  };
}

export interface AskOptions { cert?: string; key?: string; minVersion?: 'TLSv1.3'; agent?: Agent; method?: string; holdBody?: boolean }

/**
 * One HTTPS request to 127.0.0.1:`port` trusting the dev root. `holdBody` sends the first chunk
 * of a chunked body and the rest only after the answer: the route runs before the body is complete.
 */
export async function ask(port: number, path: string, opts: AskOptions = {}): Promise<Reply> {
  const pki = await devPki();
  return new Promise((resolvePromise, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path, method: opts.method ?? 'GET', servername: 'localhost', ca: readFileSync(pki.rootCa),
      agent: opts.agent ?? false,
      ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key ?? '') } : {}),
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      ...(opts.holdBody ? { headers: { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' } } : {}),
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        if (opts.holdBody) req.end();
        resolvePromise({ status: res.statusCode ?? 0, body });
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (opts.holdBody) req.write('part of a body');
    else req.end();
  });
}

/** A keep-alive agent of one TLS 1.2 connection, destroyed after `fn`. */
export async function oneConnection<T>(fn: (agent: Agent) => Promise<T>): Promise<T> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1, maxVersion: 'TLSv1.2' });
  try {
    return await fn(agent);
  } finally {
    agent.destroy();
  }
}

export async function fetchReply(url: string): Promise<Reply> {
  const r = await fetch(url);
  return { status: r.status, body: await r.text() };
}

/** A start-up error: exit code 1 in time, one stderr line `certbound: CODE: message`, no stack trace. */
export function assertStartupLine(r: RunResult, code: ErrorCode, mentions?: RegExp): void {
  assert.equal(r.code, 1, `exit code 1 within ${CLI_TIMEOUT_MS} ms (signal ${r.signal}; stderr: ${r.stderr})`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line on stderr: ${r.stderr}`);
  assert.match(lines[0] ?? '', new RegExp(`^certbound: ${code}: \\S.*$`));
  if (mentions) assert.match(lines[0] ?? '', mentions);
  assert.doesNotMatch(r.stderr + r.stdout, /^\s+at .+:\d+:\d+\)?$/m, 'no stack trace');
}

/** Provokes `code` the row's way and checks it came out as it should. */
export async function provoke(fx: Fixtures, code: ErrorCode, row: Row): Promise<void> {
  const p = row.provoke;
  switch (p.kind) {
    case 'cli': {
      const args = await p.args(fx);
      const r = await run(process.execPath, [...(p.nodeArgs ?? []), BIN, ...args], { cwd: fx.dir, timeoutMs: CLI_TIMEOUT_MS, ...(p.unprivileged ? UNPRIVILEGED : {}) });
      assertStartupLine(r, code, row.mentions);
      return;
    }
    case 'call': {
      let thrown: unknown;
      try {
        await p.run(fx);
      } catch (err) {
        thrown = err;
      }
      assert.ok(thrown instanceof CertboundError, `a CertboundError, not ${String(thrown)}`);
      assert.equal(thrown.code, code, thrown.message);
      assert.equal(thrown.statusCode, ERRORS[code].statusCode);
      if (row.mentions) assert.match(thrown.message, row.mentions);
      return;
    }
    case 'warning': {
      const text = await p.run(fx);
      assert.match(text, new RegExp(`\\b${code}: `), text);
      if (row.mentions) assert.match(text, row.mentions);
      return;
    }
    case 'request': {
      const reply = await p.run(fx);
      assert.equal(reply.status, ERRORS[code].statusCode, reply.body);
      const body = JSON.parse(reply.body) as { code: string; statusCode: number };
      assert.equal(body.code, code, reply.body);
      assert.equal(body.statusCode, ERRORS[code].statusCode);
    }
  }
}

/** Runs the rows as subtests of `t`, `concurrency` at a time (CLI rows are processes: a few per core). */
export async function provokeAll(t: TestContext, rows: readonly (readonly [ErrorCode, Row])[], concurrency: number): Promise<void> {
  const fx = await makeFixtures(t);
  let next = 0;
  const worker = async () => {
    while (next < rows.length) {
      const [code, row] = rows[next++] as readonly [ErrorCode, Row];
      await t.test(`${code}: ${row.what}`, () => provoke(fx, code, row));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, rows.length) }, worker));
}
