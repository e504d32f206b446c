// tls-unique (RFC 5929 section 3): the first Finished message of the most recent handshake,
// i.e. the client's on a full handshake and the server's on a resumed one. Not defined for
// TLS 1.3 (RFC 8446 appendix C.5). Only offered with extended master secret (RFC 7627):
// without it, a resumed session on a second connection can carry the same Finished
// (the triple handshake attack), so the value would not name one channel.
import { available, unavailable, type BindingResult } from './binding.js';
import type { HandshakeFacts } from './handshake-facts.js';

const TLS12_OR_OLDER = new Set(['TLSv1.2', 'TLSv1.1', 'TLSv1']);

/** The tls-unique binding of the handshake described by `facts`. */
export function tlsUnique(facts: HandshakeFacts): BindingResult {
  if (facts.protocol === null) return unavailable('no-handshake', 'The connection has not completed a TLS handshake');
  if (facts.protocol === 'TLSv1.3') return unavailable('tls13', 'tls-unique is not defined for TLS 1.3 (RFC 8446 appendix C.5); use tls-exporter');
  if (!TLS12_OR_OLDER.has(facts.protocol)) return unavailable('unsupported-protocol', `tls-unique is not defined for ${facts.protocol}`);
  if (facts.session === undefined) return unavailable('session-unknown', 'The TLS session could not be read, so extended master secret (RFC 7627) cannot be confirmed');
  if (!facts.session.extendedMasterSecret) {
    return unavailable('no-extended-master-secret', 'The handshake did not negotiate extended master secret (RFC 7627), so tls-unique does not name a unique channel');
  }
  // The first Finished of the handshake: the client sends it first on a full handshake, the
  // server on an abbreviated (resumed) one.
  const clientSentFirst = !facts.sessionReused;
  const weSentFirst = (facts.side === 'client') === clientSentFirst;
  const first = weSentFirst ? facts.finished : facts.peerFinished;
  if (!first || first.length === 0) return unavailable('no-handshake', 'The Finished message of the handshake is not available');
  return available(Buffer.from(first));
}
