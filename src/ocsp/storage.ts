// Where verified OCSP responses are persisted so that a restart staples from the first
// handshake, even while the responder is down. A small interface (as certmagic's Storage)
// so a shared store can replace the file one without touching the schedule.
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertboundError } from '../errors.js';

/** Keys are lowercase hex SHA-256 fingerprints of the certificate's DER. */
export interface StapleStorage {
  /** The stored DER OCSPResponse, or undefined when there is none (or it cannot be read). */
  load(key: string): Promise<Buffer | undefined>;
  /** Stores (replaces) the response for `key`. */
  store(key: string, der: Buffer): Promise<void>;
  /** Removes the response for `key`; absent keys are fine. */
  delete(key: string): Promise<void>;
  /** Every stored key. */
  list(): Promise<string[]>;
}

const KEY = /^[0-9a-f]{64}$/;

function checkKey(key: string): string {
  // Keys become file names: only fingerprints, never a path.
  if (!KEY.test(key)) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['key', `a storage key must be a hex SHA-256 fingerprint, got ${JSON.stringify(key)}`]);
  return key;
}

/** One `<fingerprint>.ocsp` file per certificate in `dir`, written atomically (temp + rename). */
export class FileStapleStorage implements StapleStorage {
  readonly dir: string;
  constructor(dir: string) {
    this.dir = dir;
  }

  async load(key: string): Promise<Buffer | undefined> {
    try {
      return await readFile(join(this.dir, `${checkKey(key)}.ocsp`));
    } catch {
      return undefined;
    }
  }

  async store(key: string, der: Buffer): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const final = join(this.dir, `${checkKey(key)}.ocsp`);
    const tmp = `${final}.${process.pid}.tmp`;
    await writeFile(tmp, der, { mode: 0o644 });
    await rename(tmp, final);
  }

  async delete(key: string): Promise<void> {
    await rm(join(this.dir, `${checkKey(key)}.ocsp`), { force: true });
  }

  async list(): Promise<string[]> {
    try {
      return (await readdir(this.dir)).filter((f) => f.endsWith('.ocsp')).map((f) => f.slice(0, -5)).filter((k) => KEY.test(k));
    } catch {
      return [];
    }
  }
}
