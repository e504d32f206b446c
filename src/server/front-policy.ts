// The rules of the front (certbound serve --upstream) that need no proxy library: the options,
// their checks, and which certificate policy a request path falls under. Kept light: the
// CLI's config check and createServer's option check load this, the proxy (front.ts) only
// when an upstream is configured.
import { CertboundError } from '../errors.js';
import { parseCertificates, parsePrivateKey } from '../tls/pem.js';

type Pem = string | Buffer;

/** createServer's `upstream` option (CLI: --upstream and the --upstream-* / --*-path flags). */
export interface FrontOptions {
  /** The upstream origin: `http://host:port` or `https://host:port` (no path, query or credentials). */
  url: string;
  /** CAs (PEM) that the https upstream's certificate must chain to. Default: Node's root store. */
  ca?: Pem | Pem[];
  /** Client certificate (PEM, with `key`) that certbound presents to an https upstream. */
  cert?: Pem;
  key?: Pem;
  /** Path prefixes or globs that ask for a client certificate by renegotiation before proxying. */
  onDemandPaths?: string[];
  /** Path prefixes or globs that are refused (403) without an authorized client certificate. */
  requirePaths?: string[];
  /** Time limit (ms) to open a connection to the upstream: 504 after it. */
  connectTimeout?: number;
  /** Time limit (ms) for the upstream's response headers, and for each pause in its body: 504 (headers) or a cut response (body). */
  timeout?: number;
  /** Most connections kept open to the upstream (keep-alive pool). */
  connections?: number;
}

/** The policy a proxied path falls under: its route requirement (src/server/access.ts) or the mode's. */
export type PathPolicy = 'on-demand' | 'required' | 'default';

function bad(key: string, why: string): never {
  throw new CertboundError('CB_ERR_INVALID_OPTION', [key, why]);
}

/** Checks an upstream URL: http(s), a host, no path beyond `/`, no query, fragment or credentials. Returns its origin. */
export function checkUpstreamUrl(value: string, key = 'upstream.url'): URL {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    bad(key, `${JSON.stringify(value)} is not a URL (expected http://host:port or https://host:port)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') bad(key, `${JSON.stringify(value)}: only http:// and https:// upstreams`);
  if (u.username || u.password) bad(key, 'no credentials in the URL');
  if ((u.pathname !== '/' && u.pathname !== '') || u.search || u.hash) bad(key, `${JSON.stringify(value)}: an origin only (no path, query or fragment); request paths go upstream unchanged`);
  return u;
}

/** Checks a --on-demand-path / --require-path pattern: starts with `/`, no query, no `..`. */
export function checkPathPattern(p: string, key: string): void {
  if (typeof p !== 'string' || !p.startsWith('/')) bad(key, `${JSON.stringify(p)}: a path prefix or glob starting with /`);
  if (/[?#\\]/.test(p) || p.split('/').some((s) => s === '..' || s === '.')) bad(key, `${JSON.stringify(p)}: no query, fragment, backslash or dot segment`);
}

/**
 * The path a policy is decided on: percent-decoded, backslashes as slashes, repeated slashes
 * collapsed, dot segments resolved, `;params` of segments dropped, lower case. Every form an
 * upstream might read as the same path lands on one string, so `/%61dmin/`, `//admin/`,
 * `/x/../admin/`, `/admin;a=b/` and `/ADMIN/` are all `/admin/` here. A path that does not
 * decode is matched as it is (the proxy refuses it with 400 before anything goes upstream).
 */
export function normalizePath(url: string): string {
  // An absolute-form target (GET http://host/admin/ HTTP/1.1) is judged on its path.
  let path = url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const q = path.search(/[?#]/);
  if (q >= 0) path = path.slice(0, q);
  // Decoded until stable (at most a few rounds): a double-encoded %2561 is still /a.
  for (let i = 0; i < 3 && path.includes('%'); i++) {
    try {
      path = decodeURIComponent(path);
    } catch {
      break;
    }
  }
  const out: string[] = [];
  const segments = path.replace(/\\/g, '/').split('/');
  segments.forEach((raw, i) => {
    const s = raw.split(';')[0] ?? '';
    if (s === '..') out.pop();
    else if (s !== '.' && (s !== '' || i === segments.length - 1)) out.push(s);
  });
  return ('/' + out.join('/')).toLowerCase();
}

/** A pattern as a RegExp on normalized paths: `**` any characters, `*` any but `/`, `?` one but `/`; without a wildcard, a prefix. */
export function patternRegExp(pattern: string): RegExp {
  const p = pattern.toLowerCase();
  if (!/[*?]/.test(p)) {
    const esc = p.replace(/[.+^${}()|[\]\\]/g, '\\$&');
    // `/admin` covers /admin and /admin/...; `/admin/` covers what is under it (and /admin itself).
    const base = esc.endsWith('/') && esc.length > 1 ? esc.slice(0, -1) : esc;
    return base === '/' || base === '' ? /^\// : new RegExp(`^${base}(?:/|$)`);
  }
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as string;
    if (c === '*' && p[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The policy function of a front: on-demand patterns first (they also require), then required ones, else the mode's. */
export function pathPolicy(onDemand: readonly string[] = [], required: readonly string[] = []): ((url: string) => PathPolicy) | undefined {
  if (onDemand.length === 0 && required.length === 0) return undefined;
  const od = onDemand.map(patternRegExp);
  const rq = required.map(patternRegExp);
  return (url) => {
    const path = normalizePath(url);
    if (od.some((r) => r.test(path))) return 'on-demand';
    if (rq.some((r) => r.test(path))) return 'required';
    return 'default';
  };
}

/**
 * Checks createServer's `upstream` option beyond its schema: the URL, the path patterns, and the
 * upstream leg's TLS material (only for https, cert and key together, each parses, the key is the
 * certificate's). Throws CB_ERR_INVALID_OPTION / CB_ERR_PEM_INVALID / CB_ERR_KEY_MISMATCH.
 */
export function checkFrontOptions(front: FrontOptions): void {
  const u = checkUpstreamUrl(front.url);
  (front.onDemandPaths ?? []).forEach((p, i) => checkPathPattern(p, `upstream.onDemandPaths[${i}]`));
  (front.requirePaths ?? []).forEach((p, i) => checkPathPattern(p, `upstream.requirePaths[${i}]`));
  const tlsGiven = ['ca', 'cert', 'key'].filter((k) => front[k as 'ca' | 'cert' | 'key'] !== undefined);
  if (u.protocol === 'http:' && tlsGiven.length > 0) bad(`upstream.${tlsGiven[0] ?? 'ca'}`, 'is for an https:// upstream; the upstream is http://');
  if ((front.cert === undefined) !== (front.key === undefined)) bad(front.cert === undefined ? 'upstream.key' : 'upstream.cert', 'cert and key go together');
  const list = front.ca === undefined ? [] : Array.isArray(front.ca) ? front.ca : [front.ca];
  list.forEach((pem, i) => parseCertificates(String(pem), 'CA', `(upstream.ca${list.length > 1 ? `, entry ${i}` : ''})`));
  if (front.cert !== undefined && front.key !== undefined) {
    const leaf = parseCertificates(String(front.cert), 'certificate', '(upstream.cert)')[0];
    const key = parsePrivateKey(front.key, '(upstream.key)');
    if (!leaf?.checkPrivateKey(key)) throw new CertboundError('CB_ERR_KEY_MISMATCH', ['(upstream.key)', '(upstream.cert)']);
  }
}
