// Refuses client-initiated TLS 1.2 renegotiation at its ClientHello, before the server sends
// a single handshake message, while the server's own renegotiations (socket.renegotiate)
// go through. Node 20 has no switch for this: disableRenegotiation() and
// SSL_OP_NO_RENEGOTIATION refuse both kinds (see below), so this module uses three members of
// Node's TLSWrap handle. test/renegotiation-guard.test.ts pins them: it fails with a clear
// message when a Node upgrade changes them.
//
// Line numbers are lib/_tls_wrap.js at v20.20.2.
//
// Why not the handshake-start hook. The handle's `onhandshakestart` (L119-148, called on
// OpenSSL's SSL_CB_HANDSHAKE_START) runs before OpenSSL has parsed the ClientHello.
// - Node's own check there (L146-147: `kDisableRenegotiation`, set by disableRenegotiation()
//   at L689-691 and never cleared) also fires for the server's own HelloRequest.
// - It cannot tell a renegotiation OpenSSL will refuse by itself. A client without RFC 5746
//   secure renegotiation gets a warning no_renegotiation alert from OpenSSL
//   (tls_process_client_hello), and that connection must keep serving. The hook fires the
//   same way for both (measured).
//
// What this uses: OpenSSL's certificate callback. It runs while the server processes a
// ClientHello it accepted: after the legacy refusal, before the ServerHello. It runs only
// when no session is resumed (`!s->hit`), and certbound always sets
// SSL_OP_NO_SESSION_RESUMPTION_ON_RENEGOTIATION. Node passes it to JS only when armed:
// - `handle.enableCertCb()` arms it. Node calls it only at setup, for OCSP (L876-877) and SNI
//   (L920-927). crypto_tls.cc TLSWrap::EnableCertCb → WaitForCertCb only sets `cert_cb_`.
// - SSLCertCallback (crypto_tls.cc) calls `handle.oncertcb(info)`, looked up by name on each
//   call. Node sets it to loadSNI (L858), which is armed for the initial handshake only.
//   Until `handle.certCbDone()` is called, OpenSSL keeps the handshake suspended
//   (SSL_ERROR_WANT_X509_LOOKUP), so the server writes nothing.
// - `handle.certCbDone()` resumes the handshake and disarms the callback. Node's own
//   requestOCSPDone (L329-337) also calls it synchronously from inside oncertcb.
// The guard keeps the callback armed at all times:
// - a ClientHello the server asked for (inside beginServerHandshake) gets certCbDone, then
//   the callback is armed again;
// - any other ClientHello destroys the socket synchronously while the handshake is still
//   suspended. TLSWrap.close (L651-687) closes the fd, so the client sees a close and no
//   handshake message.
//
// The 'secure' event is the second line. Node emits it on SSL_CB_HANDSHAKE_DONE
// (onhandshakedone L150-163 → _finishInit L1071-1098). It also fires after OpenSSL refused a
// legacy renegotiation ("We must have rejected the renegotiation" → TLS_ST_OK): an empty
// event, no handshake happened. A real handshake always changes the Finished messages (new
// randoms), so on each 'secure' the guard compares this side's getFinished() with its last
// snapshot:
// - unchanged: ignored (no destroy, not counted);
// - changed inside a window: one server handshake, counted;
// - changed outside a window: destroyed. That only happens when the certificate callback was
//   skipped (a resumed renegotiation) or is unavailable ('after-handshake' mode).
import type { TLSSocket } from 'node:tls';

/** Why a handshake was refused. */
export type RenegotiationRefusal =
  /** A client-initiated renegotiation, stopped at its ClientHello: the server sent nothing. */
  | 'client-renegotiation'
  /**
   * A handshake the server did not start completed (a resumed renegotiation, which skips the
   * certificate callback, or the 'after-handshake' mode). The socket was closed before it
   * carried application data.
   */
  | 'client-handshake-completed';

export interface RenegotiationGuardHooks {
  /** Called (on the next tick) after the guard has destroyed the socket. */
  onRefused(reason: RenegotiationRefusal, socket: TLSSocket): void;
}

export interface RenegotiationGuard {
  /**
   * 'client-hello': refusals happen at the ClientHello (Node's internals were found).
   * 'after-handshake': a Node without them; refusals happen at 'secure' only.
   * 'closed': the socket was already destroyed at install.
   */
  readonly mode: 'client-hello' | 'after-handshake' | 'closed';
  /** Real handshakes completed after the initial one (all of them server-started). */
  readonly handshakes: number;
  /** Empty 'secure' events ignored: renegotiations OpenSSL refused (legacy clients). */
  readonly ignored: number;
  /**
   * Opens a window for one handshake the server starts. Call it just before
   * socket.renegotiate(). The window closes by itself when that handshake completes.
   * The returned function closes it earlier (idempotent), e.g. on timeout.
   */
  beginServerHandshake(): () => void;
  /** beginServerHandshake(), then `run()`. The window is closed again if run throws or returns false. */
  allowServerHandshake<T>(run: () => T): T;
}

/** The members of Node's TLSWrap handle the guard uses (lib/_tls_wrap.js, crypto_tls.cc). */
interface TlsHandle {
  enableCertCb(): void;
  certCbDone(): void;
  oncertcb: (info: unknown) => void;
}

function tlsHandle(socket: TLSSocket): TlsHandle | null {
  return (socket as unknown as { _handle?: TlsHandle | null })._handle ?? null;
}

/** True when `handle` has the internals the 'client-hello' mode needs (exported for the pin test). */
export function hasCertCallbackInternals(handle: unknown): boolean {
  const h = handle as Partial<TlsHandle> | null;
  return !!h && typeof h.enableCertCb === 'function' && typeof h.certCbDone === 'function' && typeof h.oncertcb === 'function';
}

// Per-socket state is one object with shared methods: the listeners and the certificate
// callback are module functions that find it through a symbol on the socket and a WeakMap of
// handles, not closures per connection (an idle connection's memory, docs/performance.md). A
// property added to Node's handle object turned it into a dictionary (about 800 bytes).
const kGuard = Symbol('certbound.renegotiationGuard');
type Guarded = { [kGuard]?: SocketGuard };
const byHandle = new WeakMap<object, SocketGuard>();

class SocketGuard implements RenegotiationGuard {
  readonly mode: RenegotiationGuard['mode'];
  handshakes = 0;
  ignored = 0;
  /** Generation of the open window, 0 when closed. */
  window = 0;
  generation = 0;
  /**
   * This side's Finished message of the last real handshake (latin1), or undefined for a
   * closed socket. A real handshake always changes it (it is a MAC over a transcript with new
   * randoms), so a 'secure' event that leaves it unchanged had no handshake behind it. One
   * side is enough for that; a string is smaller than a Buffer.
   */
  finished: string | undefined;
  readonly socket: TLSSocket | undefined;
  readonly hooks: RenegotiationGuardHooks | undefined;

  constructor(mode: RenegotiationGuard['mode'], socket?: TLSSocket, hooks?: RenegotiationGuardHooks, finished?: string) {
    this.mode = mode;
    this.socket = socket;
    this.hooks = hooks;
    this.finished = finished;
  }

  beginServerHandshake(): () => void {
    if (this.mode === 'closed') return () => {};
    const mine = ++this.generation;
    this.window = mine;
    return () => {
      if (this.window === mine) this.window = 0;
    };
  }

  allowServerHandshake<T>(run: () => T): T {
    const end = this.beginServerHandshake();
    try {
      const out = run();
      if (out === false) end();
      return out;
    } catch (err) {
      end();
      throw err;
    }
  }

  refuse(reason: RenegotiationRefusal): void {
    const socket = this.socket as TLSSocket;
    socket.destroy();
    const hooks = this.hooks as RenegotiationGuardHooks;
    process.nextTick(() => hooks.onRefused(reason, socket));
  }
}

/** The handle's certificate callback: a ClientHello the server did not ask for closes the connection. */
function onCertCb(this: TlsHandle): void {
  const guard = byHandle.get(this);
  const socket = guard?.socket;
  // Already closed (e.g. by Node's ERR_TLS_RENEGOTIATION_DISABLED at handshake start, which
  // http2 sessions turn on): leave the handshake suspended, nothing to report twice.
  if (!guard || !socket || socket.destroyed) return;
  if (guard.window === 0) {
    // Not asked for: the handshake stays suspended and the fd is closed now.
    guard.refuse('client-renegotiation');
    return;
  }
  try {
    this.certCbDone();
    this.enableCertCb();
  } catch (err) {
    socket.destroy(err as Error);
  }
}

/** 'secure' on a guarded socket: count the server's handshakes, ignore empty events, refuse the rest. */
function onSecure(this: TLSSocket & Guarded): void {
  const guard = this[kGuard];
  if (!guard || this.destroyed) return;
  const f = this.getFinished();
  const now = f ? f.toString('latin1') : undefined;
  if (now !== undefined && now === guard.finished) {
    guard.ignored += 1;
    return;
  }
  guard.finished = now;
  if (guard.window === 0) {
    guard.refuse('client-handshake-completed');
    return;
  }
  guard.window = 0;
  guard.handshakes += 1;
}

/**
 * Guards a server-side TLS socket whose initial handshake has completed (install it from
 * 'secureConnection'). Installing twice returns the first guard.
 */
export function installRenegotiationGuard(socket: TLSSocket, hooks: RenegotiationGuardHooks): RenegotiationGuard {
  const existing = (socket as TLSSocket & Guarded)[kGuard];
  if (existing) return existing;
  const handle = tlsHandle(socket);
  if (socket.destroyed || !handle) {
    const closed = new SocketGuard('closed');
    (socket as TLSSocket & Guarded)[kGuard] = closed;
    return closed;
  }
  const finished = socket.getFinished();
  if (finished === undefined) throw new Error('installRenegotiationGuard: the initial handshake has not completed');
  const preHandshake = hasCertCallbackInternals(handle);
  const guard = new SocketGuard(preHandshake ? 'client-hello' : 'after-handshake', socket, hooks, finished.toString('latin1'));
  (socket as TLSSocket & Guarded)[kGuard] = guard;
  if (preHandshake) {
    byHandle.set(handle, guard);
    handle.oncertcb = onCertCb;
    handle.enableCertCb();
  }
  socket.on('secure', onSecure);
  return guard;
}
