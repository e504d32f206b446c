// Test fixtures: one dev PKI per test process, in a temporary directory removed at exit.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDevPki, type DevPkiPaths } from '../../src/tls/dev-pki.js';

let pki: Promise<DevPkiPaths> | undefined;

/** A temporary directory removed when the process exits. */
export function tempDir(prefix = 'certbound-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The dev PKI of this test process (created once). */
export function devPki(): Promise<DevPkiPaths> {
  pki ??= createDevPki(tempDir('certbound-pki-'));
  return pki;
}

export function read(path: string): string {
  return readFileSync(path, 'utf8');
}
