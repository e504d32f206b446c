// HTTP.sys's DefaultCertCheckMode bits, on their own so that the CLI's configuration loads no
// revocation machinery.
/** DefaultCertCheckMode bits of HTTP_SERVICE_CONFIG_SSL_PARAM. */
export const CertCheckMode = Object.freeze({
  /** 0: check revocation (OCSP, CRL), fetching what is missing. */
  CHECK: 0,
  /** 1: no revocation check. */
  NO_REVOCATION_CHECK: 0x1,
  /** 2: only cached revocation data (and loaded CRL files); nothing is fetched. */
  CACHED_ONLY: 0x2,
  /** 4: DefaultRevocationFreshnessTime applies: cached data older than it is fetched again. */
  FRESHNESS_TIME: 0x4,
  /** 0x10000: no usage check (accepted and ignored here: usage is src/tls's verdict). */
  NO_USAGE_CHECK: 0x10000,
} as const);
