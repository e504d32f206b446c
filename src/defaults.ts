// Every default, once, with its unit. Docs and option JSDoc refer here; a test checks them.
export const DEFAULTS = Object.freeze({
  /** Address the reference server listens on. */
  host: '127.0.0.1',
  /** TCP port of the reference server. */
  port: 8443,
  /** Client-certificate mode at handshake. */
  clientAuth: 'optional' as const,
  /** Directory of the embedded dev PKI, relative to the working directory. */
  devPkiDir: '.certbound',
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
  /** Lowest TLS version accepted. */
  minVersion: 'TLSv1.2' as const,
});
