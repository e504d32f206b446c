#!/usr/bin/env node
// Runs the compiled tests (.test-build/test/*.test.js, written by scripts/build-tests.mjs), three
// files at a time (CI machines have two cores), the longest first: started last, a 40-second
// file would leave one core idle at the end of the run. Each file runs in its own node
// process; its output is printed whole when it ends, and a summary at the end
// names every failed file and the slowest ones, so that the suite's time stays visible.
// Usage: node scripts/run-tests.mjs [name ...]   (names without .test.js: only those files)
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const dir = resolve(import.meta.dirname, '..', '.test-build', 'test');
// Three at a time on two cores: several files spend seconds waiting on purpose (ticket-key
// rotation, renegotiation holds, real OCSP schedules), and a third file uses that time.
const CONCURRENCY = Number(process.env.CERTBOUND_TEST_CONCURRENCY ?? 3);
/** A file still running after this is killed and counts as failed. */
const FILE_TIMEOUT_MS = 120_000;
// Longest wall time first (measured three at a time on a 2-core machine); files not listed run after, by name.
const LONGEST_FIRST = [
  'package', 'fleet', 'cli', 'renegotiation-guard', 'trust-matrix', 'examples', 'ocsp-controls', 'startup-errors', 'cluster-serve',
  'config', 'server-certificates', 'reload', 'front', 'metrics', 'ocsp-realtime', 'host-policy', 'page', 'crl-refresh', 'error-walk',
  'fleet-staples', 'fleet-revocation',
];
const only = process.argv.slice(2);
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort()
  .filter((f) => only.length === 0 || only.includes(f.slice(0, -'.test.js'.length)));
const rank = (f) => {
  const i = LONGEST_FIRST.indexOf(f.slice(0, -'.test.js'.length));
  return i === -1 ? LONGEST_FIRST.length : i;
};
const queue = files.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map(({ f }) => f);

const reports = mkdtempSync(join(tmpdir(), 'certbound-tap-'));
const results = [];
const runOne = (file) => new Promise((done) => {
  const started = Date.now();
  // The file runs as a plain node process (node:test runs its tests and prints TAP): one
  // process per file instead of `node --test`'s two. Its time limit is kept here instead.
  // Its TAP goes to a file of its own: tests that capture the process's stdout or stderr (an
  // in-process CLI call) must see only what they wrote.
  const tap = join(reports, `${file}.tap`);
  const child = spawn(process.execPath, ['--test-reporter=tap', `--test-reporter-destination=${tap}`, join(dir, file)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, FILE_TIMEOUT_MS);
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => out.push(d));
  child.on('close', (code, signal) => {
    clearTimeout(timer);
    if (timedOut) out.push(Buffer.from(`\n# run-tests: killed after ${FILE_TIMEOUT_MS / 1000} s\n`));
    const text = Buffer.concat(out).toString() + (existsSync(tap) ? readFileSync(tap, 'utf8') : '# run-tests: no TAP report was written\n');
    process.stdout.write(`# file: test/${file.replace(/\.js$/, '.ts')}\n${text}`);
    const count = (name) => Number(text.match(new RegExp(`^# ${name} (\\d+)$`, 'm'))?.[1] ?? 0);
    results.push({ file, ok: code === 0 && !signal, seconds: (Date.now() - started) / 1000, tests: count('tests'), pass: count('pass'), fail: count('fail') });
    done();
  });
});
const worker = async () => {
  for (let file = queue.shift(); file !== undefined; file = queue.shift()) await runOne(file);
};
const t0 = Date.now();
await Promise.all(Array.from({ length: CONCURRENCY }, worker));

rmSync(reports, { recursive: true, force: true });
const sum = (k) => results.reduce((n, r) => n + r[k], 0);
const failed = results.filter((r) => !r.ok);
const slowest = [...results].sort((a, b) => b.seconds - a.seconds).slice(0, 8).map((r) => `${r.file.replace(/\.test\.js$/, '')} ${r.seconds.toFixed(1)} s`);
console.log(`\n# files ${results.length}, tests ${sum('tests')}, pass ${sum('pass')}, fail ${sum('fail')}, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
console.log(`# slowest files: ${slowest.join(', ')}`);
if (failed.length > 0) console.log(`# FAILED: ${failed.map((r) => `test/${r.file.replace(/\.js$/, '.ts')}`).join(', ')}`);
process.exit(failed.length === 0 && results.length > 0 ? 0 : 1);
