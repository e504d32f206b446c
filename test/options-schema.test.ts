// The option schema of createServer and the plugin (src/server/options.ts): JSON Schema checked
// by ajv, whose keys are the TypeScript interfaces' keys (checked by tsc below), whose messages
// name the option and why, and which generates the README's options table.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { expectTypeOf } from 'expect-type';
import Fastify from 'fastify';
import { certboundPlugin, type CertboundPluginOptions } from '../src/server/plugin.js';
import { createServer, type CreateServerOptions } from '../src/server/server.js';
import type { FleetOptions } from '../src/fleet/fleet.js';
import { Ajv } from 'ajv';
import { CHANNEL_BINDING_SCHEMA, FLEET_SCHEMA, OCSP_SCHEMA, OPTION_AJV_SETTINGS, PLUGIN_SCHEMA, REVOCATION_SCHEMA, SERVER_SCHEMA, addOptionKeywords, optionsReferenceMarkdown } from '../src/server/options.js';
import type { RevocationOptions } from '../src/ocsp/revocation.js';
import type { ServerChannelBindingConfig } from '../src/cbt/server-bindings.js';
import { isCertboundError } from '../src/errors.js';
import { devPki, read } from './helpers/pki.js';

const ROOT = resolve(import.meta.dirname, '..');

/**
 * The TypeScript type a schema describes, where JSON Schema can say it (enumerations, booleans,
 * integers, PEM, lists, alternatives of those); `unknown` for the rest (objects, functions,
 * instances), whose types the hand-written interfaces give.
 */
type FromSchema<S> =
  S extends { readonly enum: readonly (infer E)[] } ? E
    : S extends { readonly const: infer C } ? C
      : S extends { readonly anyOf: readonly [infer A, infer B] } ? (unknown extends FromSchema<A> ? unknown : unknown extends FromSchema<B> ? unknown : FromSchema<A> | FromSchema<B>)
        : S extends { readonly pem: true } ? string | Buffer
          : S extends { readonly type: 'boolean' } ? boolean
            : S extends { readonly type: 'integer' } ? number
              : S extends { readonly type: 'string' } ? string
                : S extends { readonly type: 'array'; readonly items: infer I } ? (unknown extends FromSchema<I> ? unknown : FromSchema<I>[])
                  : unknown;
/** The options whose type the schema says, with that type. */
type Said<P> = { [K in keyof P as unknown extends FromSchema<P[K]> ? never : K]: FromSchema<P[K]> };
/** The same options, with the interface's types. */
type Declared<P, I> = { [K in keyof Said<P>]: K extends keyof I ? NonNullable<I[K]> : never };

test('the schemas have exactly the keys of the option interfaces, and the types the schema says are the interfaces\' (checked by tsc)', () => {
  expectTypeOf<Said<typeof PLUGIN_SCHEMA.properties>>().toEqualTypeOf<Declared<typeof PLUGIN_SCHEMA.properties, CertboundPluginOptions>>();
  expectTypeOf<Said<typeof SERVER_SCHEMA.properties>>().toEqualTypeOf<Declared<typeof SERVER_SCHEMA.properties, CreateServerOptions>>();
  expectTypeOf<Said<typeof REVOCATION_SCHEMA.properties>>().toEqualTypeOf<Declared<typeof REVOCATION_SCHEMA.properties, RevocationOptions>>();
  expectTypeOf<Said<typeof CHANNEL_BINDING_SCHEMA.properties>>().toEqualTypeOf<Declared<typeof CHANNEL_BINDING_SCHEMA.properties, ServerChannelBindingConfig>>();
  // The check covers these options (it cannot be empty and pass by accident).
  expectTypeOf<keyof Said<typeof SERVER_SCHEMA.properties>>().toEqualTypeOf<'clientAuth' | 'rejectDeniedByMapper' | 'negotiationTimeout' | 'cert' | 'key' | 'ca' | 'crl' | 'referenceRoutes' | 'http2' | 'onDemandHosts' | 'handshakeTimeout' | 'maxConnectionLifetime' | 'trustedProxies'>();
  expectTypeOf<Said<typeof PLUGIN_SCHEMA.properties>['clientAuth']>().toEqualTypeOf<'none' | 'optional' | 'require' | 'accept-untrusted'>();

  expectTypeOf<keyof typeof PLUGIN_SCHEMA.properties>().toEqualTypeOf<keyof CertboundPluginOptions>();
  expectTypeOf<keyof typeof SERVER_SCHEMA.properties>().toEqualTypeOf<keyof CreateServerOptions>();
  expectTypeOf<keyof typeof REVOCATION_SCHEMA.properties>().toEqualTypeOf<keyof RevocationOptions>();
  expectTypeOf<keyof typeof CHANNEL_BINDING_SCHEMA.properties>().toEqualTypeOf<keyof ServerChannelBindingConfig>();
  expectTypeOf<keyof typeof FLEET_SCHEMA.properties>().toEqualTypeOf<keyof FleetOptions>();
  expectTypeOf<Said<typeof FLEET_SCHEMA.properties>>().toEqualTypeOf<Declared<typeof FLEET_SCHEMA.properties, FleetOptions>>();
  assert.deepEqual(Object.keys(PLUGIN_SCHEMA.properties).sort(), ['ca', 'channelBinding', 'clientAuth', 'fleet', 'logBindings', 'mapper', 'maxConnectionLifetime', 'negotiationTimeout', 'ocsp', 'queue', 'registry', 'rejectDeniedByMapper', 'revocation', 'trustedProxies']);
});

const invalid = (message: string) => (err: unknown) => {
  assert.ok(isCertboundError(err, 'CB_ERR_INVALID_OPTION'), String(err));
  assert.equal((err as Error).message, message);
  return true;
};

test('every option schema is valid JSON Schema (the meta-schema check the runtime skips) and compiles in strict mode', () => {
  // Start-up compiles with validateSchema: false (OPTION_AJV_SETTINGS); this is where a schema
  // mistake is caught instead: full meta-schema validation, strict mode, the code optimizer on.
  const ajv = addOptionKeywords(new Ajv({ ...OPTION_AJV_SETTINGS, validateSchema: true, code: { optimize: true } }));
  for (const [name, schema] of Object.entries({ SERVER_SCHEMA, PLUGIN_SCHEMA, OCSP_SCHEMA, FLEET_SCHEMA, REVOCATION_SCHEMA, CHANNEL_BINDING_SCHEMA })) {
    assert.equal(ajv.validateSchema(schema as object), true, `${name}: ${ajv.errorsText(ajv.errors)}`);
    assert.equal(typeof ajv.compile(schema as object), 'function', name);
  }
  // And the check can fail: a misspelt type is refused.
  assert.equal(ajv.validateSchema({ type: 'strnig' }), false);
});

test('app.register(certbound, bad options) stops start-up with CB_ERR_INVALID_OPTION naming the option and why', async () => {
  const rows: Array<[unknown, string]> = [
    [{ clientAuth: 'sometimes' }, 'Invalid option certbound.clientAuth: "sometimes" is not one of "none", "optional", "require", "accept-untrusted"'],
    [{ colour: 'red' }, 'Invalid option certbound.colour: unknown option (known: clientAuth, mapper, rejectDeniedByMapper, negotiationTimeout, maxConnectionLifetime, channelBinding, revocation, trustedProxies, registry, queue, ca, fleet, logBindings, ocsp)'],
    [{ negotiationTimeout: 1.5 }, 'Invalid option certbound.negotiationTimeout: expected an integer > 0 and <= 2147483647, got 1.5'],
    [{ negotiationTimeout: 0 }, 'Invalid option certbound.negotiationTimeout: expected an integer > 0 and <= 2147483647, got 0'],
    [{ mapper: 3 }, 'Invalid option certbound.mapper: expected a function or an object, got 3'],
    [{ revocation: { failMode: 'open' } }, 'Invalid option certbound.revocation.failMode: "open" is not one of "soft", "hard"'],
    [{ revocation: { crls: ['-----BEGIN X509 CRL-----', 7] } }, 'Invalid option certbound.revocation.crls[1]: expected PEM (string or Buffer), got 7'],
    // A single PEM passed validation before and then failed as a TypeError in the checker.
    [{ revocation: { crls: '-----BEGIN X509 CRL-----' } }, 'Invalid option certbound.revocation.crls: expected a list, each PEM (string or Buffer), got "-----BEGIN X509 CRL-----"'],
    [{ revocation: 'on' }, 'Invalid option certbound.revocation: expected a RevocationChecker or an object, got "on"'],
    [{ registry: {} }, 'Invalid option certbound.registry: expected a ConnectionRegistry, got {}'],
    [{ channelBinding: { type: 'tls-finished' } }, 'Invalid option certbound.channelBinding.type: "tls-finished" is not one of "tls-unique", "tls-server-end-point", "tls-exporter"'],
    [{ logBindings: 'yes' }, 'Invalid option certbound.logBindings: expected true or false, got "yes"'],
    [[], 'Invalid option certbound: expected an object, got []'],
  ];
  for (const [options, message] of rows) {
    const app = Fastify();
    await assert.rejects(async () => { await app.register(certboundPlugin, options as never); }, invalid(message), JSON.stringify(options));
    await app.close();
  }
  // undefined counts as absent; a valid set passes.
  const app = Fastify();
  await app.register(certboundPlugin, { clientAuth: undefined, negotiationTimeout: 5000, revocation: { failMode: 'hard', ocsp: false }, channelBinding: { type: 'tls-exporter' } });
  await app.ready();
  await app.close();
});

test('createServer(bad options) throws CB_ERR_INVALID_OPTION naming the option and why', async () => {
  const pki = await devPki();
  const base = { cert: read(pki.server), key: read(pki.serverKey), ca: read(pki.caBundle) };
  const rows: Array<[Record<string, unknown>, string]> = [
    [{ cert: 42 }, 'Invalid option cert: expected PEM (string or Buffer), got 42'],
    [{ ca: [base.ca, null] }, 'Invalid option ca[1]: expected PEM (string or Buffer), got null'],
    [{ underPressure: true }, 'Invalid option underPressure: expected false or an object, got true'],
    [{ onDemandHosts: ['api.example', ''] }, 'Invalid option onDemandHosts[1]: expected a non-empty string, got ""'],
    [{ handshakeTimeout: -5 }, 'Invalid option handshakeTimeout: expected an integer > 0 and <= 2147483647, got -5'],
    [{ http2: 'h2' }, 'Invalid option http2: expected true or false, got "h2"'],
    [{ logBindings: true }, 'Invalid option logBindings: unknown option (known: clientAuth, mapper, rejectDeniedByMapper, negotiationTimeout, maxConnectionLifetime, channelBinding, revocation, trustedProxies, cert, key, certificates, ca, crl, logger, underPressure, referenceRoutes, http2, onDemandHosts, handshakeTimeout, tls, fastify, ocsp, stapleSource, fleet, metrics, expiryWarnings, upstream, crlRefresh)'],
    [{ crlRefresh: { retryMinMs: 0 } }, 'Invalid option crlRefresh.retryMinMs: expected an integer > 0 and <= 2147483647, got 0'],
  ];
  for (const [bad, message] of rows) assert.throws(() => createServer({ ...base, ...bad } as never), invalid(message), JSON.stringify(bad));
});

test('createServer: every option in ms that feeds a timer is at most 2147483647 (Node turns more into 1 ms), seconds at most 2147483', async () => {
  const pki = await devPki();
  const base = { cert: read(pki.server), key: read(pki.serverKey), ca: read(pki.caBundle), logger: false as const };
  const ms = 'an integer > 0 and <= 2147483647';
  const rows: Array<[Record<string, unknown>, string]> = [
    [{ handshakeTimeout: 2_147_483_648 }, `handshakeTimeout: expected ${ms}, got 2147483648`],
    [{ negotiationTimeout: 1e12 }, `negotiationTimeout: expected ${ms}, got 1000000000000`],
    [{ ocsp: { settings: { SrvOcspRespUrlRetrievalTimeoutMilliseconds: 2_147_483_648 } } }, 'ocsp.settings.SrvOcspRespUrlRetrievalTimeoutMilliseconds: expected a number >= 0 and <= 2147483647, got 2147483648'],
    [{ ocsp: { settings: { SrvOcspRespMinValiditySeconds: 2_147_484 } } }, 'ocsp.settings.SrvOcspRespMinValiditySeconds: expected a number >= 0 and <= 2147483, got 2147484'],
    [{ ocsp: { settings: { SrvOcspRespMaxBeforeNextUpdateSeconds: 2_147_484 } } }, 'ocsp.settings.SrvOcspRespMaxBeforeNextUpdateSeconds: expected a number >= 0 and <= 2147483, got 2147484'],
    [{ ocsp: { settings: { SrvOcspRespMinBeforeNextUpdateSeconds: 2_147_484 } } }, 'ocsp.settings.SrvOcspRespMinBeforeNextUpdateSeconds: expected a number >= 0 and <= 2147483, got 2147484'],
    [{ ocsp: { settings: { SrvOcspRespMinAfterNextUpdateSeconds: 1e10 } } }, 'ocsp.settings.SrvOcspRespMinAfterNextUpdateSeconds: expected a number >= 0 and <= 2147483, got 10000000000'],
    [{ revocation: { urlRetrievalTimeoutMs: 2_147_483_648 } }, `revocation.urlRetrievalTimeoutMs: expected ${ms}, got 2147483648`],
    [{ expiryWarnings: { intervalMs: 2_147_483_648 } }, `expiryWarnings.intervalMs: expected ${ms}, got 2147483648`],
    [{ crlRefresh: { leadMs: 2_147_483_648 } }, 'crlRefresh.leadMs: expected an integer >= 0 and <= 2147483647, got 2147483648'],
    [{ crlRefresh: { retryMinMs: 2_147_483_648 } }, `crlRefresh.retryMinMs: expected ${ms}, got 2147483648`],
    [{ crlRefresh: { retryMaxMs: 2_147_483_648 } }, `crlRefresh.retryMaxMs: expected ${ms}, got 2147483648`],
    [{ crlRefresh: { timeoutMs: 2_147_483_648 } }, `crlRefresh.timeoutMs: expected ${ms}, got 2147483648`],
  ];
  for (const [bad, message] of rows) assert.throws(() => createServer({ ...base, ...bad } as never), invalid(`Invalid option ${message}`), JSON.stringify(bad));
  // The bound itself is accepted.
  const ok = createServer({ ...base, handshakeTimeout: 2_147_483_647, ocsp: { settings: { SrvOcspRespUrlRetrievalTimeoutMilliseconds: 2_147_483_647, SrvOcspRespMinAfterNextUpdateSeconds: 2_147_483 } } });
  await ok.close();
});

const GENERATED = /(<!-- generated by optionsReferenceMarkdown\(\): do not edit by hand -->\n)([\s\S]*?)\n(<!-- end of generated options table -->)/;

test('README.md holds exactly the options table generated from the schema', () => {
  const path = join(ROOT, 'README.md');
  let text = readFileSync(path, 'utf8');
  const table = optionsReferenceMarkdown();
  if (process.env.CERTBOUND_UPDATE_DOCS === '1') {
    text = text.replace(GENERATED, (_all, start: string, _old: string, end: string) => `${start}${table}\n${end}`);
    writeFileSync(path, text);
  }
  const m = GENERATED.exec(text);
  assert.ok(m, 'the generated-table markers are in README.md');
  assert.equal(m[2], table, 'regenerate with CERTBOUND_UPDATE_DOCS=1 node --import tsx --test test/options-schema.test.ts');
  assert.match(table, /^\| `clientAuth` \| both \| "none", "optional", "require", "accept-untrusted" \| `"optional"` \|/m);
});
