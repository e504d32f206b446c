// Benchmark (not a test): full TLS handshakes per second with OCSP stapling on and off, in
// one run, alternating rounds, medians and their ratio; then the heap held by 1,000 open
// server OCSP response handles. Loopback only, bounded in count and time.
//
//   node --expose-gc --import tsx bench/ocsp-handshakes.ts [--rounds 5] [--handshakes 400] [--handles 1000]
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { issueResponderCertificate, startDevOcspResponder } from '../src/ocsp/responder.js';
import { createStapler } from '../src/ocsp/stapler.js';
import { closeServerOcspResponse, openServerOcspResponse, type ServerOcspResponseHandle } from '../src/ocsp/handle.js';

const { values } = parseArgs({ options: { rounds: { type: 'string' }, handshakes: { type: 'string' }, handles: { type: 'string' }, concurrency: { type: 'string' } } });
const ROUNDS = Math.min(Math.max(3, Number(values.rounds ?? 5)), 21);
const HANDSHAKES = Math.min(Math.max(50, Number(values.handshakes ?? 400)), 5000);
const HANDLES = Math.min(Math.max(10, Number(values.handles ?? 1000)), 5000);
const CONCURRENCY = Math.min(Math.max(1, Number(values.concurrency ?? 8)), 64);
const DEADLINE = Date.now() + 120_000;

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2; };

async function listen(server: tls.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** One full handshake (no session reused), asking for a staple; resolves whether one came. */
function handshake(port: number, ca: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    let stapled = false;
    const options: tls.ConnectionOptions & { requestOCSP: boolean } = { host: '127.0.0.1', port, servername: 'localhost', ca, requestOCSP: true };
    const s = tls.connect(options);
    s.on('OCSPResponse', (r: Buffer | null) => { stapled = (r?.length ?? 0) > 0; });
    s.on('secureConnect', () => { s.destroy(); resolve(stapled); });
    s.on('error', reject);
  });
}

async function round(port: number, ca: string): Promise<{ perSecond: number; stapled: number }> {
  let next = 0;
  let stapled = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < HANDSHAKES && Date.now() < DEADLINE) {
      next++;
      if (await handshake(port, ca)) stapled++;
    }
  }));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { perSecond: next / seconds, stapled };
}

async function handshakes(ca: IssuedCertificate, leaf: IssuedCertificate): Promise<void> {
  const stapler = createStapler();
  await stapler.add([leaf.der, ca.der]);
  const opts = { cert: leaf.pem + ca.pem, key: leaf.keyPem };
  const on = tls.createServer(opts, (s) => s.end());
  const off = tls.createServer(opts, (s) => s.end());
  stapler.attach(on);
  const portOn = await listen(on);
  const portOff = await listen(off);
  await round(portOn, ca.pem); // warm-up
  await round(portOff, ca.pem);
  const rates: { on: number[]; off: number[] } = { on: [], off: [] };
  for (let i = 0; i < ROUNDS && Date.now() < DEADLINE; i++) {
    // Alternate the order so neither side always runs on a warmer process.
    for (const side of i % 2 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
      const r = await round(side === 'on' ? portOn : portOff, ca.pem);
      if (side === 'on' && r.stapled === 0) throw new Error('stapling on, but no staple was seen');
      if (side === 'off' && r.stapled !== 0) throw new Error('stapling off, but a staple was seen');
      rates[side].push(r.perSecond);
    }
  }
  const mOn = median(rates.on);
  const mOff = median(rates.off);
  console.log(`full handshakes/s (ECDSA P-256, TLS 1.3, ${HANDSHAKES} per round, concurrency ${CONCURRENCY}, ${rates.on.length} rounds each)`);
  console.log(`  stapling off: median ${mOff.toFixed(0)}  rounds ${rates.off.map((r) => r.toFixed(0)).join(' ')}`);
  console.log(`  stapling on:  median ${mOn.toFixed(0)}  rounds ${rates.on.map((r) => r.toFixed(0)).join(' ')}`);
  console.log(`  ratio on/off: ${(mOn / mOff).toFixed(3)}`);
  await stapler.close();
  await new Promise<void>((resolve) => on.close(() => resolve()));
  await new Promise<void>((resolve) => off.close(() => resolve()));
}

async function handleMemory(ca: IssuedCertificate, responderUrl: string): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const leaves: Buffer[] = [];
  for (let i = 0; i < HANDLES && Date.now() < DEADLINE; i++) {
    leaves.push((await issueCertificate({ subject: { commonName: `h${i}.bench` }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: responderUrl })).der);
  }
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const handles: ServerOcspResponseHandle[] = [];
  // Opened one after the other (flags 0: each first retrieval done), as the stapler's add() does;
  // opening all at once with the async flag would send the responder a burst of 1,000 requests.
  for (const der of leaves) {
    const { handle } = await openServerOcspResponse([der, ca.der], 0);
    if (handle) handles.push(handle);
  }
  gc?.();
  const after = process.memoryUsage().heapUsed;
  const stapled = handles.filter((h) => h.state().stapled).length;
  const reasons = [...new Set(handles.map((h) => h.state().lastReason).filter((r) => r !== null))];
  console.log(`${handles.length} open handles (${stapled} with a staple): heap +${((after - before) / 1024 / 1024).toFixed(2)} MiB, ${((after - before) / handles.length / 1024).toFixed(1)} KiB each${gc ? '' : ' (run with --expose-gc for a stable figure)'}${reasons.length ? `; failures: ${reasons.join(', ')}` : ''}`);
  for (const h of handles) closeServerOcspResponse(h);
}

const ca = await issueCertificate({ subject: { commonName: 'bench CA' }, ca: true });
const responder = await startDevOcspResponder({ issuer: ca, responder: await issueResponderCertificate(ca), validityMinutes: 60 });
const leaf = await issueCertificate({ subject: { commonName: 'localhost' }, issuer: ca, extKeyUsage: [OID.serverAuth], altNames: ['localhost'], ocspUrl: responder.url });
try {
  await handshakes(ca, leaf);
  await handleMemory(ca, responder.url);
} finally {
  await responder.close();
}
