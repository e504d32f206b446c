// `certbound job …` and `certbound store list`: the client side on the command line. There is
// no background service: `job resume` queues a job, and the process that runs transfers is
// `job watch` (or `job resume --wait`), which also draws the progress. Failures print the
// HRESULT and its name; the exit code is 0 on success, 1 on a failed call or job and on a usage
// error (src/cli-exit.ts, the rule of every certbound command). Each command takes only the
// options it uses (COMMAND_OPTIONS): any other is refused with CB_ERR_INVALID_OPTION, never
// silently ignored.
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { isCertboundError } from '../errors.js';
import { EXIT, failWith, parseArgsReason, usageError, wantsHelp } from '../cli-exit.js';
import { checkSecretFile } from '../secret-file.js';
import { hresultHex } from '../status.js';
import { HResult, hresultName, succeeded } from './hresult.js';
import { JobState, type JobStateValue, type RetryPolicy } from './job.js';
import { JobManager, type Job, type JobManagerOptions, type JobSnapshot } from './job-manager.js';
import { bytesLeft, formatBytes, formatRateEta, percent, rateOf, renderProgressBar, renderProgressLine, type ProgressSample } from './progress-bar.js';
import { LOCATION_DIRS, openStore, parseStoreLocation, locationDir, type StoreOptions } from './store.js';
import { readdirSync } from 'node:fs';

/** Where the CLI writes; tests pass their own. */
export interface ClientCliIo {
  stdout: { write(s: string): unknown; isTTY?: boolean };
  stderr: { write(s: string): unknown };
  env: NodeJS.ProcessEnv;
}

/** Environment variable for the job directory. */
export const JOBS_DIR_ENV = 'CERTBOUND_JOBS_DIR';

/** The help of `certbound job` and `certbound store` (`--help` anywhere, `certbound help job`). */
export const CLIENT_USAGE = `certbound job|store: BITS-style transfer jobs with client certificates from file stores

  certbound job create NAME [--ca-file PEM]     create a job (SUSPENDED); prints its id
  certbound job add JOB URL LOCAL-FILE          add an HTTPS file to the job
  certbound job set-cert JOB --thumbprint HEX   SetClientCertificateByID (20-byte SHA-1, hex)
  certbound job set-cert JOB --subject NAME     SetClientCertificateByName (simple subject name)
  certbound job set-cert JOB --remove           RemoveClientCertificate
      with --location L (default current-user) and --store NAME (default MY)
  certbound job resume JOB [--wait]             queue the job; --wait runs it here (as watch)
  certbound job suspend|cancel|complete JOB
  certbound job list [--json]
  certbound job watch JOB                       run the job's transfer here, with a progress bar
  certbound store list [--location L] [--store NAME] [--json]

Options: --jobs-dir DIR (env ${JOBS_DIR_ENV}; default $XDG_STATE_HOME/certbound/jobs): job commands
         --as CALLER: create (the owner), set-cert (the owner check)
         --retry-delay MS, --no-progress-timeout MS: create, resume, watch (set the job's policy)
         --store-root DIR (env CERTBOUND_STORE_ROOT): set-cert, watch, resume --wait, store list
         --ca-file PEM: create (kept with the job: its runs trust the servers this file's
                        CAs issued); watch, resume --wait (this run, instead of the job's)
         A command refuses any option it does not use (CB_ERR_INVALID_OPTION, exit 1).
Locations: ${LOCATION_DIRS.join(', ')} (or 0-7, or BITS names)
`;

const OPTIONS = {
  'jobs-dir': { type: 'string' },
  'store-root': { type: 'string' },
  'ca-file': { type: 'string' },
  as: { type: 'string' },
  'retry-delay': { type: 'string' },
  'no-progress-timeout': { type: 'string' },
  location: { type: 'string' },
  store: { type: 'string' },
  thumbprint: { type: 'string' },
  subject: { type: 'string' },
  remove: { type: 'boolean' },
  wait: { type: 'boolean' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

type OptionName = keyof typeof OPTIONS;

/** The options each command uses ('help' goes with any). */
const COMMAND_OPTIONS: Readonly<Record<string, readonly OptionName[]>> = Object.freeze({
  'job create': ['jobs-dir', 'as', 'retry-delay', 'no-progress-timeout', 'ca-file'],
  'job add': ['jobs-dir'],
  'job set-cert': ['jobs-dir', 'as', 'store-root', 'location', 'store', 'thumbprint', 'subject', 'remove'],
  'job resume': ['jobs-dir', 'retry-delay', 'no-progress-timeout', 'wait', 'store-root', 'ca-file'],
  'job suspend': ['jobs-dir'],
  'job cancel': ['jobs-dir'],
  'job complete': ['jobs-dir'],
  'job list': ['jobs-dir', 'json'],
  'job watch': ['jobs-dir', 'retry-delay', 'no-progress-timeout', 'store-root', 'ca-file'],
  'store list': ['store-root', 'location', 'store', 'json'],
});

const usage = (name: string, why: string) => usageError(name, why, 'certbound job --help');

/**
 * Throws CB_ERR_INVALID_OPTION for an option the command would not use: an option given to a
 * command applies to that command, or the command refuses it.
 */
function checkCommandOptions(command: string, values: Partial<Record<OptionName, unknown>>): void {
  const allowed = COMMAND_OPTIONS[command];
  if (!allowed) throw usage('command', `unknown command ${command}`);
  const given = (Object.keys(values) as OptionName[]).filter((k) => values[k] !== undefined && k !== 'help');
  for (const name of given) {
    if (!allowed.includes(name)) {
      const users = Object.entries(COMMAND_OPTIONS).filter(([, opts]) => opts.includes(name)).map(([c]) => c);
      throw usage(`--${name}`, `${command} does not use it (it applies to ${users.join(', ')})`);
    }
  }
  if (command === 'job resume' && !values.wait) {
    for (const name of ['store-root', 'ca-file'] as const) if (values[name] !== undefined) throw usage(`--${name}`, 'job resume uses it only with --wait (the run that transfers)');
  }
  if (command === 'job set-cert') {
    const how = (['thumbprint', 'subject', 'remove'] as const).filter((k) => values[k] !== undefined);
    if (how.length !== 1) throw usage('set-cert', `takes exactly one of --thumbprint, --subject, --remove (got ${how.length === 0 ? 'none' : how.map((k) => `--${k}`).join(', ')})`);
    if (values.remove) for (const name of ['location', 'store', 'store-root'] as const) if (values[name] !== undefined) throw usage(`--${name}`, 'set-cert --remove does not use it');
  }
}

function hrText(hr: number): string {
  return `${hresultHex(hr)} ${hresultName(hr) ?? ''}`.trim();
}

/** Runs `certbound job …` / `certbound store …`; argv starts with 'job' or 'store'. */
export async function runClientCli(argv: string[], io: ClientCliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env }): Promise<number> {
  const out = (s: string) => io.stdout.write(`${s}\n`);
  const err = (s: string) => io.stderr.write(`certbound: ${s}\n`);
  const fail = (e: unknown) => failWith(e, (line) => io.stderr.write(`${line}\n`));
  // `--help` anywhere prints the help and does nothing else, before anything is parsed or opened.
  if (wantsHelp(argv.slice(1))) {
    out(CLIENT_USAGE);
    return EXIT.ok;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    return fail(usage('(command line)', parseArgsReason(e)));
  }
  const { values: v, positionals } = parsed;
  const [area, cmd, ...args] = positionals;
  if (!area || !cmd) return fail(usage(area ?? 'job', `needs a command: ${area === 'store' ? 'store list' : 'job create|add|set-cert|resume|suspend|cancel|complete|list|watch'}`));
  const storeOptions: StoreOptions = { env: io.env, ...(v['store-root'] ? { root: v['store-root'] } : {}) };
  try {
    checkCommandOptions(`${area} ${cmd}`, v);
    if (area === 'store') {
      if (args.length > 0) throw usage('store list', `takes no arguments (got ${args.join(' ')})`);
      return await storeList(v.location, v.store, Boolean(v.json), storeOptions, out);
    }
    const num = (name: string, text: string | undefined) => {
      if (text === undefined) return undefined;
      const n = Number(text);
      if (text.trim() === '' || !Number.isFinite(n) || n < 0) throw usage(`--${name}`, `takes a number of ms, got ${JSON.stringify(text)}`);
      return n;
    };
    const retryDelay = num('retry-delay', v['retry-delay']);
    const noProgress = num('no-progress-timeout', v['no-progress-timeout']);
    const policy = { ...(retryDelay !== undefined ? { minRetryDelayMs: retryDelay } : {}), ...(noProgress !== undefined ? { noProgressTimeoutMs: noProgress } : {}) };
    const runs = cmd === 'watch' || (cmd === 'resume' && v.wait);
    const managerOptions: JobManagerOptions = {
      dir: v['jobs-dir'] ?? io.env[JOBS_DIR_ENV] ?? join(io.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'certbound', 'jobs'),
      store: storeOptions,
      ...(v.as ? { caller: v.as } : {}),
      // On create the CA file goes with the job (below); on a run it holds for this run.
      ...(v['ca-file'] && runs ? { caFile: v['ca-file'] } : {}),
      // Only `watch` (and `resume --wait`) transfer, and only the job they name.
      autoRun: runs ? (id) => id.startsWith(args[0] ?? '\0') : false,
    };
    const manager = await JobManager.open(managerOptions);
    for (const w of manager.warnings) err(`warning: ${w.code}: ${w.message}`);
    // Ctrl-C stops running the job here; it stays queued for the next runner (a restart, as BITS
    // sees it). The progress line is finished first (its last state, a newline), then one line
    // says how to go on.
    const interrupt: Interrupt = {};
    const onSigint = () => {
      interrupt.stopping = true;
      void manager.close().finally(() => {
        interrupt.finish?.();
        process.exit(EXIT.interrupted);
      });
    };
    if (runs) process.once('SIGINT', onSigint);
    try {
      return await jobCommand(manager, cmd, args, { ...v, ...(v['ca-file'] !== undefined ? { caFile: v['ca-file'] } : {}) }, policy, io, out, err, interrupt);
    } finally {
      process.off('SIGINT', onSigint);
      await manager.close();
    }
  } catch (e) {
    if (isCertboundError(e)) return fail(e);
    // A failed call (a job id that names no job): its HRESULT is in the message.
    err((e as Error).message);
    return EXIT.error;
  }
}

async function jobCommand(
  manager: JobManager, cmd: string, args: string[], v: { caFile?: string; location?: string; store?: string; thumbprint?: string; subject?: string; remove?: boolean; wait?: boolean; json?: boolean },
  policy: Partial<RetryPolicy>, io: ClientCliIo, out: (s: string) => void, err: (s: string) => void, interrupt: Interrupt,
): Promise<number> {
  const report = (hr: number, what: string) => {
    if (succeeded(hr)) {
      out(hr === HResult.S_OK ? `${what}: ok` : `${what}: ${hrText(hr)}`);
      return 0;
    }
    err(`${what} failed: ${hrText(hr)}`);
    return 1;
  };
  const need = (n: number, text: string) => {
    if (args.length !== n) throw usage(cmd, `usage: certbound job ${text}`);
  };
  // --retry-delay / --no-progress-timeout set the job's policy (SetMinimumRetryDelay,
  // SetNoProgressTimeout) before the command acts, so they hold for this run and the next.
  const applyPolicy = (job: Job): number => (Object.keys(policy).length === 0 ? HResult.S_OK : job.setRetryPolicy(policy));
  const jobOf = (id: string | undefined): Job => {
    const found = manager.getJob(id ?? '');
    if (!found.job) throw Object.assign(new Error(`job ${id}: ${hrText(found.hr)}`), { hr: found.hr });
    return found.job;
  };
  switch (cmd) {
    case 'create': {
      need(1, 'create NAME');
      const { hr, job } = manager.createJob(args[0] as string);
      if (!job) return report(hr, 'create');
      const policyHr = applyPolicy(job);
      const caHr = policyHr === HResult.S_OK && v.caFile !== undefined ? job.setCaFile(v.caFile) : HResult.S_OK;
      if (policyHr !== HResult.S_OK || caHr !== HResult.S_OK) {
        job.cancel();
        return report(policyHr !== HResult.S_OK ? policyHr : caHr, policyHr !== HResult.S_OK ? 'create' : `create (--ca-file ${v.caFile ?? ''})`);
      }
      out(job.id);
      return 0;
    }
    case 'add': {
      need(3, 'add JOB URL LOCAL-FILE');
      return report(jobOf(args[0]).addFile(args[1] as string, args[2] as string), 'add');
    }
    case 'set-cert': {
      need(1, 'set-cert JOB (--thumbprint HEX | --subject NAME | --remove)');
      const job = jobOf(args[0]);
      if (v.remove) return report(job.removeClientCertificate(), 'remove certificate');
      const location = v.location === undefined ? 0 : parseStoreLocation(v.location) ?? Number.NaN;
      const store = v.store ?? 'MY';
      if (v.thumbprint !== undefined) return report(await job.setClientCertificateByID(location, store, v.thumbprint), 'set certificate');
      return report(await job.setClientCertificateByName(location, store, v.subject ?? ''), 'set certificate');
    }
    case 'resume': {
      need(1, 'resume JOB [--wait]');
      const job = jobOf(args[0]);
      const policyHr = applyPolicy(job);
      if (policyHr !== HResult.S_OK) return report(policyHr, 'resume');
      const hr = job.resume();
      if (!succeeded(hr) || !v.wait) return report(hr, 'resume');
      return watch(manager, job, io, out, err, interrupt);
    }
    case 'suspend':
    case 'cancel':
    case 'complete': {
      need(1, `${cmd} JOB`);
      const job = jobOf(args[0]);
      return report(cmd === 'suspend' ? job.suspend() : cmd === 'cancel' ? job.cancel() : job.complete(), cmd);
    }
    case 'list': {
      need(0, 'list [--json]');
      const jobs = manager.listJobs().map((j) => j.snapshot());
      if (v.json) {
        out(JSON.stringify(jobs, null, 2));
        return 0;
      }
      if (jobs.length === 0) out('no jobs');
      for (const s of jobs) {
        out(`${s.id}  ${s.stateName.padEnd(15)} ${renderProgressLine(s.progress, '').trim()}  owner ${s.owner}  ${JSON.stringify(s.displayName)}`);
        if (s.caFile) out(`    ca-file ${s.caFile}`);
        if (s.certificate) out(`    certificate ${LOCATION_DIRS[s.certificate.location]}\\${s.certificate.storeName} ${s.certificate.thumbprint} (${s.certificate.subjectName})`);
        if (s.error) out(`    error ${hrText(s.error.hr)}: ${s.error.message}`);
      }
      return 0;
    }
    case 'watch': {
      need(1, 'watch JOB');
      const job = jobOf(args[0]);
      const policyHr = applyPolicy(job);
      if (policyHr !== HResult.S_OK) return report(policyHr, 'watch');
      return watch(manager, job, io, out, err, interrupt);
    }
    default:
      throw usage('command', `unknown command job ${cmd}`);
  }
}

/** Set by the SIGINT handler (stopping) and by watch (finish: ends its progress output). */
interface Interrupt { stopping?: boolean; finish?: () => void }

/** The span of progress samples the rate is measured over (ms), and at most this many samples. */
const RATE_WINDOW_MS = 5000;
const RATE_MAX_SAMPLES = 256;

const FINISHED: JobStateValue[] = [JobState.TRANSFERRED, JobState.ERROR, JobState.SUSPENDED, JobState.CANCELLED, JobState.ACKNOWLEDGED];

/** Runs the job here until it is transferred, in error, or stopped; draws its progress. */
async function watch(manager: JobManager, job: Job, io: ClientCliIo, out: (s: string) => void, err: (s: string) => void, interrupt: Interrupt): Promise<number> {
  const tty = Boolean(io.stdout.isTTY);
  let lastLine = '';
  let lastStep = -1;
  // Rate and ETA over the last few seconds of TRANSFERRING (a retry starts a new measure).
  const samples: ProgressSample[] = [];
  const rateText = (s: JobSnapshot): string => {
    if (s.state !== JobState.TRANSFERRING) {
      samples.length = 0;
      return '';
    }
    // A monotonic clock: a wall-clock step would make a rate up.
    const now = performance.now();
    samples.push({ t: now, bytes: s.progress.bytesTransferred });
    while (samples.length > 2 && (now - (samples[0] as ProgressSample).t > RATE_WINDOW_MS || samples.length > RATE_MAX_SAMPLES)) samples.shift();
    return formatRateEta(rateOf(samples), bytesLeft(s.progress));
  };
  let drawn = false;
  const draw = (s: JobSnapshot, stateChange: boolean) => {
    if (s.id !== job.id || interrupt.stopping) return;
    const rate = rateText(s);
    if (tty) {
      io.stdout.write(`\r\x1b[2K${renderProgressBar(s.progress, s.stateName, 30, rate)}`);
      drawn = true;
      return;
    }
    // Plain lines: every state change, and every tenth of the way.
    const pct = percent(s.progress);
    const step = pct === undefined ? -1 : Math.floor(pct / 10);
    const line = renderProgressLine(s.progress, s.stateName, rate);
    if ((stateChange || step > lastStep) && line !== lastLine) {
      out(line);
      lastLine = line;
    }
    lastStep = Math.max(lastStep, step);
  };
  const onState = (s: JobSnapshot) => draw(s, true);
  const onProgress = (s: JobSnapshot) => draw(s, false);
  manager.on('state', onState);
  manager.on('progress', onProgress);
  // Ctrl-C: the bar is redrawn once with where the job stopped, and the line is ended.
  interrupt.finish = () => {
    const s = job.snapshot();
    const where = `${percent(s.progress) ?? '?'}%, ${formatBytes(s.progress.bytesTransferred)}`;
    if (tty && drawn) io.stdout.write(`\r\x1b[2K${renderProgressBar(s.progress, 'STOPPED')}\n`);
    out(`job ${job.id} stopped here by Ctrl-C at ${where}: it stays queued with its partial file; certbound job watch ${job.id} continues it`);
  };
  draw(job.snapshot(), true);
  try {
    const holder = manager.lockHolder(job.id);
    if (holder !== undefined) {
      err(`job ${job.id} is being transferred by process ${holder}; watch it there`);
      return 1;
    }
    if (job.state === JobState.SUSPENDED) {
      if (tty) io.stdout.write('\n');
      out(`job ${job.id} is SUSPENDED: run certbound job resume ${job.id}`);
      return 0;
    }
    // No time limit: a transfer in TRANSIENT_ERROR retries until its no-progress timeout.
    const state = await job.waitFor(FINISHED, 2 ** 31 - 1);
    if (tty) io.stdout.write('\n');
    if (state === JobState.ERROR) {
      const e = job.error;
      err(`job ${job.id} failed: ${e ? `${hrText(e.hr)}: ${e.message}` : 'unknown error'}`);
      return 1;
    }
    if (state === JobState.TRANSFERRED) out(`job ${job.id} transferred: run certbound job complete ${job.id} to move the files into place`);
    return 0;
  } finally {
    manager.off('state', onState);
    manager.off('progress', onProgress);
  }
}

async function storeList(locationText: string | undefined, storeName: string | undefined, json: boolean, options: StoreOptions, out: (s: string) => void): Promise<number> {
  let locations: number[];
  if (locationText === undefined) {
    locations = LOCATION_DIRS.map((_, i) => i);
  } else {
    const loc = parseStoreLocation(locationText);
    if (loc === undefined) throw usage('--location', `unknown location ${locationText} (${LOCATION_DIRS.join(', ')}, 0-7)`);
    locations = [loc];
  }
  const listing: unknown[] = [];
  let failures = 0;
  for (const loc of locations) {
    let names: string[];
    if (storeName !== undefined) {
      names = [storeName];
    } else {
      try {
        names = readdirSync(locationDir(loc as 0, options), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
      } catch {
        continue; // a location without stores is not an error when listing everything
      }
    }
    for (const name of names) {
      const store = await openStore(loc, name, options);
      const label = `${LOCATION_DIRS[loc]}\\${name}`;
      if (store.hr !== HResult.S_OK || !store.entries) {
        // Listing one store name across every location: the locations without it are skipped.
        if (locationText === undefined && store.hr === HResult.E_FILE_NOT_FOUND) continue;
        failures++;
        if (json) listing.push({ location: loc, store: name, hr: store.hr, error: hresultName(store.hr) });
        else out(`${label}: ${hrText(store.hr)}${store.dir ? ` (${store.dir})` : ''}`);
        continue;
      }
      const entries = store.entries.map((e) => ({
        thumbprint: e.thumbprint.toString('hex'),
        subject: e.subject,
        notBefore: e.notBefore.toISOString(),
        notAfter: e.notAfter.toISOString(),
        hasKey: Boolean(e.privateKey),
        clientAuth: e.clientAuth,
        format: e.format,
        file: e.file,
        warnings: e.secretFiles.flatMap(secretFileWarning),
      }));
      // A store directory others can write: they can plant certificates and keys (reported, not refused).
      const storeWarnings = store.warnings.map((w) => `${w.code}: ${w.message}`);
      if (json) {
        listing.push({ location: loc, store: name, dir: store.dir, warnings: storeWarnings, entries, problems: store.problems.map((p) => ({ ...p, error: hresultName(p.hr) })) });
        continue;
      }
      out(`${label}  (${store.dir})`);
      for (const w of storeWarnings) out(`  warning: ${w}`);
      if (entries.length === 0 && store.problems.length === 0) out('  (empty)');
      for (const e of entries) {
        out(`  ${e.thumbprint}  ${e.subject}`);
        out(`      valid ${e.notBefore.slice(0, 10)} to ${e.notAfter.slice(0, 10)}  ${e.hasKey ? 'private key' : 'no key'}  ${e.format}  ${e.file.split('/').pop()}`);
        for (const w of e.warnings) out(`      warning: ${w}`);
      }
      for (const p of store.problems) out(`  unreadable ${p.file.split('/').pop()}: ${hrText(p.hr)}: ${p.message}`);
    }
  }
  if (json) out(JSON.stringify(listing, null, 2));
  return failures > 0 ? 1 : 0;
}

/** `CODE: message` when group or others can access a file holding a private key (or its password); reported, not refused. */
function secretFileWarning(path: string): string[] {
  try {
    const report = checkSecretFile(path);
    return report ? [`${report.code}: ${report.message}`] : [];
  } catch (e) {
    return isCertboundError(e) ? [`${e.code}: ${e.message}`] : [];
  }
}
