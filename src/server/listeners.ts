// The one function that installs a TLS listener of a certbound server: the main server and the
// TLS 1.2 twin (onDemandHosts) get the same installation — connection registry, request order,
// OCSP staples, handshake-error logging and HTTP timeouts — so that they cannot drift apart.
// Ticket keys, close and reload go through the ListenerList below, which keeps each listener
// with the TLS options it was built with (the twin's maxVersion among them).
import { createSecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { CertboundError } from '../errors.js';
import type { Server as HttpsServer, ServerOptions as HttpsServerOptions } from 'node:https';
import { DEFAULTS } from '../defaults.js';
import { ConnectionRegistry } from './registry.js';
import { orderRequests } from './request-order.js';

/** Something that answers 'OCSPRequest' on a TLS server: the local stapler, or a cluster worker's relayed staples. */
export interface StapleSource {
  attachStaples(server: TlsServer): void;
}

export interface ListenerSetup {
  readonly registry: ConnectionRegistry;
  readonly staples: StapleSource | undefined;
  readonly logger: { debug(obj: object, msg: string): void };
}

/** Installs `server` as a certbound listener (idempotent parts: registry and order). */
export function installListener(server: HttpsServer, setup: ListenerSetup): void {
  const tls = server as unknown as TlsServer;
  setup.registry.attach(tls);
  orderRequests(server, (s) => ConnectionRegistry.entryOf(s));
  setup.staples?.attachStaples(tls);
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket) => {
    setup.logger.debug({ err: { code: err.code, message: err.message }, remoteAddress: socket.remoteAddress }, 'TLS handshake failed');
  });
  server.headersTimeout = DEFAULTS.headersTimeoutMs;
  server.requestTimeout = DEFAULTS.requestTimeoutMs;
  server.keepAliveTimeout = DEFAULTS.keepAliveTimeoutMs;
}

/** The TLS material a reload puts in place (already checked: src/server/reload.ts). */
export interface ContextMaterial {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly ca: ReadonlyArray<string | Buffer>;
  readonly crl: readonly string[];
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

/**
 * Every TLS listener of one server with the options it was built with. Node's
 * setSecureContext() builds a context from the options it is given only: the list re-applies
 * each listener's own options (the TLS 1.2 twin keeps maxVersion) and its current ticket keys
 * (its own, or those a cluster primary shares), so that main and twin cannot drift.
 */
export class ListenerList {
  readonly #listeners: { readonly server: TlsServer; readonly options: HttpsServerOptions }[] = [];
  /** The contexts the listeners serve now; a socket accepted under another one predates the last swap. */
  #current = new WeakSet<object>();

  /** Installs `server` (installListener) and keeps it with the options it was built with. */
  add(server: HttpsServer, options: HttpsServerOptions, setup: ListenerSetup): void {
    installListener(server, setup);
    const tls = server as unknown as TlsServer;
    this.#listeners.push({ server: tls, options });
    const ctx = sharedContextOf(tls);
    if (ctx) this.#current.add(ctx);
  }

  get size(): number {
    return this.#listeners.length;
  }

  setTicketKeys(keys: Buffer): void {
    for (const l of this.#listeners) l.server.setTicketKeys(keys);
  }

  /**
   * Puts `material` in place on every listener: connections accepted from now on use it, the
   * ones already open keep theirs. Node builds each context synchronously, so no connection
   * sees a mix. Throws CB_ERR_TLS_CONTEXT, with no listener changed, when Node refuses the
   * material for any listener.
   */
  swapContexts(material: ContextMaterial): void {
    const optionsOf = (l: { options: HttpsServerOptions }): HttpsServerOptions => ({
      ...l.options,
      cert: material.cert,
      key: material.key,
      // Undefined, not left out: the listener's start-up options may hold the old ones.
      ca: material.ca.length > 0 ? [...material.ca] : undefined,
      crl: material.crl.length > 0 ? [...material.crl] : undefined,
    });
    // Every listener's context is built once first: one Node refuses leaves all of them as they were.
    for (const l of this.#listeners) {
      try {
        createSecureContext(optionsOf(l));
      } catch (err) {
        throw new CertboundError('CB_ERR_TLS_CONTEXT', ['the reloaded material', (err as Error).message], { cause: err });
      }
    }
    const current = new WeakSet<object>();
    for (const l of this.#listeners) {
      const keys = l.server.getTicketKeys();
      l.server.setSecureContext(optionsOf(l));
      l.server.setTicketKeys(keys);
      const ctx = sharedContextOf(l.server);
      if (ctx) current.add(ctx);
    }
    this.#current = current;
  }

  /** True when `socket` was accepted under the context its listener serves now. */
  isCurrent(socket: TLSSocket): boolean {
    const ctx = contextOf(socket);
    return ctx !== undefined && this.#current.has(ctx);
  }
}
