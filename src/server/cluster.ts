// Multi-core serving with node:cluster. The primary forks N workers (each a full certbound
// server on the shared port), owns the TLS session-ticket keys (48 random bytes, sent to every
// worker over IPC and rotated on an interval, so that a ticket issued by one worker resumes
// on any other), and is the one place where per-machine work (OCSP retrieval) runs: it relays
// staples to the workers. Every worker it forks, restarts included, gets a new connection-id
// epoch (1, 2, 3, …), so ids never repeat for the life of the server. A ticket carries the
// client's leaf but not its chain: the primary relays the intermediates each worker's verified
// handshakes showed, so that any worker can rebuild and verify a resumed session's chain.
import cluster, { type Worker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import type { Server as TlsServer } from 'node:tls';
import { validLongEnough } from '../ocsp/schedule.js';
import { DEFAULTS } from '../defaults.js';
import type { OcspStapleSummary } from '../ocsp/server-stapling.js';
import type { FleetStatus } from '../fleet/fleet.js';

/** Size of a tls.Server ticket key set (HMAC secret, AES key, key name: 16 bytes each). */
export const TICKET_KEY_BYTES = 48;
/** Default ticket-key rotation interval (ms): DEFAULTS.ticketKeyRotationMs. Tickets issued before a rotation no longer resume. */
export const DEFAULT_TICKET_KEY_ROTATION_MS = DEFAULTS.ticketKeyRotationMs;
/** How long a worker waits for its first ticket keys from the primary (ms): DEFAULTS.ticketKeyWaitMs. */
export const TICKET_KEY_WAIT_MS = DEFAULTS.ticketKeyWaitMs;
/** Environment variable holding a worker's index (0-based). */
export const WORKER_INDEX_ENV = 'CERTBOUND_WORKER_INDEX';
/** Environment variable holding a worker's connection-id epoch (1..65535, new for every fork). */
export const WORKER_EPOCH_ENV = 'CERTBOUND_WORKER_EPOCH';
/** Forks one primary may make: the connection-id epoch has 16 bits (src/server/registry.ts). */
export const MAX_WORKER_EPOCH = 0xffff;
/** Restarts of crashed workers allowed per minute before the primary gives up (exit 1). */
export const MAX_RESTARTS_PER_MINUTE = 5;

/** Messages between the primary and its workers (all carry `certbound: true`). */
export type ClusterMessage =
  | { certbound: true; type: 'hello' }
  | { certbound: true; type: 'listening'; port: number }
  | { certbound: true; type: 'ticket-keys'; keys: string; generation: number }
  | { certbound: true; type: 'staple'; certSha256: string; der: string | null; nextUpdate: number | null; minValiditySeconds: number; summary?: OcspStapleSummary }
  | { certbound: true; type: 'metrics-request'; id: number }
  | { certbound: true; type: 'metrics'; id: number; metrics: object[] | null }
  | { certbound: true; type: 'reload'; id: number; material: WorkerReload }
  | { certbound: true; type: 'reloaded'; id: number; ok: boolean; detail: string }
  | { certbound: true; type: 'intermediates'; certs: string[] }
  | { certbound: true; type: 'fleet-status'; status: FleetStatus };

/** Intermediates (DER) the primary keeps for workers started later; the oldest go first. */
const MAX_RELAYED_INTERMEDIATES = 1_000;
/** Intermediates taken from one message (a worker's handshake shows a few). */
const MAX_INTERMEDIATES_PER_MESSAGE = 16;

/** The base64 DER strings of an 'intermediates' message, bounded; [] for anything else. */
function intermediatesOf(m: { certs?: unknown }): string[] {
  return Array.isArray(m.certs) ? m.certs.filter((c): c is string => typeof c === 'string' && c.length < 65_536).slice(0, MAX_INTERMEDIATES_PER_MESSAGE) : [];
}

/** One server certificate as the primary read it: PEM cert + key, or a PKCS#12 bundle (base64), with its passphrase and names. */
export interface WorkerCertificate { cert?: string; key?: string; pfx?: string; passphrase?: string; names?: string[] }

/** What the primary hands every worker on a reload: the files it read and checked (every server certificate), as PEM. */
export interface WorkerReload { certificates: WorkerCertificate[]; ca: string[]; crl: string[]; revocationCrls?: string[] }

/** One worker's answer to a reload: `detail` is the new certificate's SHA-256, or the CB_ERR_RELOAD message. */
export interface WorkerReloadAnswer { readonly worker: number; readonly ok: boolean; readonly detail: string }

/** Time (ms) the primary waits for every worker to answer a reload. */
const RELOAD_ANSWER_WAIT_MS = 30_000;

function isClusterMessage(m: unknown): m is ClusterMessage {
  return typeof m === 'object' && m !== null && (m as { certbound?: unknown }).certbound === true && typeof (m as { type?: unknown }).type === 'string';
}

/** The default worker count: the cores Node may use (os.availableParallelism()). */
export function defaultWorkerCount(): number {
  return availableParallelism();
}

/** This process's worker index (0-based), or undefined outside a certbound cluster worker. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const raw = process.env[WORKER_INDEX_ENV];
  const n = raw === undefined ? NaN : Number(raw);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** This worker's connection-id epoch (1..65535), or undefined outside a certbound cluster worker. */
export function workerEpoch(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_EPOCH_ENV]);
  return Number.isInteger(n) && n >= 1 && n <= MAX_WORKER_EPOCH ? n : undefined;
}

export interface PrimaryOptions {
  workers: number;
  /** Script the workers run (cluster.setupPrimary exec). Default: this process's script. */
  exec?: string;
  /** Its arguments. Default: this process's arguments. */
  args?: string[];
  /** Ticket-key rotation interval (ms). Default: DEFAULT_TICKET_KEY_ROTATION_MS. */
  ticketKeyRotationMs?: number;
  /**
   * Ticket keys from elsewhere (a fleet, docs/fleet.md): the workers start with these, the
   * primary does not rotate on its own, and setTicketKeys() hands out each new set.
   */
  ticketKeys?: Buffer;
  /** Logs one line per event (worker start/exit, rotation). Default: none. */
  log?: (message: string) => void;
}

/** One worker's answer to a metrics request: prom-client getMetricsAsJSON(). */
export interface WorkerMetrics { readonly pid: number; readonly metrics: object[] }

export interface ClusterPrimary {
  /** Resolves with the port once every worker listens; rejects if a worker exits first. */
  readonly listening: Promise<number>;
  /** Resolves with the exit code the primary should end with (after close() or a fatal failure). */
  readonly exited: Promise<number>;
  /** The current ticket keys (a copy). */
  ticketKeys(): Buffer;
  /** Generates new ticket keys and sends them to every worker. */
  rotateTicketKeys(): void;
  /** Sends these ticket keys (48 bytes, e.g. the fleet's) to every worker, now and to workers started later. */
  setTicketKeys(keys: Buffer): void;
  /** Sends the machine's fleet status to every worker (their GET /readyz shows it). */
  relayFleetStatus(status: FleetStatus): void;
  /**
   * Sends a staple for a certificate (SHA-256 hex of its DER) to every worker, now and to
   * workers started later, with its nextUpdate and the SrvOcspRespMinValiditySeconds rule the
   * workers apply before each handshake (as the primary's own stapler does).
   */
  relayStaple(certSha256: string, der: Buffer | null, nextUpdate: Date | null, minValiditySeconds: number, summary?: OcspStapleSummary): void;
  /**
   * Each worker's metrics (prom-client getMetricsAsJSON()), for one scrape: the answers that
   * came within `timeoutMs`; a worker that is starting, gone or slow is left out. Never rejects.
   */
  collectMetrics(timeoutMs: number): Promise<WorkerMetrics[]>;
  /** Process ids of the workers alive now. */
  workerPids(): number[];
  /**
   * Hands every worker the reloaded material (src/server/reload.ts) and resolves with each
   * one's answer; a worker that does not answer in time counts as failed.
   */
  reload(material: WorkerReload): Promise<WorkerReloadAnswer[]>;
  /** Asks every worker to stop (SIGTERM), waits for them; resolves with 0 when they all ended cleanly. */
  close(): Promise<number>;
}

/**
 * Runs in the cluster primary: forks `workers` copies of this process's script (same
 * arguments), hands them ticket keys and staples, restarts crashed ones (bounded).
 */
export function startPrimary(options: PrimaryOptions): ClusterPrimary {
  if (!cluster.isPrimary) throw new Error('startPrimary() runs in the cluster primary only');
  const count = options.workers;
  if (options.exec) cluster.setupPrimary({ exec: options.exec, args: options.args ?? [] });
  const log = options.log ?? (() => {});
  let keys = options.ticketKeys ? Buffer.from(options.ticketKeys) : randomBytes(TICKET_KEY_BYTES);
  let generation = 1;
  let fleetStatus: ClusterMessage & { type: 'fleet-status' } | undefined;
  const staples = new Map<string, ClusterMessage & { type: 'staple' }>();
  /** Intermediates relayed so far (base64 DER), for workers started later. */
  const intermediates = new Set<string>();
  const byIndex = new Map<number, Worker>();
  const listeningPorts = new Map<number, number>();
  const restarts: number[] = [];
  let epochs = 0;
  let reloads = 0;
  const pendingReloads = new Map<number, (index: number, ok: boolean, detail: string) => void>();
  let closing = false;
  let allListening = false;
  let resolveListening!: (port: number) => void;
  let rejectListening!: (err: Error) => void;
  const listening = new Promise<number>((res, rej) => { resolveListening = res; rejectListening = rej; });
  listening.catch(() => {});
  let resolveExited!: (code: number) => void;
  const exited = new Promise<number>((res) => { resolveExited = res; });
  let exitCode = 0;
  let metricsRequests = 0;
  const metricsWaiting = new Map<number, (from: Worker, metrics: object[] | null) => void>();

  const send = (w: Worker, m: ClusterMessage) => {
    if (w.isConnected()) w.send(m, (err: Error | null) => { if (err) log(`worker ${w.process.pid}: IPC send failed: ${err.message}`); });
  };
  const keysMessage = (): ClusterMessage => ({ certbound: true, type: 'ticket-keys', keys: keys.toString('base64'), generation });

  const fork = (index: number) => {
    if (epochs >= MAX_WORKER_EPOCH) {
      log(`worker ${index}: ${MAX_WORKER_EPOCH} workers forked already, connection ids would repeat: stopping`);
      void close(1);
      return;
    }
    epochs += 1;
    const w = cluster.fork({ [WORKER_INDEX_ENV]: String(index), [WORKER_EPOCH_ENV]: String(epochs) });
    byIndex.set(index, w);
    w.on('message', (m: unknown) => {
      if (!isClusterMessage(m)) return;
      if (m.type === 'hello') {
        send(w, keysMessage());
        if (fleetStatus) send(w, fleetStatus);
        for (const s of staples.values()) send(w, s);
        if (intermediates.size > 0) send(w, { certbound: true, type: 'intermediates', certs: [...intermediates] });
      } else if (m.type === 'intermediates') {
        // Relayed as they came: each worker parses them and uses them only to build chains it verifies itself.
        const fresh = intermediatesOf(m).filter((c) => !intermediates.has(c));
        if (fresh.length === 0) return;
        for (const c of fresh) {
          if (intermediates.size >= MAX_RELAYED_INTERMEDIATES) intermediates.delete(intermediates.values().next().value as string);
          intermediates.add(c);
        }
        for (const other of byIndex.values()) if (other !== w) send(other, { certbound: true, type: 'intermediates', certs: fresh });
      } else if (m.type === 'metrics') {
        metricsWaiting.get(m.id)?.(w, Array.isArray(m.metrics) ? m.metrics : null);
      } else if (m.type === 'reloaded') {
        pendingReloads.get(m.id)?.(index, m.ok, m.detail);
      } else if (m.type === 'listening') {
        listeningPorts.set(index, m.port);
        if (!allListening && listeningPorts.size === count) {
          allListening = true;
          resolveListening(m.port);
        }
      }
    });
    w.on('exit', (code, signal) => {
      if (byIndex.get(index) === w) byIndex.delete(index);
      listeningPorts.delete(index);
      if (closing) {
        if (code !== 0 && signal !== 'SIGTERM') exitCode = 1;
        if (byIndex.size === 0) resolveExited(exitCode);
        return;
      }
      if (!allListening) {
        // A worker that cannot start (port in use, …) has printed why: stop the others.
        rejectListening(new Error(`worker ${index} exited (${signal ?? code}) before listening`));
        exitCode = 1;
        void close(1);
        return;
      }
      const now = Date.now();
      while (restarts.length > 0 && (restarts[0] as number) < now - 60_000) restarts.shift();
      if (restarts.length >= MAX_RESTARTS_PER_MINUTE) {
        log(`worker ${index} exited (${signal ?? code}); ${MAX_RESTARTS_PER_MINUTE} restarts in a minute already: stopping`);
        void close(1);
        return;
      }
      restarts.push(now);
      log(`worker ${index} exited (${signal ?? code}): restarting it`);
      fork(index);
    });
  };

  const rotateTicketKeys = () => {
    keys = randomBytes(TICKET_KEY_BYTES);
    generation += 1;
    for (const w of byIndex.values()) send(w, keysMessage());
    log(`session-ticket keys rotated (generation ${generation})`);
  };
  // With keys from elsewhere (a fleet) whoever gave them rotates them.
  const rotation = options.ticketKeys ? undefined : setInterval(rotateTicketKeys, options.ticketKeyRotationMs ?? DEFAULT_TICKET_KEY_ROTATION_MS);
  rotation?.unref();

  let closed: Promise<number> | undefined;
  const close = (code = 0): Promise<number> => {
    closed ??= (async () => {
      closing = true;
      if (code !== 0) exitCode = code;
      clearInterval(rotation);
      if (byIndex.size === 0) resolveExited(exitCode);
      for (const w of byIndex.values()) w.process.kill('SIGTERM');
      // Workers drain for at most DEFAULTS.shutdownGraceMs (cli.ts); a stuck one is killed a little later.
      const force = setTimeout(() => { for (const w of byIndex.values()) w.process.kill('SIGKILL'); }, DEFAULTS.shutdownGraceMs + 2_000);
      const c = await exited;
      clearTimeout(force);
      return c;
    })();
    return closed;
  };

  for (let i = 0; i < count; i++) fork(i);
  return {
    listening,
    exited,
    ticketKeys: () => Buffer.from(keys),
    rotateTicketKeys,
    setTicketKeys(next) {
      if (next.length !== TICKET_KEY_BYTES || next.equals(keys)) return;
      keys = Buffer.from(next);
      generation += 1;
      for (const w of byIndex.values()) send(w, keysMessage());
    },
    relayFleetStatus(status) {
      fleetStatus = { certbound: true, type: 'fleet-status', status };
      for (const w of byIndex.values()) send(w, fleetStatus);
    },
    relayStaple(certSha256, der, nextUpdate, minValiditySeconds, summary) {
      const m: ClusterMessage & { type: 'staple' } = { certbound: true, type: 'staple', certSha256, der: der ? der.toString('base64') : null, nextUpdate: nextUpdate ? nextUpdate.getTime() : null, minValiditySeconds, ...(summary ? { summary } : {}) };
      staples.set(certSha256, m);
      for (const w of byIndex.values()) send(w, m);
    },
    collectMetrics(timeoutMs) {
      const workers = [...byIndex.values()].filter((w) => w.isConnected());
      if (workers.length === 0) return Promise.resolve([]);
      const id = ++metricsRequests;
      return new Promise((resolveMetrics) => {
        const got: WorkerMetrics[] = [];
        const pending = new Set(workers);
        const finish = () => {
          clearTimeout(timer);
          metricsWaiting.delete(id);
          resolveMetrics(got);
        };
        const timer = setTimeout(finish, timeoutMs);
        metricsWaiting.set(id, (w, metrics) => {
          if (!pending.delete(w)) return;
          if (metrics && w.process.pid !== undefined) got.push({ pid: w.process.pid, metrics });
          if (pending.size === 0) finish();
        });
        for (const w of workers) send(w, { certbound: true, type: 'metrics-request', id });
      });
    },
    workerPids: () => [...byIndex.values()].flatMap((w) => (w.process.pid === undefined || w.isDead() ? [] : [w.process.pid])),
    reload(material) {
      const id = ++reloads;
      const workers = [...byIndex.entries()];
      const answers = new Map<number, WorkerReloadAnswer>();
      return new Promise<WorkerReloadAnswer[]>((resolveReload) => {
        const finish = () => {
          clearTimeout(timer);
          pendingReloads.delete(id);
          resolveReload(workers.map(([i]) => answers.get(i) ?? { worker: i, ok: false, detail: `no answer in ${RELOAD_ANSWER_WAIT_MS} ms` }));
        };
        const timer = setTimeout(finish, RELOAD_ANSWER_WAIT_MS);
        timer.unref();
        pendingReloads.set(id, (i, ok, detail) => {
          answers.set(i, { worker: i, ok, detail });
          if (workers.every(([w]) => answers.has(w))) finish();
        });
        for (const [, w] of workers) send(w, { certbound: true, type: 'reload', id, material });
        if (workers.length === 0) finish();
      });
    },
    close: () => close(0),
  };
}

/** Something whose ticket keys can be set (a tls.Server, or a CertboundServer). */
export interface TicketKeyTarget { setTicketKeys(keys: Buffer): void }

export interface WorkerLink {
  /** The first ticket keys from the primary. */
  readonly ticketKeys: Buffer;
  /** Applies every later rotation to `target` (and the current keys at once). */
  follow(target: TicketKeyTarget): void;
  /** Tells the primary this worker listens on `port`. */
  listening(port: number): void;
  /** Answers 'OCSPRequest' on `server` with the staples the primary relays (createServer's `stapleSource` calls it for every listener). */
  attachStaples(server: TlsServer): void;
  /** The relayed staple for a certificate if it is servable now (SrvOcspRespMinValiditySeconds), else null. */
  stapleFor(certDer: Buffer, now?: number): Buffer | null;
  /**
   * The machine's staple state of a certificate (SHA-256 hex; the first relayed one when
   * omitted), as the primary's stapler reported it, with `stapled` re-checked against the
   * minimum validity now; `pending` before the primary relayed anything.
   */
  summary(fingerprint?: string, now?: number): OcspStapleSummary;
  /** Answers the primary's metrics requests with `collect()` (prom-client getMetricsAsJSON()). */
  serveMetrics(collect: () => Promise<object[]>): void;
  /** The machine's fleet status as the primary last relayed it (undefined without a fleet). */
  fleetStatus(): FleetStatus | undefined;
  /** Runs `handler` for every reload the primary hands out and answers it (serve calls server.reload). */
  onReload(handler: (material: WorkerReload) => Promise<string>): void;
  /** Stops listening to the primary. */
  close(): void;
}

/** A staple as a worker holds it after the primary relayed it. */
export interface RelayedStaple { readonly der: Buffer | null; readonly nextUpdate: number | null; readonly minValiditySeconds: number; readonly summary?: OcspStapleSummary }

/**
 * The summary a worker shows for a relayed staple: the primary's, with `stapled` decided again
 * now by the rule the worker staples by (a staple that fell below the minimum validity since
 * the last relay is not served, and says so).
 */
export function relayedSummary(s: RelayedStaple | undefined, now: number): OcspStapleSummary {
  const base: OcspStapleSummary = s?.summary ?? { state: 'not-stapled', stapled: false, reason: 'pending', certStatus: null, thisUpdate: null, nextUpdate: null, nextRefresh: null, url: null, fingerprint: null, serial: null };
  const stapled = servableRelayedStaple(s, now) !== null;
  if (stapled === base.stapled) return base;
  return stapled ? { ...base, state: 'stapled', stapled, reason: null } : { ...base, state: 'not-stapled', stapled, reason: base.reason ?? 'shorter-than-min-validity' };
}

/**
 * The primary's rule, applied by a worker at each handshake: a relayed staple valid for less
 * than SrvOcspRespMinValiditySeconds is not served (the primary sends a fresh one or null).
 */
export function servableRelayedStaple(s: RelayedStaple | undefined, now: number): Buffer | null {
  if (!s?.der || s.nextUpdate === null) return null;
  return validLongEnough(now, s.nextUpdate, { SrvOcspRespMinValiditySeconds: s.minValiditySeconds }) ? s.der : null;
}

/**
 * Runs in a worker: asks the primary for the ticket keys and waits for them (bounded by
 * TICKET_KEY_WAIT_MS; without them resumption would not work across workers).
 */
export async function joinPrimary(): Promise<WorkerLink> {
  if (!cluster.isWorker || !process.send) throw new Error('joinPrimary() runs in a cluster worker only');
  let keys: Buffer | undefined;
  const targets = new Set<TicketKeyTarget>();
  const staples = new Map<string, RelayedStaple>();
  let collectMetrics: (() => Promise<object[]>) | undefined;
  let fleetStatus: FleetStatus | undefined;
  let reloadHandler: ((material: WorkerReload) => Promise<string>) | undefined;
  // Intermediates: this worker's go to the primary, the others' come from it (src/tls/session-chains.ts).
  const chains = await import('../tls/session-chains.js');
  const stopSharing = chains.onIntermediates((certs) => {
    if (process.connected) process.send?.({ certbound: true, type: 'intermediates', certs: certs.map((c) => c.raw.toString('base64')) } satisfies ClusterMessage);
  });
  let gotKeys!: () => void;
  const first = new Promise<void>((r) => { gotKeys = r; });
  const onMessage = (m: unknown) => {
    if (!isClusterMessage(m)) return;
    if (m.type === 'ticket-keys') {
      keys = Buffer.from(m.keys, 'base64');
      for (const t of targets) t.setTicketKeys(keys);
      gotKeys();
    } else if (m.type === 'fleet-status') {
      fleetStatus = m.status;
    } else if (m.type === 'intermediates') {
      chains.acceptIntermediates(intermediatesOf(m).map((c) => Buffer.from(c, 'base64')));
    } else if (m.type === 'staple') {
      staples.set(m.certSha256, { der: m.der ? Buffer.from(m.der, 'base64') : null, nextUpdate: m.nextUpdate, minValiditySeconds: m.minValiditySeconds, ...(m.summary ? { summary: m.summary } : {}) });
    } else if (m.type === 'metrics-request') {
      const reply = (metrics: object[] | null) => process.connected && process.send?.({ certbound: true, type: 'metrics', id: m.id, metrics } satisfies ClusterMessage);
      if (!collectMetrics) reply(null);
      else collectMetrics().then(reply, () => reply(null));
    } else if (m.type === 'reload') {
      const answer = (ok: boolean, detail: string) => process.send?.({ certbound: true, type: 'reloaded', id: m.id, ok, detail } satisfies ClusterMessage);
      if (!reloadHandler) answer(false, 'the worker is not serving yet');
      else {
        // The detail starts with the code of the cause (CB_ERR_RELOAD wraps it), for the primary's one line.
        reloadHandler(m.material).then((sha256) => answer(true, sha256), (err: unknown) => {
          const e = err as { code?: string; message?: string; cause?: { code?: string } };
          answer(false, `${e.cause?.code ?? e.code ?? 'CB_ERR_RELOAD'}: ${e.message ?? String(err)}`);
        });
      }
    }
  };
  process.on('message', onMessage);
  process.send({ certbound: true, type: 'hello' } satisfies ClusterMessage);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([first, new Promise<void>((_, rej) => { timer = setTimeout(() => rej(new Error('no session-ticket keys from the cluster primary')), TICKET_KEY_WAIT_MS); })]).finally(() => clearTimeout(timer));
  const stapleFor = (cert: Buffer, now = Date.now()): Buffer | null => servableRelayedStaple(staples.get(createHash('sha256').update(cert).digest('hex')), now);
  return {
    ticketKeys: keys as Buffer,
    follow(target) {
      targets.add(target);
      if (keys) target.setTicketKeys(keys);
    },
    listening(port) {
      process.send?.({ certbound: true, type: 'listening', port } satisfies ClusterMessage);
    },
    stapleFor,
    summary(fingerprint, now = Date.now()) {
      const s = fingerprint !== undefined && staples.has(fingerprint) ? staples.get(fingerprint) : staples.values().next().value;
      return relayedSummary(s, now);
    },
    serveMetrics(collect) {
      collectMetrics = collect;
    },
    fleetStatus: () => fleetStatus,
    attachStaples(server) {
      server.on('OCSPRequest', (cert: Buffer | null | undefined, _issuer: Buffer, cb: (err: Error | null, resp: Buffer | null) => void) => {
        cb(null, cert ? stapleFor(cert) : null);
      });
    },
    onReload(handler) {
      reloadHandler = handler;
    },
    close() {
      process.off('message', onMessage);
      stopSharing();
      targets.clear();
    },
  };
}
