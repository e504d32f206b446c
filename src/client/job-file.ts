// Job state files: one `<id>.json` per job, written as secret files (src/secret-file.ts: mode
// 0600 in a 0700 directory). A file is trusted only once it passes its schema and its paths are
// confined: the id names the file itself, a certificate's store name stays in its location, and
// each partial file sits next to its destination. A file that fails is moved to `quarantine/`
// and reported with a CB_ERR_JOB_FILE_* code, never followed.
import { DEFAULTS } from '../defaults.js';
import { closeSync, constants, fstatSync, lstatSync, openSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { CertboundError, isCertboundError } from '../errors.js';
import { ensurePrivateDir, writeSecretFile } from '../secret-file.js';
import { is, validateOptions, type Schema } from '../server/options.js';
import { HResult } from './hresult.js';
import { JobState, type JobStateValue, type RetryPolicy } from './job.js';
import { checkStoreName, LOCATION_DIRS, type StoreLocationValue } from './store.js';
import type { Validators } from './transfer.js';

/** BG_SIZE_UNKNOWN: the size of a file (or job) is not known yet. */
export const SIZE_UNKNOWN = -1;

/** BG_ERROR_CONTEXT (bits.h): where an error happened. */
export const ErrorContext = Object.freeze({
  NONE: 0,
  UNKNOWN: 1,
  GENERAL_QUEUE_MANAGER: 2,
  QUEUE_MANAGER_NOTIFICATION: 3,
  LOCAL_FILE: 4,
  REMOTE_FILE: 5,
  GENERAL_TRANSPORT: 6,
  REMOTE_APPLICATION: 7,
} as const);

export interface JobFile {
  readonly remoteUrl: string;
  /** The destination: an absolute, normalized path. */
  readonly localName: string;
  /** The partial file: always `<localName>.certbound-part`; renamed to `localName` by Complete. */
  readonly partPath: string;
  bytesTotal: number;
  bytesTransferred: number;
  completed: boolean;
  validators?: Validators;
}

export interface JobCertificate {
  readonly location: StoreLocationValue;
  readonly storeName: string;
  /** SHA-1 thumbprint, lowercase hex. */
  readonly thumbprint: string;
  /** Simple subject name (BITS order). */
  readonly subjectName: string;
}

export interface JobError {
  readonly hr: number;
  readonly name: string;
  readonly message: string;
  readonly context: number;
  /** The remote URL of the file that failed, when one did. */
  readonly remoteUrl?: string;
}

/** What is persisted for a job (one JSON file). */
export interface JobRecord {
  readonly version: 1;
  readonly id: string;
  displayName: string;
  owner: string;
  state: JobStateValue;
  files: JobFile[];
  certificate?: JobCertificate;
  /** PEM file of the roots that verify the servers of this job (`job create --ca-file`): an absolute, normalized path. */
  caFile?: string;
  error?: JobError;
  policy: RetryPolicy;
  /** Retry bookkeeping: consecutive attempts without progress, since when, next retry time (ms since epoch). */
  retry: { attempt: number; noProgressSince?: number; nextRetryAt?: number };
  createdAt: number;
  modifiedAt: number;
  transferCompletedAt?: number;
}

/** A job file that was not loaded: which, why (its code and message), and where it went. */
export interface JobFileWarning {
  readonly file: string;
  /** CB_ERR_JOB_FILE_INVALID: not JSON, or not the schema. CB_ERR_JOB_FILE_UNSAFE: a path (or the file itself) is not where it must be. */
  readonly code: 'CB_ERR_JOB_FILE_INVALID' | 'CB_ERR_JOB_FILE_UNSAFE';
  /** The message of the code, naming the file, the reason and where the file is now. */
  readonly message: string;
  /** Where the file was moved; undefined when it could not be moved. */
  readonly quarantinedTo?: string;
}

/** Where unusable job files go, inside the jobs directory. */
export const QUARANTINE_DIR = 'quarantine';
const PART_SUFFIX = '.certbound-part';
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The partial file of a destination: the only name a job deletes or renames from. */
export function partPathFor(localName: string): string {
  return `${localName}${PART_SUFFIX}`;
}

/** The file of job `id` in `dir`. Throws CB_ERR_INVALID_ARGUMENT for an id that is not a job id (it would name another file). */
export function jobFilePath(dir: string, id: string, ext: '.json' | '.lock' = '.json'): string {
  if (!JOB_ID.test(id)) throw new CertboundError('CB_ERR_INVALID_ARGUMENT', ['id', `${JSON.stringify(id)} is not a job id`]);
  return join(dir, `${id}${ext}`);
}

/** RetryPolicy: the job file's `policy`, and JobManagerOptions.retry (partial there). */
export const RETRY_POLICY_SCHEMA: Schema = Object.freeze({
  minRetryDelayMs: is.nonNegativeNumber,
  maxRetryDelayMs: is.nonNegativeNumber,
  noProgressTimeoutMs: is.nonNegativeNumber,
});

const FILE_SCHEMA: Schema = Object.freeze({
  remoteUrl: is.matching(/^https:\/\/\S+$/, 'an https URL'),
  localName: is.string,
  partPath: is.string,
  bytesTotal: is.either(is.oneOf([SIZE_UNKNOWN]), is.nonNegativeInteger),
  bytesTransferred: is.nonNegativeInteger,
  completed: is.boolean,
  validators: is.shape({ etag: is.string, lastModified: is.string }),
});

const RECORD_SCHEMA: Schema = Object.freeze({
  version: is.oneOf([1]),
  id: is.string,
  displayName: is.matching(/^[\s\S]{0,255}$/, 'a name of at most 255 characters'),
  owner: is.string,
  state: is.oneOf(Object.values(JobState)),
  files: is.arrayOf(is.shape(FILE_SCHEMA, ['remoteUrl', 'localName', 'partPath', 'bytesTotal', 'bytesTransferred', 'completed'])),
  certificate: is.shape({
    location: is.oneOf(LOCATION_DIRS.map((_, i) => i)),
    storeName: is.string,
    thumbprint: is.matching(/^[0-9a-f]{40}$/, 'a SHA-1 thumbprint (40 lowercase hex digits)'),
    subjectName: is.string,
  }, ['location', 'storeName', 'thumbprint', 'subjectName']),
  caFile: is.string,
  error: is.shape({
    hr: is.nonNegativeInteger,
    name: is.string,
    message: is.string,
    context: is.oneOf(Object.values(ErrorContext)),
    remoteUrl: is.string,
  }, ['hr', 'name', 'message', 'context']),
  policy: is.shape(RETRY_POLICY_SCHEMA, Object.keys(RETRY_POLICY_SCHEMA)),
  retry: is.shape({ attempt: is.nonNegativeInteger, noProgressSince: is.nonNegativeNumber, nextRetryAt: is.nonNegativeNumber }, ['attempt']),
  createdAt: is.nonNegativeNumber,
  modifiedAt: is.nonNegativeNumber,
  transferCompletedAt: is.nonNegativeNumber,
});
const RECORD_REQUIRED = ['version', 'id', 'displayName', 'owner', 'state', 'files', 'policy', 'retry', 'createdAt', 'modifiedAt'];

type Verdict = { record: JobRecord } | { code: JobFileWarning['code']; why: string } | { gone: true };

/** An absolute path with nothing to resolve (no `..`, no `//`, no NUL): what a job file may name. */
export function isNormalAbsolute(path: string): boolean {
  return isAbsolute(path) && resolve(path) === path && !path.includes('\0');
}

/** Why the paths of a schema-valid record cannot be trusted, or undefined when they can. */
function unconfined(record: JobRecord, name: string): string | undefined {
  if (!JOB_ID.test(record.id)) return `id ${JSON.stringify(record.id)} is not a job id`;
  if (`${record.id}.json` !== name) return `id ${record.id} does not name this file`;
  if (record.caFile !== undefined && !isNormalAbsolute(record.caFile)) return `caFile ${JSON.stringify(record.caFile)} is not an absolute, normalized path`;
  if (record.certificate && checkStoreName(record.certificate.storeName) !== HResult.S_OK) return `certificate.storeName ${JSON.stringify(record.certificate.storeName)} is not a store name`;
  for (const [i, f] of record.files.entries()) {
    if (!isNormalAbsolute(f.localName)) return `files[${i}].localName ${JSON.stringify(f.localName)} is not an absolute, normalized path`;
    if (f.partPath !== partPathFor(f.localName)) return `files[${i}].partPath ${JSON.stringify(f.partPath)} is not ${JSON.stringify(partPathFor(f.localName))}`;
  }
  return undefined;
}

function readJobFile(file: string, name: string): Verdict {
  let fd: number;
  try {
    const st = lstatSync(file);
    if (st.isSymbolicLink()) return { code: 'CB_ERR_JOB_FILE_UNSAFE', why: 'a symbolic link' };
    if (!st.isFile()) return { code: 'CB_ERR_JOB_FILE_UNSAFE', why: 'not a regular file' };
    // O_NOFOLLOW: a link swapped in after the lstat is refused, not read.
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { gone: true }; // completed or cancelled by another process meanwhile
    if (code === 'ELOOP') return { code: 'CB_ERR_JOB_FILE_UNSAFE', why: 'a symbolic link' };
    return { code: 'CB_ERR_JOB_FILE_INVALID', why: `cannot be read (${code ?? (err as Error).message})` };
  }
  let value: unknown;
  try {
    // The parser's message may quote the content; the warning says only what is wrong.
    // Bounded: a sparse 3 GiB "job" is refused before it is read.
    if (fstatSync(fd).size > DEFAULTS.maxStateFileBytes) return { code: 'CB_ERR_JOB_FILE_INVALID', why: `larger than ${DEFAULTS.maxStateFileBytes} bytes` };
    value = JSON.parse(readFileSync(fd, 'utf8'));
  } catch {
    return { code: 'CB_ERR_JOB_FILE_INVALID', why: 'not JSON: truncated or corrupt' };
  } finally {
    closeSync(fd);
  }
  try {
    validateOptions(RECORD_SCHEMA, value, 'job', RECORD_REQUIRED);
  } catch (err) {
    if (!isCertboundError(err, 'CB_ERR_INVALID_OPTION')) throw err;
    return { code: 'CB_ERR_JOB_FILE_INVALID', why: err.message.replace(/^Invalid option /, '') };
  }
  const record = value as JobRecord;
  const why = unconfined(record, name);
  return why === undefined ? { record } : { code: 'CB_ERR_JOB_FILE_UNSAFE', why };
}

function quarantine(dir: string, name: string, code: JobFileWarning['code'], why: string): JobFileWarning {
  const file = join(dir, name);
  let to: string | undefined;
  let fate: string;
  try {
    const qdir = join(dir, QUARANTINE_DIR);
    ensurePrivateDir(qdir, { noLink: true });
    to = join(qdir, name);
    try {
      lstatSync(to);
      to = join(qdir, `${name}.${Date.now()}`); // an earlier file of the same name stays
    } catch {
      // free
    }
    renameSync(file, to);
    fate = `moved to ${to}`;
  } catch (err) {
    to = undefined;
    fate = `left in place, could not be moved (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
  return Object.freeze({ file, code, message: new CertboundError(code, [file, why, fate]).message, ...(to ? { quarantinedTo: to } : {}) });
}

/**
 * Loads every `*.json` job file of `dir` (a private directory). A file that fails its schema or
 * its confinement is quarantined and comes back as a warning; the others load as usual.
 */
export function readJobDir(dir: string): { records: JobRecord[]; warnings: JobFileWarning[] } {
  const records: JobRecord[] = [];
  const warnings: JobFileWarning[] = [];
  for (const name of readdirSync(dir).sort()) {
    if (!name.endsWith('.json')) continue;
    const verdict = readJobFile(join(dir, name), name);
    if ('record' in verdict) records.push(verdict.record);
    else if ('code' in verdict) warnings.push(quarantine(dir, name, verdict.code, verdict.why));
  }
  return { records, warnings };
}

/** Persists a record as `<dir>/<id>.json` (a secret file). Throws CB_ERR_SECRET_FILE / CB_ERR_PRIVATE_DIR. */
export function writeJobFile(dir: string, record: JobRecord): void {
  writeSecretFile(jobFilePath(dir, record.id), JSON.stringify(record, null, 2));
}

/** Removes a job's file (BITS forgets completed and cancelled jobs). */
export function removeJobFile(dir: string, id: string): void {
  rmSync(jobFilePath(dir, id), { force: true });
}
