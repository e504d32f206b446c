// Channel binding tokens (RFC 5929, RFC 9266), HTTP_REQUEST_CHANNEL_BIND_STATUS and Extended Protection.
export * from './binding.js';
export { channelBindings, channelBinding, type ChannelBindingOptions } from './channel-bindings.js';
export { channelBindStatus, secureChannelToken, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, CHANNEL_BIND_STATUS_FIXED_SIZE, SECURE_CHANNEL_TOKEN_DEFAULTS, type HttpRequestChannelBindStatus, type ChannelBindStatusResult, type SecureChannelTokenConfig } from './channel-bind-status.js';
export * from './extended-protection.js';
export { EXPORTER_LABEL, EXPORTER_LENGTH, type Tls12ExporterContext } from './exporter.js';
export { endPointHash, serverEndPoint, type EndPointHashName, type PssHashParams, type EndPointHashChoice } from './server-end-point.js';
export { sessionFacts, type SessionFacts } from './extended-master-secret.js';
export type { Side } from './handshake-facts.js';
export { serverChannelBindings, serverChannelBinding, channelTokenProvider, channelBindingsJson, type ServerChannelBindingConfig, type ChannelBindingsJson } from './server-bindings.js';
export { decorateChannelBinding } from './request-decorator.js';
