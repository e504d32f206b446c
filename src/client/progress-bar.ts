// How `certbound job watch` draws a transfer: a bar on a terminal, plain lines otherwise.
// Pure functions of the job's progress; the CLI decides where and when to print.
import { SIZE_UNKNOWN } from './job-file.js';
import type { JobProgress } from './job-manager.js';

/** 1536 → "1.5 KiB" (IEC units, one decimal from KiB up). */
export function formatBytes(n: number): string {
  if (n < 0) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** Percentage of bytes, or undefined while the total size is unknown. */
export function percent(p: JobProgress): number | undefined {
  if (p.bytesTotal === SIZE_UNKNOWN || p.bytesTotal < 0) return undefined;
  if (p.bytesTotal === 0) return p.filesTotal > 0 && p.filesTransferred === p.filesTotal ? 100 : 0;
  return Math.min(100, Math.floor((p.bytesTransferred / p.bytesTotal) * 100));
}

/** One reading of the bytes transferred: `t` in ms (any clock), `bytes` so far. */
export interface ProgressSample { readonly t: number; readonly bytes: number }

/**
 * Bytes per second between the first and the last sample (oldest first), or undefined until
 * they span at least `minSpanMs` (a rate over a few ms says nothing). Bytes that went back (a
 * transfer restarted from 0) give no rate either.
 */
export function rateOf(samples: readonly ProgressSample[], minSpanMs = 500): number | undefined {
  const first = samples[0];
  const last = samples[samples.length - 1];
  if (!first || !last || last.t - first.t < minSpanMs || last.bytes < first.bytes) return undefined;
  return ((last.bytes - first.bytes) * 1000) / (last.t - first.t);
}

/** Whole seconds as "0:07", "1:23", "1:02:03"; more than 99 hours as ">99h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.ceil(seconds));
  if (s > 99 * 3600) return '>99h';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/**
 * "1.5 KiB/s ETA 0:02": the rate (undefined while not measured: empty text) and the time left
 * for `bytesLeft` at that rate; no ETA when the size is unknown (undefined), "ETA ?" when
 * nothing moves (a rate of 0).
 */
export function formatRateEta(bytesPerSecond: number | undefined, bytesLeft: number | undefined): string {
  if (bytesPerSecond === undefined || !Number.isFinite(bytesPerSecond) || bytesPerSecond < 0) return '';
  const rate = `${formatBytes(Math.round(bytesPerSecond))}/s`;
  if (bytesLeft === undefined || bytesLeft < 0) return rate;
  return `${rate} ETA ${bytesPerSecond === 0 ? (bytesLeft === 0 ? '0:00' : '?') : formatDuration(bytesLeft / bytesPerSecond)}`;
}

/** The bytes still to come, or undefined while the total size is unknown. */
export function bytesLeft(p: JobProgress): number | undefined {
  return p.bytesTotal === SIZE_UNKNOWN || p.bytesTotal < 0 ? undefined : Math.max(0, p.bytesTotal - p.bytesTransferred);
}

/** "[#########-----------]  45%  1.0 MiB / 2.2 MiB  files 0/1  TRANSFERRING  1.5 MiB/s ETA 0:01" (width = bar cells; `rate` from formatRateEta, may be empty). */
export function renderProgressBar(p: JobProgress, stateName: string, width = 30, rate = ''): string {
  const pct = percent(p);
  const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
  const bar = pct === undefined ? `[${'?'.repeat(width)}]` : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const pctText = pct === undefined ? '  ?%' : `${String(pct).padStart(3)}%`;
  const size = p.bytesTotal === SIZE_UNKNOWN ? formatBytes(p.bytesTransferred) : `${formatBytes(p.bytesTransferred)} / ${formatBytes(p.bytesTotal)}`;
  return `${bar} ${pctText}  ${size}  files ${p.filesTransferred}/${p.filesTotal}  ${stateName}${rate ? `  ${rate}` : ''}`;
}

/** One line for logs: "TRANSFERRING 45% 1.0 MiB/2.2 MiB files 0/1 1.5 MiB/s ETA 0:01" (`rate` may be empty). */
export function renderProgressLine(p: JobProgress, stateName: string, rate = ''): string {
  const pct = percent(p);
  const size = p.bytesTotal === SIZE_UNKNOWN ? formatBytes(p.bytesTransferred) : `${formatBytes(p.bytesTransferred)}/${formatBytes(p.bytesTotal)}`;
  return `${stateName} ${pct === undefined ? '?' : pct}% ${size} files ${p.filesTransferred}/${p.filesTotal}${rate ? ` ${rate}` : ''}`;
}
