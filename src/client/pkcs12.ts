// PKCS#12 (.p12/.pfx) store entries, read with pkijs: PFX → AuthenticatedSafe → SafeContents →
// bags. The MAC is checked, encrypted SafeContents and shrouded key bags are decrypted with
// pkijs's engine, which implements PBES2 (PBKDF2 + AES-CBC, what `openssl pkcs12 -export`
// writes by default since OpenSSL 3). The legacy PKCS#12 PBE schemes (RC2-40, 3DES; what
// `-legacy` and older Windows exports write) are not in pkijs: such files get a clear status.
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import { cryptoEngine, pkijs } from '../tls/pkijs-engine.js';

/** Why a PKCS#12 file could not be read; each maps to an HRESULT in store.ts. */
export type Pkcs12Failure = 'malformed' | 'bad-password' | 'unsupported-algorithm';

export type Pkcs12Result =
  | { ok: true; certificates: Buffer[]; privateKeys: Buffer[] }
  | { ok: false; failure: Pkcs12Failure; message: string };

const BAG = Object.freeze({
  keyBag: '1.2.840.113549.1.12.10.1.1',
  shroudedKeyBag: '1.2.840.113549.1.12.10.1.2',
  certBag: '1.2.840.113549.1.12.10.1.3',
  x509Certificate: '1.2.840.113549.1.9.22.1',
  pbes2: '1.2.840.113549.1.5.13',
});

/** The certificates (DER) and PKCS#8 private keys (DER) of a PKCS#12 file. Never throws. */
export async function readPkcs12(der: Uint8Array, password: string): Promise<Pkcs12Result> {
  const engine = cryptoEngine();
  const pw = new TextEncoder().encode(password);
  const pwBuffer = pw.buffer.slice(pw.byteOffset, pw.byteOffset + pw.byteLength) as ArrayBuffer;
  let pfx: pkijs.PFX;
  try {
    const asn = asn1js.fromBER(der);
    if (asn.offset === -1) return { ok: false, failure: 'malformed', message: 'not DER' };
    pfx = new pkijs.PFX({ schema: asn.result });
  } catch (err) {
    return { ok: false, failure: 'malformed', message: (err as Error).message };
  }
  try {
    await pfx.parseInternalValues({ password: pwBuffer, checkIntegrity: true }, engine);
  } catch (err) {
    const message = (err as Error).message;
    // pkijs reports a wrong MAC password as broken integrity.
    return { ok: false, failure: /integrity/i.test(message) ? 'bad-password' : 'malformed', message };
  }
  const safe = pfx.parsedValue?.authenticatedSafe;
  if (!safe) return { ok: false, failure: 'malformed', message: 'no AuthenticatedSafe' };
  const unsupported = encryptionAlgorithms(safe).find((oid) => oid !== BAG.pbes2);
  if (unsupported) return { ok: false, failure: 'unsupported-algorithm', message: `encryption algorithm ${unsupported} (legacy PKCS#12 PBE) is not supported; re-export with PBES2 (openssl pkcs12 -export without -legacy)` };
  try {
    await safe.parseInternalValues({ safeContents: safe.safeContents.map(() => ({ password: pwBuffer })) }, engine);
  } catch (err) {
    return { ok: false, failure: 'bad-password', message: (err as Error).message };
  }
  const certificates: Buffer[] = [];
  const privateKeys: Buffer[] = [];
  for (const content of safe.parsedValue?.safeContents ?? []) {
    for (const bag of content.value.safeBags) {
      try {
        if (bag.bagId === BAG.certBag) {
          const certBag = bag.bagValue as pkijs.CertBag;
          if (certBag.certId !== BAG.x509Certificate) continue;
          const parsed = certBag.parsedValue as pkijs.Certificate | undefined;
          certificates.push(Buffer.from(parsed ? parsed.toSchema().toBER(false) : (certBag.certValue as asn1js.OctetString).getValue()));
        } else if (bag.bagId === BAG.shroudedKeyBag) {
          const keyBag = bag.bagValue as pkijs.PKCS8ShroudedKeyBag;
          const alg = keyBag.encryptionAlgorithm.algorithmId;
          if (alg !== BAG.pbes2) return { ok: false, failure: 'unsupported-algorithm', message: `key encryption algorithm ${alg} (legacy PKCS#12 PBE) is not supported; re-export with PBES2` };
          // Protected in pkijs's typings, public in its code: the documented way to decrypt the bag.
          await (keyBag as unknown as { parseInternalValues(p: { password: ArrayBuffer }, c: unknown): Promise<void> }).parseInternalValues({ password: pwBuffer }, engine);
          if (keyBag.parsedValue) privateKeys.push(Buffer.from(keyBag.parsedValue.toSchema().toBER(false)));
        } else if (bag.bagId === BAG.keyBag) {
          privateKeys.push(Buffer.from((bag.bagValue as pkijs.PrivateKeyInfo).toSchema().toBER(false)));
        }
      } catch (err) {
        return { ok: false, failure: 'bad-password', message: (err as Error).message };
      }
    }
  }
  return { ok: true, certificates, privateKeys };
}

function encryptionAlgorithms(safe: pkijs.AuthenticatedSafe): string[] {
  const out: string[] = [];
  for (const info of safe.safeContents) {
    if (info.contentType !== pkijs.ContentInfo.ENCRYPTED_DATA) continue;
    // A copy: pkijs marks the schema it parses, and parseInternalValues must parse it again.
    const data = new pkijs.EncryptedData({ schema: asn1js.fromBER(info.content.toBER(false)).result });
    out.push(data.encryptedContentInfo.contentEncryptionAlgorithm.algorithmId);
  }
  return out;
}

/** What writePkcs12 puts in the file. */
export interface Pkcs12Contents {
  /** DER certificates, the one of the key first, then its chain. */
  readonly certificates: readonly Uint8Array[];
  /** The private key of the first certificate, PKCS#8 DER. */
  readonly privateKey: Uint8Array;
  readonly password: string;
  /** The name importers show (friendlyName). */
  readonly friendlyName: string;
  /** PBKDF2 iterations for the key and the certificates, and the MAC's. Default: 2048 (OpenSSL's PKCS12_DEFAULT_ITER). */
  readonly iterations?: number;
}

const ATTRIBUTE = Object.freeze({ friendlyName: '1.2.840.113549.1.9.20', localKeyId: '1.2.840.113549.1.9.21' });

/**
 * A PKCS#12 file (DER) as `openssl pkcs12 -export` writes it by default since OpenSSL 3: the key
 * in a shrouded key bag, the certificates in an encrypted SafeContents, both PBES2 (PBKDF2 with
 * HMAC-SHA-256, AES-256-CBC), and an HMAC-SHA-256 MAC over the whole. The key and its
 * certificate carry the same localKeyId, so importers pair them. Built with pkijs.
 */
export async function writePkcs12(contents: Pkcs12Contents): Promise<Buffer> {
  const engine = cryptoEngine();
  const pw = new TextEncoder().encode(contents.password);
  const password = pw.buffer.slice(pw.byteOffset, pw.byteOffset + pw.byteLength) as ArrayBuffer;
  const iterations = contents.iterations ?? 2048;
  const [leaf] = contents.certificates;
  if (!leaf) throw new TypeError('writePkcs12 needs the certificate of the key');
  const localKeyId = new Uint8Array(createHash('sha1').update(leaf).digest());
  const attributes = (withName: boolean) => [
    new pkijs.Attribute({ type: ATTRIBUTE.localKeyId, values: [new asn1js.OctetString({ valueHex: localKeyId })] }),
    ...(withName ? [new pkijs.Attribute({ type: ATTRIBUTE.friendlyName, values: [new asn1js.BmpString({ value: contents.friendlyName })] })] : []),
  ];
  const parse = <T>(der: Uint8Array, make: (schema: unknown) => T): T => make(asn1js.fromBER(der).result);
  const keyBag = new pkijs.PKCS8ShroudedKeyBag({ parsedValue: parse(contents.privateKey, (schema) => new pkijs.PrivateKeyInfo({ schema })) });
  const pbes2 = { password, contentEncryptionAlgorithm: { name: 'AES-CBC', length: 256 } as pkijs.ContentEncryptionAlgorithm, hmacHashAlgorithm: 'SHA-256', iterationCount: iterations };
  await keyBag.makeInternalValues(pbes2, engine);
  const certBags = contents.certificates.map((der, i) => new pkijs.SafeBag({
    bagId: BAG.certBag,
    bagValue: new pkijs.CertBag({ parsedValue: parse(der, (schema) => new pkijs.Certificate({ schema })) }),
    ...(i === 0 ? { bagAttributes: attributes(true) } : {}),
  }));
  const pfx = new pkijs.PFX({
    parsedValue: {
      integrityMode: 0,
      authenticatedSafe: new pkijs.AuthenticatedSafe({
        parsedValue: {
          safeContents: [
            { privacyMode: 0, value: new pkijs.SafeContents({ safeBags: [new pkijs.SafeBag({ bagId: BAG.shroudedKeyBag, bagValue: keyBag, bagAttributes: attributes(true) })] }) },
            { privacyMode: 1, value: new pkijs.SafeContents({ safeBags: certBags }) },
          ],
        },
      }),
    },
  });
  await pfx.parsedValue?.authenticatedSafe?.makeInternalValues({ safeContents: [{}, pbes2] }, engine);
  await pfx.makeInternalValues({ password, iterations, pbkdf2HashAlgorithm: 'SHA-256', hmacHashAlgorithm: 'SHA-256' }, engine);
  return Buffer.from(pfx.toSchema().toBER(false));
}
