// The transfer job state machine, as BITS's (BG_JOB_STATE, bits.h). Calls (Resume, Suspend,
// Cancel, Complete, AddFile, the certificate setters) and engine events (connect, data,
// errors, retries) are pure functions of the current state; the manager applies them.
import { DEFAULTS } from '../defaults.js';
import { HResult } from './hresult.js';

/** BG_JOB_STATE (bits.h). */
export const JobState = Object.freeze({
  QUEUED: 0,
  CONNECTING: 1,
  TRANSFERRING: 2,
  SUSPENDED: 3,
  ERROR: 4,
  TRANSIENT_ERROR: 5,
  TRANSFERRED: 6,
  ACKNOWLEDGED: 7,
  CANCELLED: 8,
} as const);
export type JobStateValue = (typeof JobState)[keyof typeof JobState];

/** 'TRANSIENT_ERROR' for 5, etc. */
export function jobStateName(state: number): string {
  return Object.entries(JobState).find(([, v]) => v === state)?.[0] ?? `UNKNOWN(${state})`;
}

/** CANCELLED and ACKNOWLEDGED are final: the job is read-only (BG_E_INVALID_STATE for every change). */
export function isFinal(state: JobStateValue): boolean {
  return state === JobState.CANCELLED || state === JobState.ACKNOWLEDGED;
}

/** States in which the engine is working on the job (a call that stops it must abort the transfer). */
export function isActive(state: JobStateValue): boolean {
  return state === JobState.CONNECTING || state === JobState.TRANSFERRING;
}

export type JobCall = 'resume' | 'suspend' | 'cancel' | 'complete' | 'addFile' | 'setOption';

export interface CallContext {
  /** Number of files in the job. */
  readonly files: number;
  /** True when every file has been transferred. */
  readonly allTransferred: boolean;
}

export interface CallOutcome {
  readonly hr: number;
  /** The state after the call (unchanged on failure). */
  readonly state: JobStateValue;
}

/**
 * What a caller's method does to the job, per the BITS reference pages:
 * - every call fails with BG_E_INVALID_STATE once the job is CANCELLED or ACKNOWLEDGED;
 * - Resume needs at least one file (BG_E_EMPTY); from SUSPENDED, ERROR or TRANSIENT_ERROR it
 *   queues the job (or, when every file is already there, returns it to TRANSFERRED);
 * - Suspend pauses any live job (a new job starts SUSPENDED);
 * - Cancel ends it; Complete acknowledges it, BG_S_PARTIAL_COMPLETE when files were missing;
 * - AddFile to a TRANSFERRED job queues it again.
 */
export function applyCall(state: JobStateValue, call: JobCall, ctx: CallContext): CallOutcome {
  if (isFinal(state)) return { hr: HResult.BG_E_INVALID_STATE, state };
  switch (call) {
    case 'resume':
      if (ctx.files === 0) return { hr: HResult.BG_E_EMPTY, state };
      if (state === JobState.SUSPENDED || state === JobState.ERROR || state === JobState.TRANSIENT_ERROR) {
        return { hr: HResult.S_OK, state: ctx.allTransferred ? JobState.TRANSFERRED : JobState.QUEUED };
      }
      return { hr: HResult.S_OK, state };
    case 'suspend':
      return { hr: HResult.S_OK, state: JobState.SUSPENDED };
    case 'cancel':
      return { hr: HResult.S_OK, state: JobState.CANCELLED };
    case 'complete':
      return { hr: ctx.allTransferred && ctx.files > 0 ? HResult.S_OK : HResult.BG_S_PARTIAL_COMPLETE, state: JobState.ACKNOWLEDGED };
    case 'addFile':
      return { hr: HResult.S_OK, state: state === JobState.TRANSFERRED ? JobState.QUEUED : state };
    case 'setOption':
      return { hr: HResult.S_OK, state };
  }
}

/** What the transfer engine reports. */
export type EngineEvent = 'start' | 'connected' | 'transientError' | 'fatalError' | 'retry' | 'noProgressTimeout' | 'allTransferred' | 'restart';

/**
 * The engine's transitions. An event that does not fit the state (e.g. data arriving for a job
 * a caller just suspended) changes nothing: the caller's call wins.
 */
export function applyEvent(state: JobStateValue, event: EngineEvent): JobStateValue {
  switch (event) {
    case 'start':
      return state === JobState.QUEUED ? JobState.CONNECTING : state;
    case 'connected':
      return state === JobState.CONNECTING ? JobState.TRANSFERRING : state;
    case 'transientError':
      return isActive(state) ? JobState.TRANSIENT_ERROR : state;
    case 'fatalError':
      return isActive(state) || state === JobState.TRANSIENT_ERROR ? JobState.ERROR : state;
    case 'retry':
      return state === JobState.TRANSIENT_ERROR ? JobState.QUEUED : state;
    case 'noProgressTimeout':
      return state === JobState.TRANSIENT_ERROR ? JobState.ERROR : state;
    case 'allTransferred':
      return isActive(state) || state === JobState.QUEUED ? JobState.TRANSFERRED : state;
    case 'restart':
      // A process restart interrupts the transfer; BITS puts such jobs back in the queue.
      return isActive(state) ? JobState.QUEUED : state;
  }
}

/** Retry timing: BITS's minimum retry delay and no-progress timeout, with exponential backoff on top. */
export interface RetryPolicy {
  /** First delay after a transient error, in ms. Default (BITS): 600 000 (10 min). */
  readonly minRetryDelayMs: number;
  /** Upper bound of the backoff, in ms. Default: 3 600 000 (1 h). */
  readonly maxRetryDelayMs: number;
  /** How long transient errors may last without progress before the job goes to ERROR, in ms. Default (BITS): 1 209 600 000 (14 days). */
  readonly noProgressTimeoutMs: number;
}

/** DEFAULTS.jobRetry. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = DEFAULTS.jobRetry;

/** The delay before retry number `attempt` (1-based): min · 2^(attempt−1), capped at max. */
export function retryDelayMs(attempt: number, policy: RetryPolicy): number {
  const n = Math.max(1, Math.floor(attempt));
  return Math.min(policy.maxRetryDelayMs, policy.minRetryDelayMs * 2 ** Math.min(n - 1, 30));
}

/**
 * Whether a job in TRANSIENT_ERROR has run out of time: `since` is when the first transient
 * error without later progress happened. A timeout of 0 sends every error straight to ERROR
 * (SetNoProgressTimeout(0)).
 */
export function noProgressExpired(since: number, now: number, policy: RetryPolicy): boolean {
  return now - since >= policy.noProgressTimeoutMs;
}
