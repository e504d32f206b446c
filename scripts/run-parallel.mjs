#!/usr/bin/env node
// Runs npm scripts side by side (lint, build and typecheck before the tests: each is one
// single-threaded process, and CI machines have two cores), prints each one's output when it
// ends, and exits non-zero if any failed. An argument `a,b` runs a then b. (The type check does
// not need the build: tsconfig.json maps the package's own name to src/.)
// Usage: node scripts/run-parallel.mjs lint typecheck
import { spawn } from 'node:child_process';

const names = process.argv.slice(2);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const runOne = (name) => new Promise((resolve) => {
  const started = Date.now();
  const child = spawn(npm, ['run', '--silent', name], { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = [];
  child.stdout.on('data', (d) => out.push(d));
  child.stderr.on('data', (d) => out.push(d));
  child.on('error', (err) => resolve({ name, code: 1, output: `${err.message}\n`, ms: Date.now() - started }));
  child.on('close', (code, signal) => resolve({ name, code: code ?? (signal ? 1 : 0), output: Buffer.concat(out).toString(), ms: Date.now() - started }));
});
const runSequence = async (names) => {
  const done = [];
  for (const name of names) {
    const r = await runOne(name);
    done.push(r);
    if (r.code !== 0) break;
  }
  return done;
};
const results = (await Promise.all(names.map((group) => runSequence(group.split(','))))).flat();
let failed = 0;
for (const r of results) {
  process.stdout.write(`> ${r.name}: ${r.code === 0 ? 'ok' : `failed (exit ${r.code})`} in ${(r.ms / 1000).toFixed(1)} s\n`);
  if (r.output.trim()) process.stdout.write(r.output.endsWith('\n') ? r.output : `${r.output}\n`);
  if (r.code !== 0) failed++;
}
process.exit(failed ? 1 : 0);
