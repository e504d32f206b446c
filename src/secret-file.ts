// The one rule for files that hold secrets (private keys, job state): mode 0600 in a directory
// of mode 0700 owned by this user, whatever was there before and whatever the umask. A mode
// given to writeFileSync applies only when the file is created, and the umask trims it; so the
// file is written under a temporary name with an exact fchmod and renamed over the old one.
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, closeSync, constants, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, realpathSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { CertboundError } from './errors.js';

/** Mode of every secret file certbound writes. */
export const SECRET_FILE_MODE = 0o600;
/** Mode of every directory that holds secret files. */
export const PRIVATE_DIR_MODE = 0o700;

/** A CB_ERR_PRIVATE_DIR / CB_ERR_SECRET_FILE error that keeps its reason in `detail`, for callers that say it in their own words. */
function fileError(code: 'CB_ERR_PRIVATE_DIR' | 'CB_ERR_SECRET_FILE', args: [string, string], options?: { cause?: unknown }): CertboundError & { detail: string } {
  return Object.assign(new CertboundError(code, args, options), { detail: args[1] });
}

const octal = (mode: number) => `0${(mode & 0o7777).toString(8).padStart(3, '0')}`;
const reason = (err: unknown) => (err as NodeJS.ErrnoException).code ?? (err as Error).message;

export interface PrivateDirOptions {
  /**
   * True for the names this directory may hold. When given, an existing directory open to
   * group or others is narrowed only if every entry passes, it has no sticky bit and this user
   * can write it: a directory shared with other files (a project directory, /tmp) is refused
   * rather than changed under its other users. Without it, a wider mode is simply chmodded.
   */
  readonly ownEntry?: (name: string) => boolean;
  /**
   * For a directory certbound keeps inside another one (the state directory's `ocsp/` and
   * `crl/`, the jobs directory's `quarantine/`, the CRL refresher's directory): when `dir`
   * itself is a symbolic link it is refused (CB_ERR_PRIVATE_DIR naming it) and left as it is,
   * never followed, chmodded or written through. Refused rather than replaced: a link planted
   * there (its parent may have been open to others before certbound narrowed it) is a sign to
   * look at, and removing it could remove someone's deliberate layout. The operator's own top
   * directory (--state-dir, --jobs-dir) may still be a link.
   */
  readonly noLink?: boolean;
}

/**
 * Creates `dir` (and missing parents, mode 0700) or takes the existing one, and leaves it mode
 * 0700. An existing directory open to group or others is narrowed only when it is not shared:
 * no sticky bit (as /tmp), no entry owned by another user, and with `options.ownEntry` no entry
 * the rule does not own; otherwise it is refused and left as it is. A symbolic link is followed (the directory it names is the one checked) unless `options.noLink`.
 * Returns that real path. Throws CB_ERR_PRIVATE_DIR when `dir` is not a directory, belongs to
 * another user (its owner could change the files in it whatever their modes), or cannot be
 * made private.
 */
export function ensurePrivateDir(dir: string, options: PrivateDirOptions = {}): string {
  let real: string;
  let st;
  if (options.noLink) refuseLink(dir);
  try {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
    real = realpathSync(dir);
    st = statSync(real);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // mkdir -p answers EEXIST for a file in the way (ENOTDIR when it is a parent).
    throw fileError('CB_ERR_PRIVATE_DIR', [dir, code === 'EEXIST' || code === 'ENOTDIR' ? `not a directory (${code})` : reason(err)], { cause: err });
  }
  if (!st.isDirectory()) throw fileError('CB_ERR_PRIVATE_DIR', [dir, 'not a directory']);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw fileError('CB_ERR_PRIVATE_DIR', [dir, `owned by uid ${st.uid}, not by this user (uid ${uid})`]);
  if ((st.mode & 0o7777) === PRIVATE_DIR_MODE) return real;
  if ((st.mode & 0o077) !== 0) {
    // A directory others may use is never taken over: not a shared one (sticky bit, as /tmp),
    // not one holding another user's files, and with `ownEntry` not one holding other files.
    const open = `it is open to other users (mode ${(st.mode & 0o7777).toString(8).padStart(3, '0')})`;
    if ((st.mode & 0o1000) !== 0) throw fileError('CB_ERR_PRIVATE_DIR', [dir, `${open} and is shared (sticky bit)`]);
    const names = readdirSync(real);
    const theirs = uid === undefined ? [] : names.filter((name) => {
      try {
        return lstatSync(join(real, name)).uid !== uid;
      } catch {
        return false;
      }
    });
    if (theirs.length > 0) throw fileError('CB_ERR_PRIVATE_DIR', [dir, `${open} and holds files of other users (${theirs.slice(0, 3).join(', ')}${theirs.length > 3 ? ', …' : ''})`]);
    const own = options.ownEntry ?? (() => true);
    const foreign = names.filter((name) => !own(name));
    if (foreign.length > 0) {
      const shown = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? ', …' : '');
      throw fileError('CB_ERR_PRIVATE_DIR', [dir, `${open} and holds other files (${shown}): give it a directory of its own, or chmod 700 it`]);
    }
    try {
      accessSync(real, constants.W_OK | constants.X_OK);
    } catch (err) {
      throw fileError('CB_ERR_PRIVATE_DIR', [dir, `it cannot be written by this user (${reason(err)})`], { cause: err });
    }
  }
  try {
    chmodSync(real, PRIVATE_DIR_MODE);
  } catch (err) {
    throw fileError('CB_ERR_PRIVATE_DIR', [dir, `mode ${octal(st.mode)} cannot be changed to 0700: ${reason(err)}`], { cause: err });
  }
  return real;
}

/**
 * Throws CB_ERR_PRIVATE_DIR when `dir` (its last component) is a symbolic link: for directories
 * certbound keeps inside another one, which it never follows (PrivateDirOptions.noLink).
 */
export function refuseLink(dir: string): void {
  let st: Stats;
  try {
    st = lstatSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileError('CB_ERR_PRIVATE_DIR', [dir, reason(err)], { cause: err });
  }
  if (!st.isSymbolicLink()) return;
  let to = '?';
  try {
    to = readlinkSync(dir);
  } catch {
    // the link is refused all the same
  }
  throw fileError('CB_ERR_PRIVATE_DIR', [dir, `it is a symbolic link (to ${to}); certbound does not follow links for the directories it keeps inside another one: remove the link`]);
}

/**
 * Writes `data` to `path` with exactly `mode`, as a new file under a temporary name in the same
 * directory (O_EXCL, O_NOFOLLOW, fchmod, fsync) renamed over whatever `path` was: an existing
 * file's mode is not kept, a symbolic link is replaced and never written through, readers see
 * the old content or the new. The directory is the caller's business (writeSecretFile makes it
 * private). Throws CB_ERR_SECRET_FILE.
 */
export function writeFileExact(path: string, data: string | Uint8Array, mode: number): void {
  const target = resolve(path);
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode & SECRET_FILE_MODE);
    fchmodSync(fd, mode); // the umask may have taken bits away; the mode is exact either way
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, target);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    throw fileError('CB_ERR_SECRET_FILE', [target, reason(err)], { cause: err });
  }
}

/** The stat of a secret file that must be a regular file (`follow`: through a symbolic link); CB_ERR_SECRET_FILE otherwise. */
function regularFileStat(path: string, follow: boolean): Stats {
  let st: Stats;
  try {
    st = follow ? statSync(path) : lstatSync(path);
  } catch (err) {
    throw fileError('CB_ERR_SECRET_FILE', [path, reason(err)], { cause: err });
  }
  if (!st.isFile()) throw fileError('CB_ERR_SECRET_FILE', [path, 'not a regular file']);
  return st;
}

/**
 * Brings an existing secret file to 0600 when group or others have any access to it. Returns
 * true when it changed the mode. Throws CB_ERR_SECRET_FILE when `path` is not a regular file.
 */
export function tightenSecretFile(path: string): boolean {
  const st = regularFileStat(path, false);
  if ((st.mode & 0o077) === 0) return false;
  chmodSync(path, SECRET_FILE_MODE);
  return true;
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
  writeFileExact(target, data, SECRET_FILE_MODE);
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
  const st = regularFileStat(path, true);
  const mode = st.mode & 0o7777;
  if ((mode & 0o077) === 0) return undefined;
  return Object.freeze({ path, mode, code: 'CB_ERR_SECRET_FILE_MODE', message: new CertboundError('CB_ERR_SECRET_FILE_MODE', [path, octal(mode)]).message });
}

