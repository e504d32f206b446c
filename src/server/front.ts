// The front: createServer's `upstream` option (certbound serve --upstream). Every request that no
// route of the server answers (the reference routes keep precedence) goes to the upstream through
// @fastify/http-proxy (@fastify/reply-from on an undici keep-alive pool, ws for WebSocket), with
// the connection's one decision passed on as RFC 9440 Client-Cert / Client-Cert-Chain and
// certbound's verdict headers. Per-path policy reuses the plugin's route options: on-demand paths
// are routes with `clientCertificate: 'on-demand'` (body read, bounded, then renegotiation),
// required ones `clientCertificate: 'required'`; the rest follows the client-auth mode.
import { Readable } from 'node:stream';
import type { IncomingHttpHeaders, IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import httpProxy from '@fastify/http-proxy';
import { Pool } from 'undici';
import { DisplayString, serializeByteSequence, serializeItem, serializeList } from 'structured-headers';
import { DEFAULTS } from '../defaults.js';
import { certStatusName, hresultHex } from '../status.js';
import { checkUpstreamUrl, pathPolicy, type FrontOptions, type PathPolicy } from './front-policy.js';
import { refusalError } from './refusal.js';

/** The request headers certbound sets for the upstream; a client's copies never go through. */
export const FRONT_HEADERS = Object.freeze({
  clientCert: 'client-cert',
  clientCertChain: 'client-cert-chain',
  certFlags: 'certbound-client-cert-flags',
  identity: 'certbound-client-identity',
  connectionId: 'certbound-connection-id',
});

/** Hop-by-hop headers (RFC 9110 7.6.1, and the legacy ones proxies drop), never forwarded either way. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate', 'proxy-authorization', 'http2-settings']);
/** Set from the real connection: a client's copies are replaced, never appended to. */
const FORWARDING = new Set(['forwarded', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'x-forwarded-port', 'x-real-ip']);
const OWN = new Set<string>(Object.values(FRONT_HEADERS));
/**
 * Headers other proxies and platforms use for a client certificate, a TLS verdict, the client's
 * address or scheme, or a path override (IIS/Symfony X-Original-URL …): a client could forge
 * each, and certbound never sets them. Always removed (also any name starting with FOREIGN_PREFIXES).
 */
export const FOREIGN_HEADERS: ReadonlySet<string> = new Set([
  'x-forwarded-client-cert', 'x-ssl-client-cert', 'x-ssl-client-verify', 'x-arr-clientcert', 'x-client-cert', 'ssl-client-cert', 'ssl-client-verify',
  'x-client-verify', 'x-client-dn', 'x-ssl-cert',
  'x-original-url', 'x-original-uri', 'x-rewrite-url', 'x-forwarded-prefix', 'x-forwarded-uri', 'x-forwarded-path',
  'x-forwarded-ssl', 'x-forwarded-scheme', 'x-forwarded-server', 'x-forwarded-https', 'front-end-https', 'x-url-scheme',
  'x-client-ip', 'true-client-ip', 'cf-connecting-ip', 'x-cluster-client-ip', 'fastly-client-ip',
]);
export const FOREIGN_PREFIXES: readonly string[] = ['x-ssl-client-', 'ssl-client-', 'x-client-cert', 'client-cert'];
/** What the ws client sets itself on the upstream upgrade request. */
const WS_OWN = new Set(['host', 'sec-websocket-key', 'sec-websocket-version', 'sec-websocket-extensions', 'sec-websocket-accept', 'sec-websocket-protocol', 'content-length']);

/**
 * Whether a client's header is dropped. Names are compared with `_` read as `-` as well: some
 * upstream stacks (CGI, WSGI, PHP) map both to one variable, so `Client_Cert` would reach them as
 * Client-Cert. Every `certbound-*` header is certbound's; other proxies' certificate, address and
 * path-override headers (FOREIGN_HEADERS) are dropped too.
 */
function dropped(name: string, listed: ReadonlySet<string>): boolean {
  const n = name.toLowerCase();
  const dashed = n.includes('_') ? n.replace(/_/g, '-') : n;
  return HOP_BY_HOP.has(dashed) || FORWARDING.has(dashed) || OWN.has(dashed) || FOREIGN_HEADERS.has(dashed) || dashed.startsWith('certbound-')
    || FOREIGN_PREFIXES.some((p) => dashed.startsWith(p)) || listed.has(n) || listed.has(dashed);
}

/** The header names a Connection header lists (lower case). */
function connectionListed(value: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const v of value === undefined ? [] : Array.isArray(value) ? value : [value]) {
    for (const t of v.split(',')) {
      const name = t.trim().toLowerCase();
      if (name) out.add(name);
    }
  }
  return out;
}

/** A Forwarded parameter value: a token as it is, anything else as a quoted-string (IPv6 in brackets). */
function forwardedValue(v: string, address = false): string {
  if (address && v.includes(':')) return `"[${v}]"`;
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(v) ? v : `"${v.replace(/["\\]/g, '\\$&')}"`;
}

/** An identity as a structured-field string, or a Display String when it is not printable ASCII. */
function identityValue(identity: string): string {
  return /^[\x20-\x7e]*$/.test(identity) ? serializeItem(identity) : serializeItem(new DisplayString(identity));
}

/** The value of Certbound-Client-Cert-Flags: NO_CERTIFICATE, DENIED_BY_MAPPER, or the certFlags name (OK, CERT_E_EXPIRED, …). */
export function certFlagsValue(cert: ReturnType<FastifyRequest['clientCertificate']>): string {
  if (!cert) return 'NO_CERTIFICATE';
  if (cert.reason === 'denied-by-mapper' && cert.certFlags === 0) return 'DENIED_BY_MAPPER';
  return certStatusName(cert.certFlags) ?? hresultHex(cert.certFlags);
}

/**
 * The headers the upstream gets: the client's, less hop-by-hop ones, those its Connection header
 * names, forwarding headers and certbound's own (all replaced from the real connection), plus the
 * certificate headers when the connection's decision is authorized.
 */
export function upstreamHeaders(request: FastifyRequest, incoming: IncomingHttpHeaders, forWebSocket: boolean): Record<string, string | string[]> {
  const raw = request.raw.headers;
  const listed = connectionListed(raw.connection);
  const out: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || dropped(name, listed)) continue;
    if (forWebSocket && WS_OWN.has(name.toLowerCase())) continue;
    out[name] = value;
  }
  const socket = request.raw.socket;
  const ip = socket.remoteAddress ?? '';
  // HTTP/2 names the host in :authority.
  const authority = raw.host ?? raw[':authority'];
  const host = typeof authority === 'string' ? authority : undefined;
  const proto = (socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
  out.forwarded = `for=${forwardedValue(ip, true)};proto=${proto}${host !== undefined ? `;host=${forwardedValue(host)}` : ''}`;
  out['x-forwarded-for'] = ip;
  out['x-forwarded-proto'] = proto;
  if (host !== undefined) out['x-forwarded-host'] = host;
  const id = request.connectionId;
  if (id === undefined) return out;
  out[FRONT_HEADERS.connectionId] = id.toString();
  // The connection's one decision, final here (the plugin's onRequest waited for it).
  const cert = request.clientCertificate();
  if (!cert) {
    out[FRONT_HEADERS.certFlags] = 'NO_CERTIFICATE';
    return out;
  }
  Object.assign(out, certificateHeaders(cert));
  return out;
}

type Certificate = NonNullable<ReturnType<FastifyRequest['clientCertificate']>>;
/** The certificate headers of one decision (a handshake's view: a new handshake makes a new object), serialized once. */
const serialized = new WeakMap<Certificate, Readonly<Record<string, string>>>();

function certificateHeaders(cert: Certificate): Readonly<Record<string, string>> {
  let h = serialized.get(cert);
  if (h) return h;
  const out: Record<string, string> = { [FRONT_HEADERS.certFlags]: certFlagsValue(cert) };
  if (cert.authorized) {
    out[FRONT_HEADERS.clientCert] = serializeByteSequence(cert.der);
    const issuers = cert.chain.slice(1);
    if (issuers.length > 0) out[FRONT_HEADERS.clientCertChain] = serializeList(issuers.map((c) => [c, new Map()]));
    if (cert.identity !== null) out[FRONT_HEADERS.identity] = identityValue(cert.identity);
  }
  h = Object.freeze(out);
  serialized.set(cert, h);
  return h;
}

/** The upstream's response headers without hop-by-hop ones and those its Connection header names. */
function downstreamHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const listed = connectionListed(headers.connection);
  const out: IncomingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    const n = name.toLowerCase();
    if (!HOP_BY_HOP.has(n) && !listed.has(n)) out[name] = value;
  }
  return out;
}

const TIMEOUT_CODES = new Set(['FST_REPLY_FROM_GATEWAY_TIMEOUT', 'FST_REPLY_FROM_TIMEOUT', 'FST_REPLY_FROM_HTTP_REQUEST_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);

/** The cause's code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT, …), for the message and the log. */
function causeCode(err: { code?: string; cause?: unknown }): string {
  let e: unknown = err.cause ?? err;
  for (let i = 0; i < 4 && e && typeof e === 'object'; i++) {
    const c = e as { code?: unknown; cause?: unknown; errors?: unknown[] };
    if (typeof c.code === 'string' && !c.code.startsWith('FST_')) return c.code;
    e = c.cause ?? c.errors?.[0];
  }
  return err.code ?? 'error';
}

/** reply-from's failure as certbound's 502 / 504 (JSON body, stable code). */
function onUpstreamError(reply: FastifyReply, { error }: { error: Error & { code?: string; cause?: unknown } }): void {
  const code = causeCode(error);
  const timeout = TIMEOUT_CODES.has(error.code ?? '') || TIMEOUT_CODES.has(code);
  reply.send(refusalError(timeout ? 'CB_ERR_UPSTREAM_TIMEOUT' : 'CB_ERR_UPSTREAM_UNAVAILABLE', [code]));
}

/**
 * A request body read whole, within `limit`, before an on-demand path renegotiates (as the
 * plugin does for its routes), then handed on as a stream. Over the limit: 413 CB_ERR_BODY_TOO_LARGE.
 */
function boundedBodyParser(limit: number) {
  return (_request: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: unknown) => void) => {
    const declared = Number(payload.headers['content-length']);
    const tooLarge = () => refusalError('CB_ERR_BODY_TOO_LARGE', [limit]);
    if (Number.isFinite(declared) && declared > limit) return done(tooLarge());
    const chunks: Buffer[] = [];
    let seen = 0;
    const onData = (c: Buffer) => {
      seen += c.length;
      if (seen > limit) {
        payload.off('data', onData);
        payload.pause();
        done(tooLarge());
        return;
      }
      chunks.push(c);
    };
    payload.on('data', onData);
    payload.once('end', () => { if (seen <= limit) done(null, Readable.from([Buffer.concat(chunks)], { objectMode: false })); });
    payload.once('error', (err) => done(err));
  };
}

export interface FrontPluginOptions {
  front: FrontOptions;
  /** Largest body an on-demand path reads before renegotiating. Default: DEFAULTS.bodyLimitBytes. */
  bodyLimit?: number;
}

const asList = <T>(v: T | T[] | undefined): T[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Installs the proxy routes (`/*`, every method @fastify/http-proxy proxies, WebSocket too) on `app`. */
export default async function frontPlugin(app: FastifyInstance, { front, bodyLimit = DEFAULTS.bodyLimitBytes }: FrontPluginOptions): Promise<void> {
  const origin = checkUpstreamUrl(front.url);
  const secure = origin.protocol === 'https:';
  const tls = secure ? {
    ...(front.ca !== undefined ? { ca: asList(front.ca).map(String) } : {}),
    ...(front.cert !== undefined ? { cert: String(front.cert), key: String(front.key) } : {}),
  } : {};
  const connectTimeout = front.connectTimeout ?? DEFAULTS.upstreamConnectTimeoutMs;
  const timeout = front.timeout ?? DEFAULTS.upstreamTimeoutMs;
  // One keep-alive pool for every proxy route (reply-from takes it as its undici instance).
  const pool = new Pool(origin.origin, {
    connections: front.connections ?? DEFAULTS.upstreamConnections,
    headersTimeout: timeout,
    bodyTimeout: timeout,
    connect: { timeout: connectTimeout, ...tls, ...(secure ? { servername: origin.hostname } : {}) },
  });
  const policyOf = pathPolicy(front.onDemandPaths, front.requirePaths);
  if (policyOf) {
    app.addConstraintStrategy({
      name: 'certboundFront',
      storage() {
        const m = new Map<string, unknown>();
        return { get: (k: string) => (m.get(k) ?? null) as never, set: (k: string, v: unknown) => { m.set(k, v); } };
      },
      deriveConstraint: (req: IncomingMessage) => policyOf(req.url ?? '/'),
      mustMatchWhenDerived: false,
    } as never);
  }
  const wsClientOptions = {
    ...tls,
    ...(secure ? { servername: origin.hostname } : {}),
    handshakeTimeout: connectTimeout,
    rewriteRequestHeaders: (_headers: unknown, request: FastifyRequest) => upstreamHeaders(request, request.raw.headers, true),
  };
  const classes: PathPolicy[] = policyOf ? ['default', ...(front.onDemandPaths?.length ? ['on-demand' as const] : []), ...(front.requirePaths?.length ? ['required' as const] : [])] : ['default'];
  for (const policy of classes) {
    await app.register(async (scope) => {
      if (policy === 'on-demand') {
        // The body is read (bounded) before the renegotiation: a parser that buffers it.
        scope.removeAllContentTypeParsers();
        scope.addContentTypeParser('*', boundedBodyParser(bodyLimit));
        // The rest of a body over the limit stays unread: the connection closes after the 413, as the plugin's own on-demand routes do.
        scope.addHook('onError', (request, reply, error, done) => {
          if ((error as { code?: string }).code === 'CB_ERR_BODY_TOO_LARGE') {
            reply.header('connection', 'close');
            reply.raw.once('finish', () => request.raw.socket.end());
          }
          done();
        });
      }
      await scope.register(httpProxy, {
        upstream: origin.origin,
        undici: pool as never,
        // reference routes (static paths such as / and /connection) win over the wildcard.
        routes: ['/*'],
        websocket: true,
        wsClientOptions: wsClientOptions as never,
        disableRequestLogging: true,
        ...(policy === 'on-demand' ? { proxyPayloads: false } : {}),
        ...(policy !== 'default' ? { constraints: { certboundFront: policy }, config: { clientCertificate: policy } } : {}),
        replyOptions: {
          rewriteRequestHeaders: (request: FastifyRequest, headers: IncomingHttpHeaders) => upstreamHeaders(request, headers, false),
          rewriteHeaders: (headers: IncomingHttpHeaders) => downstreamHeaders(headers),
          onError: onUpstreamError as never,
        },
      } as never);
    });
  }
  app.addHook('onClose', async () => { await pool.close().catch(() => {}); });
}
