#!/usr/bin/env node
// The first step of `npm test`: the tests run real peers (openssl, curl, python3, gnutls-cli,
// chromium, taskset, ps). When one is missing, stop at once with one line naming the Debian
// package and the apt-get command, instead of failing deep inside the run.
//   node scripts/check-peers.mjs                     exit 0 when all are there, else 1 and one line
//   node scripts/check-peers.mjs --missing-packages  the packages to install, one per line (for .ci/run)
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const { peers } = JSON.parse(readFileSync(new URL('./peers.json', import.meta.url), 'utf8'));

/** True when `command` is an executable file in one of the PATH directories. */
function onPath(command) {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      if (statSync(join(dir, command)).isFile()) return true;
    } catch {
      // not here
    }
  }
  return false;
}

const missing = Object.entries(peers).filter(([command]) => !onPath(command));
const packages = [...new Set(missing.map(([, pkg]) => pkg))];
if (process.argv.includes('--missing-packages')) {
  for (const pkg of packages) console.log(pkg);
  process.exit(0);
}
if (missing.length > 0) {
  const what = missing.map(([command, pkg]) => (command === pkg ? command : `${command} (package ${pkg})`)).join(', ');
  console.error(`npm test needs ${what}: install with sudo apt-get install -y ${packages.join(' ')}`);
  process.exit(1);
}
