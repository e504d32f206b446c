#!/usr/bin/env node
// Type-checks the whole project (src, test, examples, bench) once and writes it as JavaScript
// into .test-build/, a mirror of the repository: the compiled .js files, and a symbolic link for
// every other file and top-level entry (the .ts sources, docs, bin, node_modules, …), so that a
// test's paths (`import.meta.dirname/..` is the repository) mean what they mean in the
// checkout. `npm test` runs the tests from there with plain node: a loader that compiles
// TypeScript in every test process (tsx) cost about a quarter of the suite's CPU time.
// The same compilation also writes the package's dist/ (src/ with declarations and source maps
// carrying their sources, as `npm run build` writes it with tsconfig.build.json), so that
// `npm test` type-checks and compiles the sources once instead of twice.
import { existsSync, lstatSync, mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, '.test-build');
const dist = join(root, 'dist');
rmSync(out, { recursive: true, force: true });

const host = { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { report([d]); process.exit(1); } };
const parsed = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.json'), {
  noEmit: false, outDir: out, rootDir: root, declaration: true, sourceMap: true, inlineSources: true,
}, host);
const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options, projectReferences: parsed.projectReferences });
function report(diagnostics) {
  if (diagnostics.length === 0) return;
  const formatHost = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' };
  process.stderr.write(ts.formatDiagnosticsWithColorAndContext(diagnostics, formatHost));
}
const srcOut = join(out, 'src') + sep;
/** Writes .test-build/ (JavaScript and maps) and, for src/, dist/ as tsconfig.build.json lays it out. */
function writeFile(fileName, text) {
  const isDts = fileName.endsWith('.d.ts') || fileName.endsWith('.d.ts.map');
  if (!isDts) {
    mkdirSync(dirname(fileName), { recursive: true });
    writeFileSync(fileName, text);
  }
  if (!fileName.startsWith(srcOut)) return;
  const target = join(dist, fileName.slice(srcOut.length));
  let body = text;
  if (fileName.endsWith('.js.map')) {
    // The map names its source relative to where it lies: from dist/, not .test-build/src/.
    const map = JSON.parse(text);
    map.sources = map.sources.map((s) => relative(dirname(target), resolve(dirname(fileName), s)).split(sep).join('/'));
    body = JSON.stringify(map);
  }
  mkdirSync(dirname(target), { recursive: true });
  writeFileSync(target, body);
}
const diagnostics = [...ts.getPreEmitDiagnostics(program)];
if (diagnostics.length === 0) diagnostics.push(...program.emit(undefined, writeFile).diagnostics);
report(diagnostics);
if (diagnostics.some((d) => d.category === ts.DiagnosticCategory.Error)) process.exit(1);

const skip = new Set(['.git', '.test-build']);
/** Links every entry of `dir` (relative to root) that the compiler did not write. */
function mirror(dir) {
  for (const name of readdirSync(join(root, dir))) {
    const rel = join(dir, name);
    if (skip.has(rel)) continue;
    const target = join(out, rel);
    const source = join(root, rel);
    const st = lstatSync(source);
    if (st.isDirectory() && !st.isSymbolicLink() && existsSync(target) && lstatSync(target).isDirectory()) {
      mirror(rel);
      continue;
    }
    if (existsSync(target)) continue;
    mkdirSync(dirname(target), { recursive: true });
    symlinkSync(relative(dirname(target), source), target);
  }
}
mirror('');
