// The `certbound` command: `serve` (the reference server) and `dev-pki DIR`. Start-up
// errors are one line with a stable code, never a stack trace.
import { readFileSync, statSync, watch, type FSWatcher } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createServer as createNetServer } from 'node:net';
import { CertboundError, isCertboundError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { DEV_CLIENT_P12_PASSWORD, DEV_OCSP_CACHE_DIR } from '../tls/dev-pki-names.js';
import { loadCertificates, loadCrlText, loadPrivateKeyText } from '../tls/pem.js';
import { crlsOf } from '../tls/secure-context.js';
import { OCSP_SETTING_KEYS, resolveServeConfig, SERVE_SCHEMA, configReferenceMarkdown, type ServeConfig } from './config.js';
import type { CertboundServer } from './server.js';
import { EXIT, failWith, parseArgsReason, usageError, wantsHelp } from '../cli-exit.js';
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { LoggerOptions } from 'pino';
import type { CreateServerOptions } from './server.js';
import { defaultWorkerCount, joinPrimary, startPrimary, workerEpoch, workerIndex, type WorkerCertificate, type WorkerLink, type WorkerReload } from './cluster.js';
import type { ReloadInput } from './reload.js';
import type { FleetOptions } from '../fleet/fleet.js';
import { lockTtl } from '../fleet/fleet-rules.js';
import { resolveSettings, type OcspSettings } from '../ocsp/schedule.js';
import { checkServerCertificate, readServerCertificateFiles, type ServerCertificate, type ServerCertificateFiles, type ServerCertificateOptions } from '../tls/server-material.js';
import { ensurePrivateDir } from '../secret-file.js';
import type { ServerOcspOptions } from '../ocsp/server-stapling.js';
import { join } from 'node:path';
import { devStaplingSettings, validityFromEnv } from '../ocsp/dev-stapling.js';
import type { DevOcspResponder } from '../ocsp/responder.js';
import { CertCheckMode } from '../ocsp/cert-check-mode.js';
import { parseHostPort, startMetricsListener, type MetricsListener } from './metrics-listener.js';

const USAGE = `certbound: HTTPS with client certificates

Usage:
  certbound serve [options]     run the reference server (embedded dev PKI when --cert is absent)
  certbound dev-pki DIR         write a dev PKI (root CA, server and client certificates) into DIR
  certbound ocsp-responder      run the dev OCSP responder for the dev PKI (--dev-pki-dir, --port,
                                --validity-minutes, --revoke SERIAL)
  certbound job <command>       BITS-style transfer jobs: create|add|set-cert|resume|suspend|
                                cancel|complete|list|watch (docs/client.md)
  certbound store list          list a certificate store with SHA-1 thumbprints (docs/client.md)
  certbound help serve          list the options of serve

Options of serve:
${configReferenceMarkdown()}
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The options of `serve` for util.parseArgs, from the config schema. */
function serveArgSpec(): Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> {
  const spec: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = {};
  for (const s of SERVE_SCHEMA) if (s.flag) spec[s.flag] = s.kind === 'string[]' ? { type: 'string', multiple: true } : { type: s.kind === 'boolean' ? 'boolean' : 'string' };
  spec.help = { type: 'boolean' };
  return spec;
}

function parse(args: string[], options: ReturnType<typeof serveArgSpec>, allowPositionals: boolean) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw usageError('(command line)', parseArgsReason(err), 'certbound help serve');
  }
}

/**
 * The configuration `certbound serve ARGS` runs with (the flags over the config file they name),
 * checked without starting anything: a CB_ERR_* for a flag, key or value it would refuse.
 */
export function serveConfigOf(args: string[]): ServeConfig {
  const { values } = parse(args, serveArgSpec(), false);
  return resolveServeConfig(values);
}

interface Loaded {
  /** The server certificates, checked; the first serves clients without SNI. */
  certificates: ServerCertificate[];
  ca: string[];
  crl: string[];
  dev: boolean;
  devDir?: string;
}

/** The server certificate files of a configuration: --cert/--key or --pfx first, then the config file's `certificates`. */
function certificateFiles(cfg: ServeConfig): ServerCertificateFiles[] {
  const passphrase = cfg.keyPassphraseFile !== undefined ? { passphraseFile: cfg.keyPassphraseFile } : {};
  const first: ServerCertificateFiles[] = cfg.pfx !== undefined ? [{ pfx: cfg.pfx, ...passphrase }]
    : cfg.cert !== undefined && cfg.key !== undefined ? [{ cert: cfg.cert, key: cfg.key, ...passphrase }] : [];
  return [...first, ...(cfg.certificates ?? [])];
}

/**
 * Reads and checks every TLS file of `serve` (the dev PKI's when no certificate is given,
 * created or reused): each problem is a CB_ERR_* naming the file, before anything starts.
 * The server certificates go through one path (src/tls/server-material.ts: files → material →
 * checked certificates), which a reload can run again.
 */
async function loadTlsMaterial(cfg: ServeConfig): Promise<Loaded> {
  let files = certificateFiles(cfg);
  let devDir: string | undefined;
  let devCa: string | undefined;
  if (files.length === 0) {
    const { ensureDevPki } = await import('../tls/dev-pki.js');
    const { paths, created, tightened } = await ensureDevPki(resolve(cfg.devPkiDir));
    if (created) console.log(`certbound: created a dev PKI in ${paths.dir}`);
    if (tightened.length > 0) console.log(`certbound: ${tightened.join(', ')} in ${paths.dir} could be read by other users: now mode 0600 (delete the directory for new keys)`);
    files = [{ cert: paths.server, key: paths.serverKey }];
    ({ caBundle: devCa, dir: devDir } = paths);
  }
  const certificates = readServerCertificateFiles(files).map(({ options, where }) => checkServerCertificate(options, where));
  const ca = cfg.ca ? cfg.ca.map((p) => loadCertificates(p, 'CA').pem) : devCa ? [loadCertificates(devCa, 'CA').pem] : [];
  const crl = (cfg.crl ?? []).flatMap((p) => crlsOf(loadCrlText(p), p));
  return { certificates, ca, crl, dev: devDir !== undefined, ...(devDir !== undefined ? { devDir } : {}) };
}

/** The server certificates as createServer (and server.reload) take them: what the files held, with their names. */
function certificateOptions(certificates: readonly ServerCertificate[]): ServerCertificateOptions[] {
  return certificates.map((c) => ({ ...(c.contextOptions as Pick<ServerCertificateOptions, 'cert' | 'key' | 'pfx' | 'passphrase'>), names: [...c.names] }));
}

/**
 * The TLS files of `serve` read again for a reload, with the same loader and checks as at
 * start-up (every server certificate: a CB_ERR_* naming the file when one is wrong), plus what a
 * reload adds (each certificate valid now): throws CB_ERR_RELOAD with the cause's code.
 */
async function reloadMaterial(cfg: ServeConfig): Promise<{ loaded: Loaded; input: ReloadInput }> {
  const loaded = await loadTlsMaterial(cfg);
  const { checkReloadMaterial } = await import('./reload.js');
  checkReloadMaterial(loaded.certificates, { ca: loaded.ca, crl: loaded.crl }, Date.now(), cfg.clientAuth);
  return { loaded, input: { certificates: certificateOptions(loaded.certificates), ca: loaded.ca, crl: loaded.crl, ...(cfg.clientRevocation !== 'off' ? { revocationCrls: loaded.crl } : {}) } };
}

/** Reload material over cluster IPC (JSON): PEM as text, a PKCS#12 bundle in base64. */
function toWorkerReload(input: ReloadInput): WorkerReload {
  const certificates: WorkerCertificate[] = (input.certificates ?? []).map((c) => ({
    ...(c.cert !== undefined ? { cert: c.cert.toString() } : {}),
    ...(c.key !== undefined ? { key: c.key.toString() } : {}),
    ...(c.pfx !== undefined ? { pfx: c.pfx.toString('base64') } : {}),
    ...(c.passphrase !== undefined ? { passphrase: c.passphrase } : {}),
    ...(c.names !== undefined ? { names: c.names } : {}),
  }));
  return { certificates, ca: (Array.isArray(input.ca) ? input.ca : input.ca ? [input.ca] : []).map(String), crl: (Array.isArray(input.crl) ? input.crl : input.crl ? [input.crl] : []).map(String), ...(input.revocationCrls ? { revocationCrls: input.revocationCrls.map(String) } : {}) };
}

/** The primary's reload material as a worker's server.reload() takes it. */
function fromWorkerReload(m: WorkerReload): ReloadInput {
  return {
    certificates: m.certificates.map(({ pfx, ...c }) => ({ ...c, ...(pfx !== undefined ? { pfx: Buffer.from(pfx, 'base64') } : {}) })),
    ca: m.ca,
    crl: m.crl,
    ...(m.revocationCrls ? { revocationCrls: m.revocationCrls } : {}),
  };
}

/** The files a reload reads (for --watch-certs): every server certificate's, the CAs and CRLs. */
function tlsFilePaths(cfg: ServeConfig): string[] {
  const dev = resolve(cfg.devPkiDir);
  const files = certificateFiles(cfg);
  const own = files.length > 0 ? files.flatMap((f) => [f.cert, f.key, f.pfx, f.passphraseFile].filter((p): p is string => p !== undefined))
    : [resolve(dev, 'server.pem'), resolve(dev, 'server.key')];
  const ca = cfg.ca ?? (files.length > 0 ? [] : [resolve(dev, 'ca-bundle.pem')]);
  return [...own, ...ca, ...(cfg.crl ?? [])].map((p) => resolve(p));
}

/**
 * A SIGHUP that comes while `serve` starts (it may wait up to the retrieval timeout for a first
 * staple): remembered instead of ending the process (Node's default), and acted on once the
 * reload triggers are in place (`systemctl reload` right after `start`).
 */
let hupWhileStarting = false;
const onHupWhileStarting = (): void => { hupWhileStarting = true; };
function holdSighupWhileStarting(): void {
  process.on('SIGHUP', onHupWhileStarting);
}

/**
 * What the watched files are now (the file each path leads to, links followed): a Kubernetes
 * Secret volume swaps a `..data` link, which changes no watched name but every target.
 */
function filesSignature(files: readonly string[]): string {
  return files.map((f) => {
    try {
      const st = statSync(f);
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    } catch {
      return 'missing';
    }
  }).join('|');
}

/**
 * Reloads on SIGHUP and, with --watch-certs, when a TLS file changes (debounced; the parent
 * directories are watched and any event there compares what the paths lead to, so files
 * replaced by a rename and Kubernetes' `..data` link swaps are seen). Reloads never overlap:
 * one asked while another runs runs once after it. Returns a function that stops both.
 */
function reloadTriggers(cfg: ServeConfig, reloadOnce: () => Promise<void>, log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }): () => void {
  let running: Promise<void> | undefined;
  let again = false;
  const trigger = (why: string) => {
    if (running) { again = true; return; }
    log.info({ event: 'reload', trigger: why }, 'reloading the certificates');
    running = reloadOnce().catch(() => {}).finally(() => {
      running = undefined;
      if (again) { again = false; trigger(why); }
    });
  };
  const onHup = () => trigger('SIGHUP');
  process.on('SIGHUP', onHup);
  process.off('SIGHUP', onHupWhileStarting);
  if (hupWhileStarting) {
    hupWhileStarting = false;
    trigger('SIGHUP while starting');
  }
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  if (cfg.watchCerts) {
    const files = tlsFilePaths(cfg);
    let seen = filesSignature(files);
    for (const dir of new Set(files.map((f) => dirname(f)))) {
      try {
        const w = watch(dir, { persistent: false }, () => {
          clearTimeout(timer);
          timer = setTimeout(() => {
            const now = filesSignature(files);
            if (now === seen) return;
            seen = now;
            trigger('file change');
          }, DEFAULTS.watchCertsDebounceMs);
          timer.unref();
        });
        w.on('error', (err) => log.warn({ event: 'reload', dir, err: err.message }, 'cannot watch the certificate directory any more'));
        watchers.push(w);
      } catch (err) {
        log.warn({ event: 'reload', dir, err: (err as Error).message }, 'cannot watch the certificate directory: reload with SIGHUP');
      }
    }
  }
  return () => {
    process.off('SIGHUP', onHup);
    clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}

/** The options of createServer for this configuration (the same in one process, a cluster primary's check and its workers). */
function serverOptions(cfg: ServeConfig, loaded: Loaded, extra: Pick<CreateServerOptions, 'ocsp' | 'tls' | 'stapleSource' | 'logger' | 'metrics' | 'expiryWarnings' | 'crlRefresh'>): CreateServerOptions {
  return {
    certificates: certificateOptions(loaded.certificates),
    ca: loaded.ca,
    ...(loaded.crl.length > 0 ? { crl: loaded.crl } : {}),
    clientAuth: cfg.clientAuth,
    ...(cfg.mapper ? { mapper: cfg.mapper } : {}),
    logger: { level: cfg.logLevel },
    underPressure: cfg.maxEventLoopDelay > 0 ? { maxEventLoopDelay: cfg.maxEventLoopDelay } : { maxEventLoopDelay: 0 },
    handshakeTimeout: cfg.handshakeTimeout,
    negotiationTimeout: cfg.negotiationTimeout,
    ...(cfg.maxConnectionLifetime > 0 ? { maxConnectionLifetime: cfg.maxConnectionLifetime } : {}),
    ...(cfg.clientRevocation !== 'off' ? {
      revocation: {
        certCheckMode: cfg.clientRevocation === 'cached-only' ? CertCheckMode.CACHED_ONLY : CertCheckMode.CHECK,
        failMode: cfg.revocationFailMode,
        ...(loaded.crl.length > 0 ? { crls: loaded.crl } : {}),
      },
    } : {}),
    ...(cfg.onDemandHosts ? { onDemandHosts: cfg.onDemandHosts } : {}),
    ...(cfg.trustedProxies ? { trustedProxies: cfg.trustedProxies } : {}),
    referenceRoutes: true,
    ...(cfg.metrics ? { metrics: parseHostPort(cfg.metrics, '--metrics') } : {}),
    expiryWarnings: { certificateDays: cfg.expiryWarningDays, crlHours: cfg.crlExpiryWarningHours },
    ...(cfg.upstream ? { upstream: upstreamOptions(cfg) } : {}),
    ...(cfg.fleet ? { fleet: fleetOptions(cfg, true) } : {}),
    ...extra,
  };
}

/**
 * The fleet's options (docs/fleet.md). `tickets`: this process owns the machine's ticket keys (one
 * process, or a cluster's primary); a cluster worker's connection is for the revocation cache only.
 */
function fleetOptions(cfg: ServeConfig, tickets: boolean): FleetOptions {
  return {
    url: cfg.fleet as string,
    secretFile: cfg.fleetSecretFile as string,
    ...(cfg.fleetCa ? { ca: cfg.fleetCa.map((p) => loadCertificates(p, 'CA').pem) } : {}),
    ...(cfg.fleetPasswordFile ? { passwordFile: cfg.fleetPasswordFile } : {}),
    namespace: cfg.fleetNamespace,
    lockTtlMs: cfg.fleetLockTtl ?? lockTtl(cfg.SrvOcspRespUrlRetrievalTimeoutMilliseconds ?? DEFAULTS.ocspSettings.SrvOcspRespUrlRetrievalTimeoutMilliseconds),
    tickets: tickets ? { rotationMs: cfg.ticketKeyRotation } : false,
    // A cluster worker's connection serves its revocation checks; the primary says the machine's fleet state once.
    ...(tickets ? {} : { logState: false }),
  };
}

/** The front's options (docs/front.md): the upstream leg's TLS files read and checked, naming the file. */
function upstreamOptions(cfg: ServeConfig): NonNullable<CreateServerOptions['upstream']> {
  return {
    url: cfg.upstream as string,
    ...(cfg.upstreamCa ? { ca: cfg.upstreamCa.map((p) => loadCertificates(p, 'CA').pem) } : {}),
    ...(cfg.upstreamCert && cfg.upstreamKey ? { cert: loadCertificates(cfg.upstreamCert).pem, key: loadPrivateKeyText(cfg.upstreamKey) } : {}),
    ...(cfg.onDemandPaths ? { onDemandPaths: cfg.onDemandPaths } : {}),
    ...(cfg.requirePaths ? { requirePaths: cfg.requirePaths } : {}),
    connectTimeout: cfg.upstreamConnectTimeout,
    timeout: cfg.upstreamTimeout,
    connections: cfg.upstreamConnections,
  };
}

/**
 * With the dev PKI, the dev OCSP responder, on the port the dev server certificate names, so
 * the demo staples from the first handshake. A port already taken (another certbound, or
 * `certbound ocsp-responder`) is not an error: stapling uses whatever answers there.
 */
async function startDevResponder(loaded: Loaded, validityMinutes: number): Promise<DevOcspResponder | undefined> {
  if (!loaded.devDir) return undefined;
  const { devResponderPort, startDevPkiResponder } = await import('../ocsp/dev-responder.js');
  return startDevPkiResponder(loaded.devDir, { validityMinutes, port: devResponderPort(loaded.devDir) }).catch((err: unknown) => {
    if (!isCertboundError(err, 'CB_ERR_LISTEN')) throw err;
    const cause = err.cause as NodeJS.ErrnoException | undefined;
    console.error(`certbound: dev OCSP responder not started (${cause?.code ?? err.message}); stapling uses whatever answers on the AIA URL`);
    return undefined;
  });
}

/**
 * What start-up has started so far, closed in reverse order when a later step fails: a dev
 * responder left listening would keep the process alive after the error line.
 */
class StartedResources {
  readonly #closers: (() => Promise<void>)[] = [];
  add(close: () => Promise<void>): void {
    this.#closers.push(close);
  }
  async closeAll(): Promise<void> {
    for (const close of this.#closers.splice(0).reverse()) await close().catch(() => {});
  }
}

/** `close` run at most once, however many owners call it. */
function once(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= close());
}

function banner(cfg: ServeConfig, port: number, loaded: Loaded, server?: CertboundServer): string {
  const host = cfg.host === '127.0.0.1' || cfg.host === '::1' || cfg.host === 'localhost' ? 'localhost' : cfg.host;
  const url = `https://${host}:${port}`;
  const lines = [`certbound: serving ${url}/ (client-auth ${cfg.clientAuth})`];
  if (cfg.upstream) lines.push(`certbound: every other request goes to ${cfg.upstream} with RFC 9440 Client-Cert (docs/front.md)${cfg.onDemandPaths?.length ? `; on-demand paths ${cfg.onDemandPaths.join(', ')}` : ''}${cfg.requirePaths?.length ? `; required paths ${cfg.requirePaths.join(', ')}` : ''}`);
  if (cfg.clientAuth === 'require') {
    lines.push('In require mode a connection without a trusted client certificate is refused in the TLS handshake, with no HTTP answer:');
    lines.push('  curl fails with a TLS alert (certificate required), a browser shows its own connection error page, and the application never sees the request.');
  }
  if (loaded.dev && loaded.devDir) {
    const d = relative(process.cwd(), loaded.devDir) || '.';
    const withCert = `--cacert ${d}/root-ca.pem --cert ${d}/client.pem --key ${d}/client.key`;
    lines.push('Try it with the dev client certificate:');
    lines.push(`  curl ${withCert} ${url}/connection`);
    lines.push('Without a certificate, and with an expired one:');
    lines.push(`  curl --cacert ${d}/root-ca.pem ${url}/connection`);
    lines.push(`  curl --cacert ${d}/root-ca.pem --cert ${d}/client-expired.pem --key ${d}/client-expired.key ${url}/connection`);
    lines.push(`In a browser: import ${d}/client.p12 (password "${DEV_CLIENT_P12_PASSWORD}") as your certificate and ${d}/root-ca.pem as an authority, then open ${url}/`);
    lines.push('  Firefox: Settings > Privacy & Security > Certificates > View Certificates: "Your Certificates" > Import (client.p12), "Authorities" > Import (root-ca.pem)');
    lines.push('  Chromium: chrome://certificate-manager > "Your certificates" > Import (client.p12); root-ca.pem under "Trusted certificates" > Import');
    lines.push('See an on-demand certificate: /whoami asks for one with a TLS 1.2 renegotiation when the connection has none.');
    if (cfg.clientAuth === 'none') {
      lines.push(`  curl --tls-max 1.2 ${withCert} ${url}/whoami`);
    } else {
      lines.push(`  Here the handshake already asks for one (client-auth ${cfg.clientAuth}); start with --client-auth none, then: curl --tls-max 1.2 ${withCert} ${url}/whoami`);
    }
    if (!cfg.onDemandHosts?.length) lines.push(`  Browsers speak TLS 1.3, which cannot renegotiate (403 CB_ERR_NEGOTIATE_TLS13): add --on-demand-host ${/^[\d.:]+$/.test(host) ? 'localhost' : host} to cap that host at TLS 1.2 (SNI names a host, never an address).`);
    const staple = server?.app.ocspStaple();
    if (staple && staple.state !== 'off') {
      lines.push(`OCSP staple: ${staple.stapled ? `${staple.certStatus ?? ''} until ${staple.nextUpdate ?? '?'}` : `none (${staple.reason ?? '-'})`}, next refresh ${staple.nextRefresh ?? '-'} (responder ${staple.url ?? '-'}); see it with:`);
      lines.push(`  openssl s_client -connect 127.0.0.1:${port} -servername localhost -status -CAfile ${d}/root-ca.pem </dev/null`);
    }
  }
  return lines.join('\n');
}

/**
 * Runs `certbound serve`; resolves with the running server (the CLI keeps it open).
 * `onListening` runs before the banner is printed: whoever waits for the banner (a script, a
 * test) may signal the process at once, so the signal handlers must be in place by then.
 */
export async function serve(args: string[], onListening?: (server: CertboundServer) => void, worker?: WorkerLink): Promise<CertboundServer | undefined> {
  if (wantsHelp(args)) {
    console.log(USAGE);
    return undefined;
  }
  const { values } = parse(args, serveArgSpec(), false);
  const cfg = resolveServeConfig(values);
  const loaded = await loadTlsMaterial(cfg);
  const validityMinutes = validityFromEnv();
  const started = new StartedResources();
  try {
    // In a cluster the primary runs the responder and the stapler (servePrimary).
    const devResponder = worker ? undefined : await startDevResponder(loaded, validityMinutes);
    const closeResponder = devResponder ? once(() => devResponder.close()) : undefined;
    if (closeResponder) started.add(closeResponder);
    const ocsp = staplingOptions(cfg, loaded, validityMinutes);
    // In a cluster the primary says it once.
    if (!ocsp && !worker) console.log('certbound: OCSP stapling off (--ocsp off): no staple, no OCSP retrieval');
    const { createServer } = await import('./server.js');
    const server = createServer(serverOptions(cfg, loaded, worker
      // Cluster workers share the primary's session-ticket keys and staples, on every listener
      // (src/server/cluster.ts); the primary logs "Server listening" once for all of them, serves
      // the metrics (theirs summed) and warns about expiry.
      ? { ocsp: false, tls: { ticketKeys: worker.ticketKeys }, ...(ocsp ? { stapleSource: worker } : cfg.fleet ? { stapleSource: { attachStaples: () => {}, fleetStatus: () => worker.fleetStatus() } } : {}), logger: workerLoggerOptions(cfg.logLevel), ...(cfg.metrics ? { metrics: {} } : {}), expiryWarnings: false, ...(cfg.fleet ? { fleet: fleetOptions(cfg, false) } : {}) }
      : { ocsp, ...(crlRefreshOn(cfg, loaded) ? { crlRefresh: { dir: crlKeepDir(cfg) } } : {}) }));
    started.add(() => server.close());
    if (worker) worker.follow(server);
    else {
      await assertCanListen(cfg.host, cfg.port);
      prepareStateDir(cfg, loaded, ocsp);
    }
    const workerMetrics = server.metrics?.registry;
    if (worker && workerMetrics) worker.serveMetrics(() => workerMetrics.getMetricsAsJSON());
    if (closeResponder) server.app.addHook('onClose', closeResponder);
    // Registered before listen (fastify takes no hooks after): stops the reload triggers.
    let stopReloads = () => {};
    server.app.addHook('onClose', async () => stopReloads());
    const addr = await server.listen({ host: cfg.host, port: cfg.port });
    if (worker) {
      // In a cluster the primary takes SIGHUP and the file changes, and hands every worker the
      // material it read (src/server/cluster.ts); a SIGHUP sent to a worker alone is ignored.
      worker.onReload(async (m) => (await server.reload(fromWorkerReload(m))).sha256);
    } else {
      const log = server.app.log;
      stopReloads = reloadTriggers(cfg, async () => {
        let m: ReloadInput;
        try {
          ({ input: m } = await reloadMaterial(cfg));
        } catch (err) {
          (await import('./reload.js')).logReloadFailure(log, err);
          return;
        }
        await server.reload(m).catch(() => {}); // server.reload logs its own failure line.
      }, log);
    }
    onListening?.(server);
    // In a cluster the primary prints the banner once.
    if (!worker) console.log(banner(cfg, addr.port, loaded, server));
    const metricsAt = server.metrics?.address();
    if (!worker && metricsAt) console.log(`certbound: metrics on ${metricsUrl(metricsAt.address, metricsAt.port)}`);
    return server;
  } catch (err) {
    await started.closeAll();
    throw err;
  }
}

const LISTENING = 'Server listening at ';

/** The log line of a listening server, once per server: the primary's for all its workers. */
function listeningLine(host: string, port: number): string {
  return `${LISTENING}https://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** A worker's pino options: its own "Server listening" line is dropped (pino's logMethod hook). */
function workerLoggerOptions(level: string): LoggerOptions {
  return {
    level,
    hooks: {
      logMethod(args, method) {
        if (typeof args[0] === 'string' && args[0].startsWith(LISTENING)) return;
        method.apply(this, args);
      },
    },
  };
}

function metricsUrl(host: string, port: number): string {
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`;
}

/**
 * The stapler's options of `serve`, or false with --ocsp off. Staples persist in
 * `<state-dir>/ocsp` (created 0700 here; CB_ERR_PRIVATE_DIR when it cannot be), the dev PKI's in
 * its own `ocsp-cache`. The seed's settings given as flags or config keys win over the dev ones.
 */
function staplingOptions(cfg: ServeConfig, loaded: Loaded, validityMinutes: number): ServerOcspOptions | false {
  if (cfg.ocsp === 'off') return false;
  const given: { -readonly [K in keyof OcspSettings]?: number } = {};
  for (const k of OCSP_SETTING_KEYS) if (cfg[k] !== undefined) given[k] = cfg[k];
  const settings = { ...(loaded.devDir ? devStaplingSettings(validityMinutes) : {}), ...given };
  const cacheDir = loaded.devDir ? join(loaded.devDir, DEV_OCSP_CACHE_DIR) : join(resolve(cfg.stateDir), 'ocsp');
  return { cacheDir, settings, ...(cfg.ocspUrl !== undefined ? { url: cfg.ocspUrl } : {}) };
}

/**
 * Creates --state-dir and its ocsp/ (mode 0700, src/secret-file.ts; CB_ERR_PRIVATE_DIR when it
 * cannot), once nothing else can stop the start: a failed start leaves no directory behind.
 */
function prepareStateDir(cfg: ServeConfig, loaded: Loaded, ocsp: ServerOcspOptions | false): void {
  const staples = ocsp !== false && !loaded.devDir;
  if (!staples && !crlRefreshOn(cfg, loaded)) return;
  ensurePrivateDir(resolve(cfg.stateDir));
  // Inside the state directory: a symbolic link there is refused, never followed.
  if (staples) ensurePrivateDir(join(resolve(cfg.stateDir), 'ocsp'), { noLink: true });
  if (crlRefreshOn(cfg, loaded)) ensurePrivateDir(crlKeepDir(cfg), { noLink: true });
}

/** --crl-refresh with at least one --crl. */
const crlRefreshOn = (cfg: ServeConfig, loaded: Loaded): boolean => cfg.crlRefresh && loaded.crl.length > 0;
/** Where --crl-refresh keeps the CRLs it fetched (never the --crl files). */
const crlKeepDir = (cfg: ServeConfig): string => join(resolve(cfg.stateDir), 'crl');

/**
 * `serve --workers N` in the cluster primary: checks the configuration and the TLS files once
 * (creating the dev PKI before the workers read it), runs the (dev) OCSP responder and the one
 * stapler of the machine and relays its staples, forks the workers, prints the banner when
 * they all listen, and stops them on SIGINT/SIGTERM. Resolves with an exit code when the
 * workers could not start, otherwise undefined (the process exits when they have).
 */
/** Throws CB_ERR_LISTEN (as createServer's listen would) when host:port cannot be bound now. */
function assertCanListen(host: string, port: number): Promise<void> {
  // Port 0 too: the address itself may not be local (EADDRNOTAVAIL), which every worker would
  // then report on its own line.
  return new Promise((resolveProbe, reject) => {
    const probe = createNetServer();
    probe.once('error', (err: NodeJS.ErrnoException) => {
      reject(new CertboundError('CB_ERR_LISTEN', [host, port, err.code === 'EADDRINUSE' ? 'the port is in use (EADDRINUSE)' : err.code ?? err.message]));
    });
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolveProbe()));
  });
}

async function servePrimary(args: string[], workers: number): Promise<number | undefined> {
  const { values } = parse(args, serveArgSpec(), false);
  const cfg = resolveServeConfig(values);
  const loaded = await loadTlsMaterial(cfg);
  // The workers build the same server: a mistake in the options (a mapper, a CRL) is found
  // here once, as one line, instead of once per worker.
  const { createServer } = await import('./server.js');
  await createServer(serverOptions(cfg, loaded, { ocsp: false, logger: false, metrics: undefined, expiryWarnings: false })).close();
  const { pino } = await import('pino');
  // Fleet mode: the primary holds the machine's ticket keys and staples (its workers get them over IPC).
  const fleet = cfg.fleet ? (await import('../fleet/fleet.js')).createFleet({ ...fleetOptions(cfg, true), logger: pino({ level: cfg.logLevel }).child({ component: 'fleet' }) }) : undefined;
  // The workers' listen goes through the primary; a port in use would fail in every worker,
  // each with its own line. Found here once, before any worker starts.
  await assertCanListen(cfg.host, cfg.port);
  const validityMinutes = validityFromEnv();
  const ocsp = staplingOptions(cfg, loaded, validityMinutes);
  prepareStateDir(cfg, loaded, ocsp);
  const started = new StartedResources();
  const [{ createServerStapling }, { ExpiryMonitor, expiryItems }] = await Promise.all([import('../ocsp/server-stapling.js'), import('./expiry.js')]);
  const log = pino({ level: cfg.logLevel });
  let primary: ReturnType<typeof startPrimary>;
  const primaryRef: { current?: ReturnType<typeof startPrimary> } = {};
  let stapling: ReturnType<typeof createServerStapling> | undefined;
  let devResponder: DevOcspResponder | undefined;
  let metricsListener: MetricsListener | undefined;
  let ownMetrics: import('./metrics.js').PromMetrics | undefined;
  // One expiry monitor per machine (the workers run none): one line per item, not one per worker.
  // The material the workers serve (a reload that every worker took replaces it).
  let current = loaded;
  const expiry = new ExpiryMonitor({ items: () => expiryItems({ certs: current.certificates.map((c) => c.chainPem), ca: current.ca, crl: current.crl }), logger: log.child({ component: 'expiry' }), thresholds: { certificateDays: cfg.expiryWarningDays, crlHours: cfg.crlExpiryWarningHours } });
  try {
    devResponder = await startDevResponder(loaded, validityMinutes);
    const r = devResponder;
    if (r) started.add(() => r.close());
    if (fleet) {
      started.add(() => fleet.close());
      await fleet.start();
    }
    if (ocsp) {
      stapling = createServerStapling({ certs: loaded.certificates.map((c) => c.chainPem), ca: loaded.ca, options: { ...ocsp, ...(fleet ? { fleet } : {}) }, logger: log });
      const s = stapling;
      started.add(() => s.close());
    } else console.log('certbound: OCSP stapling off (--ocsp off): no staple, no OCSP retrieval');
    expiry.start();
    started.add(async () => expiry.stop());
    if (cfg.metrics) {
      // The primary serves the metrics: its own (staples, expiry) and every worker's, summed
      // by prom-client's aggregators. Bound before any worker starts: a port in use is one line.
      const { aggregateMetrics, PromMetrics, WorkerMetricsHistory } = await import('./metrics.js');
      const own = new PromMetrics({ defaultMetrics: false });
      ownMetrics = own;
      if (stapling) own.watchStapler(stapling.stapler);
      if (fleet) own.watchFleet(fleet);
      own.watchExpiry(() => expiry.findings());
      // A restarted worker starts from zero: the totals of the ones gone stay in (metrics.ts).
      const history = new WorkerMetricsHistory();
      metricsListener = await startMetricsListener(parseHostPort(cfg.metrics, '--metrics'), async () => {
        const p = primaryRef.current;
        const parts = p ? await history.parts(await p.collectMetrics(DEFAULTS.metricsWorkerTimeoutMs), p.workerPids()) : [];
        const all = aggregateMetrics([await own.registry.getMetricsAsJSON(), ...parts]);
        return { contentType: all.contentType, body: await all.metrics() };
      }, log);
      const m = metricsListener;
      started.add(() => m.close());
    }
    // As in one process, the first retrieval (or the persisted response) comes before the workers listen.
    await stapling?.start();
    // Workers run the bin (never the script that called main(), e.g. a test file).
    const bin = fileURLToPath(new URL('../../bin/certbound.js', import.meta.url));
    const fleetKeys = fleet?.ticketKeys();
    primary = startPrimary({ workers, exec: bin, args: ['serve', ...args], ticketKeyRotationMs: cfg.ticketKeyRotation, ...(fleetKeys ? { ticketKeys: fleetKeys } : {}), log: (m) => console.error(`certbound: ${m}`) });
    primaryRef.current = primary;
    if (fleet) {
      const p = primary;
      fleet.on('keys', (keys) => p.setTicketKeys(keys));
      fleet.on('status', (status) => p.relayFleetStatus(status));
      p.relayFleetStatus(fleet.status());
    }
  } catch (err) {
    await started.closeAll();
    throw err;
  }
  // One stapler per machine: every update goes to every worker (and to workers started later),
  // with the state /connection shows; workers apply the same minimum validity before each handshake.
  // The certificates the workers serve: a reload adds the new ones, and drops the old ones once
  // every worker serves the new ones (until then both are stapled and relayed).
  const minValiditySeconds = resolveSettings(ocsp ? ocsp.settings : {}).SrvOcspRespMinValiditySeconds;
  const fingerprintOf = (der: Buffer) => createHash('sha256').update(der).digest('hex');
  const leavesOf = (l: Loaded) => l.certificates.map((c) => Buffer.from(c.leaf.raw));
  const served = new Map<string, Buffer>(leavesOf(loaded).map((der) => [fingerprintOf(der), der]));
  const relay = () => {
    if (!stapling) return;
    for (const [fingerprint, der] of served) {
      const summary = stapling.summary(fingerprint);
      // An old certificate (workers that failed a reload) is no longer in the summaries: its staple only.
      const own = summary.fingerprint === fingerprint ? summary : undefined;
      const nextUpdate = own ? own.nextUpdate : stapling.stapler.handleFor(der)?.state().nextUpdate ?? null;
      primary.relayStaple(fingerprint, stapling.stapler.stapleFor(der) ?? null, nextUpdate ? new Date(nextUpdate) : null, minValiditySeconds, ...(own ? [own] : []));
    }
  };
  if (stapling) {
    stapling.stapler.on('update', relay);
    relay();
  }
  // SIGHUP and --watch-certs: the primary reads and checks the files once (the start-up loader),
  // moves the stapler to the new certificates (their staples relayed first), then hands the
  // material to every worker; expiry warnings and gauges follow once every worker serves it.
  const stopReloads = reloadTriggers(cfg, async () => {
    let next: { loaded: Loaded; input: ReloadInput };
    try {
      next = await reloadMaterial(cfg);
    } catch (err) {
      (await import('./reload.js')).logReloadFailure(log, err);
      return;
    }
    if (refresher) {
      // A file reload never goes back to a CRL older than one the refresher fetched.
      const crl = refresher.preferNewer(next.loaded.crl);
      next = { loaded: { ...next.loaded, crl }, input: { ...next.input, crl, ...(next.input.revocationCrls ? { revocationCrls: crl } : {}) } };
    }
    await stapling?.moveTo(next.loaded.certificates.map((c) => c.chainPem), next.loaded.ca);
    const nextLeaves = new Map(leavesOf(next.loaded).map((der) => [fingerprintOf(der), der]));
    for (const [f, der] of nextLeaves) served.set(f, der);
    relay();
    const answers = await primary.reload(toWorkerReload(next.input));
    const failed = answers.filter((a) => !a.ok);
    if (failed.length > 0) {
      // Workers that did not reload keep serving (and being relayed staples for) what they had.
      log.error({ event: 'reload', code: 'CB_ERR_RELOAD', cause: failed[0]?.detail.split(':')[0] ?? null, workers: answers.length, failed: failed.map((a) => ({ worker: a.worker, detail: a.detail })) }, `reload failed in ${failed.length} of ${answers.length} workers`);
      return;
    }
    for (const f of [...served.keys()]) if (!nextLeaves.has(f)) served.delete(f);
    stapling?.retire();
    current = next.loaded;
    expiry.check();
    void refresher?.rescan();
    log.info({ event: 'reload', sha256: answers[0]?.detail ?? null, certificates: [...nextLeaves.keys()], workers: answers.length }, `certificates reloaded in ${answers.length} workers`);
  }, log);
  // --crl-refresh: the primary alone fetches, and hands every worker the new CRLs as a reload.
  const refresher = crlRefreshOn(cfg, loaded) ? new (await import('./crl-refresh.js')).CrlRefresher({
    crls: () => current.crl,
    ca: () => current.ca,
    apply: async (crl) => {
      const answers = await primary.reload(toWorkerReload({ certificates: certificateOptions(current.certificates), ca: current.ca, crl, ...(cfg.clientRevocation !== 'off' ? { revocationCrls: crl } : {}) }));
      const failed = answers.filter((a) => !a.ok);
      if (failed.length > 0) throw new Error(`the reload failed in ${failed.length} of ${answers.length} workers: ${failed[0]?.detail ?? ''}`);
      current = { ...current, crl };
      expiry.check();
    },
    logger: log.child({ component: 'crl-refresh' }),
    ...(ownMetrics ? { count: (outcome: string, reason: string) => ownMetrics?.crlRefresh(outcome, reason) } : {}),
  }, { dir: crlKeepDir(cfg) }) : undefined;
  const stop = () => { void primary.close(); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  void primary.exited.then(async (code) => {
    stopReloads();
    refresher?.stop();
    expiry.stop();
    await metricsListener?.close();
    await stapling?.close();
    await fleet?.close();
    await devResponder?.close();
    process.exit(code);
  });
  let port: number;
  try {
    port = await primary.listening;
  } catch {
    return await primary.exited;
  }
  log.info(listeningLine(cfg.host, port));
  await refresher?.start();
  console.log(`${banner(cfg, port, loaded)}\ncertbound: ${workers} worker processes (node:cluster); session-ticket keys shared, rotated every ${cfg.ticketKeyRotation} ms${fleet ? ` by the fleet (${fleet.status().state})` : ''}`);
  if (metricsListener) console.log(`certbound: metrics on ${metricsUrl(metricsListener.address.address, metricsListener.address.port)} (summed over the workers)`);
  return undefined;
}

/** `serve` in a cluster worker: the primary's ticket keys and staples, an id prefix, no banner. */
async function serveWorker(args: string[]): Promise<number | undefined> {
  // A SIGHUP sent to the process group (a closed terminal) reaches the workers too: the primary
  // reloads them all, so a worker ignores it rather than die of it (set before anything awaits).
  process.on('SIGHUP', () => {});
  // A new epoch for every fork, restarts included: connection ids never repeat (cluster.ts).
  (await import('./registry.js')).setConnectionIdPrefix(workerEpoch() ?? (workerIndex() ?? 0) + 1);
  const link = await joinPrimary();
  // A worker stays alive while its IPC channel is open: a start-up error must end it here.
  const server = await serve(args, (running) => {
    const stop = () => {
      const force = setTimeout(() => process.exit(1), DEFAULTS.shutdownGraceMs);
      force.unref();
      link.close();
      running.close().then(() => process.exit(0), () => process.exit(1));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  }, link).catch((err: unknown) => process.exit(fail(err)));
  if (!server) process.exit(0);
  link.listening((server.server.address() as AddressInfo).port);
  return undefined;
}

const DEV_PKI_HELP = `Usage: certbound dev-pki DIR

Writes a dev PKI into DIR: a root CA, a client CA, a server certificate for localhost and
127.0.0.1, client certificates to try (valid, expired, from an untrusted CA, without the
clientAuth usage) and the dev OCSP responder's certificate. Keys are mode 0600 in a 0700
directory; an existing DIR that holds other files and is open to other users is refused.`;

const OCSP_RESPONDER_HELP = `Usage: certbound ocsp-responder [--dev-pki-dir DIR] [--port N] [--host ADDR]
                                [--validity-minutes N] [--revoke SERIAL ...]

Runs the dev OCSP responder for the dev PKI in DIR (default .certbound): it answers for the
certificates that PKI issued, each response valid for --validity-minutes, and says revoked
for every --revoke SERIAL (hex).`;

async function help(text: string | (() => Promise<string>)): Promise<number> {
  console.log(typeof text === 'string' ? text : await text());
  return 0;
}

/** Prints the one error line, `certbound: CODE: message`, and answers the exit code (src/cli-exit.ts). */
function fail(err: unknown): number {
  return failWith(err, (line) => console.error(line));
}

/** The help of each command, for `certbound help CMD` and `certbound CMD --help`. */
// The client's help is loaded with the client, only when asked for.
const clientUsage = async (): Promise<string> => (await import('../client/cli.js')).CLIENT_USAGE;
const HELP: Readonly<Record<string, string | (() => Promise<string>)>> = Object.freeze({
  serve: USAGE,
  'dev-pki': DEV_PKI_HELP,
  'ocsp-responder': OCSP_RESPONDER_HELP,
  job: clientUsage,
  store: clientUsage,
});

/** Entry point of the bin. Resolves with an exit code, or undefined while a server runs. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [cmd, ...rest] = argv;
  try {
    // `--help` (or `-h`) anywhere after a command prints that command's help and does nothing else.
    if (cmd !== undefined && HELP[cmd] !== undefined && wantsHelp(rest)) return await help(HELP[cmd]);
    switch (cmd) {
      case 'serve': {
        if (cluster.isWorker && workerIndex() !== undefined) return await serveWorker(rest);
        holdSighupWhileStarting();
        const workers = serveConfigOf(rest).workers ?? defaultWorkerCount();
        if (workers > 1) return await servePrimary(rest, workers);
        const server = await serve(rest, (running) => {
          const stop = (signal: string) => {
            running.app.log.info({ signal }, 'shutting down');
            const force = setTimeout(() => process.exit(1), DEFAULTS.shutdownGraceMs);
            force.unref();
            running.close().then(() => process.exit(0), () => process.exit(1));
          };
          process.once('SIGINT', () => stop('SIGINT'));
          process.once('SIGTERM', () => stop('SIGTERM'));
        });
        return server ? undefined : EXIT.ok;
      }
      case 'dev-pki': {
        const dir = rest[0];
        if (!dir || rest.length > 1) throw usageError('dev-pki', 'takes one directory: certbound dev-pki DIR', 'certbound dev-pki --help');
        if (dir.startsWith('-')) throw usageError('dev-pki', `unknown option ${dir}`, 'certbound dev-pki --help');
        const paths = await (await import('../tls/dev-pki.js')).createDevPki(resolve(dir));
        console.log(`certbound: dev PKI written to ${paths.dir}`);
        return EXIT.ok;
      }
      case 'ocsp-responder': {
        // The handlers are in place before the responder says it is up: whoever waits for that
        // line may signal at once.
        const state: { responder?: DevOcspResponder; stopping: boolean } = { stopping: false };
        const stop = () => {
          state.stopping = true;
          state.responder?.close().then(() => process.exit(0), () => process.exit(1));
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        state.responder = await (await import('../ocsp/dev-responder.js')).runOcspResponderCli(rest);
        if (state.stopping) stop();
        return undefined;
      }
      case 'job':
      case 'store':
        return await (await import('../client/cli.js')).runClientCli([cmd, ...rest]);
      case '--version':
      case 'version':
        // `--help` anywhere after a command prints help (help and version included).
        if (wantsHelp(rest)) return await help(USAGE);
        if (rest.length > 0) throw usageError('version', `takes no arguments (got ${rest.join(' ')})`);
        console.log(version());
        return EXIT.ok;
      case undefined:
      case '--help':
      case '-h':
        return await help(USAGE);
      case 'help': {
        const [topic, ...more] = rest;
        if (topic === undefined || (wantsHelp([topic]) && more.length === 0)) return await help(USAGE);
        const text = HELP[topic];
        if (text === undefined || more.length > 0) throw usageError('help', `no help for ${JSON.stringify(rest.join(' '))} (commands: ${Object.keys(HELP).join(', ')})`);
        return await help(text);
      }
      default:
        throw usageError('command', `unknown command ${JSON.stringify(cmd)} (${Object.keys(HELP).join(', ')}, help, version)`);
    }
  } catch (err) {
    return fail(err);
  }
}
