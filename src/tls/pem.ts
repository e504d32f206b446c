// PEM <-> DER, and loading certificates and keys from files with errors that name the file.
import { readFileSync } from 'node:fs';
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { CertboundError } from '../errors.js';

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block of `text` with the given label, as DER. */
export function pemBlocks(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(BLOCK)) {
    if (m[1] === label) out.push(Buffer.from((m[2] ?? '').replace(/\s+/g, ''), 'base64'));
  }
  return out;
}

/** DER to PEM with the given label, 64 characters a line. */
export function toPem(der: Uint8Array | ArrayBuffer, label: string): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString('base64');
  return `-----BEGIN ${label}-----\n${b64.replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END ${label}-----\n`;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CertboundError('CB_ERR_PEM_MISSING', [what, path, e.code ?? e.message]);
  }
}

/** Certificates of a PEM file (leaf first), each parsed; throws CB_ERR_PEM_* when none is valid. */
export function loadCertificates(path: string, what = 'certificate'): { pem: string; certs: X509Certificate[] } {
  const pem = readText(path, what);
  const ders = pemBlocks(pem, 'CERTIFICATE');
  if (ders.length === 0) throw new CertboundError('CB_ERR_PEM_INVALID', [what, path, 'PEM certificate']);
  const certs = ders.map((der) => {
    try {
      return new X509Certificate(der);
    } catch {
      throw new CertboundError('CB_ERR_PEM_INVALID', [what, path, 'X.509 certificate (a block does not parse)']);
    }
  });
  return { pem, certs };
}

/** A private key from a PEM file; throws CB_ERR_PEM_* when absent or unparsable. */
export function loadPrivateKey(path: string): { pem: string; key: KeyObject } {
  const pem = readText(path, 'key');
  try {
    return { pem, key: createPrivateKey(pem) };
  } catch {
    throw new CertboundError('CB_ERR_PEM_INVALID', ['key', path, 'private key']);
  }
}

/** Throws CB_ERR_KEY_MISMATCH unless `key` is the private key of `cert`. */
export function assertKeyMatches(cert: X509Certificate, key: KeyObject, keyPath: string, certPath: string): void {
  if (!cert.checkPrivateKey(key)) throw new CertboundError('CB_ERR_KEY_MISMATCH', [keyPath, certPath]);
}
