// One OCSP retrieval over HTTP (RFC 6960 appendix A, RFC 5019 5): GET when the base64
// request is under 255 bytes, POST otherwise, with one time limit for the whole exchange.
// Failures are returned as stable reason codes, never thrown: a retrieval that fails is a
// normal event for the scheduler, not an exception.
import http from 'node:http';
import https from 'node:https';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';

export type FetchFailure =
  /** Connection refused (nothing listens). */
  | 'fetch-refused'
  /** The whole exchange took longer than the time limit. */
  | 'fetch-timeout'
  /** Any other network error (reset, DNS, TLS). */
  | 'fetch-network'
  /** An HTTP status other than 200. */
  | 'fetch-http-status'
  /** A text/* answer (an HTML error page, a captive portal). */
  | 'fetch-content-type'
  /** A body larger than the limit. */
  | 'fetch-too-large';

export type FetchResult =
  | { readonly ok: true; readonly body: Buffer; readonly method: 'GET' | 'POST'; readonly durationMs: number }
  | { readonly ok: false; readonly reason: FetchFailure; readonly detail: string; readonly method: 'GET' | 'POST'; readonly durationMs: number };

export interface FetchOptions {
  /** Time limit of the whole retrieval (ms): SrvOcspRespUrlRetrievalTimeoutMilliseconds. */
  timeoutMs: number;
  /** 'auto' (default): GET when the base64 request is < 255 bytes (RFC 5019 5), else POST. */
  method?: 'auto' | 'GET' | 'POST';
  /** Largest body accepted (bytes). Default: 65536. */
  maxBytes?: number;
  /** Aborts the retrieval (the handle was closed); it then resolves as 'fetch-network'. */
  signal?: AbortSignal;
}

/** The function the handle calls to retrieve; tests and embedders may supply their own. */
export type OcspFetcher = (url: string, requestDer: Buffer, options: FetchOptions) => Promise<FetchResult>;

/** RFC 5019 5: GET is used when the base64-encoded request is less than 255 bytes. */
export const GET_LIMIT_BYTES = 255;

/** The GET URL of a request: the base64 DER, URL-encoded, appended as one path segment. */
export function getUrl(url: string, requestDer: Buffer): string {
  return (url.endsWith('/') ? url : url + '/') + encodeURIComponent(requestDer.toString('base64'));
}

/** Retrieves an OCSP response for `requestDer` from `url`. Resolves, never rejects. */
export const fetchOcsp: OcspFetcher = (url, requestDer, options) => {
  const b64Length = Math.ceil(requestDer.length / 3) * 4;
  const method = options.method === 'GET' || options.method === 'POST' ? options.method : (b64Length < GET_LIMIT_BYTES ? 'GET' : 'POST');
  return method === 'GET'
    ? httpExchange(getUrl(url, requestDer), 'GET', undefined, { accept: 'application/ocsp-response' }, options)
    : httpExchange(url, 'POST', requestDer, { 'content-type': 'application/ocsp-request', 'content-length': String(requestDer.length), accept: 'application/ocsp-response' }, options);
};

/** Retrieves a CRL (or any small binary document) with a GET. Resolves, never rejects. */
export function fetchDocument(url: string, options: FetchOptions): Promise<FetchResult> {
  return httpExchange(url, 'GET', undefined, {}, options);
}

function httpExchange(url: string, method: 'GET' | 'POST', body: Buffer | undefined, headers: Record<string, string>, options: FetchOptions): Promise<FetchResult> {
  const started = Date.now();
  const maxBytes = options.maxBytes ?? DEFAULTS.ocspMaxResponseBytes;
  return new Promise<FetchResult>((resolve) => {
    let settled = false;
    const done = (r: { ok: true; body: Buffer } | { ok: false; reason: FetchFailure; detail: string }) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve({ ...r, method, durationMs: Date.now() - started });
    };
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      resolve({ ok: false, reason: 'fetch-network', detail: `invalid URL ${url}`, method, durationMs: 0 });
      return;
    }
    const mod = target.protocol === 'https:' ? https : http;
    const req = mod.request(target, { method, headers, agent: false });
    const timer = setTimeout(() => done({ ok: false, reason: 'fetch-timeout', detail: `no complete answer within ${options.timeoutMs} ms` }), options.timeoutMs);
    timer.unref();
    const onAbort = () => done({ ok: false, reason: 'fetch-network', detail: 'aborted' });
    if (options.signal?.aborted) onAbort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => options.signal?.removeEventListener('abort', onAbort));
    req.on('error', (err: NodeJS.ErrnoException) => {
      done({ ok: false, reason: err.code === 'ECONNREFUSED' ? 'fetch-refused' : 'fetch-network', detail: err.code ?? err.message });
    });
    req.on('response', (res) => {
      if (res.statusCode !== 200) {
        done({ ok: false, reason: 'fetch-http-status', detail: `HTTP ${res.statusCode ?? '?'}` });
        return;
      }
      const type = String(res.headers['content-type'] ?? '').toLowerCase();
      if (type.startsWith('text/')) {
        done({ ok: false, reason: 'fetch-content-type', detail: `content-type ${type}` });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > maxBytes) done({ ok: false, reason: 'fetch-too-large', detail: `more than ${maxBytes} bytes` });
        else chunks.push(c);
      });
      res.on('end', () => done({ ok: true, body: Buffer.concat(chunks) }));
      res.on('error', (err: NodeJS.ErrnoException) => done({ ok: false, reason: 'fetch-network', detail: err.code ?? err.message }));
      res.on('aborted', () => done({ ok: false, reason: 'fetch-network', detail: 'response aborted' }));
    });
    req.end(body);
  });
}

/**
 * Wraps a fetcher so that at most `max` retrievals run at once; the others wait for a slot
 * (their time limit starts when they run). Many certificates opened together, or whose
 * schedules coincide, then never send a responder a burst.
 */
export function limitConcurrency(fetcher: OcspFetcher, max: number): OcspFetcher {
  if (!Number.isInteger(max) || max < 1) throw new CertboundError('CB_ERR_INVALID_OPTION', ['maxConcurrentRetrievals', `must be an integer >= 1, got ${max}`]);
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (url, der, options) => {
    if (running >= max) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await fetcher(url, der, options);
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}
