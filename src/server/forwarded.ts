// Behind a front: requests from a trusted proxy (`trustedProxies`) carry the client's certificate
// in RFC 9440 headers, and certbound makes its own decision about it, per REQUEST (a proxy pools
// its connections across clients): the chain built from the forwarded issuers and the CAs of the
// `ca` option (src/tls/forwarded-chain.ts), the OpenSSL-shaped verify error mapped to certFlags
// as for a direct connection (src/tls/verdict.ts), then revocation and the mapper through the
// same decideTrust/certificateView as a connection (src/tls/client-certificate.ts). From any
// other peer these headers are removed from the request and logged, never read.
import type { FastifyRequest } from 'fastify';
import type { IncomingMessage } from 'node:http';
import { CertStatus } from '../status.js';
import { certificateFacts, certificateView, decideTrust, type ClientCertificate, type RevocationOutcome } from '../tls/client-certificate.js';
import { verifyForwardedChain } from '../tls/forwarded-chain.js';
import type { HandshakeRecord } from '../tls/peer-chain.js';
import type { TrustMaterial } from '../tls/trust-material.js';
import type { ConnectionEntry, TrustPolicy } from './connection.js';
import { isForwardedCertHeader, readForwardedCertificate, type ForwardedCertificate } from './forwarded-headers.js';
import type { TrustedProxies } from './trusted-proxies.js';

/** What the forwarded decision needs of the server. */
export interface ForwardedOptions {
  readonly proxies: TrustedProxies;
  /** The CAs (and, from createServer's `crl`, the CRLs) a forwarded chain is verified against: the ones in force now. */
  readonly material: () => TrustMaterial | Promise<TrustMaterial>;
  /** The mapper and revocation checker in force (the registry's policy). */
  readonly policy: () => Pick<TrustPolicy, 'mapper' | 'revocation'>;
  /** Clock for validity times (ms since the epoch). Default: Date.now. */
  readonly now?: () => number;
  readonly logger: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/** A request's forwarded state: the certificate its proxy forwarded (with certbound's decision), or null when it forwarded none. */
interface ForwardedState { readonly view: ClientCertificate | null }

const kForwarded = Symbol('certbound.forwarded');
type Marked = FastifyRequest & { [kForwarded]?: ForwardedState | false };

/** A revocation checker that threw: fail closed, as for a connection. */
const CHECK_FAILED: RevocationOutcome = Object.freeze({ certFlags: CertStatus.CRYPT_E_REVOCATION_OFFLINE, revocationStatus: CertStatus.CRYPT_E_REVOCATION_OFFLINE, source: 'none', reason: 'check-failed' });

/** The forwarded state of a request: set once the plugin's onRequest classified it as from a trusted proxy; false: from another peer; undefined: not yet. */
export function forwardedStateOf(request: FastifyRequest): ForwardedState | false | undefined {
  return (request as Marked)[kForwarded];
}

/**
 * Removes the certificate and verdict headers (FORWARDED_CERT_HEADERS, names compared with `_`
 * read as `-` as the front does: `Client_Cert` reaches CGI-style stacks as Client-Cert) from a request of a peer
 * that may not send them, from `headers` and `rawHeaders`, so that neither certbound nor the app
 * reads a forged one. Logged at warn once per connection (`warned` remembers the sockets), then
 * at debug.
 */
export function stripForwardedHeaders(raw: IncomingMessage, logger: ForwardedOptions['logger'], warned: WeakSet<object>): void {
  const headers = raw.headers;
  // Every request passes here: a look at each name's first letter (all of them start with `c`), the fold only then.
  let found: string[] | undefined;
  for (const name in headers) {
    if (name.charCodeAt(0) !== 99 || !isForwardedCertHeader(name)) continue;
    (found ??= []).push(name);
    delete headers[name];
  }
  if (!found) return;
  const rawHeaders = raw.rawHeaders;
  for (let i = rawHeaders.length - 2; i >= 0; i -= 2) if (isForwardedCertHeader(rawHeaders[i] as string)) rawHeaders.splice(i, 2);
  const socket = raw.socket as object;
  const line = { remoteAddress: raw.socket?.remoteAddress, headers: found };
  if (warned.has(socket)) {
    logger.debug(line, 'forwarded client-certificate headers from a peer that is not a trusted proxy: removed, not read');
  } else {
    warned.add(socket);
    logger.warn(line, 'forwarded client-certificate headers from a peer that is not a trusted proxy: removed, not read (trustedProxies; logged once per connection)');
  }
}

/** Reads, decides and strips forwarded certificates for the plugin. */
export class ForwardedCertificates {
  readonly #o: ForwardedOptions;
  /** Connections (sockets) whose forged headers were already logged at warn: the rest of them at debug. */
  readonly #warned = new WeakSet<object>();
  /** Whether a socket's peer address is a trusted one: a socket keeps its address, and BlockList.check costs microseconds. */
  readonly #byAddress = new WeakMap<object, boolean>();

  constructor(options: ForwardedOptions) {
    this.#o = options;
  }

  get proxies(): TrustedProxies {
    return this.#o.proxies;
  }

  /**
   * Whether the request's peer is a trusted proxy, as far as can be told now: true by address,
   * or by an mTLS identity on a connection whose decision is final and authorized; false when it
   * surely is not; undefined when an identity entry waits for the connection's decision.
   */
  peerNow(raw: IncomingMessage, entry: ConnectionEntry | undefined): boolean | undefined {
    const proxies = this.#o.proxies;
    const socket = raw.socket as object | undefined;
    let byAddress = socket ? this.#byAddress.get(socket) : undefined;
    if (byAddress === undefined) {
      const address = raw.socket?.remoteAddress;
      byAddress = proxies.matchesAddress(address);
      // A closed socket has no address any more: not remembered.
      if (socket && address) this.#byAddress.set(socket, byAddress);
    }
    if (byAddress) return true;
    if (!proxies.byIdentity || !entry) return false;
    if (!entry.decided) return undefined;
    return proxies.matchesCertificate(entry.clientCertificate());
  }

  /** peerNow, waiting for the connection's decision when an identity entry needs it. */
  async peer(raw: IncomingMessage, entry: ConnectionEntry | undefined): Promise<boolean> {
    const now = this.peerNow(raw, entry);
    if (now !== undefined) return now;
    await entry?.settle();
    return this.peerNow(raw, entry) === true;
  }

  /** A request from a peer that is not a trusted proxy: certificate and verdict headers are removed (and logged), never read. */
  ignore(request: FastifyRequest): void {
    (request as Marked)[kForwarded] = false;
    stripForwardedHeaders(request.raw, this.#o.logger, this.#warned);
  }

  /**
   * A request from a trusted proxy: its RFC 9440 headers read (ForwardedHeaderError on a
   * malformed one) and decided; the result is what request.clientCertificate() answers.
   */
  async accept(request: FastifyRequest): Promise<ClientCertificate | null> {
    const forwarded = readForwardedCertificate(request.raw.rawHeaders);
    const view = forwarded ? await this.decide(forwarded) : null;
    (request as Marked)[kForwarded] = Object.freeze({ view });
    return view;
  }

  /** certbound's own decision on a forwarded certificate: chain, then revocation, then the mapper. */
  async decide(forwarded: ForwardedCertificate): Promise<ClientCertificate> {
    const material = await this.#o.material();
    const now = (this.#o.now ?? Date.now)();
    const { chain, verifyError } = verifyForwardedChain(forwarded.leaf, forwarded.issuers, material, now);
    const record: HandshakeRecord = Object.freeze({ sequence: 0, completedAt: now, protocol: null, cipher: null, resumed: false, alpnProtocol: null, chain: Object.freeze(chain), verifyError });
    const facts = certificateFacts(record, forwarded.leaf) as NonNullable<ReturnType<typeof certificateFacts>>;
    const policy = this.#o.policy();
    let outcome: RevocationOutcome | undefined;
    // Revocation only for a chain that verified (decideTrust reports the chain's defect first), per request.
    if (facts.chainFlags === 0 && policy.revocation) outcome = await policy.revocation.checkOnce({}, chain).catch(() => CHECK_FAILED);
    return Object.freeze({ ...certificateView(facts, decideTrust(facts, outcome, policy.mapper)), forwarded: true });
  }

  /**
   * What request.clientCertificate() answers for a request whose peer is (or may be) a trusted
   * proxy: the forwarded view, or null before the plugin read it; undefined when the request is
   * not from a trusted proxy (the connection's certificate applies).
   */
  viewOf(request: FastifyRequest, entry: ConnectionEntry | undefined): ClientCertificate | null | undefined {
    const state = (request as Marked)[kForwarded];
    if (state === false) return undefined;
    if (state) return state.view;
    return this.peerNow(request.raw, entry) === false ? undefined : null;
  }
}
