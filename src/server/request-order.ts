// Per-connection request order. A request that arrives on a connection without a client
// certificate may be the one that negotiates it (an on-demand route): every request pipelined
// behind it waits until it has either negotiated or found it need not, so that none of them
// sees a half-made identity or runs before the certificate it should have had.
import type { IncomingMessage } from 'node:http';
import type { EventEmitter } from 'node:events';

/** A request's place in its connection's order. */
export interface RequestTicket {
  readonly seq: number;
  readonly done: Promise<void>;
  /** Lets later requests go on; idempotent. */
  release(): void;
}

/** The order of one connection's requests. */
export class RequestOrder {
  #seq = 0;
  readonly #open: RequestTicket[] = [];

  /** Called in arrival order (the raw 'request' event) for each request that may negotiate. */
  open(): RequestTicket {
    const seq = ++this.#seq;
    let resolve!: () => void;
    const done = new Promise<void>((r) => { resolve = r; });
    const ticket: RequestTicket = {
      seq,
      done,
      release: () => {
        const i = this.#open.indexOf(ticket);
        if (i >= 0) this.#open.splice(i, 1);
        resolve();
      },
    };
    this.#open.push(ticket);
    return ticket;
  }

  /** Resolves when every request that arrived before `seq` has released its ticket. */
  async waitForEarlier(seq: number): Promise<void> {
    for (;;) {
      const earlier = this.#open.find((t) => t.seq < seq);
      if (!earlier) return;
      await earlier.done;
    }
  }
}

const kTicket = Symbol('certbound.ticket');
const ordered = new WeakSet<EventEmitter>();

/** What the ordering needs of a connection. */
export interface OrderedConnection {
  readonly order: RequestOrder;
  /** True while a request on this connection may still negotiate a certificate. */
  mayNegotiate(): boolean;
}

/**
 * Gives each request of `server` its ticket in arrival order. The raw 'request' event fires
 * in arrival order; fastify's hooks may interleave, so the order is taken here (prepended,
 * before fastify's own listener). Idempotent per server.
 */
export function orderRequests(server: EventEmitter, connectionOf: (socket: unknown) => OrderedConnection | undefined): void {
  if (ordered.has(server)) return;
  ordered.add(server);
  server.prependListener('request', (req: IncomingMessage) => {
    const c = connectionOf(req.socket);
    if (c?.mayNegotiate()) (req as IncomingMessage & { [kTicket]?: RequestTicket })[kTicket] = c.order.open();
  });
}

/** The ticket of a raw request, if it has one. */
export function ticketOf(req: IncomingMessage): RequestTicket | undefined {
  return (req as IncomingMessage & { [kTicket]?: RequestTicket })[kTicket];
}
