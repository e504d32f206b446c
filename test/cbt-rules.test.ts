// The pure rules of src/cbt, table by table: the RFC 5929 hash choice, the session-DER EMS
// reader, tls-unique and tls-exporter definedness, the application-data form, and the
// HTTP_REQUEST_CHANNEL_BIND_STATUS buffer rules of receiveClientCertificate flags 0x1.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import * as asn1js from 'asn1js';
import { expectTypeOf } from 'expect-type';
import { applicationData, bindingHex, tokenBytes, unavailable, type ChannelBindings } from '../src/cbt/binding.js';
import {
  channelBindStatus, CHANNEL_BIND_STATUS_FIXED_SIZE, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, SECURE_CHANNEL_TOKEN_DEFAULTS, secureChannelToken, type HttpRequestChannelBindStatus,
} from '../src/cbt/channel-bind-status.js';
import { exporterInput } from '../src/cbt/exporter.js';
import { sessionFacts } from '../src/cbt/extended-master-secret.js';
import type { HandshakeFacts } from '../src/cbt/handshake-facts.js';
import { endPointHash, OID } from '../src/cbt/server-end-point.js';
import { tlsUnique } from '../src/cbt/tls-unique.js';
import * as receive from '../src/server/receive.js';
import { Win32 } from '../src/status.js';

describe('endPointHash (RFC 5929 section 4.1)', () => {
  const table: [string, string, Parameters<typeof endPointHash>[1], string | undefined, string?][] = [
    ['md5WithRSA → SHA-256', OID.md5WithRSAEncryption, undefined, 'sha256'],
    ['sha1WithRSA → SHA-256', OID.sha1WithRSAEncryption, undefined, 'sha256'],
    ['ecdsa-with-SHA1 → SHA-256', OID.ecdsaWithSHA1, undefined, 'sha256'],
    ['dsa-with-sha1 → SHA-256', OID.dsaWithSHA1, undefined, 'sha256'],
    ['sha224WithRSA', OID.sha224WithRSAEncryption, undefined, 'sha224'],
    ['sha256WithRSA', OID.sha256WithRSAEncryption, undefined, 'sha256'],
    ['sha384WithRSA', OID.sha384WithRSAEncryption, undefined, 'sha384'],
    ['sha512WithRSA', OID.sha512WithRSAEncryption, undefined, 'sha512'],
    ['ecdsa-with-SHA256', OID.ecdsaWithSHA256, undefined, 'sha256'],
    ['ecdsa-with-SHA384', OID.ecdsaWithSHA384, undefined, 'sha384'],
    ['ecdsa-with-SHA512', OID.ecdsaWithSHA512, undefined, 'sha512'],
    ['RSA with SHA3-256', OID.rsaWithSHA3_256, undefined, 'sha3-256'],
    ['PSS defaults (SHA-1/MGF1-SHA-1) → SHA-256', OID.rsassaPss, undefined, 'sha256'],
    ['PSS SHA-256/MGF1-SHA-256', OID.rsassaPss, { hashOid: OID.sha256, mgf1HashOid: OID.sha256 }, 'sha256'],
    ['PSS SHA-384/MGF1-SHA-384', OID.rsassaPss, { hashOid: OID.sha384, mgf1HashOid: OID.sha384 }, 'sha384'],
    ['PSS SHA-512/MGF1-SHA-512', OID.rsassaPss, { hashOid: OID.sha512, mgf1HashOid: OID.sha512 }, 'sha512'],
    ['PSS SHA-384/MGF1-SHA-256: two hashes', OID.rsassaPss, { hashOid: OID.sha384, mgf1HashOid: OID.sha256 }, undefined, 'no-single-hash'],
    ['PSS SHA-384 with MGF1 default SHA-1: two hashes', OID.rsassaPss, { hashOid: OID.sha384 }, undefined, 'no-single-hash'],
    ['PSS with unknown hash', OID.rsassaPss, { hashOid: '1.2.3.4', mgf1HashOid: '1.2.3.4' }, undefined, 'unknown-signature-algorithm'],
    ['PSS with unknown mask generation', OID.rsassaPss, { hashOid: OID.sha256, mgf1HashOid: OID.sha256, maskGenOid: '1.2.3' }, undefined, 'unknown-signature-algorithm'],
    ['Ed25519', OID.ed25519, undefined, undefined, 'no-single-hash'],
    ['Ed448', OID.ed448, undefined, undefined, 'no-single-hash'],
    ['unknown OID', '1.2.3.4.5', undefined, undefined, 'unknown-signature-algorithm'],
  ];
  for (const [name, oid, pss, hash, reason] of table) {
    it(name, () => {
      const choice = endPointHash(oid, pss);
      assert.equal(choice.hash, hash);
      assert.equal(choice.reason, reason);
      if (reason) assert.ok(choice.message && choice.message.length > 0);
    });
  }
});

/** An SSL_SESSION_ASN1-shaped DER built with asn1js (version, ssl_version, cipher, ids, optional [13] flags). */
function sessionDer(opts: { version?: number; sslVersion?: number; flags?: number | 'garbage'; extra?: boolean }): Buffer {
  const members: asn1js.AsnType[] = [
    new asn1js.Integer({ value: opts.version ?? 1 }),
    new asn1js.Integer({ value: opts.sslVersion ?? 0x0303 }),
    new asn1js.OctetString({ valueHex: new Uint8Array([0xc0, 0x2b]) }),
    new asn1js.OctetString({ valueHex: new Uint8Array(32) }),
    new asn1js.OctetString({ valueHex: new Uint8Array(48) }),
    new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 1 }, value: [new asn1js.Integer({ value: 1700000000 })] }),
  ];
  if (opts.flags !== undefined) {
    const inner = opts.flags === 'garbage' ? new asn1js.OctetString({ valueHex: new Uint8Array([1]) }) : new asn1js.Integer({ value: opts.flags });
    members.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 13 }, value: [inner] }));
  }
  if (opts.extra) members.push(new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: 14 }, value: [new asn1js.Integer({ value: 7 })] }));
  return Buffer.from(new asn1js.Sequence({ value: members }).toBER());
}

describe('sessionFacts: SSL_SESS_FLAG_EXTMS from the session DER', () => {
  const table: [string, Buffer | undefined, { protocolVersion: number; extendedMasterSecret: boolean } | undefined][] = [
    ['flags 1 (EMS)', sessionDer({ flags: 1, extra: true }), { protocolVersion: 0x0303, extendedMasterSecret: true }],
    ['flags 3 (EMS and another bit)', sessionDer({ flags: 3 }), { protocolVersion: 0x0303, extendedMasterSecret: true }],
    ['flags 2 (no EMS bit)', sessionDer({ flags: 2 }), { protocolVersion: 0x0303, extendedMasterSecret: false }],
    ['no flags member (zero, omitted)', sessionDer({}), { protocolVersion: 0x0303, extendedMasterSecret: false }],
    ['TLS 1.3 session', sessionDer({ sslVersion: 0x0304, flags: 1 }), { protocolVersion: 0x0304, extendedMasterSecret: true }],
    ['another encoding version', sessionDer({ version: 2, flags: 1 }), undefined],
    ['flags not an INTEGER', sessionDer({ flags: 'garbage' }), undefined],
    ['garbage', Buffer.from('not der at all'), undefined],
    ['truncated', sessionDer({ flags: 1 }).subarray(0, 20), undefined],
    ['empty', Buffer.alloc(0), undefined],
    ['absent', undefined, undefined],
  ];
  for (const [name, der, expected] of table) {
    it(name, () => assert.deepEqual(sessionFacts(der), expected));
  }
});

const CLIENT_FIN = Buffer.from('c1c1c1c1c1c1c1c1c1c1c1c1', 'hex');
const SERVER_FIN = Buffer.from('5e5e5e5e5e5e5e5e5e5e5e5e', 'hex');
function facts(over: Partial<HandshakeFacts>): HandshakeFacts {
  const side = over.side ?? 'server';
  return {
    side,
    protocol: 'TLSv1.2',
    sessionReused: false,
    finished: side === 'server' ? SERVER_FIN : CLIENT_FIN,
    peerFinished: side === 'server' ? CLIENT_FIN : SERVER_FIN,
    session: { protocolVersion: 0x0303, extendedMasterSecret: true },
    renegotiationDisabled: false,
    ...over,
  };
}

describe('tlsUnique rule', () => {
  const table: [string, Partial<HandshakeFacts>, Buffer | undefined, string?][] = [
    ['server, full handshake: client Finished', { side: 'server' }, CLIENT_FIN],
    ['client, full handshake: client Finished', { side: 'client' }, CLIENT_FIN],
    ['server, resumed: server Finished', { side: 'server', sessionReused: true }, SERVER_FIN],
    ['client, resumed: server Finished', { side: 'client', sessionReused: true }, SERVER_FIN],
    ['TLS 1.3', { protocol: 'TLSv1.3' }, undefined, 'tls13'],
    ['no handshake', { protocol: null }, undefined, 'no-handshake'],
    ['no EMS', { session: { protocolVersion: 0x0303, extendedMasterSecret: false } }, undefined, 'no-extended-master-secret'],
    ['no EMS on resumption', { sessionReused: true, session: { protocolVersion: 0x0303, extendedMasterSecret: false } }, undefined, 'no-extended-master-secret'],
    ['session unreadable', { session: undefined }, undefined, 'session-unknown'],
    ['Finished missing', { peerFinished: undefined }, undefined, 'no-handshake'],
    ['unknown protocol', { protocol: 'SSLv3' }, undefined, 'unsupported-protocol'],
  ];
  for (const [name, over, value, reason] of table) {
    it(name, () => {
      const r = tlsUnique(facts(over));
      assert.deepEqual(r.value, value);
      assert.equal(r.reason, reason);
    });
  }
});

describe('exporterInput rule (RFC 9266)', () => {
  const table: [string, Partial<HandshakeFacts>, 'empty' | 'none' | undefined, 'empty' | 'none' | string][] = [
    ['TLS 1.3: empty context', { protocol: 'TLSv1.3', session: undefined }, undefined, 'empty'],
    ['TLS 1.3 ignores the TLS 1.2 option', { protocol: 'TLSv1.3', session: undefined }, 'none', 'empty'],
    ['TLS 1.2, EMS, no renegotiation: empty by default', { renegotiationDisabled: true }, undefined, 'empty'],
    ['TLS 1.2, EMS, no renegotiation: none on request', { renegotiationDisabled: true }, 'none', 'none'],
    ['TLS 1.2 with renegotiation possible', {}, undefined, 'renegotiation-possible'],
    ['TLS 1.2 without EMS', { renegotiationDisabled: true, session: { protocolVersion: 0x0303, extendedMasterSecret: false } }, undefined, 'no-extended-master-secret'],
    ['TLS 1.2 session unreadable', { renegotiationDisabled: true, session: undefined }, undefined, 'session-unknown'],
    ['TLS 1.1', { protocol: 'TLSv1.1', renegotiationDisabled: true }, undefined, 'unsupported-protocol'],
    ['no handshake', { protocol: null }, undefined, 'no-handshake'],
  ];
  for (const [name, over, option, expected] of table) {
    it(name, () => {
      const r = exporterInput(facts(over), option);
      if (expected === 'empty') assert.deepEqual(r.context, Buffer.alloc(0));
      else if (expected === 'none') assert.ok(!r.unavailable && r.context === undefined);
      else assert.equal(r.unavailable?.reason, expected);
    });
  }
});

describe('token forms', () => {
  const value = Buffer.from('00ff', 'hex');
  it('application-data is "<type>:" then the raw bytes (RFC 5056 2.1, RFC 5929)', () => {
    assert.equal(applicationData('tls-server-end-point', value).toString('hex'), Buffer.from('tls-server-end-point:').toString('hex') + '00ff');
    assert.deepEqual(tokenBytes('tls-unique', value, 'raw'), value);
    assert.equal(tokenBytes('tls-exporter', value, 'application-data').subarray(0, 13).toString('ascii'), 'tls-exporter:');
  });
  it('bindingHex: lowercase hex or null', () => {
    assert.equal(bindingHex({ value: Buffer.from('ABCD', 'hex') }), 'abcd');
    assert.equal(bindingHex(unavailable('tls13', 'x')), null);
  });
});

describe('channelBindStatus (HTTP_REQUEST_CHANNEL_BIND_STATUS, flags 0x1)', () => {
  const token = Buffer.alloc(53, 7);
  const F = HTTP_RECEIVE_SECURE_CHANNEL_TOKEN;
  const table: [string, Buffer | undefined, number, number, number, number, 'full' | 'size' | 'none'][] = [
    // name, token, bufferSize, flags, status, bytesReceived, structure
    ['buffer 0 → ERROR_INSUFFICIENT_BUFFER', token, 0, F, Win32.ERROR_INSUFFICIENT_BUFFER, 0, 'none'],
    ['buffer 23 → ERROR_INSUFFICIENT_BUFFER', token, 23, F, Win32.ERROR_INSUFFICIENT_BUFFER, 0, 'none'],
    ['buffer 23, no token → ERROR_INSUFFICIENT_BUFFER', undefined, 23, F, Win32.ERROR_INSUFFICIENT_BUFFER, 0, 'none'],
    ['buffer 24 → ERROR_MORE_DATA, size only', token, 24, F, Win32.ERROR_MORE_DATA, 24, 'size'],
    ['buffer 24 + 52 → ERROR_MORE_DATA', token, 76, F, Win32.ERROR_MORE_DATA, 24, 'size'],
    ['buffer 24 + 53 → NO_ERROR', token, 77, F, Win32.NO_ERROR, 77, 'full'],
    ['buffer larger → NO_ERROR, bytes = 24 + token', token, 4096, F, Win32.NO_ERROR, 77, 'full'],
    ['no token → ERROR_NOT_FOUND', undefined, 4096, F, Win32.ERROR_NOT_FOUND, 0, 'none'],
    ['empty token → ERROR_NOT_FOUND', Buffer.alloc(0), 4096, F, Win32.ERROR_NOT_FOUND, 0, 'none'],
    ['flags 0 → ERROR_INVALID_PARAMETER', token, 4096, 0, Win32.ERROR_INVALID_PARAMETER, 0, 'none'],
    ['flags 0x3 → ERROR_INVALID_PARAMETER', token, 4096, 3, Win32.ERROR_INVALID_PARAMETER, 0, 'none'],
    ['negative size → ERROR_INVALID_PARAMETER', token, -1, F, Win32.ERROR_INVALID_PARAMETER, 0, 'none'],
    ['fractional size → ERROR_INVALID_PARAMETER', token, 100.5, F, Win32.ERROR_INVALID_PARAMETER, 0, 'none'],
  ];
  for (const [name, tok, size, flags, status, bytes, shape] of table) {
    it(name, () => {
      const r = channelBindStatus(tok, 'HTTP/www.example.com', size, flags);
      assert.equal(r.status, status);
      assert.equal(r.bytesReceived, bytes);
      if (shape === 'none') assert.equal(r.channelBindStatus, undefined);
      if (shape === 'size') assert.deepEqual(r.channelBindStatus, { serviceName: null, channelToken: null, channelTokenSize: 53, flags: 0 });
      if (shape === 'full') assert.deepEqual(r.channelBindStatus, { serviceName: 'HTTP/www.example.com', channelToken: token, channelTokenSize: 53, flags: 0 });
    });
  }
  it('the fixed part is 24 bytes (x64)', () => assert.equal(CHANNEL_BIND_STATUS_FIXED_SIZE, 24));
  it('receive.ts names the same structure, size and flag (one definition)', () => {
    assert.equal(receive.HTTP_REQUEST_CHANNEL_BIND_STATUS_SIZE, CHANNEL_BIND_STATUS_FIXED_SIZE);
    assert.equal(receive.HTTP_RECEIVE_SECURE_CHANNEL_TOKEN, HTTP_RECEIVE_SECURE_CHANNEL_TOKEN);
    expectTypeOf<receive.HttpRequestChannelBindStatus>().toEqualTypeOf<HttpRequestChannelBindStatus>();
  });
  it('the returned token is a copy', () => {
    const t = Buffer.from('abc');
    const r = channelBindStatus(t, null, 100, F);
    t[0] = 0;
    assert.equal(r.channelBindStatus?.channelToken?.toString(), 'abc');
  });

  const bindings: ChannelBindings = {
    'tls-unique': unavailable('tls13', 'x'),
    'tls-server-end-point': { value: Buffer.from('aa', 'hex') },
    'tls-exporter': { value: Buffer.from('bb', 'hex') },
  };
  it('secureChannelToken: tls-server-end-point in application-data form by default', () => {
    assert.equal(secureChannelToken(bindings)?.toString('latin1'), 'tls-server-end-point:\xaa');
    assert.equal(secureChannelToken(bindings, { type: 'tls-exporter', form: 'raw' })?.toString('hex'), 'bb');
    assert.equal(secureChannelToken(bindings, { type: 'tls-unique' }), undefined);
  });
});

describe('docs/channel-binding.md states the defaults the code has', () => {
  const doc = readFileSync(new URL('../docs/channel-binding.md', import.meta.url), 'utf8').replace(/\s+/g, ' ');
  it('token type and form of HTTP_RECEIVE_SECURE_CHANNEL_TOKEN', () => {
    assert.ok(doc.includes(`\`'${SECURE_CHANNEL_TOKEN_DEFAULTS.type}'\` by default`));
    assert.ok(doc.includes(`\`form\` is \`'${SECURE_CHANNEL_TOKEN_DEFAULTS.form}'\` by default`));
  });
  it('the TLS 1.2 exporter context and the renegotiation option', () => {
    assert.equal(exporterInput(facts({ renegotiationDisabled: true })).context?.length, 0, "'empty' is the default");
    assert.ok(doc.includes("by default (`tls12ExporterContext: 'empty'`)"));
    assert.match(doc, /\| `renegotiationDisabled` \| [^|]+\| `false` \|/);
    assert.match(doc, /\| `tls12ExporterContext` \| [^|]+\| `'empty'` \|/);
  });
  it('the 24-byte fixed part', () => assert.ok(doc.includes(`The fixed part is **${CHANNEL_BIND_STATUS_FIXED_SIZE} bytes**`)));
});
