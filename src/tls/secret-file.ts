// Private-key files and the directory that holds them, for the dev PKI and the dev OCSP
// responder: only the owner can read them, whatever the umask and whatever was there before
// (writeFileSync's `mode` applies only when it creates the file). A local helper: a generic
// src/secret-file.ts with the same writeSecretFile / ensurePrivateDir is meant to replace it.
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants as fsConstants, closeSync, fchmodSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';

/** Mode of a private-key file. */
export const SECRET_FILE_MODE = 0o600;
/** Mode of a directory of private keys. */
export const PRIVATE_DIR_MODE = 0o700;

const GROUP_OTHER = 0o077;
const STICKY = 0o1000;

const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/**
 * Writes `data` to `path` with exactly `mode`, as a new file renamed over whatever `path` was
 * (an existing file keeps its mode when rewritten in place; a symbolic link would be followed).
 * Readers see the old file or the complete new one, never a part.
 */
export function writeFileExact(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  let fd: number | undefined;
  try {
    // 'wx': O_CREAT | O_EXCL, never an existing file or a link; no wider than 0600 until written.
    fd = openSync(tmp, 'wx', mode & SECRET_FILE_MODE);
    fchmodSync(fd, mode);
    writeFileSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try { unlinkSync(tmp); } catch { /* never created, or already renamed */ }
    const e = err as NodeJS.ErrnoException;
    // Name the file the caller asked for, not the temporary one.
    throw Object.assign(new Error(`cannot write ${path} (${e.code ?? e.message})`, { cause: err }), { code: e.code });
  }
}

/** Writes a private key: mode 0600 exactly, replacing any file at `path`. */
export function writeSecretFile(path: string, data: string | Uint8Array): void {
  writeFileExact(path, data, SECRET_FILE_MODE);
}

/**
 * Brings an existing private-key file to 0600 when group or others have any access to it.
 * Returns true when it changed the mode. Throws when `path` is not a regular file.
 */
export function tightenSecretFile(path: string): boolean {
  const st = lstatSync(path);
  if (!st.isFile()) throw new Error(`${path} is not a regular file`);
  if ((st.mode & GROUP_OTHER) === 0) return false;
  chmodSync(path, SECRET_FILE_MODE);
  return true;
}

export interface PrivateDirOptions {
  /**
   * True for the names this directory may hold. An existing directory open to group or others
   * is tightened only when every entry passes: a directory shared with other files (a project
   * directory, /tmp) is refused rather than changed under its other users.
   */
  ownEntry?: (name: string) => boolean;
}

/**
 * Makes `dir` a directory only its owner can enter: created with mode 0700 (with its missing
 * parents), or an existing one checked. An existing directory open to group or others is
 * narrowed to its owner's bits when it belongs to this user, has no sticky bit and holds
 * only own entries; otherwise this throws an Error saying why. Returns true when it narrowed
 * an existing directory.
 */
export function ensurePrivateDir(dir: string, options: PrivateDirOptions = {}): boolean {
  const created = mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE });
  if (created !== undefined) {
    // The umask applied to mkdir: set the mode exactly.
    chmodSync(dir, PRIVATE_DIR_MODE);
    return false;
  }
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((st.mode & GROUP_OTHER) === 0) return false;
  const open = `it is open to other users (mode ${octal(st.mode)})`;
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) throw new Error(`${open} and belongs to another user`);
  if ((st.mode & STICKY) !== 0) throw new Error(`${open} and is shared (sticky bit)`);
  const foreign = readdirSync(dir).filter((name) => !(options.ownEntry?.(name) ?? false));
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? ', …' : '');
    throw new Error(`${open} and holds other files (${shown}): give it a directory of its own, or chmod 700 it`);
  }
  // A directory this user cannot write is refused as it is, not narrowed first.
  try {
    accessSync(dir, fsConstants.W_OK | fsConstants.X_OK);
  } catch (err) {
    throw new Error(`it cannot be written by this user (${(err as NodeJS.ErrnoException).code ?? 'EACCES'})`, { cause: err });
  }
  chmodSync(dir, st.mode & PRIVATE_DIR_MODE);
  return true;
}
