// Extended Protection for Authentication in the shape of HTTP.sys's HTTP_CHANNEL_BIND_INFO:
// a hardening level, flags and service names, and one check that says whether a channel
// binding a client supplies (inside its authentication exchange) matches this connection.
// https://learn.microsoft.com/windows/win32/api/http/ns-http-http_channel_bind_info
// https://learn.microsoft.com/windows/win32/api/http/ne-http-http_authentication_hardening_levels
import { timingSafeEqual } from 'node:crypto';
import { applicationData, CHANNEL_BINDING_TYPES, isChannelBindingType, type ChannelBindingType, type ChannelBindings } from './binding.js';

/** HTTP_AUTHENTICATION_HARDENING_LEVELS (http.h). */
export const HttpAuthenticationHardening = Object.freeze({
  /** Not hardened: no channel binding or service name checks. */
  Legacy: 0,
  /** Partly hardened: clients that send a binding are checked, clients that send none are served. */
  Medium: 1,
  /** Hardened: only clients that send a binding (and service name, where checked) are served. */
  Strict: 2,
} as const);
export type HardeningLevel = (typeof HttpAuthenticationHardening)[keyof typeof HttpAuthenticationHardening];

/** HTTP_CHANNEL_BIND_* flags of HTTP_CHANNEL_BIND_INFO.Flags (http.h). */
export const HttpChannelBind = Object.freeze({
  /** TLS ends at a proxy: the exact binding match is bypassed, the binding must not be "unbound", the service name is checked. */
  PROXY: 0x1,
  /** The service name check always succeeds. */
  NO_SERVICE_NAME_CHECK: 0x2,
  /** Dotless service names (e.g. HTTP/intranet) may be configured. */
  DOTLESS_SERVICE: 0x4,
  /** The per-request secure channel binding is handed to the application (HTTP_REQUEST_CHANNEL_BIND_STATUS.ChannelToken). */
  SECURE_CHANNEL_TOKEN: 0x8,
  /** The client's service name is handed to the application (HTTP_REQUEST_CHANNEL_BIND_STATUS.ServiceName). */
  CLIENT_SERVICE: 0x10,
  /** With PROXY only: the "not unbound" check is skipped too (proxied TLS and plain traffic both served). */
  PROXY_COHOSTING: 0x20,
} as const);
const KNOWN_FLAGS = Object.values(HttpChannelBind).reduce((a, b) => a | b, 0);

/** HTTP_CHANNEL_BIND_INFO, plus which binding types the check accepts. */
export interface ChannelBindInfo {
  readonly hardening: HardeningLevel;
  /** OR of HttpChannelBind flags. */
  readonly flags: number;
  /** Accepted service names, e.g. 'HTTP/www.example.com'; compared case-insensitively. */
  readonly serviceNames: readonly string[];
  /** Binding types a client may supply. Default ['tls-server-end-point'] (the one HTTP.sys uses). */
  readonly bindingTypes?: readonly ChannelBindingType[];
}

/** What a client supplied in its authentication exchange. */
export interface SuppliedBinding {
  /** Default 'tls-server-end-point'. */
  readonly type?: ChannelBindingType;
  /**
   * The binding value (raw, or the `<type>:` application-data form); 'unbound' when the client
   * supports channel binding but says it has no secure channel; undefined when it sent none
   * (a client without Extended Protection).
   */
  readonly value?: Buffer | 'unbound';
  /** The service name the client targeted, e.g. 'HTTP/www.example.com'. */
  readonly serviceName?: string;
}

/** Stable reasons for a refusal. */
export type ExtendedProtectionReason =
  | 'EP_INVALID_POLICY'
  | 'EP_CBT_MISSING'
  | 'EP_CBT_UNBOUND'
  | 'EP_CBT_TYPE'
  | 'EP_CBT_UNAVAILABLE'
  | 'EP_CBT_MISMATCH'
  | 'EP_SERVICE_NAME_MISSING'
  | 'EP_SERVICE_NAME_MISMATCH';

export type ExtendedProtectionResult =
  | {
    readonly ok: true;
    /** True when the supplied binding was compared with the connection's. */
    readonly bindingChecked: boolean;
    /** True when the supplied service name was found in the policy's list. */
    readonly serviceNameChecked: boolean;
    /** The client's service name, when the policy has CLIENT_SERVICE. */
    readonly serviceName?: string;
  }
  | { readonly ok: false; readonly reason: ExtendedProtectionReason; readonly message: string };

const DEFAULT_TYPES: readonly ChannelBindingType[] = ['tls-server-end-point'];

function isDotless(serviceName: string): boolean {
  const host = serviceName.slice(serviceName.indexOf('/') + 1).replace(/:\d+$/, '');
  return !host.includes('.');
}

/** The problems of a policy, empty when it is valid (as HttpSetServerSessionProperty would refuse it). */
export function channelBindInfoProblems(policy: ChannelBindInfo): string[] {
  const problems: string[] = [];
  if (!(Object.values(HttpAuthenticationHardening) as number[]).includes(policy.hardening)) problems.push(`unknown hardening level ${String(policy.hardening)}`);
  if (!Number.isInteger(policy.flags) || policy.flags < 0 || (policy.flags & ~KNOWN_FLAGS) !== 0) problems.push(`unknown flag bits in 0x${(policy.flags >>> 0).toString(16)}`);
  if ((policy.flags & HttpChannelBind.PROXY_COHOSTING) && !(policy.flags & HttpChannelBind.PROXY)) problems.push('PROXY_COHOSTING is valid only with PROXY');
  for (const name of policy.serviceNames) {
    if (typeof name !== 'string' || name.trim() === '') problems.push('empty service name');
    else if (isDotless(name) && !(policy.flags & HttpChannelBind.DOTLESS_SERVICE)) problems.push(`dotless service name ${name} needs DOTLESS_SERVICE`);
  }
  for (const type of policy.bindingTypes ?? DEFAULT_TYPES) if (!isChannelBindingType(type)) problems.push(`unknown binding type ${String(type)}`);
  if (policy.bindingTypes && policy.bindingTypes.length === 0) problems.push('bindingTypes is empty');
  return problems;
}

function equal(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function refuse(reason: ExtendedProtectionReason, message: string): ExtendedProtectionResult {
  return { ok: false, reason, message };
}

/**
 * Checks a client-supplied channel binding and service name against this connection under
 * `policy`. Legacy accepts everything. Medium checks what the client sends and tolerates what
 * it does not send (a client without Extended Protection). Strict requires the binding, and
 * the service name wherever service names are checked. PROXY replaces the exact binding match
 * by "not unbound" (the TLS channel ends at the proxy) and turns the service name check on;
 * PROXY_COHOSTING also accepts "unbound". Service names are checked when PROXY is set or the
 * list is not empty, unless NO_SERVICE_NAME_CHECK.
 */
export function checkChannelBinding(policy: ChannelBindInfo, connection: ChannelBindings, supplied: SuppliedBinding): ExtendedProtectionResult {
  const problems = channelBindInfoProblems(policy);
  if (problems.length > 0) return refuse('EP_INVALID_POLICY', `Invalid Extended Protection policy: ${problems.join('; ')}`);
  if (policy.hardening === HttpAuthenticationHardening.Legacy) return { ok: true, bindingChecked: false, serviceNameChecked: false };
  const strict = policy.hardening === HttpAuthenticationHardening.Strict;
  const proxy = (policy.flags & HttpChannelBind.PROXY) !== 0;
  const cohosting = proxy && (policy.flags & HttpChannelBind.PROXY_COHOSTING) !== 0;

  let bindingChecked = false;
  if (supplied.value === undefined) {
    if (strict) return refuse('EP_CBT_MISSING', 'The client sent no channel binding and the policy is Strict');
  } else if (supplied.value === 'unbound') {
    if (!cohosting) return refuse('EP_CBT_UNBOUND', 'The client says it has no secure channel, but this request came over TLS');
  } else if (!proxy) {
    const type = supplied.type ?? 'tls-server-end-point';
    const accepted = policy.bindingTypes ?? DEFAULT_TYPES;
    if (!isChannelBindingType(type) || !accepted.includes(type)) {
      return refuse('EP_CBT_TYPE', `Binding type ${String(type)} is not accepted (accepted: ${accepted.join(', ')}; known: ${CHANNEL_BINDING_TYPES.join(', ')})`);
    }
    const expected = connection[type];
    if (expected.value === undefined) return refuse('EP_CBT_UNAVAILABLE', `This connection has no ${type} binding: ${expected.reason}: ${expected.message}`);
    if (!equal(supplied.value, expected.value) && !equal(supplied.value, applicationData(type, expected.value))) {
      return refuse('EP_CBT_MISMATCH', `The client's ${type} binding does not match this connection`);
    }
    bindingChecked = true;
  }

  let serviceNameChecked = false;
  const checkNames = !(policy.flags & HttpChannelBind.NO_SERVICE_NAME_CHECK) && (proxy || policy.serviceNames.length > 0);
  if (checkNames) {
    if (supplied.serviceName === undefined) {
      if (strict) return refuse('EP_SERVICE_NAME_MISSING', 'The client sent no service name and the policy is Strict');
    } else {
      const wanted = supplied.serviceName.toLowerCase();
      if (!policy.serviceNames.some((name) => name.toLowerCase() === wanted)) {
        return refuse('EP_SERVICE_NAME_MISMATCH', `Service name ${supplied.serviceName} is not one of this server's`);
      }
      serviceNameChecked = true;
    }
  }
  const serviceName = policy.flags & HttpChannelBind.CLIENT_SERVICE ? supplied.serviceName : undefined;
  return serviceName === undefined ? { ok: true, bindingChecked, serviceNameChecked } : { ok: true, bindingChecked, serviceNameChecked, serviceName };
}

/** Whether the policy hands the token (SECURE_CHANNEL_TOKEN) and the client's service name (CLIENT_SERVICE) to the application. */
export function policyExposes(policy: ChannelBindInfo): { readonly token: boolean; readonly serviceName: boolean } {
  return { token: (policy.flags & HttpChannelBind.SECURE_CHANNEL_TOKEN) !== 0, serviceName: (policy.flags & HttpChannelBind.CLIENT_SERVICE) !== 0 };
}
