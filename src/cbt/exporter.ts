// tls-exporter (RFC 9266 section 2): 32 bytes from the TLS exporter with the label
// EXPORTER-Channel-Binding and a zero-length context. The binding for TLS 1.3. On TLS 1.2 it
// is defined only with extended master secret (RFC 9266 section 4.2, RFC 7627) and not on a
// connection where renegotiation is enabled (RFC 9266 section 4.2), since a renegotiation
// changes the master secret under the exporter.
//
// TLS 1.2 "empty vs no context": RFC 5705 section 4 feeds the context into the PRF with a
// length prefix when one is given, so a zero-length context (length 0x0000 appended) and no
// context give different values on TLS 1.2; on TLS 1.3 (RFC 8446 section 7.5) they are the
// same. RFC 9266 asks for a zero-length context, which certbound uses by default ('empty');
// OpenSSL's `s_client -keymatexport` uses no context, so 'none' is an explicit interop option.
import { available, unavailable, type BindingResult } from './binding.js';
import type { HandshakeFacts } from './handshake-facts.js';

/** RFC 9266 section 2. */
export const EXPORTER_LABEL = 'EXPORTER-Channel-Binding';
/** RFC 9266 section 2: 32 bytes. */
export const EXPORTER_LENGTH = 32;

/** How the TLS 1.2 exporter context is passed: zero-length (RFC 9266, default) or absent (OpenSSL s_client). */
export type Tls12ExporterContext = 'empty' | 'none';

/** The exporter call a TLSSocket offers (`tlsSocket.exportKeyingMaterial`). */
export type ExportKeyingMaterial = (length: number, label: string, context?: Buffer) => Buffer;

/**
 * Whether tls-exporter is defined for the handshake, and with which context argument.
 * Returns `{ context }` (undefined context means "no context") or the reason it is undefined.
 */
export function exporterInput(facts: HandshakeFacts, tls12Context: Tls12ExporterContext = 'empty'):
  { readonly context: Buffer | undefined; readonly unavailable?: undefined } | { readonly context?: undefined; readonly unavailable: BindingResult } {
  if (facts.protocol === null) return { unavailable: unavailable('no-handshake', 'The connection has not completed a TLS handshake') };
  if (facts.protocol === 'TLSv1.3') return { context: Buffer.alloc(0) };
  if (facts.protocol !== 'TLSv1.2') return { unavailable: unavailable('unsupported-protocol', `certbound offers tls-exporter on TLS 1.3 and 1.2 only, not ${facts.protocol}`) };
  if (facts.session === undefined) return { unavailable: unavailable('session-unknown', 'The TLS session could not be read, so extended master secret (RFC 7627) cannot be confirmed') };
  if (!facts.session.extendedMasterSecret) {
    return { unavailable: unavailable('no-extended-master-secret', 'tls-exporter on TLS 1.2 requires extended master secret (RFC 9266 section 4.2, RFC 7627)') };
  }
  if (!facts.renegotiationDisabled) {
    return { unavailable: unavailable('renegotiation-possible', 'tls-exporter is not defined on a TLS 1.2 connection where renegotiation is enabled (RFC 9266 section 4.2)') };
  }
  return { context: tls12Context === 'empty' ? Buffer.alloc(0) : undefined };
}

/** The tls-exporter binding, computed with `exportKeyingMaterial` when it is defined. */
export function tlsExporter(facts: HandshakeFacts, exportKeyingMaterial: ExportKeyingMaterial, tls12Context: Tls12ExporterContext = 'empty'): BindingResult {
  const input = exporterInput(facts, tls12Context);
  if (input.unavailable) return input.unavailable;
  try {
    const value = input.context === undefined
      ? exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL)
      : exportKeyingMaterial(EXPORTER_LENGTH, EXPORTER_LABEL, input.context);
    return available(value);
  } catch (err) {
    // Node throws when the socket is gone or not yet secure.
    return unavailable('no-handshake', `The exporter is not available: ${(err as Error).message}`);
  }
}
