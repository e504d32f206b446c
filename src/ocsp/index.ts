// The OCSP part of certbound's public API: stapling (handle API, stapler), the dev responder,
// and client-certificate revocation checks. See docs/ocsp.md.
export {
  openServerOcspResponse,
  getServerOcspResponseContext,
  addRefServerOcspResponse,
  closeServerOcspResponse,
  addRefServerOcspResponseContext,
  freeServerOcspResponseContext,
  CERT_SERVER_OCSP_RESPONSE_ASYNC_FLAG,
  OcspHandleStatus,
  ServerOcspResponseHandle,
  type OcspHandleStatusValue,
  type OpenServerOcspResponseOptions,
  type OpenResult,
  type ServerOcspResponseContext,
  type OcspUpdate,
  type OcspStapleState,
  type OcspTimers,
  type ChainInput,
} from './handle.js';
export {
  DEFAULT_OCSP_SETTINGS,
  DEFAULT_RETRY_POLICY as DEFAULT_OCSP_RETRY_POLICY,
  nextPrefetch,
  retryDelay,
  validLongEnough,
  resolveSettings,
  type OcspSettings,
  type RetryPolicy as OcspRetryPolicy,
  type PrefetchPlan,
  type PrefetchRule,
} from './schedule.js';
export type { StapleReason } from './handle.js';
export { createStapler, OcspStapler, OCSP_UPDATE_CHANNEL, type StaplerOptions, type OcspMetrics } from './stapler.js';
export { FileStapleStorage, type StapleStorage, type StoredStaple, type StorageRefusal } from './storage.js';
export { verifyOcspResponse, DEFAULT_SKEW_MS, type OcspRefusal, type VerifiedOcspResponse, type ValidationResult, type CertStatusName } from './validate.js';
export { buildOcspRequest, ocspUrlOf } from './request.js';
export { fetchOcsp, limitConcurrency, type OcspFetcher, type FetchResult, type FetchFailure } from './fetch.js';
export { startDevOcspResponder, issueResponderCertificate, buildOcspResponse, errorOcspResponse, buildCrl, type DevOcspResponder, type DevOcspResponderOptions } from './responder.js';
export { startDevPkiResponder, devStaplingSettings, DEV_OCSP_RESPONDER_FILES, DEV_OCSP_VALIDITY_ENV } from './dev-responder.js';
export { createRevocationChecker, RevocationChecker, CertCheckMode, crlUrlsOf, type RevocationOptions, type RevocationResult } from './revocation.js';
export { OCSP_OFF_SUMMARY, type ServerOcspOptions, type OcspStapleSummary, type StapleSummaryReason } from './server-stapling.js';
