// Persisted staples: every file that is not reloaded (garbage, revoked, another certificate,
// expired, bad signature, unknown, ambiguous, too short, a symlink, 20 MB, a FIFO, a directory,
// unreadable) is one 'discarded' log line with its reason, counted, deleted (the target of a
// symlink is left alone), and never stapled; the file is never read past the size limit and
// never through a symlink. What certbound writes is 0700 / 0600 whatever the umask or the
// modes found, and a planted temp-file symlink is never written through.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { issueCertificate, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { buildOcspResponse, issueResponderCertificate, startDevOcspResponder, type SingleAnswer } from '../src/ocsp/responder.js';
import { certIdFor } from '../src/ocsp/request.js';
import { createStapler } from '../src/ocsp/stapler.js';
import { StapleCache } from '../src/ocsp/staple-cache.js';
import { FileStapleStorage, type StapleStorage } from '../src/ocsp/storage.js';
import type { OcspUpdate } from '../src/ocsp/handle.js';
import { DEFAULTS } from '../src/defaults.js';
import { freePort, run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

const H = 3600_000;

/** Whether anything (a link included) is at `path`. */
const present = (path: string): boolean => { try { lstatSync(path); return true; } catch { return false; } };

function capture(): { lines: Array<Record<string, unknown>>; logger: pino.Logger } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, new Writable({ write(chunk: Buffer, _e, cb) { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); cb(); } }));
  return { lines, logger };
}

const UPDATE_KEYS = ['cert', 'certStatus', 'detail', 'durationMs', 'event', 'failures', 'fingerprint', 'method', 'nextRefresh', 'nextUpdate', 'outcome', 'reason', 'rule', 'serial', 'serving', 'thisUpdate', 'url'];

test('a persisted staple that is not reloaded: one discarded line with its reason, counted, deleted, never stapled', { timeout: 30_000 }, async () => {
  const root = tempDir('certbound-ocsp-storage-');
  const ca = await issueCertificate({ subject: { commonName: 'storage CA' }, ca: true });
  const otherCa = await issueCertificate({ subject: { commonName: 'storage CA' }, ca: true }); // same name, other key
  const signer = await issueResponderCertificate(ca);
  const downUrl = `http://127.0.0.1:${await freePort()}/`;
  const leaf = await issueCertificate({ subject: { commonName: 'storage.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: downUrl });
  const other = await issueCertificate({ subject: { commonName: 'other.test' }, issuer: ca, extKeyUsage: [OID.serverAuth] });
  const [certId, otherId] = await Promise.all([certIdFor(leaf.certificate, ca.certificate), certIdFor(other.certificate, ca.certificate)]);
  const fp = StapleCache.fingerprint(leaf.der);
  const now = Date.now();
  const thisUpdate = new Date(now - 60_000);
  const nextUpdate = new Date(now + 24 * H);
  const answer = (a: Partial<SingleAnswer> = {}): SingleAnswer => ({ certId, status: 'good', thisUpdate, nextUpdate, ...a });
  const signed = (answers: SingleAnswer[], s: IssuedCertificate = signer) => buildOcspResponse({ signer: s, responses: answers });
  const good = await signed([answer()]);
  const revokedAt = new Date(now - H);
  const expiredNext = new Date(now - H);
  const shortNext = new Date(now + 5 * 60_000);
  const outside = join(root, 'outside-good.ocsp');
  writeFileSync(outside, good);
  const isRoot = process.getuid?.() === 0;

  type Setup = (path: string) => Promise<void> | void;
  const file = (der: Buffer | Promise<Buffer>): Setup => async (path) => { writeFileSync(path, await der); };
  const cases: Array<{ name: string; reason: string; detail: string | RegExp; setup: Setup; level?: number; kept?: boolean; certStatus?: string }> = [
    { name: 'garbage', reason: 'malformed', detail: /^persisted staple: not a DER OCSPResponse: /, setup: file(Buffer.from('this is not an OCSP response')) },
    { name: 'a good response followed by bytes', reason: 'malformed', detail: 'persisted staple: not a DER OCSPResponse: 100 bytes after it', setup: file(Buffer.concat([good, Buffer.alloc(100)])) },
    { name: 'revoked', reason: 'cert-revoked', detail: `persisted staple: revoked at ${revokedAt.toISOString()}`, setup: file(signed([answer({ status: 'revoked', revocationTime: revokedAt })])), level: 50, certStatus: 'revoked' },
    { name: 'for another certificate', reason: 'certid-mismatch', detail: 'persisted staple: no SingleResponse for this certificate\'s CertID', setup: file(signed([answer({ certId: otherId })])) },
    { name: 'expired', reason: 'expired', detail: `persisted staple: nextUpdate ${expiredNext.toISOString()} has passed`, setup: file(signed([answer({ thisUpdate: new Date(now - 3 * H), nextUpdate: expiredNext })])) },
    { name: 'bad signature', reason: 'bad-signature', detail: 'persisted staple: the response signature does not verify with the responder key', setup: file(signed([answer()], { ...ca, privateKey: otherCa.privateKey })) },
    { name: 'unknown', reason: 'cert-unknown', detail: 'persisted staple: certificate status unknown', setup: file(signed([answer({ status: 'unknown' })])), certStatus: 'unknown' },
    { name: 'ambiguous (good, then revoked)', reason: 'ambiguous', detail: 'persisted staple: 2 SingleResponses for this certificate\'s CertID (good, revoked)', setup: file(signed([answer(), answer({ status: 'revoked', revocationTime: revokedAt })])) },
    { name: 'valid for less than SrvOcspRespMinValiditySeconds', reason: 'shorter-than-min-validity', detail: `persisted staple: valid until ${shortNext.toISOString()}, less than SrvOcspRespMinValiditySeconds (600 s) from now`, setup: file(signed([answer({ nextUpdate: shortNext })])), certStatus: 'good' },
    { name: 'a symlink to a good staple', reason: 'file-symlink', detail: 'persisted staple: %p is a symbolic link', setup: (path) => symlinkSync(outside, path) },
    { name: '20 MB', reason: 'file-too-large', detail: `persisted staple: %p has ${20 * 1024 * 1024} bytes, more than ${DEFAULTS.ocspMaxResponseBytes}`, setup: (path) => { writeFileSync(path, good); truncateSync(path, 20 * 1024 * 1024); } },
    { name: 'one byte over the limit', reason: 'file-too-large', detail: `persisted staple: %p has ${DEFAULTS.ocspMaxResponseBytes + 1} bytes, more than ${DEFAULTS.ocspMaxResponseBytes}`, setup: (path) => writeFileSync(path, Buffer.concat([good, Buffer.alloc(DEFAULTS.ocspMaxResponseBytes + 1 - good.length)])) },
    { name: 'a FIFO (reading it would block)', reason: 'file-not-regular', detail: 'persisted staple: %p is not a regular file', setup: async (path) => { assert.equal((await run('mkfifo', [path])).code, 0); } },
    { name: 'a directory', reason: 'file-not-regular', detail: /^persisted staple: .* is not a regular file; not deleted: /, setup: (path) => mkdirSync(path), kept: true },
    ...(isRoot ? [] : [{ name: 'unreadable (mode 000)', reason: 'file-unreadable', detail: 'persisted staple: %p: EACCES', setup: (path: string) => { writeFileSync(path, good); chmodSync(path, 0o000); } }]),
  ];

  for (const [i, c] of cases.entries()) {
    const dir = join(root, `case-${i}`);
    mkdirSync(dir, { mode: 0o700 });
    const path = join(dir, `${fp}.ocsp`);
    await c.setup(path);
    const { lines, logger } = capture();
    const stapler = createStapler({ cacheDir: dir, logger });
    const updates: OcspUpdate[] = [];
    const revokedEvents: OcspUpdate[] = [];
    stapler.on('update', (u) => updates.push(u));
    stapler.on('revoked', (u) => revokedEvents.push(u));
    const state = await stapler.add([leaf.der, ca.der]);
    await stapler.close();

    assert.equal(state?.stapled, false, `${c.name}: not stapled`);
    assert.equal(stapler.stapleFor(leaf.der), undefined, c.name);
    assert.deepEqual(updates.map((u) => [u.outcome, u.reason]), [['discarded', c.reason], ['failed', 'fetch-refused']], `${c.name}: discarded, then the (down) responder was tried`);
    const d = updates[0] as OcspUpdate;
    if (typeof c.detail === 'string') assert.equal(d.detail, c.detail.replace('%p', path), c.name);
    else assert.match(d.detail ?? '', c.detail, c.name);
    assert.deepEqual({ nextRefresh: d.nextRefresh, rule: d.rule, method: d.method, serving: d.serving, failures: d.failures, certStatus: d.certStatus }, { nextRefresh: null, rule: null, method: null, serving: false, failures: 0, certStatus: c.certStatus ?? null }, c.name);
    assert.equal(state?.certStatus, c.certStatus ?? null, `${c.name}: the status of a verified file stays known (a persisted "revoked" above all)`);
    assert.equal(revokedEvents.length, c.reason === 'cert-revoked' ? 1 : 0, c.name);

    // One log line for the discarded file, with the stable keys of every update line.
    const discardedLines = lines.filter((l) => l.event === 'ocsp-update' && l.outcome === 'discarded');
    assert.equal(discardedLines.length, 1, `${c.name}: one log line`);
    const line = discardedLines[0] as Record<string, unknown>;
    assert.deepEqual({ level: line.level, component: line.component, reason: line.reason, detail: line.detail, fingerprint: line.fingerprint, msg: line.msg }, {
      level: c.level ?? 40, component: 'ocsp', reason: c.reason, detail: d.detail, fingerprint: fp, msg: c.level === 50 ? 'OCSP update: certificate REVOKED, not stapled' : 'OCSP persisted staple discarded',
    }, c.name);
    for (const k of UPDATE_KEYS) assert.ok(k in line, `${c.name}: log line has ${k}`);

    const m = stapler.metrics();
    assert.deepEqual({ updates: m.updates, discarded: m.discarded, loaded: m.loaded, refused: m.refused, failed: m.failed, revoked: m.revoked, byReason: m.byReason }, {
      updates: 2, discarded: 1, loaded: 0, refused: 0, failed: 1, revoked: c.reason === 'cert-revoked' ? 1 : 0, byReason: { [c.reason]: 1, 'fetch-refused': 1 },
    }, `${c.name}: counted`);

    if (c.kept) assert.ok(statSync(path).isDirectory(), `${c.name}: a directory is never removed recursively`);
    else assert.equal(present(path), false, `${c.name}: deleted`);
  }
  assert.ok(readFileSync(outside).equals(good), 'the symlink\'s target is untouched');

  // A custom storage whose load throws: 'file-unreadable', never a rejected add().
  const throwing: StapleStorage = { load: () => Promise.reject(new Error('disk on fire')), store: () => Promise.resolve(), delete: () => Promise.resolve(), list: () => Promise.resolve([]) };
  const s2 = createStapler({ storage: throwing });
  const u2: OcspUpdate[] = [];
  s2.on('update', (u) => u2.push(u));
  assert.equal((await s2.add([leaf.der, ca.der]))?.stapled, false);
  await s2.close();
  assert.deepEqual(u2.map((u) => [u.outcome, u.reason, u.detail]), [['discarded', 'file-unreadable', 'persisted staple: disk on fire'], ['failed', 'fetch-refused', 'ECONNREFUSED']]);

  // A storage written against the older interface (load resolves the DER itself) still reloads.
  const legacy = { load: () => Promise.resolve(good), store: () => Promise.resolve(), delete: () => Promise.resolve(), list: () => Promise.resolve([]) } as unknown as StapleStorage;
  const s4 = createStapler({ storage: legacy });
  const st4 = await s4.add([leaf.der, ca.der]);
  await s4.close();
  assert.deepEqual({ stapled: st4?.stapled, lastOutcome: st4?.lastOutcome }, { stapled: true, lastOutcome: 'loaded' });

  // Control: a good regular file is reloaded and stapled with the responder down.
  const okDir = join(root, 'ok');
  mkdirSync(okDir, { mode: 0o700 });
  writeFileSync(join(okDir, `${fp}.ocsp`), good);
  const s3 = createStapler({ cacheDir: okDir });
  const st3 = await s3.add([leaf.der, ca.der]);
  await s3.close();
  assert.deepEqual({ stapled: st3?.stapled, lastOutcome: st3?.lastOutcome }, { stapled: true, lastOutcome: 'loaded' });
});

test('FileStapleStorage.load reads no more than the limit and never through a symlink', async () => {
  const dir = tempDir('certbound-ocsp-storage-load-');
  const storage = new FileStapleStorage(dir);
  const key = 'a'.repeat(64);
  const path = join(dir, `${key}.ocsp`);
  assert.equal(await storage.load(key), undefined, 'absent');
  writeFileSync(path, Buffer.alloc(DEFAULTS.ocspMaxResponseBytes, 1));
  const atLimit = await storage.load(key);
  assert.equal(atLimit?.ok && atLimit.der.length, DEFAULTS.ocspMaxResponseBytes, 'exactly the limit is read');
  writeFileSync(join(dir, 'target'), 'x');
  const link = join(dir, `${'b'.repeat(64)}.ocsp`);
  symlinkSync(join(dir, 'target'), link);
  assert.deepEqual(await storage.load('b'.repeat(64)), { ok: false, reason: 'file-symlink', detail: `${link} is a symbolic link` });
  await storage.delete('b'.repeat(64));
  assert.deepEqual(readdirSync(dir).sort(), [`${key}.ocsp`, 'target'], 'delete removed the link, not its target');
});

test('what certbound writes is 0700 / 0600 whatever the umask and the modes found; a planted temp symlink is not written through', async (t) => {
  const root = tempDir('certbound-ocsp-storage-modes-');
  const ca = await issueCertificate({ subject: { commonName: 'modes CA' }, ca: true });
  const responder = await startDevOcspResponder({ issuer: ca, responder: await issueResponderCertificate(ca), validityMinutes: 24 * 60 });
  t.after(() => responder.close());
  const leaf = await issueCertificate({ subject: { commonName: 'modes.test' }, issuer: ca, extKeyUsage: [OID.serverAuth], ocspUrl: responder.url });
  const fp = StapleCache.fingerprint(leaf.der);
  const mode = (p: string) => statSync(p).mode & 0o777;
  const old = process.umask(0o000);
  t.after(() => { process.umask(old); });

  // A directory created by certbound (nested), under umask 0.
  const fresh = join(root, 'a', 'b', 'staples');
  const s1 = createStapler({ cacheDir: fresh });
  assert.equal((await s1.add([leaf.der, ca.der]))?.stapled, true);
  await s1.close();
  assert.deepEqual({ dir: mode(fresh), file: mode(join(fresh, `${fp}.ocsp`)) }, { dir: 0o700, file: 0o600 });
  assert.deepEqual(readdirSync(fresh), [`${fp}.ocsp`], 'no temp file left');

  // A directory found 0755 with a 0644 staple and a symlink planted at the old temp name.
  const found = join(root, 'found');
  mkdirSync(found, { mode: 0o755 });
  chmodSync(found, 0o755);
  writeFileSync(join(found, `${fp}.ocsp`), Buffer.from('old'), { mode: 0o644 });
  const victim = join(root, 'victim');
  writeFileSync(victim, 'do not overwrite', { mode: 0o644 });
  const planted = `${fp}.ocsp.${process.pid}.tmp`;
  symlinkSync(victim, join(found, planted));
  const s2 = createStapler({ cacheDir: found });
  const st2 = await s2.add([leaf.der, ca.der]);
  await s2.close();
  assert.deepEqual({ stapled: st2?.stapled, lastOutcome: st2?.lastOutcome, lastReason: st2?.lastReason }, { stapled: true, lastOutcome: 'stapled', lastReason: null });
  const staple = join(found, `${fp}.ocsp`);
  assert.deepEqual({ dir: mode(found), file: mode(staple), regular: lstatSync(staple).isFile() }, { dir: 0o700, file: 0o600, regular: true });
  assert.equal(readFileSync(victim, 'utf8'), 'do not overwrite');
  assert.equal(mode(victim), 0o644);
  assert.deepEqual(readdirSync(found).sort(), [`${fp}.ocsp`, planted].sort());

  // A staple path that is a symlink: replaced by a 0600 file, its target untouched.
  const linked = join(root, 'linked');
  mkdirSync(linked);
  symlinkSync(victim, join(linked, `${fp}.ocsp`));
  await new FileStapleStorage(linked).store(fp, Buffer.from('der'));
  assert.deepEqual({ file: mode(join(linked, `${fp}.ocsp`)), regular: lstatSync(join(linked, `${fp}.ocsp`)).isFile(), content: readFileSync(join(linked, `${fp}.ocsp`), 'utf8') }, { file: 0o600, regular: true, content: 'der' });
  assert.equal(readFileSync(victim, 'utf8'), 'do not overwrite');
});
