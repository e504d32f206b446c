// certbound added to an existing fastify 5 HTTPS app as a plugin: the app keeps its own
// server options; certbound decorates requests (connectionId, clientCertificate(),
// channelBinding(), negotiateClientCertificate()) and adds route options.
//
//   node --import tsx examples/fastify-plugin.ts
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import Fastify from 'fastify';
import certbound, { ensureDevPki } from 'certbound';

const { paths } = await ensureDevPki('.certbound');

// The existing app: fastify's own https options, asking for an optional client certificate.
const app = Fastify({
  https: {
    cert: readFileSync(paths.server),
    key: readFileSync(paths.serverKey),
    ca: readFileSync(paths.caBundle),
    requestCert: true,
    rejectUnauthorized: false,
  },
});
await app.register(certbound, { clientAuth: 'optional' });

app.get('/public', async (request) => ({ connectionId: String(request.connectionId) }));
app.get('/private', { config: { clientCertificate: 'required' } }, async (request) => {
  const cert = request.clientCertificate();
  return { subject: cert?.subject, sha1: cert?.sha1, certFlags: cert?.certFlags };
});

await app.listen({ host: '127.0.0.1', port: 0 });
const { port } = app.server.address() as { port: number };

function get(path: string, withCertificate: boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, servername: 'localhost', agent: false, ca: readFileSync(paths.rootCa),
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

console.log('GET /public without a certificate →', await get('/public', false));
console.log('GET /private without a certificate →', await get('/private', false));
console.log('GET /private with the dev client certificate →', await get('/private', true));
await app.close();
