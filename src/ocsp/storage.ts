// Where verified OCSP responses are persisted so that a restart staples from the first
// handshake, even while the responder is down. A small interface (as certmagic's Storage)
// so a shared store can replace the file one without touching the schedule.
import { constants } from 'node:fs';
import { lstat, open, readdir, rm } from 'node:fs/promises';
import { writeSecretFile } from '../secret-file.js';
import { join } from 'node:path';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';

/** Why a stored staple was not even parsed. Stable: logs, metrics and docs use them. */
export type StorageRefusal =
  /** The file is a symbolic link: never followed (it could point anywhere). */
  | 'file-symlink'
  /** Larger than DEFAULTS.ocspMaxResponseBytes: no response that was stored can be. */
  | 'file-too-large'
  /** A directory, FIFO, socket or device where a staple file should be. */
  | 'file-not-regular'
  /** Cannot be read (EACCES, EIO…), or a custom storage's load() threw. */
  | 'file-unreadable';

/** What load() found: the DER, or why it was refused (absent keys are `undefined`). */
export type StoredStaple =
  | { readonly ok: true; readonly der: Buffer }
  | { readonly ok: false; readonly reason: StorageRefusal; readonly detail: string };

/** Keys are lowercase hex SHA-256 fingerprints of the certificate's DER. */
export interface StapleStorage {
  /** The stored DER OCSPResponse, a refusal, or undefined when there is none (or the key is unusable). */
  load(key: string): Promise<StoredStaple | undefined>;
  /** Stores (replaces) the response for `key`. */
  store(key: string, der: Buffer): Promise<void>;
  /** Removes the response for `key`; absent keys are fine. */
  delete(key: string): Promise<void>;
  /** Every stored key. */
  list(): Promise<string[]>;
}

const KEY = /^[0-9a-f]{64}$/;
// Directory and files are certbound's state: only its own user reads or replaces them.
// Not defined on Windows; there the lstat check alone guards (no symlinks without privileges).
const O_NOFOLLOW = constants.O_NOFOLLOW ?? 0;
// A FIFO swapped in after the lstat must not block open().
const O_NONBLOCK = constants.O_NONBLOCK ?? 0;

function checkKey(key: string): string {
  // Keys become file names: only fingerprints, never a path.
  if (!KEY.test(key)) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['key', `a storage key must be a hex SHA-256 fingerprint, got ${JSON.stringify(key)}`]);
  return key;
}

const refuse = (reason: StorageRefusal, detail: string): StoredStaple => ({ ok: false, reason, detail });

/**
 * One `<fingerprint>.ocsp` file per certificate in `dir`, written atomically (temp + rename).
 * The directory is made 0700 and every file 0600 whatever the umask or earlier modes; a
 * stored file is read only when it is a regular file (never through a symlink) of at most
 * DEFAULTS.ocspMaxResponseBytes, and never more than that is read.
 */
export class FileStapleStorage implements StapleStorage {
  readonly dir: string;
  readonly #maxBytes = DEFAULTS.ocspMaxResponseBytes;
  constructor(dir: string) {
    this.dir = dir;
  }

  async load(key: string): Promise<StoredStaple | undefined> {
    if (!KEY.test(key)) return undefined;
    const path = join(this.dir, `${key}.ocsp`);
    try {
      const st = await lstat(path);
      if (st.isSymbolicLink()) return refuse('file-symlink', `${path} is a symbolic link`);
      if (!st.isFile()) return refuse('file-not-regular', `${path} is not a regular file`);
      if (st.size > this.#maxBytes) return refuse('file-too-large', `${path} has ${st.size} bytes, more than ${this.#maxBytes}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      return refuse('file-unreadable', `${path}: ${code ?? (err as Error).message}`);
    }
    // Checked again on the open file: it may have been replaced since the lstat.
    let fh;
    try {
      fh = await open(path, constants.O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      if (code === 'ELOOP' || code === 'EMLINK') return refuse('file-symlink', `${path} is a symbolic link`);
      return refuse('file-unreadable', `${path}: ${code ?? (err as Error).message}`);
    }
    try {
      const st = await fh.stat();
      if (!st.isFile()) return refuse('file-not-regular', `${path} is not a regular file`);
      if (st.size > this.#maxBytes) return refuse('file-too-large', `${path} has ${st.size} bytes, more than ${this.#maxBytes}`);
      // One byte more than allowed tells a file that grew after the stat.
      const buf = Buffer.alloc(this.#maxBytes + 1);
      let got = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
        if (got > this.#maxBytes) return refuse('file-too-large', `${path} has more than ${this.#maxBytes} bytes`);
      }
      return { ok: true, der: Buffer.from(buf.subarray(0, got)) };
    } catch (err) {
      return refuse('file-unreadable', `${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    } finally {
      await fh.close().catch(() => {});
    }
  }

  async store(key: string, der: Buffer): Promise<void> {
    // The one rule for files certbound keeps as its state (src/secret-file.ts): a 0700
    // directory of this user, a 0600 file written under a fresh name and renamed into place,
    // whatever the umask and whatever was there (a planted link is replaced, never written through).
    writeSecretFile(join(this.dir, `${checkKey(key)}.ocsp`), der);
  }

  async delete(key: string): Promise<void> {
    // rm removes a symlink itself, never its target; a directory is left alone (no recursion).
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
