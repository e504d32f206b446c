// The server's own certificates, one path for every caller (createServer, `serve`, a reload):
// files → material (PEM, PKCS#12, passphrases) → checked certificates → secure-context options.
// One certificate per SecureContext: Node hands 'OCSPRequest' the certificate of the context
// (not the one OpenSSL picks later among several in one context), so an RSA + ECDSA pair for a
// name is two contexts, and the SNI callback picks one from what the client offers. Each
// handshake then staples, and tls-server-end-point hashes, exactly the certificate it serves.
import { X509Certificate, type KeyObject } from 'node:crypto';
import { createSecureContext, type SecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import type { Socket } from 'node:net';
import { CertboundError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { readFailure, readRegularFile } from '../read-file.js';
import { parseCertificates, parsePrivateKey, toPem } from './pem.js';
import { hostMatches } from './host-policy.js';

type Pem = string | Buffer;

/** One server certificate of createServer's `certificates` option (PEM cert + key, or a PKCS#12 bundle). */
export interface ServerCertificateOptions {
  /** Certificate PEM, leaf first, then its chain. With `key`; not with `pfx`. */
  cert?: Pem;
  /** Private key PEM of `cert` (may be encrypted: give `passphrase`). */
  key?: Pem;
  /** PKCS#12 bundle (DER) with the key, the certificate and its chain; not with `cert`/`key`. */
  pfx?: Buffer;
  /** Passphrase of an encrypted `key`, or of `pfx`. */
  passphrase?: string;
  /** SNI names this certificate answers (`*.domain` allowed). Default: the DNS names of its subjectAltName. */
  names?: string[];
}

/** The same, as files (`serve`: --cert/--key/--pfx/--key-passphrase-file, or the config file's `certificates` list). */
export interface ServerCertificateFiles {
  cert?: string;
  key?: string;
  pfx?: string;
  /** A file whose first line is the passphrase of `key` or `pfx`. */
  passphraseFile?: string;
  names?: string[];
}

/** A checked server certificate. */
export interface ServerCertificate {
  readonly leaf: X509Certificate;
  /** Leaf first, then the chain (with the issuer when the bundle has it): what the stapler needs. */
  readonly chainPem: string;
  /** 'rsa', 'rsa-pss', 'ec', 'ed25519', … (KeyObject.asymmetricKeyType). */
  readonly keyType: string;
  /** EC curve ('prime256v1', 'secp384r1', …) of an 'ec' key. */
  readonly curve: string | undefined;
  /** SNI names it answers (lowercase). */
  readonly names: readonly string[];
  /** cert/key/passphrase or pfx/passphrase: the certificate part of a SecureContext. */
  readonly contextOptions: SecureContextOptions;
  /** Where it came from, for messages ('cert and key options', a file name). */
  readonly where: string;
}

/** Reads a passphrase file: its first line (a regular file within bounds). Throws CB_ERR_PASSPHRASE_FILE. */
export function readPassphraseFile(path: string, options: { ownerOnly?: boolean } = {}): string {
  let text: string;
  try {
    text = readRegularFile(path, DEFAULTS.maxStateFileBytes, options).toString('utf8');
  } catch (err) {
    throw new CertboundError('CB_ERR_PASSPHRASE_FILE', [path, readFailure(err)]);
  }
  const line = text.split(/\r?\n/)[0] ?? '';
  if (line === '') throw new CertboundError('CB_ERR_PASSPHRASE_FILE', [path, 'its first line is empty']);
  return line;
}

function readFileOf(path: string, what: string, maxBytes = DEFAULTS.maxPemFileBytes): Buffer {
  try {
    return readRegularFile(path, maxBytes);
  } catch (err) {
    throw new CertboundError('CB_ERR_PEM_MISSING', [what, path, readFailure(err)]);
  }
}

/** files → material. Each problem is a CB_ERR_* naming the file. */
export function readServerCertificateFiles(files: readonly ServerCertificateFiles[]): { options: ServerCertificateOptions; where: string }[] {
  return files.map((f) => {
    const passphrase = f.passphraseFile !== undefined ? readPassphraseFile(f.passphraseFile) : undefined;
    const names = f.names !== undefined ? { names: f.names } : {};
    if (f.pfx !== undefined) {
      if (f.cert !== undefined || f.key !== undefined) throw new CertboundError('CB_ERR_INVALID_OPTION', ['pfx', 'goes alone, without cert and key']);
      return { options: { pfx: readFileOf(f.pfx, 'PKCS#12'), ...(passphrase !== undefined ? { passphrase } : {}), ...names }, where: f.pfx };
    }
    if (f.cert === undefined || f.key === undefined) throw new CertboundError('CB_ERR_INVALID_OPTION', [f.cert === undefined ? 'cert' : 'key', 'a certificate needs cert and key (or pfx)']);
    return {
      options: { cert: readFileOf(f.cert, 'certificate').toString('utf8'), key: readFileOf(f.key, 'key').toString('utf8'), ...(passphrase !== undefined ? { passphrase } : {}), ...names },
      where: `${f.cert}, ${f.key}`,
    };
  });
}

function nodeReason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return `${(e?.message ?? String(err)).replace(/\s*\n\s*/g, ' ')}${e?.code ? ` (${e.code})` : ''}`;
}

function dnsNames(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '').split(', ').filter((n) => n.startsWith('DNS:')).map((n) => n.slice(4).toLowerCase());
}

/**
 * material → checked certificates: each parses, its key matches it, Node can serve it (a PKCS#12
 * bundle opens with its passphrase). Throws CB_ERR_PEM_INVALID (a key the passphrase does not
 * decrypt), CB_ERR_KEY_MISMATCH, CB_ERR_TLS_CONTEXT, CB_ERR_PFX_INVALID.
 */
export function checkServerCertificate(c: ServerCertificateOptions, where: string): ServerCertificate {
  let leaf: X509Certificate;
  let chainPem: string;
  let key: KeyObject | undefined;
  let contextOptions: SecureContextOptions;
  const passphrase = c.passphrase !== undefined ? { passphrase: c.passphrase } : {};
  if (c.pfx !== undefined) {
    if (c.cert !== undefined || c.key !== undefined) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'pfx goes alone, without cert and key']);
    let ctx: SecureContext;
    try {
      ctx = createSecureContext({ pfx: c.pfx, ...passphrase });
    } catch (err) {
      const why = /mac verify failure/i.test((err as Error)?.message ?? '') ? 'the passphrase does not open it (mac verify failure)' : nodeReason(err);
      throw new CertboundError('CB_ERR_PFX_INVALID', [where, why], { cause: err });
    }
    // The native context knows the bundle's certificate and the issuer among its chain.
    const native = ctx.context as { getCertificate?: () => Buffer | null; getIssuer?: () => Buffer | null };
    const der = native.getCertificate?.();
    if (!der) throw new CertboundError('CB_ERR_PFX_INVALID', [where, 'it holds no certificate with its key']);
    leaf = new X509Certificate(der);
    const issuer = native.getIssuer?.();
    chainPem = toPem(der, 'CERTIFICATE') + (issuer ? toPem(issuer, 'CERTIFICATE') : '');
    contextOptions = { pfx: c.pfx, ...passphrase };
  } else {
    if (c.cert === undefined || c.key === undefined) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'a certificate needs cert and key (or pfx)']);
    leaf = parseCertificates(c.cert.toString(), 'certificate', where)[0] as X509Certificate;
    key = parsePrivateKey(c.key, where, c.passphrase);
    if (!leaf.checkPrivateKey(key)) throw new CertboundError('CB_ERR_KEY_MISMATCH', [where, where]);
    chainPem = c.cert.toString();
    contextOptions = { cert: c.cert, key: c.key, ...passphrase };
    try {
      createSecureContext(contextOptions);
    } catch (err) {
      throw new CertboundError('CB_ERR_TLS_CONTEXT', [`the certificate and key (${where})`, nodeReason(err)], { cause: err });
    }
  }
  const pub = key ?? leaf.publicKey;
  const keyType = pub.asymmetricKeyType ?? 'unknown';
  return Object.freeze({
    leaf, chainPem, keyType, curve: keyType === 'ec' ? pub.asymmetricKeyDetails?.namedCurve : undefined,
    names: Object.freeze((c.names ?? dnsNames(leaf)).map((n) => n.toLowerCase())), contextOptions, where,
  });
}

// TLS 1.2 cipher suites by what authenticates them (IANA values): the server's certificate
// type OpenSSL needs for each. TLS 1.3 suites do not depend on it.
const ECDSA_SUITES = new Set([0xc02b, 0xc02c, 0xcca9, 0xc023, 0xc024, 0xc009, 0xc00a, 0xc0ac, 0xc0ad, 0xc0ae, 0xc0af]);
const RSA_SUITES = new Set([0xc02f, 0xc030, 0xcca8, 0xc027, 0xc028, 0xc013, 0xc014, 0x009e, 0x009f, 0xccaa, 0x0067, 0x006b, 0x0033, 0x0039,
  0xc09e, 0xc09f, 0xc0a2, 0xc0a3, 0x009c, 0x009d, 0x003c, 0x003d, 0x002f, 0x0035, 0xc09c, 0xc09d, 0xc0a0, 0xc0a1]);
const CURVE_HASH: Record<string, string> = { prime256v1: 'SHA256', secp384r1: 'SHA384', secp521r1: 'SHA512' };

/** True when `cert` can sign with `sigalg` (as Node's getSharedSigalgs() names it, e.g. 'ECDSA+SHA256', 'RSA-PSS+SHA256'). */
export function canSign(cert: Pick<ServerCertificate, 'keyType' | 'curve'>, sigalg: string, tls13: boolean): boolean {
  const [scheme, hash] = sigalg.split('+');
  switch (cert.keyType) {
    case 'rsa': return scheme === 'RSA-PSS' || (!tls13 && scheme === 'RSA');
    case 'rsa-pss': return scheme === 'RSA-PSS';
    // TLS 1.3 ties each ECDSA scheme to one curve (RFC 8446 4.2.3).
    case 'ec': return scheme === 'ECDSA' && (!tls13 || CURVE_HASH[cert.curve ?? ''] === hash);
    case 'ed25519': return scheme === 'Ed25519';
    case 'ed448': return scheme === 'Ed448';
    default: return false;
  }
}

/** What the choice between certificates for one name reads of a handshake. */
export interface HelloFacts {
  /** The negotiated version ('TLSv1.3', 'TLSv1.2'). */
  readonly protocol: string | null;
  /** Signature algorithms shared with the client, in OpenSSL's order of preference (getSharedSigalgs()). */
  readonly sharedSigalgs: readonly string[];
  /** The client's cipher suites in its order (from the ClientHello), when known. */
  readonly cipherSuites: readonly number[] | undefined;
}

/**
 * Which of several certificates for one name to serve, as OpenSSL would pick among them in one
 * context: TLS 1.3, the first shared signature algorithm one of them can sign with; TLS 1.2,
 * the certificate type of the client's first cipher suite that one of them can serve. Falls
 * back to the first one (the handshake then goes as it would with it alone). Pure: tested with tables.
 */
export function chooseCertificate<T extends Pick<ServerCertificate, 'keyType' | 'curve'>>(candidates: readonly T[], facts: HelloFacts): T | undefined {
  if (candidates.length <= 1) return candidates[0];
  const tls13 = facts.protocol === 'TLSv1.3';
  const usable = (c: T) => facts.sharedSigalgs.length === 0 || facts.sharedSigalgs.some((s) => canSign(c, s, tls13));
  if (tls13) {
    for (const s of facts.sharedSigalgs) {
      const c = candidates.find((x) => canSign(x, s, true));
      if (c) return c;
    }
    return candidates[0];
  }
  for (const suite of facts.cipherSuites ?? []) {
    const type = ECDSA_SUITES.has(suite) ? 'ec' : RSA_SUITES.has(suite) ? 'rsa' : undefined;
    const c = type && candidates.find((x) => (type === 'rsa' ? x.keyType === 'rsa' : x.keyType === 'ec') && usable(x));
    if (c) return c;
  }
  return candidates.find(usable) ?? candidates[0];
}

/** The server's certificates as secure-context options. */
export interface ServerMaterial {
  readonly certificates: readonly ServerCertificate[];
  /** Options of the listener's own context: the first certificate (clients without SNI, or a name no certificate has). */
  readonly defaultOptions: SecureContextOptions;
  /**
   * Node's SNICallback (`this` is the TLSSocket): the certificate for the name (the first one's
   * for a name none has), and among an RSA and an ECDSA one the one the client can use.
   * Undefined with one certificate. Connections naming a host must start from a context
   * without a certificate (src/tls/hello-record.ts), or Node keeps the default one beside it.
   */
  readonly sniCallback: ((this: TLSSocket, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void) | undefined;
  /** Every SecureContext the callback hands out (ticket keys are set on them too). */
  readonly contexts: readonly SecureContext[];
}

/**
 * certificates → secure-context options. `shared` (CAs, CRLs, protocol versions, ciphers,
 * secureOptions) goes into every context: after SNI, OpenSSL verifies client certificates with
 * the chosen context's store, so each must trust the same CAs.
 */
export function buildServerMaterial(certificates: readonly ServerCertificate[], shared: SecureContextOptions, cipherSuitesOf?: (socket: Socket) => readonly number[] | undefined): ServerMaterial {
  const first = certificates[0];
  if (!first) throw new CertboundError('CB_ERR_INVALID_OPTION', ['cert', 'is required (or certificates)']);
  if (certificates.length === 1) return Object.freeze({ certificates, defaultOptions: first.contextOptions, sniCallback: undefined, contexts: [] });
  const contexts = new Map<ServerCertificate, SecureContext>();
  for (const c of certificates) {
    try {
      contexts.set(c, createSecureContext({ ...shared, ...c.contextOptions }));
    } catch (err) {
      throw new CertboundError('CB_ERR_TLS_CONTEXT', [`the certificate and key (${c.where}) with the tls options`, nodeReason(err)], { cause: err });
    }
  }
  const byName = (name: string): ServerCertificate[] => {
    const n = name.toLowerCase().replace(/\.$/, '');
    const exact = certificates.filter((c) => c.names.includes(n));
    return exact.length > 0 ? exact : certificates.filter((c) => c.names.some((p) => p.startsWith('*.') && hostMatches(p, n)));
  };
  // A name no certificate has gets what a client without SNI gets: the first certificate (and
  // those sharing its names, by key type). Every connection naming a host starts without a
  // certificate (hello-record.ts), so this callback must always give one.
  const fallback = certificates.filter((c) => c === first || (c.names.length > 0 && c.names.every((n) => first.names.includes(n))));
  function sniCallback(this: TLSSocket, servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void {
    const named = byName(servername);
    const candidates = named.length > 0 ? named : fallback;
    const parent = (this as unknown as { _parent?: Socket })._parent;
    const chosen = chooseCertificate(candidates, {
      protocol: this.getProtocol(), sharedSigalgs: this.getSharedSigalgs(), cipherSuites: parent && cipherSuitesOf ? cipherSuitesOf(parent) : undefined,
    });
    cb(null, chosen ? contexts.get(chosen) : undefined);
  }
  return Object.freeze({ certificates, defaultOptions: first.contextOptions, sniCallback, contexts: [...contexts.values()] });
}
