// The metrics listener: plain HTTP on its own address (never the TLS listeners), answering
// GET /metrics with the Prometheus text exposition and 404 to anything else. Plain HTTP on
// purpose, as node_exporter's default: keep it on loopback or a private network.
import { createServer, type Server } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';

export interface HostPort { host: string; port: number }

/**
 * Parses `host:port`, `[v6]:port` or a bare `port` (host DEFAULTS.metricsHost). Throws
 * CB_ERR_INVALID_OPTION naming `name` for anything else (port 0..65535, a host without
 * spaces, slashes or a scheme).
 */
export function parseHostPort(value: string, name: string): HostPort {
  const bad = () => new CertboundError('CB_ERR_INVALID_OPTION', [name, `expected host:port (e.g. 127.0.0.1:9464, [::1]:9464) or a port, got ${JSON.stringify(value)}`]);
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(value) ?? /^([A-Za-z0-9._-]+):(\d{1,5})$/.exec(value) ?? /^()(\d{1,5})$/.exec(value);
  if (!m) throw bad();
  const host = m[1] === '' ? DEFAULTS.metricsHost : (m[1] as string);
  const port = Number(m[2]);
  if (port > 65535 || (value.startsWith('[') && isIP(host) !== 6)) throw bad();
  return { host, port };
}

/** True for loopback addresses (where a plain-HTTP metrics listener belongs). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export interface MetricsListener {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/**
 * Listens on `host:port` and answers GET/HEAD /metrics with `render()`. Rejects with
 * CB_ERR_LISTEN when the address cannot be bound. A render that fails answers 500 (logged).
 */
export function startMetricsListener(at: HostPort, render: () => Promise<{ contentType: string; body: string }>, log: { error(obj: object, msg: string): void }): Promise<MetricsListener> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(path === '/metrics' ? 405 : 404, { 'content-type': 'text/plain' }).end(path === '/metrics' ? 'GET only\n' : 'not found: GET /metrics\n');
      return;
    }
    render().then(({ contentType, body }) => {
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) }).end(req.method === 'HEAD' ? undefined : body);
    }, (err: unknown) => {
      log.error({ err: { message: (err as Error).message } }, 'metrics: collection failed');
      res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
    });
  });
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      reject(new CertboundError('CB_ERR_LISTEN', [at.host, at.port, `metrics listener: ${err.code === 'EADDRINUSE' ? 'the port is in use (EADDRINUSE)' : err.code ?? err.message}`], { cause: err }));
    });
    server.listen({ host: at.host, port: at.port }, () => {
      resolve({
        address: server.address() as AddressInfo,
        close: () => new Promise<void>((r) => {
          server.close(() => r());
          server.closeAllConnections();
        }),
      });
    });
  });
}
