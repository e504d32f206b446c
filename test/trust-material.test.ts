// verifyUnder (src/tls/trust-material.ts): the check a handshake on a connection accepted
// before a reload must also pass, against the CAs and CRLs in force. A table over real
// certificates and CRLs made with pkijs; the expected codes are OpenSSL's for the same defect
// (what a new connection would get), and the clock is passed in.
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { issueCertificate, issueCrl, OID, type IssuedCertificate } from '../src/tls/cert-builder.js';
import { trustMaterial, verifyUnder, type TrustMaterial } from '../src/tls/trust-material.js';

const DAY = 86_400_000;
const NOW = Date.now();
let root: IssuedCertificate;
let ca: IssuedCertificate;
let leaf: IssuedCertificate;
let other: IssuedCertificate;
let crls: { root: string; ca: string; caRevoking: string; caExpired: string; caFuture: string; caForged: string };

before(async () => {
  root = await issueCertificate({ subject: { commonName: 'root' }, ca: true });
  ca = await issueCertificate({ subject: { commonName: 'client CA' }, issuer: root, ca: true, pathLength: 0 });
  leaf = await issueCertificate({ subject: { commonName: 'client' }, issuer: ca, extKeyUsage: [OID.clientAuth], notBefore: new Date(NOW - DAY), notAfter: new Date(NOW + 30 * DAY) });
  other = await issueCertificate({ subject: { commonName: 'client CA' }, ca: true }); // same name as `ca`, another key
  crls = {
    root: await issueCrl({ issuer: root }),
    ca: await issueCrl({ issuer: ca }),
    caRevoking: await issueCrl({ issuer: ca, revoked: [leaf], thisUpdate: new Date(NOW - 1000) }),
    caExpired: await issueCrl({ issuer: ca, thisUpdate: new Date(NOW - 10 * DAY), nextUpdate: new Date(NOW - DAY) }),
    caFuture: await issueCrl({ issuer: ca, thisUpdate: new Date(NOW + DAY), nextUpdate: new Date(NOW + 7 * DAY) }),
    caForged: await issueCrl({ issuer: other, revoked: [] }),
  };
});

const x = (c: IssuedCertificate) => new X509Certificate(c.der);
const chain = () => [leaf.der, ca.der, root.der];
const material = (anchors: IssuedCertificate[], crlPems: string[] = []): Promise<TrustMaterial> => trustMaterial(anchors.map(x), crlPems);

test('verifyUnder: the old context\'s error stands; otherwise the chain must reach a CA in force, be valid now and pass the CRLs in force', async () => {
  const rows: [string, TrustMaterial, readonly Buffer[], string | null, number, string | null][] = [
    ['good chain, no CRLs', await material([root, ca]), chain(), null, NOW, null],
    ['the old context refused: its error stands', await material([root, ca]), chain(), 'CERT_HAS_EXPIRED', NOW, 'CERT_HAS_EXPIRED'],
    ['the root was removed', await material([ca]), chain(), null, NOW, 'SELF_SIGNED_CERT_IN_CHAIN'],
    ['no CA in force issued it (the capture stopped at the leaf)', await material([root, ca]), [leaf.der], null, NOW, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE'],
    ['the chain ends at an intermediate', await material([root, ca]), [leaf.der, ca.der], null, NOW, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'],
    ['a link that does not verify', await material([root, ca, other]), [leaf.der, other.der], null, NOW, 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'],
    ['expired by now', await material([root, ca]), chain(), null, NOW + 60 * DAY, 'CERT_HAS_EXPIRED'],
    ['not yet valid', await material([root, ca]), chain(), null, NOW - 2 * DAY, 'CERT_NOT_YET_VALID'],
    ['CRLs for every issuer, none lists it', await material([root, ca], [crls.root, crls.ca]), chain(), null, NOW, null],
    ['the newest CRL of its issuer lists it', await material([root, ca], [crls.root, crls.ca, crls.caRevoking]), chain(), null, NOW, 'CERT_REVOKED'],
    ['CRLs configured, none from the root (for the client CA)', await material([root, ca], [crls.ca]), chain(), null, NOW, 'UNABLE_TO_GET_CRL'],
    ['the only CRL of its issuer has expired', await material([root, ca], [crls.root, crls.caExpired]), chain(), null, NOW, 'CRL_HAS_EXPIRED'],
    ['the only CRL of its issuer is not valid yet', await material([root, ca], [crls.root, crls.caFuture]), chain(), null, NOW, 'UNABLE_TO_GET_CRL'],
    ['a CRL with the issuer\'s name but another key is not used', await material([root, ca], [crls.root, crls.caForged]), chain(), null, NOW, 'UNABLE_TO_GET_CRL'],
    ['no certificate', await material([root, ca]), [], null, NOW, null],
  ];
  for (const [what, m, c, openssl, now, expected] of rows) assert.equal(verifyUnder(m, c, openssl, now), expected, what);
});
