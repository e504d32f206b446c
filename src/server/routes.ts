// The reference server's routes: GET / (an HTML page about the visitor's connection) and
// GET /connection (the same as JSON). GET /healthz is under-pressure's status route.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { certStatusName, hresultHex } from '../status.js';
import type { OcspStapleSummary } from '../ocsp/server-stapling.js';
import { channelBindingsJson, type ChannelBindingsJson } from '../cbt/server-bindings.js';

/** JSON of GET /connection. Field names are a public contract: add, never rename. */
export interface ConnectionInfo {
  protocol: string | null;
  cipher: string | null;
  /** Decimal string of the 64-bit connection id. */
  connectionId: string | null;
  resumed: boolean;
  /** Handshakes the server ran on this connection (1 + renegotiations). */
  handshakes: number;
  /** The connection's channel bindings as the server sees them: lowercase hex, null where undefined (docs/channel-binding.md). */
  channelBindings: ChannelBindingsJson;
  clientCertificate: {
    subject: string;
    issuer: string;
    serialNumber: string;
    sha1: string;
    sha256: string;
    certFlags: number;
    /** Symbolic name of certFlags ('OK', 'CERT_E_EXPIRED', …). */
    certFlagsName: string;
    deniedByMapper: boolean;
    identity: string | null;
    validFrom: string;
    validTo: string;
    chainLength: number;
    /** The revocation check when the server runs one ({ status, source, reason }), else null. */
    revocation: { status: number; source: string; reason: string | null } | null;
    /** The connection's one decision: verified, not revoked, not denied by the mapper (docs/client-auth-modes.md). */
    authorized: boolean;
    /** Why: 'authorized', 'untrusted', 'revoked', 'revocation-unknown', 'denied-by-mapper', … */
    reason: string;
    /** Present (true) when a trusted proxy forwarded this certificate for the request (docs/front.md#behind-a-front). */
    forwarded?: true;
  } | null;
  /** The OCSP staple of the server certificate this connection was served (docs/ocsp.md): state, and why nothing is stapled; null only under the plugin without its `ocsp` option. */
  ocsp: OcspStapleSummary | null;
}

function ocspOf(request: FastifyRequest): OcspStapleSummary | null {
  const ocspStaple = (request.server as { ocspStaple?: (fingerprint?: string) => OcspStapleSummary }).ocspStaple;
  if (typeof ocspStaple !== 'function') return null;
  // The certificate actually served on this connection, never a guess: a summary of another
  // certificate (the staplers answer their first one for a fingerprint they do not hold) is not shown.
  const served = request.connection?.socket.getX509Certificate();
  const fingerprint = served ? served.fingerprint256.replace(/:/g, '').toLowerCase() : undefined;
  const summary = ocspStaple.call(request.server, fingerprint);
  if (summary.fingerprint === null || summary.fingerprint === fingerprint) return summary;
  return {
    state: 'not-stapled', stapled: false, reason: 'not-a-stapled-certificate', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null, url: null,
    fingerprint: fingerprint ?? null, serial: served ? served.serialNumber.toLowerCase() : null,
  };
}

/** Builds the /connection JSON for a request. */
export function connectionInfo(request: FastifyRequest): ConnectionInfo {
  const entry = request.connection;
  // The request's certificate: the connection's, or the one a trusted proxy forwarded for this request (trustedProxies).
  const cert = request.clientCertificate();
  return {
    protocol: entry?.handshake.protocol ?? null,
    cipher: entry?.handshake.cipher ?? null,
    connectionId: entry ? entry.id.toString() : null,
    resumed: entry?.handshake.resumed ?? false,
    handshakes: entry?.handshake.sequence ?? 0,
    channelBindings: channelBindingsJson(request.channelBindings()),
    clientCertificate: cert && {
      subject: cert.subject,
      issuer: cert.issuer,
      serialNumber: cert.serialNumber,
      sha1: cert.sha1,
      sha256: cert.sha256,
      certFlags: cert.certFlags,
      certFlagsName: certStatusName(cert.certFlags) ?? hresultHex(cert.certFlags),
      deniedByMapper: cert.deniedByMapper,
      identity: cert.identity,
      validFrom: cert.validFrom.toISOString(),
      validTo: cert.validTo.toISOString(),
      chainLength: cert.chain.length,
      revocation: cert.revocation && { ...cert.revocation },
      authorized: cert.authorized,
      reason: cert.reason,
      ...(cert.forwarded ? { forwarded: true } : {}),
    },
    // The staple of the certificate this connection was served with. The plugin without its
    // `ocsp` option has no stapler.
    ocsp: ocspOf(request),
  };
}

const ESC: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESC[c] ?? c);
}

function row(label: string, value: string): string {
  return `<tr><th scope="row">${escapeHtml(label)}</th><td>${escapeHtml(value)}</td></tr>`;
}

/** The HTML page of GET /: no JavaScript, readable as is. */
export function connectionPage(info: ConnectionInfo): string {
  const c = info.clientCertificate;
  const certRows = c
    ? [
        row('Verdict', c.certFlags === 0 ? 'Trusted (certFlags 0)' : `${c.certFlagsName} (${hresultHex(c.certFlags)})`),
        row('Subject', c.subject.replace(/\n/g, ', ')),
        row('Issuer', c.issuer.replace(/\n/g, ', ')),
        row('Serial number', c.serialNumber),
        row('SHA-1 thumbprint', c.sha1),
        row('SHA-256', c.sha256),
        row('Valid', `${c.validFrom} to ${c.validTo}`),
        row('Identity', c.identity ?? (c.deniedByMapper ? 'denied by the mapper' : 'not mapped')),
      ].join('')
    : '<tr><td colspan="2" class="note">No client certificate was presented on this connection. <a href="/whoami">/whoami</a> asks for one (TLS 1.2), or connect with one configured.</td></tr>';
  const verdict = !c
    ? { cls: 'none', text: `Connected over ${info.protocol ?? 'TLS'} without a client certificate.` }
    : c.authorized
      ? { cls: 'ok', text: `Connected over ${info.protocol ?? 'TLS'} with a trusted client certificate${c.identity ? ` mapped to ${c.identity}` : ''}.` }
      : { cls: 'bad', text: `Connected over ${info.protocol ?? 'TLS'} with a client certificate that is not accepted: ${c.deniedByMapper ? 'denied by the mapper' : c.certFlags !== 0 ? c.certFlagsName : c.reason}.` };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>certbound: your connection</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
table{border-collapse:collapse;width:100%;margin-bottom:1.5rem}th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{width:12rem;color:#444;font-weight:600}td{font-family:ui-monospace,monospace;word-break:break-all}h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem}
td.note{font-family:inherit;word-break:normal}.verdict{padding:.7rem 1rem;border-radius:.4rem;border:1px solid}.verdict.ok{background:#e8f5e9;border-color:#81c784}.verdict.bad{background:#fdecea;border-color:#e57373}.verdict.none{background:#f3f4f6;border-color:#c7cbd1}</style>
</head><body>
<h1>certbound: your connection</h1>
<p class="verdict ${verdict.cls}">${escapeHtml(verdict.text)}</p>
<h2>Connection</h2>
<table>${row('Connection id', info.connectionId ?? '-')}${row('Protocol', info.protocol ?? '-')}${row('Cipher', info.cipher ?? '-')}${row('Resumed', info.resumed ? 'yes' : 'no')}${row('Handshakes', String(info.handshakes))}</table>
<h2>Channel bindings</h2>
<table>${Object.entries(info.channelBindings).map(([type, hex]) => row(type, hex ?? 'undefined on this connection')).join('')}</table>
<h2>Client certificate</h2>
<table>${certRows}</table>
<h2>OCSP staple of the server certificate</h2>
<table>${info.ocsp && info.ocsp.state !== 'off' ? row('Stapled', info.ocsp.stapled ? `yes (${info.ocsp.certStatus ?? '-'})` : `no: ${info.ocsp.reason ?? '-'} (last status ${info.ocsp.certStatus ?? 'none yet'})`) + row('This update', info.ocsp.thisUpdate ?? '-') + row('Next update', info.ocsp.nextUpdate ?? '-') + row('Next refresh', info.ocsp.nextRefresh ?? '-') + row('Responder', info.ocsp.url ?? '-') : '<tr><td colspan="2">OCSP stapling is off.</td></tr>'}</table>
<p><a href="/whoami">Who am I?</a> (asks for a certificate on demand) · <a href="/connection">This page as JSON</a> · <a href="/healthz">Health</a></p>
</body></html>`;
}

/** Registers GET /, GET /connection and GET /whoami. */
export async function referenceRoutes(app: FastifyInstance): Promise<void> {
  // Negotiates a certificate when the connection has none (TLS 1.2), else 403 with the reason.
  app.get('/whoami', { config: { clientCertificate: 'on-demand' } }, async (request) => {
    const info = connectionInfo(request);
    return { connectionId: info.connectionId, protocol: info.protocol, handshakes: info.handshakes, ...info.clientCertificate };
  });
  app.get('/connection', async (request) => connectionInfo(request));
  app.get('/', async (request, reply) => reply.type('text/html; charset=utf-8').send(connectionPage(connectionInfo(request))));
}
