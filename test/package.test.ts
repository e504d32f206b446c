// The published package as a consumer gets it: `npm pack`, install the tarball into a fresh
// project that has its own fastify 5 (an older 5.x than ours: fastify and pino are peer
// dependencies, so it gets one copy of each), import it from TypeScript (type-checked against
// that fastify's types) and JavaScript, run a server, use the bin.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, realpathSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';
import { builtinModules } from 'node:module';

// The checkout itself (tests may run from .test-build/, a mirror of links: npm pack follows none).
const repo = dirname(realpathSync(resolve(import.meta.dirname, '..', 'package.json')));

test('npm pack → install in a fresh project → TypeScript, JavaScript and npx certbound work', { timeout: 240_000 }, async () => {
  const dir = tempDir('certbound-pack-');
  // The tarball of dist/ as `npm test` built it just before: --ignore-scripts skips `prepare`,
  // which would build it a second time.
  const packed = await run('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', dir], { cwd: repo, timeoutMs: 120_000 });
  assert.equal(packed.code, 0, packed.stderr);
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  assert.ok(tarball, 'a tarball was written');

  const list = await run('tar', ['-tzf', join(dir, tarball)]);
  assert.match(list.stdout, /package\/dist\/index\.js/);
  assert.match(list.stdout, /package\/dist\/index\.d\.ts/);
  assert.match(list.stdout, /package\/bin\/certbound\.js/);
  assert.doesNotMatch(list.stdout, /package\/(test|src|\.certbound|node_modules)\//, 'no sources, tests or dev PKI in the package');
  assert.match(list.stdout, /^package\/LICENSE$/m, 'the licence ships');
  // Source maps name ../src files that do not ship: each carries its sources inline.
  const maps = list.stdout.split('\n').filter((f) => f.endsWith('.js.map'));
  assert.ok(maps.length > 10, 'source maps ship');
  const extracted = join(dir, 'extracted');
  mkdirSync(extracted);
  assert.equal((await run('tar', ['-xzf', join(dir, tarball), '-C', extracted])).code, 0);
  for (const m of maps) {
    const map = JSON.parse(readFileSync(join(extracted, m), 'utf8')) as { sources: string[]; sourcesContent?: Array<string | null> };
    assert.equal(map.sourcesContent?.length, map.sources.length, `${m} carries its sources`);
    assert.ok(map.sourcesContent?.every((c) => typeof c === 'string' && c.length > 0), `${m} carries its sources`);
  }

  const project = join(dir, 'consumer');
  mkdirSync(project);
  // The app's own fastify, the oldest of our peer range (5.0 and 5.1 still typed the deprecated
  // request.connection, which certbound's decoration replaces), and pino 9 as that fastify uses.
  const peers = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> };
  assert.deepEqual(peers.peerDependencies, { fastify: '^5.2.0', pino: '^9.0.0 || ^10.0.0' });
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', type: 'module', private: true, dependencies: { fastify: '5.2.0', pino: '^9.0.0' } }));
  // Production only, as deploy/Containerfile installs it: certbound needs nothing of its dev dependencies.
  const install = await run('npm', ['install', '--omit=dev', '--no-audit', '--no-fund', '--loglevel=error', '--prefer-offline', join(dir, tarball)], { cwd: project, timeoutMs: 180_000 });
  assert.equal(install.code, 0, install.stderr);
  // One fastify and one pino, the app's: certbound's are deduped into them.
  const ls = await run('npm', ['ls', 'fastify', 'pino', '--all', '--parseable', '--long'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(ls.code, 0, ls.stdout + ls.stderr);
  const copies = (name: string) => [...new Set(ls.stdout.split('\n').filter((l) => l.includes(`/node_modules/${name}:`)).map((l) => l.split(':')[1]))];
  assert.deepEqual(copies('fastify'), ['fastify@5.2.0'], ls.stdout);
  assert.equal(copies('pino').length, 1, ls.stdout);
  assert.match(copies('pino')[0] ?? '', /^pino@9\./);
  // certbound's own fastify is that one copy (a path under certbound/node_modules would be a second).
  assert.ok(!/certbound\/node_modules\/(fastify|pino)[:/]/.test(ls.stdout), ls.stdout);

  writeFileSync(join(project, 'consumer.ts'), `
import { createServer, receiveClientCertificate, Win32, type ClientCertificate, type ReceiveResult } from 'certbound';
import certbound from 'certbound';
import Fastify from 'fastify';
const s = createServer({ cert: '', key: '', clientAuth: 'accept-untrusted' });
s.app.get('/', async (request) => {
  const c: ClientCertificate | null = request.clientCertificate();
  const r: ReceiveResult = receiveClientCertificate(s.queue, request.connectionId ?? 0n, 0, 4096);
  return { ok: r.status === Win32.NO_ERROR, sha1: c?.sha1 };
});
const app = Fastify();
await app.register(certbound, { clientAuth: 'optional' });
app.get('/x', { config: { clientCertificate: 'on-demand' } }, async (req) => req.connectionId?.toString());
app.get('/me', { config: { clientCertificate: 'required' } }, async (req) => ({ sha1: req.clientCertificate()?.sha1, id: req.connectionId }));
app.setErrorHandler((err: Error & { code?: string; statusCode?: number }, _req, reply) => reply.code(err.statusCode ?? 500).send({ refused: err.code }));
const mode: 'none' | 'optional' | 'require' | 'accept-untrusted' = app.certbound.clientAuth;
// @ts-expect-error an unknown route requirement
app.get('/y', { config: { clientCertificate: 'sometimes' } }, async () => mode);
// @ts-expect-error an unknown plugin option
await app.register(certbound, { colour: 'red' });
// @ts-expect-error unknown mode
createServer({ cert: '', key: '', clientAuth: 'sometimes' });
`);
  // Every module the shipped declarations import is relative, a Node built-in, or one the
  // package depends on: a type from a dev dependency would turn into `any` for a consumer. This
  // exact check replaces type-checking every library's .d.ts (skipLibCheck: false cost 8 CPU-s);
  // the @ts-expect-error lines below fail if a type the consumer uses became `any`.
  const manifest = JSON.parse(readFileSync(join(extracted, 'package', 'package.json'), 'utf8')) as { dependencies: Record<string, string>; peerDependencies: Record<string, string> };
  const allowed = new Set([...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies)]);
  const declarations = list.stdout.split('\n').filter((f) => f.endsWith('.d.ts'));
  assert.ok(declarations.length > 10, 'declarations ship');
  for (const f of declarations) {
    const text = readFileSync(join(extracted, f), 'utf8');
    for (const m of text.matchAll(/(?:from|import\()\s*['"]([^'"]+)['"]/g)) {
      const spec = m[1] as string;
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0] as string;
      assert.ok(spec.startsWith('./') || spec.startsWith('../') || spec.startsWith('node:') || builtinModules.includes(spec) || allowed.has(pkg), `${f} imports ${spec}, which a consumer does not get`);
    }
  }
  writeFileSync(join(project, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: true, types: ['node'], typeRoots: [join(repo, 'node_modules', '@types')] },
    files: ['consumer.ts'],
  }));
  const tsc = await run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], { cwd: project, timeoutMs: 60_000 });
  assert.equal(tsc.code, 0, tsc.stdout + tsc.stderr);

  writeFileSync(join(project, 'consumer.mjs'), `
import { createServer, createDevPki, Win32 } from 'certbound';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
const pki = await createDevPki('./pki');
const s = createServer({ cert: readFileSync(pki.server), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caBundle), clientAuth: 'require', logger: false, referenceRoutes: true });
const { port } = await s.listen({ host: '127.0.0.1', port: 0 });
const body = await new Promise((res, rej) => {
  const r = request({ host: '127.0.0.1', port, path: '/connection', servername: 'localhost', ca: readFileSync(pki.rootCa), cert: readFileSync(pki.client), key: readFileSync(pki.clientKey) }, (m) => { let b = ''; m.on('data', (d) => (b += d)); m.on('end', () => res(b)); });
  r.on('error', rej); r.end();
});
await s.close();
const info = JSON.parse(body);
console.log(JSON.stringify({ certFlags: info.clientCertificate.certFlags, noError: Win32.NO_ERROR }));
`);
  const js = await run(process.execPath, ['consumer.mjs'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(js.code, 0, js.stderr);
  assert.deepEqual(JSON.parse(js.stdout.trim()), { certFlags: 0, noError: 0 });

  // certbound/client: the client part alone, without fastify or pino (checked with a resolve hook).
  writeFileSync(join(project, 'hook.mjs'), "export async function resolve(s, c, n) { const r = await n(s, c); if (r.url.includes('/node_modules/fastify/') || r.url.includes('/node_modules/pino/')) console.log('LOADED ' + r.url); return r; }");
  writeFileSync(join(project, 'register.mjs'), "import { register } from 'node:module'; register('./hook.mjs', import.meta.url);");
  writeFileSync(join(project, 'client-only.mjs'), "const c = await import('certbound/client'); console.log(typeof c.JobManager === 'function' ? 'client ok' : 'no JobManager');");
  const clientOnly = await run(process.execPath, ['--import', './register.mjs', 'client-only.mjs'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(clientOnly.code, 0, clientOnly.stderr);
  assert.equal(clientOnly.stdout.trim(), 'client ok', 'certbound/client loads neither fastify nor pino');

  const version = await run('npx', ['--no-install', 'certbound', '--version'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), (JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string }).version);
  // The container's ENTRYPOINT: node with the installed package's bin.
  const entry = await run(process.execPath, [join(project, 'node_modules', 'certbound', 'bin', 'certbound.js'), '--version'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(entry.code, 0, entry.stderr);
  // The bin npm linked, run as an installed command (npx started it above).
  const pki = await run(join(project, 'node_modules', '.bin', 'certbound'), ['dev-pki', 'npx-pki'], { cwd: project, timeoutMs: 60_000 });
  assert.equal(pki.code, 0, pki.stderr);
  assert.ok(readdirSync(join(project, 'npx-pki')).includes('client.pem'));
});
