#!/usr/bin/env node
// The certbound command; the code lives in dist/server/cli.js (built by `npm ci` / `npm run build`).
import { main } from '../dist/server/cli.js';

const code = await main(process.argv.slice(2));
if (typeof code === 'number') process.exitCode = code;
