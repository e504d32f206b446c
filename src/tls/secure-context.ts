// What Node's TLS layer checks only when it builds a secure context (tls.createSecureContext,
// run by https.createServer): a CRL it cannot parse, a key type it cannot serve, a cipher list
// or protocol version it does not know. Checked here up front, or caught where the listener
// is made, so that each ends as a CertboundError that says which input it was.
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { CertboundError } from '../errors.js';
import { pemBlocks, toPem } from './pem.js';

/** Node's reason, with its code when it has one. */
function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = (e?.message ?? String(err)).replace(/\s*\n\s*/g, ' ');
  return e?.code ? `${message} (${e.code})` : message;
}

/**
 * The CRLs of PEM text, one PEM per CRL: Node reads only the first CRL of each `crl` entry,
 * so a file with two would lose the second without a word. Throws CB_ERR_PEM_INVALID naming
 * `where` when there is none or one does not parse.
 */
export function crlsOf(pem: string | Buffer, where: string): string[] {
  const ders = pemBlocks(pem.toString(), 'X509 CRL');
  if (ders.length === 0) throw new CertboundError('CB_ERR_PEM_INVALID', ['CRL', where, 'PEM CRL (-----BEGIN X509 CRL-----)']);
  return ders.map((der) => {
    const one = toPem(der, 'X509 CRL');
    try {
      createSecureContext({ crl: one });
    } catch (err) {
      throw new CertboundError('CB_ERR_PEM_INVALID', ['CRL', where, `X.509 CRL (${reason(err)})`], { cause: err });
    }
    return one;
  });
}

/**
 * Throws CB_ERR_TLS_CONTEXT when Node cannot serve this certificate and key (a key type TLS
 * cannot sign with, such as X25519), naming `where`. Call it once the two are known to parse
 * and to match.
 */
export function checkServable(options: Pick<SecureContextOptions, 'cert' | 'key' | 'passphrase'>, where: string): void {
  try {
    createSecureContext(options);
  } catch (err) {
    throw new CertboundError('CB_ERR_TLS_CONTEXT', [`the certificate and key (${where})`, reason(err)], { cause: err });
  }
}

/**
 * Makes a TLS listener; what Node refuses there (after the checks above: the `tls` options,
 * such as an unknown cipher list, curve or protocol version) is CB_ERR_TLS_CONTEXT.
 */
export function makeTlsListener<T>(make: () => T): T {
  try {
    return make();
  } catch (err) {
    throw new CertboundError('CB_ERR_TLS_CONTEXT', ['the tls options', reason(err)], { cause: err });
  }
}
