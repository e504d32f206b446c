// The connection registry: every accepted TLS connection gets a 64-bit id, unique for the
// life of the process, and an entry holding what the server learned at each handshake it
// ran (a frozen record). The client certificate view is computed once per handshake, lazily.
import { X509Certificate } from 'node:crypto';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { certFlagsFor } from '../tls/verdict.js';
import type { CompiledMapper, MappingOutcome } from '../tls/mapper.js';
import { compileMapper } from '../tls/mapper.js';
import { installRenegotiationGuard, type RenegotiationGuard } from '../tls/renegotiation-guard.js';

/** What the server recorded at one handshake it ran (frozen; replaced after each one). */
export interface HandshakeRecord {
  /** 1 for the initial handshake, +1 for each renegotiation the server started. */
  readonly sequence: number;
  /** When the handshake completed (ms since the epoch). */
  readonly completedAt: number;
  /** 'TLSv1.3', 'TLSv1.2', … */
  readonly protocol: string | null;
  readonly cipher: string | null;
  readonly resumed: boolean;
  /** ALPN protocol ('h2', 'http/1.1') or null. */
  readonly alpnProtocol: string | null;
  /** The client certificate chain as DER, leaf first; empty when the client sent none. */
  readonly chain: readonly Buffer[];
  /** OpenSSL's verification error code for that chain (null when verified or no certificate). */
  readonly verifyError: string | null;
}

/** The outcome of a client-certificate revocation check. */
export interface RevocationSummary {
  /** 0, CERT_E_REVOKED, CRYPT_E_REVOCATION_OFFLINE or CRYPT_E_NO_REVOCATION_CHECK. */
  readonly status: number;
  /** What decided: 'ocsp', 'crl', 'none' (nothing available) or 'skipped'. */
  readonly source: string;
  readonly reason: string | null;
}

/** The client certificate of a connection, with HTTP.sys's verdict and the mapper's answer. */
export interface ClientCertificate {
  /** The leaf certificate, DER (HTTP_SSL_CLIENT_CERT_INFO.pCertEncoded). */
  readonly der: Buffer;
  /** Leaf first, then the issuers as captured at the handshake. */
  readonly chain: readonly Buffer[];
  readonly subject: string;
  readonly issuer: string;
  /** Serial number, lowercase hex. */
  readonly serialNumber: string;
  /** SHA-1 thumbprint, lowercase hex. */
  readonly sha1: string;
  /** SHA-256 fingerprint, lowercase hex. */
  readonly sha256: string;
  readonly validFrom: Date;
  readonly validTo: Date;
  /** CERT_E_* value, 0 when the chain verified (HTTP_SSL_CLIENT_CERT_INFO.CertFlags). */
  readonly certFlags: number;
  /** OpenSSL's verify error code behind certFlags, or null. */
  readonly verifyError: string | null;
  /** The mapped identity (HTTP.sys's Token), null when unmapped. */
  readonly identity: string | null;
  /** HTTP_SSL_CLIENT_CERT_INFO.CertDeniedByMapper. */
  readonly deniedByMapper: boolean;
  /** Why the mapper refused, or null. */
  readonly mapperReason: string | null;
  /** The handshake this view belongs to. */
  readonly handshake: number;
  /**
   * The client-certificate revocation check (when the server runs one): its outcome and
   * source. Null before or without a check. A revoked certificate also has certFlags
   * CERT_E_REVOKED (hard-fail: the CRYPT_E_* status too).
   */
  readonly revocation: RevocationSummary | null;
  /** Parsed leaf. */
  readonly x509: X509Certificate;
}

const kEntry = Symbol('certbound.connection');

let idPrefix = 0n;
let idCounter = 0n;
const ID_BITS = 48n;

/**
 * Sets the high 16 bits of every connection id made from now on (a cluster worker's index),
 * so ids stay unique across the processes of one server. Default: 0.
 */
export function setConnectionIdPrefix(prefix: number): void {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 0xffff) throw new RangeError('connection id prefix must be an integer 0..65535');
  idPrefix = BigInt(prefix) << ID_BITS;
}

function nextConnectionId(): bigint {
  idCounter += 1n;
  return idPrefix | idCounter;
}

function hex(fingerprint: string): string {
  return fingerprint.replace(/:/g, '').toLowerCase();
}

/**
 * The peer chain as Node's getPeerCertificate(true) reports it, without its cost (about 90 µs
 * per handshake for the detailed objects it builds, against about 8 µs here): the certificates
 * the peer sent (getPeerX509Certificate().issuerCertificate), then the configured CAs up from the
 * last one, matched like OpenSSL's issuer lookup (X509_check_issued: names and key ids).
 * Returns the leaf's X509Certificate too, so that the client certificate view need not parse it again.
 */
function capturePeerChainFast(socket: TLSSocket, anchors: readonly X509Certificate[]): { chain: Buffer[]; leaf: X509Certificate | undefined } {
  const leaf = socket.getPeerX509Certificate();
  if (!leaf) return { chain: [], leaf: undefined };
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let cert: X509Certificate | undefined = leaf;
  let last = leaf;
  while (cert && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    last = cert;
    cert = cert.issuerCertificate;
  }
  // Then up the configured CAs until a self-issued one, as Node does for the verified chain.
  while (!last.checkIssued(last)) {
    const issuer = anchors.find((a) => !seen.has(a.fingerprint256) && last.checkIssued(a));
    if (!issuer) break;
    seen.add(issuer.fingerprint256);
    chain.push(issuer.raw);
    last = issuer;
  }
  return { chain, leaf };
}

/** Reads the peer chain once; Node loses intermediates on later getPeerCertificate calls. */
function capturePeerChain(socket: TLSSocket): Buffer[] {
  const peer = socket.getPeerCertificate(true);
  if (!peer || !peer.raw) return [];
  const chain: Buffer[] = [];
  const seen = new Set<string>();
  let cert: typeof peer | undefined = peer;
  while (cert && cert.raw && !seen.has(cert.fingerprint256)) {
    seen.add(cert.fingerprint256);
    chain.push(cert.raw);
    cert = cert.issuerCertificate as typeof peer | undefined;
  }
  return chain;
}

/**
 * OpenSSL's verification result for the current session (SSL_get_verify_result), read from
 * the socket's handle: after a renegotiation it is the new chain's, whatever
 * `authorizationError` says. Falls back to `authorizationError` if Node hides the handle.
 */
function currentVerifyError(socket: TLSSocket): string | null {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (handle && typeof handle.verifyError === 'function') {
    const err = handle.verifyError();
    return err ? (err.code ?? err.message) : null;
  }
  const e = socket.authorizationError as unknown;
  return e ? String((e as { code?: string }).code ?? e) : null;
}

/** @internal A request's place in its connection's order (see ConnectionEntry.openTicket). */
export interface RequestTicket {
  readonly seq: number;
  readonly done: Promise<void>;
  release(): void;
}

/** One TLS connection. */
export class ConnectionEntry {
  readonly id: bigint;
  readonly socket: TLSSocket;
  readonly openedAt: number;
  #closed = false;
  #handshake: HandshakeRecord;
  #cert: ClientCertificate | null | undefined;
  readonly #mapper: CompiledMapper;
  /** Refuses handshakes the server did not start; counts the ones it did (src/tls/renegotiation-guard.ts). */
  readonly #guard: RenegotiationGuard;
  #endServerHandshake: (() => void) | undefined;
  /** guard.handshakes at the last recorded handshake. */
  #recordedAtHandshakes = 0;
  readonly #anchors: readonly X509Certificate[] | undefined;
  /** The parsed leaf of the current handshake, when the fast capture made one. */
  #leaf: X509Certificate | undefined;
  /** @internal The on-demand negotiation in flight, if any (src/tls/renegotiate.ts). */
  negotiation: Promise<unknown> | undefined;
  /** @internal Renegotiations the server started on this connection. */
  renegotiations = 0;
  #requestSeq = 0;
  #tickets: RequestTicket[] = [];

  constructor(id: bigint, socket: TLSSocket, mapper: CompiledMapper, onRogueHandshake?: (entry: ConnectionEntry) => void, anchors?: readonly X509Certificate[]) {
    this.id = id;
    this.socket = socket;
    this.openedAt = Date.now();
    this.#mapper = mapper;
    this.#anchors = anchors;
    this.#handshake = this.#record(1);
    // A handshake the server did not start (a client-initiated renegotiation) could swap the
    // certificate while socket.authorized stays stale: the guard closes the connection at its
    // ClientHello, before the server answers. A legacy renegotiation that OpenSSL refused
    // itself is ignored: that connection keeps serving.
    this.#guard = installRenegotiationGuard(socket, { onRefused: () => onRogueHandshake?.(this) });
    // After the server's own renegotiation, renegotiation is disabled: a client that tries
    // again gets these errors at handshake start, and the connection goes.
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || err.code === 'ERR_TLS_SESSION_ATTACK') {
        onRogueHandshake?.(this);
        socket.destroy();
      }
    });
  }

  /**
   * @internal Called in arrival order for each request on a connection that has no
   * certificate yet: later requests wait (waitForEarlier) until this one has released its
   * ticket, i.e. until it either negotiated or was found not to need to.
   */
  openTicket(): RequestTicket {
    const seq = ++this.#requestSeq;
    let release!: () => void;
    const done = new Promise<void>((resolve) => { release = resolve; });
    const ticket: RequestTicket = {
      seq,
      done,
      release: () => {
        const i = this.#tickets.indexOf(ticket);
        if (i >= 0) this.#tickets.splice(i, 1);
        release();
      },
    };
    this.#tickets.push(ticket);
    return ticket;
  }

  /** @internal Resolves when every request that arrived before `seq` released its ticket. */
  async waitForEarlier(seq: number): Promise<void> {
    for (;;) {
      const earlier = this.#tickets.find((t) => t.seq < seq);
      if (!earlier) return;
      await earlier.done;
    }
  }

  /** @internal Brackets a handshake the server starts (renegotiation), so the guard lets it pass. */
  expectServerHandshake(on: boolean): void {
    this.#endServerHandshake?.();
    this.#endServerHandshake = on ? this.#guard.beginServerHandshake() : undefined;
  }

  /**
   * True when the peer certificate on the socket is still the one recorded at the last
   * handshake the server ran. Checked on every request: a later handshake may have
   * changed it while `socket.authorized` kept its old value.
   */
  identityIntact(): boolean {
    if (this.socket.destroyed) return false;
    // The peer certificate can only change through a handshake, and Node emits 'secure' after
    // every completed one (or holds it in _securePending until a newSession callback is done);
    // the guard counts the real ones. So "no handshake since the last recorded one" is a
    // counter comparison: reading the certificate back (getPeerX509Certificate, a copy and a
    // parse per request) cost about 8 % of a keep-alive request (bench/keepalive.ts,
    // docs/performance.md).
    if (this.#guard.handshakes !== this.#recordedAtHandshakes) return false;
    return (this.socket as unknown as { _securePending?: boolean })._securePending !== true;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The record of the most recent handshake the server ran on this connection. */
  get handshake(): HandshakeRecord {
    return this.#handshake;
  }

  /**
   * Records a handshake the server itself started (a renegotiation). Call it from the
   * renegotiation's completion only: the verdict and chain are read fresh from the socket.
   */
  recordHandshake(): HandshakeRecord {
    this.#handshake = this.#record(this.#handshake.sequence + 1);
    this.#recordedAtHandshakes = this.#guard.handshakes;
    this.#cert = undefined;
    return this.#handshake;
  }

  #record(sequence: number): HandshakeRecord {
    const s = this.socket;
    let chain: Buffer[];
    if (this.#anchors) {
      const captured = capturePeerChainFast(s, this.#anchors);
      chain = captured.chain;
      this.#leaf = captured.leaf;
    } else {
      chain = capturePeerChain(s);
      this.#leaf = undefined;
    }
    const cipher = s.getCipher();
    return Object.freeze({
      sequence,
      completedAt: Date.now(),
      protocol: s.getProtocol() ?? null,
      cipher: cipher?.standardName ?? cipher?.name ?? null,
      resumed: s.isSessionReused(),
      alpnProtocol: typeof s.alpnProtocol === 'string' ? s.alpnProtocol : null,
      chain: Object.freeze(chain),
      verifyError: chain.length > 0 ? currentVerifyError(s) : null,
    });
  }

  /** The client certificate of the current handshake (computed once), or null. */
  clientCertificate(): ClientCertificate | null {
    if (this.#cert !== undefined) return this.#cert;
    const h = this.#handshake;
    const leaf = h.chain[0];
    if (!leaf) return (this.#cert = null);
    const x509 = this.#leaf && this.#leaf.raw.equals(leaf) ? this.#leaf : new X509Certificate(leaf);
    const certFlags = certFlagsFor(h.verifyError, x509.keyUsage);
    const base = {
      der: leaf,
      chain: h.chain,
      subject: x509.subject,
      issuer: x509.issuer,
      serialNumber: x509.serialNumber.toLowerCase(),
      sha1: hex(x509.fingerprint),
      sha256: hex(x509.fingerprint256),
      certFlags,
    };
    const mapped: MappingOutcome = this.#mapper({ ...base });
    this.#cert = Object.freeze({
      ...base,
      validFrom: new Date(x509.validFrom),
      validTo: new Date(x509.validTo),
      verifyError: h.verifyError,
      identity: mapped.identity,
      deniedByMapper: mapped.deniedByMapper,
      mapperReason: mapped.reason,
      handshake: h.sequence,
      revocation: null,
      x509,
    });
    return this.#cert;
  }

  /**
   * Records the revocation check of the current certificate: certFlags takes the check's value
   * when the chain itself verified (a chain error stays the first defect, as HTTP.sys reports).
   */
  applyRevocation(handshake: number, outcome: { certFlags: number; revocationStatus: number; source: string; reason: string | null }): ClientCertificate | null {
    const cert = this.clientCertificate();
    if (!cert || cert.handshake !== handshake) return cert;
    this.#cert = Object.freeze({
      ...cert,
      certFlags: cert.certFlags === 0 ? outcome.certFlags : cert.certFlags,
      revocation: Object.freeze({ status: outcome.revocationStatus, source: outcome.source, reason: outcome.reason }),
    });
    return this.#cert;
  }

  /** @internal */
  markClosed(): void {
    this.#closed = true;
  }
}

/** The one logger method the registry uses (pino and fastify loggers fit). */
export interface RegistryLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface RegistryOptions {
  mapper?: CompiledMapper;
  /**
   * The trusted client CAs (createServer's `ca`). When given, the peer chain is captured
   * from getPeerX509Certificate() plus the anchor that issued it, instead of the costlier
   * getPeerCertificate(true) (docs/performance.md).
   */
  anchors?: readonly X509Certificate[];
  logger?: RegistryLogger;
}

/** Connection id → entry for the connections of one or more TLS servers. */
export class ConnectionRegistry {
  readonly #entries = new Map<bigint, ConnectionEntry>();
  readonly #mapper: CompiledMapper;
  readonly #logger: RegistryLogger | undefined;
  readonly #anchors: readonly X509Certificate[] | undefined;
  readonly #attached = new WeakSet<TlsServer>();
  /** Handshakes refused because the client started them (client-initiated renegotiation). */
  rogueHandshakes = 0;

  constructor(options: RegistryOptions = {}) {
    this.#mapper = options.mapper ?? compileMapper(undefined);
    this.#logger = options.logger;
    this.#anchors = options.anchors;
  }

  /** Registers every connection `server` accepts from now on (idempotent per server). */
  attach(server: TlsServer): void {
    if (this.#attached.has(server)) return;
    this.#attached.add(server);
    server.on('secureConnection', (socket: TLSSocket) => this.add(socket));
  }

  /** Registers a connection whose initial handshake has completed. */
  add(socket: TLSSocket): ConnectionEntry {
    const existing = ConnectionRegistry.entryOf(socket);
    if (existing) return existing;
    const entry = new ConnectionEntry(nextConnectionId(), socket, this.#mapper, (e) => {
      this.rogueHandshakes += 1;
      this.#logger?.warn({ connectionId: e.id.toString(), remoteAddress: socket.remoteAddress }, 'client-initiated renegotiation refused: connection closed');
    }, this.#anchors);
    (socket as TLSSocket & { [kEntry]?: ConnectionEntry })[kEntry] = entry;
    this.#entries.set(entry.id, entry);
    socket.once('close', () => {
      entry.markClosed();
      this.#entries.delete(entry.id);
    });
    this.#logger?.debug({ connectionId: entry.id.toString(), protocol: entry.handshake.protocol, resumed: entry.handshake.resumed, remoteAddress: socket.remoteAddress }, 'connection');
    return entry;
  }

  get(id: bigint): ConnectionEntry | undefined {
    return this.#entries.get(id);
  }

  get size(): number {
    return this.#entries.size;
  }

  entries(): IterableIterator<ConnectionEntry> {
    return this.#entries.values();
  }

  /** The entry of a socket, if a registry registered it. */
  static entryOf(socket: unknown): ConnectionEntry | undefined {
    return socket && typeof socket === 'object' ? (socket as { [kEntry]?: ConnectionEntry })[kEntry] : undefined;
  }
}
