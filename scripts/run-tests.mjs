#!/usr/bin/env node
// Runs the compiled tests (.test-build/test/*.test.js, written by scripts/build-tests.mjs) with
// node's test runner, two files at a time, the longest first: started last, a 40-second file
// would leave one core idle at the end of the run. The list below is only an order (files
// missing from it run after, alphabetically); every test file runs exactly once.
// Usage: node scripts/run-tests.mjs [extra node --test flags]
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const dir = resolve(import.meta.dirname, '..', '.test-build', 'test');
// Longest wall time first (measured one file at a time on a 2-core machine).
const LONGEST_FIRST = [
  'startup-errors', 'package', 'trust-matrix', 'renegotiation-guard', 'ocsp-controls', 'server-certificates',
  'reload', 'config', 'error-walk', 'examples', 'page', 'crl-refresh', 'metrics', 'cluster-serve', 'cli', 'first-run',
];
const files = readdirSync(dir).filter((f) => f.endsWith('.test.js')).sort();
const rank = (f) => {
  const i = LONGEST_FIRST.indexOf(f.slice(0, -'.test.js'.length));
  return i === -1 ? LONGEST_FIRST.length : i;
};
const ordered = files.map((f, i) => ({ f, i })).sort((a, b) => rank(a.f) - rank(b.f) || a.i - b.i).map(({ f }) => join(dir, f));
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', '--test-timeout=120000', ...process.argv.slice(2), ...ordered], { stdio: 'inherit' });
process.exit(r.status ?? 1);
