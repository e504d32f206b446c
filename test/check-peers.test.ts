// The first step of `npm test` (scripts/check-peers.mjs): with a peer missing from PATH it stops
// at once with exit code 1 and one line naming the Debian package and the apt-get command; .ci/run
// installs from the same list (scripts/peers.json).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants, readFileSync, symlinkSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/pki.js';
import { run } from './helpers/exec.js';

const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const SCRIPT = join(ROOT, 'scripts', 'check-peers.mjs');
const { peers } = JSON.parse(readFileSync(join(ROOT, 'scripts', 'peers.json'), 'utf8')) as { peers: Record<string, string> };

function which(command: string): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {
      // not here
    }
  }
  throw new Error(`${command} is not on PATH`);
}

/** A PATH of one directory holding every peer but `without`; runs the check with it (node by its absolute path). */
function checkWithout(without: readonly string[], args: string[] = []) {
  const bin = tempDir('cb-peers-');
  for (const command of Object.keys(peers)) if (!without.includes(command)) symlinkSync(which(command), join(bin, command));
  return run(process.execPath, [SCRIPT, ...args], { env: { PATH: bin } });
}

test('the peers and their Debian packages: one list', () => {
  assert.deepEqual(peers, { openssl: 'openssl', curl: 'curl', python3: 'python3', 'gnutls-cli': 'gnutls-bin', chromium: 'chromium', taskset: 'util-linux', ps: 'procps', 'redis-server': 'redis-server' });
  const ci = readFileSync(join(ROOT, '.ci', 'run'), 'utf8');
  assert.match(ci, /node scripts\/check-peers\.mjs --missing-packages/);
  assert.doesNotMatch(ci, /command -v/, '.ci/run keeps no list of its own');
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: { test: string } };
  assert.match(pkg.scripts.test, /^node scripts\/check-peers\.mjs && /, 'the first step of npm test');
});

test('a missing peer stops the check with one line: the package and the apt-get command', async () => {
  const [all, noChromium, noPs, two, packages] = await Promise.all([
    checkWithout([]),
    checkWithout(['chromium']),
    checkWithout(['ps']),
    checkWithout(['gnutls-cli', 'taskset']),
    checkWithout(['gnutls-cli', 'taskset'], ['--missing-packages']),
  ]);
  assert.deepEqual([all.code, all.stdout, all.stderr], [0, '', '']);
  assert.deepEqual([noChromium.code, noChromium.stdout, noChromium.stderr], [1, '', 'npm test needs chromium: install with sudo apt-get install -y chromium\n']);
  assert.deepEqual([noPs.code, noPs.stderr], [1, 'npm test needs ps (package procps): install with sudo apt-get install -y procps\n']);
  assert.deepEqual([two.code, two.stderr], [1, 'npm test needs gnutls-cli (package gnutls-bin), taskset (package util-linux): install with sudo apt-get install -y gnutls-bin util-linux\n']);
  assert.deepEqual([packages.code, packages.stdout], [0, 'gnutls-bin\nutil-linux\n'], 'what .ci/run installs');
});
