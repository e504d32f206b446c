// Every default, once, with its unit. Docs and option JSDoc refer here; a test checks them.
// Modules that had their own DEFAULT_* constant keep it as an alias of an entry below.
/**
 * The longest delay a Node timer takes (2^31 - 1 ms, about 24.8 days): setTimeout/setInterval
 * turn a larger one into 1 ms (TimeoutOverflowWarning). Every option in ms that feeds a timer is
 * bounded by it (CB_ERR_INVALID_OPTION), every option in seconds by TIMER_MAX_SECONDS.
 */
export const TIMER_MAX_MS = 2_147_483_647;
/** TIMER_MAX_MS in whole seconds (2147483 s). */
export const TIMER_MAX_SECONDS = Math.floor(TIMER_MAX_MS / 1000);

export const DEFAULTS = Object.freeze({
  // The reference server (createServer, `certbound serve`).
  /** Address the reference server listens on. */
  host: '127.0.0.1',
  /** TCP port of the reference server. */
  port: 8443,
  /** Client-certificate mode at handshake. */
  clientAuth: 'optional' as const,
  /** Directory of the embedded dev PKI, relative to the working directory. */
  devPkiDir: '.certbound',
  /** `certbound serve --state-dir`: where state that survives a restart lives (persisted OCSP staples in its `ocsp/`), relative to the working directory. */
  stateDir: '.certbound/state',
  /** `certbound serve --ocsp`: OCSP stapling of the server certificates. */
  ocsp: 'on' as 'on' | 'off',
  /** pino level. */
  logLevel: 'info',
  /** under-pressure: event-loop delay (ms) above which requests get 503. */
  maxEventLoopDelayMs: 1000,
  /** under-pressure: Retry-After (s) sent with a 503. */
  retryAfterSeconds: 10,
  /** A TLS handshake that takes longer (ms) is cut. */
  handshakeTimeoutMs: 10_000,
  /** Time (ms) to receive a whole request's headers. */
  headersTimeoutMs: 30_000,
  /** Time (ms) to receive a whole request. */
  requestTimeoutMs: 120_000,
  /** Idle keep-alive connection lifetime (ms). */
  keepAliveTimeoutMs: 65_000,
  /**
   * Maximum lifetime (ms) of a connection, idle or not, after which the server ends it gracefully
   * (0: none). Off by default: ending busy connections costs clients a new handshake, and only
   * deployments whose trust changes while clients stay connected need it (docs/client-auth-modes.md).
   */
  maxConnectionLifetimeMs: 0,
  /**
   * Grace (ms) after maxConnectionLifetime for the response in flight (HTTP/1.1) or the open
   * streams (HTTP/2 after GOAWAY) to finish; then the connection is destroyed. The grace is this
   * or the lifetime itself, whichever is shorter.
   */
  maxConnectionLifetimeGraceMs: 30_000,
  /** Largest request body (bytes) fastify reads (its bodyLimit), also for the body an on-demand route reads before negotiating. */
  bodyLimitBytes: 1_048_576,
  /** `certbound serve --upstream`: time (ms) to open a connection to the upstream before 504 CB_ERR_UPSTREAM_TIMEOUT. */
  upstreamConnectTimeoutMs: 5_000,
  /** `certbound serve --upstream`: time (ms) the upstream has for its response headers, and for each pause in its body. */
  upstreamTimeoutMs: 60_000,
  /** `certbound serve --upstream`: most keep-alive connections to the upstream (per process). */
  upstreamConnections: 128,
  /** `certbound serve --upstream` with per-path policies: longest path (bytes) whose readings are judged one by one; a longer one that needs decoding or folding gets the strictest policy. */
  upstreamPathJudgeMaxBytes: 2_048,
  /** Largest value (bytes) of a forwarded `Client-Cert` or `Client-Cert-Chain` header (RFC 9440) from a trusted proxy; larger: 400 CB_ERR_FORWARDED_CERT_TOO_LARGE. */
  forwardedCertHeaderMaxBytes: 12_288,
  /** Most certificates a forwarded `Client-Cert-Chain` header may hold (the issuers, leaf excluded); more: 400 CB_ERR_FORWARDED_CERT_TOO_LARGE. */
  forwardedChainMaxCertificates: 8,
  /** Largest PEM file (certificate, key, CA bundle, CRL) certbound reads (bytes); large CRLs fit. */
  maxPemFileBytes: 16_777_216,
  /** Largest config or state file (config, job, lock, password) certbound reads (bytes). */
  maxStateFileBytes: 1_048_576,
  /** Lowest TLS version accepted. */
  minVersion: 'TLSv1.2' as const,
  /** Time (ms) a client has to answer an on-demand certificate request (renegotiation). Alias: DEFAULT_NEGOTIATION_TIMEOUT_MS. */
  negotiationTimeoutMs: 10_000,
  /** `certbound serve --client-revocation`: revocation check of client certificates. */
  clientRevocation: 'off' as 'off' | 'check' | 'cached-only',
  /** Time (ms) a closing `certbound serve` process waits for its connections before it exits anyway. */
  shutdownGraceMs: 10_000,
  /** `certbound serve --watch-certs`: reload the TLS files when they change. */
  watchCerts: false,
  /** `certbound serve --watch-certs`: quiet time (ms) after the last change of a watched file before the reload. */
  watchCertsDebounceMs: 500,

  // Metrics and expiry warnings (src/server/metrics.ts, src/server/expiry.ts; docs/metrics.md).
  /** Address the metrics listener binds when only a port is given (plain HTTP: keep it on loopback or a private network). */
  metricsHost: '127.0.0.1',
  /** With workers: how long (ms) the primary waits for each worker's metrics at a scrape; a worker that does not answer is left out. */
  metricsWorkerTimeoutMs: 2_000,
  /** Warn this many days before notAfter of the server certificate, its chain and the trusted client CAs. */
  expiryWarningDays: 30,
  /** Warn this many hours before nextUpdate of a loaded CRL (past it: an error line). */
  crlExpiryWarningHours: 48,
  /** Time (ms) between expiry checks (the first runs at start-up). */
  expiryCheckIntervalMs: 86_400_000,

  // CRL refresh (src/server/crl-refresh.ts; docs/deployment.md#crl-refresh).
  /** `certbound serve --crl-refresh`: fetch each loaded CRL again from its distribution point before its nextUpdate. */
  crlRefresh: false,
  /** Refresh a CRL this long (ms) before its nextUpdate, or half its validity if that is shorter. */
  crlRefreshLeadMs: 72 * 3_600_000,
  /** First retry (ms) after a refresh that failed or was refused; doubled at each failure up to crlRefreshRetryMaxMs. */
  crlRefreshRetryMinMs: 30_000,
  /** Longest time (ms) between two retries of a CRL refresh (it retries until one succeeds). */
  crlRefreshRetryMaxMs: 900_000,
  /** Time limit (ms) of one CRL retrieval. */
  crlRefreshTimeoutMs: 15_000,
  /** Largest CRL (bytes) a refresh accepts. */
  crlRefreshMaxBytes: 10 * 1024 * 1024,

  // Workers (node:cluster, src/server/cluster.ts).
  /** Interval (ms) at which the primary rotates the TLS session-ticket keys. Alias: DEFAULT_TICKET_KEY_ROTATION_MS. */
  ticketKeyRotationMs: 3_600_000,
  /** Time (ms) a worker waits for its first ticket keys from the primary. Alias: TICKET_KEY_WAIT_MS. */
  ticketKeyWaitMs: 10_000,

  // Fleet mode (src/fleet, docs/fleet.md).
  /** The ticket lifetime a fleet's rotation interval may not undercut (s): Node's tls sessionTimeout default. */
  ticketLifetimeSeconds: 300,
  /** `--fleet-namespace`: the prefix of every Redis key of the fleet. */
  fleetNamespace: 'certbound',
  /** `--fleet-lock-ttl`: expiry (ms) of a fleet lock (ticket rotation, one staple or revocation fetch); a holder that dies is replaced within it. At least twice the retrieval timeout. */
  fleetLockTtlMs: 30_000,
  /** Time limit (ms) of one Redis command; a slower answer counts as Redis unavailable for that operation. */
  fleetCommandTimeoutMs: 1_000,
  /** Time (ms) start-up waits for Redis before it serves on its own (degraded) and joins later. */
  fleetConnectWaitMs: 2_000,
  /** Interval (ms) at which a machine reads the fleet's ticket keys again (besides announcements and reconnects). */
  fleetResyncMs: 60_000,
  /** How long (ms) a client certificate's OCSP response stored by another machine is taken (it was fetched without this machine's nonce). */
  fleetRevocationMaxAgeMs: 3_600_000,
  /** Interval (ms) of the PING that finds a Redis that holds its connections open but no longer answers. */
  fleetHealthCheckMs: 10_000,
  /** Longest pause (ms) between two reconnection attempts to Redis. */
  fleetReconnectMaxMs: 2_000,

  // Channel bindings (src/cbt).
  /** The token receiveClientCertificate flags 0x1 hands out: its binding type and form. Alias: SECURE_CHANNEL_TOKEN_DEFAULTS. */
  secureChannelToken: Object.freeze({ type: 'tls-server-end-point', form: 'application-data' } as const),

  // OCSP stapling (src/ocsp).
  /**
   * The five settings of CertOpenServerOcspResponse, with wincrypt.h's defaults
   * (CERT_SRV_OCSP_RESP_*_DEFAULT); each name carries its unit. Alias: DEFAULT_OCSP_SETTINGS.
   */
  ocspSettings: Object.freeze({
    /** 10 min. */
    SrvOcspRespMinValiditySeconds: 600,
    /** 15 s. */
    SrvOcspRespUrlRetrievalTimeoutMilliseconds: 15_000,
    /** 4 h. */
    SrvOcspRespMaxBeforeNextUpdateSeconds: 14_400,
    /** 2 min. */
    SrvOcspRespMinBeforeNextUpdateSeconds: 120,
    /** 1 min. */
    SrvOcspRespMinAfterNextUpdateSeconds: 60,
  }),
  /** Backoff (ms) after a failed or refused OCSP retrieval: first delay, cap, floor. Alias: DEFAULT_RETRY_POLICY of src/ocsp/schedule.ts. */
  ocspRetry: Object.freeze({ initialMs: 60_000, maxMs: 3_600_000, floorMs: 5_000 }),
  /** Allowed clock skew (ms) for a thisUpdate in the future, of OCSP responses and CRLs (5 min). Alias: DEFAULT_SKEW_MS. */
  clockSkewMs: 300_000,
  /** Largest OCSP response accepted (bytes), retrieved or read from a persisted staple file (a larger file is refused unread); CRL retrievals pass their own limit. */
  ocspMaxResponseBytes: 65_536,
  /** OCSP retrievals in flight at once across all certificates of one stapler. */
  ocspMaxConcurrentRetrievals: 4,

  // Client-certificate revocation (src/ocsp/revocation.ts, HTTP_SERVICE_CONFIG_SSL_PARAM).
  /** DefaultCertCheckMode: 0 (CertCheckMode.CHECK), check and fetch what is missing. */
  revocationCertCheckMode: 0,
  /** DefaultRevocationFreshnessTime (s): 0, cached data is fetched again only when it expires. */
  revocationFreshnessTimeSeconds: 0,
  /** DefaultRevocationUrlRetrievalTimeout (ms) of each OCSP or CRL retrieval. Alias: DEFAULT_REVOCATION_URL_RETRIEVAL_TIMEOUT_MS. */
  revocationUrlRetrievalTimeoutMs: 15_000,
  /** When revocation cannot be told: 'hard' puts CRYPT_E_REVOCATION_OFFLINE / CRYPT_E_NO_REVOCATION_CHECK in certFlags. */
  revocationFailMode: 'hard' as 'soft' | 'hard',

  // The dev OCSP responder (src/ocsp/responder.ts, src/ocsp/dev-responder.ts).
  /** Port of the dev PKI's OCSP responder, named in the dev server certificate's AIA. Alias: DEV_OCSP_PORT. */
  devOcspPort: 8889,
  /** Address the dev PKI's OCSP responder listens on. */
  devOcspHost: '127.0.0.1',
  /** nextUpdate − thisUpdate of the dev responder's answers (minutes). Alias: DEV_OCSP_VALIDITY_MINUTES. */
  devOcspValidityMinutes: 60,

  // BITS-style transfer jobs (src/client).
  /** Retry timing (ms): BITS's 10 min first retry, doubling up to 1 h, 14 days without progress. Alias: DEFAULT_RETRY_POLICY of src/client/job.ts. */
  jobRetry: Object.freeze({ minRetryDelayMs: 600_000, maxRetryDelayMs: 3_600_000, noProgressTimeoutMs: 1_209_600_000 }),
  /** Socket idle limit (ms) of one download attempt. */
  jobTimeoutMs: 60_000,
  /** How long (ms) Job.waitFor waits for one of the states before it answers with the current one. */
  jobWaitTimeoutMs: 30_000,
  /** Redirects one download attempt follows. */
  transferMaxRedirects: 5,
});
