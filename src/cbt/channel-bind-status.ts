// receiveClientCertificate with HTTP_RECEIVE_SECURE_CHANNEL_TOKEN (0x1): the
// HTTP_REQUEST_CHANNEL_BIND_STATUS shape (ServiceName, ChannelToken, ChannelTokenSize,
// Flags) with HttpReceiveClientCertificate's buffer rules (seed 000). A pure function: the
// server decides which token a connection has, this decides what the caller gets back.
// https://learn.microsoft.com/windows/win32/api/http/ns-http-http_request_channel_bind_status
import { DEFAULTS } from '../defaults.js';
import { Win32, type Win32Status } from '../status.js';
import { tokenBytes, type ChannelBindingType, type ChannelBindings, type TokenForm } from './binding.js';

/** HttpReceiveClientCertificate flag (http.h): return the channel binding status (the token) instead of the certificate. */
export const HTTP_RECEIVE_SECURE_CHANNEL_TOKEN = 0x1;

/**
 * sizeof(HTTP_REQUEST_CHANNEL_BIND_STATUS) on x64, its fixed part: two pointers (ServiceName,
 * ChannelToken, 8 bytes each) and two ULONGs (ChannelTokenSize, Flags, 4 bytes each).
 * src/server/receive.ts exports it as HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE.
 */
export const CHANNEL_BIND_STATUS_FIXED_SIZE = 24;

/** HTTP_REQUEST_CHANNEL_BIND_STATUS as certbound hands it out. Under ERROR_MORE_DATA only `channelTokenSize` is filled. */
export interface HttpRequestChannelBindStatus {
  /** The service name the client supplied, where the policy asks for it (HTTP_CHANNEL_BIND_CLIENT_SERVICE); else null. */
  serviceName: string | null;
  /** The token bytes; null when only the size was filled (ERROR_MORE_DATA). */
  channelToken: Buffer | null;
  /** Length of the token in bytes. */
  channelTokenSize: number;
  /** Reserved: always 0. */
  flags: number;
}

export interface ChannelBindStatusResult {
  /** NO_ERROR, ERROR_INVALID_PARAMETER, ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA or ERROR_NOT_FOUND. */
  status: Win32Status;
  /** Bytes written: 24 + token size on success, 24 on ERROR_MORE_DATA, else 0. */
  bytesReceived: number;
  /** The structure, present on NO_ERROR (complete) and ERROR_MORE_DATA (only channelTokenSize). */
  channelBindStatus?: HttpRequestChannelBindStatus;
}

/**
 * The HTTP_REQUEST_CHANNEL_BIND_STATUS answer for a caller buffer of `bufferSize` bytes.
 * - `flags` other than HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, or a bufferSize that is not a
 *   non-negative integer → ERROR_INVALID_PARAMETER (87).
 * - bufferSize < 24 → ERROR_INSUFFICIENT_BUFFER (122), nothing written.
 * - no token on the connection → ERROR_NOT_FOUND (1168).
 * - 24 <= bufferSize < 24 + token size → ERROR_MORE_DATA (234), only channelTokenSize filled.
 * - otherwise NO_ERROR (0), bytesReceived = 24 + token size.
 * The service name is a string beside the structure: it is not counted in the buffer size.
 */
export function channelBindStatus(token: Buffer | undefined, serviceName: string | null | undefined, bufferSize: number, flags: number): ChannelBindStatusResult {
  if (flags !== HTTP_RECEIVE_SECURE_CHANNEL_TOKEN || !Number.isInteger(bufferSize) || bufferSize < 0) {
    return { status: Win32.ERROR_INVALID_PARAMETER, bytesReceived: 0 };
  }
  if (bufferSize < CHANNEL_BIND_STATUS_FIXED_SIZE) return { status: Win32.ERROR_INSUFFICIENT_BUFFER, bytesReceived: 0 };
  if (!token || token.length === 0) return { status: Win32.ERROR_NOT_FOUND, bytesReceived: 0 };
  const needed = CHANNEL_BIND_STATUS_FIXED_SIZE + token.length;
  if (bufferSize < needed) {
    return {
      status: Win32.ERROR_MORE_DATA,
      bytesReceived: CHANNEL_BIND_STATUS_FIXED_SIZE,
      channelBindStatus: { serviceName: null, channelToken: null, channelTokenSize: token.length, flags: 0 },
    };
  }
  return {
    status: Win32.NO_ERROR,
    bytesReceived: needed,
    channelBindStatus: { serviceName: serviceName ?? null, channelToken: Buffer.from(token), channelTokenSize: token.length, flags: 0 },
  };
}

/** Which binding a server hands out for HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, and in which form. */
export interface SecureChannelTokenConfig {
  /** Default 'tls-server-end-point' (the binding HTTP.sys hands out). */
  readonly type?: ChannelBindingType;
  /** Default 'application-data' (`<type>:` + value, as in GSS-API/SSPI endpoint bindings). */
  readonly form?: TokenForm;
}

/** DEFAULTS.secureChannelToken. */
export const SECURE_CHANNEL_TOKEN_DEFAULTS = DEFAULTS.secureChannelToken satisfies Required<SecureChannelTokenConfig>;

/** The token a connection has for the configured type and form, or undefined (→ ERROR_NOT_FOUND). */
export function secureChannelToken(bindings: ChannelBindings, config: SecureChannelTokenConfig = {}): Buffer | undefined {
  const type = config.type ?? SECURE_CHANNEL_TOKEN_DEFAULTS.type;
  const form = config.form ?? SECURE_CHANNEL_TOKEN_DEFAULTS.form;
  const value = bindings[type].value;
  return value === undefined ? undefined : tokenBytes(type, value, form);
}
