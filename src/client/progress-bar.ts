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

/** "[#########-----------]  45%  1.0 MiB / 2.2 MiB  files 0/1  TRANSFERRING" (width = bar cells). */
export function renderProgressBar(p: JobProgress, stateName: string, width = 30): string {
  const pct = percent(p);
  const filled = pct === undefined ? 0 : Math.round((pct / 100) * width);
  const bar = pct === undefined ? `[${'?'.repeat(width)}]` : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
  const pctText = pct === undefined ? '  ?%' : `${String(pct).padStart(3)}%`;
  const size = p.bytesTotal === SIZE_UNKNOWN ? formatBytes(p.bytesTransferred) : `${formatBytes(p.bytesTransferred)} / ${formatBytes(p.bytesTotal)}`;
  return `${bar} ${pctText}  ${size}  files ${p.filesTransferred}/${p.filesTotal}  ${stateName}`;
}

/** One line for logs: "TRANSFERRING 45% 1.0 MiB/2.2 MiB files 0/1". */
export function renderProgressLine(p: JobProgress, stateName: string): string {
  const pct = percent(p);
  const size = p.bytesTotal === SIZE_UNKNOWN ? formatBytes(p.bytesTransferred) : `${formatBytes(p.bytesTransferred)}/${formatBytes(p.bytesTotal)}`;
  return `${stateName} ${pct === undefined ? '?' : pct}% ${size} files ${p.filesTransferred}/${p.filesTotal}`;
}
