// The one function that installs a TLS listener of a certbound server: the main server and the
// TLS 1.2 twin (onDemandHosts) get the same installation — connection registry, request order,
// OCSP staples, handshake-error logging and HTTP timeouts — so that they cannot drift apart.
// Ticket keys and close go through the listener list createServer keeps.
import type { Server as TlsServer } from 'node:tls';
import type { Server as HttpsServer } from 'node:https';
import type { OcspStapleSummary } from '../ocsp/server-stapling.js';
import { recordClientHellos, type HelloRecordOptions } from '../tls/hello-record.js';
import { DEFAULTS } from '../defaults.js';
import { ConnectionRegistry } from './registry.js';
import { orderRequests } from './request-order.js';
import type { MetricsSink } from './metrics.js';

/** Something that answers 'OCSPRequest' on a TLS server: the local stapler, or a cluster worker's relayed staples. */
export interface StapleSource {
  attachStaples(server: TlsServer): void;
  /** The staple state of a certificate (SHA-256 hex of its DER; the first one when omitted), as the source knows it. */
  summary?(fingerprint?: string): OcspStapleSummary;
}

export interface ListenerSetup {
  readonly registry: ConnectionRegistry;
  readonly staples: StapleSource | undefined;
  readonly logger: { debug(obj: object, msg: string): void };
  /** With several server certificates: read each ClientHello first (src/tls/hello-record.ts). */
  readonly helloRecord?: HelloRecordOptions;
  /** Counts handshakes (completed and failed); no listener is added when metrics are off. */
  readonly metrics?: MetricsSink;
}

/** Installs `server` as a certbound listener (idempotent parts: registry and order). */
export function installListener(server: HttpsServer, setup: ListenerSetup): void {
  const tls = server as unknown as TlsServer;
  setup.registry.attach(tls);
  orderRequests(server, (s) => ConnectionRegistry.entryOf(s));
  setup.staples?.attachStaples(tls);
  if (setup.helloRecord) recordClientHellos(tls, setup.helloRecord);
  const metrics = setup.metrics?.enabled ? setup.metrics : undefined;
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    setup.logger.debug({ err: { code: err.code, message: err.message }, remoteAddress: socket.remoteAddress }, 'TLS handshake failed');
    metrics?.handshake(socket.getProtocol(), false, false);
  });
  if (metrics) tls.on('secureConnection', (s) => metrics.handshake(s.getProtocol(), s.isSessionReused(), true));
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  server.keepAliveTimeout = DEFAULTS.keepAliveTimeoutMs;
}
