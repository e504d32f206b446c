// The chain and verdict of a resumed handshake. What OpenSSL keeps of a session (a TLS 1.3 or
// TLS 1.2 ticket, a TLS 1.2 session id) is the peer's leaf and the verify result of the
// session's first handshake — not the peer's chain (ssl/ssl_asn1.c: `peer`, `verify_result`) —
// and a resumed handshake verifies nothing again. So a resumed handshake gets its chain and
// verdict here: from a bounded per-process cache of what full handshakes verified, valid for one
// trust policy (a reload replaces the policy, and with it every entry), or else verified now
// against the material in force, from the trusted anchors and the intermediates full handshakes
// have shown (in this process, or relayed by a cluster's primary). Fail closed: a chain that
// cannot be established again does not verify.
import { X509Certificate } from 'node:crypto';
import { certValidity, linkChain } from './peer-chain.js';
import { crlDeadline, verifyUnder, type TrustMaterial } from './trust-material.js';

/** What a full handshake (or a verification now) established for one leaf under one policy. */
export interface ChainVerdict {
  /** The chain as it verified, DER, leaf first. */
  readonly chain: readonly Buffer[];
  /** The verify error under the policy (null: verified). */
  readonly verifyError: string | null;
  /** The latest notBefore and the earliest notAfter of the chain (ms since the epoch). */
  readonly notBefore: number;
  readonly notAfter: number;
  /** Until when the verdict may be reused (ms): notAfter, or an earlier nextUpdate of a CRL it relied on. */
  readonly reusableUntil: number;
}

/** Entries per policy; the cache starts over when full (the same leaves come back on every connection). */
const MAX_VERDICTS = 10_000;
/** Intermediates kept for rebuilding chains; the pool starts over when full. */
const MAX_INTERMEDIATES = 1_000;

const byPolicy = new WeakMap<object, Map<string, ChainVerdict>>();
const intermediates = new Map<string, X509Certificate>();
const shareListeners = new Set<(certs: readonly X509Certificate[]) => void>();

/** @internal Counters for tests and benches: resumed handshakes answered from the cache (hits), verified now (misses), and of those the ones that failed although the session had verified. */
export const sessionChainStats = { hits: 0, misses: 0, failed: 0 };

const TIME_ERRORS = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CRL_HAS_EXPIRED', 'CRL_NOT_YET_VALID', 'UNABLE_TO_GET_CRL']);

const keyOf = (leafSha256: string, sessionError: string | null): string => `${leafSha256}|${sessionError ?? ''}`;

/** The validity window of a chain: latest notBefore, earliest notAfter (ms). */
export function validityOf(certs: readonly X509Certificate[]): { notBefore: number; notAfter: number } {
  let notBefore = -Infinity;
  let notAfter = Infinity;
  for (const c of certs) {
    // An unparsable date fails closed (certValidity: a window that is never open).
    const v = certValidity(c);
    notBefore = Math.max(notBefore, v.from);
    notAfter = Math.min(notAfter, v.to);
  }
  return { notBefore, notAfter };
}

/**
 * Remembers what a full handshake established for `leafSha256` (OpenSSL's own verify error of
 * that handshake: a session made by it carries the same) under `policy`.
 */
export function rememberChain(policy: object, leafSha256: string, sessionError: string | null, verdict: ChainVerdict): void {
  // A verdict that depends on the time it was made (expired, not yet valid, an old CRL) is not
  // reused: the next resumption verifies again.
  if (verdict.verifyError !== sessionError && verdict.verifyError !== null && TIME_ERRORS.has(verdict.verifyError)) return;
  let map = byPolicy.get(policy);
  if (!map) byPolicy.set(policy, (map = new Map()));
  if (map.size >= MAX_VERDICTS) map.clear();
  map.set(keyOf(leafSha256, sessionError), verdict);
}

/** The verdict a full handshake established for this leaf and session verify error under `policy`, while it may be reused at `now`. */
export function recallChain(policy: object, leafSha256: string, sessionError: string | null, now: number): ChainVerdict | undefined {
  const v = byPolicy.get(policy)?.get(keyOf(leafSha256, sessionError));
  if (!v || now > v.reusableUntil) return undefined;
  sessionChainStats.hits += 1;
  return v;
}

/**
 * Offers the intermediates a verified full handshake showed (certificates that are not anchors)
 * for rebuilding chains later (CA certificates that are not self-issued); new ones go to the share listeners (a cluster worker relays them
 * to the others through the primary). Nothing here is trusted:
 * a chain built with them still has to link by signature to an anchor and pass verifyUnder().
 */
export function offerIntermediates(certs: readonly X509Certificate[], share = true): void {
  let fresh: X509Certificate[] | undefined;
  for (const c of certs) {
    // Intermediates only: a root is trusted as an anchor or not at all.
    if (intermediates.has(c.fingerprint256) || !c.ca || c.checkIssued(c)) continue;
    if (intermediates.size >= MAX_INTERMEDIATES) intermediates.clear();
    intermediates.set(c.fingerprint256, c);
    (fresh ??= []).push(c);
  }
  if (fresh && share) for (const l of shareListeners) l(fresh);
}

/** Intermediates from another process (DER); unparsable ones are dropped. */
export function acceptIntermediates(ders: readonly Buffer[]): void {
  const certs: X509Certificate[] = [];
  for (const der of ders) {
    try {
      certs.push(new X509Certificate(der));
    } catch {
      // Not a certificate: nothing to keep.
    }
  }
  offerIntermediates(certs, false);
}

/** Calls `listener` with the intermediates this process learns from its own full handshakes. Returns an unsubscribe function. */
export function onIntermediates(listener: (certs: readonly X509Certificate[]) => void): () => void {
  shareListeners.add(listener);
  return () => shareListeners.delete(listener);
}

/** The verdict of a full handshake's chain, for rememberChain(). */
export function verdictOf(certs: readonly X509Certificate[], verifyError: string | null, material: TrustMaterial | undefined, now: number): ChainVerdict {
  const { notBefore, notAfter } = validityOf(certs);
  return Object.freeze({ chain: Object.freeze(certs.map((c) => c.raw)), verifyError, notBefore, notAfter, reusableUntil: Math.min(notAfter, material ? crlDeadline(material, certs, now) : Infinity) });
}

/**
 * The verdict for a resumed session's leaf that no cached verdict covers: its chain rebuilt from
 * the anchors and the known intermediates (preferring issuers valid at `now`, as a full handshake does), verified under `material` at `now` (verifyUnder:
 * signatures, an anchor, validity dates, CRLs). The session's own error stands when it has one.
 */
export function verifyResumed(leaf: X509Certificate, sessionError: string | null, material: TrustMaterial, now: number): ChainVerdict {
  sessionChainStats.misses += 1;
  const certs = linkChain(leaf, material.anchors, intermediates.values(), now);
  const verifyError = verifyUnder(material, certs.map((c) => c.raw), sessionError, now);
  if (verifyError !== null && sessionError === null) sessionChainStats.failed += 1;
  return verdictOf(certs, verifyError, material, now);
}
