// The one rule for files that hold secrets (private keys, job state): mode 0600 in a directory
// of mode 0700 owned by this user, whatever was there before and whatever the umask. A mode
// given to writeFileSync applies only when the file is created, and the umask trims it; so the
// file is written under a temporary name with an exact fchmod and renamed over the old one.
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, constants, fchmodSync, fsyncSync, mkdirSync, openSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CertboundError } from './errors.js';

/** Mode of every secret file certbound writes. */
export const SECRET_FILE_MODE = 0o600;
/** Mode of every directory that holds secret files. */
export const PRIVATE_DIR_MODE = 0o700;

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
const reason = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

/**
 * Creates `dir` (and missing parents, mode 0700) or takes the existing one, and leaves it mode
 * 0700. An existing directory with a wider mode is chmodded, not refused. A symbolic link is
 * followed: the directory it names is the one checked. Returns that real path.
 * Throws CB_ERR_PRIVATE_DIR when `dir` is not a directory, belongs to another user (its owner
 * could change the files in it whatever their modes), or cannot be chmodded.
 */
export function ensurePrivateDir(dir: string): string {
  let real: string;
  let st;
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    real = realpathSync(dir);
    st = statSync(real);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // mkdir -p answers EEXIST for a file in the way (ENOTDIR when it is a parent).
    throw new CertboundError('CB_ERR_PRIVATE_DIR', [dir, code === 'EEXIST' || code === 'ENOTDIR' ? 'not a directory' : reason(err)], { cause: err });
  }
  if (!st.isDirectory()) throw new CertboundError('CB_ERR_PRIVATE_DIR', [dir, 'not a directory']);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new CertboundError('CB_ERR_PRIVATE_DIR', [dir, `owned by uid ${st.uid}, not by this user (uid ${uid})`]);
  if ((st.mode & 0o7777) !== PRIVATE_DIR_MODE) {
    try {
      chmodSync(real, PRIVATE_DIR_MODE);
    } catch (err) {
      throw new CertboundError('CB_ERR_PRIVATE_DIR', [dir, `mode ${octal(st.mode)} cannot be changed to 0700: ${reason(err)}`], { cause: err });
    }
  }
  return real;
}

/**
 * Writes `data` to `path` so that it ends mode 0600 in a 0700 directory (ensurePrivateDir on
 * its parent): a new file under a temporary name in the same directory (O_EXCL, O_NOFOLLOW),
 * fchmod 0600, fsync, then renamed over `path`. An existing file of any mode is replaced, and a
 * symbolic link at `path` is replaced too, never written through. Readers see the old content or
 * the new, never a mix. Throws CB_ERR_PRIVATE_DIR (the parent) or CB_ERR_SECRET_FILE.
 */
export function writeSecretFile(path: string, data: string | Uint8Array): void {
  const target = resolve(path);
  ensurePrivateDir(dirname(target));
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, SECRET_FILE_MODE);
    fchmodSync(fd, SECRET_FILE_MODE); // the umask may have taken bits away; the mode is exact either way
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw new CertboundError('CB_ERR_SECRET_FILE', [target, reason(err)], { cause: err });
  }
}

/** What checkSecretFile found: group or others have some access to a secret file. */
export interface SecretFileReport {
  readonly path: string;
  /** The permission bits, e.g. 0o644. */
  readonly mode: number;
  readonly code: 'CB_ERR_SECRET_FILE_MODE';
  /** The CB_ERR_SECRET_FILE_MODE message, naming the file and its mode. */
  readonly message: string;
}

/**
 * Reports a secret file (e.g. a private key someone else wrote) that group or others can read,
 * write or execute; undefined when only its owner has access. A symbolic link is followed (the
 * file it names is what a reader gets). It reports and changes nothing: the caller decides
 * whether to warn or refuse. Throws CB_ERR_SECRET_FILE when the file cannot be examined or is
 * not a regular file.
 */
export function checkSecretFile(path: string): SecretFileReport | undefined {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new CertboundError('CB_ERR_SECRET_FILE', [path, reason(err)], { cause: err });
  }
  if (!st.isFile()) throw new CertboundError('CB_ERR_SECRET_FILE', [path, 'not a regular file']);
  const mode = st.mode & 0o7777;
  if ((mode & 0o077) === 0) return undefined;
  return Object.freeze({ path, mode, code: 'CB_ERR_SECRET_FILE_MODE', message: new CertboundError('CB_ERR_SECRET_FILE_MODE', [path, octal(mode)]).message });
}

