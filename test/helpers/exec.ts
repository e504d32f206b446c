// Runs real peers (curl, openssl, python3) with a time limit and collects their output.
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';

export interface RunResult { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }

/** Runs `cmd args`, writes `input` to stdin (then closes it), kills it after `timeoutMs`. */
export function run(cmd: string, args: string[], options: { input?: string; timeoutMs?: number; cwd?: string; env?: NodeJS.ProcessEnv; holdStdinMs?: number; uid?: number; gid?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], ...(options.uid !== undefined ? { uid: options.uid } : {}), ...(options.gid !== undefined ? { gid: options.gid } : {}) });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 20_000);
    child.on('error', (err) => { clearTimeout(timer); reject(err); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
    child.stdin.on('error', () => {});
    // Some peers (gnutls-cli) end the session at EOF on stdin: hold it open if asked.
    if (options.holdStdinMs) {
      child.stdin.write(options.input ?? '');
      const hold = setTimeout(() => child.stdin.end(), options.holdStdinMs);
      child.on('close', () => clearTimeout(hold));
    } else {
      child.stdin.end(options.input ?? '');
    }
  });
}

/** A TCP port that was free a moment ago on 127.0.0.1 (for peers that need a fixed port). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
