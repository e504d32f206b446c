// Metrics in Prometheus text format (prom-client): one sink the hot path calls, a no-op one
// when metrics are off (prom-client is then not even loaded), and the gauges read at scrape
// time (open connections, staples, expiry). Names and labels: docs/metrics.md.
import type { Fleet, FleetCounters } from '../fleet/fleet.js';
import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import { certStatusName, CertStatus, hresultHex } from '../status.js';
import type { NegotiationResult } from '../tls/renegotiate.js';
import type { OcspStapler } from '../ocsp/stapler.js';
import type { ExpiryFinding } from './expiry.js';

export type PromRegistry = PromClient.Registry;

/** What the hot paths report. Every method is cheap and never throws. */
export interface MetricsSink {
  /** False for the no-op sink: callers may skip installing hooks at all. */
  readonly enabled: boolean;
  /** A TLS handshake on a listener: completed (`ok`) or failed (tlsClientError). Renegotiations are `negotiation`. */
  handshake(protocol: string | null, resumed: boolean, ok: boolean): void;
  /** The decision on a connection's client certificate, once per handshake: its certFlags, or null without a certificate. */
  verdict(certFlags: number | null): void;
  /** A revocation check's outcome, once per connection and handshake. */
  revocation(source: string, revocationStatus: number): void;
  /** An on-demand negotiation's result; `attempted` when a renegotiation was started (else a refusal such as tls13). */
  negotiation(result: NegotiationResult, attempted: boolean): void;
  /** An HTTP request answered. */
  request(method: string, statusCode: number, seconds: number): void;
}

const noop = (): void => {};
/** The sink when metrics are off: no prom-client object exists. */
export const NO_METRICS: MetricsSink = Object.freeze({ enabled: false, handshake: noop, verdict: noop, revocation: noop, negotiation: noop, request: noop });

let prom: typeof PromClient | undefined;
/** prom-client, loaded on first use only (a server without metrics never loads it). */
export function promClient(): typeof PromClient {
  prom ??= createRequire(import.meta.url)('prom-client') as typeof PromClient;
  return prom;
}

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;
const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
const PROTOCOLS = ['TLSv1.2', 'TLSv1.3'] as const;

/** The name a certFlags value is counted under: its CERT_E_* / CRYPT_E_* name, OK for 0, 'none' without a certificate. */
export function certFlagsLabel(certFlags: number | null): string {
  return certFlags === null ? 'none' : certStatusName(certFlags) ?? hresultHex(certFlags);
}

/** The outcome label of a revocation status. */
export function revocationOutcomeLabel(status: number): string {
  switch (status) {
    case 0: return 'good';
    case CertStatus.CERT_E_REVOKED: return 'revoked';
    case CertStatus.CRYPT_E_REVOCATION_OFFLINE: return 'offline';
    case CertStatus.CRYPT_E_NO_REVOCATION_CHECK: return 'no-check';
    default: return 'other';
  }
}

type Child = { inc(): void };
type HistogramChild = { observe(v: number): void };

/**
 * The prom-client metrics of one server (or one cluster primary), registered on `registry`.
 * Label children are made once and kept: counting a handshake or a request allocates nothing.
 */
export class PromMetrics implements MetricsSink {
  readonly enabled = true;
  readonly registry: PromRegistry;
  readonly #handshakes: PromClient.Counter<'protocol' | 'resumed' | 'result'>;
  /** [protocol index (other last)][resumed][ok] */
  readonly #handshakeChildren: Child[][][];
  readonly #verdicts: PromClient.Counter<'cert_flags'>;
  readonly #verdictChildren = new Map<number | null, Child>();
  readonly #revocations: PromClient.Counter<'source' | 'outcome'>;
  readonly #negotiations: PromClient.Counter<'outcome'>;
  readonly #negotiationSeconds: PromClient.Histogram<'outcome'>;
  readonly #requestSeconds: PromClient.Histogram<'method' | 'status_class'>;
  /** [method index (other last)][status class] */
  readonly #requestChildren: HistogramChild[][];
  #staplers: OcspStapler[] = [];
  #stapleUpdates: PromClient.Counter<'outcome' | 'reason'> | undefined;
  #expiry: (() => readonly ExpiryFinding[]) | undefined;
  #crlRefreshes: PromClient.Counter<'outcome' | 'reason'> | undefined;

  /**
   * `registry`: a prom-client Registry of the application (default: a new one).
   * `defaultMetrics`: prom-client's process and Node metrics too (default: true).
   */
  constructor(options: { registry?: PromRegistry; defaultMetrics?: boolean } = {}) {
    const p = promClient();
    const registry = options.registry ?? new p.Registry();
    this.registry = registry;
    const registers = [registry];
    if (options.defaultMetrics !== false) p.collectDefaultMetrics({ register: registry });
    this.#handshakes = new p.Counter({ name: 'certbound_tls_handshakes_total', help: 'TLS handshakes on the listeners, by protocol, session resumption and result (ok, failed).', labelNames: ['protocol', 'resumed', 'result'], registers });
    this.#handshakeChildren = [...PROTOCOLS, 'other'].map((protocol) => ['false', 'true'].map((resumed) => ['failed', 'ok'].map((result) => this.#handshakes.labels({ protocol, resumed, result }))));
    this.#verdicts = new p.Counter({ name: 'certbound_client_certificate_verdicts_total', help: 'Decisions on client certificates (one per connection and handshake, when first read), by certFlags name (OK, CERT_E_*, CRYPT_E_*; none without a certificate).', labelNames: ['cert_flags'], registers });
    this.#revocations = new p.Counter({ name: 'certbound_revocation_checks_total', help: 'Revocation checks of client certificates (one per connection and handshake), by what decided (ocsp, crl, none, skipped) and outcome (good, revoked, offline, no-check).', labelNames: ['source', 'outcome'], registers });
    this.#negotiations = new p.Counter({ name: 'certbound_negotiations_total', help: 'On-demand client-certificate negotiations (TLS 1.2 renegotiation), by outcome (certificate, no-certificate, timeout, closed, error, and the refusals tls13, http2, limit).', labelNames: ['outcome'], registers });
    this.#negotiationSeconds = new p.Histogram({ name: 'certbound_negotiation_duration_seconds', help: 'Time of the on-demand renegotiations that were started, by outcome.', labelNames: ['outcome'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers });
    this.#requestSeconds = new p.Histogram({ name: 'certbound_http_request_duration_seconds', help: 'HTTP requests, from arrival to the reply, by method (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, other) and status class.', labelNames: ['method', 'status_class'], registers });
    this.#requestChildren = [...METHODS, 'other'].map((method) => STATUS_CLASSES.map((status_class) => this.#requestSeconds.labels({ method, status_class })));
  }

  handshake(protocol: string | null, resumed: boolean, ok: boolean): void {
    const i = protocol === 'TLSv1.2' ? 0 : protocol === 'TLSv1.3' ? 1 : 2;
    (this.#handshakeChildren[i]?.[resumed ? 1 : 0]?.[ok ? 1 : 0] as Child).inc();
  }

  verdict(certFlags: number | null): void {
    let child = this.#verdictChildren.get(certFlags);
    if (!child) {
      child = this.#verdicts.labels({ cert_flags: certFlagsLabel(certFlags) });
      this.#verdictChildren.set(certFlags, child);
    }
    child.inc();
  }

  revocation(source: string, revocationStatus: number): void {
    this.#revocations.inc({ source, outcome: revocationOutcomeLabel(revocationStatus) });
  }

  negotiation(result: NegotiationResult, attempted: boolean): void {
    this.#negotiations.inc({ outcome: result.status });
    if (attempted) this.#negotiationSeconds.observe({ outcome: result.status }, result.durationMs / 1000);
  }

  request(method: string, statusCode: number, seconds: number): void {
    const m = METHODS.indexOf(method as (typeof METHODS)[number]);
    const c = Math.floor(statusCode / 100) - 1;
    const row = this.#requestChildren[m === -1 ? METHODS.length : m] as HistogramChild[];
    const child = row[c >= 0 && c < STATUS_CLASSES.length ? c : 4] as HistogramChild;
    child.observe(seconds);
  }

  /** certbound_open_connections: read from `count` at scrape time. */
  watchConnections(count: () => number): void {
    new (promClient().Gauge)({
      name: 'certbound_open_connections', help: 'TLS connections open now (every listener).', registers: [this.registry],
      collect() { this.set(count()); },
    });
  }

  /** Staple gauges (read from the stapler at scrape time) and a counter of its updates. */
  readonly #fleets: Fleet[] = [];

  watchStapler(stapler: OcspStapler, now: () => number = Date.now): void {
    const p = promClient();
    if (this.#staplers.length === 0) {
      const staplers = () => this.#staplers;
      new p.Gauge({
        name: 'certbound_ocsp_staple_next_update_seconds', help: 'Seconds until the nextUpdate of the OCSP response kept for a server certificate (negative: past).', labelNames: ['certificate', 'serial'], registers: [this.registry],
        collect() {
          this.reset();
          for (const s of staplers()) for (const st of s.states()) if (st.nextUpdate) this.set({ certificate: st.cert, serial: st.serial }, (Date.parse(st.nextUpdate) - now()) / 1000);
        },
      });
      new p.Gauge({
        name: 'certbound_ocsp_stapled', help: '1 when a response is stapled for the server certificate now (valid for at least SrvOcspRespMinValiditySeconds), else 0.', labelNames: ['certificate', 'serial'], registers: [this.registry],
        collect() {
          this.reset();
          for (const s of staplers()) for (const st of s.states()) this.set({ certificate: st.cert, serial: st.serial }, st.stapled ? 1 : 0);
        },
      });
      this.#stapleUpdates = new p.Counter({ name: 'certbound_ocsp_staple_updates_total', help: 'Updates of the OCSP staples, by outcome (stapled, loaded, discarded, refused, failed) and reason (none, or the refusal code).', labelNames: ['outcome', 'reason'], registers: [this.registry] });
    }
    this.#staplers.push(stapler);
    const updates = this.#stapleUpdates as PromClient.Counter<'outcome' | 'reason'>;
    stapler.on('update', (u) => updates.inc({ outcome: u.outcome, reason: u.reason ?? 'none' }));
  }

  /**
   * The fleet (docs/fleet.md): certbound_fleet_up (1 while Redis answers; with workers the
   * lowest over the processes) and certbound_fleet_operations_total{operation}.
   */
  watchFleet(fleet: Fleet): void {
    if (this.#fleets.includes(fleet)) return;
    this.#fleets.push(fleet);
    if (this.#fleets.length > 1) return;
    const p = promClient();
    const fleets = () => this.#fleets;
    new p.Gauge({
      name: 'certbound_fleet_up', help: '1 while the fleet\'s Redis answers (ticket keys, staples and revocation data shared), 0 while this machine serves on its own state (degraded).', registers: [this.registry], aggregator: 'min',
      collect() {
        this.set(fleets().every((f) => f.connected()) ? 1 : 0);
      },
    });
    const names: Record<keyof FleetCounters, string> = { leads: 'lead', waits: 'wait', published: 'published', fenced: 'fenced', rotations: 'rotation', installs: 'install', outages: 'outage' };
    new p.Counter({
      name: 'certbound_fleet_operations_total', help: 'Fleet operations of this machine: lead (a lock won: this machine fetched or rotated), wait (another machine held it), published (a verified document stored in Redis), fenced (a write refused: a newer holder exists), rotation (ticket keys rotated), install (ticket keys taken from Redis), outage (Redis became unavailable).', labelNames: ['operation'], registers: [this.registry],
      collect() {
        this.reset();
        for (const f of fleets()) for (const [k, v] of Object.entries(f.counters())) this.inc({ operation: names[k as keyof FleetCounters] }, v);
      },
    });
  }

  /** One CRL refresh (src/server/crl-refresh.ts): certbound_crl_refresh_total{outcome,reason}. */
  crlRefresh(outcome: string, reason: string): void {
    this.#crlRefreshes ??= new (promClient().Counter)({ name: 'certbound_crl_refresh_total', help: 'CRL refreshes from their distribution points, by outcome (refreshed, loaded, refused, failed, no-url) and reason (none, or the refusal or failure code).', labelNames: ['outcome', 'reason'], registers: [this.registry] });
    this.#crlRefreshes.inc({ outcome, reason });
  }

  /** Expiry gauges, read from `findings` (src/server/expiry.ts) at scrape time. */
  watchExpiry(findings: () => readonly ExpiryFinding[]): void {
    const p = promClient();
    if (!this.#expiry) {
      const read = () => this.#expiry?.() ?? [];
      new p.Gauge({
        name: 'certbound_certificate_expiry_seconds', help: 'Seconds until notAfter of the server certificate (kind server), the rest of its chain (server-chain) and the trusted client CAs (ca); negative: expired.', labelNames: ['kind', 'subject', 'sha1'], registers: [this.registry],
        collect() {
          this.reset();
          for (const f of read()) if (f.kind !== 'crl' && f.secondsLeft !== null) this.set({ kind: f.kind, subject: f.subject, sha1: f.id }, f.secondsLeft);
        },
      });
      new p.Gauge({
        name: 'certbound_crl_next_update_seconds', help: 'Seconds until nextUpdate of each loaded CRL (negative: past, and client certificates it covers fail with CRL_HAS_EXPIRED).', labelNames: ['issuer', 'sha1'], registers: [this.registry],
        collect() {
          this.reset();
          for (const f of read()) if (f.kind === 'crl' && f.secondsLeft !== null) this.set({ issuer: f.subject, sha1: f.id }, f.secondsLeft);
        },
      });
    }
    this.#expiry = findings;
  }

  /** The text exposition of this registry. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/**
 * The metrics of several registries as one exposition (a cluster primary: its own and each
 * worker's getMetricsAsJSON()), summed by prom-client's aggregators.
 */
export function aggregateMetrics(parts: readonly object[][]): PromRegistry {
  return promClient().AggregatorRegistry.aggregate(parts as object[]);
}

/**
 * The workers' part of a cluster scrape. A worker that exits takes its counters with it, and
 * the machine's totals would go down (Prometheus would read a counter reset): the last
 * metrics seen from a worker that is gone are kept — counters and histograms only, folded
 * into one set — and added to every later scrape. What it counted after its last scrape is
 * lost.
 */
export class WorkerMetricsHistory {
  readonly #last = new Map<number, object[]>();
  #retired: object[] | undefined;

  /** The parts to aggregate now, from this scrape's answers and the pids still alive. */
  async parts(answers: readonly { pid: number; metrics: object[] }[], alive: readonly number[]): Promise<object[][]> {
    const gone: object[][] = [];
    for (const [pid, m] of this.#last) {
      if (!alive.includes(pid)) {
        gone.push(m.filter((x) => ['counter', 'histogram'].includes((x as { type?: string }).type ?? '')));
        this.#last.delete(pid);
      }
    }
    if (gone.length > 0) this.#retired = await aggregateMetrics([...(this.#retired ? [this.#retired] : []), ...gone]).getMetricsAsJSON();
    for (const a of answers) this.#last.set(a.pid, a.metrics);
    return [...answers.map((a) => a.metrics), ...(this.#retired ? [this.#retired] : [])];
  }
}
