#!/usr/bin/env node
// The certbound command; the code lives in dist/server/cli.js (built by `npm ci` / `npm run build`).
import { main } from '../dist/server/cli.js';

// A reader that went away (`certbound job watch ID | head`) ends the command quietly, as a
// SIGPIPE ends other tools: no EPIPE stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
}

const code = await main(process.argv.slice(2));
if (typeof code === 'number') process.exitCode = code;
