// Picking a client certificate from a store, as SetClientCertificateByID (20-byte SHA-1
// thumbprint) and SetClientCertificateByName (simple subject name) do. The argument checks are
// small pure functions; the look-up reads the store. Every outcome is an HRESULT value.
import { WinStatus } from '../status.js';
import { HResult } from './hresult.js';
import { checkStoreName, isStoreLocation, openStore, type StoreEntry, type StoreOptions } from './store.js';
import { subjectMatches } from './subject-name.js';

/** SHA-1 thumbprints are 20 bytes (seeds 001/002: "Use a 20 byte buffer for the hash"). */
export const THUMBPRINT_BYTES = 20;
/** SubjectName is limited to 256 characters including the terminator (SetClientCertificateByName). */
export const MAX_SUBJECT_NAME_CHARS = 255;
/** The certificate is in the store but its private key is not (value in src/status.ts). */
export const NTE_NO_KEY = WinStatus.NTE_NO_KEY;

/** A thumbprint as callers hand it over: bytes, or hex (colons and spaces ignored). */
export type ThumbprintInput = Uint8Array | string | null | undefined;

/** The thumbprint as bytes, or the HRESULT for a null or wrongly sized one. */
export function checkThumbprint(hash: ThumbprintInput): { hr: number; bytes?: Buffer } {
  if (hash === null || hash === undefined) return { hr: HResult.RPC_X_NULL_REF_POINTER };
  let bytes: Buffer;
  if (typeof hash === 'string') {
    const hex = hash.replace(/[\s:]/g, '');
    if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length % 2 !== 0) return { hr: HResult.RPC_X_BAD_STUB_DATA };
    bytes = Buffer.from(hex, 'hex');
  } else if (hash instanceof Uint8Array) {
    bytes = Buffer.from(hash);
  } else {
    return { hr: HResult.RPC_X_BAD_STUB_DATA };
  }
  if (bytes.length !== THUMBPRINT_BYTES) return { hr: HResult.RPC_X_BAD_STUB_DATA };
  return { hr: HResult.S_OK, bytes };
}

/**
 * The checks SetClientCertificateByID makes before it opens a store, in the order certbound
 * applies them: null arguments and the hash size first (in BITS the RPC stub rejects those
 * before the method runs), then the location, then the store name's length.
 */
export function checkByIdArguments(location: unknown, storeName: string | null | undefined, hash: ThumbprintInput): number {
  if (storeName === null || storeName === undefined) return HResult.RPC_X_NULL_REF_POINTER;
  const h = checkThumbprint(hash);
  if (h.hr !== HResult.S_OK) return h.hr;
  if (!isStoreLocation(location)) return HResult.E_NOTIMPL;
  return checkStoreName(storeName);
}

/** The same checks for SetClientCertificateByName; an empty subject is E_INVALIDARG ("You cannot specify an empty subject name"). */
export function checkByNameArguments(location: unknown, storeName: string | null | undefined, subjectName: string | null | undefined): number {
  if (storeName === null || storeName === undefined || subjectName === null || subjectName === undefined) return HResult.RPC_X_NULL_REF_POINTER;
  if (!isStoreLocation(location)) return HResult.E_NOTIMPL;
  const nameHr = checkStoreName(storeName);
  if (nameHr !== HResult.S_OK) return nameHr;
  if (subjectName.length > MAX_SUBJECT_NAME_CHARS) return HResult.BG_E_STRING_TOO_LONG;
  if (subjectName.trim().length === 0) return HResult.E_INVALIDARG;
  return HResult.S_OK;
}

export type FindResult = { hr: number; entry?: StoreEntry };

/** The store entry whose SHA-1 thumbprint is `hash`, with its private key. */
export async function findCertificateById(location: unknown, storeName: string | null | undefined, hash: ThumbprintInput, options: StoreOptions = {}): Promise<FindResult> {
  const argHr = checkByIdArguments(location, storeName, hash);
  if (argHr !== HResult.S_OK) return { hr: argHr };
  const bytes = checkThumbprint(hash).bytes as Buffer;
  const store = await openStore(location, storeName, options);
  if (store.hr !== HResult.S_OK || !store.entries) return { hr: store.hr };
  const entry = store.entries.find((e) => e.thumbprint.equals(bytes));
  if (!entry) return { hr: HResult.CRYPT_E_NOT_FOUND };
  if (!entry.privateKey) return { hr: NTE_NO_KEY };
  return { hr: HResult.S_OK, entry };
}

/**
 * The first store entry (in file-name order) whose simple subject name contains `subjectName`
 * and that is a client-authentication certificate with its key, as BITS documents.
 */
export async function findCertificateByName(location: unknown, storeName: string | null | undefined, subjectName: string | null | undefined, options: StoreOptions = {}): Promise<FindResult> {
  const argHr = checkByNameArguments(location, storeName, subjectName);
  if (argHr !== HResult.S_OK) return { hr: argHr };
  const store = await openStore(location, storeName, options);
  if (store.hr !== HResult.S_OK || !store.entries) return { hr: store.hr };
  const entry = store.entries.find((e) => e.clientAuth && e.privateKey && subjectMatches(e.simpleName, subjectName as string));
  return entry ? { hr: HResult.S_OK, entry } : { hr: HResult.CRYPT_E_NOT_FOUND };
}
