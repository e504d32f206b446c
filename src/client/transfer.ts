// One download attempt of one file over HTTPS (node:https, a fresh connection per attempt with
// the job's own key and certificate). It continues a partial file with Range + If-Range, so a
// resumed transfer only appends bytes of the same representation, and it notices a server that
// asks for a client certificate the job does not have, during the handshake or after it (TLS
// 1.3 alerts, TLS 1.2 renegotiation).
import { request, type RequestOptions } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { closeSync, constants, createWriteStream, fchmodSync, fstatSync, lstatSync, openSync, unlinkSync, type Stats } from 'node:fs';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { DEFAULTS } from '../defaults.js';
import { HResult } from './hresult.js';
import { classifyError, classifyStatus, type TransferFailure } from './transfer-error.js';

/** What a server said about the representation, to make a resumed request conditional. */
export interface Validators {
  readonly etag?: string;
  readonly lastModified?: string;
}

export interface DownloadTls {
  /** PEM private key of the job's certificate. */
  readonly key?: string;
  /** PEM certificate followed by its chain. */
  readonly cert?: string;
  /** Trusted roots for the server certificate (PEM). Undefined: Node's bundled roots. */
  readonly ca?: string[];
}

export interface DownloadOptions {
  readonly url: string;
  /** The partial file; its size is where the transfer continues. */
  readonly partPath: string;
  readonly validators?: Validators;
  readonly tls: DownloadTls;
  readonly signal: AbortSignal;
  /** Socket idle time limit, in ms. */
  readonly timeoutMs: number;
  /** Called when the server's response headers arrive (BITS: CONNECTING → TRANSFERRING), with its validators: they must outlive an interruption. */
  readonly onConnected?: (validators: Validators) => void;
  /** Bytes in the partial file so far, and the file size when known. */
  readonly onProgress?: (transferred: number, total: number | undefined) => void;
  /** Redirects followed before the attempt fails. Default: 5. */
  readonly maxRedirects?: number;
}

export type DownloadOutcome =
  | { readonly kind: 'done'; readonly total: number; readonly validators: Validators }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'failed'; readonly failure: TransferFailure; readonly validators?: Validators; readonly total?: number };

/** A parsed `Content-Range: bytes first-last/complete` (RFC 9110 14.4). */
export interface ContentRange {
  readonly first: number;
  readonly last: number;
  readonly complete?: number;
}

/** Parses a byte Content-Range; undefined when malformed or unsatisfied (`bytes * /n`). */
export function parseContentRange(value: string | undefined): ContentRange | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/i.exec((value ?? '').trim());
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  if (last < first) return undefined;
  return m[3] === '*' ? { first, last } : { first, last, complete: Number(m[3]) };
}

/**
 * The headers that continue a partial download of `have` bytes: a Range and an If-Range that
 * holds a strong ETag or, failing that, the Last-Modified date (RFC 9110 13.1.5). Without a
 * validator there is no safe way to append, so the download restarts (undefined).
 */
export function resumeHeaders(have: number, validators: Validators | undefined): Record<string, string> | undefined {
  if (have <= 0 || !validators) return undefined;
  const etag = validators.etag && !validators.etag.startsWith('W/') ? validators.etag : undefined;
  const ifRange = etag ?? validators.lastModified;
  if (!ifRange) return undefined;
  return { range: `bytes=${have}-`, 'if-range': ifRange };
}

/** Mode of a partial file: it may hold a secret (a token, a key) until Complete moves it into place. */
export const PART_FILE_MODE = 0o600;

/**
 * True when a partial file may be continued: a regular file (not a link), of this user, with one
 * link. Another user's file (pre-created in a shared directory) or a hard link to some other
 * file is never appended to or moved into place.
 */
export function isOwnPartFile(st: Stats): boolean {
  const uid = process.geteuid?.();
  return st.isFile() && st.nlink === 1 && (uid === undefined || st.uid === uid);
}

/** The size of the partial file an attempt continues: 0 when it is absent or not ours to continue (isOwnPartFile; a link is not followed). */
export function partFileSize(path: string): number {
  try {
    const st = lstatSync(path);
    return isOwnPartFile(st) ? st.size : 0;
  } catch {
    return 0;
  }
}

const linkError = (path: string) => Object.assign(new Error(`ELOOP: the partial file ${path} is a symbolic link; it is never written through`), { code: 'ELOOP' });

/**
 * A new, empty partial file, opened for writing: whatever file was at the path is unlinked first
 * (never reused: it may be another user's, or a hard link), then created with O_EXCL and
 * O_NOFOLLOW and fchmodded to 0600 whatever the umask. A symbolic link there fails (ELOOP), a
 * directory too (EISDIR): neither is removed.
 */
function createPart(path: string): number {
  let st: Stats | undefined;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (st?.isSymbolicLink()) throw linkError(path);
  if (st?.isDirectory()) throw Object.assign(new Error(`EISDIR: the partial file ${path} is a directory`), { code: 'EISDIR' });
  if (st) unlinkSync(path);
  const { O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = constants;
  const fd = openSync(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, PART_FILE_MODE);
  try {
    fchmodSync(fd, PART_FILE_MODE);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  return fd;
}

/**
 * Opens the partial file to append to it, without creating it or following a link (ELOOP): the
 * opened file must still be ours to continue (isOwnPartFile) and hold exactly `have` bytes, the
 * offset the request asked for; undefined otherwise (it changed since the request).
 */
function openPartToAppend(path: string, have: number): number | undefined {
  const { O_WRONLY, O_APPEND, O_NOFOLLOW } = constants;
  let fd: number;
  try {
    fd = openSync(path, O_WRONLY | O_APPEND | O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let st: Stats;
  try {
    st = fstatSync(fd);
  } catch (err) {
    closeSync(fd);
    throw err;
  }
  if (isOwnPartFile(st) && st.size === have) return fd;
  closeSync(fd);
  return undefined;
}

/** Runs one attempt. Never throws: failures come back as an outcome with an HRESULT. */
export async function downloadOnce(options: DownloadOptions): Promise<DownloadOutcome> {
  let url = options.url;
  for (let redirects = 0; ; redirects++) {
    const outcome = await attempt(url, options);
    if (outcome.kind !== 'redirect') return outcome;
    if (redirects >= (options.maxRedirects ?? DEFAULTS.transferMaxRedirects)) return { kind: 'failed', failure: { hr: HResult.ERROR_WINHTTP_CONNECTION_ERROR, transient: false, message: 'too many redirects' } };
    url = new URL(outcome.location, url).toString();
    if (!url.startsWith('https:')) return { kind: 'failed', failure: { hr: HResult.E_INVALIDARG, transient: false, message: `redirect to a non-HTTPS URL: ${url}` } };
  }
}

type AttemptOutcome = DownloadOutcome | { readonly kind: 'redirect'; readonly location: string };

async function attempt(url: string, options: DownloadOptions): Promise<AttemptOutcome> {
  if (options.signal.aborted) return { kind: 'aborted' };
  const target = new URL(url);
  const have = partFileSize(options.partPath);
  const extra = resumeHeaders(have, options.validators);
  const hasCertificate = Boolean(options.tls.cert && options.tls.key);
  let certificateRequested = false;
  let responseStarted = false;
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const reqOptions: RequestOptions = {
    host,
    port: target.port ? Number(target.port) : 443,
    path: `${target.pathname}${target.search}`,
    method: 'GET',
    headers: { accept: '*/*', 'user-agent': 'certbound-client', ...(extra ?? {}) },
    // A fresh connection per attempt: the job's identity never leaks into a pooled socket.
    agent: false,
    // Renegotiation stays allowed (no SSL_OP_NO_RENEGOTIATION): on-demand routes renegotiate.
    ...(isIP(host) ? {} : { servername: host }),
    ...(options.tls.key ? { key: options.tls.key } : {}),
    ...(options.tls.cert ? { cert: options.tls.cert } : {}),
    ...(options.tls.ca ? { ca: options.tls.ca } : {}),
    rejectUnauthorized: true,
  };

  return new Promise<AttemptOutcome>((resolve) => {
    let settled = false;
    const finish = (o: AttemptOutcome) => {
      if (settled) return;
      settled = true;
      options.signal.removeEventListener('abort', onAbort);
      resolve(o);
    };
    const fail = (err: unknown, extraInfo: { validators?: Validators; total?: number } = {}) => {
      if (options.signal.aborted) return finish({ kind: 'aborted' });
      finish({ kind: 'failed', failure: classifyError(err, { hasCertificate, certificateRequested, responseStarted }), ...extraInfo });
    };
    const req = request(reqOptions);
    const onAbort = () => req.destroy(Object.assign(new Error('aborted by the job'), { code: 'ABORT_ERR' }));
    options.signal.addEventListener('abort', onAbort, { once: true });

    // The server asked for a certificate when signature algorithms are shared: OpenSSL fills
    // them on the client only from a CertificateRequest. Checked at every key-log line (each
    // handshake, renegotiations included) and when the handshake completes.
    const certNeeded = () => Object.assign(new Error('the server asked for a client certificate and the job has none'), { code: 'CB_CERT_NEEDED' });
    const watch = (socket: TLSSocket) => {
      const check = () => {
        const algs = typeof socket.getSharedSigalgs === 'function' ? socket.getSharedSigalgs() : undefined;
        if (algs && algs.length > 0) certificateRequested = true;
        if (certificateRequested && !hasCertificate) req.destroy(certNeeded());
      };
      socket.on('keylog', check);
      socket.once('secureConnect', check);
    };
    req.on('socket', (s) => watch(s as TLSSocket));
    req.setTimeout(options.timeoutMs, () => req.destroy(Object.assign(new Error(`no data for ${options.timeoutMs} ms`), { code: 'CB_TIMEOUT' })));
    req.on('error', (err) => fail(err));
    req.on('response', (res: IncomingMessage) => {
      responseStarted = true;
      void handleResponse(res, have, extra !== undefined, options, finish, fail);
    });
    req.end();
  });
}

async function handleResponse(
  res: IncomingMessage,
  have: number,
  askedRange: boolean,
  options: DownloadOptions,
  finish: (o: AttemptOutcome) => void,
  fail: (err: unknown, info?: { validators?: Validators; total?: number }) => void,
): Promise<void> {
  const status = res.statusCode ?? 0;
  if ([301, 302, 303, 307, 308].includes(status) && res.headers.location) {
    res.resume();
    return finish({ kind: 'redirect', location: res.headers.location });
  }
  const validators: Validators = {
    ...(typeof res.headers.etag === 'string' ? { etag: res.headers.etag } : {}),
    ...(typeof res.headers['last-modified'] === 'string' ? { lastModified: res.headers['last-modified'] } : {}),
  };
  let start: number;
  let total: number | undefined;
  if (status === 206 && askedRange) {
    const range = parseContentRange(res.headers['content-range']);
    if (!range || range.first !== have) {
      res.resume();
      return finish({ kind: 'failed', failure: { hr: HResult.BG_E_INVALID_SERVER_RESPONSE, transient: false, message: `Content-Range ${res.headers['content-range'] ?? '(none)'} does not continue at byte ${have}` } });
    }
    start = have;
    total = range.complete;
  } else if (status === 200) {
    // A full representation: a server without ranges, or one whose If-Range did not match.
    start = 0;
    const len = Number(res.headers['content-length']);
    total = Number.isFinite(len) && res.headers['content-length'] !== undefined ? len : undefined;
  } else if (status === 416 && askedRange) {
    // The partial file no longer fits the resource: start over on the next attempt.
    res.resume();
    try {
      closeSync(createPart(options.partPath));
    } catch (err) {
      return fail(err);
    }
    return finish({ kind: 'failed', failure: { hr: HResult.BG_E_INVALID_SERVER_RESPONSE, transient: true, message: 'range not satisfiable; restarting the file' } });
  } else {
    res.resume();
    return finish({ kind: 'failed', failure: classifyStatus(status), validators });
  }
  options.onConnected?.(validators);
  let transferred = start;
  options.onProgress?.(transferred, total);
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      transferred += chunk.length;
      options.onProgress?.(transferred, total);
      cb(null, chunk);
    },
  });
  let fd: number | undefined;
  try {
    fd = start === 0 ? createPart(options.partPath) : openPartToAppend(options.partPath, start);
    if (fd === undefined) {
      // Replaced, grown or linked since the request: start again from byte 0 on the next attempt.
      res.destroy();
      closeSync(createPart(options.partPath));
      return finish({ kind: 'failed', failure: { hr: HResult.BG_E_LOCAL_FILE_CHANGED, transient: true, message: `the partial file ${options.partPath} changed during the attempt; restarting it` }, validators });
    }
  } catch (err) {
    res.destroy();
    return fail(err, { validators, ...(total !== undefined ? { total } : {}) });
  }
  try {
    await pipeline(res, counter, createWriteStream(options.partPath, { fd }));
  } catch (err) {
    return fail(err, { validators, ...(total !== undefined ? { total } : {}) });
  }
  if (total !== undefined && transferred < total) {
    return fail(Object.assign(new Error(`connection closed at byte ${transferred} of ${total}`), { code: 'CB_PREMATURE_END' }), { validators, total });
  }
  finish({ kind: 'done', total: transferred, validators });
}
