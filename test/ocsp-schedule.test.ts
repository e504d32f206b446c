// The prefetch schedule and the retry policy: pure functions, every branch in a table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  DEFAULT_OCSP_SETTINGS, DEFAULT_RETRY_POLICY, nextPrefetch, resolveRetryPolicy, resolveSettings, retryDelay, validLongEnough,
  type PrefetchRule,
} from '../src/ocsp/schedule.js';
import { devStaplingSettings } from '../src/ocsp/dev-responder.js';

const S = 1000;
const M = 60 * S;
const H = 60 * M;
const D = 24 * H;
const T0 = Date.UTC(2026, 0, 1); // thisUpdate of the examples

test('defaults are the seed\'s (wincrypt.h) values', () => {
  assert.deepEqual({ ...DEFAULT_OCSP_SETTINGS }, {
    SrvOcspRespMinValiditySeconds: 600,
    SrvOcspRespUrlRetrievalTimeoutMilliseconds: 15000,
    SrvOcspRespMaxBeforeNextUpdateSeconds: 14400,
    SrvOcspRespMinBeforeNextUpdateSeconds: 120,
    SrvOcspRespMinAfterNextUpdateSeconds: 60,
  });
  assert.ok(Object.isFrozen(DEFAULT_OCSP_SETTINGS));
});

// [name, now − thisUpdate, validity (nextUpdate − thisUpdate), expected at − thisUpdate, rule]
const rows: Array<[string, number, number, number, PrefetchRule]> = [
  // 7-day response: the seed's rules alone decide.
  ['fresh 7-day response waits for NextUpdate − 4 h', 0, 7 * D, 7 * D - 4 * H, 'before-window'],
  ['one second before the window still waits', 7 * D - 4 * H - S, 7 * D, 7 * D - 4 * H, 'before-window'],
  ['at NextUpdate − 4 h exactly: prefetch now', 7 * D - 4 * H, 7 * D, 7 * D - 4 * H, 'in-window'],
  ['inside the window: prefetch now', 7 * D - 1 * H, 7 * D, 7 * D - 1 * H, 'in-window'],
  ['one second before NextUpdate − 2 min: still now', 7 * D - 2 * M - S, 7 * D, 7 * D - 2 * M - S, 'in-window'],
  ['at NextUpdate − 2 min: wait until NextUpdate + 1 min', 7 * D - 2 * M, 7 * D, 7 * D + M, 'after-next-update'],
  ['between NextUpdate − 2 min and NextUpdate: NextUpdate + 1 min', 7 * D - 30 * S, 7 * D, 7 * D + M, 'after-next-update'],
  ['at NextUpdate: still NextUpdate + 1 min', 7 * D, 7 * D, 7 * D + M, 'after-next-update'],
  ['at NextUpdate + 1 min: prefetch now', 7 * D + M, 7 * D, 7 * D + M, 'overdue'],
  ['long after NextUpdate: now', 9 * D, 7 * D, 9 * D, 'overdue'],
  // Short validity (≤ 8 h): the half-life floor stops a refetch loop.
  ['1 h response, fresh: wait half its life', 0, 1 * H, 30 * M, 'half-life'],
  ['1 h response past half-life: now', 31 * M, 1 * H, 31 * M, 'in-window'],
  ['4 min response: half-life meets NextUpdate − MinBefore', 0, 4 * M, 2 * M, 'half-life'],
  ['3 min response at 0: half-life (1.5 min) beyond lateStart (1 min) is capped', 0, 3 * M, 1 * M, 'half-life'],
  ['8 h response: half-life equals the window start', 4 * H, 8 * H, 4 * H, 'in-window'],
  ['12 h response: the window (8 h) comes after half-life (6 h)', 5 * H, 12 * H, 8 * H, 'before-window'],
];

for (const [name, nowOff, validity, atOff, rule] of rows) {
  test(`nextPrefetch: ${name}`, () => {
    const plan = nextPrefetch(T0 + nowOff, T0, T0 + validity, DEFAULT_OCSP_SETTINGS);
    assert.equal(plan.rule, rule);
    assert.equal(plan.at - T0, atOff);
    assert.equal(plan.delayMs, atOff - nowOff);
    assert.ok(plan.delayMs >= 0, 'never in the past');
  });
}

test('nextPrefetch follows configured settings', () => {
  const s = resolveSettings({ SrvOcspRespMaxBeforeNextUpdateSeconds: 60, SrvOcspRespMinBeforeNextUpdateSeconds: 10, SrvOcspRespMinAfterNextUpdateSeconds: 5 });
  assert.deepEqual(nextPrefetch(T0, T0 - D, T0 + 2 * M, s), { at: T0 + M, delayMs: M, rule: 'before-window' });
  assert.deepEqual(nextPrefetch(T0 + 115 * S, T0 - D, T0 + 2 * M, s), { at: T0 + 125 * S, delayMs: 10 * S, rule: 'after-next-update' });
});

test('validLongEnough: SrvOcspRespMinValiditySeconds', () => {
  assert.equal(validLongEnough(T0, T0 + 10 * M, DEFAULT_OCSP_SETTINGS), true);
  assert.equal(validLongEnough(T0, T0 + 10 * M - 1, DEFAULT_OCSP_SETTINGS), false);
  assert.equal(validLongEnough(T0, T0 - 1, DEFAULT_OCSP_SETTINGS), false);
});

test('resolveSettings rejects bad values, keeps given ones', () => {
  const invalid = (name: string) => ({ code: 'CB_ERR_INVALID_OPTION', message: new RegExp(`^Invalid option ${name.replace('.', '\\.')}: `) });
  assert.throws(() => resolveSettings({ SrvOcspRespMinValiditySeconds: -1 }), invalid('settings.SrvOcspRespMinValiditySeconds'));
  assert.throws(() => resolveSettings({ SrvOcspRespMinAfterNextUpdateSeconds: Number.NaN }), invalid('settings.SrvOcspRespMinAfterNextUpdateSeconds'));
  assert.throws(() => resolveSettings({ SrvOcspRespUrlRetrievalTimeoutMilliseconds: 0 }), invalid('settings.SrvOcspRespUrlRetrievalTimeoutMilliseconds'));
  assert.equal(resolveSettings({ SrvOcspRespMinValiditySeconds: 5 }).SrvOcspRespMinValiditySeconds, 5);
  assert.throws(() => resolveRetryPolicy({ floorMs: 0 }), invalid('retry'));
  assert.throws(() => resolveRetryPolicy({ initialMs: 10, maxMs: 5 }), invalid('retry'));
});

// [name, attempt, now, servableUntil, expected delay]
const retryRows: Array<[string, number, number, number | undefined, number]> = [
  ['first retry, nothing served: initial', 1, T0, undefined, 60 * S],
  ['second retry doubles', 2, T0, undefined, 120 * S],
  ['fifth retry', 5, T0, undefined, 16 * M],
  ['capped at max', 20, T0, undefined, H],
  ['absurd attempt count still capped', 1e9, T0, undefined, H],
  ['attempt 0 counts as 1', 0, T0, undefined, 60 * S],
  ['staple served for long: backoff unchanged', 3, T0, T0 + 10 * H, 4 * M],
  ['staple lapses soon: half the time left', 6, T0, T0 + 20 * M, 10 * M],
  ['staple lapses very soon: never below the floor', 6, T0, T0 + 4 * S, 5 * S],
  ['staple already lapsed: plain backoff', 2, T0, T0 - S, 120 * S],
];
for (const [name, attempt, now, until, expected] of retryRows) {
  test(`retryDelay: ${name}`, () => {
    assert.equal(retryDelay(attempt, now, until, DEFAULT_RETRY_POLICY), expected);
  });
}

test('retry policy: retries before a served staple lapses, none closer than the floor', () => {
  // Simulate failures from the window start of a 1 h staple until it lapses.
  const settings = resolveSettings({ SrvOcspRespMinValiditySeconds: 60 });
  const nextUpdate = T0 + H;
  const servableUntil = nextUpdate - settings.SrvOcspRespMinValiditySeconds * S;
  let now = T0 + 30 * M;
  const times: number[] = [];
  for (let attempt = 1; now < servableUntil && attempt < 100; attempt++) {
    now += retryDelay(attempt, now, servableUntil, DEFAULT_RETRY_POLICY);
    times.push(now);
  }
  const beforeLapse = times.filter((t) => t < servableUntil);
  assert.ok(beforeLapse.length >= 4, `several retries before the staple lapses, got ${beforeLapse.length}`);
  for (let i = 1; i < times.length; i++) assert.ok((times[i] as number) - (times[i - 1] as number) >= DEFAULT_RETRY_POLICY.floorMs);
  assert.ok(times.length < 30, 'bounded');
});

test('dev stapling settings: for any short dev validity the refresh comes before the staple stops being served', () => {
  for (const minutes of [0.1, 0.5, 1, 2, 5, 10, 19, 20, 29, 30, 60, 24 * 60]) {
    const s = resolveSettings(devStaplingSettings(minutes));
    const validity = minutes * 60 * S;
    const plan = nextPrefetch(T0, T0, T0 + validity, s);
    const servableUntil = T0 + validity - s.SrvOcspRespMinValiditySeconds * S;
    assert.ok(validLongEnough(T0, T0 + validity, s), `${minutes} min: served when fresh`);
    assert.ok(plan.at < servableUntil, `${minutes} min: refresh at +${plan.at - T0} ms before the staple lapses at +${servableUntil - T0} ms`);
    assert.ok(plan.delayMs > 0, `${minutes} min: no immediate refetch`);
  }
  assert.deepEqual(devStaplingSettings(30), {}, 'defaults from 30 minutes on');
  assert.deepEqual(devStaplingSettings(60), {});
});

test('docs/ocsp.md states the same defaults as the code', () => {
  const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'ocsp.md'), 'utf8');
  for (const [name, value] of Object.entries(DEFAULT_OCSP_SETTINGS)) {
    const row = new RegExp(`^\\| \`${name}\` \\| (\\d+)`, 'm').exec(doc);
    assert.ok(row, `${name} has a row in the settings table`);
    assert.equal(Number(row[1]), value, name);
  }
  const retry = /`min\(initialMs · 2\^\(n−1\), maxMs\)` \((\d+) s doubling to (\d+) h\)[\s\S]*?never below `floorMs` \((\d+) s\)/.exec(doc);
  assert.ok(retry, 'the retry policy is described');
  assert.deepEqual([Number(retry[1]) * 1000, Number(retry[2]) * 3_600_000, Number(retry[3]) * 1000], [DEFAULT_RETRY_POLICY.initialMs, DEFAULT_RETRY_POLICY.maxMs, DEFAULT_RETRY_POLICY.floorMs]);
});
