// Extended Protection (HTTP_CHANNEL_BIND_INFO): every hardening level and every flag, as a
// table of (policy, what the client supplied) → accepted or the stable refusal reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applicationData, unavailable, type ChannelBindings } from '../src/cbt/binding.js';
import {
  channelBindInfoProblems,
  checkChannelBinding,
  HttpAuthenticationHardening as H,
  HttpChannelBind as F,
  policyExposes,
  type ChannelBindInfo,
  type SuppliedBinding,
} from '../src/cbt/extended-protection.js';

const SEP = Buffer.from('11'.repeat(32), 'hex');
const EXP = Buffer.from('22'.repeat(32), 'hex');
const OTHER = Buffer.from('33'.repeat(32), 'hex');
const conn: ChannelBindings = {
  'tls-unique': unavailable('tls13', 'TLS 1.3'),
  'tls-server-end-point': { value: SEP },
  'tls-exporter': { value: EXP },
};
const SPN = 'HTTP/www.example.com';

type Expect = 'ok' | `EP_${string}`;
interface Row { name: string; policy: Partial<ChannelBindInfo>; supplied: SuppliedBinding; expect: Expect; bindingChecked?: boolean; serviceNameChecked?: boolean; serviceName?: string }

const policy = (p: Partial<ChannelBindInfo>): ChannelBindInfo => ({ hardening: H.Medium, flags: 0, serviceNames: [], ...p });

const ROWS: Row[] = [
  // Legacy: nothing is checked, even a wrong binding or a foreign service name.
  { name: 'Legacy, nothing supplied', policy: { hardening: H.Legacy }, supplied: {}, expect: 'ok', bindingChecked: false, serviceNameChecked: false },
  { name: 'Legacy, wrong binding', policy: { hardening: H.Legacy }, supplied: { value: OTHER }, expect: 'ok', bindingChecked: false },
  { name: 'Legacy, unbound', policy: { hardening: H.Legacy, serviceNames: [SPN] }, supplied: { value: 'unbound', serviceName: 'HTTP/evil.example' }, expect: 'ok' },

  // Medium: checks what is sent, tolerates what is not.
  { name: 'Medium, no binding (legacy client)', policy: {}, supplied: {}, expect: 'ok', bindingChecked: false },
  { name: 'Medium, right raw binding', policy: {}, supplied: { value: SEP }, expect: 'ok', bindingChecked: true },
  { name: 'Medium, right application-data binding', policy: {}, supplied: { value: applicationData('tls-server-end-point', SEP) }, expect: 'ok', bindingChecked: true },
  { name: 'Medium, wrong binding', policy: {}, supplied: { value: OTHER }, expect: 'EP_CBT_MISMATCH' },
  { name: 'Medium, a truncated binding', policy: {}, supplied: { value: SEP.subarray(0, 31) }, expect: 'EP_CBT_MISMATCH' },
  { name: 'Medium, unbound over TLS', policy: {}, supplied: { value: 'unbound' }, expect: 'EP_CBT_UNBOUND' },
  { name: 'Medium, tls-exporter not accepted by default', policy: {}, supplied: { type: 'tls-exporter', value: EXP }, expect: 'EP_CBT_TYPE' },
  { name: 'Medium, tls-exporter accepted when listed', policy: { bindingTypes: ['tls-server-end-point', 'tls-exporter'] }, supplied: { type: 'tls-exporter', value: EXP }, expect: 'ok', bindingChecked: true },
  { name: 'Medium, tls-exporter value given as end-point', policy: { bindingTypes: ['tls-server-end-point', 'tls-exporter'] }, supplied: { type: 'tls-server-end-point', value: EXP }, expect: 'EP_CBT_MISMATCH' },
  { name: 'Medium, tls-unique undefined on this connection', policy: { bindingTypes: ['tls-unique'] }, supplied: { type: 'tls-unique', value: OTHER }, expect: 'EP_CBT_UNAVAILABLE' },
  { name: 'Medium, service names listed, none sent', policy: { serviceNames: [SPN] }, supplied: { value: SEP }, expect: 'ok', serviceNameChecked: false },
  { name: 'Medium, service name listed and sent (any case)', policy: { serviceNames: [SPN] }, supplied: { value: SEP, serviceName: 'http/WWW.example.com' }, expect: 'ok', serviceNameChecked: true },
  { name: 'Medium, foreign service name', policy: { serviceNames: [SPN] }, supplied: { value: SEP, serviceName: 'HTTP/evil.example' }, expect: 'EP_SERVICE_NAME_MISMATCH' },
  { name: 'Medium, no list: service name not checked', policy: {}, supplied: { value: SEP, serviceName: 'HTTP/anything' }, expect: 'ok', serviceNameChecked: false },

  // Strict: the binding is required, and the service name wherever names are checked.
  { name: 'Strict, no binding', policy: { hardening: H.Strict }, supplied: {}, expect: 'EP_CBT_MISSING' },
  { name: 'Strict, right binding', policy: { hardening: H.Strict }, supplied: { value: SEP }, expect: 'ok', bindingChecked: true },
  { name: 'Strict, wrong binding', policy: { hardening: H.Strict }, supplied: { value: OTHER }, expect: 'EP_CBT_MISMATCH' },
  { name: 'Strict, names listed, none sent', policy: { hardening: H.Strict, serviceNames: [SPN] }, supplied: { value: SEP }, expect: 'EP_SERVICE_NAME_MISSING' },
  { name: 'Strict, names listed and matched', policy: { hardening: H.Strict, serviceNames: [SPN] }, supplied: { value: SEP, serviceName: SPN }, expect: 'ok', bindingChecked: true, serviceNameChecked: true },

  // PROXY (0x1): exact match bypassed, "not unbound" required, service names checked.
  { name: 'PROXY, a binding from the client-proxy channel', policy: { flags: F.PROXY, serviceNames: [SPN] }, supplied: { value: OTHER, serviceName: SPN }, expect: 'ok', bindingChecked: false, serviceNameChecked: true },
  { name: 'PROXY, unbound', policy: { flags: F.PROXY, serviceNames: [SPN] }, supplied: { value: 'unbound', serviceName: SPN }, expect: 'EP_CBT_UNBOUND' },
  { name: 'PROXY, foreign service name', policy: { flags: F.PROXY, serviceNames: [SPN] }, supplied: { value: OTHER, serviceName: 'HTTP/evil.example' }, expect: 'EP_SERVICE_NAME_MISMATCH' },
  { name: 'PROXY, empty list: no name is accepted', policy: { flags: F.PROXY }, supplied: { value: OTHER, serviceName: SPN }, expect: 'EP_SERVICE_NAME_MISMATCH' },
  { name: 'PROXY + Strict, no service name', policy: { hardening: H.Strict, flags: F.PROXY, serviceNames: [SPN] }, supplied: { value: OTHER }, expect: 'EP_SERVICE_NAME_MISSING' },
  { name: 'PROXY + Strict, no binding', policy: { hardening: H.Strict, flags: F.PROXY, serviceNames: [SPN] }, supplied: { serviceName: SPN }, expect: 'EP_CBT_MISSING' },

  // PROXY_COHOSTING (0x20): with PROXY, "unbound" is accepted too.
  { name: 'PROXY|PROXY_COHOSTING, unbound', policy: { flags: F.PROXY | F.PROXY_COHOSTING, serviceNames: [SPN] }, supplied: { value: 'unbound', serviceName: SPN }, expect: 'ok', serviceNameChecked: true },
  { name: 'PROXY|PROXY_COHOSTING still checks the service name', policy: { flags: F.PROXY | F.PROXY_COHOSTING, serviceNames: [SPN] }, supplied: { value: 'unbound', serviceName: 'HTTP/evil.example' }, expect: 'EP_SERVICE_NAME_MISMATCH' },
  { name: 'PROXY_COHOSTING without PROXY is an invalid policy', policy: { flags: F.PROXY_COHOSTING }, supplied: { value: SEP }, expect: 'EP_INVALID_POLICY' },

  // NO_SERVICE_NAME_CHECK (0x2): the service name check always succeeds.
  { name: 'NO_SERVICE_NAME_CHECK, foreign name', policy: { flags: F.NO_SERVICE_NAME_CHECK, serviceNames: [SPN] }, supplied: { value: SEP, serviceName: 'HTTP/evil.example' }, expect: 'ok', serviceNameChecked: false },
  { name: 'PROXY|NO_SERVICE_NAME_CHECK, Strict, no name', policy: { hardening: H.Strict, flags: F.PROXY | F.NO_SERVICE_NAME_CHECK }, supplied: { value: OTHER }, expect: 'ok', serviceNameChecked: false },

  // DOTLESS_SERVICE (0x4): dotless names may be configured only with it.
  { name: 'dotless name without DOTLESS_SERVICE is an invalid policy', policy: { serviceNames: ['HTTP/intranet'] }, supplied: { value: SEP }, expect: 'EP_INVALID_POLICY' },
  { name: 'DOTLESS_SERVICE, dotless name matched', policy: { flags: F.DOTLESS_SERVICE, serviceNames: ['HTTP/intranet'] }, supplied: { value: SEP, serviceName: 'HTTP/INTRANET' }, expect: 'ok', serviceNameChecked: true },

  // SECURE_CHANNEL_TOKEN (0x8) does not change the check (it exposes the token, see below).
  { name: 'SECURE_CHANNEL_TOKEN, right binding', policy: { flags: F.SECURE_CHANNEL_TOKEN }, supplied: { value: SEP }, expect: 'ok', bindingChecked: true },
  { name: 'SECURE_CHANNEL_TOKEN, wrong binding', policy: { flags: F.SECURE_CHANNEL_TOKEN }, supplied: { value: OTHER }, expect: 'EP_CBT_MISMATCH' },

  // CLIENT_SERVICE (0x10): the client's service name is handed back.
  { name: 'CLIENT_SERVICE returns the service name', policy: { flags: F.CLIENT_SERVICE, serviceNames: [SPN] }, supplied: { value: SEP, serviceName: SPN }, expect: 'ok', serviceName: SPN },
  { name: 'without CLIENT_SERVICE no name is returned', policy: { serviceNames: [SPN] }, supplied: { value: SEP, serviceName: SPN }, expect: 'ok', serviceName: undefined },

  // Invalid policies.
  { name: 'unknown flag bit', policy: { flags: 0x40 }, supplied: {}, expect: 'EP_INVALID_POLICY' },
  { name: 'unknown hardening level', policy: { hardening: 3 as never }, supplied: {}, expect: 'EP_INVALID_POLICY' },
  { name: 'empty service name', policy: { serviceNames: [''] }, supplied: {}, expect: 'EP_INVALID_POLICY' },
  { name: 'empty bindingTypes', policy: { bindingTypes: [] }, supplied: {}, expect: 'EP_INVALID_POLICY' },
];

describe('checkChannelBinding', () => {
  for (const row of ROWS) {
    it(row.name, () => {
      const r = checkChannelBinding(policy(row.policy), conn, row.supplied);
      if (row.expect === 'ok') {
        assert.equal(r.ok, true, r.ok ? '' : `${r.reason}: ${r.message}`);
        if (!r.ok) return;
        if (row.bindingChecked !== undefined) assert.equal(r.bindingChecked, row.bindingChecked);
        if (row.serviceNameChecked !== undefined) assert.equal(r.serviceNameChecked, row.serviceNameChecked);
        if ('serviceName' in row) assert.equal(r.serviceName, row.serviceName);
      } else {
        assert.equal(r.ok, false);
        if (r.ok) return;
        assert.equal(r.reason, row.expect);
        assert.ok(r.message.length > 0);
      }
    });
  }

  it('covers every hardening level and every flag', () => {
    for (const level of Object.values(H)) assert.ok(ROWS.some((r) => (r.policy.hardening ?? H.Medium) === level && r.expect !== 'EP_INVALID_POLICY'), `level ${level}`);
    for (const flag of Object.values(F)) assert.ok(ROWS.some((r) => ((r.policy.flags ?? 0) & flag) !== 0), `flag 0x${flag.toString(16)}`);
  });
});

describe('policy helpers', () => {
  it('values are those of http.h', () => {
    assert.deepEqual({ ...H }, { Legacy: 0, Medium: 1, Strict: 2 });
    assert.deepEqual({ ...F }, { PROXY: 0x1, NO_SERVICE_NAME_CHECK: 0x2, DOTLESS_SERVICE: 0x4, SECURE_CHANNEL_TOKEN: 0x8, CLIENT_SERVICE: 0x10, PROXY_COHOSTING: 0x20 });
  });
  it('policyExposes reads SECURE_CHANNEL_TOKEN and CLIENT_SERVICE', () => {
    assert.deepEqual(policyExposes(policy({ flags: F.SECURE_CHANNEL_TOKEN })), { token: true, serviceName: false });
    assert.deepEqual(policyExposes(policy({ flags: F.CLIENT_SERVICE })), { token: false, serviceName: true });
  });
  it('channelBindInfoProblems lists every problem', () => {
    assert.deepEqual(channelBindInfoProblems(policy({})), []);
    assert.equal(channelBindInfoProblems(policy({ flags: F.PROXY_COHOSTING | 0x80, serviceNames: ['HTTP/x'] })).length, 3);
  });
});
