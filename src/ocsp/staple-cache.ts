// The handshake-path lookup: certificate DER (as Node hands it to 'OCSPRequest') → the
// handle that keeps its staple. Memory only, no I/O: one SHA-256 and one Map lookup.
import { createHash } from 'node:crypto';
import type { ServerOcspResponseHandle } from './handle.js';

export class StapleCache {
  readonly #byFingerprint = new Map<string, ServerOcspResponseHandle>();

  /** Fingerprint (hex SHA-256) of a DER certificate, the key used here and in storage. */
  static fingerprint(certDer: Uint8Array): string {
    return createHash('sha256').update(certDer).digest('hex');
  }

  set(handle: ServerOcspResponseHandle): void {
    this.#byFingerprint.set(handle.fingerprint, handle);
  }

  get(certDer: Uint8Array): ServerOcspResponseHandle | undefined {
    return this.#byFingerprint.get(StapleCache.fingerprint(certDer));
  }

  /** The DER response to staple for `certDer` now, if one is time-valid for long enough. */
  stapleFor(certDer: Uint8Array): Buffer | undefined {
    return this.get(certDer)?.servable()?.der;
  }

  handles(): ServerOcspResponseHandle[] {
    return [...this.#byFingerprint.values()];
  }

  delete(fingerprint: string): void {
    this.#byFingerprint.delete(fingerprint);
  }

  clear(): void {
    this.#byFingerprint.clear();
  }
}
