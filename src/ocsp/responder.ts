// The dev OCSP responder: answers RFC 6960 requests over HTTP (GET and POST) on loopback for
// one CA, signing with a delegated responder certificate (id-kp-OCSPSigning) issued by that
// CA. It knows revoked serials, and its validity period (minutes, fractions allowed) is
// configurable so the prefetch schedule can be watched live. Built with pkijs throughout.
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as asn1js from 'asn1js';
import { DEFAULTS } from '../defaults.js';
import { cryptoEngine, pkijs } from '../tls/pkijs-engine.js';
import { issueCertificate, OID, type IssuedCertificate } from '../tls/cert-builder.js';
import { OID_OCSP_NONCE } from './request.js';
import type { CertStatusName } from './validate.js';

const OID_PKIX_OCSP_BASIC = '1.3.6.1.5.5.7.48.1.1';

export interface SingleAnswer {
  certId: pkijs.CertID;
  status: CertStatusName;
  revocationTime?: Date;
  thisUpdate: Date;
  /** Omitted: no nextUpdate in the answer. */
  nextUpdate?: Date;
}

export interface ResponseSpec {
  /** Who signs: the CA itself or a delegated responder (certificate + key). */
  signer: IssuedCertificate;
  /** Certificates put in BasicOCSPResponse.certs. Default: [signer]. */
  certs?: pkijs.Certificate[];
  responses: SingleAnswer[];
  producedAt?: Date;
  /** ResponderID by key hash instead of by name. */
  responderIdByKey?: boolean;
  /** Echoed nonce extension. */
  nonce?: Buffer;
}

function certStatusBlock(a: SingleAnswer): asn1js.AsnType {
  if (a.status === 'revoked') {
    return new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value: [new asn1js.GeneralizedTime({ valueDate: a.revocationTime ?? new Date() })] });
  }
  return new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber: a.status === 'good' ? 0 : 2 } });
}

/** A signed, successful DER OCSPResponse (RFC 6960 4.2.1). */
export async function buildOcspResponse(spec: ResponseSpec): Promise<Buffer> {
  const engine = cryptoEngine();
  const basic = new pkijs.BasicOCSPResponse();
  const signerCert = spec.signer.certificate;
  if (spec.responderIdByKey) {
    const hash = createHash('sha1').update(signerCert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView).digest();
    basic.tbsResponseData.responderID = new asn1js.OctetString({ valueHex: new Uint8Array(hash).buffer });
  } else {
    basic.tbsResponseData.responderID = signerCert.subject;
  }
  basic.tbsResponseData.producedAt = spec.producedAt ?? new Date();
  for (const a of spec.responses) {
    const single = new pkijs.SingleResponse({ certID: a.certId, thisUpdate: a.thisUpdate });
    single.certStatus = certStatusBlock(a);
    if (a.nextUpdate) single.nextUpdate = a.nextUpdate;
    basic.tbsResponseData.responses.push(single);
  }
  if (spec.nonce) {
    basic.tbsResponseData.responseExtensions = [new pkijs.Extension({
      extnID: OID_OCSP_NONCE,
      extnValue: new asn1js.OctetString({ valueHex: new Uint8Array(spec.nonce).buffer }).toBER(false),
    })];
  }
  basic.certs = spec.certs ?? [signerCert];
  await basic.sign(spec.signer.privateKey, spec.signer.hash, engine);
  return wrapBasic(Buffer.from(basic.toSchema().toBER(false)));
}

/** OCSPResponse { successful, id-pkix-ocsp-basic, basic }. */
function wrapBasic(basicDer: Buffer): Buffer {
  const resp = new pkijs.OCSPResponse({
    responseStatus: new asn1js.Enumerated({ value: 0 }),
    responseBytes: new pkijs.ResponseBytes({ responseType: OID_PKIX_OCSP_BASIC, response: new asn1js.OctetString({ valueHex: new Uint8Array(basicDer).buffer }) }),
  });
  return Buffer.from(resp.toSchema().toBER(false));
}

/** An unsuccessful OCSPResponse with no body: 1 malformedRequest, 2 internalError, 3 tryLater, 5 sigRequired, 6 unauthorized. */
export function errorOcspResponse(status: 1 | 2 | 3 | 5 | 6): Buffer {
  return Buffer.from(new pkijs.OCSPResponse({ responseStatus: new asn1js.Enumerated({ value: status }) }).toSchema().toBER(false));
}

/** A delegated OCSP responder certificate (EKU id-kp-OCSPSigning) issued by `issuer`. */
export function issueResponderCertificate(issuer: IssuedCertificate, options: { commonName?: string; notBefore?: Date; notAfter?: Date; ocspSigning?: boolean } = {}): Promise<IssuedCertificate> {
  return issueCertificate({
    subject: { commonName: options.commonName ?? 'certbound dev OCSP responder', organization: 'certbound dev' },
    issuer,
    keyUsage: ['digitalSignature'],
    extKeyUsage: options.ocspSigning === false ? [OID.serverAuth] : [OID.ocspSigning],
    ...(options.notBefore ? { notBefore: options.notBefore } : {}),
    notAfter: options.notAfter ?? new Date(Date.now() + 90 * 24 * 60 * 60 * 1000),
  });
}

export interface DevOcspResponderOptions {
  /** The CA whose certificates are answered for. */
  issuer: IssuedCertificate;
  /** The delegated signer (see issueResponderCertificate); default: the CA signs itself. */
  responder?: IssuedCertificate;
  /** Default: 0 (any free port). */
  port?: number;
  /** Default: '127.0.0.1'. */
  host?: string;
  /** nextUpdate − thisUpdate, in minutes (fractions allowed). Default: 60. */
  validityMinutes?: number;
  /** Revoked serial numbers (hex, case and leading zeros ignored). */
  revoked?: Iterable<string>;
  /** When given, only these serials are 'good'; others are 'unknown'. Default: every non-revoked serial is good. */
  good?: Iterable<string>;
  /** Clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
}

export interface DevOcspResponder {
  /** http://host:port/ — what goes into the AIA. */
  readonly url: string;
  readonly port: number;
  /** Requests answered so far. */
  readonly requests: number;
  /** Marks a serial revoked from now on. */
  revoke(serialHex: string): void;
  close(): Promise<void>;
}

const normSerial = (s: string) => s.toLowerCase().replace(/[^0-9a-f]/g, '').replace(/^0+(?=.)/, '');

/** Starts the dev OCSP responder; resolves once it listens. */
export async function startDevOcspResponder(options: DevOcspResponderOptions): Promise<DevOcspResponder> {
  cryptoEngine();
  const issuer = options.issuer;
  const signer = options.responder ?? issuer;
  const revoked = new Map<string, Date>();
  for (const s of options.revoked ?? []) revoked.set(normSerial(s), new Date((options.now ?? Date.now)()));
  const good = options.good ? new Set([...options.good].map(normSerial)) : undefined;
  const validityMs = (options.validityMinutes ?? DEFAULTS.devOcspValidityMinutes) * 60_000;
  const now = options.now ?? Date.now;
  let requests = 0;

  const answer = async (reqDer: Buffer): Promise<Buffer> => {
    let req: pkijs.OCSPRequest;
    try {
      req = pkijs.OCSPRequest.fromBER(reqDer);
    } catch {
      return errorOcspResponse(1);
    }
    const t = now();
    const answers: SingleAnswer[] = [];
    for (const r of req.tbsRequest.requestList) {
      const id = r.reqCert;
      let hashAlgorithm: string;
      try {
        hashAlgorithm = cryptoEngine().getAlgorithmByOID<{ name: string }>(id.hashAlgorithm.algorithmId, true, 'CertID.hashAlgorithm').name;
      } catch {
        continue;
      }
      // Ours when the issuer hashes match; the serial alone decides the status.
      const probe = new pkijs.CertID();
      await probe.createForCertificate(new pkijs.Certificate({ serialNumber: id.serialNumber, issuer: issuer.certificate.subject }), { hashAlgorithm, issuerCertificate: issuer.certificate }, cryptoEngine());
      if (!probe.isEqual(id)) continue;
      const serial = normSerial(Buffer.from(id.serialNumber.valueBlock.valueHexView).toString('hex'));
      const revokedAt = revoked.get(serial);
      const status: CertStatusName = revokedAt ? 'revoked' : (good && !good.has(serial) ? 'unknown' : 'good');
      answers.push({ certId: id, status, ...(revokedAt ? { revocationTime: revokedAt } : {}), thisUpdate: new Date(t), nextUpdate: new Date(t + validityMs) });
    }
    // RFC 5019 2.2.3: a request for a CA we do not serve gets "unauthorized".
    if (answers.length === 0) return errorOcspResponse(6);
    const nonceExt = req.tbsRequest.requestExtensions?.find((e) => e.extnID === OID_OCSP_NONCE);
    let nonce: Buffer | undefined;
    if (nonceExt) {
      const inner = asn1js.fromBER(nonceExt.extnValue.valueBlock.valueHexView).result;
      nonce = inner instanceof asn1js.OctetString ? Buffer.from(inner.valueBlock.valueHexView) : undefined;
    }
    return buildOcspResponse({
      signer,
      certs: signer === issuer ? [] : [signer.certificate],
      responses: answers,
      producedAt: new Date(t),
      ...(nonce ? { nonce } : {}),
    });
  };

  const server = http.createServer((req, res) => {
    const reply = (body: Buffer) => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/ocsp-response', 'content-length': body.length, 'cache-control': 'no-store' });
      res.end(body);
    };
    const fail = () => { if (!res.headersSent) reply(errorOcspResponse(2)); };
    if (req.method === 'GET') {
      let der: Buffer;
      try {
        der = Buffer.from(decodeURIComponent((req.url ?? '/').replace(/^\/+/, '')), 'base64');
      } catch {
        reply(errorOcspResponse(1));
        return;
      }
      answer(der).then(reply, fail);
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405, { allow: 'GET, POST' }).end();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 65536) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => { answer(Buffer.concat(chunks)).then(reply, fail); });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  const host = options.host ?? DEFAULTS.devOcspHost;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => { server.off('error', reject); resolve(); });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}/`,
    port,
    get requests() { return requests; },
    revoke(serialHex: string) { revoked.set(normSerial(serialHex), new Date(now())); },
    close: () => new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    }),
  };
}

/** A signed DER CRL (RFC 5280 5.1) from `issuer`, for the dev PKI and tests. */
export async function buildCrl(spec: { issuer: IssuedCertificate; revoked?: Array<{ serialHex: string; date?: Date }>; thisUpdate?: Date; nextUpdate?: Date }): Promise<Buffer> {
  const engine = cryptoEngine();
  const now = Date.now();
  const crl = new pkijs.CertificateRevocationList();
  crl.version = 1;
  crl.issuer = spec.issuer.certificate.subject;
  crl.thisUpdate = new pkijs.Time({ type: 0, value: spec.thisUpdate ?? new Date(now - 60_000) });
  crl.nextUpdate = new pkijs.Time({ type: 0, value: spec.nextUpdate ?? new Date(now + 24 * 60 * 60 * 1000) });
  const revoked = spec.revoked ?? [];
  if (revoked.length > 0) {
    crl.revokedCertificates = revoked.map((r) => new pkijs.RevokedCertificate({
      userCertificate: new asn1js.Integer({ valueHex: new Uint8Array(Buffer.from(normSerial(r.serialHex).padStart(2, '0').replace(/^(.(..)*)$/, '0$1'), 'hex')).buffer }),
      revocationDate: new pkijs.Time({ type: 0, value: r.date ?? new Date(now - 60_000) }),
    }));
  }
  await crl.sign(spec.issuer.privateKey, spec.issuer.hash, engine);
  return Buffer.from(crl.toSchema(true).toBER(false));
}
