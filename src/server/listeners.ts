// The one function that installs a TLS listener of a certbound server: the main server and the
// TLS 1.2 twin (onDemandHosts) get the same installation — connection registry, request order,
// OCSP staples, handshake-error logging and HTTP timeouts — so that they cannot drift apart.
// Ticket keys, close and reload go through the ListenerList below, which keeps each listener
// with its own TLS options (the twin's maxVersion) and its certificate-less start context.
import type { FleetStatus } from '../fleet/fleet.js';
import { createSecureContext, type SecureContext, type SecureContextOptions, type Server as TlsServer, type TLSSocket } from 'node:tls';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import { CertboundError } from '../errors.js';
import { makeTlsListener } from '../tls/secure-context.js';
import type { OcspStapleSummary } from '../ocsp/server-stapling.js';
import { recordClientHellos, type HelloRecordOptions } from '../tls/hello-record.js';
import { DEFAULTS } from '../defaults.js';
import { ConnectionRegistry } from './registry.js';
import { orderRequests } from './request-order.js';
import { limitConnectionLifetime } from './connection-lifetime.js';
import type { MetricsSink } from './metrics.js';

/** Something that answers 'OCSPRequest' on a TLS server: the local stapler, or a cluster worker's relayed staples. */
export interface StapleSource {
  attachStaples(server: TlsServer): void;
  /** The staple state of a certificate (SHA-256 hex of its DER; the first one when omitted), as the source knows it. */
  summary?(fingerprint?: string): OcspStapleSummary;
  /** The machine's fleet status (a cluster worker: the primary's connection, which holds the ticket keys and staples). */
  fleetStatus?(): FleetStatus | undefined;
}

export interface ListenerSetup {
  readonly registry: ConnectionRegistry;
  readonly staples: StapleSource | undefined;
  readonly logger: { debug(obj: object, msg: string): void };
  /** With several server certificates: read each ClientHello first (src/tls/hello-record.ts). */
  readonly helloRecord?: HelloRecordOptions;
  /** Counts handshakes (completed and failed); no listener is added when metrics are off. */
  readonly metrics?: MetricsSink;
  /** Maximum connection lifetime (ms; 0 or absent: none), src/server/connection-lifetime.ts. */
  readonly maxConnectionLifetimeMs?: number;
}

/** Installs `server` as a certbound listener (idempotent parts: registry and order). */
export function installListener(server: HttpsServer, setup: ListenerSetup): void {
  const tls = server as unknown as TlsServer;
  setup.registry.attach(tls);
  orderRequests(server, (s) => ConnectionRegistry.entryOf(s));
  setup.staples?.attachStaples(tls);
  const metrics = setup.metrics?.enabled ? setup.metrics : undefined;
  if (setup.helloRecord) {
    // A connection whose ClientHello cannot be established is destroyed before TLS (fail closed):
    // logged and counted as a failed handshake like one OpenSSL refuses.
    recordClientHellos(tls, {
      ...setup.helloRecord,
      onRefuse: (socket, reason, detail) => {
        setup.logger.debug({ reason, detail, remoteAddress: socket.remoteAddress }, 'TLS handshake refused: ClientHello not readable');
        metrics?.handshake(null, false, false);
      },
    });
  }
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    setup.logger.debug({ err: { code: err.code, message: err.message }, remoteAddress: socket.remoteAddress }, 'TLS handshake failed');
    metrics?.handshake(socket.getProtocol(), false, false);
  });
  if (metrics) tls.on('secureConnection', (s) => metrics.handshake(s.getProtocol(), s.isSessionReused(), true));
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  server.keepAliveTimeout = DEFAULTS.keepAliveTimeoutMs;
  limitConnectionLifetime(server, setup.maxConnectionLifetimeMs ?? 0);
}

/** The native context a socket was accepted under (Node internals, as src/cbt/channel-bindings.ts reads them). */
export function contextOf(socket: TLSSocket): object | undefined {
  const ctx = (socket as unknown as { _tlsOptions?: { secureContext?: { context?: object } } })._tlsOptions?.secureContext?.context;
  return typeof ctx === 'object' && ctx !== null ? ctx : undefined;
}

/** The native context a server gives the connections it accepts now (a new one after setSecureContext). */
export function sharedContextOf(server: TlsServer): object | undefined {
  return (server as unknown as { _sharedCreds?: { context?: object } })._sharedCreds?.context;
}

/** The TLS material of every listener of one server (built by createServer at start and by each reload, one function). */
export interface ListenerTls {
  /** Options of each listener's own context: the first certificate, CAs, CRLs, versions, the SNI callback. */
  readonly options: HttpsServerOptions;
  /** With several certificates: options of the certificate-less context connections naming a host start from. */
  readonly certless: SecureContextOptions | undefined;
  /** The per-certificate contexts the SNI callback hands out (ticket keys are set on them too). */
  readonly sniContexts: readonly SecureContext[];
}

/** What a listener sets over ListenerTls.options (the TLS 1.2 twin: maxVersion and ALPN). */
export interface ListenerOwnOptions {
  readonly maxVersion?: 'TLSv1.2';
  readonly ALPNProtocols?: string[];
}

type NativeKeys = { getTicketKeys(): Buffer; setTicketKeys(k: Buffer): void };
const keysOf = (ctx: SecureContext): NativeKeys => ctx.context as NativeKeys;

interface ListedListener {
  readonly server: TlsServer;
  readonly own: ListenerOwnOptions;
  /** Its certificate-less start context now (several certificates), read by the ClientHello reader at each connection. */
  certless: SecureContext | undefined;
  /** Whether the ClientHello reader is installed (a server started with one certificate has none). */
  readonly reader: boolean;
}

/**
 * Every TLS listener of one server with its own options. Node's setSecureContext() builds a
 * context from the options it is given only, and keeps the SNI callback it was built with: a
 * swap re-applies each listener's options (the twin keeps maxVersion), builds its certificate-
 * less start context again, and re-applies the ticket keys on every context (listener's,
 * certless and SNI ones), so that main and twin cannot drift.
 */
export class ListenerList {
  readonly #listeners: ListedListener[] = [];
  #tls: ListenerTls;
  /** Keys set through setTicketKeys (a cluster's shared ones); before any, each context keeps its own. */
  #keys: Buffer | undefined;
  /** The start contexts in force; a socket accepted under another one predates the last swap. */
  #current = new WeakSet<object>();

  constructor(tls: ListenerTls) {
    this.#tls = tls;
  }

  /** The material in force. */
  get tls(): ListenerTls {
    return this.#tls;
  }

  get size(): number {
    return this.#listeners.length;
  }

  /** Installs `server` (installListener) with its certificate-less start context when there are several certificates. */
  add(server: HttpsServer, own: ListenerOwnOptions, setup: Omit<ListenerSetup, 'helloRecord'> & { readonly helloTimeoutMs: number }): void {
    const tls = server as unknown as TlsServer;
    const entry: ListedListener = { server: tls, own, certless: this.#certlessFor(this.#tls, own), reader: this.#tls.certless !== undefined };
    const { helloTimeoutMs, ...rest } = setup;
    installListener(server, { ...rest, ...(entry.reader ? { helloRecord: { timeoutMs: helloTimeoutMs, startWithout: () => entry.certless } } : {}) });
    this.#listeners.push(entry);
    for (const ctx of this.#startContexts(entry)) this.#current.add(ctx);
  }

  #certlessFor(tls: ListenerTls, own: ListenerOwnOptions): SecureContext | undefined {
    const certless = tls.certless;
    if (!certless) return undefined;
    return makeTlsListener(() => createSecureContext({ ...certless, ...(own.maxVersion ? { maxVersion: own.maxVersion } : {}) }));
  }

  #startContexts(l: ListedListener): object[] {
    return [sharedContextOf(l.server), l.certless?.context as object | undefined].filter((c): c is object => typeof c === 'object' && c !== null);
  }

  /** Sets the 48-byte session-ticket keys on every context: listeners', certificate-less and SNI ones. */
  setTicketKeys(keys: Buffer): void {
    this.#keys = Buffer.from(keys);
    for (const l of this.#listeners) {
      l.server.setTicketKeys(keys);
      // Connections naming a host start from the certificate-less context: its keys encrypt their tickets.
      if (l.certless) keysOf(l.certless).setTicketKeys(keys);
    }
    for (const c of this.#tls.sniContexts) keysOf(c).setTicketKeys(keys);
  }

  /**
   * Puts `next` in place on every listener: connections accepted from now on use it, the ones
   * already open keep theirs. Every context is built first: when Node refuses any, this throws
   * CB_ERR_TLS_CONTEXT and no listener changed. A server started with one certificate has no
   * ClientHello reader: it cannot take several (CB_ERR_INVALID_OPTION, restart it for that).
   */
  swap(next: ListenerTls): void {
    const built = this.#listeners.map((l) => {
      if (next.certless && !l.reader) {
        throw new CertboundError('CB_ERR_INVALID_OPTION', ['certificates', 'a server started with one certificate reloads one; restart it to serve several']);
      }
      const options: HttpsServerOptions = { ...next.options, ca: next.options.ca, crl: next.options.crl, ...l.own };
      try {
        createSecureContext(options);
        return { l, options, certless: this.#certlessFor(next, l.own) };
      } catch (err) {
        throw new CertboundError('CB_ERR_TLS_CONTEXT', ['the reloaded material', (err as Error).message], { cause: err });
      }
    });
    const current = new WeakSet<object>();
    for (const { l, options, certless } of built) {
      const listenerKeys = this.#keys ?? l.server.getTicketKeys();
      const certlessKeys = this.#keys ?? (l.certless ? keysOf(l.certless).getTicketKeys() : listenerKeys);
      l.server.setSecureContext(options);
      l.server.setTicketKeys(listenerKeys);
      if (certless) keysOf(certless).setTicketKeys(certlessKeys);
      l.certless = certless;
      for (const ctx of this.#startContexts(l)) current.add(ctx);
    }
    if (this.#keys) for (const c of next.sniContexts) keysOf(c).setTicketKeys(this.#keys);
    this.#tls = next;
    this.#current = current;
  }

  /** True when `socket` was accepted under a context its listener starts connections from now. */
  isCurrent(socket: TLSSocket): boolean {
    const ctx = contextOf(socket);
    return ctx !== undefined && this.#current.has(ctx);
  }
}
