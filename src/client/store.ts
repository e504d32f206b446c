// File-backed certificate stores. A BITS store location (BG_CERT_STORE_LOCATION) and a store
// name (MY, CA, ROOT, SPC or an application store) name a directory; its entries are PEM files
// (certificate, chain, optionally the key, or the key in a sibling .key file) and PKCS#12 files.
// Status values are returned as HRESULTs (src/status.ts), never thrown.
import { readdirSync, statSync, existsSync } from 'node:fs';
import { readRegularFile } from '../read-file.js';
import { DEFAULTS } from '../defaults.js';
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { homedir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { CertboundError } from '../errors.js';
import { pemBlocks } from '../tls/pem.js';
import { WinStatus } from '../status.js';
import { HResult } from './hresult.js';
import { readPkcs12 } from './pkcs12.js';
import { displaySubjectName, simpleSubjectName, subjectAttributes } from './subject-name.js';

/** BG_CERT_STORE_LOCATION (bits2_5.h): the values BITS accepts for StoreLocation. */
export const StoreLocation = Object.freeze({
  CURRENT_USER: 0,
  LOCAL_MACHINE: 1,
  CURRENT_SERVICE: 2,
  SERVICES: 3,
  USERS: 4,
  CURRENT_USER_GROUP_POLICY: 5,
  LOCAL_MACHINE_GROUP_POLICY: 6,
  LOCAL_MACHINE_ENTERPRISE: 7,
} as const);
export type StoreLocationValue = (typeof StoreLocation)[keyof typeof StoreLocation];

/** The directory name of each location under a store root (index = BG_CERT_STORE_LOCATION value). */
export const LOCATION_DIRS: readonly string[] = Object.freeze([
  'current-user',
  'local-machine',
  'current-service',
  'services',
  'users',
  'current-user-group-policy',
  'local-machine-group-policy',
  'local-machine-enterprise',
]);

/** The system store names of the seeds; any other name is an application store. */
export const SYSTEM_STORES = Object.freeze(['MY', 'CA', 'ROOT', 'SPC'] as const);

/** StoreName is limited to 256 characters including the terminator (seeds 001/002). */
export const MAX_STORE_NAME_CHARS = 255;

/** Environment variable that moves every location under one root. */
export const STORE_ROOT_ENV = 'CERTBOUND_STORE_ROOT';

export interface StoreOptions {
  /** One root for all locations: `<root>/<location-dir>/<store>`. Default: $CERTBOUND_STORE_ROOT, else the per-location defaults. */
  root?: string;
  /** Password for PKCS#12 entries that have no `<file>.password` sidecar. Default: '' (empty). */
  pkcs12Password?: string;
  /** Environment to read (tests). Default: process.env. */
  env?: NodeJS.ProcessEnv;
}

/** True when `location` is one of the BG_CERT_STORE_LOCATION values. */
export function isStoreLocation(location: unknown): location is StoreLocationValue {
  return typeof location === 'number' && Number.isInteger(location) && location >= 0 && location < LOCATION_DIRS.length;
}

/** Parses a location as the CLI takes it: a number (0-7), a BITS name or a directory name. */
export function parseStoreLocation(text: string): StoreLocationValue | undefined {
  if (/^\d+$/.test(text)) {
    const n = Number(text);
    return isStoreLocation(n) ? n : undefined;
  }
  const key = text.toUpperCase().replace(/^BG_CERT_STORE_LOCATION_/, '').replace(/-/g, '_');
  return (StoreLocation as Record<string, StoreLocationValue>)[key];
}

/**
 * The directory that holds a location's stores. With a root (option or $CERTBOUND_STORE_ROOT):
 * `<root>/<location-dir>`. Without: the user's locations live under
 * $XDG_CONFIG_HOME/certbound/stores (default ~/.config/certbound/stores), the machine-wide ones
 * under /etc/certbound/stores.
 */
export function locationDir(location: StoreLocationValue, options: StoreOptions = {}): string {
  const env = options.env ?? process.env;
  const dir = LOCATION_DIRS[location] as string;
  const root = options.root ?? env[STORE_ROOT_ENV];
  if (root) return join(root, dir);
  const perUser = location === StoreLocation.CURRENT_USER || location === StoreLocation.CURRENT_USER_GROUP_POLICY;
  if (perUser) return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'certbound', 'stores', dir);
  return join('/etc/certbound/stores', dir);
}

/**
 * Checks a store name (null, too long, unsafe as a path). A backslash separates a service or
 * user prefix, as Windows names them for SERVICES and USERS ("svc\\MY" → `svc/MY`).
 */
export function checkStoreName(storeName: string | null | undefined): number {
  if (storeName === null || storeName === undefined) return HResult.RPC_X_NULL_REF_POINTER;
  if (typeof storeName !== 'string') return HResult.E_INVALIDARG;
  if (storeName.length > MAX_STORE_NAME_CHARS) return HResult.BG_E_STRING_TOO_LONG;
  if (storeName.length === 0) return HResult.E_INVALIDARG;
  const parts = storeName.split('\\');
  if (parts.some((p) => p === '' || p === '.' || p === '..' || p.includes('/') || p.includes('\0'))) return HResult.E_INVALIDARG;
  return HResult.S_OK;
}

/** An errno from the file system as the HRESULT the seeds name for it. */
export function hresultFromFsError(err: unknown): number {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'EACCES' || code === 'EPERM') return HResult.E_ACCESSDENIED;
  if (code === 'ENOENT' || code === 'ENOTDIR') return HResult.E_FILE_NOT_FOUND;
  return HResult.E_FILE_NOT_FOUND;
}

/** One certificate of a store, with its key when the store holds it. */
export interface StoreEntry {
  /** The file the entry came from. */
  readonly file: string;
  readonly format: 'pem' | 'der' | 'pkcs12';
  readonly certificate: X509Certificate;
  readonly der: Buffer;
  /** The certificates that follow the leaf in the file (its chain), leaf excluded. */
  readonly chain: readonly X509Certificate[];
  /** SHA-1 of the DER certificate: the BITS thumbprint (CERT_HASH_PROP_ID), 20 bytes. */
  readonly thumbprint: Buffer;
  /** Most specific first: "CN=dev-client, OU=users, O=certbound dev". */
  readonly subject: string;
  /** BITS's simple subject name, DER order: "certbound dev, users, dev-client". */
  readonly simpleName: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** The private key matching the certificate, when the entry has one. */
  readonly privateKey?: KeyObject;
  /** True when the certificate allows client authentication (no EKU, or EKU with clientAuth). */
  readonly clientAuth: boolean;
  /** The files that hold the private key or unlock it (the PEM or its sibling `.key`, the PKCS#12 file and its `.password`); empty without a key. */
  readonly secretFiles: readonly string[];
}

/** A file of the store directory that could not be read, and why (an HRESULT). */
export interface StoreProblem {
  readonly file: string;
  readonly hr: number;
  readonly message: string;
}

/** A store directory others could plant entries in (checkStoreDir); reported, not refused. */
export interface StoreWarning {
  readonly dir: string;
  readonly code: 'CB_ERR_STORE_DIR_UNSAFE';
  /** The CB_ERR_STORE_DIR_UNSAFE message, naming the directory, its mode and owner. */
  readonly message: string;
}

export type OpenStoreResult =
  | { hr: 0; dir: string; entries: StoreEntry[]; problems: StoreProblem[]; warnings: StoreWarning[] }
  | { hr: number; dir?: string; entries?: undefined; problems?: undefined; warnings?: undefined };

/**
 * Reports a directory of a store that someone other than this user and root can change: one
 * that group or others may write (sticky or not), or that belongs to another user (root's
 * directories are fine for everyone; when this process is root, only root's are). Whoever can
 * write it can add a certificate and key to MY, or a trust root to ROOT and CA. A symbolic link
 * is followed. Undefined when it is safe or cannot be examined (openStore reports that).
 */
export function checkStoreDir(dir: string): StoreWarning | undefined {
  let st;
  try {
    st = statSync(dir);
  } catch {
    return undefined;
  }
  const mode = st.mode & 0o7777;
  const uid = process.geteuid?.();
  const why: string[] = [];
  if ((mode & 0o022) !== 0) why.push(`is mode 0${mode.toString(8)} (group or others can write it)`);
  if (uid !== undefined && st.uid !== uid && st.uid !== 0) why.push(`belongs to uid ${st.uid}, neither this user (uid ${uid}) nor root`);
  if (why.length === 0) return undefined;
  return Object.freeze({ dir, code: 'CB_ERR_STORE_DIR_UNSAFE', message: new CertboundError('CB_ERR_STORE_DIR_UNSAFE', [dir, why.join(' and ')]).message });
}

const PEM_EXT = new Set(['.pem', '.crt', '.cer']);
const P12_EXT = new Set(['.p12', '.pfx']);
// Store-entry problems (values and meanings in src/status.ts).
export const E_INVALID_PASSWORD = WinStatus.E_INVALID_PASSWORD;
export const NTE_BAD_ALGID = WinStatus.NTE_BAD_ALGID;
export const CRYPT_E_ASN1_BADTAG = WinStatus.CRYPT_E_ASN1_BADTAG;

/** Finds `name` in `parent` case-insensitively, as Windows store names are. */
function resolveCaseInsensitive(parent: string, name: string): string {
  const exact = join(parent, name);
  if (existsSync(exact)) return exact;
  const lower = name.toLowerCase();
  const hit = readdirSync(parent).find((n) => n.toLowerCase() === lower);
  return hit === undefined ? exact : join(parent, hit);
}

/** The directory of a store; `hr` tells why it cannot be used. */
export function storeDir(location: unknown, storeName: string | null | undefined, options: StoreOptions = {}): { hr: number; dir?: string } {
  if (!isStoreLocation(location)) return { hr: HResult.E_NOTIMPL };
  const nameHr = checkStoreName(storeName);
  if (nameHr !== HResult.S_OK) return { hr: nameHr };
  let dir = locationDir(location, options);
  try {
    statSync(dir);
    for (const part of (storeName as string).split('\\')) dir = resolveCaseInsensitive(dir, part);
    if (!statSync(dir).isDirectory()) return { hr: HResult.E_FILE_NOT_FOUND, dir };
    readdirSync(dir);
  } catch (err) {
    return { hr: hresultFromFsError(err), dir };
  }
  return { hr: HResult.S_OK, dir };
}

/** Opens a store and reads every entry. Files that cannot be read are reported in `problems`. */
export async function openStore(location: unknown, storeName: string | null | undefined, options: StoreOptions = {}): Promise<OpenStoreResult> {
  const found = storeDir(location, storeName, options);
  if (found.hr !== HResult.S_OK || !found.dir) return { hr: found.hr, ...(found.dir ? { dir: found.dir } : {}) };
  const dir = found.dir;
  const entries: StoreEntry[] = [];
  const problems: StoreProblem[] = [];
  // The store directory and the ones between it and its location directory ("svc\\MY").
  const warnings: StoreWarning[] = [];
  const top = locationDir(location as StoreLocationValue, options);
  for (let d = dir; ; d = dirname(d)) {
    const w = checkStoreDir(d);
    if (w) warnings.push(w);
    if (d === top || dirname(d) === d || !d.startsWith(top)) break;
  }
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    return { hr: hresultFromFsError(err), dir };
  }
  for (const name of names) {
    const ext = extname(name).toLowerCase();
    if (!PEM_EXT.has(ext) && !P12_EXT.has(ext)) continue;
    const file = join(dir, name);
    try {
      if (!statSync(file).isFile()) continue;
      const read = P12_EXT.has(ext) ? await readPkcs12Entry(file, options) : readPemEntry(file);
      if ('hr' in read) problems.push(read);
      else entries.push(read);
    } catch (err) {
      problems.push({ file, hr: hresultFromFsError(err), message: (err as Error).message });
    }
  }
  return { hr: HResult.S_OK, dir, entries, problems, warnings };
}

function makeEntry(file: string, format: StoreEntry['format'], ders: Buffer[], keys: KeyObject[], keyFiles: readonly string[]): StoreEntry | StoreProblem {
  const certs = ders.map((d) => new X509Certificate(d));
  // The leaf is the certificate whose key is present; without a key, the first one.
  let leafIndex = certs.findIndex((c) => keys.some((k) => safeCheckKey(c, k)));
  if (leafIndex < 0) leafIndex = 0;
  const leaf = certs[leafIndex];
  const der = ders[leafIndex];
  if (!leaf || !der) return { file, hr: CRYPT_E_ASN1_BADTAG, message: 'no certificate in the file' };
  const attrs = subjectAttributes(der);
  const privateKey = keys.find((k) => safeCheckKey(leaf, k));
  return Object.freeze({
    file,
    format,
    certificate: leaf,
    der,
    chain: certs.filter((_, i) => i !== leafIndex),
    thumbprint: createHash('sha1').update(der).digest(),
    subject: displaySubjectName(attrs),
    simpleName: simpleSubjectName(attrs),
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
    ...(privateKey ? { privateKey } : {}),
    clientAuth: allowsClientAuth(leaf),
    secretFiles: Object.freeze(privateKey ? [...keyFiles] : []),
  });
}

function safeCheckKey(cert: X509Certificate, key: KeyObject): boolean {
  try {
    return cert.checkPrivateKey(key);
  } catch {
    return false;
  }
}

function allowsClientAuth(cert: X509Certificate): boolean {
  const eku = cert.keyUsage; // Node names the extended key usage OIDs `keyUsage`
  return !eku || eku.length === 0 || eku.includes('1.3.6.1.5.5.7.3.2') || eku.includes('2.5.29.37.0');
}

function readPemEntry(file: string): StoreEntry | StoreProblem {
  const raw = readRegularFile(file, DEFAULTS.maxPemFileBytes);
  const text = raw.toString('latin1');
  let ders = pemBlocks(text, 'CERTIFICATE');
  const format: StoreEntry['format'] = ders.length > 0 ? 'pem' : 'der';
  if (ders.length === 0) ders = [raw]; // a .cer may be DER
  const keys: KeyObject[] = [];
  const keyFiles: string[] = [];
  const keyTexts: [string, string][] = [[file, text]];
  const sibling = join(file.slice(0, file.length - extname(file).length) + '.key');
  if (existsSync(sibling)) keyTexts.push([sibling, readRegularFile(sibling, DEFAULTS.maxPemFileBytes).toString('latin1')]);
  for (const [source, t] of keyTexts) {
    for (const label of ['PRIVATE KEY', 'EC PRIVATE KEY', 'RSA PRIVATE KEY']) {
      for (const der of pemBlocks(t, label)) {
        if (!keyFiles.includes(source)) keyFiles.push(source);
        try {
          keys.push(createPrivateKey({ key: der, format: 'der', type: label === 'PRIVATE KEY' ? 'pkcs8' : label === 'EC PRIVATE KEY' ? 'sec1' : 'pkcs1' }));
        } catch {
          // An unreadable key block is ignored: the entry is then a certificate without a key.
        }
      }
    }
  }
  try {
    return makeEntry(file, format, ders, keys, keyFiles);
  } catch (err) {
    return { file, hr: CRYPT_E_ASN1_BADTAG, message: `not a certificate: ${(err as Error).message}` };
  }
}

async function readPkcs12Entry(file: string, options: StoreOptions): Promise<StoreEntry | StoreProblem> {
  const der = readRegularFile(file, DEFAULTS.maxPemFileBytes);
  const sidecar = `${file}.password`;
  const password = existsSync(sidecar) ? firstLine(readRegularFile(sidecar, DEFAULTS.maxStateFileBytes).toString('utf8')) : (options.pkcs12Password ?? '');
  const result = await readPkcs12(der, password);
  if (!result.ok) {
    const hr = result.failure === 'bad-password' ? E_INVALID_PASSWORD : result.failure === 'unsupported-algorithm' ? NTE_BAD_ALGID : CRYPT_E_ASN1_BADTAG;
    return { file, hr, message: `${basename(file)}: ${result.message}` };
  }
  const keys = result.privateKeys.map((k) => createPrivateKey({ key: k, format: 'der', type: 'pkcs8' }));
  try {
    return makeEntry(file, 'pkcs12', result.certificates, keys, existsSync(sidecar) ? [file, sidecar] : [file]);
  } catch (err) {
    return { file, hr: CRYPT_E_ASN1_BADTAG, message: (err as Error).message };
  }
}

/** The first line of a `.password` file, without its line end (LF, CRLF or CR): the rest of the file is not the password. */
function firstLine(text: string): string {
  return text.split(/\r\n|\n|\r/, 1)[0] ?? '';
}
