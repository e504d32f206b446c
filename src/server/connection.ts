// One TLS connection: its id, the record of the last handshake the server ran, and the one
// trust decision on its client certificate (chain verdict, revocation, mapper), computed once
// per handshake and read by every API. Also the connection's guard against handshakes the
// server did not start, and its renegotiation and request-order state.
import type { X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { CertStatus } from '../status.js';
import {
  certificateFacts, certificateView, decideTrust, NO_CERTIFICATE,
  type CertificateFacts, type ClientCertificate, type RevocationOutcome, type TrustDecision,
} from '../tls/client-certificate.js';
import type { CompiledMapper } from '../tls/mapper.js';
import { readHandshake, type HandshakeRecord } from '../tls/peer-chain.js';
import { verifyUnder, type TrustMaterial } from '../tls/trust-material.js';
import { offerIntermediates, recallChain, rememberChain, verdictOf, verifyResumed } from '../tls/session-chains.js';
import { installRenegotiationGuard, type RenegotiationGuard, type RenegotiationGuardHooks, type RenegotiationRefusal } from '../tls/renegotiation-guard.js';
import type { NegotiationResult, Renegotiable } from '../tls/renegotiate.js';
import { NO_METRICS, type MetricsSink } from './metrics.js';
import { RequestOrder, type OrderedConnection } from './request-order.js';

/** Checks a connection's client certificate for revocation (src/ocsp/revocation.ts RevocationChecker fits). */
export interface ConnectionRevocationCheck {
  /** Once per connection and leaf; resolves, never rejects. */
  checkOnce(connection: object, chain: readonly Buffer[]): Promise<RevocationOutcome>;
}

/** The server's trust rules that every connection's decision applies. */
export interface TrustPolicy {
  readonly mapper: CompiledMapper;
  /** Revocation checking of client certificates; undefined when off. */
  readonly revocation: ConnectionRevocationCheck | undefined;
  /**
   * The trusted client CAs: the chain of each connection is built from them and what the peer
   * sent, link by link with signatures (src/tls/peer-chain.ts).
   */
  readonly anchors: readonly X509Certificate[];
  /**
   * After a reload (src/server/reload.ts): the material in force, and whether a socket was
   * accepted under it. A handshake on a socket accepted before must also pass verifyUnder();
   * a resumed one is judged as #read says.
   * Undefined before any reload.
   */
  readonly reloaded?: { readonly material: TrustMaterial; isCurrent(socket: TLSSocket): boolean };
  /**
   * The CAs and CRLs in force (src/tls/trust-material.ts): a resumed handshake whose leaf no
   * cached verdict covers is verified against them now (src/tls/session-chains.ts). createServer
   * sets it at listen() and at each reload; without it, the anchors alone (no CRLs: right for a
   * server whose CRLs never change, as the plugin's app server).
   */
  readonly material?: TrustMaterial;
  /** The clock (ms since the epoch) of every time-based decision of a connection. Default: Date.now. */
  readonly now?: () => number;
}

/** A revocation checker that threw: fail closed, whatever the fail mode. */
const CHECK_FAILED: RevocationOutcome = Object.freeze({ certFlags: CertStatus.CRYPT_E_REVOCATION_OFFLINE, revocationStatus: CertStatus.CRYPT_E_REVOCATION_OFFLINE, source: 'none', reason: 'check-failed' });

/** The entry of a socket (set by its constructor). */
const kConnection = Symbol('certbound.connection');
type WithEntry = { [kConnection]?: ConnectionEntry };

/** One TLS connection. */
export class ConnectionEntry implements Renegotiable, OrderedConnection {
  readonly id: bigint;
  readonly socket: TLSSocket;
  readonly openedAt: number;
  #order: RequestOrder | undefined;
  /** Called when a handshake the server did not start is refused (the socket is destroyed). */
  readonly #onRogue: ((entry: ConnectionEntry) => void) | undefined;
  /** @internal The on-demand negotiation in flight, if any (src/tls/renegotiate.ts). */
  negotiation: Promise<unknown> | undefined;
  /** @internal Renegotiations the server started on this connection. */
  renegotiations = 0;
  /** The registry's policy now: a reload replaces it, and the next handshake here reads the new one. */
  readonly #policyNow: () => TrustPolicy;
  /** Where the decision and negotiations are counted (NO_METRICS when metrics are off). */
  readonly #metrics: MetricsSink;
  #closed = false;
  #handshake: HandshakeRecord;
  /** The parsed leaf of the current handshake, when the capture made one. */
  #leaf: X509Certificate | undefined;
  // The decision's memo, reset by each handshake: the leaf's facts, the view (final once
  // revocation, when configured, has answered), and the check in flight.
  #facts: CertificateFacts | null | undefined;
  #view: ClientCertificate | null | undefined;
  #final = false;
  #settling: Promise<ClientCertificate | null> | undefined;
  /**
   * Other values derived from the current handshake (channel bindings), reset with it: the
   * first key inline, more in a Map made only when asked (a Map per connection was memory
   * every idle connection paid for).
   */
  #derivedKey: object | undefined;
  #derivedValue: unknown;
  #derivedMore: Map<object, unknown> | undefined;
  /** Refuses handshakes the server did not start; counts the ones it did (src/tls/renegotiation-guard.ts). */
  readonly #guard: RenegotiationGuard;
  #endServerHandshake: (() => void) | undefined;
  /** guard.handshakes at the last recorded handshake. */
  #recordedAtHandshakes = 0;
  /** The earliest notAfter (ms) of the current handshake's chain; Infinity without one. */
  #expiresAt = Infinity;

  constructor(id: bigint, socket: TLSSocket, policy: TrustPolicy | (() => TrustPolicy), onRogueHandshake?: (entry: ConnectionEntry) => void, metrics: MetricsSink = NO_METRICS) {
    this.id = id;
    this.socket = socket;
    this.openedAt = Date.now();
    this.#policyNow = typeof policy === 'function' ? policy : () => policy;
    this.#metrics = metrics;
    this.#onRogue = onRogueHandshake;
    ({ record: this.#handshake, leaf: this.#leaf } = this.#read(1));
    // A handshake the server did not start (a client-initiated renegotiation) could swap the
    // certificate while socket.authorized stays stale: the guard closes the connection at its
    // ClientHello, before the server answers. A legacy renegotiation that OpenSSL refused
    // itself is ignored: that connection keeps serving.
    this.#guard = installRenegotiationGuard(socket, ConnectionEntry.#guardHooks);
    socket.on('error', ConnectionEntry.#onSocketError);
    // Last: a socket never points at an entry whose construction failed.
    (socket as TLSSocket & WithEntry)[kConnection] = this;
  }

  // Shared by every connection (no closures per connection): they find the entry on the socket.
  static readonly #guardHooks: RenegotiationGuardHooks = Object.freeze({
    onRefused(_reason: RenegotiationRefusal, socket: TLSSocket): void {
      const entry = ConnectionEntry.of(socket);
      if (entry) entry.#onRogue?.(entry);
    },
  });

  /**
   * After the server's own renegotiation, renegotiation is disabled: a client that tries again
   * gets these errors at handshake start, and the connection goes.
   */
  static readonly #onSocketError = function (this: TLSSocket, err: NodeJS.ErrnoException): void {
    if (err.code === 'ERR_TLS_RENEGOTIATION_DISABLED' || err.code === 'ERR_TLS_SESSION_ATTACK') {
      const entry = ConnectionEntry.of(this);
      if (entry) entry.#onRogue?.(entry);
      this.destroy();
    }
  };

  /** The entry of a socket, if one was made for it. */
  static of(socket: unknown): ConnectionEntry | undefined {
    return socket && typeof socket === 'object' ? (socket as WithEntry)[kConnection] : undefined;
  }

  /** @internal The order of this connection's requests (src/server/request-order.ts), made when first needed. */
  get order(): RequestOrder {
    return (this.#order ??= new RequestOrder());
  }

  get #policy(): TrustPolicy {
    return this.#policyNow();
  }

  /**
   * Reads the handshake that just completed, its chain built against the CAs in force. On a
   * socket accepted before a reload, OpenSSL verified with the old context: after any reload,
   * the chain must also pass the material in force now (src/tls/trust-material.ts), or it gets
   * that error. A resumed handshake carries only the leaf and the verdict of the session's first
   * handshake (OpenSSL verifies nothing again, ticket keys outlive reloads and are shared by
   * workers): it gets the chain and verdict a full handshake established under the policy in
   * force (cached per leaf, src/tls/session-chains.ts), or one verified now. Either way a chain
   * past its notAfter is CERT_HAS_EXPIRED, and the connection's expiry is its earliest notAfter.
   */
  #read(sequence: number): { record: HandshakeRecord; leaf: X509Certificate | undefined } {
    const policy = this.#policy;
    const now = (policy.now ?? Date.now)();
    const read = readHandshake(this.socket, sequence, policy.anchors, now);
    const { record, leaf } = read;
    if (record.chain.length === 0 || !leaf) {
      this.#expiresAt = Infinity;
      return read;
    }
    const material = policy.material ?? policy.reloaded?.material;
    const sessionError = record.verifyError;
    if (!record.resumed) {
      const reloaded = policy.reloaded;
      const verifyError = !reloaded || reloaded.isCurrent(this.socket) ? sessionError : verifyUnder(reloaded.material, record.chain, sessionError, now);
      const verdict = verdictOf(read.certs, verifyError, material, now);
      rememberChain(policy, leaf.fingerprint256, sessionError, verdict);
      if (verifyError === null) offerIntermediates(read.certs.slice(1));
      this.#expiresAt = verdict.notAfter;
      return verifyError === sessionError ? read : { record: Object.freeze({ ...record, verifyError }), leaf };
    }
    let verdict = recallChain(policy, leaf.fingerprint256, sessionError, now);
    if (!verdict) {
      verdict = verifyResumed(leaf, sessionError, material ?? { anchors: policy.anchors, crlCheck: false, crlsByIssuer: new Map() }, now);
      rememberChain(policy, leaf.fingerprint256, sessionError, verdict);
    }
    this.#expiresAt = verdict.notAfter;
    const verifyError = verdict.verifyError ?? (now > verdict.notAfter ? 'CERT_HAS_EXPIRED' : now < verdict.notBefore ? 'CERT_NOT_YET_VALID' : null);
    return { record: Object.freeze({ ...record, chain: verdict.chain, verifyError }), leaf };
  }

  /**
   * Past the chain's earliest notAfter, the decision of a verified chain becomes CERT_HAS_EXPIRED
   * (a long-lived keep-alive connection stops being authorized then): one clock read and a
   * number compared, on every read of the decision.
   */
  #expireIfDue(): void {
    if (this.#expiresAt === Infinity || (this.#policy.now ?? Date.now)() <= this.#expiresAt) return;
    this.#expiresAt = Infinity;
    if (this.#handshake.verifyError !== null) return;
    this.#handshake = Object.freeze({ ...this.#handshake, verifyError: 'CERT_HAS_EXPIRED' });
    this.#resetDecision();
  }

  #resetDecision(): void {
    this.#facts = undefined;
    this.#view = undefined;
    this.#final = false;
    this.#settling = undefined;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The record of the most recent handshake the server ran on this connection. */
  get handshake(): HandshakeRecord {
    return this.#handshake;
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
    // counter comparison: reading the certificate back per request cost about 8 % of a
    // keep-alive request (docs/performance.md).
    if (this.#guard.handshakes !== this.#recordedAtHandshakes) return false;
    return (this.socket as unknown as { _securePending?: boolean })._securePending !== true;
  }

  /**
   * @internal Records a handshake the server itself started (a renegotiation): the chain and
   * verdict are read fresh from the socket, and the decision starts over.
   */
  recordHandshake(): HandshakeRecord {
    ({ record: this.#handshake, leaf: this.#leaf } = this.#read(this.#handshake.sequence + 1));
    this.#recordedAtHandshakes = this.#guard.handshakes;
    this.#resetDecision();
    this.#derivedKey = undefined;
    this.#derivedValue = undefined;
    this.#derivedMore = undefined;
    return this.#handshake;
  }

  /**
   * @internal A value derived from the current handshake, computed once per handshake and
   * `key` (e.g. the channel bindings under one configuration).
   */
  perHandshake<T>(key: object, compute: (entry: this) => T): T {
    if (this.#derivedKey === key) return this.#derivedValue as T;
    if (this.#derivedMore?.has(key)) return this.#derivedMore.get(key) as T;
    const value = compute(this);
    if (this.#derivedKey === undefined) {
      this.#derivedKey = key;
      this.#derivedValue = value;
    } else {
      (this.#derivedMore ??= new Map()).set(key, value);
    }
    return value;
  }

  /** @internal True while a request may still negotiate a certificate here (request order). */
  mayNegotiate(): boolean {
    return this.#handshake.chain.length === 0 && this.#handshake.alpnProtocol !== 'h2';
  }

  /** @internal True when the client sent a certificate at the last handshake (renegotiation). */
  hasCertificate(): boolean {
    return this.#handshake.chain.length > 0;
  }

  #factsOf(): CertificateFacts | null {
    if (this.#facts === undefined) {
      this.#facts = certificateFacts(this.#handshake, this.#leaf);
      // The facts are strings: the parsed leaf (and the issuer copies Node made with it) can go.
      this.#leaf = undefined;
    }
    return this.#facts;
  }

  /**
   * True when the decision is final: no certificate, no revocation check configured, or the
   * check has answered. Requests wait for it (the plugin's onRequest) before any handler runs.
   */
  get decided(): boolean {
    this.#expireIfDue();
    if (this.#final) return true;
    return this.#handshake.chain.length === 0 || this.#policy.revocation === undefined;
  }

  /**
   * The client certificate of the current handshake with its decision, or null. Synchronous:
   * while a configured revocation check runs (never the case inside a request) it answers
   * `authorized: false`, reason `revocation-pending`, certFlags CRYPT_E_NO_REVOCATION_CHECK,
   * and starts the check.
   */
  clientCertificate(): ClientCertificate | null {
    this.#expireIfDue();
    if (this.#view !== undefined && this.#final) return this.#view;
    const facts = this.#factsOf();
    // The decision is counted where it becomes final: once per handshake.
    if (!facts) {
      this.#final = true;
      this.#metrics.verdict(null);
      return (this.#view = null);
    }
    if (!this.#policy.revocation) {
      this.#final = true;
      this.#view = certificateView(facts, decideTrust(facts, undefined, this.#policy.mapper));
      this.#metrics.verdict(this.#view.certFlags);
      return this.#view;
    }
    if (this.#view === undefined) this.#view = certificateView(facts, decideTrust(facts, 'pending', this.#policy.mapper));
    void this.settle();
    return this.#view;
  }

  /** The decision alone (NO_CERTIFICATE without a certificate); see clientCertificate(). */
  decision(): TrustDecision {
    return this.clientCertificate() ?? NO_CERTIFICATE;
  }

  /**
   * The final decision: waits for the revocation check when one is configured (once per
   * handshake; every caller shares it). Resolves, never rejects.
   */
  settle(): Promise<ClientCertificate | null> {
    this.#expireIfDue();
    if (this.#final) return Promise.resolve(this.#view ?? null);
    if (this.#settling) return this.#settling;
    const revocation = this.#policy.revocation;
    const facts = this.#factsOf();
    if (!facts || !revocation) return Promise.resolve(this.clientCertificate());
    const record = this.#handshake;
    const settling = revocation.checkOnce(this, record.chain).catch(() => CHECK_FAILED).then((outcome) => {
      // A handshake since then started a new decision: answer with that one.
      if (this.#handshake !== record) return this.settle();
      this.#view = certificateView(facts, decideTrust(facts, outcome, this.#policy.mapper));
      this.#final = true;
      this.#settling = undefined;
      this.#metrics.revocation(outcome.source, outcome.revocationStatus);
      this.#metrics.verdict(this.#view.certFlags);
      return this.#view;
    });
    this.#settling = settling;
    return settling;
  }

  /** @internal Counts an on-demand negotiation's result (src/tls/renegotiate.ts). */
  negotiated(result: NegotiationResult, attempted: boolean): void {
    this.#metrics.negotiation(result, attempted);
  }

  /** @internal */
  markClosed(): void {
    this.#closed = true;
  }
}
