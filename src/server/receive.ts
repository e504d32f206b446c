// receiveClientCertificate, shaped like HTTP.sys HttpReceiveClientCertificate
// (seed 000): (queue, connectionId, flags, bufferSize[, overlapped]). Statuses are returned,
// never thrown. Buffer rules (x64 sizes): HTTP_SSL_CLIENT_CERT_INFO's fixed part is 32
// bytes, HTTP_REQUEST_CHANNEL_BIND_STATUS's 24.
import { Win32 } from '../status.js';
import {
  CHANNEL_BIND_STATUS_FIXED_SIZE as HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, type HttpRequestChannelBindStatus,
} from '../cbt/channel-bind-status.js';
import type { ClientCertificate, ConnectionEntry, ConnectionRegistry, TrustReason } from './registry.js';

// HTTP_REQUEST_CHANNEL_BIND_STATUS, its size and the flag that asks for it are defined once in
// src/cbt/channel-bind-status.ts; exported here under the names this module has always had.
export { HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, type HttpRequestChannelBindStatus };
/** Every flag bit this implementation knows. */
const KNOWN_FLAGS = HTTP_RECEIVE_SECURE_CHANNEL_TOKEN;

/** sizeof(HTTP_SSL_CLIENT_CERT_INFO) on x64. */
export const HTTP_SSL_CLIENT_CERT_INFO_SIZE = 32;

/** HTTP_SSL_CLIENT_CERT_INFO. Under ERROR_MORE_DATA only `certEncodedSize` is filled. */
export interface HttpSslClientCertInfo {
  /** CERT_E_* verdict, 0 when the chain verified. */
  certFlags: number;
  /** Size of the DER leaf certificate. */
  certEncodedSize: number;
  /** The DER leaf certificate (null when only the size was written). */
  certEncoded: Buffer | null;
  /** The mapped identity (HTTP.sys: an access token handle), null when unmapped. */
  token: string | null;
  certDeniedByMapper: boolean;
  /** certbound addition: the chain captured at the handshake, leaf first. */
  chain: readonly Buffer[] | null;
  /**
   * certbound addition: the connection's one decision — true only when the chain verified,
   * revocation (when checked) passed and the mapper did not deny it. False under ERROR_MORE_DATA.
   */
  authorized: boolean;
  /** certbound addition: why (`TrustReason`: 'authorized', 'untrusted', 'revoked', …); null under ERROR_MORE_DATA. */
  reason: TrustReason | null;
}

export interface ReceiveResult {
  /** A Win32 status (src/status.ts). */
  status: number;
  /** Bytes written: fixed part + variable part on success, the fixed part under ERROR_MORE_DATA, else 0. */
  bytesReceived: number;
  /** flags 0 */
  certInfo?: HttpSslClientCertInfo;
  /** flags HTTP_RECEIVE_SECURE_CHANNEL_TOKEN */
  channelBindStatus?: HttpRequestChannelBindStatus;
}

/** Answers flags 0x1 for a connection; installed by the channel-binding layer. */
export type ChannelTokenProvider = (entry: ConnectionEntry, bufferSize: number) => ReceiveResult;
/**
 * Obtains a client certificate for a connection that has none (on-demand negotiation);
 * resolves when the negotiation has ended with a Win32 status to complete with, or null to
 * answer from the connection (its certificate, or ERROR_NOT_FOUND).
 */
export type CertificateNegotiator = (entry: ConnectionEntry) => Promise<number | null>;

const kQueue = Symbol('certbound.queue');
let queueCounter = 0;

/**
 * The request queue handle of a server (HTTP.sys: the handle from HttpCreateRequestQueue).
 * Opaque to applications: pass it back to receiveClientCertificate.
 */
export class RequestQueue {
  readonly [kQueue] = true;
  /** A printable name for logs. */
  readonly name: string;
  /** @internal */ readonly registry: ConnectionRegistry;
  /** @internal */ channelTokenProvider: ChannelTokenProvider | undefined;
  /** @internal */ negotiator: CertificateNegotiator | undefined;
  #closed = false;

  constructor(registry: ConnectionRegistry, name?: string) {
    this.registry = registry;
    this.name = name ?? `queue-${++queueCounter}`;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** After close, every call with this handle answers ERROR_INVALID_PARAMETER. */
  close(): void {
    this.#closed = true;
  }
}

function invalid(): ReceiveResult {
  return { status: Win32.ERROR_INVALID_PARAMETER, bytesReceived: 0 };
}

/** The flags-0 answer for a certificate (or none) and a buffer size: the seed's size rules. */
export function certInfoResult(cert: ClientCertificate | null, bufferSize: number): ReceiveResult {
  if (bufferSize < HTTP_SSL_CLIENT_CERT_INFO_SIZE) return { status: Win32.ERROR_INSUFFICIENT_BUFFER, bytesReceived: 0 };
  if (!cert) return { status: Win32.ERROR_NOT_FOUND, bytesReceived: 0 };
  const need = HTTP_SSL_CLIENT_CERT_INFO_SIZE + cert.der.length;
  if (bufferSize < need) {
    return {
      status: Win32.ERROR_MORE_DATA,
      bytesReceived: HTTP_SSL_CLIENT_CERT_INFO_SIZE,
      certInfo: { certFlags: 0, certEncodedSize: cert.der.length, certEncoded: null, token: null, certDeniedByMapper: false, chain: null, authorized: false, reason: null },
    };
  }
  return {
    status: Win32.NO_ERROR,
    bytesReceived: need,
    certInfo: {
      certFlags: cert.certFlags,
      certEncodedSize: cert.der.length,
      certEncoded: cert.der,
      token: cert.identity,
      certDeniedByMapper: cert.deniedByMapper,
      chain: cert.chain,
      authorized: cert.authorized,
      reason: cert.reason,
    },
  };
}

type Checked = { entry: ConnectionEntry; queue: RequestQueue } | ReceiveResult;

function check(queue: unknown, connectionId: unknown, flags: unknown, bufferSize: unknown): Checked {
  if (!(queue instanceof RequestQueue) || queue.closed) return invalid();
  let id: bigint;
  if (typeof connectionId === 'bigint') id = connectionId;
  else if (typeof connectionId === 'number' && Number.isSafeInteger(connectionId)) id = BigInt(connectionId);
  else return invalid();
  if (typeof flags !== 'number' || !Number.isInteger(flags) || (flags & ~KNOWN_FLAGS) !== 0 || flags < 0) return invalid();
  if (typeof bufferSize !== 'number' || !Number.isInteger(bufferSize) || bufferSize < 0) return invalid();
  const entry = queue.registry.get(id);
  if (!entry || entry.closed || entry.socket.destroyed) return invalid();
  return { entry, queue };
}

function answer(queue: RequestQueue, entry: ConnectionEntry, flags: number, bufferSize: number): ReceiveResult {
  if (entry.closed || entry.socket.destroyed) return invalid();
  if (flags & HTTP_RECEIVE_SECURE_CHANNEL_TOKEN) {
    if (bufferSize < HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE) return { status: Win32.ERROR_INSUFFICIENT_BUFFER, bytesReceived: 0 };
    return queue.channelTokenProvider ? queue.channelTokenProvider(entry, bufferSize) : { status: Win32.ERROR_NOT_FOUND, bytesReceived: 0 };
  }
  return certInfoResult(entry.clientCertificate(), bufferSize);
}

/** Completion callback of the overlapped form (GetOverlappedResult's answer). */
export type ReceiveCallback = (result: ReceiveResult) => void;

/**
 * The OVERLAPPED analogue: pass one to receiveClientCertificate, which answers
 * ERROR_IO_PENDING; `result` settles with the completion (it never rejects).
 */
export class Overlapped {
  readonly result: Promise<ReceiveResult>;
  #resolve!: (r: ReceiveResult) => void;
  #done: ReceiveResult | undefined;
  constructor() {
    this.result = new Promise((resolve) => { this.#resolve = resolve; });
  }
  /** The completion once it happened, else undefined (HasOverlappedIoCompleted). */
  get completion(): ReceiveResult | undefined {
    return this.#done;
  }
  /** @internal */
  complete(r: ReceiveResult): void {
    if (this.#done) return;
    this.#done = r;
    this.#resolve(r);
  }
}

/**
 * HttpReceiveClientCertificate.
 *
 * Synchronous form (no `overlapped`): returns the result at once. A connection without a
 * certificate answers ERROR_NOT_FOUND; the synchronous form never negotiates (JavaScript
 * cannot block): use the overlapped form for on-demand certificates. Inside a request the
 * connection's decision is final (requests wait for it); elsewhere, while a revocation check
 * is still running, certFlags is CRYPT_E_NO_REVOCATION_CHECK and `authorized` false.
 *
 * Overlapped form (`overlapped` is an Overlapped or a callback): argument errors are returned
 * at once (ERROR_INVALID_PARAMETER, nothing completes); otherwise the call returns
 * ERROR_IO_PENDING and completes later, after negotiating a certificate when the connection
 * has none and the server can negotiate, and once the connection's decision is final
 * (revocation included).
 */
export function receiveClientCertificate(queue: RequestQueue, connectionId: bigint | number, flags: number, bufferSize: number): ReceiveResult;
export function receiveClientCertificate(queue: RequestQueue, connectionId: bigint | number, flags: number, bufferSize: number, overlapped: Overlapped | ReceiveCallback): number;
export function receiveClientCertificate(queue: RequestQueue, connectionId: bigint | number, flags: number, bufferSize: number, overlapped?: Overlapped | ReceiveCallback): ReceiveResult | number {
  const c = check(queue, connectionId, flags, bufferSize);
  if (!('entry' in c)) return overlapped ? c.status : c;
  if (!overlapped) return answer(c.queue, c.entry, flags, bufferSize);
  if (!(overlapped instanceof Overlapped) && typeof overlapped !== 'function') return Win32.ERROR_INVALID_PARAMETER;
  const complete = (r: ReceiveResult) => {
    if (overlapped instanceof Overlapped) overlapped.complete(r);
    else overlapped(r);
  };
  const { entry, queue: q } = c;
  const wantsCertificate = (flags & HTTP_RECEIVE_SECURE_CHANNEL_TOKEN) === 0 && bufferSize >= HTTP_SSL_CLIENT_CERT_INFO_SIZE;
  const negotiator = wantsCertificate && !entry.hasCertificate() ? q.negotiator : undefined;
  // The certificate answer waits for the connection's final decision (its revocation check).
  const run = async (): Promise<ReceiveResult> => {
    if (negotiator) {
      const status = await negotiator(entry);
      if (status !== null) return { status, bytesReceived: 0 };
    }
    if (wantsCertificate) await entry.settle();
    return answer(q, entry, flags, bufferSize);
  };
  run().then(
    (r) => process.nextTick(complete, r),
    () => process.nextTick(complete, { status: Win32.ERROR_OPERATION_ABORTED, bytesReceived: 0 }),
  );
  return Win32.ERROR_IO_PENDING;
}

/** Promise convenience over the overlapped form: resolves with the completion (or the immediate error). */
export function receiveClientCertificateAsync(queue: RequestQueue, connectionId: bigint | number, flags: number, bufferSize: number): Promise<ReceiveResult> {
  const ov = new Overlapped();
  const status = receiveClientCertificate(queue, connectionId, flags, bufferSize, ov);
  if (status !== Win32.ERROR_IO_PENDING) return Promise.resolve({ status, bytesReceived: 0 });
  return ov.result;
}
