// Every code block in README.md and docs/ is checked: TypeScript blocks are either copied
// from an example (which test/examples.test.ts runs) or type-check on their own; JSON blocks
// parse; shell lines that call certbound use commands and flags that exist.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { SERVE_SCHEMA } from '../src/server/config.js';
import { ERRORS } from '../src/errors.js';
import { run } from './helpers/exec.js';

const repo = resolve(import.meta.dirname, '..');
const docFiles = ['README.md', ...readdirSync(join(repo, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join('docs', f))];

interface Block { file: string; line: number; lang: string; code: string }

function blocks(): Block[] {
  const out: Block[] = [];
  for (const file of docFiles) {
    const lines = readFileSync(join(repo, file), 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const open = /^```(\w*)\s*$/.exec(lines[i] ?? '');
      if (!open) continue;
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && !/^```\s*$/.test(lines[i] ?? ''); i++) body.push(lines[i] ?? '');
      out.push({ file, line: start + 1, lang: open[1] ?? '', code: body.join('\n') });
    }
  }
  return out;
}

const norm = (s: string) => s.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('//')).join('\n');
const examples = readdirSync(join(repo, 'examples')).filter((f) => /\.(ts|mjs|js)$/.test(f)).map((f) => norm(readFileSync(join(repo, 'examples', f), 'utf8')));

test('TypeScript blocks come from a tested example or type-check on their own', async () => {
  const ts = blocks().filter((b) => ['ts', 'typescript', 'js', 'javascript'].includes(b.lang));
  const standalone = ts.filter((b) => !examples.some((e) => e.includes(norm(b.code))));
  if (standalone.length === 0) return;
  // Type-check the rest as modules inside the repo, so `certbound` resolves to this package.
  const dir = mkdtempSync(join(repo, 'test', '.doc-snippets-'));
  try {
    const files = standalone.map((b, i) => {
      const name = `snippet-${i}.ts`;
      writeFileSync(join(dir, name), `// ${b.file}:${b.line}\n${b.code}\nexport {};\n`);
      return name;
    });
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
      extends: '../../tsconfig.json',
      // `certbound` as a user gets it: the package's own exports (dist/*.d.ts, written by the
      // type check before the tests), not the sources, which the type check has checked already.
      compilerOptions: { noEmit: true, noUnusedLocals: false, paths: {} },
      include: files,
    }));
    const r = await run(process.execPath, [join(repo, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { timeoutMs: 120_000 });
    const where = standalone.map((b, i) => `snippet-${i}.ts = ${b.file}:${b.line}`).join('\n');
    assert.equal(r.code, 0, `${r.stdout}\n${where}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('JSON blocks parse', () => {
  for (const b of blocks().filter((x) => x.lang === 'json')) {
    assert.doesNotThrow(() => JSON.parse(b.code), `${b.file}:${b.line}`);
  }
});

const COMMANDS = new Set(['serve', 'dev-pki', 'help', '--help', '--version', 'version', 'job', 'store', 'ocsp-responder']);
const SERVE_FLAGS = new Set(SERVE_SCHEMA.flatMap((s) => (s.flag ? [`--${s.flag}`] : [])).concat(['--help']));

test('shell blocks call certbound with commands and flags that exist', () => {
  for (const b of blocks().filter((x) => ['sh', 'bash', 'shell', 'console'].includes(x.lang))) {
    for (const raw of b.code.split('\n')) {
      const line = raw.replace(/^\$\s*/, '');
      const m = /(?:^|&&\s*|npx\s+)certbound\s+(\S+)(.*)$/.exec(line) ?? /node\s+\S*bin\/certbound\.js\s+(\S+)(.*)$/.exec(line);
      if (!m) continue;
      const [, cmd = '', rest = ''] = m;
      assert.ok(COMMANDS.has(cmd), `${b.file}:${b.line}: unknown command ${cmd}`);
      if (cmd === 'serve') {
        for (const flag of rest.match(/--[a-z-]+/g) ?? []) assert.ok(SERVE_FLAGS.has(flag), `${b.file}:${b.line}: unknown flag ${flag}`);
      }
    }
    if (/npm (start|test)/.test(b.code) && b.file === 'README.md') assert.match(b.code, /npm ci && npm (start|test)/);
  }
});

test('the README opens with the two commands; every CB_ERR_* code is documented', () => {
  const readme = readFileSync(join(repo, 'README.md'), 'utf8');
  const first = readme.indexOf('npm ci && npm start');
  const second = readme.indexOf('npm ci && npm test');
  assert.ok(first > 0 && second > 0, 'both commands are in the README');
  assert.ok(first < 1500 && second < 1500, 'near the top');
  const all = docFiles.map((f) => readFileSync(join(repo, f), 'utf8')).join('\n');
  for (const code of Object.keys(ERRORS)) assert.ok(all.includes(code), `${code} is documented`);
});
