// certbound's public API.
export { createServer, type CreateServerOptions, type CertboundServer, type OcspStapleDecoration, type ServerMetrics, type ServerMetricsOptions, type ServerExpiryOptions } from './server/server.js';
export { expiryFindings, type ExpiryFinding, type ExpiryItem, type ExpiryKind, type ExpiryThresholds } from './server/expiry.js';
export { certboundPlugin, certboundPlugin as default, ocspStapleOf, type CertboundPluginOptions, type CertboundDecoration, type PluginOcspOptions } from './server/plugin.js';
export { RELOAD_CHANNEL, reloadTrust, type ReloadInput, type ReloadResult, type ReloadedCertificate, type ReloadEvent } from './server/reload.js';
export {
  receiveClientCertificate,
  receiveClientCertificateAsync,
  Overlapped,
  RequestQueue,
  certInfoResult,
  HTTP_RECEIVE_SECURE_CHANNEL_TOKEN,
  HTTP_SSL_CLIENT_CERT_INFO_SIZE,
  HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE,
  type ReceiveResult,
  type ReceiveCallback,
  type HttpSslClientCertInfo,
  type HttpRequestChannelBindStatus,
} from './server/receive.js';
export { ConnectionRegistry, ConnectionEntry, setConnectionIdPrefix, type ClientCertificate, type HandshakeRecord } from './server/registry.js';
export { connectionInfo, type ConnectionInfo } from './server/routes.js';
export { Win32, CertStatus, certStatusName, win32StatusName, hresultHex, type Win32Status, type CertStatusValue } from './status.js';
export { CertboundError, ERRORS, isCertboundError, type ErrorCode } from './errors.js';
export { DEFAULTS } from './defaults.js';
export { CLIENT_AUTH_MODES, type ClientAuthMode } from './tls/client-auth.js';
export { certFlagsFor, VERIFY_ERROR_TO_CERT_STATUS } from './tls/verdict.js';
export {
  compileMapper,
  normalizeThumbprint,
  type MapperConfig,
  type MapperInput,
  type MapperResult,
  type CertificateMapperFn,
  type OneToOneMapping,
  type ManyToOneMapping,
  type ManyToOneRule,
  type NameRule,
  type SanRule,
  type SanAttribute,
  type MappingOutcome,
} from './tls/mapper.js';
export { parseSubjectAltNames, type SubjectAltNames } from './tls/subject-alt-name.js';
export { createDevPki, ensureDevPki, devPkiPaths, DEV_PKI_FILES, DEV_OCSP_PORT, type DevPkiPaths } from './tls/dev-pki.js';
export { issueCertificate, loadIssuer, type CertificateSpec, type IssuedCertificate } from './tls/cert-builder.js';
export { negotiateClientCertificate, negotiationHResult, negotiationWin32Override, type NegotiateCompletion, type NegotiateAsyncAnswer } from './server/negotiate.js';
export { negotiateCertificate, maxServerRenegotiations, renegotiationRefusal, DEFAULT_NEGOTIATION_TIMEOUT_MS, type NegotiationStatus, type NegotiationResult, type NegotiationOptions } from './tls/renegotiate.js';
export { parseClientHello, MAX_CLIENT_HELLO_BYTES, type ClientHelloInfo, type ClientHelloParse } from './tls/client-hello.js';
export { hostMatches } from './tls/host-policy.js';
export { HResult } from './status.js';
export type { RouteCertificateRequirement } from './server/plugin.js';
// The client side (stores, SetClientCertificateByID, transfer jobs): see docs/client.md.
export * from './client/index.js';
// Channel bindings (RFC 5929, RFC 9266), HTTP_REQUEST_CHANNEL_BIND_STATUS and Extended Protection: see docs/channel-binding.md.
export {
  channelBindings,
  channelBinding,
  serverChannelBindings,
  serverChannelBinding,
  channelBindingsJson,
  channelBindStatus,
  secureChannelToken,
  checkChannelBinding,
  channelBindInfoProblems,
  policyExposes,
  HttpAuthenticationHardening,
  HttpChannelBind,
  applicationData,
  tokenBytes,
  isChannelBindingType,
  CHANNEL_BINDING_TYPES,
  CHANNEL_BIND_STATUS_FIXED_SIZE,
  SECURE_CHANNEL_TOKEN_DEFAULTS,
  EXPORTER_LABEL,
  EXPORTER_LENGTH,
  endPointHash,
  serverEndPoint,
  sessionFacts,
  type ChannelBindingType,
  type BindingResult,
  type ChannelBindings,
  type UnavailableReason,
  type TokenForm,
  type ChannelBindingOptions,
  type ServerChannelBindingConfig,
  type ChannelBindingsJson,
  type SecureChannelTokenConfig,
  type ChannelBindStatusResult,
  type ChannelBindInfo,
  type SuppliedBinding,
  type ExtendedProtectionResult,
  type ExtendedProtectionReason,
  type HardeningLevel,
  type Tls12ExporterContext,
  type EndPointHashName,
  type PssHashParams,
  type SessionFacts,
  type Side,
} from './cbt/index.js';
export { suppliedFromHeader, DEFAULT_ROUTE_POLICY, type RouteChannelBinding } from './server/channel-binding-route.js';
// OCSP stapling (CertOpenServerOcspResponse), the dev OCSP responder and client-certificate revocation: see docs/ocsp.md.
export * from './ocsp/index.js';
// Fleet mode on Redis (docs/fleet.md): shared ticket keys, staples and revocation data. ioredis loads on start().
export {
  createFleet, Fleet,
  type FleetOptions, type FleetTicketOptions, type FleetStatus, type FleetCounters, type FleetLease, type FleetAnnouncement, type FleetDocuments, type FleetLogger,
} from './fleet/fleet.js';
export { fleetSessionIdContext, FLEET_SECRET_MIN_BYTES, type FleetDocumentKind } from './fleet/fleet-rules.js';
