// Fixtures for the client tests: a store root filled from the dev PKI, and an HTTPS file server
// (node:https) with ETag + Range support, a client-certificate mode and a throttle, so that a
// transfer can be cut mid-way by stopping the server.
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import type { DevPkiPaths } from '../src/tls/dev-pki.js';
import type { ClientCliIo } from '../src/client/cli.js';
import { LOCATION_DIRS } from '../src/client/store.js';
import { run } from './helpers/exec.js';

export const P12_PASSWORD = 'p12-s3cret';

/**
 * A store root: every location has MY with the dev client certificate (PEM, key in a sibling
 * .key file), LOCAL_MACHINE's MY also a PKCS#12 of the same certificate and its password
 * sidecar, CURRENT_USER's ROOT the dev root CA.
 */
export async function makeStoreRoot(dir: string, pki: DevPkiPaths): Promise<string> {
  for (const loc of LOCATION_DIRS) {
    const my = join(dir, loc, 'MY');
    mkdirSync(my, { recursive: true });
    copyFileSync(pki.client, join(my, 'dev-client.pem'));
    copyFileSync(pki.clientKey, join(my, 'dev-client.key'));
  }
  const root = join(dir, 'current-user', 'ROOT');
  mkdirSync(root, { recursive: true });
  copyFileSync(pki.rootCa, join(root, 'root-ca.pem'));
  const p12 = join(dir, 'local-machine', 'MY', 'dev-client.p12');
  const r = await run('openssl', ['pkcs12', '-export', '-in', pki.client, '-inkey', pki.clientKey, '-passout', `pass:${P12_PASSWORD}`, '-out', p12]);
  if (r.code !== 0) throw new Error(`openssl pkcs12: ${r.stderr}`);
  writeFileSync(`${p12}.password`, `${P12_PASSWORD}\n`, { mode: 0o600 });
  return dir;
}

/** A ClientCliIo that keeps what the CLI writes. */
export function capture(env: NodeJS.ProcessEnv, isTTY = false) {
  let stdout = '';
  let stderr = '';
  const io: ClientCliIo = {
    stdout: { write: (s: string) => { stdout += s; return true; }, isTTY },
    stderr: { write: (s: string) => { stderr += s; return true; } },
    env,
  };
  return { io, out: () => stdout, err: () => stderr, reset: () => { stdout = ''; stderr = ''; } };
}

/** SHA-1 thumbprint (hex) of the first certificate of a PEM file. */
export function thumbprintOf(pemPath: string): string {
  const text = readFileSync(pemPath, 'utf8');
  const b64 = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/.exec(text)?.[1] ?? '';
  return createHash('sha1').update(Buffer.from(b64.replace(/\s+/g, ''), 'base64')).digest('hex');
}

export interface FileServer {
  readonly port: number;
  readonly url: string;
  readonly body: Buffer;
  readonly sha256: string;
  /** Every request's Range and If-Range headers and the status answered. */
  readonly log: { range?: string; ifRange?: string; status: number; authorized: boolean }[];
  /** Stops accepting and cuts every open connection. */
  close(): Promise<void>;
}

export interface FileServerOptions {
  pki: DevPkiPaths;
  port?: number;
  body?: Buffer;
  /** Client-certificate mode of the listener. */
  clientAuth?: 'none' | 'optional' | 'require';
  maxVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** Bytes per chunk and ms between chunks; default: no throttle. */
  throttle?: { chunk: number; everyMs: number };
  /** Answer 403 to requests without a verified client certificate. */
  requireAuthorized?: boolean;
  etag?: string;
}

/** An HTTPS server for GET /file with ETag, Range and If-Range (RFC 9110 14, 13.1.5). */
export async function startFileServer(options: FileServerOptions): Promise<FileServer> {
  const body = options.body ?? randomBytes(256 * 1024);
  const etag = options.etag ?? `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const log: FileServer['log'] = [];
  const tlsOptions: ServerOptions = {
    key: readFileSync(options.pki.serverKey),
    cert: readFileSync(options.pki.server),
    ca: readFileSync(options.pki.caBundle),
    ...(options.maxVersion ? { maxVersion: options.maxVersion } : {}),
    ...(options.clientAuth === 'optional' ? { requestCert: true, rejectUnauthorized: false } : {}),
    ...(options.clientAuth === 'require' ? { requestCert: true, rejectUnauthorized: true } : {}),
  };
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const handler = (req: IncomingMessage, res: ServerResponse) => {
    const authorized = (req.socket as TLSSocket).authorized === true;
    const range = req.headers.range;
    const ifRange = req.headers['if-range'];
    const entry = { ...(range ? { range } : {}), ...(typeof ifRange === 'string' ? { ifRange } : {}), status: 0, authorized };
    log.push(entry);
    if (options.requireAuthorized && !authorized) {
      entry.status = 403;
      res.writeHead(403).end('client certificate required');
      return;
    }
    if (req.url === '/redirect') {
      entry.status = 302;
      res.writeHead(302, { location: '/file' }).end();
      return;
    }
    if (req.url !== '/file') {
      entry.status = 404;
      res.writeHead(404).end('not found');
      return;
    }
    let start = 0;
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    const rangeUsable = m && (ifRange === undefined || ifRange === etag);
    if (m && rangeUsable) start = Number(m[1]);
    if (start > body.length) {
      entry.status = 416;
      res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
      return;
    }
    const part = body.subarray(start);
    const headers: Record<string, string | number> = { etag, 'content-length': part.length, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    entry.status = start > 0 ? 206 : 200;
    if (start > 0) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(entry.status, headers);
    if (!options.throttle) {
      res.end(part);
      return;
    }
    const { chunk, everyMs } = options.throttle;
    let offset = 0;
    const tick = () => {
      if (res.destroyed) return;
      const slice = part.subarray(offset, offset + chunk);
      offset += slice.length;
      if (offset >= part.length) {
        res.end(slice);
        return;
      }
      res.write(slice);
      const t = setTimeout(() => { timers.delete(t); tick(); }, everyMs);
      timers.add(t);
    };
    tick();
  };
  const server: Server = createServer(tlsOptions, handler);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    url: `https://127.0.0.1:${port}/file`,
    body,
    sha256: createHash('sha256').update(body).digest('hex'),
    log,
    close: () => new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

/** sha256 (hex) of a file. */
export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export interface PeerServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `openssl s_server -Verify 1 -WWW` serving `dir` (GET /name reads dir/name): a server that
 * requires a client certificate, independent of Node. `tls` pins the version. s_server goes on
 * after a certificate that does not verify unless `verifyReturnError` (-verify_return_error).
 */
export async function startOpensslServer(pki: DevPkiPaths, dir: string, tls: '1.2' | '1.3', options: { verifyReturnError?: boolean } = {}): Promise<PeerServer> {
  const { spawn } = await import('node:child_process');
  const { freePort } = await import('./helpers/exec.js');
  const port = await freePort();
  const child = spawn('openssl', ['s_server', '-accept', `127.0.0.1:${port}`, '-cert', pki.server, '-key', pki.serverKey, '-CAfile', pki.caBundle, '-Verify', '1', ...(options.verifyReturnError ? ['-verify_return_error'] : []), '-WWW', `-tls${tls.replace('.', '_')}`, '-quiet'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  const net = await import('node:net');
  const deadline = Date.now() + 10_000;
  // s_server prints nothing with -quiet: wait until the port takes connections.
  for (;;) {
    const up = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`openssl s_server did not start: ${output}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    close: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('close', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

/**
 * certbound's own createServer in a client-auth mode, with GET /file (ETag + Range) and
 * GET /on-demand/file, a route that asks for a certificate by renegotiation (TLS 1.2).
 */
export async function startCertboundServer(pki: DevPkiPaths, clientAuth: 'none' | 'optional' | 'require' | 'accept-untrusted', body: Buffer, tls?: { maxVersion: 'TLSv1.2' | 'TLSv1.3' }): Promise<PeerServer & { url: string; onDemandUrl: string }> {
  const { createServer: createCertbound } = await import('../src/server/server.js');
  const server = createCertbound({
    cert: readFileSync(pki.server),
    key: readFileSync(pki.serverKey),
    ca: readFileSync(pki.caBundle),
    clientAuth,
    logger: false,
    underPressure: false,
    ...(tls ? { tls } : {}),
  });
  const etag = `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"`;
  const send = (range: string | undefined, ifRange: string | undefined, reply: { code(n: number): unknown; header(k: string, v: string | number): unknown; send(b: Buffer): unknown }) => {
    const m = range ? /^bytes=(\d+)-$/.exec(range) : null;
    const start = m && (ifRange === undefined || ifRange === etag) ? Number(m[1]) : 0;
    reply.header('etag', etag);
    reply.header('accept-ranges', 'bytes');
    reply.header('content-type', 'application/octet-stream');
    if (start > 0) {
      reply.code(206);
      reply.header('content-range', `bytes ${start}-${body.length - 1}/${body.length}`);
    }
    return reply.send(body.subarray(start));
  };
  server.app.get('/file', async (req, reply) => send(req.headers.range, req.headers['if-range'] as string | undefined, reply));
  server.app.get('/on-demand/file', { config: { clientCertificate: 'on-demand' } }, async (req, reply) => send(req.headers.range, req.headers['if-range'] as string | undefined, reply));
  const addr = await server.listen({ host: '127.0.0.1', port: 0 });
  return {
    port: addr.port,
    url: `https://127.0.0.1:${addr.port}/file`,
    onDemandUrl: `https://127.0.0.1:${addr.port}/on-demand/file`,
    close: () => server.close(),
  };
}
