// Transfer jobs as BITS runs them: a job downloads one or more HTTPS URLs to local files,
// starts SUSPENDED, moves through the BG_JOB_STATE machine (job.ts), retries transient errors
// with backoff until its no-progress timeout, keeps partial files and continues them with
// Range, and is persisted as JSON (job-file.ts: secret files, checked on load) so that a new
// manager on the same directory carries on. Only the owner may set the client certificate.
// Every call returns an HRESULT; nothing here throws for a status.
import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { lstatSync, mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readRegularFile } from '../read-file.js';
import { randomUUID } from 'node:crypto';
import { userInfo } from 'node:os';
import { dirname, resolve } from 'node:path';
import { DEFAULTS } from '../defaults.js';
import { ensurePrivateDir } from '../secret-file.js';
import { validateOptions } from '../server/options.js';
import { hresultHex } from '../status.js';
import { HResult, hresultName } from './hresult.js';
import {
  ErrorContext, jobFilePath, partPathFor, readJobDir, removeJobFile, RETRY_POLICY_SCHEMA, SIZE_UNKNOWN, writeJobFile,
  type JobCertificate, type JobError, type JobFile, type JobFileWarning, type JobRecord,
} from './job-file.js';
import {
  applyCall, applyEvent, DEFAULT_RETRY_POLICY, isActive, isFinal, JobState, jobStateName, noProgressExpired, retryDelayMs,
  type EngineEvent, type JobCall, type JobStateValue, type RetryPolicy,
} from './job.js';
import { checkByIdArguments, checkByNameArguments, findCertificateById, findCertificateByName, type FindResult, type ThumbprintInput } from './selection.js';
import { hresultFromFsError, openStore, StoreLocation, type StoreLocationValue, type StoreOptions } from './store.js';
import { downloadOnce, isOwnPartFile, partFileSize, type DownloadTls } from './transfer.js';
import type { TransferFailure } from './transfer-error.js';

/** BG_JOB_PROGRESS. */
export interface JobProgress {
  readonly bytesTotal: number;
  readonly bytesTransferred: number;
  readonly filesTotal: number;
  readonly filesTransferred: number;
}

export interface JobManagerOptions {
  /** Where jobs are persisted, one JSON file each. Created if needed. */
  dir: string;
  /** The identity calls are made as (job owner checks). Default: the OS user name. */
  caller?: string;
  /** Where certificate stores are (store.ts). */
  store?: StoreOptions;
  /** PEM file of trusted roots for server certificates, for every job this manager runs. Default: the job's own (Job.setCaFile), else the ROOT and CA stores of the current user and the local machine, else Node's bundled roots. */
  caFile?: string;
  /** Retry timing for new jobs. Default: BITS's (10 min first retry, 14 days without progress). */
  retry?: Partial<RetryPolicy>;
  /** Socket idle limit per attempt, in ms. Default: 60 000. */
  timeoutMs?: number;
  /** Run transfers in this process: all jobs (true, the default), none (false), or the jobs a predicate picks. */
  autoRun?: boolean | ((jobId: string) => boolean);
  /** Clock (ms since epoch). Default: Date.now. */
  now?: () => number;
  /** pino logger: one `info` line per state change, keys jobId, state, previous, owner, hr, error. Default: none. */
  logger?: Pick<Logger, 'info' | 'warn'>;
}

export interface JobSnapshot {
  readonly id: string;
  readonly displayName: string;
  readonly owner: string;
  readonly state: JobStateValue;
  readonly stateName: string;
  readonly progress: JobProgress;
  readonly error?: JobError;
  readonly certificate?: JobCertificate;
  /** The job's own CA file (Job.setCaFile), when it has one. */
  readonly caFile?: string;
  readonly files: readonly Readonly<JobFile>[];
}

const PERSIST_INTERVAL_MS = 250;

/** Diagnostics channel with a JobSnapshot for every state change of every job. */
export const JOB_STATE_CHANNEL = 'certbound:client:job-state';
const stateChannel = channel(JOB_STATE_CHANNEL);

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function defaultCaller(): string {
  try {
    return userInfo().username;
  } catch {
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}

/** Progress of a record: sizes add up only when every file's size is known. */
export function jobProgress(record: Pick<JobRecord, 'files'>): JobProgress {
  let bytesTotal = 0;
  let bytesTransferred = 0;
  let filesTransferred = 0;
  for (const f of record.files) {
    bytesTotal = bytesTotal === SIZE_UNKNOWN || f.bytesTotal === SIZE_UNKNOWN ? SIZE_UNKNOWN : bytesTotal + f.bytesTotal;
    bytesTransferred += f.bytesTransferred;
    if (f.completed) filesTransferred++;
  }
  return { bytesTotal, bytesTransferred, filesTotal: record.files.length, filesTransferred };
}

function snapshot(record: JobRecord): JobSnapshot {
  return Object.freeze({
    id: record.id,
    displayName: record.displayName,
    owner: record.owner,
    state: record.state,
    stateName: jobStateName(record.state),
    progress: jobProgress(record),
    ...(record.error ? { error: record.error } : {}),
    ...(record.certificate ? { certificate: record.certificate } : {}),
    ...(record.caFile ? { caFile: record.caFile } : {}),
    files: record.files.map((f) => ({ ...f })),
  });
}

/** A job as one caller sees it: the same job through two callers differs only in owner checks. */
export class Job {
  readonly #manager: JobManager;
  readonly #record: JobRecord;
  readonly caller: string;

  constructor(manager: JobManager, record: JobRecord, caller: string) {
    this.#manager = manager;
    this.#record = record;
    this.caller = caller;
  }

  get id(): string { return this.#record.id; }
  get displayName(): string { return this.#record.displayName; }
  get owner(): string { return this.#record.owner; }
  get state(): JobStateValue { return this.#record.state; }
  get error(): JobError | undefined { return this.#record.error; }
  getProgress(): JobProgress { return jobProgress(this.#record); }
  snapshot(): JobSnapshot { return snapshot(this.#record); }

  /** AddFile: a remote HTTPS URL and the local file it goes to. E_INVALIDARG for other schemes. */
  addFile(remoteUrl: string, localName: string): number {
    let url: URL;
    try {
      url = new URL(remoteUrl);
    } catch {
      return HResult.E_INVALIDARG;
    }
    if (url.protocol !== 'https:' || !localName || localName.includes('\0')) return HResult.E_INVALIDARG;
    const out = this.#manager.call(this.#record, 'addFile');
    if (out !== HResult.S_OK) return out;
    const local = resolve(localName);
    this.#record.files.push({ remoteUrl: url.toString(), localName: local, partPath: partPathFor(local), bytesTotal: SIZE_UNKNOWN, bytesTransferred: 0, completed: false });
    this.#manager.changed(this.#record, true);
    return HResult.S_OK;
  }

  resume(): number { return this.#manager.call(this.#record, 'resume'); }
  suspend(): number { return this.#manager.call(this.#record, 'suspend'); }
  cancel(): number { return this.#manager.call(this.#record, 'cancel'); }
  complete(): number { return this.#manager.call(this.#record, 'complete'); }

  /** SetClientCertificateByID (seeds 001/002). */
  async setClientCertificateByID(location: unknown, storeName: string | null | undefined, hash: ThumbprintInput): Promise<number> {
    const argHr = checkByIdArguments(location, storeName, hash);
    if (argHr !== HResult.S_OK) return argHr;
    const pre = this.#certificateCallAllowed();
    if (pre !== HResult.S_OK) return pre;
    return this.#setCertificate(await findCertificateById(location, storeName, hash, this.#manager.storeOptions), location as StoreLocationValue, storeName as string);
  }

  /** SetClientCertificateByName: the first client-authentication certificate whose simple subject name contains `subjectName`. */
  async setClientCertificateByName(location: unknown, storeName: string | null | undefined, subjectName: string | null | undefined): Promise<number> {
    const argHr = checkByNameArguments(location, storeName, subjectName);
    if (argHr !== HResult.S_OK) return argHr;
    const pre = this.#certificateCallAllowed();
    if (pre !== HResult.S_OK) return pre;
    return this.#setCertificate(await findCertificateByName(location, storeName, subjectName, this.#manager.storeOptions), location as StoreLocationValue, storeName as string);
  }

  /**
   * The PEM file whose certificates verify this job's servers, kept with the job (a later run
   * needs no flag); undefined removes it. The path is stored absolute; the file must hold a
   * certificate now (E_INVALIDARG otherwise, or the file system's error) and is read again
   * at each attempt. Not on a final job (BG_E_INVALID_STATE) or another owner's (E_ACCESSDENIED).
   */
  setCaFile(path: string | undefined): number {
    const pre = this.#certificateCallAllowed();
    if (pre !== HResult.S_OK) return pre;
    if (path === undefined) {
      delete this.#record.caFile;
    } else {
      if (typeof path !== 'string' || path === '' || path.includes('\0')) return HResult.E_INVALIDARG;
      const file = resolve(path);
      try {
        if (!readRegularFile(file, DEFAULTS.maxPemFileBytes).toString('utf8').includes('-----BEGIN CERTIFICATE-----')) return HResult.E_INVALIDARG;
      } catch (err) {
        return hresultFromFsError(err);
      }
      this.#record.caFile = file;
    }
    this.#manager.changed(this.#record, true);
    return HResult.S_OK;
  }

  /** GetClientCertificate: RPC_X_BAD_STUB_DATA when the job has no certificate (as BITS answers). */
  getClientCertificate(): { hr: number; location?: StoreLocationValue; storeName?: string; hash?: Buffer; subjectName?: string } {
    const c = this.#record.certificate;
    if (!c) return { hr: HResult.RPC_X_BAD_STUB_DATA };
    return { hr: HResult.S_OK, location: c.location, storeName: c.storeName, hash: Buffer.from(c.thumbprint, 'hex'), subjectName: c.subjectName };
  }

  /** RemoveClientCertificate: S_FALSE when there was none. */
  removeClientCertificate(): number {
    const pre = this.#certificateCallAllowed();
    if (pre !== HResult.S_OK) return pre;
    if (!this.#record.certificate) return HResult.S_FALSE;
    delete this.#record.certificate;
    this.#manager.changed(this.#record, true);
    return HResult.S_OK;
  }

  /** TakeOwnership: the caller becomes the owner; a change of owner removes the certificate (BITS). */
  takeOwnership(): number {
    if (isFinal(this.#record.state)) return HResult.BG_E_INVALID_STATE;
    if (this.#record.owner !== this.caller) {
      this.#record.owner = this.caller;
      delete this.#record.certificate;
      this.#manager.changed(this.#record, true);
    }
    return HResult.S_OK;
  }

  /** SetMinimumRetryDelay / SetNoProgressTimeout, in ms (BITS takes seconds and clamps the delay to ≥ 5 s; certbound does not clamp). */
  setRetryPolicy(policy: Partial<RetryPolicy>): number {
    if (isFinal(this.#record.state)) return HResult.BG_E_INVALID_STATE;
    // Only the three known keys, finite: the policy is persisted and must pass the job file's schema again.
    const known = Object.keys(DEFAULT_RETRY_POLICY);
    for (const [k, v] of Object.entries(policy)) if (!known.includes(k) || typeof v !== 'number' || !Number.isFinite(v) || v < 0) return HResult.E_INVALIDARG;
    this.#record.policy = { ...this.#record.policy, ...policy };
    this.#manager.changed(this.#record, true);
    return HResult.S_OK;
  }

  /** Resolves with the job's state once it is one of `states` (or after `timeoutMs`, with the current state). */
  waitFor(states: readonly JobStateValue[], timeoutMs: number = DEFAULTS.jobWaitTimeoutMs): Promise<JobStateValue> {
    return this.#manager.waitFor(this.#record, states, timeoutMs);
  }

  #certificateCallAllowed(): number {
    if (isFinal(this.#record.state)) return HResult.BG_E_INVALID_STATE;
    if (this.#record.owner !== this.caller) return HResult.E_ACCESSDENIED;
    return HResult.S_OK;
  }

  #setCertificate(found: FindResult, location: StoreLocationValue, storeName: string): number {
    if (found.hr !== HResult.S_OK || !found.entry) return found.hr;
    // The job may have changed while the store was read.
    const pre = this.#certificateCallAllowed();
    if (pre !== HResult.S_OK) return pre;
    this.#record.certificate = { location, storeName, thumbprint: found.entry.thumbprint.toString('hex'), subjectName: found.entry.simpleName };
    this.#manager.changed(this.#record, true);
    return HResult.S_OK;
  }
}

/** Holds the jobs of one directory and, unless told otherwise, runs their transfers. */
export class JobManager extends EventEmitter {
  readonly dir: string;
  readonly caller: string;
  readonly storeOptions: StoreOptions;
  readonly #options: JobManagerOptions;
  readonly #now: () => number;
  readonly #jobs = new Map<string, JobRecord>();
  readonly #running = new Map<string, { controller: AbortController; done: Promise<void> }>();
  readonly #retryTimers = new Map<string, NodeJS.Timeout>();
  readonly #lastPersist = new Map<string, number>();
  /** Jobs changed in memory since their last write. */
  readonly #dirty = new Set<string>();
  /** The state last announced per job, so that a state line is written once per change. */
  readonly #announced = new Map<string, JobStateValue>();
  #closed = false;
  /** Tells this manager's lock files from another manager's, in this process or another. */
  readonly #token = randomUUID();
  /** The job files `open` did not load (quarantined), one warning each; also logged with `warn`. */
  readonly warnings: readonly JobFileWarning[] = [];

  private constructor(options: JobManagerOptions) {
    super();
    this.#options = options;
    this.dir = resolve(options.dir);
    this.caller = options.caller ?? defaultCaller();
    this.storeOptions = options.store ?? {};
    this.#now = options.now ?? Date.now;
  }

  /**
   * Opens (or creates) a job directory and loads its jobs. Interrupted transfers go back to
   * QUEUED. The directory is made private (mode 0700, this user's; CB_ERR_PRIVATE_DIR when it
   * cannot be); a job file that fails its checks is quarantined and listed in `warnings`.
   * Rejects with CB_ERR_INVALID_OPTION for a bad `retry`.
   */
  static async open(options: JobManagerOptions): Promise<JobManager> {
    validateOptions(RETRY_POLICY_SCHEMA, options.retry, 'retry');
    const m = new JobManager(options);
    ensurePrivateDir(m.dir);
    const { records, warnings } = readJobDir(m.dir);
    (m.warnings as JobFileWarning[]).push(...warnings);
    for (const w of warnings) m.#options.logger?.warn({ file: w.file, code: w.code, quarantinedTo: w.quarantinedTo ?? null }, w.message);
    for (const record of records) {
      m.#jobs.set(record.id, record);
      // A job another live process is running is left as that process wrote it.
      if (m.lockHolder(record.id) !== undefined) continue;
      record.state = applyEvent(record.state, 'restart');
      for (const f of record.files) {
        // The partial file on disk is the truth about how far the transfer got.
        if (!f.completed) f.bytesTransferred = partSize(f.partPath);
      }
    }
    for (const record of m.#jobs.values()) {
      if (m.lockHolder(record.id) !== undefined) continue;
      m.#persist(record);
      if (record.state === JobState.TRANSIENT_ERROR) m.#armRetry(record, Math.max(0, (record.retry.nextRetryAt ?? 0) - m.#now()));
      m.#schedule(record);
    }
    return m;
  }

  /** CreateJob: a new job, SUSPENDED, owned by `owner` (default: this manager's caller). */
  createJob(displayName: string, options: { owner?: string } = {}): { hr: number; job?: Job } {
    if (typeof displayName !== 'string') return { hr: HResult.RPC_X_NULL_REF_POINTER };
    if (displayName.length > 255) return { hr: HResult.BG_E_STRING_TOO_LONG };
    const now = this.#now();
    const record: JobRecord = {
      version: 1,
      id: randomUUID(),
      displayName,
      owner: options.owner ?? this.caller,
      state: JobState.SUSPENDED,
      files: [],
      policy: { ...DEFAULT_RETRY_POLICY, ...(this.#options.retry ?? {}) },
      retry: { attempt: 0 },
      createdAt: now,
      modifiedAt: now,
    };
    this.#jobs.set(record.id, record);
    this.changed(record, true);
    return { hr: HResult.S_OK, job: new Job(this, record, this.caller) };
  }

  /** GetJob: BG_E_NOT_FOUND for an unknown id (also for jobs completed or cancelled before a restart). */
  getJob(id: string, caller: string = this.caller): { hr: number; job?: Job } {
    const record = this.#jobs.get(id) ?? [...this.#jobs.values()].find((r) => r.id.startsWith(id) && id.length >= 8);
    return record ? { hr: HResult.S_OK, job: new Job(this, record, caller) } : { hr: HResult.BG_E_NOT_FOUND };
  }

  /** EnumJobs: every job of the directory, oldest first. */
  listJobs(caller: string = this.caller): Job[] {
    return [...this.#jobs.values()].sort((a, b) => a.createdAt - b.createdAt).map((r) => new Job(this, r, caller));
  }

  /** Stops transfers and timers (jobs stay as they are on disk, to be carried on by the next manager). */
  async close(): Promise<void> {
    this.#closed = true;
    for (const t of this.#retryTimers.values()) clearTimeout(t);
    this.#retryTimers.clear();
    const running = [...this.#running.values()];
    for (const r of running) r.controller.abort();
    await Promise.all(running.map((r) => r.done));
    // Only what changed since the last write: a job another process ran meanwhile keeps its file.
    for (const record of this.#jobs.values()) if (this.#dirty.has(record.id)) this.#persist(record);
  }

  /** @internal Applies a caller's method to a record. */
  call(record: JobRecord, call: JobCall): number {
    const before = record.state;
    const ctx = { files: record.files.length, allTransferred: record.files.length > 0 && record.files.every((f) => f.completed) };
    const out = applyCall(before, call, ctx);
    if (out.hr !== HResult.S_OK && out.hr !== HResult.BG_S_PARTIAL_COMPLETE) return out.hr;
    if (call === 'complete') {
      const hr = this.#finishFiles(record);
      if (hr !== HResult.S_OK) return hr;
    }
    if (out.state !== before || call === 'resume') {
      if (isActive(before) && !isActive(out.state)) this.#running.get(record.id)?.controller.abort();
      this.#clearRetry(record);
      if (call === 'resume') {
        record.retry = { attempt: 0 };
        delete record.error;
      }
      record.state = out.state;
      if (call === 'cancel') this.#removeParts(record);
    }
    this.changed(record, true);
    this.#schedule(record);
    return out.hr;
  }

  /** @internal Persists and announces a change. */
  changed(record: JobRecord, stateChange: boolean): void {
    record.modifiedAt = this.#now();
    this.#dirty.add(record.id);
    const last = this.#lastPersist.get(record.id) ?? 0;
    if (stateChange || record.modifiedAt - last >= PERSIST_INTERVAL_MS) this.#persist(record);
    const snap = snapshot(record);
    const previous = this.#announced.get(record.id);
    if (stateChange && previous !== record.state) {
      this.#announced.set(record.id, record.state);
      if (stateChannel.hasSubscribers) stateChannel.publish(snap);
      const failed = (record.state === JobState.ERROR || record.state === JobState.TRANSIENT_ERROR) && record.error ? record.error : undefined;
      this.#options.logger?.info({
        jobId: record.id,
        state: snap.stateName,
        previous: previous === undefined ? null : jobStateName(previous),
        owner: record.owner,
        bytesTransferred: snap.progress.bytesTransferred,
        hr: failed ? hresultHex(failed.hr) : null,
        error: failed ? `${failed.name}: ${failed.message}` : null,
      }, 'job state');
    }
    this.emit(stateChange ? 'state' : 'progress', snap);
  }

  /** @internal */
  waitFor(record: JobRecord, states: readonly JobStateValue[], timeoutMs: number): Promise<JobStateValue> {
    if (states.includes(record.state)) return Promise.resolve(record.state);
    return new Promise((resolvePromise) => {
      const onState = (s: JobSnapshot) => {
        if (s.id === record.id && states.includes(s.state)) done();
      };
      const timer = setTimeout(() => done(), timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('state', onState);
        resolvePromise(record.state);
      };
      this.on('state', onState);
    });
  }

  #persist(record: JobRecord): void {
    this.#lastPersist.set(record.id, this.#now());
    this.#dirty.delete(record.id);
    try {
      // BITS removes completed and cancelled jobs from its queue.
      if (isFinal(record.state)) removeJobFile(this.dir, record.id);
      else writeJobFile(this.dir, record);
    } catch (err) {
      this.#options.logger?.warn({ jobId: record.id, err }, 'cannot persist the job');
      this.emit('persistError', { id: record.id, error: err });
    }
  }

  #setState(record: JobRecord, event: EngineEvent): boolean {
    const next = applyEvent(record.state, event);
    if (next === record.state) return false;
    record.state = next;
    if (next === JobState.TRANSFERRED) record.transferCompletedAt = this.#now();
    this.changed(record, true);
    return true;
  }

  #mayRun(record: JobRecord): boolean {
    const auto = this.#options.autoRun ?? true;
    return typeof auto === 'function' ? auto(record.id) : auto;
  }

  /**
   * The pid of another live process (or manager) that is running this job, if any. A job runs
   * in one place at a time: `<id>.lock` holds the runner's pid and token; a lock whose process
   * is gone is stale and taken over.
   */
  lockHolder(id: string): number | undefined {
    const held = this.#readLock(id);
    return held && held.token !== this.#token && pidAlive(held.pid) ? held.pid : undefined;
  }

  #readLock(id: string): { pid: number; token: string } | undefined {
    try {
      // Bounded, regular files only, no link: a FIFO or /dev/zero planted as a lock is no lock.
      return JSON.parse(readRegularFile(jobFilePath(this.dir, id, '.lock'), DEFAULTS.maxStateFileBytes, { noFollow: true }).toString('utf8')) as { pid: number; token: string };
    } catch {
      return undefined;
    }
  }

  #acquire(record: JobRecord): boolean {
    const path = jobFilePath(this.dir, record.id, '.lock');
    for (let i = 0; i < 2; i++) {
      try {
        // O_EXCL makes it a new file, so its mode is 0600 (or less) whatever the umask.
        writeFileSync(path, JSON.stringify({ pid: process.pid, token: this.#token }), { flag: 'wx', mode: 0o600 });
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return false;
        if (this.lockHolder(record.id) !== undefined) return false;
        rmSync(path, { force: true }); // stale: its process is gone
      }
    }
    return false;
  }

  #release(record: JobRecord): void {
    if (this.#readLock(record.id)?.token === this.#token) rmSync(jobFilePath(this.dir, record.id, '.lock'), { force: true });
  }

  #schedule(record: JobRecord): void {
    if (this.#closed || record.state !== JobState.QUEUED || this.#running.has(record.id) || !this.#mayRun(record)) return;
    const controller = new AbortController();
    const done = new Promise<void>((resolveDone) => setImmediate(() => {
      if (!this.#acquire(record)) {
        // Another process runs it; this manager leaves the job alone.
        this.#running.delete(record.id);
        this.emit('locked', { id: record.id, pid: this.lockHolder(record.id) });
        resolveDone();
        return;
      }
      this.#run(record, controller.signal).catch((err: unknown) => {
        this.#fail(record, { hr: HResult.ERROR_WINHTTP_CONNECTION_ERROR, transient: false, message: `internal error: ${(err as Error).message}` }, ErrorContext.UNKNOWN);
      }).finally(() => {
        this.#release(record);
        this.#running.delete(record.id);
        resolveDone();
        this.#schedule(record);
      });
    }));
    this.#running.set(record.id, { controller, done });
  }

  async #run(record: JobRecord, signal: AbortSignal): Promise<void> {
    if (signal.aborted || !this.#setState(record, 'start')) return;
    const tls = await this.#tlsFor(record);
    if (signal.aborted) return;
    if ('hr' in tls) return this.#fail(record, { hr: tls.hr, transient: false, message: tls.message }, ErrorContext.GENERAL_QUEUE_MANAGER);
    for (const file of record.files) {
      if (file.completed) continue;
      try {
        mkdirSync(dirname(file.partPath), { recursive: true });
      } catch (err) {
        return this.#fail(record, { hr: hresultFromFsError(err), transient: false, message: (err as Error).message }, ErrorContext.LOCAL_FILE, file.remoteUrl);
      }
      const outcome = await downloadOnce({
        url: file.remoteUrl,
        partPath: file.partPath,
        ...(file.validators ? { validators: file.validators } : {}),
        tls,
        signal,
        timeoutMs: this.#options.timeoutMs ?? DEFAULTS.jobTimeoutMs,
        onConnected: (validators) => {
          if (signal.aborted) return;
          file.validators = validators;
          if (!this.#setState(record, 'connected')) this.changed(record, true);
        },
        onProgress: (transferred, total) => {
          if (signal.aborted) return;
          if (transferred > file.bytesTransferred) record.retry = { attempt: 0 };
          file.bytesTransferred = transferred;
          file.bytesTotal = total ?? SIZE_UNKNOWN;
          this.changed(record, false);
        },
      });
      if (outcome.kind === 'aborted' || signal.aborted) return;
      if (outcome.kind === 'failed') {
        if (outcome.validators) file.validators = outcome.validators;
        // Bytes counted but not yet written when the connection broke are not there: the
        // partial file is what the next attempt continues from.
        file.bytesTransferred = partSize(file.partPath);
        const context = outcome.failure.hr >>> 16 === 0x8019 ? ErrorContext.REMOTE_FILE : outcome.failure.hr === HResult.E_ACCESSDENIED ? ErrorContext.LOCAL_FILE : ErrorContext.GENERAL_TRANSPORT;
        return this.#fail(record, outcome.failure, context, file.remoteUrl);
      }
      file.validators = outcome.validators;
      file.bytesTotal = outcome.total;
      file.bytesTransferred = outcome.total;
      file.completed = true;
      this.changed(record, true);
    }
    record.retry = { attempt: 0 };
    delete record.error;
    this.#setState(record, 'allTransferred');
  }

  #fail(record: JobRecord, failure: TransferFailure, context: number, remoteUrl?: string): void {
    record.error = { hr: failure.hr, name: hresultName(failure.hr) ?? '', message: failure.message, context, ...(remoteUrl ? { remoteUrl } : {}) };
    const now = this.#now();
    if (failure.transient && record.policy.noProgressTimeoutMs > 0) {
      record.retry.noProgressSince ??= now;
      record.retry.attempt += 1;
      if (noProgressExpired(record.retry.noProgressSince, now, record.policy)) {
        this.#setState(record, 'fatalError');
        return;
      }
      if (!this.#setState(record, 'transientError')) return;
      const deadline = record.retry.noProgressSince + record.policy.noProgressTimeoutMs;
      const delay = Math.min(retryDelayMs(record.retry.attempt, record.policy), Math.max(0, deadline - now));
      record.retry.nextRetryAt = now + delay;
      this.changed(record, true);
      this.#armRetry(record, delay);
      return;
    }
    this.#setState(record, 'fatalError');
  }

  #armRetry(record: JobRecord, delay: number): void {
    this.#clearRetry(record);
    if (this.#closed || !this.#mayRun(record)) return;
    this.#retryTimers.set(record.id, setTimeout(() => {
      this.#retryTimers.delete(record.id);
      if (record.state !== JobState.TRANSIENT_ERROR) return;
      if (record.retry.noProgressSince !== undefined && noProgressExpired(record.retry.noProgressSince, this.#now(), record.policy)) {
        this.#setState(record, 'noProgressTimeout');
        return;
      }
      delete record.retry.nextRetryAt;
      this.#setState(record, 'retry');
      this.#schedule(record);
    }, delay));
  }

  #clearRetry(record: JobRecord): void {
    const t = this.#retryTimers.get(record.id);
    if (t) clearTimeout(t);
    this.#retryTimers.delete(record.id);
  }

  async #tlsFor(record: JobRecord): Promise<DownloadTls | { hr: number; message: string }> {
    const ca = await this.#trustedRoots(this.#options.caFile ?? record.caFile);
    if ('hr' in ca) return ca;
    const c = record.certificate;
    if (!c) return ca.roots ? { ca: ca.roots } : {};
    const found = await findCertificateById(c.location, c.storeName, c.thumbprint, this.storeOptions);
    if (found.hr !== HResult.S_OK || !found.entry?.privateKey) {
      return { hr: found.hr, message: `the job's certificate ${c.thumbprint} is no longer usable in ${c.storeName} (${hresultName(found.hr) ?? found.hr})` };
    }
    const e = found.entry;
    return {
      key: e.privateKey?.export({ type: 'pkcs8', format: 'pem' }).toString(),
      cert: [e.certificate, ...e.chain].map((x) => x.toString()).join(''),
      ...(ca.roots ? { ca: ca.roots } : {}),
    };
  }

  /** The roots of `caFile` (this run's, else the job's own), else those of the ROOT and CA stores. */
  async #trustedRoots(caFile: string | undefined): Promise<{ roots?: string[] } | { hr: number; message: string }> {
    if (caFile) {
      try {
        return { roots: [readRegularFile(caFile, DEFAULTS.maxPemFileBytes).toString('utf8')] };
      } catch (err) {
        return { hr: hresultFromFsError(err), message: `cannot read the CA file ${caFile}: ${(err as Error).message}` };
      }
    }
    const roots: string[] = [];
    for (const location of [StoreLocation.CURRENT_USER, StoreLocation.LOCAL_MACHINE]) {
      for (const name of ['ROOT', 'CA']) {
        const store = await openStore(location, name, this.storeOptions);
        for (const e of store.entries ?? []) roots.push(e.certificate.toString());
      }
    }
    return roots.length > 0 ? { roots } : {};
  }

  /** Complete: moves finished files into place and drops partial ones. */
  #finishFiles(record: JobRecord): number {
    this.#running.get(record.id)?.controller.abort();
    for (const f of record.files) {
      if (!f.completed) continue;
      try {
        // Only the partial file itself moves into place: never a link someone put there, another
        // user's file (pre-created in a shared directory) or a hard link to another file.
        if (!isOwnPartFile(lstatSync(f.partPath))) return HResult.E_ACCESSDENIED;
        renameSync(f.partPath, f.localName);
      } catch (err) {
        return hresultFromFsError(err);
      }
    }
    this.#removeParts(record);
    return HResult.S_OK;
  }

  #removeParts(record: JobRecord): void {
    for (const f of record.files) {
      if (record.state === JobState.ACKNOWLEDGED && f.completed) continue;
      // Unlinks a file or a link (never what a link names); leaves anything else alone.
      try {
        const st = lstatSync(f.partPath);
        if (st.isFile() || st.isSymbolicLink()) rmSync(f.partPath, { force: true });
      } catch {
        // already gone
      }
    }
  }
}

/** The size of a partial file, 0 when there is none or it is not ours to continue (transfer.ts isOwnPartFile: a link is not followed). */
function partSize(path: string): number {
  return partFileSize(path);
}
