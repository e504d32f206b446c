// Starts certbound servers on 127.0.0.1:0 with the test dev PKI, and a small https client.
import { request } from 'node:https';
import { readFileSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { createServer, type CertboundServer, type CreateServerOptions } from '../../src/server/server.js';
import type { ClientAuthMode } from '../../src/tls/client-auth.js';
import { devPki } from './pki.js';

export interface Started { server: CertboundServer; port: number; url: string }

/** A certbound server with the dev PKI in `mode`, closed after the test. */
export async function startServer(t: TestContext | undefined, mode: ClientAuthMode, extra: Partial<CreateServerOptions> = {}, routes?: (server: CertboundServer) => void): Promise<Started> {
  const pki = await devPki();
  const server = createServer({
    cert: readFileSync(pki.server),
    key: readFileSync(pki.serverKey),
    ca: readFileSync(pki.caBundle),
    clientAuth: mode,
    logger: false,
    referenceRoutes: true,
    ...extra,
  });
  routes?.(server);
  const addr = await server.listen({ host: '127.0.0.1', port: 0 });
  t?.after(() => server.close());
  return { server, port: addr.port, url: `https://127.0.0.1:${addr.port}` };
}

export interface Response { status: number; headers: Record<string, string | string[] | undefined>; body: string; json: () => unknown }

/** One GET over a fresh connection (no agent), with an optional client certificate. */
export async function get(port: number, path: string, opts: { cert?: string; key?: string; minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3' } = {}): Promise<Response> {
  const pki = await devPki();
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, method: 'GET', agent: false, servername: 'localhost',
      ca: readFileSync(pki.rootCa),
      ...(opts.cert ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key ?? '') } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}
