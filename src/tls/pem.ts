// PEM <-> DER, and loading certificates and keys from files with errors that name the file.
import { readRegularFile, readFailure } from '../read-file.js';
import { DEFAULTS } from '../defaults.js';
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
    return readRegularFile(path, DEFAULTS.maxPemFileBytes).toString('utf8');
  } catch (err) {
    throw new CertboundError('CB_ERR_PEM_MISSING', [what, path, readFailure(err)]);
  }
}

/**
 * Every certificate of PEM text (leaf first), parsed. Throws CB_ERR_PEM_INVALID naming `what`
 * and `where` (a file, or an option) when there is none or a block does not parse: Node's TLS
 * layer would skip such a CA block without a word.
 */
export function parseCertificates(pem: string, what: string, where: string): X509Certificate[] {
  const ders = pemBlocks(pem, 'CERTIFICATE');
  if (ders.length === 0) throw new CertboundError('CB_ERR_PEM_INVALID', [what, where, 'PEM certificate']);
  return ders.map((der) => {
    try {
      return new X509Certificate(der);
    } catch {
      throw new CertboundError('CB_ERR_PEM_INVALID', [what, where, 'X.509 certificate (a block does not parse)']);
    }
  });
}

/** Certificates of a PEM file (leaf first), each parsed; throws CB_ERR_PEM_* when none is valid. */
export function loadCertificates(path: string, what = 'certificate'): { pem: string; certs: X509Certificate[] } {
  const pem = readText(path, what);
  return { pem, certs: parseCertificates(pem, what, path) };
}

const ENCRYPTED_KEY = /-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: 4,ENCRYPTED/m;

/**
 * The private key of PEM text; throws CB_ERR_PEM_INVALID naming `where`, and saying so when the
 * key is encrypted and `passphrase` is absent or does not decrypt it.
 */
export function parsePrivateKey(pem: string | Buffer, where: string, passphrase?: string): KeyObject {
  try {
    return createPrivateKey(passphrase === undefined ? pem : { key: pem, passphrase });
  } catch {
    const why = !ENCRYPTED_KEY.test(pem.toString()) ? 'private key'
      : passphrase === undefined ? 'private key it can use (the key is encrypted and no passphrase was given)'
        : 'private key it can use (the passphrase does not decrypt it)';
    throw new CertboundError('CB_ERR_PEM_INVALID', ['key', where, why]);
  }
}

/** The text of a private key file, checked (CB_ERR_PEM_MISSING / CB_ERR_PEM_INVALID naming the file). */
export function loadPrivateKeyText(path: string): string {
  const pem = readText(path, 'key');
  parsePrivateKey(pem, path);
  return pem;
}

/** The text of a CRL file; throws CB_ERR_PEM_MISSING when it cannot be read. */
export function loadCrlText(path: string): string {
  return readText(path, 'CRL');
}
