// The client-certificate trust material of a server after a reload (src/server/reload.ts): the
// CAs and CRLs in force now. A connection accepted before the reload keeps its OpenSSL context,
// whose CA store and CRLs Node cannot change; a handshake run on it after the reload (an
// on-demand renegotiation) must pass that context's verification *and* this check against the
// material in force now, so that a CA or CRL removed or replaced by the reload applies to it.
import { verify as verifySignature, X509Certificate } from 'node:crypto';
import { cryptoEngine, pkijs } from './pkijs-engine.js';
import { certValidity, issuedBy } from './peer-chain.js';
import { pemBlocks } from './pem.js';

/** One CRL whose signature verified against a CA of the material. */
interface VerifiedCrl {
  readonly thisUpdate: number;
  readonly nextUpdate: number | null;
  /** Revoked serial numbers, lowercase hex without leading zeros. */
  readonly revoked: ReadonlySet<string>;
}

export interface TrustMaterial {
  /** The trusted client CAs (the `ca` option, or Node's bundled roots without it). */
  readonly anchors: readonly X509Certificate[];
  /** True when CRLs are configured: OpenSSL then checks every certificate of the chain (CRL_CHECK_ALL). */
  readonly crlCheck: boolean;
  /** Verified CRLs by the SHA-256 fingerprint of the CA that signed them. */
  readonly crlsByIssuer: ReadonlyMap<string, readonly VerifiedCrl[]>;
  /**
   * CRLs no anchor signed: an intermediate the client sends (not in the CA bundle) may have. Each
   * is used for an issuer of a verified chain once its signature verifies with that issuer's key.
   */
  readonly crlsOfIntermediates?: readonly UnmatchedCrl[];
}

/** A CRL that no anchor signed, with what it takes to verify it against an intermediate later. */
interface UnmatchedCrl {
  readonly tbs: Buffer;
  readonly signature: Buffer;
  /** node:crypto's digest for verify() (null for Ed25519), or undefined when the algorithm is not one certbound verifies. */
  readonly digest: string | null | undefined;
  readonly crl: VerifiedCrl;
  /** Issuer fingerprints (SHA-256) whose key verified it, or did not. */
  readonly checked: Map<string, boolean>;
}

/** The signature algorithms of CRLs an intermediate's key is checked against (others fail closed). */
const CRL_DIGESTS: Readonly<Record<string, string | null>> = {
  '1.2.840.113549.1.1.5': 'sha1', '1.2.840.113549.1.1.11': 'sha256', '1.2.840.113549.1.1.12': 'sha384', '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256', '1.2.840.10045.4.3.3': 'sha384', '1.2.840.10045.4.3.4': 'sha512', '1.3.101.112': null,
};

/** The CRLs of `issuer` (a CA of a chain that links by signature to an anchor): verified ones, and unmatched ones its key signed. */
function crlsOf(material: TrustMaterial, issuer: X509Certificate): readonly VerifiedCrl[] {
  const verified = material.crlsByIssuer.get(issuer.fingerprint256);
  if (verified || !material.crlsOfIntermediates) return verified ?? [];
  const found: VerifiedCrl[] = [];
  for (const u of material.crlsOfIntermediates) {
    let ok = u.checked.get(issuer.fingerprint256);
    if (ok === undefined) {
      try {
        ok = u.digest !== undefined && verifySignature(u.digest, u.tbs, issuer.publicKey, u.signature);
      } catch {
        ok = false;
      }
      u.checked.set(issuer.fingerprint256, ok);
    }
    if (ok) found.push(u.crl);
  }
  return found;
}

const serial = (hex: string): string => hex.toLowerCase().replace(/^(00)+(?=.)/, '').replace(/^0+(?=.)/, '');

/**
 * The material of `anchors` and `crls` (PEM, one CRL per entry or several). A CRL no anchor
 * signed is kept aside for the intermediates a client sends (OpenSSL takes a CRL from its store
 * for any issuer of the chain whose key verifies it); one that no issuer's key verifies covers
 * nothing, and a certificate it should cover finds no CRL (UNABLE_TO_GET_CRL), which fails closed.
 */
export async function trustMaterial(anchors: readonly X509Certificate[], crls: ReadonlyArray<string | Buffer>): Promise<TrustMaterial> {
  const byIssuer = new Map<string, VerifiedCrl[]>();
  const unmatched: UnmatchedCrl[] = [];
  const ders = crls.flatMap((p) => pemBlocks(p.toString(), 'X509 CRL'));
  if (ders.length > 0) {
    const engine = cryptoEngine();
    for (const der of ders) {
      const crl = pkijs.CertificateRevocationList.fromBER(der);
      const entry: VerifiedCrl = Object.freeze({
        thisUpdate: crl.thisUpdate.value.getTime(),
        nextUpdate: crl.nextUpdate ? crl.nextUpdate.value.getTime() : null,
        revoked: new Set((crl.revokedCertificates ?? []).map((r) => serial(Buffer.from(r.userCertificate.valueBlock.valueHexView).toString('hex')))),
      });
      let matched = false;
      for (const ca of anchors) {
        const issuer = pkijs.Certificate.fromBER(ca.raw);
        if (!crl.issuer.isEqual(issuer.subject)) continue;
        const ok = await crl.verify({ issuerCertificate: issuer }, engine).catch(() => false);
        if (!ok) continue;
        const list = byIssuer.get(ca.fingerprint256) ?? [];
        list.push(entry);
        byIssuer.set(ca.fingerprint256, list);
        matched = true;
      }
      if (!matched) {
        unmatched.push({
          tbs: Buffer.from(crl.tbsView), signature: Buffer.from(crl.signatureValue.valueBlock.valueHexView),
          digest: CRL_DIGESTS[crl.signatureAlgorithm.algorithmId], crl: entry, checked: new Map(),
        });
      }
    }
  }
  return Object.freeze({ anchors: Object.freeze([...anchors]), crlCheck: ders.length > 0, crlsByIssuer: byIssuer, ...(unmatched.length > 0 ? { crlsOfIntermediates: unmatched } : {}) });
}

/**
 * The verify error of a chain (DER, leaf first, as src/tls/peer-chain.ts captured it against
 * `material.anchors`) under `material`, given what the connection's own (older) OpenSSL context
 * said: that verdict stands when it is an error; otherwise the chain must still link, by
 * signature, to a self-issued CA of the material, every certificate must be valid at `now`, and
 * with CRLs configured each must have a current CRL from its issuer that does not list it.
 * Answers an OpenSSL verify-error code (src/tls/verdict.ts maps it to certFlags) or null.
 */
export function verifyUnder(material: TrustMaterial, chain: readonly Buffer[], opensslError: string | null, now: number): string | null {
  if (opensslError) return opensslError;
  if (chain.length === 0) return null;
  let certs: X509Certificate[];
  try {
    certs = chain.map((d) => new X509Certificate(d));
  } catch {
    return 'CERT_UNTRUSTED';
  }
  return verifyParsedUnder(material, certs, now);
}

/** verifyUnder for a chain already parsed (leaf first), when the caller verified nothing before: the links, the anchor, validity, CRLs. */
export function verifyParsedUnder(material: TrustMaterial, certs: readonly X509Certificate[], now: number): string | null {
  if (certs.length === 0) return null;
  for (let i = 0; i + 1 < certs.length; i++) {
    if (!issuedBy(certs[i] as X509Certificate, certs[i + 1] as X509Certificate)) return certs.length === 1 ? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' : 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
  }
  const top = certs[certs.length - 1] as X509Certificate;
  const anchored = top.checkIssued(top) && material.anchors.some((a) => a.fingerprint256 === top.fingerprint256);
  if (!anchored) {
    if (!top.checkIssued(top)) return certs.length === 1 ? 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' : 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY';
    return certs.length === 1 ? 'DEPTH_ZERO_SELF_SIGNED_CERT' : 'SELF_SIGNED_CERT_IN_CHAIN';
  }
  for (const c of certs) {
    const v = certValidity(c);
    if (v.from > now) return 'CERT_NOT_YET_VALID';
    if (v.to < now) return 'CERT_HAS_EXPIRED';
  }
  if (!material.crlCheck) return null;
  for (let i = 0; i < certs.length; i++) {
    const c = certs[i] as X509Certificate;
    const issuer = (certs[i + 1] ?? c) as X509Certificate;
    const crls = crlsOf(material, issuer);
    const current = crls.filter((r) => r.thisUpdate <= now);
    if (current.length === 0) return 'UNABLE_TO_GET_CRL';
    // OpenSSL's choice among CRLs of one issuer: the newest.
    const newest = current.reduce((a, b) => (b.thisUpdate > a.thisUpdate ? b : a));
    if (newest.nextUpdate !== null && newest.nextUpdate < now) return 'CRL_HAS_EXPIRED';
    if (newest.revoked.has(serial(c.serialNumber))) return 'CERT_REVOKED';
  }
  return null;
}

/**
 * The earliest nextUpdate (ms) of the CRLs a verdict of `certs` (leaf first, a verified chain)
 * relied on under `material`; Infinity without CRL checks. A cached verdict is not reused after it.
 */
export function crlDeadline(material: TrustMaterial, certs: readonly X509Certificate[], now: number): number {
  if (!material.crlCheck) return Infinity;
  let until = Infinity;
  for (let i = 0; i < certs.length; i++) {
    const current = crlsOf(material, (certs[i + 1] ?? certs[i]) as X509Certificate).filter((r) => r.thisUpdate <= now);
    if (current.length === 0) continue;
    const newest = current.reduce((a, b) => (b.thisUpdate > a.thisUpdate ? b : a));
    if (newest.nextUpdate !== null) until = Math.min(until, newest.nextUpdate);
  }
  return until;
}
