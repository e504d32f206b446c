// The responder-URL rule of the stapler's `url` option and `--ocsp-url`, on its own so that the
// CLI's configuration check loads no OCSP machinery.
import { CertboundError } from '../errors.js';

/** Throws CB_ERR_INVALID_OPTION unless `url` is an absolute http: or https: URL. */
export function checkOcspUrl(url: unknown, where: string): void {
  let ok = false;
  try {
    ok = typeof url === 'string' && ['http:', 'https:'].includes(new URL(url).protocol);
  } catch {
    ok = false;
  }
  if (!ok) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, `expected an http:// or https:// URL, got ${JSON.stringify(url)}`]);
}
