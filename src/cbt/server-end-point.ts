// tls-server-end-point (RFC 5929 section 4): a hash of the server certificate's DER, with the
// hash of the certificate's own signature algorithm, SHA-256 where that is MD5 or SHA-1, and
// undefined where the algorithm has no single hash. Node 20 does not expose the signature
// algorithm, so it is read with pkijs; the hash rule is a pure function over OIDs.
import { createHash } from 'node:crypto';
import { pkijs } from '../tls/pkijs-engine.js';
import { available, unavailable, type BindingResult, type UnavailableReason } from './binding.js';

/** Hash names as node:crypto spells them. */
export type EndPointHashName = 'sha224' | 'sha256' | 'sha384' | 'sha512' | 'sha512-224' | 'sha512-256' | 'sha3-224' | 'sha3-256' | 'sha3-384' | 'sha3-512';

/** Object identifiers read here (RFC 3279, RFC 4055, RFC 5758, RFC 8410, NIST CSOR). */
export const OID = Object.freeze({
  md5WithRSAEncryption: '1.2.840.113549.1.1.4',
  sha1WithRSAEncryption: '1.2.840.113549.1.1.5',
  rsassaPss: '1.2.840.113549.1.1.10',
  mgf1: '1.2.840.113549.1.1.8',
  sha224WithRSAEncryption: '1.2.840.113549.1.1.14',
  sha256WithRSAEncryption: '1.2.840.113549.1.1.11',
  sha384WithRSAEncryption: '1.2.840.113549.1.1.12',
  sha512WithRSAEncryption: '1.2.840.113549.1.1.13',
  sha512_224WithRSAEncryption: '1.2.840.113549.1.1.15',
  sha512_256WithRSAEncryption: '1.2.840.113549.1.1.16',
  ecdsaWithSHA1: '1.2.840.10045.4.1',
  ecdsaWithSHA224: '1.2.840.10045.4.3.1',
  ecdsaWithSHA256: '1.2.840.10045.4.3.2',
  ecdsaWithSHA384: '1.2.840.10045.4.3.3',
  ecdsaWithSHA512: '1.2.840.10045.4.3.4',
  dsaWithSHA1: '1.2.840.10040.4.3',
  dsaWithSHA224: '2.16.840.1.101.3.4.3.1',
  dsaWithSHA256: '2.16.840.1.101.3.4.3.2',
  ecdsaWithSHA3_224: '2.16.840.1.101.3.4.3.9',
  ecdsaWithSHA3_256: '2.16.840.1.101.3.4.3.10',
  ecdsaWithSHA3_384: '2.16.840.1.101.3.4.3.11',
  ecdsaWithSHA3_512: '2.16.840.1.101.3.4.3.12',
  rsaWithSHA3_224: '2.16.840.1.101.3.4.3.13',
  rsaWithSHA3_256: '2.16.840.1.101.3.4.3.14',
  rsaWithSHA3_384: '2.16.840.1.101.3.4.3.15',
  rsaWithSHA3_512: '2.16.840.1.101.3.4.3.16',
  ed25519: '1.3.101.112',
  ed448: '1.3.101.113',
  md5: '1.2.840.113549.2.5',
  sha1: '1.3.14.3.2.26',
  sha224: '2.16.840.1.101.3.4.2.4',
  sha256: '2.16.840.1.101.3.4.2.1',
  sha384: '2.16.840.1.101.3.4.2.2',
  sha512: '2.16.840.1.101.3.4.2.3',
  sha512_224: '2.16.840.1.101.3.4.2.5',
  sha512_256: '2.16.840.1.101.3.4.2.6',
  sha3_224: '2.16.840.1.101.3.4.2.7',
  sha3_256: '2.16.840.1.101.3.4.2.8',
  sha3_384: '2.16.840.1.101.3.4.2.9',
  sha3_512: '2.16.840.1.101.3.4.2.10',
} as const);

// 'md5' and 'sha1' stand for the weak hashes that RFC 5929 replaces with SHA-256.
type SignatureHash = EndPointHashName | 'md5' | 'sha1';

const SIGNATURE_HASH: ReadonlyMap<string, SignatureHash> = new Map<string, SignatureHash>([
  [OID.md5WithRSAEncryption, 'md5'],
  [OID.sha1WithRSAEncryption, 'sha1'],
  [OID.ecdsaWithSHA1, 'sha1'],
  [OID.dsaWithSHA1, 'sha1'],
  [OID.sha224WithRSAEncryption, 'sha224'],
  [OID.ecdsaWithSHA224, 'sha224'],
  [OID.dsaWithSHA224, 'sha224'],
  [OID.sha256WithRSAEncryption, 'sha256'],
  [OID.ecdsaWithSHA256, 'sha256'],
  [OID.dsaWithSHA256, 'sha256'],
  [OID.sha384WithRSAEncryption, 'sha384'],
  [OID.ecdsaWithSHA384, 'sha384'],
  [OID.sha512WithRSAEncryption, 'sha512'],
  [OID.ecdsaWithSHA512, 'sha512'],
  [OID.sha512_224WithRSAEncryption, 'sha512-224'],
  [OID.sha512_256WithRSAEncryption, 'sha512-256'],
  [OID.ecdsaWithSHA3_224, 'sha3-224'],
  [OID.rsaWithSHA3_224, 'sha3-224'],
  [OID.ecdsaWithSHA3_256, 'sha3-256'],
  [OID.rsaWithSHA3_256, 'sha3-256'],
  [OID.ecdsaWithSHA3_384, 'sha3-384'],
  [OID.rsaWithSHA3_384, 'sha3-384'],
  [OID.ecdsaWithSHA3_512, 'sha3-512'],
  [OID.rsaWithSHA3_512, 'sha3-512'],
]);

const DIGEST: ReadonlyMap<string, SignatureHash> = new Map<string, SignatureHash>([
  [OID.md5, 'md5'],
  [OID.sha1, 'sha1'],
  [OID.sha224, 'sha224'],
  [OID.sha256, 'sha256'],
  [OID.sha384, 'sha384'],
  [OID.sha512, 'sha512'],
  [OID.sha512_224, 'sha512-224'],
  [OID.sha512_256, 'sha512-256'],
  [OID.sha3_224, 'sha3-224'],
  [OID.sha3_256, 'sha3-256'],
  [OID.sha3_384, 'sha3-384'],
  [OID.sha3_512, 'sha3-512'],
]);

/** The hash parameters of an RSASSA-PSS signature (RFC 4055 section 3.1); absent members take the RFC defaults (SHA-1). */
export interface PssHashParams {
  /** RSASSA-PSS-params.hashAlgorithm OID; default SHA-1. */
  readonly hashOid?: string;
  /** The MGF1 hash OID of RSASSA-PSS-params.maskGenAlgorithm; default SHA-1. */
  readonly mgf1HashOid?: string;
  /** RSASSA-PSS-params.maskGenAlgorithm OID; default MGF1. */
  readonly maskGenOid?: string;
}

export type EndPointHashChoice =
  | { readonly hash: EndPointHashName; readonly reason?: undefined; readonly message?: undefined }
  | { readonly hash: undefined; readonly reason: Extract<UnavailableReason, 'no-single-hash' | 'unknown-signature-algorithm'>; readonly message: string };

// RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256.
function strengthen(hash: SignatureHash): EndPointHashName {
  return hash === 'md5' || hash === 'sha1' ? 'sha256' : hash;
}

/**
 * The hash tls-server-end-point uses for a certificate signed with `sigAlgOid` (RFC 5929
 * section 4.1): the signature's single hash, SHA-256 in place of MD5 or SHA-1. RSASSA-PSS
 * takes its hash from `pssParams`; a PSS signature whose MGF1 hash differs from its message
 * hash uses two hashes and has no binding. Ed25519 and Ed448 have no single hash (their
 * hashing is internal to the scheme), so they have no binding either.
 */
export function endPointHash(sigAlgOid: string, pssParams?: PssHashParams): EndPointHashChoice {
  if (sigAlgOid === OID.ed25519 || sigAlgOid === OID.ed448) {
    const name = sigAlgOid === OID.ed25519 ? 'Ed25519' : 'Ed448';
    return { hash: undefined, reason: 'no-single-hash', message: `${name} signatures have no single hash function, so tls-server-end-point is undefined (RFC 5929 section 4.1)` };
  }
  if (sigAlgOid === OID.rsassaPss) {
    const hashOid = pssParams?.hashOid ?? OID.sha1;
    const maskGenOid = pssParams?.maskGenOid ?? OID.mgf1;
    const mgf1HashOid = pssParams?.mgf1HashOid ?? OID.sha1;
    const hash = DIGEST.get(hashOid);
    if (!hash) return { hash: undefined, reason: 'unknown-signature-algorithm', message: `RSASSA-PSS with an unknown hash algorithm ${hashOid}` };
    if (maskGenOid !== OID.mgf1) return { hash: undefined, reason: 'unknown-signature-algorithm', message: `RSASSA-PSS with an unknown mask generation function ${maskGenOid}` };
    if (mgf1HashOid !== hashOid) {
      return { hash: undefined, reason: 'no-single-hash', message: `RSASSA-PSS with hash ${hashOid} but MGF1 hash ${mgf1HashOid} uses two hash functions (RFC 5929 section 4.1)` };
    }
    return { hash: strengthen(hash) };
  }
  const hash = SIGNATURE_HASH.get(sigAlgOid);
  if (!hash) return { hash: undefined, reason: 'unknown-signature-algorithm', message: `No hash is known for signature algorithm ${sigAlgOid}` };
  return { hash: strengthen(hash) };
}

/** The signature algorithm of a certificate DER and, for RSASSA-PSS, its hash parameters (read with pkijs). */
export function certificateSignatureAlgorithm(der: Uint8Array): { oid: string; pss?: PssHashParams } {
  const cert = pkijs.Certificate.fromBER(der);
  const oid = cert.signatureAlgorithm.algorithmId;
  if (oid !== OID.rsassaPss) return { oid };
  const schema = cert.signatureAlgorithm.algorithmParams;
  const params = schema ? new pkijs.RSASSAPSSParams({ schema }) : new pkijs.RSASSAPSSParams();
  const maskGen = params.maskGenAlgorithm;
  const mgf1Hash = maskGen.algorithmParams ? new pkijs.AlgorithmIdentifier({ schema: maskGen.algorithmParams }).algorithmId : undefined;
  return { oid, pss: { hashOid: params.hashAlgorithm.algorithmId, maskGenOid: maskGen.algorithmId, mgf1HashOid: mgf1Hash } };
}

/** tls-server-end-point of a certificate DER: the hash of the DER chosen by endPointHash. */
export function serverEndPoint(der: Uint8Array): BindingResult {
  let algorithm: { oid: string; pss?: PssHashParams };
  try {
    algorithm = certificateSignatureAlgorithm(der);
  } catch (err) {
    return unavailable('malformed-certificate', `The server certificate could not be parsed: ${(err as Error).message}`);
  }
  const choice = endPointHash(algorithm.oid, algorithm.pss);
  if (choice.hash === undefined) return unavailable(choice.reason, choice.message);
  return available(createHash(choice.hash).update(der).digest());
}

// Per-certificate cache: the value depends only on the certificate, and a server has few.
// Keyed by the SHA-256 fingerprint Node computes natively; bounded so that a client side
// talking to many servers cannot grow it without limit.
const CACHE_LIMIT = 256;
const cache = new Map<string, BindingResult>();

/** serverEndPoint(der), cached by `key` (e.g. X509Certificate.fingerprint256). */
export function cachedServerEndPoint(key: string, der: Uint8Array): BindingResult {
  const hit = cache.get(key);
  if (hit) return hit;
  const result = serverEndPoint(der);
  if (cache.size >= CACHE_LIMIT) {
    const oldest = cache.keys().next().value;
    if (oldest !== undefined) cache.delete(oldest);
  }
  cache.set(key, result);
  return result;
}
