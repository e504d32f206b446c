// The one way certbound reads a file it is given (TLS material, config, state): only a regular
// file, never more than a bound, and without blocking on a FIFO or a device (O_NONBLOCK). A
// FIFO, /dev/zero or a sparse 3 GiB file named as a certificate must be a clear error, not a
// hang or an exhausted heap.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/**
 * Reads `path` whole when it is a regular file of at most `maxBytes` bytes. `noFollow` refuses a
 * symbolic link (state files); `ownerOnly` refuses a file that group or others may access (a
 * secret), judged on the file opened, not on a second look at the path. Throws the system error
 * (with its `code`, e.g. ENOENT, ELOOP), or an Error whose message says why: "not a regular
 * file", "larger than N bytes", "mode 0644: group or others can access it (chmod 600 it)".
 */
export function readRegularFile(path: string, maxBytes: number, options: { noFollow?: boolean; ownerOnly?: boolean } = {}): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file');
    if (options.ownerOnly && (st.mode & 0o077) !== 0) throw new Error(`mode ${(st.mode & 0o7777).toString(8).padStart(4, '0')}: group or others can access it (chmod 600 it)`);
    if (st.size > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
    // The size can change under us: read at most one byte more than allowed, and check.
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let got = 0;
    for (;;) {
      const n = readSync(fd, buf, got, buf.length - got, null);
      if (n === 0) break;
      got += n;
      if (got > maxBytes) throw new Error(`larger than ${maxBytes} bytes`);
      if (got === buf.length) break;
    }
    return buf.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

/** The reason to show for a failed read: the system error code, else the message. */
export function readFailure(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message;
}
