// The `certbound` command: `serve` (the reference server) and `dev-pki DIR`. Start-up
// errors are one line with a stable code, never a stack trace.
import { readFileSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createServer as createNetServer } from 'node:net';
import { CertboundError, isCertboundError } from '../errors.js';
import { DEFAULTS } from '../defaults.js';
import { createDevPki, ensureDevPki } from '../tls/dev-pki.js';
import { assertKeyMatches, loadCertificates, loadPrivateKey } from '../tls/pem.js';
import { resolveServeConfig, SERVE_SCHEMA, configReferenceMarkdown, type ServeConfig } from './config.js';
import { createServer, type CertboundServer } from './server.js';
import { runClientCli } from '../client/cli.js';
import cluster from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { pemBlocks } from '../tls/pem.js';
import { createServerStapling } from '../ocsp/server-stapling.js';
import type { CreateServerOptions } from './server.js';
import { defaultWorkerCount, joinPrimary, startPrimary, workerEpoch, workerIndex, type WorkerLink } from './cluster.js';
import { resolveSettings } from '../ocsp/schedule.js';
import { setConnectionIdPrefix } from './registry.js';
import { join } from 'node:path';
import { devStaplingSettings, runOcspResponderCli, startDevPkiResponder, validityFromEnv } from '../ocsp/dev-responder.js';
import type { DevOcspResponder } from '../ocsp/responder.js';
import { CertCheckMode } from '../ocsp/revocation.js';

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
    throw new CertboundError('CB_ERR_INVALID_OPTION', ['(command line)', (err as Error).message]);
  }
}

interface Loaded { cert: string; key: string; ca: string[]; crl: string[]; dev: boolean; devDir?: string }

async function loadTlsMaterial(cfg: ServeConfig): Promise<Loaded> {
  if (cfg.cert && cfg.key) {
    const cert = loadCertificates(cfg.cert, 'certificate');
    const key = loadPrivateKey(cfg.key);
    const leaf = cert.certs[0];
    if (leaf) assertKeyMatches(leaf, key.key, cfg.key, cfg.cert);
    const ca = (cfg.ca ?? []).map((p) => loadCertificates(p, 'CA').pem);
    const crl = (cfg.crl ?? []).map((p) => {
      try {
        return readFileSync(p, 'utf8');
      } catch (err) {
        throw new CertboundError('CB_ERR_PEM_MISSING', ['CRL', p, (err as NodeJS.ErrnoException).code ?? '']);
      }
    });
    return { cert: cert.pem, key: key.pem, ca, crl, dev: false };
  }
  const { paths, created } = await ensureDevPki(resolve(cfg.devPkiDir));
  if (created) console.log(`certbound: created a dev PKI in ${paths.dir}`);
  const ca = cfg.ca ? cfg.ca.map((p) => loadCertificates(p, 'CA').pem) : [readFileSync(paths.caBundle, 'utf8')];
  return { cert: readFileSync(paths.server, 'utf8'), key: readFileSync(paths.serverKey, 'utf8'), ca, crl: [], dev: true, devDir: paths.dir };
}

function banner(cfg: ServeConfig, port: number, loaded: Loaded, server?: CertboundServer): string {
  const host = cfg.host === '127.0.0.1' || cfg.host === '::1' || cfg.host === 'localhost' ? 'localhost' : cfg.host;
  const url = `https://${host}:${port}`;
  const lines = [`certbound: serving ${url}/ (client-auth ${cfg.clientAuth})`];
  if (loaded.dev && loaded.devDir) {
    const d = relative(process.cwd(), loaded.devDir) || '.';
    lines.push('Try it with the dev client certificate:');
    lines.push(`  curl --cacert ${d}/root-ca.pem --cert ${d}/client.pem --key ${d}/client.key ${url}/connection`);
    lines.push('Without a certificate, and with an expired one:');
    lines.push(`  curl --cacert ${d}/root-ca.pem ${url}/connection`);
    lines.push(`  curl --cacert ${d}/root-ca.pem --cert ${d}/client-expired.pem --key ${d}/client-expired.key ${url}/connection`);
    const staple = server?.app.ocspStaple();
    if (staple) {
      lines.push(`OCSP staple: ${staple.stapled ? `${staple.certStatus ?? ''} until ${staple.nextUpdate ?? '?'}` : 'none yet'}, next refresh ${staple.nextRefresh ?? '-'} (responder ${staple.url}); see it with:`);
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
  const { values } = parse(args, serveArgSpec(), false);
  if (values.help) {
    console.log(USAGE);
    return undefined;
  }
  const cfg = resolveServeConfig(values);
  const loaded = await loadTlsMaterial(cfg);
  // With the dev PKI, the dev OCSP responder runs in-process so the demo staples from the first handshake.
  let devResponder: DevOcspResponder | undefined;
  const validityMinutes = validityFromEnv();
  // In a cluster the primary runs the responder and the stapler (servePrimary).
  if (loaded.dev && loaded.devDir && !worker) {
    devResponder = await startDevPkiResponder(loaded.devDir, { validityMinutes }).catch((err: NodeJS.ErrnoException) => {
      console.error(`certbound: dev OCSP responder not started (${err.code ?? err.message}); stapling uses whatever answers on the AIA URL`);
      return undefined;
    });
  }
  const server = createServer({
    cert: loaded.cert,
    key: loaded.key,
    ca: loaded.ca,
    ...(loaded.crl.length > 0 ? { crl: loaded.crl } : {}),
    clientAuth: cfg.clientAuth,
    ...(cfg.mapper ? { mapper: cfg.mapper } : {}),
    logger: { level: cfg.logLevel },
    underPressure: cfg.maxEventLoopDelay > 0 ? { maxEventLoopDelay: cfg.maxEventLoopDelay } : { maxEventLoopDelay: 0 },
    handshakeTimeout: cfg.handshakeTimeout,
    negotiationTimeout: cfg.negotiationTimeout,
    ...(cfg.clientRevocation !== 'off' ? {
      revocation: {
        certCheckMode: cfg.clientRevocation === 'cached-only' ? CertCheckMode.CACHED_ONLY : CertCheckMode.CHECK,
        failMode: cfg.revocationFailMode,
        ...(loaded.crl.length > 0 ? { crls: loaded.crl } : {}),
      },
    } : {}),
    ...(cfg.onDemandHosts ? { onDemandHosts: cfg.onDemandHosts } : {}),
    referenceRoutes: true,
    ocsp: worker ? false : staplingOptions(loaded, validityMinutes),
    // Cluster workers share the primary's session-ticket keys and staples, on every listener (src/server/cluster.ts).
    ...(worker ? { tls: { ticketKeys: worker.ticketKeys }, stapleSource: worker } : {}),
  });
  if (worker) worker.follow(server);
  if (devResponder) {
    const r = devResponder;
    server.app.addHook('onClose', async () => { await r.close(); });
  }
  const addr = await server.listen({ host: cfg.host, port: cfg.port }).catch(async (err: unknown) => {
    await devResponder?.close();
    throw err;
  });
  onListening?.(server);
  // In a cluster the primary prints the banner once.
  if (!worker) console.log(banner(cfg, addr.port, loaded, server));
  return server;
}

function staplingOptions(loaded: Loaded, validityMinutes: number): CreateServerOptions['ocsp'] {
  return loaded.dev && loaded.devDir ? { cacheDir: join(loaded.devDir, 'ocsp-cache'), settings: devStaplingSettings(validityMinutes) } : true;
}

/**
 * `serve --workers N` in the cluster primary: checks the configuration and the TLS files once
 * (creating the dev PKI before the workers read it), runs the (dev) OCSP responder and the one
 * stapler of the machine and relays its staples, forks the workers, prints the banner when
 * they all listen, and stops them on SIGINT/SIGTERM. Resolves with an exit code when the
 * workers could not start, otherwise undefined (the process exits when they have).
 */
/** Throws CB_ERR_LISTEN (as createServer's listen would) when host:port cannot be bound now. */
function assertCanListen(host: string, port: number): Promise<void> {
  if (port === 0) return Promise.resolve();
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
  // The workers' listen goes through the primary; a port in use would fail in every worker,
  // each with its own line. Found here once, before any worker starts.
  await assertCanListen(cfg.host, cfg.port);
  const validityMinutes = validityFromEnv();
  const devResponder = loaded.dev && loaded.devDir
    ? await startDevPkiResponder(loaded.devDir, { validityMinutes }).catch((err: NodeJS.ErrnoException) => {
      console.error(`certbound: dev OCSP responder not started (${err.code ?? err.message}); stapling uses whatever answers on the AIA URL`);
      return undefined;
    })
    : undefined;
  const ocsp = staplingOptions(loaded, validityMinutes);
  const stapling = createServerStapling({ cert: loaded.cert, ca: loaded.ca, options: ocsp === true || !ocsp ? {} : ocsp, logger: pino({ level: cfg.logLevel }) });
  // Workers apply the same minimum validity before serving a relayed staple.
  const minValiditySeconds = resolveSettings(ocsp === true || !ocsp ? {} : ocsp.settings).SrvOcspRespMinValiditySeconds;
  // Workers run the bin (never the script that called main(), e.g. a test file).
  const bin = fileURLToPath(new URL('../../bin/certbound.js', import.meta.url));
  const primary = startPrimary({ workers, exec: bin, args: ['serve', ...args], ticketKeyRotationMs: cfg.ticketKeyRotation, log: (m) => console.error(`certbound: ${m}`) });
  // One stapler per machine: every update goes to every worker (and to workers started later).
  const leafDer = pemBlocks(loaded.cert, 'CERTIFICATE')[0];
  if (leafDer) {
    const leafSha256 = createHash('sha256').update(leafDer).digest('hex');
    const relay = () => {
      const state = stapling.stapler.states()[0];
      primary.relayStaple(leafSha256, stapling.stapler.stapleFor(leafDer) ?? null, state?.nextUpdate ? new Date(state.nextUpdate) : null, minValiditySeconds);
    };
    stapling.stapler.on('update', relay);
    void stapling.start().then(relay);
  }
  const stop = () => { void primary.close(); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  void primary.exited.then(async (code) => {
    await stapling.close();
    await devResponder?.close();
    process.exit(code);
  });
  let port: number;
  try {
    port = await primary.listening;
  } catch {
    return await primary.exited;
  }
  console.log(`${banner(cfg, port, loaded)}\ncertbound: ${workers} worker processes (node:cluster); session-ticket keys shared, rotated every ${cfg.ticketKeyRotation} ms`);
  return undefined;
}

/** `serve` in a cluster worker: the primary's ticket keys and staples, an id prefix, no banner. */
async function serveWorker(args: string[]): Promise<number | undefined> {
  // A new epoch for every fork, restarts included: connection ids never repeat (cluster.ts).
  setConnectionIdPrefix(workerEpoch() ?? (workerIndex() ?? 0) + 1);
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

function fail(err: unknown): number {
  if (isCertboundError(err)) console.error(`certbound: ${err.code}: ${err.message}`);
  else console.error(`certbound: ${(err as Error)?.message ?? String(err)}`);
  return 1;
}

/** Entry point of the bin. Resolves with an exit code, or undefined while a server runs. */
export async function main(argv: string[]): Promise<number | undefined> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'serve': {
        if (cluster.isWorker && workerIndex() !== undefined) return await serveWorker(rest);
        const { values } = parse(rest, serveArgSpec(), false);
        const workers = values.help ? 1 : (resolveServeConfig(values).workers ?? defaultWorkerCount());
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
        return server ? undefined : 0;
      }
      case 'dev-pki': {
        const dir = rest[0];
        if (!dir || rest.length > 1) throw new CertboundError('CB_ERR_INVALID_OPTION', ['dev-pki', 'usage: certbound dev-pki DIR']);
        const paths = await createDevPki(resolve(dir));
        console.log(`certbound: dev PKI written to ${paths.dir}`);
        return 0;
      }
      case 'ocsp-responder': {
        const responder = await runOcspResponderCli(rest);
        const stop = () => { responder.close().then(() => process.exit(0), () => process.exit(1)); };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        return undefined;
      }
      case 'job':
      case 'store':
        return await runClientCli([cmd, ...rest]);
      case '--version':
      case 'version':
        console.log(version());
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        console.log(USAGE);
        return 0;
      default:
        throw new CertboundError('CB_ERR_INVALID_OPTION', ['command', `unknown command ${JSON.stringify(cmd)} (serve, dev-pki, help)`]);
    }
  } catch (err) {
    return fail(err);
  }
}
