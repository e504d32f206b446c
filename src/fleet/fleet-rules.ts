// The pure rules of fleet mode (docs/fleet.md): Redis key names, the fleet secret's derived keys,
// the sealed ticket-key record, the session id context, and the checks on the settings. No
// sockets, no timers: tested with tables (test/fleet-rules.test.ts).
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import { readRegularFile, readFailure } from '../read-file.js';
import { readPassphraseFile } from '../tls/server-material.js';

/** Smallest fleet secret (bytes, after trimming the trailing newline): 256 bits. */
export const FLEET_SECRET_MIN_BYTES = 32;
/** Fewest distinct byte values in a fleet secret (a hex string has 16). */
export const FLEET_SECRET_MIN_DISTINCT = 8;
/** Largest fleet secret file read (bytes). */
export const FLEET_SECRET_MAX_BYTES = 4096;
/** Size of a tls.Server ticket-key set (HMAC secret, AES key, key name: 16 bytes each). */
export const FLEET_TICKET_KEY_BYTES = 48;

/** What is shared under a fleet lock: the ticket keys, a server certificate's staple (by SHA-256), a client certificate's OCSP response or a CRL. */
export type FleetDocumentKind = 'staple' | 'ocsp' | 'crl';

/** The Redis keys of one fleet (namespace): every key certbound reads or writes starts with `<namespace>:`. */
export interface FleetKeys {
  /** Hash: fence, generation, createdAt, secretId, sealed (the encrypted ticket keys). */
  readonly tickets: string;
  /** The lock of a document (`tickets`, or kind + id): SET NX PX, value `<machine>:<fence>`. */
  lock(name: string): string;
  /** Monotonic fencing counter of a document (INCR; expires two days after its last lock, and not before a day past its document). */
  fence(name: string): string;
  /** Hash: der (the signed bytes), from (machine), storedAt; expires with the document (nextUpdate, for a staple + 1 h). */
  document(kind: FleetDocumentKind, id: string): string;
  /** The pub/sub channel of announcements. */
  readonly channel: string;
}

/** A namespace: letters, digits, `.`, `_`, `-`, 1..64 characters (it is part of every key). */
export function checkNamespace(ns: string, where = 'fleet.namespace'): string {
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(ns)) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, `expected 1 to 64 letters, digits, '.', '_' or '-', got ${JSON.stringify(ns)}`]);
  return ns;
}

export function fleetKeys(ns: string): FleetKeys {
  const p = `${checkNamespace(ns)}:`;
  return Object.freeze({
    tickets: `${p}tickets`,
    lock: (name: string) => `${p}lock:${name}`,
    fence: (name: string) => `${p}fence:${name}`,
    document: (kind: FleetDocumentKind, id: string) => `${p}${kind}:${id}`,
    channel: `${p}announce`,
  });
}

/** The lock and fence name of a document. */
export function documentName(kind: FleetDocumentKind, id: string): string {
  return `${kind}:${id}`;
}

/** The id of a document fetched from a URL (a CRL distribution point): SHA-256 of the URL, hex. */
export function urlId(url: string): string {
  return createHash('sha256').update(url).digest('hex');
}

/**
 * Checks a fleet URL: redis:// or rediss://, a host, no query or fragment (ioredis would read
 * options from it). Returns it with any password replaced by `***`, for logs and /readyz.
 */
export function checkFleetUrl(url: string, where = 'fleet.url'): { url: URL; shown: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'expected redis://HOST:PORT or rediss://HOST:PORT']);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new CertboundError('CB_ERR_INVALID_OPTION', [where, `expected redis:// or rediss://, got ${u.protocol}//`]);
  if (u.hostname === '') throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'the URL has no host']);
  if (u.search !== '' || u.hash !== '') throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'a query or fragment is not taken (use the flags and config keys)']);
  if (u.pathname !== '' && u.pathname !== '/' && !/^\/\d{1,2}$/.test(u.pathname)) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'the path may only be a database number (/0 .. /15)']);
  const shown = new URL(u.href);
  if (shown.password !== '') shown.password = '***';
  return { url: u, shown: shown.href };
}

/**
 * Reads the fleet secret from a file: a regular file of at most 4 KiB, readable by its owner
 * only (mode 0600 or stricter: it protects every machine's ticket keys), holding at least 32
 * bytes once a trailing newline is dropped. CB_ERR_FLEET_SECRET says which rule failed.
 */
export function readFleetSecret(path: string): Buffer {
  let data: Buffer;
  try {
    data = readRegularFile(path, FLEET_SECRET_MAX_BYTES, { ownerOnly: true });
  } catch (err) {
    throw new CertboundError('CB_ERR_FLEET_SECRET', [path, readFailure(err)], { cause: err });
  }
  return checkFleetSecret(data, path);
}

/**
 * Reads the Redis password file (its first line) with the same mode rule as the fleet secret:
 * it opens the fleet's shared state, so group or others may not read it (CB_ERR_PASSPHRASE_FILE).
 */
export function readFleetPasswordFile(path: string): string {
  return readPassphraseFile(path, { ownerOnly: true });
}

/** A secret given in memory: at least 32 bytes (a trailing newline does not count). */
export function checkFleetSecret(secret: Buffer | string, where = 'fleet.secret'): Buffer {
  let b = Buffer.isBuffer(secret) ? secret : Buffer.from(secret, 'utf8');
  while (b.length > 0 && (b[b.length - 1] === 0x0a || b[b.length - 1] === 0x0d)) b = b.subarray(0, b.length - 1);
  if (b.length < FLEET_SECRET_MIN_BYTES) throw new CertboundError('CB_ERR_FLEET_SECRET', [where, `it holds ${b.length} bytes; at least ${FLEET_SECRET_MIN_BYTES} are needed (e.g. openssl rand -base64 48 > FILE)`]);
  // 40 spaces or NUL bytes have the length and none of the secrecy (hex has 16 distinct values, base64 about 40).
  if (new Set(b).size < FLEET_SECRET_MIN_DISTINCT) throw new CertboundError('CB_ERR_FLEET_SECRET', [where, `it holds only ${new Set(b).size} distinct byte values: not a random secret (e.g. openssl rand -base64 48 > FILE)`]);
  const pattern = secretPattern(b);
  if (pattern) throw new CertboundError('CB_ERR_FLEET_SECRET', [where, `${pattern}: not a random secret (e.g. openssl rand -base64 48 > FILE)`]);
  return Buffer.from(b);
}

/**
 * What gives a secret away as typed rather than drawn: 8 bytes that occur twice ('password' ×
 * 3, 'abcdefgh' × 4 + 'Z'), or a run of 8 consecutive byte values ('abcdefgh…', '87654321').
 * In 32 random bytes, or their base64 or hex text, either is as likely as guessing a 2^-40 event.
 */
export function secretPattern(b: Buffer): string | undefined {
  const seen = new Set<string>();
  for (let i = 0; i + 8 <= b.length; i++) {
    const piece = b.subarray(i, i + 8).toString('latin1');
    if (seen.has(piece)) return 'it repeats a sequence of 8 bytes';
    seen.add(piece);
  }
  for (let i = 0, up = 1, down = 1; i + 1 < b.length; i++) {
    up = (b[i + 1] as number) === (b[i] as number) + 1 ? up + 1 : 1;
    down = (b[i + 1] as number) === (b[i] as number) - 1 ? down + 1 : 1;
    if (up >= 8 || down >= 8) return 'it holds a run of 8 consecutive byte values';
  }
  return undefined;
}

/** Keys derived from the fleet secret (HKDF-SHA-256): the secret itself is never stored or sent. */
export interface FleetSecretKeys {
  /** AES-256-GCM key that seals the ticket keys in Redis. */
  readonly sealKey: Buffer;
  /** Public id of the secret (HMAC, 16 hex): a machine with another secret sees the difference and writes nothing. */
  readonly secretId: string;
  /** HMAC-SHA-256 key that authenticates every document a machine stores (documentMac). */
  readonly macKey: Buffer;
}

export function deriveFleetKeys(secret: Buffer, ns: string): FleetSecretKeys {
  const sealKey = Buffer.from(hkdfSync('sha256', secret, Buffer.from(`certbound fleet ${ns}`), Buffer.from('ticket-key seal v1'), 32));
  const secretId = createHmac('sha256', Buffer.from(hkdfSync('sha256', secret, Buffer.from(`certbound fleet ${ns}`), Buffer.from('secret id v1'), 32))).update('id').digest('hex').slice(0, 16);
  const macKey = Buffer.from(hkdfSync('sha256', secret, Buffer.from(`certbound fleet ${ns}`), Buffer.from('document mac v1'), 32));
  return Object.freeze({ sealKey, secretId, macKey });
}

/**
 * The MAC a machine stores with a document: HMAC-SHA-256 under the fleet's key over the kind, the
 * id, when it was stored and the bytes. Someone who can write to Redis but lacks the secret cannot
 * put a document there that a machine reads (an old response of the CA's, another certificate's,
 * a huge nested ASN.1 structure): only what a machine of the fleet stored, and no older than the
 * kind allows (fleetDocumentMaxAge).
 */
export function documentMac(secret: FleetSecretKeys, kind: FleetDocumentKind, id: string, storedAt: number, der: Buffer): string {
  return createHmac('sha256', secret.macKey).update(`${kind}\n${id}\n${storedAt}\n`).update(der).digest('base64');
}

/** Why a stored document is not read. */
export type DocumentRefusal = 'too-large' | 'malformed' | 'mac' | 'too-old' | 'from-the-future';

/** Largest document read (bytes): a response or a staple, or a CRL (as the CRL fetch's bound). */
export function documentMaxBytes(kind: FleetDocumentKind): number {
  return kind === 'crl' ? DEFAULTS.crlRefreshMaxBytes : 65_536;
}

/**
 * How long after it was stored a document may be read, and kept by the machine that read it. The
 * data behind client-certificate checks (an OCSP response without this machine's nonce, a CRL)
 * is taken for at most DEFAULTS.fleetRevocationMaxAgeMs after a machine fetched it (then one
 * machine asks the CA again): someone who can write to Redis and replays an older "good" is
 * bounded by that hour, not by the response's or the CRL's own validity (often days). Staples
 * are bounded by their own dates and, after a "revoked", by the older-response rule.
 */
export function fleetDocumentMaxAge(kind: FleetDocumentKind): number {
  return kind === 'staple' ? Infinity : DEFAULTS.fleetRevocationMaxAgeMs;
}

/** Largest storedAt and MAC fields read (bytes): a decimal time and a base64 HMAC-SHA-256 fit with room to spare. */
export const DOCUMENT_FIELD_MAX_BYTES = 64;
/** Largest field of a ticket record read (bytes): the sealed keys are 100 base64 characters. */
export const TICKET_FIELD_MAX_BYTES = 256;

/** Checks a stored document's MAC and age; the bytes when it may be read. */
export function checkDocument(secret: FleetSecretKeys, kind: FleetDocumentKind, id: string, fields: { der: Buffer | null; storedAt: string | null; mac: string | null }, now: number): { ok: true; der: Buffer; storedAt: number } | { ok: false; reason: DocumentRefusal } {
  const { der, storedAt, mac } = fields;
  if (!der || der.length === 0 || !storedAt || !mac || !DECIMAL.test(storedAt)) return { ok: false, reason: 'malformed' };
  if (der.length > documentMaxBytes(kind)) return { ok: false, reason: 'too-large' };
  const at = Number(storedAt);
  const want = Buffer.from(documentMac(secret, kind, id, at, der), 'base64');
  const got = Buffer.from(mac, 'base64');
  if (got.length !== want.length || !timingSafeEqual(got, want)) return { ok: false, reason: 'mac' };
  if (at > now + DEFAULTS.clockSkewMs) return { ok: false, reason: 'from-the-future' };
  if (now - at > fleetDocumentMaxAge(kind)) return { ok: false, reason: 'too-old' };
  return { ok: true, der, storedAt: at };
}

/** The record of the fleet's ticket keys as it lives in Redis (every field a string). */
export interface TicketRecord {
  readonly fence: string;
  readonly generation: string;
  readonly createdAt: string;
  readonly secretId: string;
  /** base64 of iv (12) | tag (16) | ciphertext (48). */
  readonly sealed: string;
}

function aad(ns: string, generation: number, createdAt: number, fence: number): Buffer {
  return Buffer.from(`certbound fleet ${ns} tickets ${generation} ${createdAt} ${fence}`);
}

/** Seals 48 ticket-key bytes under the fleet's key; the generation, time and fence are authenticated with them. */
export function sealTicketKeys(keys: Buffer, secret: FleetSecretKeys, ns: string, generation: number, createdAt: number, fence: number): TicketRecord {
  if (keys.length !== FLEET_TICKET_KEY_BYTES) throw new RangeError(`ticket keys are ${FLEET_TICKET_KEY_BYTES} bytes`);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', secret.sealKey, iv);
  c.setAAD(aad(ns, generation, createdAt, fence));
  const ct = Buffer.concat([c.update(keys), c.final()]);
  return { fence: String(fence), generation: String(generation), createdAt: String(createdAt), secretId: secret.secretId, sealed: Buffer.concat([iv, c.getAuthTag(), ct]).toString('base64') };
}

/** What opening a ticket record found. */
export type OpenedTickets =
  | { readonly ok: true; readonly keys: Buffer; readonly generation: number; readonly createdAt: number; readonly fence: number }
  | { readonly ok: false; readonly reason: 'malformed' | 'other-secret' | 'tampered'; readonly detail: string };

const DECIMAL = /^\d{1,16}$/;

/** Opens a ticket record read from Redis: every field checked, the seal authenticated (a changed byte anywhere: 'tampered'). */
export function openTicketRecord(record: Record<string, string> | null | undefined, secret: FleetSecretKeys, ns: string): OpenedTickets | undefined {
  if (!record || Object.keys(record).length === 0) return undefined;
  const { fence, generation, createdAt, secretId, sealed } = record;
  if (!fence || !generation || !createdAt || !secretId || !sealed || !DECIMAL.test(fence) || !DECIMAL.test(generation) || !DECIMAL.test(createdAt)) {
    return { ok: false, reason: 'malformed', detail: 'the record lacks a field or holds a non-number' };
  }
  if (secretId !== secret.secretId) return { ok: false, reason: 'other-secret', detail: `sealed with another fleet secret (id ${secretId.slice(0, 16)}, this machine's ${secret.secretId})` };
  const raw = Buffer.from(sealed, 'base64');
  if (raw.length !== 12 + 16 + FLEET_TICKET_KEY_BYTES) return { ok: false, reason: 'malformed', detail: `the sealed keys are ${raw.length} bytes, not ${12 + 16 + FLEET_TICKET_KEY_BYTES}` };
  const g = Number(generation);
  const t = Number(createdAt);
  const f = Number(fence);
  try {
    const d = createDecipheriv('aes-256-gcm', secret.sealKey, raw.subarray(0, 12));
    d.setAAD(aad(ns, g, t, f));
    d.setAuthTag(raw.subarray(12, 28));
    const keys = Buffer.concat([d.update(raw.subarray(28)), d.final()]);
    return { ok: true, keys, generation: g, createdAt: t, fence: f };
  } catch {
    return { ok: false, reason: 'tampered', detail: 'the seal does not authenticate (changed in Redis, or written by something else)' };
  }
}

/**
 * The session id context of every listener of every machine of a fleet: OpenSSL resumes a
 * session only on a context with the same one, and Node's default is derived from the process's
 * arguments. From the namespace and the client-certificate mode (32 hex characters, OpenSSL's
 * SSL_MAX_SID_CTX_LENGTH), so that machines of one fleet agree and other fleets differ.
 */
export function fleetSessionIdContext(ns: string, clientAuth: string): string {
  return createHash('sha256').update(`certbound fleet ${ns} ${clientAuth}`).digest('hex').slice(0, 32);
}

/**
 * Node keeps one ticket-key set per context: a rotation ends every ticket issued before it. So a
 * fleet rotates no more often than the ticket lifetime (tls sessionTimeout, Node's default 300 s):
 * CB_ERR_INVALID_OPTION otherwise.
 */
export function checkRotation(rotationMs: number, ticketLifetimeSeconds: number, where = 'ticketKeyRotation'): number {
  if (!Number.isInteger(rotationMs) || rotationMs < 1000) throw new CertboundError('CB_ERR_INVALID_OPTION', [where, 'must be an integer >= 1000 (ms)']);
  if (rotationMs < ticketLifetimeSeconds * 1000) {
    throw new CertboundError('CB_ERR_INVALID_OPTION', [where, `with a fleet it must be at least the ticket lifetime (${ticketLifetimeSeconds} s): a rotation ends every ticket issued before it`]);
  }
  return rotationMs;
}

/** When the fleet's ticket keys are due for rotation (ms since the epoch). */
export function rotationDue(createdAt: number, rotationMs: number): number {
  return createdAt + rotationMs;
}

/**
 * The lock's expiry: long enough for one retrieval (the seed's retrieval timeout) and the write
 * that follows, twice over: DEFAULTS.fleetLockTtlMs unless set. A holder that dies is replaced
 * within it.
 */
export function lockTtl(retrievalTimeoutMs: number, configured?: number): number {
  return configured ?? Math.max(DEFAULTS.fleetLockTtlMs, 2 * retrievalTimeoutMs);
}
