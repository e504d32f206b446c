// The deployment files (deploy/): the systemd unit is checked by `systemd-analyze verify` where
// it runs and its ExecStart flags by the parser `certbound serve` uses; the container file's COPY
// sources exist, its CMD parses, its base image's Node major satisfies package.json engines.
// What is not checked here (docs/deployment.md says so): starting the unit under systemd and
// building or running the image.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serveConfigOf } from '../src/server/cli.js';
import { tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const DEPLOY = join(ROOT, 'deploy');
const CONFIG = '/etc/certbound/certbound.yaml';

/** `serve` arguments with the installed config path pointed at deploy/certbound.yaml (the file the docs install there). */
const withRepoConfig = (args: readonly string[]) => args.map((a) => (a === CONFIG ? join(DEPLOY, 'certbound.yaml') : a));

/** The [Service] (etc.) keys of a unit file: section → key → values (a key may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const out = new Map<string, Map<string, string[]>>();
  let section: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      section = new Map();
      out.set(head[1] as string, section);
      continue;
    }
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line);
    assert.ok(kv && section, `unit line: ${line}`);
    section.set(kv[1] as string, [...(section.get(kv[1] as string) ?? []), kv[2] as string]);
  }
  return out;
}

test('systemd unit: ExecStart runs certbound serve with flags it accepts, reload is SIGHUP, systemd-analyze verify is clean', async (t) => {
  const text = readFileSync(join(DEPLOY, 'certbound.service'), 'utf8');
  const unit = parseUnit(text);
  const service = unit.get('Service');
  assert.ok(service);
  assert.deepEqual(service.get('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  assert.deepEqual(service.get('KillSignal'), ['SIGTERM']);
  assert.deepEqual(unit.get('Install')?.get('WantedBy'), ['multi-user.target']);
  const [program, command, ...flags] = (service.get('ExecStart')?.[0] ?? '').split(/\s+/);
  assert.deepEqual([program, command], ['/usr/local/bin/certbound', 'serve']);
  const cfg = serveConfigOf(withRepoConfig(flags));
  assert.deepEqual([cfg.host, cfg.port, cfg.clientAuth, cfg.cert, cfg.ca], ['0.0.0.0', 443, 'require', '/etc/certbound/server.pem', ['/etc/certbound/clients-ca.pem']]);
  assert.equal(service.get('WorkingDirectory')?.[0], `/var/lib/${service.get('StateDirectory')?.[0] ?? ''}`, 'the working directory is the state directory systemd creates');

  const which = await run('sh', ['-c', 'command -v systemd-analyze']);
  if (which.code !== 0) {
    t.diagnostic('systemd-analyze is not installed: the unit was checked by the parser above only');
    return;
  }
  // The unit as installed, with ExecStart pointing at this checkout's bin (systemd checks it is executable).
  const dir = tempDir('cb-unit-');
  const unitFile = join(dir, 'certbound.service');
  writeFileSync(unitFile, text.replace('/usr/local/bin/certbound', join(ROOT, 'bin', 'certbound.js')));
  const r = await run('systemd-analyze', ['verify', unitFile], { timeoutMs: 20_000 });
  assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 0, stderr: '' }, 'no error and no warning');
  // The check can fail: a key systemd does not know is reported.
  const bad = join(dir, 'bad.service');
  copyFileSync(unitFile, bad);
  writeFileSync(bad, readFileSync(bad, 'utf8').replace('ExecReload=', 'ExecRelaod='));
  const r2 = await run('systemd-analyze', ['verify', bad], { timeoutMs: 20_000 });
  assert.match(r2.stderr, /Unknown key 'ExecRelaod'/);
});

test('container file: every COPY source exists, the CMD parses as certbound serve, Node major matches engines', () => {
  const text = readFileSync(join(DEPLOY, 'Containerfile'), 'utf8');
  const lines = text.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
  const froms = lines.filter((l) => l.startsWith('FROM ')).map((l) => l.split(/\s+/)[1] ?? '');
  assert.equal(froms.length, 2, 'a build stage and a runtime stage');
  const engines = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { engines: { node: string } }).engines.node;
  const [, minMajor, minMinor] = /^>=(\d+)\.(\d+)$/.exec(engines) ?? [];
  assert.ok(minMajor && minMinor, `engines ${engines}`);
  for (const image of froms) {
    const m = /^node:(\d+)-bookworm-slim$/.exec(image);
    assert.ok(m, `base image ${image}: the official node image, a major line`);
    // node:20-* is the newest 20.x, which is past 20.19 since 2025.
    assert.equal(m[1], minMajor, `${image} runs the Node major of engines ${engines}`);
  }
  let copies = 0;
  for (const line of lines.filter((l) => l.startsWith('COPY ') && !l.includes('--from='))) {
    const parts = line.split(/\s+/).slice(1).filter((p) => !p.startsWith('--'));
    for (const src of parts.slice(0, -1)) {
      assert.ok(existsSync(join(ROOT, src)), `COPY source ${src} exists in the build context (the repository root)`);
      copies++;
    }
  }
  assert.ok(copies >= 7, `${copies} sources`);
  // The runtime stage installs what the build stage packed, as a user installs certbound: the
  // tarball with its peers fastify and pino (at the lock's versions), production only.
  for (const line of lines.filter((l) => l.includes('--from=build'))) assert.equal(line, 'COPY --from=build /pkg /pkg');
  assert.match(text, /npm pack --ignore-scripts --pack-destination \/pkg/);
  assert.match(text, /npm install --omit=dev --no-audit --no-fund \/pkg\/certbound-\*\.tgz \$\(cat \/pkg\/peers\.txt\)/);
  assert.doesNotMatch(text, /npm prune --omit=dev/, 'a prune would drop fastify and pino (dev dependencies here, peers of the package)');
  const peers = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { peerDependencies: Record<string, string> }).peerDependencies;
  assert.deepEqual(Object.keys(peers).sort(), ['fastify', 'pino'], 'peers.txt names every peer');
  const files = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { files: string[] }).files;
  assert.match(text, /RUN npm ci /, 'the build stage builds dist/ (npm ci runs prepare)');
  for (const f of files.filter((x) => x !== 'dist')) assert.match(text, new RegExp(`^COPY (.* )?${f.replace('.', '\\.')}( |$)`, 'm'), `the build stage copies ${f}, which the package ships`);
  const json = (key: string) => JSON.parse(lines.find((l) => l.startsWith(`${key} `))?.slice(key.length + 1) ?? 'null') as string[];
  assert.deepEqual(json('ENTRYPOINT'), ['node', '/app/node_modules/certbound/bin/certbound.js']);
  const [command, ...flags] = json('CMD');
  assert.equal(command, 'serve');
  const cfg = serveConfigOf(withRepoConfig(flags));
  assert.equal(cfg.port, 443);
  assert.match(text, /^USER node$/m, 'not root');
});
