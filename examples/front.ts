// certbound in front of a backend that knows nothing about TLS: every request that no route of
// the server answers goes to the upstream, with the client certificate as RFC 9440 Client-Cert
// when the connection's decision is authorized (docs/front.md).
//
//   node --import tsx examples/front.ts
//
// The backend here is a plain node:http server that echoes the headers certbound set; the
// command-line equivalent is `certbound serve --upstream http://127.0.0.1:PORT`.
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { X509Certificate } from 'node:crypto';
import { request } from 'node:https';
import { createServer, ensureDevPki } from 'certbound';

// The backend: reads Client-Cert (":" base64 DER ":") and the verdict certbound passed on.
const backend = createHttpServer((req, res) => {
  const field = req.headers['client-cert'];
  const der = typeof field === 'string' ? Buffer.from(field.slice(1, -1), 'base64') : undefined;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({
    path: req.url,
    subject: der ? new X509Certificate(der).subject.replace(/\n/g, ', ') : null,
    flags: req.headers['certbound-client-cert-flags'],
    forwardedFor: req.headers['x-forwarded-for'],
  }));
});
await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
const backendPort = (backend.address() as { port: number }).port;

const { paths } = await ensureDevPki('.certbound');
const server = createServer({
  cert: readFileSync(paths.server),
  key: readFileSync(paths.serverKey),
  ca: readFileSync(paths.caBundle),
  clientAuth: 'optional',
  logger: { level: 'warn' },
  upstream: { url: `http://127.0.0.1:${backendPort}`, requirePaths: ['/admin/'] },
});
const { port } = await server.listen({ host: '127.0.0.1', port: 0 });

function get(path: string, withCertificate: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, agent: false, ca: readFileSync(paths.rootCa),
      // A client cannot forge the certificate header: certbound replaces it.
      headers: { 'Client-Cert': ':AAAA:' },
      ...(withCertificate ? { cert: readFileSync(paths.client), key: readFileSync(paths.clientKey) } : {}),
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    });
    req.on('error', reject);
    req.end();
  });
}

console.log('with the certificate    /api/orders →', await get('/api/orders', true));
console.log('without a certificate   /api/orders →', await get('/api/orders', false));
console.log('without a certificate   /admin/     →', await get('/admin/', false));
await server.close();
backend.close();
