// A route that asks for a client certificate only when it is called (TLS 1.2
// renegotiation), on a server that does not ask for one at the handshake.
//
//   node --import tsx examples/on-demand-route.ts
//
// The host `localhost` is capped at TLS 1.2 (onDemandHosts) so that even clients that
// offer TLS 1.3 can be asked; see docs/on-demand.md for who gets what.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { createServer, ensureDevPki } from 'certbound';

const { paths } = await ensureDevPki('.certbound');
const server = createServer({
  cert: readFileSync(paths.server),
  key: readFileSync(paths.serverKey),
  ca: readFileSync(paths.caBundle),
  clientAuth: 'none',
  onDemandHosts: ['localhost'],
  logger: { level: 'warn' },
});

server.app.get('/', async () => ({ hello: 'no certificate needed here' }));
server.app.get('/admin', { config: { clientCertificate: 'on-demand' } }, async (request) => {
  const cert = request.clientCertificate();
  return { admin: cert?.subject, handshakes: request.connection?.handshake.sequence };
});

const { port } = await server.listen({ host: '127.0.0.1', port: 0 });

function get(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path, servername: 'localhost', agent: false,
      ca: readFileSync(paths.rootCa), cert: readFileSync(paths.client), key: readFileSync(paths.clientKey),
    }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(`${res.statusCode} ${body}`));
    });
    req.on('error', reject);
    req.end();
  });
}

console.log('GET /      →', await get('/'));
console.log('GET /admin →', await get('/admin'));
await server.close();
