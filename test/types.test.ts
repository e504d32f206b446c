// The public types as a consumer sees them (from the package entry). The checks run in the
// type check (`npm run typecheck` covers test/); the test below only makes the file a test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import type { Server as HttpsServer } from 'node:https';
import { expectTypeOf } from 'expect-type';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  createServer,
  receiveClientCertificate,
  receiveClientCertificateAsync,
  compileMapper,
  parseSubjectAltNames,
  certFlagsFor,
  Overlapped,
  RequestQueue,
  Win32,
  CertStatus,
  DEFAULTS,
  CLIENT_AUTH_MODES,
  CertboundError,
  type CertboundServer,
  type CreateServerOptions,
  type ClientAuthMode,
  type ClientCertificate,
  type ConnectionEntry,
  type ReceiveResult,
  type ReceiveCallback,
  type HttpSslClientCertInfo,
  type MappingOutcome,
  type MapperInput,
  type ManyToOneMapping,
  type ManyToOneRule,
  type SanAttribute,
  type SubjectAltNames,
  type ErrorCode,
  ocspStapleOf,
  type OcspStapleDecoration,
  type OcspStapleSummary,
  type StapleSummaryReason,
  type PluginOcspOptions,
} from '../src/index.js';

test('public types (checked by tsc)', () => {
  // createServer: options in, a server with its fastify app, https server, queue and registry out.
  expectTypeOf(createServer).parameter(0).toEqualTypeOf<CreateServerOptions>();
  expectTypeOf(createServer).returns.toEqualTypeOf<CertboundServer>();
  // createServer's app has ocspStaple(); a fastify app in general does not (the plugin adds it
  // only with its `ocsp` option, read with ocspStapleOf).
  expectTypeOf<CertboundServer['app']>().toEqualTypeOf<FastifyInstance & OcspStapleDecoration>();
  expectTypeOf<CertboundServer['app']['ocspStaple']>().toEqualTypeOf<(fingerprint?: string) => OcspStapleSummary>();
  expectTypeOf<FastifyInstance>().not.toHaveProperty('ocspStaple');
  expectTypeOf(ocspStapleOf).returns.toEqualTypeOf<((fingerprint?: string) => OcspStapleSummary) | undefined>();
  expectTypeOf<OcspStapleSummary['reason']>().toEqualTypeOf<StapleSummaryReason | null>();
  expectTypeOf<OcspStapleSummary['state']>().toEqualTypeOf<'stapled' | 'not-stapled' | 'off'>();
  expectTypeOf<PluginOcspOptions['cert']>().toEqualTypeOf<string | Buffer | (string | Buffer)[]>();
  expectTypeOf<CertboundServer['server']>().toEqualTypeOf<HttpsServer>();
  expectTypeOf<CertboundServer['queue']>().toEqualTypeOf<RequestQueue>();
  expectTypeOf<CertboundServer['listen']>().returns.toEqualTypeOf<Promise<AddressInfo>>();
  expectTypeOf<CertboundServer['close']>().returns.toEqualTypeOf<Promise<void>>();
  expectTypeOf<CreateServerOptions['cert']>().toEqualTypeOf<string | Buffer | undefined>();
  expectTypeOf<CreateServerOptions['clientAuth']>().toEqualTypeOf<ClientAuthMode | undefined>();
  expectTypeOf<ClientAuthMode>().toEqualTypeOf<'none' | 'optional' | 'require' | 'accept-untrusted'>();
  expectTypeOf(CLIENT_AUTH_MODES).toEqualTypeOf<readonly ['none', 'optional', 'require', 'accept-untrusted']>();
  expectTypeOf({ cert: '', key: '' }).toMatchTypeOf<CreateServerOptions>();
  // @ts-expect-error an unknown mode is a type error
  expectTypeOf({ cert: '', key: '', clientAuth: 'sometimes' as const }).toMatchTypeOf<CreateServerOptions>();
  // @ts-expect-error cert and key are required
  expectTypeOf({ clientAuth: 'optional' as const }).toMatchTypeOf<CreateServerOptions>();

  // receiveClientCertificate: synchronous form → ReceiveResult; overlapped forms → a Win32 status number.
  const queue = null as unknown as RequestQueue;
  expectTypeOf(receiveClientCertificate(queue, 1n, 0, 4096)).toEqualTypeOf<ReceiveResult>();
  expectTypeOf(receiveClientCertificate(queue, 1, 0, 4096)).toEqualTypeOf<ReceiveResult>();
  expectTypeOf(receiveClientCertificate(queue, 1n, 0, 4096, new Overlapped())).toEqualTypeOf<number>();
  expectTypeOf(receiveClientCertificate(queue, 1n, 0, 4096, (r) => { expectTypeOf(r).toEqualTypeOf<ReceiveResult>(); })).toEqualTypeOf<number>();
  expectTypeOf(receiveClientCertificateAsync(queue, 1n, 0, 4096)).toEqualTypeOf<Promise<ReceiveResult>>();
  expectTypeOf<Overlapped['result']>().toEqualTypeOf<Promise<ReceiveResult>>();
  expectTypeOf<Overlapped['completion']>().toEqualTypeOf<ReceiveResult | undefined>();
  expectTypeOf<ReceiveCallback>().toEqualTypeOf<(result: ReceiveResult) => void>();
  expectTypeOf<ReceiveResult['status']>().toEqualTypeOf<number>();
  expectTypeOf<ReceiveResult['certInfo']>().toEqualTypeOf<HttpSslClientCertInfo | undefined>();
  expectTypeOf<HttpSslClientCertInfo['certEncoded']>().toEqualTypeOf<Buffer | null>();
  expectTypeOf<HttpSslClientCertInfo['token']>().toEqualTypeOf<string | null>();
  expectTypeOf<HttpSslClientCertInfo['certDeniedByMapper']>().toEqualTypeOf<boolean>();
  // @ts-expect-error the connection id is a bigint or a number, not a string
  receiveClientCertificate(queue, '1', 0, 4096);

  // Status tables are literal constants.
  expectTypeOf(Win32.ERROR_MORE_DATA).toEqualTypeOf<234>();
  expectTypeOf(Win32.ERROR_IO_PENDING).toEqualTypeOf<997>();
  expectTypeOf(CertStatus.CERT_E_EXPIRED).toEqualTypeOf<0x800b0101>();
  expectTypeOf(DEFAULTS.port).toMatchTypeOf<number>();
  expectTypeOf(certFlagsFor).returns.toEqualTypeOf<number>();
  expectTypeOf(compileMapper(undefined)).returns.toEqualTypeOf<MappingOutcome>();
  // The mapper reads the verified chain; issuer rules and the CA pin are decided on it.
  expectTypeOf<MapperInput['chain']>().toEqualTypeOf<readonly Buffer[] | undefined>();
  expectTypeOf<ManyToOneMapping['issuerThumbprint']>().toEqualTypeOf<string | undefined>();
  expectTypeOf<ManyToOneRule['field']>().toEqualTypeOf<'subject' | 'issuer' | 'san'>();
  expectTypeOf<SanAttribute>().toEqualTypeOf<'URI' | 'email' | 'DNS' | 'IP' | 'UPN'>();
  expectTypeOf<{ field: 'san'; attribute: 'uri'; match: '*' }>().not.toMatchTypeOf<ManyToOneRule>();
  expectTypeOf(parseSubjectAltNames).returns.toEqualTypeOf<SubjectAltNames | null>();
  expectTypeOf<CertboundError['code']>().toEqualTypeOf<ErrorCode>();
  expectTypeOf<'CB_ERR_LISTEN'>().toMatchTypeOf<ErrorCode>();

  // The request decorations the plugin declares on fastify.
  expectTypeOf<FastifyRequest['connectionId']>().toEqualTypeOf<bigint | undefined>();
  expectTypeOf<FastifyRequest['connection']>().toEqualTypeOf<ConnectionEntry | undefined>();
  expectTypeOf<FastifyRequest['clientCertificate']>().returns.toEqualTypeOf<ClientCertificate | null>();
  expectTypeOf<ClientCertificate['certFlags']>().toEqualTypeOf<number>();
  expectTypeOf<ClientCertificate['identity']>().toEqualTypeOf<string | null>();
  expectTypeOf<ClientCertificate['der']>().toEqualTypeOf<Buffer>();
  expectTypeOf<FastifyInstance['certbound']['queue']>().toEqualTypeOf<RequestQueue>();

  assert.equal(typeof createServer, 'function');
});
