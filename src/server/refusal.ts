// Refusals answer through fastify's error handling. Each code of src/errors.ts that can refuse a
// request is a @fastify/error class (its code, HTTP status and message template), so an app's
// setErrorHandler sees the error with `code` and `statusCode`; fastify's default handler answers
// it, and restoreRefusalBody keeps the body certbound always answered (certFlags and the like).
import createError from '@fastify/error';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CertboundError, ERRORS, type ErrorCode } from '../errors.js';

/** A refusal as an app's error handler sees it: `code`, `statusCode`, `message`, and the extra body fields. */
export interface RefusalError extends CertboundError {
  /** The extra JSON fields of the default answer (certFlags and certFlagsName, or the channel-binding reason). */
  readonly body: Readonly<Record<string, unknown>>;
  /** CERT_E_* status of the refused certificate (CB_ERR_CLIENT_CERT_UNTRUSTED). */
  readonly certFlags?: number;
  /** Its name (CERT_E_EXPIRED, …). */
  readonly certFlagsName?: string;
  /** The channel-binding reason (CB_ERR_CHANNEL_BINDING). */
  readonly reason?: string;
}

type ErrorClass = new (...args: unknown[]) => CertboundError;
const classes = new Map<ErrorCode, ErrorClass>();

/**
 * The error a request is refused with: an instance of the code's @fastify/error class (also
 * `instanceof CertboundError`, so isCertboundError holds), carrying `extra` both as properties
 * and as the extra fields of the default body.
 */
export function refusalError(code: ErrorCode, args: readonly (string | number)[] = [], extra: Readonly<Record<string, unknown>> = {}): RefusalError {
  let cls = classes.get(code);
  if (!cls) {
    // @fastify/error fills its messages with util.format: '%s' per argument, as ERRORS does.
    cls = createError(code, ERRORS[code].message, ERRORS[code].statusCode, CertboundError as unknown as ErrorConstructor) as unknown as ErrorClass;
    classes.set(code, cls);
  }
  const err = new cls(...args);
  Object.defineProperty(err, 'name', { value: 'CertboundError', enumerable: false, configurable: true, writable: true });
  return Object.assign(err, extra, { body: Object.freeze({ ...extra }) }) as RefusalError;
}

const kRefusal = Symbol('certbound.refusal');
type Refused = FastifyReply & { [kRefusal]?: RefusalError };

/** Remembers the refusal on the reply, for restoreRefusalBody. */
export function markRefused(reply: FastifyReply, err: RefusalError): void {
  (reply as Refused)[kRefusal] = err;
}

/**
 * The onSend hook: when fastify's default error handler answered a refusal (its body is exactly
 * { statusCode, code, error, message } for that error), the body is certbound's own:
 * the same four fields, then the refusal's extra ones. Any other answer (an app's error handler,
 * a response schema) is left as it is.
 */
export function restoreRefusalBody(_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload?: unknown) => void): void {
  const err = (reply as Refused)[kRefusal];
  if (!err || typeof payload !== 'string') return done(null, payload);
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload);
  } catch {
    return done(null, payload);
  }
  const p = parsed as Record<string, unknown>;
  const isDefault = typeof parsed === 'object' && parsed !== null && Object.keys(p).sort().join() === 'code,error,message,statusCode'
    && p.code === err.code && p.message === err.message && p.statusCode === reply.statusCode;
  if (!isDefault) return done(null, payload);
  done(null, JSON.stringify({ statusCode: p.statusCode, code: p.code, error: p.error, message: p.message, ...err.body }));
}
