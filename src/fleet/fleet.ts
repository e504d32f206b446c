// Fleet mode (docs/fleet.md): machines behind one load balancer share, through Redis, the TLS
// session-ticket keys (sealed with a key derived from the fleet secret, which never leaves the
// machine), one OCSP retrieval per staple refresh, and the signed OCSP responses and CRLs behind
// client-certificate checks. Coordination is Redis's own: SET NX PX locks, an INCR fencing
// counter checked by a Lua compare-and-set before a write, and pub/sub announcements. Nothing
// read from Redis is trusted: ticket records are authenticated (AES-GCM), documents are the
// signed bytes each machine verifies as if it had fetched them. When Redis is unavailable every
// operation answers "on your own" at once (no offline queue, bounded command time): each machine
// keeps serving with its own keys, stapler and cache, says so once, and rejoins by itself.
// Nothing here runs on the handshake path: handshakes read the keys and staples in memory.
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { isIP } from 'node:net';
// ioredis (~100 ms to load) is imported by start(): a server without a fleet never loads it.
import type { Redis, RedisOptions } from 'ioredis';
import { DEFAULTS } from '../defaults.js';
import { CertboundError } from '../errors.js';
import {
  checkDocument, checkFleetSecret, checkFleetUrl, checkNamespace, checkRotation, deriveFleetKeys, DOCUMENT_FIELD_MAX_BYTES, documentMac, documentMaxBytes, documentName, fleetKeys, FLEET_TICKET_KEY_BYTES, lockTtl,
  openTicketRecord, readFleetPasswordFile, readFleetSecret, rotationDue, sealTicketKeys, TICKET_FIELD_MAX_BYTES, type DocumentRefusal, type FleetDocumentKind, type FleetKeys, type FleetSecretKeys, type OpenedTickets,
} from './fleet-rules.js';

/** The logger methods the fleet uses (pino and fastify loggers fit). */
export interface FleetLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface FleetTicketOptions {
  /** Rotation interval (ms): at least the ticket lifetime. Default: DEFAULTS.ticketKeyRotationMs (1 h). */
  rotationMs?: number;
  /** The ticket lifetime of the servers (s; tls sessionTimeout). Default: 300 (Node's). */
  ticketLifetimeSeconds?: number;
}

export interface FleetOptions {
  /** redis://[user[:password]@]host:port[/db] or rediss://… (TLS; `ca` for a private CA). */
  url: string;
  /** File holding the fleet secret (mode 0600, at least 32 bytes): seals the ticket keys. Or `secret`. */
  secretFile?: string;
  /** The fleet secret itself (at least 32 bytes). */
  secret?: Buffer | string;
  /** PEM CA(s) the rediss:// server's certificate must chain to. Default: Node's root store. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** PEM client certificate and key for a rediss:// server that asks for one. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** ACL user (instead of the URL's). */
  username?: string;
  /** Password (instead of the URL's); or `passwordFile` (its first line). */
  password?: string;
  passwordFile?: string;
  /** Prefix of every key: machines of one fleet share it. Default: 'certbound'. */
  namespace?: string;
  /** Lock expiry (ms). Default: max(30 s, twice the retrieval timeout). */
  lockTtlMs?: number;
  /** Time limit of one Redis command (ms). Default: 1000. */
  commandTimeoutMs?: number;
  /** How long start() waits for Redis before the machine serves on its own (ms). Default: 2000. */
  connectWaitMs?: number;
  /** Interval at which the ticket keys are read again (ms). Default: 60000. */
  resyncMs?: number;
  /** Interval of the PING that finds a Redis that stopped answering on an open connection (ms). Default: 10000. */
  healthCheckMs?: number;
  /** Share the session-ticket keys (the role of a machine's one process that owns them). Default: on. false: documents only (a cluster worker). */
  tickets?: boolean | FleetTicketOptions;
  /** This machine's name in locks and announcements. Default: hostname:pid:random. */
  machine?: string;
  /** Clock (ms since the epoch). Default: Date.now. */
  now?: () => number;
  logger?: FleetLogger;
  /**
   * Log the connection's state changes (CB_ERR_FLEET_UNAVAILABLE, rejoined). Default: true. A
   * cluster worker's connection (revocation data only) leaves them to its primary: one line per
   * machine and outage.
   */
  logState?: boolean;
}

/** What /readyz and the metrics show of the fleet. */
export interface FleetStatus {
  /** 'connected': sharing through Redis; 'degraded': Redis unavailable, serving on this machine's own state; 'connecting': before start() ends; 'closed'. */
  readonly state: 'connecting' | 'connected' | 'degraded' | 'closed';
  /** When this state began (ISO). */
  readonly since: string;
  /** Why degraded (the Redis error), else null. */
  readonly reason: string | null;
  /** The Redis URL, password hidden. */
  readonly url: string;
  readonly namespace: string;
  readonly machine: string;
  /** The ticket keys in force: from the fleet, this machine's own (degraded), or none (documents only). */
  readonly tickets: { readonly source: 'fleet' | 'local' | 'none'; readonly generation: number | null; readonly rotatesAt: string | null };
}

/** Counters since start (metrics: certbound_fleet_*). */
export interface FleetCounters {
  /** Locks won (this machine fetched / rotated). */
  leads: number;
  /** Lock attempts that found another holder. */
  waits: number;
  /** Documents written to Redis. */
  published: number;
  /** Writes refused by fencing (a newer holder exists). */
  fenced: number;
  /** Ticket rotations this machine made, and ticket-key sets installed from Redis. */
  rotations: number;
  installs: number;
  /** Outages seen. */
  outages: number;
}

/** The answer to "may I fetch this?": lead (with a fencing token), wait for another machine, or fetch on your own (Redis unavailable). */
export type FleetLease =
  | { readonly kind: 'lead'; readonly name: string; readonly fence: number; readonly token: string }
  | { readonly kind: 'wait'; readonly retryInMs: number }
  | { readonly kind: 'local' };

/** An announcement from another machine: a document was stored, or the ticket keys rotated. */
export interface FleetAnnouncement {
  readonly kind: FleetDocumentKind | 'tickets';
  readonly id: string;
  readonly fence: number;
  readonly from: string;
  /** The sender's word on the document's nextUpdate (ms): a hint only, the bytes decide. */
  readonly nextUpdate: number | null;
}

/** A document as a machine of the fleet stored it: its bytes (unverified) and when it was stored (authenticated by the MAC). */
export interface StoredDocument {
  readonly der: Buffer;
  /** ms since the epoch. */
  readonly storedAt: number;
}

/** Shared documents (signed bytes): the stapler's and the revocation checker's view of the fleet. */
export interface FleetDocuments {
  /** The bytes the fleet holds (unverified: verify before use), or undefined (none, or Redis unavailable). Never rejects. */
  read(kind: FleetDocumentKind, id: string): Promise<Buffer | undefined>;
  /** The same with the time a machine stored it (a reader keeps it no longer than fleetDocumentMaxAge from then). Never rejects. */
  readStored(kind: FleetDocumentKind, id: string): Promise<StoredDocument | undefined>;
  /** Takes the lock of a document for one retrieval. Never rejects: 'local' when Redis is unavailable. */
  lead(kind: FleetDocumentKind, id: string): Promise<FleetLease>;
  /**
   * Stores verified bytes under a lease (only while its fence is the newest: a paused old holder
   * writes nothing), until `expireAt` (ms), and announces them. True when stored. Never rejects.
   */
  publish(lease: FleetLease, kind: FleetDocumentKind, id: string, der: Buffer, expireAt: number, nextUpdate?: number): Promise<boolean>;
  /** Releases the lock of a lease (if still ours). Never rejects. */
  release(lease: FleetLease): Promise<void>;
  /** Resolves on an announcement of this document, after `ms`, or when `signal` aborts. */
  wait(kind: FleetDocumentKind, id: string, ms: number, signal?: AbortSignal): Promise<void>;
  /** Calls `listener` for every announcement from another machine; returns a function that removes it. */
  onAnnounce(listener: (a: FleetAnnouncement) => void): () => void;
  /** The lock expiry (ms). */
  readonly lockTtlMs: number;
  /** True while Redis answers. */
  connected(): boolean;
}

// Lua: Redis's own compare-and-set. ACQUIRE takes the lock and a new fence atomically.
// A counter that is no number, or too large to stay exact (2^52), starts again (someone wrote
// it); a lock left without an expiry (not one of ours) gets the lock's, so it cannot block for ever;
// a lock or counter of another type (a hash planted there) is removed rather than failing every try.
// Numbers go back as strings: Lua would print a large one as 1e+15.
const ACQUIRE = `
for i = 1, 2 do
  local t = redis.call('TYPE', KEYS[i]).ok
  if t ~= 'none' and t ~= 'string' then redis.call('DEL', KEYS[i]) end
end
local cur = redis.call('GET', KEYS[2])
if cur and (not string.match(cur, '^%d+$') or string.len(cur) > 15 or tonumber(cur) >= 4503599627370496) then redis.call('DEL', KEYS[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local f = string.format('%d', redis.call('INCR', KEYS[2]))
  if redis.call('PTTL', KEYS[2]) < 172800000 then redis.call('PEXPIRE', KEYS[2], 172800000) end
  redis.call('SET', KEYS[1], ARGV[1] .. ':' .. f, 'PX', ARGV[2])
  return {1, f}
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 or ttl > tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
return {0, tostring(ttl)}`;
// STORE writes only while the fence presented is still the newest one handed out. A fencing
// counter lives two days after its last lock and a day past its document (it is not left behind
// for every client certificate ever checked); a holder paused longer than that writes nothing
// unverified anyway: readers verify every document.
const STORE = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local expireAt = tonumber(ARGV[2])
if expireAt > 0 then
  redis.call('PEXPIREAT', KEYS[1], expireAt)
  local t = redis.call('TIME')
  local keep = expireAt + 86400000
  if tonumber(t[1]) * 1000 + redis.call('PTTL', KEYS[2]) < keep then redis.call('PEXPIREAT', KEYS[2], keep) end
end
return 1`;
// READ returns a document's three fields only when each is within its bound, checked and read in
// one step (a 50 MB field never crosses the connection, and cannot be swapped in between):
// {0} none, {1, der, storedAt, mac}, {2, sizes} too large, {3} not a hash.
const READ = `
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {0} end
if t ~= 'hash' then return {3} end
local d = redis.call('HSTRLEN', KEYS[1], 'der')
local s = redis.call('HSTRLEN', KEYS[1], 'storedAt')
local m = redis.call('HSTRLEN', KEYS[1], 'mac')
if d == 0 then return {0} end
if d > tonumber(ARGV[1]) or s > tonumber(ARGV[2]) or m > tonumber(ARGV[2]) then return {2, d .. ' ' .. s .. ' ' .. m} end
local v = redis.call('HMGET', KEYS[1], 'der', 'storedAt', 'mac')
return {1, v[1] or '', v[2] or '', v[3] or ''}`;
// READ_TICKETS: the ticket record's five fields, each within its bound, or {0} none, {2, field} too large, {3} not a hash.
const READ_TICKETS = `
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {0} end
if t ~= 'hash' then return {3} end
local names = {'fence', 'generation', 'createdAt', 'secretId', 'sealed'}
for _, f in ipairs(names) do
  if redis.call('HSTRLEN', KEYS[1], f) > tonumber(ARGV[1]) then return {2, f} end
end
local v = redis.call('HMGET', KEYS[1], unpack(names))
return {1, v[1] or '', v[2] or '', v[3] or '', v[4] or '', v[5] or ''}`;
// RELEASE deletes the lock only if it is still this holder's.
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

type FleetRedis = Redis & {
  certboundAcquire(lock: string, fence: string, owner: string, ttl: number): Promise<[number, string]>;
  certboundStore(doc: string, fence: string, ...args: (string | Buffer | number)[]): Promise<number>;
  certboundRelease(lock: string, token: string): Promise<number>;
  certboundReadBuffer(doc: string, maxDer: number, maxField: number): Promise<[number, ...(Buffer | string)[]]>;
  certboundReadTickets(record: string, maxField: number): Promise<[number, ...string[]]>;
};

const MAX_ANNOUNCEMENT_BYTES = 1024;
const ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The kind of a lock's name ('staple:<id>' → 'staple', 'tickets' → 'tickets'): refusals are kept per kind. */
function kindOf(name: string): string {
  return name.split(':')[0] ?? name;
}

function parseAnnouncement(message: Buffer | string): FleetAnnouncement | undefined {
  if (message.length > MAX_ANNOUNCEMENT_BYTES) return undefined;
  let m: unknown;
  try {
    m = JSON.parse(message.toString());
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const a = m as Record<string, unknown>;
  if (!['staple', 'ocsp', 'crl', 'tickets'].includes(a.kind as string)) return undefined;
  if (typeof a.id !== 'string' || !ID.test(a.id) || typeof a.from !== 'string' || a.from.length > 200) return undefined;
  if (typeof a.fence !== 'number' || !Number.isSafeInteger(a.fence)) return undefined;
  const nextUpdate = typeof a.nextUpdate === 'number' && Number.isFinite(a.nextUpdate) ? a.nextUpdate : null;
  return { kind: a.kind as FleetAnnouncement['kind'], id: a.id, fence: a.fence, from: a.from, nextUpdate };
}


export class Fleet extends EventEmitter<{ status: [FleetStatus]; keys: [Buffer, { source: 'fleet' | 'local'; generation: number }]; rejoin: [] }> implements FleetDocuments {
  readonly namespace: string;
  readonly machine: string;
  readonly lockTtlMs: number;
  readonly #keys: FleetKeys;
  readonly #secret: FleetSecretKeys;
  readonly #shownUrl: string;
  readonly #redisOptions: RedisOptions;
  readonly #now: () => number;
  readonly #log: FleetLogger | undefined;
  readonly #logState: boolean;
  readonly #connectWaitMs: number;
  readonly #resyncMs: number;
  readonly #tickets: { rotationMs: number } | undefined;
  readonly #counters: FleetCounters = { leads: 0, waits: 0, published: 0, fenced: 0, rotations: 0, installs: 0, outages: 0 };
  readonly #announceListeners = new Set<(a: FleetAnnouncement) => void>();
  readonly #waiters = new Map<string, Set<() => void>>();
  #cmd: FleetRedis | undefined;
  #sub: Redis | undefined;
  #state: FleetStatus['state'] = 'connecting';
  #since: number;
  #reason: string | null = null;
  #started = false;
  #closed = false;
  // Ticket keys in force.
  #ticketKeys: Buffer | undefined;
  #ticketSource: 'fleet' | 'local' | 'none' = 'none';
  #generation = 0;
  #rotatesAt: number | undefined;
  #ticketTimer: NodeJS.Timeout | undefined;
  #health: NodeJS.Timeout | undefined;
  readonly #healthCheckMs: number;
  readonly #commandTimeoutMs: number;
  #syncing: Promise<void> | undefined;
  #lastTicketProblem = '';

  constructor(options: FleetOptions) {
    super();
    const { url, shown } = checkFleetUrl(options.url);
    this.namespace = checkNamespace(options.namespace ?? DEFAULTS.fleetNamespace);
    this.#keys = fleetKeys(this.namespace);
    if ((options.secret === undefined) === (options.secretFile === undefined)) {
      throw new CertboundError('CB_ERR_FLEET_SECRET', ['(fleet options)', 'give exactly one of secretFile and secret']);
    }
    this.#secret = deriveFleetKeys(options.secretFile !== undefined ? readFleetSecret(options.secretFile) : checkFleetSecret(options.secret as Buffer | string), this.namespace);
    this.#shownUrl = shown;
    this.#now = options.now ?? Date.now;
    this.#since = this.#now();
    this.#log = options.logger;
    this.#logState = options.logState ?? true;
    this.machine = options.machine ?? `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
    this.lockTtlMs = lockTtl(DEFAULTS.ocspSettings.SrvOcspRespUrlRetrievalTimeoutMilliseconds, options.lockTtlMs);
    this.#connectWaitMs = options.connectWaitMs ?? DEFAULTS.fleetConnectWaitMs;
    this.#resyncMs = options.resyncMs ?? DEFAULTS.fleetResyncMs;
    this.#healthCheckMs = options.healthCheckMs ?? DEFAULTS.fleetHealthCheckMs;
    this.#commandTimeoutMs = options.commandTimeoutMs ?? DEFAULTS.fleetCommandTimeoutMs;
    if (options.tickets !== false) {
      const t = options.tickets === true || options.tickets === undefined ? {} : options.tickets;
      this.#tickets = { rotationMs: checkRotation(t.rotationMs ?? DEFAULTS.ticketKeyRotationMs, t.ticketLifetimeSeconds ?? DEFAULTS.ticketLifetimeSeconds) };
    }
    const password = options.passwordFile !== undefined ? readFleetPasswordFile(options.passwordFile) : options.password;
    const ca = options.ca === undefined ? undefined : Array.isArray(options.ca) ? options.ca : [options.ca];
    const host = url.hostname.replace(/^\[|\]$/g, '');
    this.#redisOptions = {
      host,
      port: url.port === '' ? 6379 : Number(url.port),
      db: url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0,
      ...(options.username ?? url.username ? { username: options.username ?? decodeURIComponent(url.username) } : {}),
      ...(password ?? url.password ? { password: password ?? decodeURIComponent(url.password) } : {}),
      // SNI only for a name (Node warns, DEP0123, for an IP; the certificate is still checked against it).
      ...(url.protocol === 'rediss:' ? { tls: { ...(isIP(host) ? {} : { servername: host }), ...(ca ? { ca } : {}), ...(options.cert ? { cert: options.cert } : {}), ...(options.key ? { key: options.key } : {}) } } : {}),
      lazyConnect: true,
      // Fail at once while disconnected, never queue: no caller waits on Redis being away.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: options.commandTimeoutMs ?? DEFAULTS.fleetCommandTimeoutMs,
      connectTimeout: options.commandTimeoutMs ?? DEFAULTS.fleetCommandTimeoutMs,
      retryStrategy: (times: number) => (this.#closed ? null : Math.min(100 * times, DEFAULTS.fleetReconnectMaxMs)),
      autoResubscribe: true,
    };
  }

  /** The current status. */
  status(): FleetStatus {
    const { state, reason } = this.#view();
    return Object.freeze({
      state,
      since: new Date(this.#since).toISOString(),
      reason,
      url: this.#shownUrl,
      namespace: this.namespace,
      machine: this.machine,
      tickets: Object.freeze({ source: this.#ticketSource, generation: this.#ticketSource === 'none' ? null : this.#generation, rotatesAt: this.#rotatesAt !== undefined ? new Date(this.#rotatesAt).toISOString() : null }),
    });
  }

  /** A copy of the counters. */
  counters(): FleetCounters {
    return { ...this.#counters };
  }

  connected(): boolean {
    return this.#view().state === 'connected' && this.#cmd?.status === 'ready';
  }

  /**
   * What status() shows: the connection's state, or 'degraded' while Redis refuses a kind of
   * command (or the announcement channel) on an open connection, with the newest refusal as reason.
   */
  #view(): { state: FleetStatus['state']; reason: string | null } {
    if (this.#state === 'connected' && this.#refusals.size > 0) return { state: 'degraded', reason: [...this.#refusals.values()].at(-1) ?? null };
    if (this.#state === 'connected' && !this.#subscribed) return { state: 'degraded', reason: 'the announcement subscription is down (announcements from other machines are missed)' };
    return { state: this.#state, reason: this.#reason };
  }

  /** The ticket keys in force (48 bytes), once start() has resolved (with the tickets role). */
  ticketKeys(): Buffer | undefined {
    return this.#ticketKeys ? Buffer.from(this.#ticketKeys) : undefined;
  }

  /**
   * Connects (waiting at most connectWaitMs), subscribes, and with the tickets role installs the
   * fleet's ticket keys (or makes the first ones). Resolves whether or not Redis answered: without
   * it the machine starts degraded, on its own keys, and joins when Redis comes.
   */
  async start(): Promise<void> {
    if (this.#started) return;
    this.#started = true;
    const { Redis } = await import('ioredis');
    if (this.#closed) return;
    const cmd = new Redis({ ...this.#redisOptions, connectionName: `certbound:${this.machine}` }) as FleetRedis;
    cmd.defineCommand('certboundAcquire', { numberOfKeys: 2, lua: ACQUIRE });
    cmd.defineCommand('certboundStore', { numberOfKeys: 2, lua: STORE });
    cmd.defineCommand('certboundRelease', { numberOfKeys: 1, lua: RELEASE });
    cmd.defineCommand('certboundRead', { numberOfKeys: 1, lua: READ });
    cmd.defineCommand('certboundReadTickets', { numberOfKeys: 1, lua: READ_TICKETS });
    // The subscriber subscribes on each 'ready' itself: ioredis's own resubscription after a
    // reconnect has no catch, and a refusal (an ACL without the channel) would end the process.
    const sub = new Redis({ ...this.#redisOptions, enableOfflineQueue: true, commandTimeout: undefined, autoResubscribe: false, connectionName: `certbound:${this.machine}:sub` } as RedisOptions);
    this.#cmd = cmd;
    this.#sub = sub;
    cmd.on('error', (err: Error) => this.#down(err.message));
    cmd.on('close', () => this.#down('connection closed'));
    cmd.on('ready', () => this.#up());
    sub.on('error', () => {});
    // The subscription is part of the fleet's state: without it this machine misses announcements.
    sub.on('close', () => this.#subscription(false));
    sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.#onMessage(message));
    let answered!: () => void;
    const firstAnswer = new Promise<void>((resolve) => { answered = resolve; });
    const subscribe = () => {
      sub.subscribe(this.#keys.channel).then(() => { this.#subscription(true); this.#answered('subscribe'); }, (err: unknown) => this.#failed(err, 'subscribe')).finally(answered);
    };
    sub.on('ready', subscribe);
    // Ready, refused or broken (start degraded at once and join later), or silent: bounded by connectWaitMs.
    const ready = new Promise<void>((resolve) => {
      cmd.once('ready', () => resolve());
      cmd.once('error', () => resolve());
      cmd.once('close', () => resolve());
      setTimeout(resolve, this.#connectWaitMs).unref();
    });
    cmd.connect().catch(() => {});
    sub.connect().catch(() => {});
    // A Redis that keeps the connection open but stopped answering is found by the next command: one every fleetHealthCheckMs at least.
    this.#health = setInterval(() => this.#checkHealth(subscribe), this.#healthCheckMs);
    this.#health.unref();
    await ready;
    // The subscription's first answer too (it may be refused), within what is left of connectWaitMs.
    await Promise.race([firstAnswer, new Promise<void>((resolve) => setTimeout(resolve, this.#connectWaitMs).unref())]);
    if (cmd.status !== 'ready') this.#down(this.#reason ?? `no answer within ${this.#connectWaitMs} ms`);
    if (this.#tickets) await this.#syncTickets();
  }

  /** Stops timers and closes both connections. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ticketTimer) clearTimeout(this.#ticketTimer);
    if (this.#syncSoonTimer) clearTimeout(this.#syncSoonTimer);
    if (this.#health) clearInterval(this.#health);
    for (const set of this.#waiters.values()) for (const w of set) w();
    this.#waiters.clear();
    this.#setState('closed', null);
    await Promise.all([this.#cmd, this.#sub].map((c) => c?.quit().catch(() => c.disconnect())));
  }

  // --- documents -------------------------------------------------------------------------

  async read(kind: FleetDocumentKind, id: string): Promise<Buffer | undefined> {
    return (await this.readStored(kind, id))?.der;
  }

  async readStored(kind: FleetDocumentKind, id: string): Promise<StoredDocument | undefined> {
    const cmd = this.#ready();
    if (!cmd) return undefined;
    const key = this.#keys.document(kind, id);
    try {
      const [found, ...fields] = await cmd.certboundReadBuffer(key, documentMaxBytes(kind), DOCUMENT_FIELD_MAX_BYTES);
      this.#answered(`read:${kind}`);
      if (found === 0) return undefined;
      // Another type where the hash belongs (the next store replaces it), or a field past its bound.
      if (found === 3) { this.#refuseDocument(kind, id, 'malformed', 'type'); return undefined; }
      if (found === 2) { this.#refuseDocument(kind, id, 'too-large', String(fields[0])); return undefined; }
      const [der, storedAt, mac] = fields as Buffer[];
      const checked = checkDocument(this.#secret, kind, id, { der: der ?? null, storedAt: storedAt?.toString('latin1') ?? null, mac: mac?.toString('latin1') ?? null }, this.#now());
      if (!checked.ok) { this.#refuseDocument(kind, id, checked.reason, storedAt?.toString('latin1') ?? ''); return undefined; }
      return { der: checked.der, storedAt: checked.storedAt };
    } catch (err) {
      this.#failed(err, `read:${kind}`);
      return undefined;
    }
  }

  /** One warn line per document, reason and version: a document a machine will not read (an attacker's, or a stale one). */
  #refuseDocument(kind: FleetDocumentKind, id: string, reason: DocumentRefusal, version: string): void {
    const key = `${kind}:${id}:${reason}:${version}`;
    if (this.#refusedDocuments.has(key)) return;
    if (this.#refusedDocuments.size >= 1000) this.#refusedDocuments.clear();
    this.#refusedDocuments.add(key);
    // A document past its age is normal (it is fetched again): said at debug level only through the caller's retrieval.
    if (reason === 'too-old') return;
    this.#log?.warn({ event: 'fleet-document', outcome: 'refused', kind, id, reason }, `fleet: a ${kind} document in Redis is not read (${reason === 'mac' ? 'its MAC does not verify: not stored by a machine of this fleet' : reason}); this machine retrieves it itself`);
  }
  readonly #refusedDocuments = new Set<string>();

  /**
   * A command that timed out means a Redis that holds the connection open but does not answer
   * (paused, overloaded, a half-open link): degraded like a closed connection, and the connection
   * is dropped and made again, so that 'ready' says when it answers again.
   */
  #failed(err: unknown, what: string): void {
    if (this.#closed) return;
    const message = (err as Error)?.message ?? String(err);
    if (/timed out/i.test(message)) {
      this.#down('a command timed out');
      this.#cmd?.disconnect(true);
    } else if ((err as Error)?.name === 'ReplyError') {
      this.#refused(what, message);
    }
  }

  /**
   * Every fleetHealthCheckMs: a PING on each connection (a silent subscriber is dropped and made
   * again: a half-open link would otherwise never be noticed), and each kind of command Redis
   * refused is tried again without effect (a read of a key of that kind that does not exist, a
   * STORE with a fence that never matches, a lock on a probe name), so that an ACL fixed meanwhile
   * clears it within one interval rather than at the next real command of that kind.
   */
  #checkHealth(subscribe: () => void): void {
    const cmd = this.#ready();
    cmd?.ping().catch((err: unknown) => this.#failed(err, 'ping'));
    const sub = this.#sub;
    if (sub?.status === 'ready' && this.#subscribed) {
      const silent = setTimeout(() => { this.#subscription(false); sub.disconnect(true); }, this.#commandTimeoutMs);
      silent.unref();
      sub.ping().then(() => clearTimeout(silent), () => clearTimeout(silent));
    }
    if (this.#refusals.has('subscribe') && sub?.status === 'ready') subscribe();
    if (!cmd) return;
    for (const what of [...this.#refusals.keys()]) {
      const [op, kind = ''] = what.split(':');
      // The ticket record's own keys (an ACL may name them exactly); for documents a probe name of the same kind.
      const name = kind === 'tickets' ? 'tickets' : `${kind}:certbound-probe`;
      const doc = kind === 'tickets' ? this.#keys.tickets : `${this.namespace}:${name}`;
      const tried: Promise<unknown> | undefined =
        op === 'read' && kind === 'tickets' ? cmd.certboundReadTickets(doc, TICKET_FIELD_MAX_BYTES)
        : op === 'read' ? cmd.certboundReadBuffer(doc, 1, 1)
        // A fence that never matches: STORE answers 0 and writes nothing.
        : op === 'store' ? cmd.certboundStore(doc, this.#keys.fence(name), 'never', '0')
        : op === 'lock' ? cmd.certboundAcquire(this.#keys.lock(name), this.#keys.fence(name), this.machine, 1000)
          .then(([won, fence]) => (won === 1 ? cmd.certboundRelease(this.#keys.lock(name), `${this.machine}:${fence}`) : 0))
        : op === 'publish' ? cmd.publish(this.#keys.channel, 'certbound probe: not an announcement')
        : undefined;
      tried?.then(() => this.#answered(what), () => {});
    }
  }

  /** The announcement subscription came or went. */
  #subscription(on: boolean): void {
    if (this.#subscribed === on) return;
    this.#subscribed = on;
    this.#changed();
  }
  #subscribed = false;

  /** A command of kind `what` went through: a refusal of that kind is over. */
  #answered(what: string): void {
    if (!this.#refusals.delete(what)) return;
    this.#changed();
    if (this.#view().state === 'connected') this.#log?.info({ event: 'fleet', state: 'connected', url: this.#shownUrl, operation: what }, 'fleet: Redis accepts the fleet\'s commands again; rejoined the fleet');
  }

  async lead(kind: FleetDocumentKind, id: string): Promise<FleetLease> {
    return this.#lead(documentName(kind, id));
  }

  async publish(lease: FleetLease, kind: FleetDocumentKind, id: string, der: Buffer, expireAt: number, nextUpdate?: number): Promise<boolean> {
    if (lease.kind !== 'lead') return false;
    const storedAt = this.#now();
    const stored = await this.#store(lease, this.#keys.document(kind, id), expireAt, ['der', der, 'from', this.machine, 'storedAt', String(storedAt), 'mac', documentMac(this.#secret, kind, id, storedAt, der)]);
    if (stored) await this.#announce({ kind, id, fence: lease.fence, from: this.machine, nextUpdate: nextUpdate ?? null });
    return stored;
  }

  async release(lease: FleetLease): Promise<void> {
    if (lease.kind !== 'lead') return;
    const cmd = this.#ready();
    if (!cmd) return;
    await cmd.certboundRelease(this.#keys.lock(lease.name), lease.token).catch(() => {});
  }

  wait(kind: FleetDocumentKind | 'tickets', id: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const key = `${kind}:${id}`;
      let set = this.#waiters.get(key);
      if (!set) this.#waiters.set(key, (set = new Set()));
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.#waiters.get(key) === set) this.#waiters.delete(key);
        resolve();
      };
      const timer = setTimeout(done, Math.max(0, ms));
      timer.unref();
      signal?.addEventListener('abort', done, { once: true });
      if (this.#closed || signal?.aborted) done();
      else set.add(done);
    });
  }

  onAnnounce(listener: (a: FleetAnnouncement) => void): () => void {
    this.#announceListeners.add(listener);
    return () => this.#announceListeners.delete(listener);
  }

  // --- internals -------------------------------------------------------------------------

  #ready(): FleetRedis | undefined {
    return this.#closed || this.#cmd?.status !== 'ready' ? undefined : this.#cmd;
  }

  async #lead(name: string): Promise<FleetLease> {
    const cmd = this.#ready();
    if (!cmd) return { kind: 'local' };
    try {
      const [won, text] = await cmd.certboundAcquire(this.#keys.lock(name), this.#keys.fence(name), this.machine, this.lockTtlMs);
      this.#answered(`lock:${kindOf(name)}`);
      const n = Number(text);
      if (!Number.isSafeInteger(n)) return { kind: 'local' };
      if (won === 1) {
        this.#counters.leads++;
        return { kind: 'lead', name, fence: n, token: `${this.machine}:${n}` };
      }
      this.#counters.waits++;
      return { kind: 'wait', retryInMs: n > 0 ? n : 100 };
    } catch (err) {
      this.#failed(err, `lock:${kindOf(name)}`);
      return { kind: 'local' };
    }
  }

  async #store(lease: FleetLease & { kind: 'lead' }, key: string, expireAt: number, fields: (string | Buffer)[]): Promise<boolean> {
    const cmd = this.#ready();
    if (!cmd) return false;
    try {
      const ok = await cmd.certboundStore(key, this.#keys.fence(lease.name), String(lease.fence), String(Math.max(0, Math.floor(expireAt))), ...fields);
      this.#answered(`store:${kindOf(lease.name)}`);
      if (ok === 1) this.#counters.published++;
      else this.#counters.fenced++;
      return ok === 1;
    } catch (err) {
      this.#failed(err, `store:${kindOf(lease.name)}`);
      return false;
    }
  }

  async #announce(a: FleetAnnouncement): Promise<void> {
    const cmd = this.#ready();
    if (!cmd) return;
    try {
      await cmd.publish(this.#keys.channel, JSON.stringify(a));
      this.#answered('publish');
    } catch (err) {
      // Refused (an ACL without the channel): the others learn of it at their next read or resync; degraded meanwhile.
      this.#failed(err, 'publish');
    }
  }

  #onMessage(message: Buffer): void {
    const a = parseAnnouncement(message);
    if (!a || a.from === this.machine) return;
    for (const w of [...(this.#waiters.get(`${a.kind}:${a.id}`) ?? [])]) w();
    if (a.kind === 'tickets' && this.#tickets) this.#syncSoon();
    for (const l of this.#announceListeners) {
      try {
        l(a);
      } catch {
        // A listener's bug does not stop the others.
      }
    }
  }

  #setState(state: FleetStatus['state'], reason: string | null): void {
    this.#state = state;
    this.#reason = reason;
    this.#changed();
  }

  /** Emits 'status' when what status() shows changed (and dates it). */
  #changed(): void {
    const v = this.#view();
    const shown = `${v.state}\n${v.reason ?? ''}`;
    if (shown === this.#shown) return;
    this.#shown = shown;
    this.#since = this.#now();
    this.emit('status', this.status());
  }
  #shown = 'connecting\n';

  /**
   * Redis refused a kind of command (`what`: 'read:staple', 'lock:tickets', 'publish', …) on an
   * open connection: NOPERM (an ACL without +eval, a key pattern or channel left out), READONLY
   * (a replica after a failover), OOM, BUSY. The machine acts alone for that kind of command and
   * the fleet shows degraded with the reason, said once per kind (CB_ERR_FLEET_UNAVAILABLE),
   * until a command of the same kind goes through (#answered): a refusal of the ticket commands is
   * not lifted by a staple read that succeeds, so the state does not flap.
   */
  #refused(what: string, message: string): void {
    const reason = `Redis refused a command (${what}): ${message.split('\n')[0]?.slice(0, 200)}`;
    const known = this.#refusals.has(what);
    this.#refusals.delete(what);
    this.#refusals.set(what, reason);
    this.#changed();
    // Said once per kind until it goes through again (EVALSHA and EVAL, say, are refused in other words).
    if (known) return;
    if (this.#state === 'connected') this.#counters.outages++;
    // Every process says it (a cluster worker's connection carries its revocation data, and its own refusals).
    this.#log?.warn({ event: 'fleet', state: 'degraded', code: 'CB_ERR_FLEET_UNAVAILABLE', url: this.#shownUrl, reason, operation: what }, new CertboundError('CB_ERR_FLEET_UNAVAILABLE', [this.#shownUrl, reason]).message);
  }
  readonly #refusals = new Map<string, string>();

  #down(reason: string): void {
    if (this.#closed || !this.#started) return;
    if (this.#state === 'degraded') return;
    this.#counters.outages++;
    this.#setState('degraded', reason);
    // Once per outage, with its code.
    if (this.#logState) this.#log?.warn({ event: 'fleet', state: 'degraded', code: 'CB_ERR_FLEET_UNAVAILABLE', url: this.#shownUrl, reason }, new CertboundError('CB_ERR_FLEET_UNAVAILABLE', [this.#shownUrl, reason]).message);
  }

  #up(): void {
    if (this.#closed) return;
    const was = this.#state;
    this.#setState('connected', null);
    if (was === 'degraded') {
      if (this.#logState) this.#log?.info({ event: 'fleet', state: this.#view().state, url: this.#shownUrl }, this.#refusals.size === 0 ? 'fleet: Redis is back; rejoined the fleet' : `fleet: Redis is back; it still refuses ${[...this.#refusals.keys()].join(', ')}`);
      if (this.#tickets) void this.#syncTickets();
      this.emit('rejoin');
    }
  }

  // --- ticket keys -----------------------------------------------------------------------

  #install(keys: Buffer, source: 'fleet' | 'local', generation: number, rotatesAt: number, why = ''): void {
    const shown = `${this.#ticketSource} ${this.#generation} ${this.#rotatesAt}`;
    this.#rotatesAt = rotatesAt;
    if (this.#ticketKeys?.equals(keys) && this.#ticketSource === source) {
      this.#generation = generation;
      // The same keys under a new record (a rejoin rewrote them): status() changed, and a cluster's workers show it in /readyz.
      if (shown !== `${source} ${generation} ${rotatesAt}`) this.emit('status', this.status());
      return;
    }
    this.#ticketKeys = Buffer.from(keys);
    this.#ticketSource = source;
    this.#generation = generation;
    if (source === 'fleet') this.#counters.installs++;
    this.#log?.info({ event: 'fleet-tickets', source, generation, rotatesAt: new Date(rotatesAt).toISOString() }, source === 'fleet'
      ? `fleet: session-ticket keys of generation ${generation} installed (tickets issued under older keys now get a full handshake)`
      : `fleet: session-ticket keys of this machine in force (${why}: tickets resume on this machine only)`);
    this.emit('keys', Buffer.from(keys), { source, generation });
    this.emit('status', this.status());
  }

  /** Keys of this machine alone (`why`: Redis unavailable, …), made when there are none or those in force are due, rotated on the same interval. */
  #local(now: number, why: string): void {
    const rotationMs = (this.#tickets as { rotationMs: number }).rotationMs;
    if (this.#ticketSource === 'none' || (this.#ticketSource === 'local' && this.#rotatesAt !== undefined && now >= this.#rotatesAt)) {
      this.#install(randomBytes(FLEET_TICKET_KEY_BYTES), 'local', this.#ticketSource === 'none' ? 0 : this.#generation, now + rotationMs, why);
    } else if (this.#ticketSource === 'fleet' && this.#rotatesAt !== undefined && now >= this.#rotatesAt) {
      // The fleet's keys are due and no machine can rotate them: this one rotates its own.
      this.#install(randomBytes(FLEET_TICKET_KEY_BYTES), 'local', this.#generation, now + rotationMs, why);
    }
  }

  /**
   * The ticket record read (every field within its bound) and opened: `opened` undefined when
   * there is none; a key of another type or a field past its bound is 'malformed'. Undefined when
   * Redis did not answer.
   */
  async #openTickets(cmd: FleetRedis): Promise<{ opened: OpenedTickets | undefined } | undefined> {
    try {
      const [found, ...fields] = await cmd.certboundReadTickets(this.#keys.tickets, TICKET_FIELD_MAX_BYTES);
      this.#answered('read:tickets');
      if (found === 3) return { opened: { ok: false, reason: 'malformed', detail: 'the key holds another type than a hash' } };
      if (found === 2) return { opened: { ok: false, reason: 'malformed', detail: `its ${String(fields[0])} field is longer than ${TICKET_FIELD_MAX_BYTES} bytes` } };
      if (found !== 1) return { opened: undefined };
      const [fence = '', generation = '', createdAt = '', secretId = '', sealed = ''] = fields;
      return { opened: openTicketRecord({ fence, generation, createdAt, secretId, sealed }, this.#secret, this.namespace) };
    } catch (err) {
      this.#failed(err, 'read:tickets');
      return undefined;
    }
  }

  #armTickets(at: number): void {
    if (this.#closed) return;
    if (this.#ticketTimer) clearTimeout(this.#ticketTimer);
    // A little spread so that machines do not all race for the lock at the same millisecond.
    const delay = Math.min(Math.max(0, at - this.#now()) + Math.floor(Math.random() * 250), this.#resyncMs, 0x7fffffff);
    this.#ticketTimer = setTimeout(() => void this.#syncTickets(), delay);
    this.#ticketTimer.unref();
  }

  #syncTickets(): Promise<void> {
    this.#syncing ??= this.#syncTicketsOnce().finally(() => { this.#syncing = undefined; });
    this.#syncedAt = this.#now();
    return this.#syncing;
  }

  /** An announcement of new keys: read them at once, but at most once a second (a flood of forged announcements costs one read a second). */
  #syncSoon(): void {
    if (this.#syncSoonTimer) return;
    const wait = this.#syncedAt + 1000 - this.#now();
    if (wait <= 0) { void this.#syncTickets(); return; }
    this.#syncSoonTimer = setTimeout(() => { this.#syncSoonTimer = undefined; void this.#syncTickets(); }, wait);
    this.#syncSoonTimer.unref();
  }
  #syncedAt = 0;
  #syncSoonTimer: NodeJS.Timeout | undefined;

  async #syncTicketsOnce(): Promise<void> {
    if (this.#closed || !this.#tickets) return;
    const { rotationMs } = this.#tickets;
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.#now();
      const cmd = this.#ready();
      const read = cmd ? await this.#openTickets(cmd) : undefined;
      if (!cmd || read === undefined) {
        this.#local(now, 'Redis unavailable');
        this.#armTickets(this.#rotatesAt ?? now + rotationMs);
        return;
      }
      // Unusable (another type, a field past its bound, tampered): written again under the lock below (not an outage).
      const { opened } = read;
      if (opened?.ok === false) this.#ticketProblem(opened.reason, opened.detail);
      if (opened?.ok === false && opened.reason === 'other-secret') {
        // Another secret wrote them: this machine never overwrites the fleet's keys.
        this.#local(now, 'the fleet\'s record is sealed with another secret');
        this.#armTickets(this.#rotatesAt ?? now + rotationMs);
        return;
      }
      if (opened?.ok) {
        this.#lastTicketProblem = '';
        const due = rotationDue(opened.createdAt, rotationMs);
        // A record dated more than one interval ahead (a machine with a clock far off) is due now rather than never.
        if (now < due && opened.createdAt <= now + rotationMs) {
          this.#install(opened.keys, 'fleet', opened.generation, due);
          this.#armTickets(due);
          return;
        }
      }
      // None yet, unusable, or due: one machine rotates.
      const lease = await this.#lead('tickets');
      if (lease.kind === 'local') {
        // Redis refused the lock or went away: keys that are due are replaced by this machine's own
        // (never kept past their time), and the fleet is asked again soon.
        this.#local(this.#now(), this.#view().reason ?? 'the fleet\'s lock could not be taken');
        this.#armTickets(this.#now() + Math.min(this.lockTtlMs, this.#resyncMs));
        return;
      }
      if (lease.kind === 'wait') {
        await this.wait('tickets', 'tickets', Math.min(lease.retryInMs, this.lockTtlMs));
        continue;
      }
      try {
        // Read again under the lock: another machine may have rotated a moment ago.
        const again = (await this.#openTickets(cmd))?.opened;
        if (again?.ok && now < rotationDue(again.createdAt, rotationMs)) continue;
        // Written with another secret meanwhile: never overwritten (the first read says so, and this machine goes on its own keys).
        if (again?.ok === false && again.reason === 'other-secret') continue;
        // Redis lost its copy (a restart without persistence), or someone spoilt it (malformed,
        // tampered): write back the fleet's keys in force, so that no ticket ends; new keys only when they are due.
        const keys = (again === undefined || again.ok === false) && this.#ticketSource === 'fleet' && this.#ticketKeys && this.#rotatesAt !== undefined && now < this.#rotatesAt
          ? this.#ticketKeys : randomBytes(FLEET_TICKET_KEY_BYTES);
        const createdAt = keys === this.#ticketKeys && this.#rotatesAt !== undefined ? this.#rotatesAt - rotationMs : now;
        const generation = Math.max(again?.ok ? again.generation : 0, this.#generation) + 1;
        const sealed = sealTicketKeys(keys, this.#secret, this.namespace, generation, createdAt, lease.fence);
        // The record lapses two intervals after it was made: one that nobody can rotate (written with a
        // secret no machine has any more) goes away by itself, and the machines write a new one.
        const stored = await this.#store(lease, this.#keys.tickets, createdAt + 2 * rotationMs, Object.entries(sealed).flat());
        if (!stored) continue;
        this.#counters.rotations++;
        await this.#announce({ kind: 'tickets', id: 'tickets', fence: lease.fence, from: this.machine, nextUpdate: null });
        this.#install(keys, 'fleet', generation, createdAt + rotationMs);
        this.#armTickets(createdAt + rotationMs);
        return;
      } finally {
        await this.release(lease);
      }
    }
    // Redis answered but no attempt settled (contention, fencing): keep what is in force unless it
    // is due (then this machine's own keys), try again soon.
    const now = this.#now();
    this.#local(now, 'no machine could rotate the fleet\'s keys in time');
    this.#armTickets(now + Math.min(this.lockTtlMs, this.#resyncMs));
  }

  #ticketProblem(reason: string, detail: string): void {
    const key = `${reason}:${detail}`;
    if (key === this.#lastTicketProblem) return;
    this.#lastTicketProblem = key;
    this.#log?.error({ event: 'fleet-tickets', code: 'CB_ERR_FLEET_TICKETS', reason, detail }, new CertboundError('CB_ERR_FLEET_TICKETS', [reason, detail]).message);
  }
}

/** A fleet connection; call start() before use. */
export function createFleet(options: FleetOptions): Fleet {
  return new Fleet(options);
}
