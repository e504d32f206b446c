// The connection registry: connection id → entry. Every accepted TLS connection gets a
// 64-bit id, unique for the life of the server: the low 48 bits count connections in this
// process, the high 16 bits are the process's epoch (0 for a single process; in a cluster the
// primary hands every worker it forks, restarts included, a new one: src/server/cluster.ts).
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { compileMapper } from '../tls/mapper.js';
import { ConnectionEntry, type TrustPolicy } from './connection.js';
import { NO_METRICS, type MetricsSink } from './metrics.js';

export { ConnectionEntry, type TrustPolicy } from './connection.js';
export type { HandshakeRecord } from '../tls/peer-chain.js';
export type { ClientCertificate, RevocationSummary, TrustDecision, TrustReason } from '../tls/client-certificate.js';
export type { RequestTicket } from './request-order.js';

let idPrefix = 0n;
let idCounter = 0n;
const ID_BITS = 48n;

/**
 * Sets the high 16 bits of every connection id made from now on (a cluster worker's epoch),
 * so ids stay unique across the processes of one server and its restarted workers. Default: 0.
 */
export function setConnectionIdPrefix(prefix: number): void {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 0xffff) throw new RangeError('connection id prefix must be an integer 0..65535');
  idPrefix = BigInt(prefix) << ID_BITS;
}

/** The epoch set by setConnectionIdPrefix (0 in a single process). */
export function connectionIdPrefix(): number {
  return Number(idPrefix >> ID_BITS);
}

function nextConnectionId(): bigint {
  idCounter += 1n;
  return idPrefix | idCounter;
}

/** The one logger method the registry uses (pino and fastify loggers fit). */
export interface RegistryLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  /** pino's: when present and false for 'debug', the per-connection line is not even built. */
  isLevelEnabled?(level: string): boolean;
}

export interface RegistryOptions extends Partial<TrustPolicy> {
  logger?: RegistryLogger;
  /** Counts each connection's decision, revocation check and negotiations (src/server/metrics.ts). Default: none. */
  metrics?: MetricsSink;
}

/** Connection id → entry for the connections of one or more TLS servers. */
export class ConnectionRegistry {
  readonly #entries = new Map<bigint, ConnectionEntry>();
  readonly #logger: RegistryLogger | undefined;
  readonly #attached = new WeakSet<TlsServer>();
  readonly #metrics: MetricsSink;
  #policy: TrustPolicy;
  /** Handshakes refused because the client started them (client-initiated renegotiation). */
  rogueHandshakes = 0;

  // One of each for all connections (a closure per connection was memory every idle one kept).
  readonly #policyNow = (): TrustPolicy => this.#policy;
  readonly #onRogue = (e: ConnectionEntry): void => {
    this.rogueHandshakes += 1;
    this.#logger?.warn({ connectionId: e.id.toString(), remoteAddress: e.socket.remoteAddress }, 'client-initiated renegotiation refused: connection closed');
  };
  readonly #onClose: (this: TLSSocket) => void;

  constructor(options: RegistryOptions = {}) {
    this.#policy = Object.freeze({
      mapper: options.mapper ?? compileMapper(undefined), revocation: options.revocation, anchors: options.anchors ?? [],
      ...(options.material ? { material: options.material } : {}), ...(options.now ? { now: options.now } : {}),
    });
    this.#logger = options.logger;
    this.#metrics = options.metrics ?? NO_METRICS;
    const entries = this.#entries;
    this.#onClose = function (this: TLSSocket) {
      const entry = ConnectionEntry.of(this);
      if (!entry || entries.get(entry.id) !== entry) return;
      entry.markClosed();
      entries.delete(entry.id);
    };
  }

  /** The trust rules every connection's decision applies (a reload replaces them). */
  get policy(): TrustPolicy {
    return this.#policy;
  }

  /**
   * @internal Replaces the trust rules after a reload (src/server/reload.ts): every handshake
   * from now on, on new connections and on those opened before, is judged by them. Decisions
   * already made on a handshake stay. Every replacement also retires the cached verdicts of
   * resumed sessions made under the old policy (src/tls/session-chains.ts).
   */
  replacePolicy(change: Partial<Pick<TrustPolicy, 'anchors' | 'reloaded' | 'material'>>): void {
    this.#policy = Object.freeze({ ...this.#policy, ...change });
  }

  /** Registers every connection `server` accepts from now on (idempotent per server). */
  attach(server: TlsServer): void {
    if (this.#attached.has(server)) return;
    this.#attached.add(server);
    server.on('secureConnection', (socket: TLSSocket) => this.add(socket));
  }

  /** Registers a connection whose initial handshake has completed. */
  add(socket: TLSSocket): ConnectionEntry {
    const existing = ConnectionRegistry.entryOf(socket);
    if (existing) return existing;
    const entry = new ConnectionEntry(nextConnectionId(), socket, this.#policyNow, this.#onRogue, this.#metrics);
    this.#entries.set(entry.id, entry);
    // 'close' is emitted once; `on` spares the wrapper `once` makes per call.
    socket.on('close', this.#onClose);
    if (this.#logger && this.#logger.isLevelEnabled?.('debug') !== false) this.#logger.debug({ connectionId: entry.id.toString(), protocol: entry.handshake.protocol, resumed: entry.handshake.resumed, remoteAddress: socket.remoteAddress }, 'connection');
    return entry;
  }

  get(id: bigint): ConnectionEntry | undefined {
    return this.#entries.get(id);
  }

  get size(): number {
    return this.#entries.size;
  }

  entries(): IterableIterator<ConnectionEntry> {
    return this.#entries.values();
  }

  /** The entry of a socket, if a registry registered it. */
  static entryOf(socket: unknown): ConnectionEntry | undefined {
    return ConnectionEntry.of(socket);
  }
}
