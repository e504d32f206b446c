// OCSP requests (RFC 6960 4.1) built with pkijs: the CertID of a certificate (SHA-1, as
// responders expect, RFC 5019 2.1.1), an optional nonce, and the certificate's OCSP URL.
import { randomBytes } from 'node:crypto';
import * as asn1js from 'asn1js';
import { cryptoEngine, pkijs } from '../tls/pkijs-engine.js';
import { CertboundError } from '../errors.js';

/** id-pkix-ocsp-nonce (RFC 6960 4.4.1). */
export const OID_OCSP_NONCE = '1.3.6.1.5.5.7.48.1.2';
const OID_AIA = '1.3.6.1.5.5.7.1.1';
const OID_AD_OCSP = '1.3.6.1.5.5.7.48.1';

export interface BuiltOcspRequest {
  /** The DER OCSPRequest. */
  readonly der: Buffer;
  /** The CertID asked about (compared with the response's). */
  readonly certId: pkijs.CertID;
  /** The nonce sent, when one was. */
  readonly nonce?: Buffer;
}

/** Parses a DER certificate with pkijs; throws CB_ERR_INVALID_ARGUMENT when it is not one. */
export function parseCertificate(der: Uint8Array): pkijs.Certificate {
  cryptoEngine();
  try {
    return pkijs.Certificate.fromBER(der);
  } catch (err) {
    throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['der', `not a DER X.509 certificate: ${(err as Error).message}`], { cause: err });
  }
}

/** The CertID (SHA-1 hashes of the issuer's name and key, the serial) of `cert`. */
export async function certIdFor(cert: pkijs.Certificate, issuer: pkijs.Certificate): Promise<pkijs.CertID> {
  const certId = new pkijs.CertID();
  await certId.createForCertificate(cert, { hashAlgorithm: 'SHA-1', issuerCertificate: issuer }, cryptoEngine());
  return certId;
}

/**
 * An OCSPRequest for one certificate. `nonce: true` adds a 16-byte nonce: right for a
 * one-off revocation check, pointless for a staple that every client shares (and it makes
 * the response uncacheable for RFC 5019 responders), so the stapler leaves it out.
 */
export async function buildOcspRequest(cert: pkijs.Certificate, issuer: pkijs.Certificate, options: { nonce?: boolean } = {}): Promise<BuiltOcspRequest> {
  const certId = await certIdFor(cert, issuer);
  const req = new pkijs.OCSPRequest();
  req.tbsRequest.requestList = [new pkijs.Request({ reqCert: certId })];
  let nonce: Buffer | undefined;
  if (options.nonce) {
    nonce = randomBytes(16);
    req.tbsRequest.requestExtensions = [new pkijs.Extension({
      extnID: OID_OCSP_NONCE,
      extnValue: new asn1js.OctetString({ valueHex: new Uint8Array(nonce).buffer }).toBER(false),
    })];
  }
  const der = Buffer.from(req.toSchema(true).toBER(false));
  return nonce ? { der, certId, nonce } : { der, certId };
}

/** The first http(s) OCSP URL of the certificate's Authority Information Access, if any. */
export function ocspUrlOf(cert: pkijs.Certificate): string | undefined {
  const ext = cert.extensions?.find((e) => e.extnID === OID_AIA);
  if (!ext) return undefined;
  const aia = ext.parsedValue instanceof pkijs.InfoAccess ? ext.parsedValue : new pkijs.InfoAccess({ schema: asn1js.fromBER(ext.extnValue.valueBlock.valueHexView).result });
  for (const d of aia.accessDescriptions) {
    if (d.accessMethod === OID_AD_OCSP && d.accessLocation.type === 6 && typeof d.accessLocation.value === 'string' && /^https?:\/\//i.test(d.accessLocation.value)) {
      return d.accessLocation.value;
    }
  }
  return undefined;
}

/** Hex serial number of a certificate, lowercase, no leading zero bytes. */
export function serialHex(cert: pkijs.Certificate): string {
  return Buffer.from(cert.serialNumber.valueBlock.valueHexView).toString('hex').replace(/^(00)+(?=.)/, '');
}

/** The subject's commonName (for logs), or the whole subject's first value. */
export function subjectName(cert: pkijs.Certificate): string {
  const cn = cert.subject.typesAndValues.find((t) => t.type === '2.5.4.3') ?? cert.subject.typesAndValues[0];
  const v = cn?.value.valueBlock as { value?: unknown } | undefined;
  return typeof v?.value === 'string' ? v.value : '';
}
