// negotiateClientCertificate, shaped like IIS IHttpRequest::NegotiateClientCertificate
// (seed 003): asks the client of a request for a certificate even when the server ignores
// or merely accepts certificates. HRESULTs are returned, never thrown.
import type { FastifyRequest } from 'fastify';
import { HResult, Win32 } from '../status.js';
import { negotiateCertificate, type NegotiationOptions, type NegotiationResult, type NegotiationStatus } from '../tls/renegotiate.js';
import type { ClientCertificate, ConnectionEntry } from './registry.js';

/** The HRESULT IIS would return for a negotiation outcome. */
export function negotiationHResult(status: NegotiationStatus): number {
  switch (status) {
    case 'certificate':
    case 'no-certificate': // IIS: S_OK; GetClientCertificate then finds none.
      return HResult.S_OK;
    case 'tls13':
    case 'http2':
      return HResult.E_NOT_SUPPORTED;
    case 'timeout':
      return HResult.E_TIMEOUT;
    case 'closed':
      return HResult.E_ABORTED;
    case 'limit':
    case 'error':
      return HResult.E_FAIL;
  }
}

/**
 * The Win32 status that an overlapped receiveClientCertificate completes with after a
 * negotiation, or null to answer from the connection as usual (certificate → NO_ERROR,
 * none → ERROR_NOT_FOUND).
 */
export function negotiationWin32Override(status: NegotiationStatus): number | null {
  switch (status) {
    case 'tls13':
    case 'http2':
      return Win32.ERROR_NOT_SUPPORTED;
    case 'timeout':
      return Win32.ERROR_TIMEOUT;
    case 'closed':
    case 'error':
      return Win32.ERROR_OPERATION_ABORTED;
    default:
      return null;
  }
}

export interface NegotiateCompletion {
  readonly hr: number;
  readonly result: NegotiationResult;
  /** The connection's client certificate with its final decision (revocation included), or null. */
  readonly certificate: ClientCertificate | null;
  /** True when the connection has an authorized certificate (IIS: the certificate verified and mapped). */
  readonly authorized: boolean;
}

export interface NegotiateAsyncAnswer {
  /** S_OK when the negotiation started or was not needed; an error HRESULT otherwise. */
  readonly hr: number;
  /** True when `completion` settles later (IIS: pfCompletionPending). */
  readonly completionPending: boolean;
  readonly completion: Promise<NegotiateCompletion>;
}

function entryOf(request: FastifyRequest): ConnectionEntry | undefined {
  return request.connection;
}

function closed(): NegotiationResult {
  return Object.freeze({ status: 'closed' as const, durationMs: 0, detail: 'not a TLS connection' });
}

/**
 * NegotiateClientCertificate(fAsync = false): resolves when the negotiation is over. The
 * request body must have been read (call it from a handler or preHandler hook).
 */
export function negotiateClientCertificate(request: FastifyRequest, fAsync?: false, options?: NegotiationOptions): Promise<NegotiateCompletion>;
/** NegotiateClientCertificate(fAsync = true): returns at once with completionPending. */
export function negotiateClientCertificate(request: FastifyRequest, fAsync: true, options?: NegotiationOptions): NegotiateAsyncAnswer;
export function negotiateClientCertificate(request: FastifyRequest, fAsync = false, options: NegotiationOptions = {}): Promise<NegotiateCompletion> | NegotiateAsyncAnswer {
  const entry = entryOf(request);
  const pending = entry && !entry.hasCertificate() && !entry.negotiation;
  const run: Promise<NegotiationResult> = entry ? negotiateCertificate(entry, options) : Promise.resolve(closed());
  // The completion carries the connection's decision once it is final (revocation included).
  const completion = run.then(async (result) => {
    const certificate = entry ? await entry.settle() : null;
    return Object.freeze({ hr: negotiationHResult(result.status), result, certificate, authorized: certificate?.authorized ?? false });
  });
  if (!fAsync) return completion;
  return Object.freeze({ hr: HResult.S_OK, completionPending: Boolean(pending) || Boolean(entry?.negotiation), completion });
}
