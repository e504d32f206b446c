// HTTP/1.1 over node:tls on a worker thread: the in-process clients of a test that checks many
// real connections run beside the servers instead of sharing their event loop (the handshakes
// are most of the work, and this machine has two cores). Each connection comes from its own
// loopback address (127.10.x.y), so that the servers' own records say whether they accepted it.
import { connect, createSecureContext, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import type { TcpNetConnectOpts } from 'node:net';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** What the client presents: a certificate chain (PEM, leaf first) and its key. */
export type ClientCredentials = { cert: string; key: string } | undefined;

/** One request's answer. */
export interface Exchange {
  /** null: no HTTP answer (see `error`). */
  status: number | null;
  headers: Record<string, string>;
  body: string;
  /** The negotiated TLS version, once the client's handshake completed. */
  protocol: string | null;
  error: string | null;
  /** The source address of the connection that carried the request. */
  address: string;
}

/** Requests sent one after the other on one connection (a new one after the server closes it). */
export interface ClientJob {
  port: number;
  servername: string;
  /** Key of the credentials given to the thread. */
  credentials: string;
  maxVersion: TlsVersion;
  requests: readonly { method: 'GET' | 'POST'; url: string }[];
}

const ROLE = 'certbound-test-client-thread';
const REPLY_TIMEOUT_MS = 15_000;

let connections = 0;
/** 127.10.0.1, 127.10.0.2, …: a new source address per connection. */
function nextAddress(): string {
  connections += 1;
  return `127.${10 + (connections >> 16)}.${(connections >> 8) & 255}.${connections & 255}`;
}

/** One client connection: opened on the first request, and again after the server closes it. */
class Connection {
  #socket: TLSSocket | undefined;
  #address = '';
  #protocol: string | null = null;
  readonly #options: ConnectionOptions;

  constructor(port: number, servername: string, secureContext: SecureContext) {
    // Who the server is does not matter here (and checking it costs a third of the client's time).
    this.#options = { host: '127.0.0.1', port, servername, secureContext, rejectUnauthorized: false };
  }

  request(method: string, url: string): Promise<Exchange> {
    if (!this.#socket || this.#socket.destroyed || !this.#socket.writable) this.#open();
    const socket = this.#socket as TLSSocket;
    const address = this.#address;
    const body = method === 'POST' ? 'hello' : '';
    const head = `${method} ${url} HTTP/1.1\r\nHost: localhost\r\n${body ? `Content-Type: text/plain\r\nContent-Length: ${body.length}\r\n` : ''}\r\n`;
    return new Promise((done) => {
      let data = Buffer.alloc(0);
      let error: string | null = null;
      const finish = (r: Omit<Exchange, 'protocol' | 'address'>) => {
        clearTimeout(timer);
        socket.off('data', onData).off('error', onError).off('close', onClose);
        if (r.status === null || r.headers.connection === 'close') socket.destroy();
        done({ ...r, protocol: this.#protocol, address });
      };
      const onData = (chunk: Buffer) => {
        data = Buffer.concat([data, chunk]);
        const end = data.indexOf('\r\n\r\n');
        if (end < 0) return;
        const [statusLine = '', ...lines] = data.subarray(0, end).toString('latin1').split('\r\n');
        const headers: Record<string, string> = {};
        for (const l of lines) headers[l.slice(0, l.indexOf(':')).trim().toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
        const length = Number(headers['content-length'] ?? NaN);
        if (!Number.isFinite(length) || data.length < end + 4 + length) return;
        finish({ status: Number(statusLine.split(' ')[1]), headers, body: data.subarray(end + 4, end + 4 + length).toString('utf8'), error: null });
      };
      const onError = (err: NodeJS.ErrnoException) => { error ??= err.code ?? err.message; };
      const onClose = () => finish({ status: null, headers: {}, body: '', error: error ?? 'closed' });
      const timer = setTimeout(() => finish({ status: null, headers: {}, body: '', error: 'client timeout' }), REPLY_TIMEOUT_MS);
      socket.on('data', onData).on('error', onError).on('close', onClose);
      socket.write(head + body);
    });
  }

  close(): void {
    this.#socket?.destroy();
  }

  #open(): void {
    this.#address = nextAddress();
    this.#protocol = null;
    const options: ConnectionOptions & Pick<TcpNetConnectOpts, 'localAddress'> = { ...this.#options, localAddress: this.#address };
    const socket = connect(options, () => { this.#protocol = socket.getProtocol(); });
    // Errors are read per request; one without a request in flight must not throw.
    socket.on('error', () => {});
    this.#socket = socket;
  }
}

/** The main thread's handle on a client thread. */
export class ClientThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (r: Exchange[]) => void; reject: (err: Error) => void }>();
  #next = 0;
  #connections = 0;

  /** Starts a thread that knows these credentials (by key). */
  constructor(credentials: Record<string, ClientCredentials>) {
    // The worker runs this file too, under tsx like the test that started it.
    const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((m) => { m.register(); return import(${JSON.stringify(import.meta.url)}); });`;
    this.#worker = new Worker(boot, { eval: true, workerData: { role: ROLE, credentials } });
    this.#worker.on('message', ({ id, exchanges, connections: opened }: { id: number; exchanges: Exchange[]; connections: number }) => {
      this.#connections = opened;
      this.#pending.get(id)?.resolve(exchanges);
      this.#pending.delete(id);
    });
    // A thread that failed fails every job it had.
    this.#worker.on('error', (err) => {
      for (const p of this.#pending.values()) p.reject(err);
      this.#pending.clear();
    });
  }

  /** Runs a job; resolves with one answer per request. */
  run(job: ClientJob): Promise<Exchange[]> {
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.postMessage({ id, job });
    });
  }

  /** Connections the thread had opened at its last answer. */
  get connections(): number {
    return this.#connections;
  }

  close(): Promise<number> {
    return this.#worker.terminate();
  }
}

if (!isMainThread && (workerData as { role?: string } | null)?.role === ROLE) {
  const { credentials } = workerData as { credentials: Record<string, ClientCredentials> };
  const contexts = new Map<string, SecureContext>();
  const contextOf = (key: string, maxVersion: TlsVersion): SecureContext => {
    let ctx = contexts.get(`${key}|${maxVersion}`);
    if (!ctx) {
      ctx = createSecureContext({ maxVersion, ...credentials[key] });
      contexts.set(`${key}|${maxVersion}`, ctx);
    }
    return ctx;
  };
  parentPort?.on('message', async ({ id, job }: { id: number; job: ClientJob }) => {
    const exchanges: Exchange[] = [];
    const connection = new Connection(job.port, job.servername, contextOf(job.credentials, job.maxVersion));
    try {
      for (const r of job.requests) exchanges.push(await connection.request(r.method, r.url));
    } finally {
      connection.close();
    }
    parentPort?.postMessage({ id, exchanges, connections });
  });
}
