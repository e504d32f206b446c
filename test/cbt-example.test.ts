// Runs examples/channel-bound-auth.ts as a user would (one command) and checks what it prints.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { run } from './helpers/exec.js';

const root = fileURLToPath(new URL('..', import.meta.url));

it('examples/channel-bound-auth.ts: accepted on its connection, replay rejected, relay rejected', async () => {
  const r = await run(process.execPath, ['--import', 'tsx', 'examples/channel-bound-auth.ts'], { cwd: root, timeoutMs: 45_000 });
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const out = r.stdout;
  // Step 1: accepted with the connection's binding; step 2: the same header on another connection refused.
  assert.match(out, /1\. alice proves tls-exporter on connection A\n {2}client: tls-exporter = [0-9a-f]{32}…\n {2}server: 200 \{"hello":"alice","boundTo":"tls-exporter"/);
  assert.match(out, /2\. an eavesdropper replays[^\n]*\n {2}server: 401 \{"error":"proof does not match this connection"\}/);
  assert.match(out, /server: 200 on its connection, 200 when replayed to the same server/);
  assert.match(out, /5\. [^\n]*\n {2}client: tls-server-end-point = [0-9a-f]{32}…\n {2}server: 401/);
  assert.doesNotMatch(out, /FAIL/);
  assert.match(out, /all 6 checks passed\n$/);
  // The two tls-exporter values (connections A and B) differ.
  const exporters = [...out.matchAll(/tls-exporter = ([0-9a-f]{32})…/g)].map((m) => m[1]);
  assert.equal(exporters.length, 2);
  assert.notEqual(exporters[0], exporters[1]);
});
