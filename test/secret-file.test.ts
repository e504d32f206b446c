// The secret-file rule (src/secret-file.ts) on real files: 0600 in a 0700 directory whatever was
// there before and whatever the umask, links replaced and never written through, and
// checkSecretFile's report on a key that group or others can read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertboundError, type ErrorCode } from '../src/errors.js';
import { checkSecretFile, ensurePrivateDir, writeSecretFile } from '../src/secret-file.js';
import { tempDir } from './helpers/pki.js';

const mode = (path: string) => statSync(path).mode & 0o7777;

/** Runs `fn` with the process umask set to `mask`, then puts the old one back. */
function withUmask<T>(mask: number, fn: () => T): T {
  const old = process.umask(mask);
  try {
    return fn();
  } finally {
    process.umask(old);
  }
}

const code = (expected: ErrorCode, message: string) => (err: unknown) => {
  assert.ok(err instanceof CertboundError, String(err));
  assert.equal(err.code, expected);
  assert.equal(err.message, message);
  return true;
};

test('writeSecretFile: 0600 in a 0700 directory under umask 0, over a 0644 file in a 0755 directory', () => {
  const root = tempDir('cb-secret-');
  const dir = join(root, 'keys');
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const key = join(dir, 'client.key');
  writeFileSync(key, 'old key');
  chmodSync(key, 0o644);
  withUmask(0, () => writeSecretFile(key, 'new key'));
  assert.equal(readFileSync(key, 'utf8'), 'new key');
  assert.equal(mode(key).toString(8), '600');
  assert.equal(mode(dir).toString(8), '700');
  assert.deepEqual(readdirSync(dir), ['client.key'], 'no temporary file is left');

  // Missing parents are created 0700; under umask 0 and under a umask that takes owner bits.
  for (const mask of [0, 0o277]) {
    const nested = join(root, `new-${mask}`, 'a', 'b');
    withUmask(mask, () => writeSecretFile(join(nested, 'k.pem'), Buffer.from('k')));
    assert.equal(mode(join(nested, 'k.pem')).toString(8), '600', `umask ${mask.toString(8)}`);
    assert.equal(mode(nested).toString(8), '700', `umask ${mask.toString(8)}`);
  }
});

test('writeSecretFile replaces a symbolic link at the path and never writes through it', () => {
  const root = tempDir('cb-secret-link-');
  const victim = join(root, 'victim.txt');
  writeFileSync(victim, 'precious');
  chmodSync(victim, 0o644);
  const dir = join(root, 'private');
  const key = join(dir, 'client.key');
  mkdirSync(dir, { mode: 0o700 });
  symlinkSync(victim, key);
  writeSecretFile(key, 'secret');
  assert.equal(readFileSync(victim, 'utf8'), 'precious');
  assert.equal(mode(victim).toString(8), '644', 'the link target is not chmodded either');
  assert.equal(readFileSync(key, 'utf8'), 'secret');
  assert.equal(mode(key).toString(8), '600');
});

test('ensurePrivateDir: fixes a wide mode, refuses a file and another user\'s directory (CB_ERR_PRIVATE_DIR)', () => {
  const root = tempDir('cb-private-dir-');
  const wide = join(root, 'wide');
  mkdirSync(wide);
  chmodSync(wide, 0o777);
  assert.equal(ensurePrivateDir(wide), wide);
  assert.equal(mode(wide).toString(8), '700');
  const file = join(root, 'a-file');
  writeFileSync(file, '');
  assert.throws(() => ensurePrivateDir(file), code('CB_ERR_PRIVATE_DIR', `Cannot use ${file} as a private directory (mode 0700, owned by this user): not a directory (EEXIST)`));
  assert.throws(() => writeSecretFile(join(file, 'x.key'), 'k'), code('CB_ERR_PRIVATE_DIR', `Cannot use ${file} as a private directory (mode 0700, owned by this user): not a directory (EEXIST)`));
  assert.throws(() => ensurePrivateDir(join(file, 'sub')), code('CB_ERR_PRIVATE_DIR', `Cannot use ${join(file, 'sub')} as a private directory (mode 0700, owned by this user): not a directory (ENOTDIR)`));
  if (process.getuid?.() === 0) {
    // Its owner could replace the files whatever their modes: refused, not chmodded.
    const theirs = join(root, 'theirs');
    mkdirSync(theirs, { mode: 0o755 });
    chownSync(theirs, 65534, 65534);
    assert.throws(() => ensurePrivateDir(theirs), code('CB_ERR_PRIVATE_DIR', `Cannot use ${theirs} as a private directory (mode 0700, owned by this user): owned by uid 65534, not by this user (uid 0)`));
    assert.equal(mode(theirs).toString(8), '755');
  }
});

test('checkSecretFile reports a key group or others can access, and changes nothing', () => {
  const dir = tempDir('cb-check-');
  const key = join(dir, 'client.key');
  writeFileSync(key, 'k');
  for (const [m, reported] of [[0o600, false], [0o400, false], [0o640, true], [0o644, true], [0o604, true], [0o620, true], [0o601, true]] as const) {
    chmodSync(key, m);
    const report = checkSecretFile(key);
    if (!reported) {
      assert.equal(report, undefined, m.toString(8));
      continue;
    }
    const octal = `0${m.toString(8)}`;
    assert.deepEqual(report, { path: key, mode: m, code: 'CB_ERR_SECRET_FILE_MODE', message: `The secret file ${key} is mode ${octal}: group or others can access it (chmod 600 it)` });
    assert.equal(mode(key), m, 'reported, not chmodded');
  }
  assert.throws(() => checkSecretFile(join(dir, 'missing.key')), code('CB_ERR_SECRET_FILE', `Cannot use the secret file ${join(dir, 'missing.key')}: ENOENT`));
  assert.throws(() => checkSecretFile(dir), code('CB_ERR_SECRET_FILE', `Cannot use the secret file ${dir}: not a regular file`));
});

test('ensurePrivateDir noLink: a symbolic link is refused (CB_ERR_PRIVATE_DIR) and the directory it names is left as it is', () => {
  const dir = tempDir('certbound-nolink-');
  const victim = join(dir, 'victim');
  mkdirSync(victim);
  chmodSync(victim, 0o755);
  symlinkSync(victim, join(dir, 'ocsp'));
  assert.throws(() => ensurePrivateDir(join(dir, 'ocsp'), { noLink: true }), code('CB_ERR_PRIVATE_DIR', `Cannot use ${join(dir, 'ocsp')} as a private directory (mode 0700, owned by this user): it is a symbolic link (to ${victim}); certbound does not follow links for the directories it keeps inside another one: remove the link`));
  assert.equal(mode(victim), 0o755);
  // A dangling link too (mkdir -p would otherwise create the directory it names).
  symlinkSync(join(dir, 'elsewhere'), join(dir, 'crl'));
  assert.throws(() => ensurePrivateDir(join(dir, 'crl'), { noLink: true }), (err: unknown) => err instanceof CertboundError && err.code === 'CB_ERR_PRIVATE_DIR');
  assert.deepEqual(readdirSync(dir).sort(), ['crl', 'ocsp', 'victim']);
  // A real directory (or none yet) is made private as before.
  assert.equal(ensurePrivateDir(join(dir, 'fresh'), { noLink: true }), join(dir, 'fresh'));
  assert.equal(mode(join(dir, 'fresh')), 0o700);
});
