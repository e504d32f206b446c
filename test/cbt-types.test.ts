// The channel-binding types as a consumer sees them (from the package entry). The checks run
// in the type check (`npm run typecheck` covers test/); the test makes the file a test and
// checks the few runtime values the types promise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TLSSocket } from 'node:tls';
import { expectTypeOf } from 'expect-type';
import type { FastifyRequest } from 'fastify';
import {
  channelBindings,
  channelBindStatus,
  checkChannelBinding,
  endPointHash,
  CHANNEL_BINDING_TYPES,
  HttpAuthenticationHardening,
  type BindingResult,
  type ChannelBindings,
  type ChannelBindingType,
  type ChannelBindStatusResult,
  type ConnectionInfo,
  type CreateServerOptions,
  type ExtendedProtectionResult,
  type ServerChannelBindingConfig,
  type UnavailableReason,
} from '../src/index.js';

test('channel-binding public types', () => {
  expectTypeOf<ChannelBindingType>().toEqualTypeOf<'tls-unique' | 'tls-server-end-point' | 'tls-exporter'>();
  expectTypeOf(channelBindings).parameter(0).toEqualTypeOf<TLSSocket>();
  expectTypeOf(channelBindings).returns.toEqualTypeOf<ChannelBindings>();
  expectTypeOf<ChannelBindings['tls-exporter']>().toEqualTypeOf<BindingResult>();
  // A BindingResult is either a value or a reason, never both.
  expectTypeOf<Extract<BindingResult, { value: Buffer }>['reason']>().toEqualTypeOf<undefined>();
  expectTypeOf<Extract<BindingResult, { value: undefined }>['reason']>().toEqualTypeOf<UnavailableReason>();
  expectTypeOf<FastifyRequest['channelBinding']>().parameter(0).toEqualTypeOf<ChannelBindingType>();
  expectTypeOf<FastifyRequest['channelBinding']>().returns.toEqualTypeOf<BindingResult>();
  expectTypeOf<ConnectionInfo['channelBindings']>().toEqualTypeOf<Record<ChannelBindingType, string | null>>();
  expectTypeOf<CreateServerOptions['channelBinding']>().toEqualTypeOf<ServerChannelBindingConfig | undefined>();
  expectTypeOf(channelBindStatus).returns.toEqualTypeOf<ChannelBindStatusResult>();
  expectTypeOf(checkChannelBinding).returns.toEqualTypeOf<ExtendedProtectionResult>();
  expectTypeOf<Extract<ExtendedProtectionResult, { ok: false }>['reason']>().toEqualTypeOf<
    'EP_INVALID_POLICY' | 'EP_CBT_MISSING' | 'EP_CBT_UNBOUND' | 'EP_CBT_TYPE' | 'EP_CBT_UNAVAILABLE' | 'EP_CBT_MISMATCH' | 'EP_SERVICE_NAME_MISSING' | 'EP_SERVICE_NAME_MISMATCH'
  >();
  // Never called: only type-checked.
  const _sideRequired = (socket: TLSSocket) => {
    // @ts-expect-error: the side is required.
    channelBindings(socket, {});
  };
  expectTypeOf(_sideRequired).toBeFunction();

  assert.deepEqual([...CHANNEL_BINDING_TYPES], ['tls-unique', 'tls-server-end-point', 'tls-exporter']);
  assert.equal(HttpAuthenticationHardening.Strict, 2);
  assert.equal(endPointHash('1.2.840.10045.4.3.3').hash, 'sha384');
});
