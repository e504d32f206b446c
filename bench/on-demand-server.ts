// Server side of bench/on-demand.ts: two certbound servers on 127.0.0.1 (one that asks
// for the certificate at the handshake, one that asks on demand); prints their ports.
import { readFileSync } from 'node:fs';
import { createServer } from '../src/server/server.js';
import { devPkiPaths } from '../src/tls/dev-pki.js';

const pki = devPkiPaths(process.argv[2] ?? '.certbound');
const base = { cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), logger: false as const };
const atHandshake = createServer({ ...base, clientAuth: 'optional' });
atHandshake.app.get('/id', async (request) => ({ sha1: request.clientCertificate()?.sha1 ?? null }));
const onDemand = createServer({ ...base, clientAuth: 'none' });
onDemand.app.get('/id', { config: { clientCertificate: 'on-demand' } }, async (request) => ({ sha1: request.clientCertificate()?.sha1 ?? null }));
const a = await atHandshake.listen({ host: '127.0.0.1', port: 0 });
const b = await onDemand.listen({ host: '127.0.0.1', port: 0 });
process.stdout.write(JSON.stringify({ atHandshake: a.port, onDemand: b.port }) + '\n');
process.stdin.resume();
process.stdin.on('end', () => { void atHandshake.close(); void onDemand.close(); });
