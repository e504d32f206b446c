// The rules of the front (certbound serve --upstream) that need no proxy library: the options,
// their checks, and which certificate policy a request path falls under. Kept light: the
// CLI's config check and createServer's option check load this, the proxy (front.ts) only
// when an upstream is configured.
import { DEFAULTS } from '../defaults.js';
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

/** Most percent-decoding rounds a path is judged after; a path that still decodes further gets the strictest policy. */
export const DECODE_ROUNDS = 4;

/**
 * One percent-decoding round, byte-wise: every valid `%XX` becomes its byte (`%uXXXX` its UTF-8 bytes), an invalid escape
 * (`%ZZ`, a lone `%`) stays as it is without stopping the others. The result is a byte string
 * (one char per byte, latin1), as Node hands over a request target.
 */
export function decodeOnce(path: string): string {
  return path
    // IIS's %uXXXX, as the UTF-8 bytes of the character.
    .replace(/%u([0-9a-f]{4})/gi, (_, h: string) => Buffer.from(String.fromCharCode(parseInt(h, 16)), 'utf8').toString('latin1'))
    .replace(/%([0-9a-f]{2})/gi, (_, h: string) => String.fromCharCode(parseInt(h, 16)));
}

/** Overlong UTF-8 forms of ASCII (`\xc0\xae` for `.`, `\xc0\xaf` for `/`), read as ASCII by some old stacks. */
function foldOverlong(bytes: string): string {
  return bytes.replace(/[\xc0\xc1][\x80-\xbf]/g, (m) => String.fromCharCode(((m.charCodeAt(0) & 0x1f) << 6) | (m.charCodeAt(1) & 0x3f)));
}

interface Shape { slashes: boolean; dots: boolean; params: boolean; trim: boolean }

/**
 * One reading of a decoded path: repeated slashes collapsed and lower case always; optionally
 * backslashes as slashes, dot segments resolved, `;params` of segments dropped, and trailing
 * dots and white space of each segment dropped (as Windows stacks do with `/admin./`, `/admin%20/`).
 */
function shape(path: string, o: Shape): string {
  const segments = (o.slashes ? path.replace(/\\/g, '/') : path).split('/');
  const out: string[] = [];
  segments.forEach((raw, i) => {
    let s = o.params ? (raw.split(';')[0] ?? '') : raw;
    if (o.trim && s !== '.' && s !== '..') s = s.replace(/[.\s]+$/, '');
    if (o.dots && s === '..') out.pop();
    else if ((!o.dots || s !== '.') && (s !== '' || i === segments.length - 1)) out.push(s);
  });
  return ('/' + out.join('/')).toLowerCase();
}

const SHAPES: readonly Shape[] = (() => {
  const out: Shape[] = [];
  for (const slashes of [true, false]) for (const dots of [true, false]) for (const params of [true, false]) for (const trim of [true, false]) out.push({ slashes, dots, params, trim });
  return out;
})();

/** The path of a request target: an absolute-form target (GET http://host/admin/ HTTP/1.1) is judged on its path; no query or fragment. */
function targetPath(url: string): string {
  const path = url.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i, '');
  const q = path.search(/[?#]/);
  return q >= 0 ? path.slice(0, q) : path;
}

/**
 * The readings of a request path a backend might route on: the raw path and each of up to
 * DECODE_ROUNDS percent-decoding rounds (byte-wise, overlong UTF-8 folded), each with and
 * without backslashes as slashes, dot-segment resolution, `;params` and trailing dots/spaces
 * of segments (every combination); a `#` both as a fragment and as a character. `suspect` is set
 * when the path still decodes after the last round, a reading holds a NUL or another control
 * character, or a path to fold is longer than DEFAULTS.upstreamPathJudgeMaxBytes.
 */
export function pathReadings(url: string): { readings: Set<string>; suspect: boolean } {
  const hash = url.indexOf('#');
  if (hash >= 0) {
    // `#` has no place in a request target: judged both as a fragment and as part of the path.
    const cut = pathReadings(url.slice(0, hash));
    const whole = pathReadings(url.slice(0, hash) + url.slice(hash).replace(/#/g, '%23'));
    for (const r of whole.readings) cut.readings.add(r);
    return { readings: cut.readings, suspect: cut.suspect || whole.suspect };
  }
  let path = targetPath(url);
  const readings = new Set<string>();
  // Nothing to decode, resolve, drop or fold: one reading.
  if (!/[^a-z0-9/_~!$&'()*+,=:@-]/i.test(path)) return { readings: readings.add(('/' + path).replace(/\/+/g, '/').toLowerCase()), suspect: false };
  // Bounded work per request: a long path with something to fold is not read 160 ways.
  if (path.length > DEFAULTS.upstreamPathJudgeMaxBytes) return { readings, suspect: true };
  let suspect = false;
  for (let round = 0; ; round++) {
    const folded = foldOverlong(path);
    // eslint-disable-next-line no-control-regex -- control characters are what is looked for
    if (/[\x00-\x1f\x7f]/.test(folded)) suspect = true;
    for (const form of folded === path ? [path] : [path, folded]) {
      // Only the readings this form can tell apart (the others are the same string).
      const relevant = (o: Shape) => (form.includes('\\') || o.slashes) && (form.includes('.') || o.dots) && (form.includes(';') || o.params) && (/[.\s]/.test(form) || !o.trim);
      for (const o of SHAPES) if (relevant(o)) readings.add(shape(form, o));
    }
    const next = decodeOnce(path);
    if (next === path) break;
    if (round === DECODE_ROUNDS) {
      suspect = true;
      break;
    }
    path = next;
  }
  return { readings, suspect };
}

/**
 * The path a policy was decided on before every reading was judged (kept for the log and
 * callers): decoded until stable (DECODE_ROUNDS, byte-wise), backslashes as slashes, repeated
 * slashes collapsed, dot segments resolved, `;params` dropped, lower case.
 */
export function normalizePath(url: string): string {
  let path = targetPath(url);
  for (let i = 0; i < DECODE_ROUNDS; i++) {
    const next = decodeOnce(path);
    if (next === path) break;
    path = next;
  }
  return shape(foldOverlong(path), { slashes: true, dots: true, params: true, trim: false });
}

/** A pattern's text as a byte string (UTF-8 bytes as latin1 chars), as paths are matched. */
const bytesOf = (s: string) => Buffer.from(s, 'utf8').toString('latin1');

/**
 * A pattern as a RegExp on a reading of a path (lower case).
 * - Without a wildcard, a prefix: `/admin` and `/admin/` cover `/admin`, `/admin/…` and
 *   `/admin.…` (a format suffix such as `/admin.json`), not `/administrator`.
 * - With one: `*` any characters but `/`, `?` one but `/`, `/**\/` zero or more whole segments
 *   (`/**\/secret` covers `/secret`), a trailing `/**` the path itself and everything under it,
 *   `**` elsewhere any characters. A trailing `/` of the pattern is optional. What the glob
 *   matches is covered with a trailing `/`, a format suffix `.…`, and everything under it
 *   (`/api/**\/private` covers `/api/private`, `/api/v1/private/`, `/api/v1/private.json` and
 *   `/api/v1/private/x`), as a backend may route each of them to the same handler.
 */
export function patternRegExp(pattern: string): RegExp {
  let p = bytesOf(pattern).toLowerCase();
  const esc = (t: string) => t.replace(/[.+^${}()|[\]\\/]/g, '\\$&');
  if (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  if (!/[*?]/.test(p)) return p === '/' ? /^\// : new RegExp(`^${esc(p)}(?:[/.].*)?$`, 's');
  let re = '';
  for (let i = 0; i < p.length; i++) {
    const c = p[i] as string;
    if (c === '/' && p.startsWith('/**/', i)) {
      re += '(?:/.*)?/';
      i += 3;
    } else if (c === '/' && p.startsWith('/**', i) && i + 3 === p.length) {
      re += '(?:/.*)?';
      i += 2;
    } else if (c === '*' && p[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += esc(c);
  }
  return new RegExp(`^${re}(?:[/.].*)?$`, 's');
}

/**
 * The policy function of a front. Every reading of the path (pathReadings) is judged and the
 * strictest policy wins: on-demand if any reading matches an on-demand pattern (those also
 * require), else required if any matches a required one, else the mode's. A suspect path
 * (still encoded after DECODE_ROUNDS rounds, a control character) gets the strictest policy
 * configured.
 */
export function pathPolicy(onDemand: readonly string[] = [], required: readonly string[] = []): ((url: string) => PathPolicy) | undefined {
  if (onDemand.length === 0 && required.length === 0) return undefined;
  const od = onDemand.map(patternRegExp);
  const rq = required.map(patternRegExp);
  const strictest: PathPolicy = od.length > 0 ? 'on-demand' : 'required';
  return (url) => {
    const { readings, suspect } = pathReadings(url);
    if (suspect) return strictest;
    let policy: PathPolicy = 'default';
    for (const path of readings) {
      if (od.some((r) => r.test(path))) return 'on-demand';
      if (policy === 'default' && rq.some((r) => r.test(path))) policy = 'required';
    }
    return policy;
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
