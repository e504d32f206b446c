// Checks an OCSP response before anything trusts it (RFC 6960 3.2, 4.2.2.2): successful
// status, a BasicOCSPResponse signed by the issuer or by a delegated responder that the
// issuer certified for id-kp-OCSPSigning and that is valid now, exactly one SingleResponse
// for our CertID, and sane times. Each refusal is a stable reason code; pkijs's numeric statuses are
// mapped to 'good' | 'revoked' | 'unknown' here and nowhere else.
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import { cryptoEngine, pkijs } from '../tls/pkijs-engine.js';
import { OID_OCSP_NONCE } from './request.js';
import type { FetchFailure } from './fetch.js';
import type { StorageRefusal } from './storage.js';
import { DEFAULTS } from '../defaults.js';

const OID_PKIX_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';
const OID_EXT_KEY_USAGE = '2.5.29.37';
const OID_KP_OCSP_SIGNING = '1.3.6.1.5.5.7.3.9';

/** Why a response (or a retrieval) was refused. Stable: logs, metrics and docs use them. */
export type OcspRefusal =
  | FetchFailure
  /** (persisted staples) the stored file itself was refused before parsing. */
  | StorageRefusal
  /** Not a DER OCSPResponse (garbage, truncated, or followed by trailing bytes). */
  | 'malformed'
  /** responseStatus malformedRequest (1) … unauthorized (6): the responder gave no answer. */
  | 'status-malformed-request' | 'status-internal-error' | 'status-try-later' | 'status-sig-required' | 'status-unauthorized' | 'status-other'
  /** responseBytes missing or not id-pkix-ocsp-basic. */
  | 'not-basic'
  /** No certificate matches the ResponderID (neither the issuer nor one in `certs`). */
  | 'signer-not-found'
  /** The signature does not verify with the signer's key. */
  | 'bad-signature'
  /** The signing certificate is not the issuer and was not issued by it. */
  | 'responder-not-authorized'
  /** A delegated responder certificate without id-kp-OCSPSigning. */
  | 'responder-no-ocsp-signing'
  /** A delegated responder certificate outside its validity period. */
  | 'responder-expired'
  /** No SingleResponse for our CertID (another serial or another issuer). */
  | 'certid-mismatch'
  /** More than one SingleResponse for our CertID (whatever their statuses): never trusted. */
  | 'ambiguous'
  /** thisUpdate later than now plus the allowed clock skew. */
  | 'this-update-in-future'
  /** No nextUpdate: the response says nothing about how long it holds. */
  | 'no-next-update'
  /** nextUpdate is not after now. */
  | 'expired'
  /** (stapling) valid, but for less than SrvOcspRespMinValiditySeconds from now: never handed out. */
  | 'shorter-than-min-validity'
  /** The response carries a nonce other than the one sent. */
  | 'nonce-mismatch'
  /** The certificate is revoked: never stapled. */
  | 'cert-revoked'
  /** The responder does not know the certificate: never stapled. */
  | 'cert-unknown'
  /** The certificate has no OCSP URL (quiet, normal). */
  | 'no-ocsp-url'
  /** (stapling) a good response no newer than one that said revoked or unknown: a replay or a stale cache, never stapled. */
  | 'older-response';

export type CertStatusName = 'good' | 'revoked' | 'unknown';

export interface VerifiedOcspResponse {
  /** The DER OCSPResponse exactly as received (what gets stapled). */
  readonly der: Buffer;
  readonly certStatus: CertStatusName;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly producedAt: Date;
  /** Set when certStatus is 'revoked'. */
  readonly revocationTime?: Date;
  /** Who signed: the issuing CA itself or a delegated responder. */
  readonly signer: 'issuer' | 'delegated';
}

export type ValidationResult =
  | { readonly ok: true; readonly response: VerifiedOcspResponse }
  | { readonly ok: false; readonly reason: OcspRefusal; readonly detail: string };

export interface VerifyOptions {
  /** The certificate asked about and its issuer. */
  cert: pkijs.Certificate;
  issuer: pkijs.Certificate;
  /** Current time (ms since the epoch). */
  now: number;
  /** Allowed clock skew for thisUpdate in the future (ms). Default: 300000 (5 min). */
  skewMs?: number;
  /** The nonce sent, if any: a response that echoes a different one is refused. */
  nonce?: Buffer;
}

/** Default clock skew allowed for thisUpdate (ms): DEFAULTS.clockSkewMs. */
export const DEFAULT_SKEW_MS: number = DEFAULTS.clockSkewMs;

const RESPONSE_STATUS: Record<number, OcspRefusal> = {
  1: 'status-malformed-request', 2: 'status-internal-error', 3: 'status-try-later', 5: 'status-sig-required', 6: 'status-unauthorized',
};

const refuse = (reason: OcspRefusal, detail: string): ValidationResult => ({ ok: false, reason, detail });

function sameDer(a: pkijs.Certificate, b: pkijs.Certificate): boolean {
  return Buffer.from(a.toSchema(true).toBER(false)).equals(Buffer.from(b.toSchema(true).toBER(false)));
}

function matchesResponderId(cert: pkijs.Certificate, responderID: unknown): boolean {
  if (responderID instanceof pkijs.RelativeDistinguishedNames) return cert.subject.isEqual(responderID);
  if (responderID instanceof asn1js.OctetString) {
    const hash = createHash('sha1').update(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
    return hash.equals(Buffer.from(responderID.valueBlock.valueHexView));
  }
  return false;
}

function hasOcspSigning(cert: pkijs.Certificate): boolean {
  const ext = cert.extensions?.find((e) => e.extnID === OID_EXT_KEY_USAGE);
  if (!ext) return false;
  const eku = ext.parsedValue instanceof pkijs.ExtKeyUsage ? ext.parsedValue : new pkijs.ExtKeyUsage({ schema: asn1js.fromBER(ext.extnValue.valueBlock.valueHexView).result });
  return eku.keyPurposes.includes(OID_KP_OCSP_SIGNING);
}

function statusOf(single: pkijs.SingleResponse): { status: CertStatusName; revocationTime?: Date } {
  const s = single.certStatus as asn1js.BaseBlock & { valueBlock: { value?: asn1js.AsnType[] } };
  switch (s.idBlock.tagNumber) {
    case 0: return { status: 'good' };
    case 1: {
      const t = s.valueBlock.value?.[0];
      return t instanceof asn1js.GeneralizedTime ? { status: 'revoked', revocationTime: t.toDate() } : { status: 'revoked' };
    }
    default: return { status: 'unknown' };
  }
}

/** Signature and authorization of the signer (RFC 6960 4.2.2.2). */
async function checkSigner(basic: pkijs.BasicOCSPResponse, issuer: pkijs.Certificate, now: number): Promise<ValidationResult | 'issuer' | 'delegated'> {
  const engine = cryptoEngine();
  const responderID: unknown = basic.tbsResponseData.responderID;
  const candidates = [issuer, ...(basic.certs ?? [])];
  let matched = false;
  let failure: ValidationResult | undefined;
  for (const c of candidates) {
    if (!matchesResponderId(c, responderID)) continue;
    matched = true;
    let sigOk = false;
    try {
      sigOk = await engine.verifyWithPublicKey(basic.tbsResponseData.tbsView, basic.signature, c.subjectPublicKeyInfo, basic.signatureAlgorithm);
    } catch {
      sigOk = false;
    }
    if (!sigOk) {
      failure ??= refuse('bad-signature', 'the response signature does not verify with the responder key');
      continue;
    }
    if (c === issuer || sameDer(c, issuer)) return 'issuer';
    let issuedByIssuer = false;
    try {
      issuedByIssuer = c.issuer.isEqual(issuer.subject) && await c.verify(issuer);
    } catch {
      issuedByIssuer = false;
    }
    if (!issuedByIssuer) { failure = refuse('responder-not-authorized', 'the responder certificate was not issued by the certificate\'s issuer'); continue; }
    if (!hasOcspSigning(c)) { failure = refuse('responder-no-ocsp-signing', 'the responder certificate lacks id-kp-OCSPSigning'); continue; }
    if (c.notBefore.value.getTime() > now || c.notAfter.value.getTime() < now) { failure = refuse('responder-expired', `the responder certificate is valid ${c.notBefore.value.toISOString()} to ${c.notAfter.value.toISOString()}`); continue; }
    return 'delegated';
  }
  if (!matched) return refuse('signer-not-found', 'no certificate matches the ResponderID');
  return failure ?? refuse('bad-signature', 'no signer verified');
}

/**
 * The one structure that fills `bytes` exactly. pkijs's fromBER ignores what follows the
 * first structure, so a good response with bytes appended would pass, and be stapled as is.
 */
function parseWhole(bytes: Uint8Array, what: string): { schema: asn1js.AsnType } | { error: string } {
  const asn = asn1js.fromBER(bytes);
  if (asn.offset === -1) return { error: `not a DER ${what}: ${asn.result.error || 'cannot be decoded'}` };
  if (asn.offset !== bytes.length) return { error: `not a DER ${what}: ${bytes.length - asn.offset} bytes after it` };
  return { schema: asn.result };
}

function nonceOf(basic: pkijs.BasicOCSPResponse): Buffer | undefined {
  const ext = basic.tbsResponseData.responseExtensions?.find((e) => e.extnID === OID_OCSP_NONCE);
  if (!ext) return undefined;
  const inner = asn1js.fromBER(ext.extnValue.valueBlock.valueHexView).result;
  return inner instanceof asn1js.OctetString ? Buffer.from(inner.valueBlock.valueHexView) : Buffer.from(ext.extnValue.valueBlock.valueHexView);
}

/**
 * Parses and checks a DER OCSPResponse for `cert`. Resolves with the verified content
 * (whatever the certificate status: a revoked answer is genuine evidence) or with the
 * reason it cannot be trusted. Never rejects.
 */
export async function verifyOcspResponse(der: Buffer, options: VerifyOptions): Promise<ValidationResult> {
  cryptoEngine();
  let response: pkijs.OCSPResponse;
  const outer = parseWhole(der, 'OCSPResponse');
  if ('error' in outer) return refuse('malformed', outer.error);
  try {
    response = new pkijs.OCSPResponse({ schema: outer.schema });
  } catch (err) {
    return refuse('malformed', `not a DER OCSPResponse: ${(err as Error).message}`);
  }
  const status = response.responseStatus.valueBlock.valueDec;
  if (status !== 0) return refuse(RESPONSE_STATUS[status] ?? 'status-other', `responseStatus ${status}`);
  if (!response.responseBytes || response.responseBytes.responseType !== OID_PKIX_OCSP_BASIC) return refuse('not-basic', 'no id-pkix-ocsp-basic responseBytes');
  let basic: pkijs.BasicOCSPResponse;
  const inner = parseWhole(response.responseBytes.response.valueBlock.valueHexView, 'BasicOCSPResponse');
  if ('error' in inner) return refuse('malformed', inner.error);
  try {
    basic = new pkijs.BasicOCSPResponse({ schema: inner.schema });
  } catch (err) {
    return refuse('malformed', `not a BasicOCSPResponse: ${(err as Error).message}`);
  }
  const signer = await checkSigner(basic, options.issuer, options.now);
  if (typeof signer !== 'string') return signer;

  // Compare CertIDs computed with the hash the responder used (SHA-1 normally, SHA-256 allowed).
  // Every SingleResponse is looked at: a response that answers for our certificate more than
  // once (good then revoked, good then unknown, or the same status twice, or once per hash
  // algorithm) cannot be told from a spliced one, and the first answer is not the true one.
  const ours: pkijs.SingleResponse[] = [];
  for (const r of basic.tbsResponseData.responses) {
    try {
      const hashAlgorithm = cryptoEngine().getAlgorithmByOID<{ name: string }>(r.certID.hashAlgorithm.algorithmId, true, 'CertID.hashAlgorithm').name;
      const mine = new pkijs.CertID();
      await mine.createForCertificate(options.cert, { hashAlgorithm, issuerCertificate: options.issuer }, cryptoEngine());
      if (r.certID.isEqual(mine)) ours.push(r);
    } catch {
      // An unknown hash algorithm in one SingleResponse: it cannot be ours.
    }
  }
  const single = ours[0];
  if (!single) return refuse('certid-mismatch', 'no SingleResponse for this certificate\'s CertID');
  if (ours.length > 1) return refuse('ambiguous', `${ours.length} SingleResponses for this certificate's CertID (${ours.map((r) => statusOf(r).status).join(', ')})`);

  if (options.nonce) {
    const got = nonceOf(basic);
    if (got && !got.equals(options.nonce)) return refuse('nonce-mismatch', 'the response nonce differs from the one sent');
  }
  const skew = options.skewMs ?? DEFAULT_SKEW_MS;
  if (single.thisUpdate.getTime() > options.now + skew) return refuse('this-update-in-future', `thisUpdate ${single.thisUpdate.toISOString()} is in the future`);
  if (!single.nextUpdate) return refuse('no-next-update', 'the response has no nextUpdate');
  if (single.nextUpdate.getTime() <= options.now) return refuse('expired', `nextUpdate ${single.nextUpdate.toISOString()} has passed`);
  const { status: certStatus, revocationTime } = statusOf(single);
  return {
    ok: true,
    response: Object.freeze({
      // Its own memory: a Buffer from a socket may be a slice of a shared 8 KiB pool slab.
      der: Buffer.from(der.buffer.slice(der.byteOffset, der.byteOffset + der.length)),
      certStatus,
      thisUpdate: single.thisUpdate,
      nextUpdate: single.nextUpdate,
      producedAt: basic.tbsResponseData.producedAt,
      ...(revocationTime ? { revocationTime } : {}),
      signer,
    }),
  };
}

/** Why a verified response must not be stapled ('cert-revoked' / 'cert-unknown'), if it must not. */
export function stapleRefusal(response: VerifiedOcspResponse): OcspRefusal | undefined {
  if (response.certStatus === 'revoked') return 'cert-revoked';
  if (response.certStatus === 'unknown') return 'cert-unknown';
  return undefined;
}
