// tls-exporter on live connections against `openssl s_client -keymatexport
// EXPORTER-Channel-Binding -keymatexportlen 32`, and its TLS 1.2 edges: only with extended
// master secret, never where renegotiation is possible, and the documented empty-vs-no
// context difference (s_client uses no context; RFC 9266 a zero-length one).
import assert from 'node:assert/strict';
import { constants } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import { createServer, type TlsOptions, type TLSSocket } from 'node:tls';
import { channelBindings, type ChannelBindingOptions } from '../src/cbt/channel-bindings.js';
import type { BindingResult } from '../src/cbt/binding.js';
import { run } from './helpers/exec.js';
import { tempDir } from './helpers/pki.js';

const SSL_OP_NO_EXTENDED_MASTER_SECRET = 0x1;

let cert = '';
let key = '';

function show(b: BindingResult): string {
  return b.value ? b.value.toString('hex') : `none:${b.reason}`;
}

/**
 * Serves one handshake with node:tls, writes the server's tls-exporter (for each option set)
 * as `server<i>=<hex|none:reason>` lines, and returns them with s_client's keying material.
 */
async function withSClient(version: '-tls1_3' | '-tls1_2', tls: Partial<TlsOptions>, optionSets: Omit<ChannelBindingOptions, 'side'>[], prepare?: (s: TLSSocket) => void): Promise<{ server: string[]; sclient: string }> {
  const server = createServer({ cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2', ...tls }, (s: TLSSocket) => {
    prepare?.(s);
    const lines = optionSets.map((o, i) => `server${i}=${show(channelBindings(s, { side: 'server', ...o })['tls-exporter'])}`);
    s.end(lines.join('\n') + '\n');
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const r = await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', version, '-ign_eof', '-keymatexport', 'EXPORTER-Channel-Binding', '-keymatexportlen', '32'], { timeoutMs: 20_000 });
    const km = /Keying material:\s*([0-9A-Fa-f]+)/.exec(r.stdout);
    assert.ok(km, `s_client printed no keying material: ${r.stdout}\n${r.stderr}`);
    const serverLines = optionSets.map((_, i) => {
      const m = new RegExp(`^server${i}=(\\S+)$`, 'm').exec(r.stdout);
      assert.ok(m, `server line ${i} missing from s_client output`);
      return m[1]!;
    });
    return { server: serverLines, sclient: km[1]!.toLowerCase() };
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
}

describe('tls-exporter against openssl s_client -keymatexport', () => {
  before(async () => {
    const dir = tempDir('certbound-cbt-exporter-');
    cert = join(dir, 'cert.pem');
    key = join(dir, 'key.pem');
    const r = await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-sha256', '-nodes', '-keyout', key, '-out', cert, '-subj', '/CN=localhost', '-days', '2']);
    assert.equal(r.code, 0, r.stderr);
  });

  it('TLS 1.3: 32 bytes equal to s_client, whatever the TLS 1.2 context option', async () => {
    const { server, sclient } = await withSClient('-tls1_3', {}, [{}, { tls12ExporterContext: 'none' }]);
    assert.match(sclient, /^[0-9a-f]{64}$/);
    assert.deepEqual(server, [sclient, sclient]);
  });

  it('TLS 1.2 with renegotiation possible (Node default): undefined (renegotiation-possible)', async () => {
    const { server, sclient } = await withSClient('-tls1_2', {}, [{}]);
    assert.equal(server[0], 'none:renegotiation-possible');
    assert.match(sclient, /^[0-9a-f]{64}$/);
  });

  it('TLS 1.2, EMS, renegotiation disabled: context "none" equals s_client; the RFC 9266 empty context differs', async () => {
    const { server, sclient } = await withSClient('-tls1_2', { secureOptions: constants.SSL_OP_NO_RENEGOTIATION }, [
      { renegotiationDisabled: true, tls12ExporterContext: 'none' },
      { renegotiationDisabled: true },
    ], (s) => s.disableRenegotiation());
    assert.equal(server[0], sclient);
    assert.match(server[1]!, /^[0-9a-f]{64}$/);
    assert.notEqual(server[1], sclient);
  });

  it('TLS 1.2 without extended master secret: undefined even with renegotiation disabled', async () => {
    const { server } = await withSClient('-tls1_2', { secureOptions: constants.SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_EXTENDED_MASTER_SECRET }, [
      { renegotiationDisabled: true, tls12ExporterContext: 'none' },
    ]);
    assert.equal(server[0], 'none:no-extended-master-secret');
  });

  it('a closed socket reports no-handshake for all three, never a stale value', async () => {
    let before: string | undefined;
    let after: string[] = [];
    const server = createServer({ cert: readFileSync(cert), key: readFileSync(key) }, (s: TLSSocket) => {
      before = show(channelBindings(s, { side: 'server' })['tls-exporter']);
      s.destroy();
      const b = channelBindings(s, { side: 'server' });
      after = [show(b['tls-unique']), show(b['tls-server-end-point']), show(b['tls-exporter'])];
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as { port: number }).port;
      await run('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3'], { timeoutMs: 10_000 });
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
    assert.match(before ?? '', /^[0-9a-f]{64}$/);
    assert.deepEqual(after, ['none:no-handshake', 'none:no-handshake', 'none:no-handshake']);
  });
});
