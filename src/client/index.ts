// certbound's client side: certificate stores, selection by thumbprint or subject, and BITS-style
// HTTPS transfer jobs. The HRESULT table is exported as BitsHResult (the server side has its own
// HResult for IIS's negotiation).
export { HResult as BitsHResult, hresultName, hresultFromWin32, hresultFromHttpStatus, succeeded, type HResultValue } from './hresult.js';
export {
  StoreLocation, LOCATION_DIRS, SYSTEM_STORES, MAX_STORE_NAME_CHARS, STORE_ROOT_ENV, E_INVALID_PASSWORD, NTE_BAD_ALGID, CRYPT_E_ASN1_BADTAG,
  isStoreLocation, parseStoreLocation, locationDir, checkStoreName, storeDir, openStore,
  type StoreLocationValue, type StoreOptions, type StoreEntry, type StoreProblem, type OpenStoreResult,
} from './store.js';
export {
  THUMBPRINT_BYTES, MAX_SUBJECT_NAME_CHARS, NTE_NO_KEY, checkThumbprint, checkByIdArguments, checkByNameArguments, findCertificateById, findCertificateByName,
  type ThumbprintInput, type FindResult,
} from './selection.js';
export { simpleSubjectName, displaySubjectName, subjectMatches, subjectAttributes, type NameAttribute } from './subject-name.js';
export { readPkcs12, type Pkcs12Result, type Pkcs12Failure } from './pkcs12.js';
export {
  JobState, jobStateName, isFinal, applyCall, applyEvent, retryDelayMs, noProgressExpired, DEFAULT_RETRY_POLICY,
  type JobStateValue, type JobCall, type EngineEvent, type RetryPolicy,
} from './job.js';
export { JobManager, Job, jobProgress, JOB_STATE_CHANNEL, type JobManagerOptions, type JobSnapshot, type JobProgress } from './job-manager.js';
export {
  SIZE_UNKNOWN, ErrorContext, QUARANTINE_DIR,
  type JobError, type JobFile, type JobCertificate, type JobRecord, type JobFileWarning,
} from './job-file.js';
export { runClientCli, JOBS_DIR_ENV, type ClientCliIo } from './cli.js';
