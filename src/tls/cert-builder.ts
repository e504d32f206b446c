// Builds X.509 certificates with pkijs (no hand-written DER): the dev PKI, test fixtures and
// OCSP responder certificates all come from `issueCertificate`.
import { createHash, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import * as asn1js from 'asn1js';
import { cryptoEngine, pkijs } from './pkijs-engine.js';
import { pemBlocks, toPem } from './pem.js';
import { CertboundError } from '../errors.js';

type CryptoKey = webcrypto.CryptoKey;

export type KeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa-2048';
export type HashName = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

export const OID = Object.freeze({
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  country: '2.5.4.6',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  /** Microsoft user principal name, an otherName of the subjectAltName (a UTF8String). */
  userPrincipalName: '1.3.6.1.4.1.311.20.2.3',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  authorityInfoAccess: '1.3.6.1.5.5.7.1.1',
  crlDistributionPoints: '2.5.29.31',
  ocspMethod: '1.3.6.1.5.5.7.48.1',
  caIssuersMethod: '1.3.6.1.5.5.7.48.2',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ocspSigning: '1.3.6.1.5.5.7.3.9',
  ocspNoCheck: '1.3.6.1.5.5.7.48.1.5',
});

/** Key usage bits (RFC 5280 4.2.1.3), bit 0 first. */
export type KeyUsageName = 'digitalSignature' | 'nonRepudiation' | 'keyEncipherment' | 'dataEncipherment' | 'keyAgreement' | 'keyCertSign' | 'cRLSign';
const KEY_USAGE_BITS: Record<KeyUsageName, number> = {
  digitalSignature: 0, nonRepudiation: 1, keyEncipherment: 2, dataEncipherment: 3, keyAgreement: 4, keyCertSign: 5, cRLSign: 6,
};

export interface NameSpec {
  commonName: string;
  organization?: string;
  organizationalUnit?: string;
}

/** A certificate with its private key, in the forms callers need. */
export interface IssuedCertificate {
  readonly der: Buffer;
  readonly pem: string;
  readonly keyPem: string;
  readonly privateKey: CryptoKey;
  readonly certificate: pkijs.Certificate;
  readonly hash: HashName;
}

/** One subjectAltName entry to write (see CertificateSpec.altNames). */
export type AltNameSpec = string | { uri: string } | { email: string } | { upn: string };

export interface CertificateSpec {
  subject: NameSpec;
  /** The issuing CA; omitted for a self-signed certificate. */
  issuer?: IssuedCertificate;
  keyAlgorithm?: KeyAlgorithm;
  /** Signature hash. Default: SHA-256. */
  hash?: HashName;
  notBefore?: Date;
  notAfter?: Date;
  ca?: boolean;
  pathLength?: number;
  keyUsage?: KeyUsageName[];
  extKeyUsage?: string[];
  /**
   * subjectAltName entries: a string is a DNS name or an IP address (IPv4, IPv6); the objects
   * make a URI, an rfc822Name (email) or a Microsoft UPN (otherName). Written in this order.
   */
  altNames?: AltNameSpec[];
  ocspUrl?: string;
  caIssuersUrl?: string;
  crlUrl?: string;
  serial?: Buffer;
  /**
   * The authorityKeyIdentifier written. Default: the issuer's subjectKeyIdentifier; null
   * omits the extension (as old CAs did). Another value makes a certificate whose key id
   * lies, as a forger would write it.
   */
  authorityKeyId?: Buffer | null;
}

function algorithmParams(alg: KeyAlgorithm, hash: HashName): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams {
  switch (alg) {
    case 'ecdsa-p256': return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ecdsa-p384': return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'rsa-2048': return { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash };
  }
}

function rdn(name: NameSpec): pkijs.RelativeDistinguishedNames {
  // One attribute per RDN (a SET each), as CAs write names; pkijs alone would make one
  // multi-valued RDN, so the sequence is built with asn1js and parsed back.
  const sets: asn1js.Set[] = [];
  const add = (type: string, value: string | undefined) => {
    if (value !== undefined) sets.push(new asn1js.Set({ value: [new pkijs.AttributeTypeAndValue({ type, value: new asn1js.Utf8String({ value }) }).toSchema()] }));
  };
  add(OID.organization, name.organization);
  add(OID.organizationalUnit, name.organizationalUnit);
  add(OID.commonName, name.commonName);
  return pkijs.RelativeDistinguishedNames.fromBER(new asn1js.Sequence({ value: sets }).toBER(false));
}

function keyUsageBits(names: KeyUsageName[]): asn1js.BitString {
  let value = 0;
  let highest = 0;
  for (const n of names) {
    const bit = KEY_USAGE_BITS[n];
    value |= 1 << (15 - bit);
    highest = Math.max(highest, bit);
  }
  const bytes = highest >= 8 ? 2 : 1;
  const arr = new Uint8Array(bytes);
  arr[0] = (value >> 8) & 0xff;
  if (bytes === 2) arr[1] = value & 0xff;
  const unusedBits = bytes * 8 - 1 - highest;
  return new asn1js.BitString({ valueHex: arr.buffer, unusedBits });
}

function ext(extnID: string, critical: boolean, value: { toSchema(): asn1js.AsnType } | asn1js.AsnType): pkijs.Extension {
  const schema = 'toSchema' in value && typeof value.toSchema === 'function' ? value.toSchema() : (value as asn1js.AsnType);
  return new pkijs.Extension({ extnID, critical, extnValue: schema.toBER(false) });
}

function ipBytes(ip: string): ArrayBuffer {
  if (isIP(ip) === 4) return new Uint8Array(ip.split('.').map(Number)).buffer;
  // IPv6: an embedded IPv4 tail (::ffff:10.0.0.1) becomes two groups, then '::' is expanded.
  const tail4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const text = tail4
    ? ip.slice(0, tail4.index) + [[tail4[1], tail4[2]], [tail4[3], tail4[4]]].map(([a, b]) => ((Number(a) << 8) | Number(b)).toString(16)).join(':')
    : ip;
  const [head = '', tail = ''] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = text.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = new Uint8Array(16);
  groups.forEach((g: string, i: number) => { const v = parseInt(g, 16); out[i * 2] = v >> 8; out[i * 2 + 1] = v & 0xff; });
  return out.buffer;
}

/**
 * One GeneralName as the schema GeneralNames holds. The UPN is an otherName
 * ([0] { type-id, [0] EXPLICIT UTF8String }) built as an asn1js schema: pkijs's GeneralName
 * writes a type-0 value wrapped once more than it reads it, so it cannot write one.
 */
function generalName(spec: AltNameSpec): asn1js.AsnType {
  const schema = (name: pkijs.GeneralName): asn1js.AsnType => {
    const s = name.toSchema();
    if (s instanceof asn1js.Choice) throw new TypeError(`GeneralName type ${name.type} has no value`);
    return s;
  };
  if (typeof spec === 'string') {
    return isIP(spec)
      ? schema(new pkijs.GeneralName({ type: 7, value: new asn1js.OctetString({ valueHex: ipBytes(spec) }) }))
      : schema(new pkijs.GeneralName({ type: 2, value: spec }));
  }
  if ('uri' in spec) return schema(new pkijs.GeneralName({ type: 6, value: spec.uri }));
  if ('email' in spec) return schema(new pkijs.GeneralName({ type: 1, value: spec.email }));
  return new asn1js.Constructed({
    idBlock: { tagClass: 3, tagNumber: 0 },
    value: [
      new asn1js.ObjectIdentifier({ value: OID.userPrincipalName }),
      new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 0 }, value: [new asn1js.Utf8String({ value: spec.upn })] }),
    ],
  });
}

/** Issues a certificate (and a fresh key pair) signed by `spec.issuer`, or self-signed. */
export async function issueCertificate(spec: CertificateSpec): Promise<IssuedCertificate> {
  const engine = cryptoEngine();
  const hash = spec.hash ?? 'SHA-256';
  const keyAlgorithm = spec.keyAlgorithm ?? 'ecdsa-p256';
  const keys = (await webcrypto.subtle.generateKey(algorithmParams(keyAlgorithm, hash), true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;

  const cert = new pkijs.Certificate();
  cert.version = 2;
  const serial = Buffer.from(spec.serial ?? randomBytes(16));
  serial[0] = (serial[0] ?? 0) & 0x7f || 0x01; // positive, no leading zero byte
  cert.serialNumber = new asn1js.Integer({ valueHex: new Uint8Array(serial).buffer });
  cert.subject = rdn(spec.subject);
  cert.issuer = spec.issuer ? spec.issuer.certificate.subject : rdn(spec.subject);
  const now = Date.now();
  cert.notBefore.value = spec.notBefore ?? new Date(now - 60 * 60 * 1000);
  cert.notAfter.value = spec.notAfter ?? new Date(now + 365 * 24 * 60 * 60 * 1000);
  await cert.subjectPublicKeyInfo.importKey(keys.publicKey, engine);

  const spki = new Uint8Array(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView);
  const ski = createHash('sha1').update(spki).digest();
  const extensions: pkijs.Extension[] = [];
  extensions.push(ext(OID.basicConstraints, true, new pkijs.BasicConstraints(spec.ca ? { cA: true, ...(spec.pathLength !== undefined ? { pathLenConstraint: spec.pathLength } : {}) } : {})));
  const usage = spec.keyUsage ?? (spec.ca ? ['keyCertSign', 'cRLSign', 'digitalSignature'] : ['digitalSignature', ...(keyAlgorithm === 'rsa-2048' ? ['keyEncipherment' as const] : [])]);
  extensions.push(ext(OID.keyUsage, true, keyUsageBits(usage)));
  if (spec.extKeyUsage && spec.extKeyUsage.length > 0) {
    extensions.push(ext(OID.extKeyUsage, false, new pkijs.ExtKeyUsage({ keyPurposes: spec.extKeyUsage })));
  }
  if (spec.altNames && spec.altNames.length > 0) {
    extensions.push(ext(OID.subjectAltName, false, new asn1js.Sequence({ value: spec.altNames.map(generalName) })));
  }
  extensions.push(ext(OID.subjectKeyIdentifier, false, new asn1js.OctetString({ valueHex: new Uint8Array(ski).buffer })));
  const issuerSki = spec.authorityKeyId !== undefined ? spec.authorityKeyId : spec.issuer ? subjectKeyId(spec.issuer.certificate) : ski;
  if (issuerSki) extensions.push(ext(OID.authorityKeyIdentifier, false, new pkijs.AuthorityKeyIdentifier({ keyIdentifier: new asn1js.OctetString({ valueHex: new Uint8Array(issuerSki).buffer }) })));
  const access: pkijs.AccessDescription[] = [];
  if (spec.ocspUrl) access.push(new pkijs.AccessDescription({ accessMethod: OID.ocspMethod, accessLocation: new pkijs.GeneralName({ type: 6, value: spec.ocspUrl }) }));
  if (spec.caIssuersUrl) access.push(new pkijs.AccessDescription({ accessMethod: OID.caIssuersMethod, accessLocation: new pkijs.GeneralName({ type: 6, value: spec.caIssuersUrl }) }));
  if (access.length > 0) extensions.push(ext(OID.authorityInfoAccess, false, new pkijs.InfoAccess({ accessDescriptions: access })));
  if (spec.crlUrl) {
    const dp = new pkijs.DistributionPoint({ distributionPoint: [new pkijs.GeneralName({ type: 6, value: spec.crlUrl })] });
    extensions.push(ext(OID.crlDistributionPoints, false, new pkijs.CRLDistributionPoints({ distributionPoints: [dp] })));
  }
  cert.extensions = extensions;

  const signer = spec.issuer ? spec.issuer.privateKey : keys.privateKey;
  await cert.sign(signer, hash, engine);
  const der = Buffer.from(cert.toSchema(true).toBER(false));
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  return Object.freeze({
    der,
    pem: toPem(der, 'CERTIFICATE'),
    keyPem: toPem(pkcs8, 'PRIVATE KEY'),
    privateKey: keys.privateKey,
    certificate: cert,
    hash,
  });
}

/** The subjectKeyIdentifier of `cert` (or the SHA-1 of its key when it has none). */
export function subjectKeyId(cert: pkijs.Certificate): Buffer {
  const skiExt = cert.extensions?.find((e) => e.extnID === OID.subjectKeyIdentifier);
  if (skiExt) {
    const parsed = asn1js.fromBER(skiExt.extnValue.valueBlock.valueHexView);
    if (parsed.result instanceof asn1js.OctetString) return Buffer.from(parsed.result.valueBlock.valueHexView);
  }
  return createHash('sha1').update(new Uint8Array(cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView)).digest();
}

/** Loads a certificate and its key (PEM) so that it can issue others (e.g. a CA from disk). */
export async function loadIssuer(certPem: string, keyPem: string, hash: HashName = 'SHA-256'): Promise<IssuedCertificate> {
  cryptoEngine();
  const der = pemBlocks(certPem, 'CERTIFICATE')[0];
  if (!der) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['certPem', 'no certificate in PEM']);
  const certificate = pkijs.Certificate.fromBER(der);
  const keyObject = createPrivateKey(keyPem);
  const pkcs8 = keyObject.export({ type: 'pkcs8', format: 'der' });
  let algorithm: webcrypto.EcKeyImportParams | webcrypto.RsaHashedImportParams;
  if (keyObject.asymmetricKeyType === 'ec') {
    const curve = keyObject.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'P-384' : 'P-256';
    algorithm = { name: 'ECDSA', namedCurve: curve };
  } else {
    algorithm = { name: 'RSASSA-PKCS1-v1_5', hash };
  }
  const privateKey = await webcrypto.subtle.importKey('pkcs8', new Uint8Array(pkcs8), algorithm, true, ['sign']);
  return Object.freeze({ der: Buffer.from(der), pem: toPem(der, 'CERTIFICATE'), keyPem: keyObject.export({ type: 'pkcs8', format: 'pem' }).toString(), privateKey, certificate, hash });
}

export interface CrlSpec {
  issuer: IssuedCertificate;
  /** Certificates to list as revoked. */
  revoked?: IssuedCertificate[];
  thisUpdate?: Date;
  nextUpdate?: Date;
}

/** Issues a CRL (PEM) signed by `spec.issuer`, made with pkijs. */
export async function issueCrl(spec: CrlSpec): Promise<string> {
  const engine = cryptoEngine();
  const crl = new pkijs.CertificateRevocationList();
  crl.version = 1;
  crl.issuer = spec.issuer.certificate.subject;
  crl.thisUpdate = new pkijs.Time({ type: 0, value: spec.thisUpdate ?? new Date(Date.now() - 60_000) });
  crl.nextUpdate = new pkijs.Time({ type: 0, value: spec.nextUpdate ?? new Date(Date.now() + 7 * 24 * 3600_000) });
  const revoked = spec.revoked ?? [];
  if (revoked.length > 0) {
    crl.revokedCertificates = revoked.map((c) => new pkijs.RevokedCertificate({
      userCertificate: c.certificate.serialNumber,
      revocationDate: new pkijs.Time({ type: 0, value: new Date(Date.now() - 60_000) }),
    }));
  }
  await crl.sign(spec.issuer.privateKey, spec.issuer.hash, engine);
  return toPem(crl.toSchema(true).toBER(false), 'X509 CRL');
}
