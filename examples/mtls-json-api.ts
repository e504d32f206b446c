// An mTLS JSON API: every client must present a certificate from the trusted CA; the
// certificate is mapped to an identity (one-to-one by thumbprint, many-to-one by subject
// rules, as IIS does), and handlers authorize by identity.
//
//   node --import tsx examples/mtls-json-api.ts            (demo: serve, call, print, exit)
//   node --import tsx examples/mtls-json-api.ts --serve    (keep serving on https://localhost:8443)
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { createServer, ensureDevPki } from 'certbound';

const { paths } = await ensureDevPki('.certbound');
const devClientThumbprint = new X509Certificate(readFileSync(paths.client)).fingerprint;

const server = createServer({
  cert: readFileSync(paths.server),
  key: readFileSync(paths.serverKey),
  ca: readFileSync(paths.caBundle),
  clientAuth: 'require',
  mapper: {
    oneToOne: [{ thumbprint: devClientThumbprint, identity: 'alice' }],
    manyToOne: [{ name: 'staff', rules: [{ field: 'subject', attribute: 'OU', match: 'users' }], identity: 'staff' }],
  },
  logger: { level: 'warn' },
});

server.app.get('/api/orders', async (request, reply) => {
  const cert = request.clientCertificate();
  if (cert?.identity !== 'alice') return reply.code(403).send({ error: 'only alice may list orders' });
  return { orders: [{ id: 1, item: 'certificates', by: cert.identity }] };
});

const serve = process.argv.includes('--serve');
const { port } = await server.listen({ host: '127.0.0.1', port: serve ? 8443 : 0 });

if (serve) {
  console.log(`https://localhost:${port}/api/orders`);
} else {
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path: '/api/orders', servername: 'localhost',
      ca: readFileSync(paths.rootCa), cert: readFileSync(paths.client), key: readFileSync(paths.clientKey),
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
  console.log(`GET /api/orders as the dev client → ${answer.status} ${answer.body}`);
  await server.close();
  process.exitCode = answer.status === 200 ? 0 : 1;
}
