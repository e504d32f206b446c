// Route option `config.channelBinding`: the route is served only when the client proves,
// under an Extended Protection policy (HTTP_CHANNEL_BIND_INFO), a channel binding that
// matches this connection. By default the client sends it in a header:
//   Channel-Binding: tls-exporter=<base64>[; service=HTTP/host.example]
import type { FastifyRequest } from 'fastify';
import { isChannelBindingType, type ChannelBindingType } from '../cbt/binding.js';
import { checkChannelBinding, HttpAuthenticationHardening, type ChannelBindInfo, type SuppliedBinding } from '../cbt/extended-protection.js';

export interface RouteChannelBinding {
  /**
   * Extended Protection policy. Default: Strict, no flags, no service names, binding types
   * tls-exporter and tls-unique (the ones unique to a connection; tls-server-end-point only
   * names the server certificate).
   */
  policy?: ChannelBindInfo;
  /** Reads what the client supplied. Default: the `Channel-Binding` header (see above). */
  extract?: (request: FastifyRequest) => SuppliedBinding;
}

export const DEFAULT_ROUTE_POLICY: ChannelBindInfo = Object.freeze({
  hardening: HttpAuthenticationHardening.Strict,
  flags: 0,
  serviceNames: Object.freeze([]) as readonly string[],
  bindingTypes: Object.freeze(['tls-exporter', 'tls-unique'] as ChannelBindingType[]),
});

/** Parses `Channel-Binding: <type>=<base64>[; service=<name>]`; a malformed header supplies nothing. */
export function suppliedFromHeader(request: FastifyRequest): SuppliedBinding {
  const raw = request.headers['channel-binding'];
  if (typeof raw !== 'string') return {};
  const [binding = '', ...params] = raw.split(';').map((s) => s.trim());
  const eq = binding.indexOf('=');
  const type = binding.slice(0, eq);
  const value = binding.slice(eq + 1);
  if (eq <= 0 || !isChannelBindingType(type) || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(value)) return {};
  const service = params.find((p) => p.toLowerCase().startsWith('service='))?.slice('service='.length);
  return { type, value: Buffer.from(value, 'base64'), ...(service ? { serviceName: service } : {}) };
}

/** Null when the request carries a valid binding for its connection, else why not. */
export function routeChannelBindingRefusal(request: FastifyRequest, option: RouteChannelBinding | true): { reason: string; message: string } | null {
  const cfg = option === true ? {} : option;
  const supplied = (cfg.extract ?? suppliedFromHeader)(request);
  const result = checkChannelBinding(cfg.policy ?? DEFAULT_ROUTE_POLICY, request.channelBindings(), supplied);
  return result.ok ? null : { reason: result.reason, message: result.message };
}
