// Runs examples/client-download.ts as a user would (one command) and checks what it prints.
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { run } from './helpers/exec.js';

const root = fileURLToPath(new URL('..', import.meta.url));

test('examples/client-download.ts: certificate by thumbprint, mTLS download, CERT_NEEDED without it', async () => {
  const r = await run(process.execPath, ['--import', 'tsx', 'examples/client-download.ts'], { cwd: root, timeoutMs: 45_000 });
  assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const out = r.stdout;
  const thumb = /store current-user\\MY: ([0-9a-f]{40}) {2}CN=dev-client, OU=users, O=certbound dev\n/.exec(out)?.[1];
  assert.ok(thumb, out);
  assert.match(out, /server: https:\/\/127\.0\.0\.1:\d+\/payload\.bin \(client-auth require\)/);
  assert.ok(out.includes(`SetClientCertificateByID(CURRENT_USER, "MY", ${thumb}) = 0x00000000 S_OK`), out);
  assert.match(out, /TRANSFERRED 1048576\/1048576 bytes\n/);
  assert.match(out, /Complete\(\) = 0x00000000 S_OK; \S+payload\.bin: identical to what the server sent/);
  assert.match(out, /without a certificate: ERROR 0x80072f0c ERROR_WINHTTP_CLIENT_AUTH_CERT_NEEDED/);
  assert.match(out, /\nok\n$/);
});
