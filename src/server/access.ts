// The one rule that turns a connection's trust decision into "serve" or "refuse" for a
// request: the handshake mode, the route's requirement and the decision. A pure function,
// tested with tables (test/access.test.ts) and drawn in docs/client-auth-modes.md.
import type { ErrorCode } from '../errors.js';
import { certStatusName, hresultHex } from '../status.js';
import type { ClientAuthMode } from '../tls/client-auth.js';
import type { TrustDecision } from '../tls/client-certificate.js';

/** Route option `config.clientCertificate`, and 'none' for routes without it. */
export type RouteRequirement = 'none' | 'required' | 'on-demand';
export const ROUTE_REQUIREMENTS = ['required', 'on-demand'] as const;

/** A refusal: the error to answer with (403 unless the code says otherwise) and whether the connection closes after it. */
export interface Refusal {
  readonly code: ErrorCode;
  readonly args: readonly string[];
  /** Extra JSON fields of the 403 body (certFlags, certFlagsName). */
  readonly extra: Readonly<Record<string, unknown>>;
  /** `require` mode ends the connection after the answer, as the handshake would have. */
  readonly close: boolean;
}

export interface AccessInput {
  readonly mode: ClientAuthMode;
  readonly requirement: RouteRequirement;
  /** False for a request that did not come over TLS (plain HTTP, a TLS-terminating proxy). */
  readonly tls: boolean;
  /** The connection's decision; null when there is no certificate. */
  readonly decision: TrustDecision | null;
  /** CertboundPluginOptions.rejectDeniedByMapper: whether mode-level checks refuse a certificate the mapper denied. */
  readonly rejectDeniedByMapper: boolean;
}

function refusalFor(d: TrustDecision | null, close: boolean): Refusal {
  if (!d || d.reason === 'no-certificate') return { code: 'CB_ERR_CLIENT_CERT_REQUIRED', args: [], extra: {}, close };
  if (d.reason === 'denied-by-mapper') return { code: 'CB_ERR_CLIENT_CERT_DENIED', args: [], extra: {}, close };
  const name = certStatusName(d.certFlags) ?? hresultHex(d.certFlags);
  return { code: 'CB_ERR_CLIENT_CERT_UNTRUSTED', args: [name], extra: { certFlags: d.certFlags, certFlagsName: name }, close };
}

/**
 * Whether a request may be served. Call it with the final decision (after revocation) and,
 * for an `on-demand` route, after the negotiation (before it, a connection without a
 * certificate is not refused: it is asked for one).
 * - A route marked `required` or `on-demand` needs an authorized certificate, in every mode.
 * - `require`: every request needs one; a refusal closes the connection.
 * - `optional`: a certificate that is there must be authorized.
 * - `none`, `accept-untrusted`: other routes serve whatever came (the application reads the decision).
 * - Without TLS, a route marked `required`/`on-demand` and every request in `require` mode are refused.
 */
export function accessRefusal(input: AccessInput): Refusal | null {
  const { mode, requirement, decision } = input;
  const close = mode === 'require';
  if (!input.tls) {
    return requirement !== 'none' || mode === 'require' ? { code: 'CB_ERR_TLS_REQUIRED', args: [], extra: {}, close: false } : null;
  }
  if (requirement !== 'none') return decision?.authorized ? null : refusalFor(decision, close);
  if (mode === 'none' || mode === 'accept-untrusted') return null;
  if (!decision || decision.reason === 'no-certificate') return mode === 'require' ? refusalFor(null, close) : null;
  if (decision.authorized) return null;
  if (decision.reason === 'denied-by-mapper' && !input.rejectDeniedByMapper) return null;
  return refusalFor(decision, close);
}
