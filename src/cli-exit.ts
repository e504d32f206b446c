// How every `certbound` command ends when it cannot do what it was asked (docs/cli.md): one line
// on standard error, `certbound: CODE: message`, and exit code 1 — for a usage error (an unknown
// command or flag, a missing argument) as for a start-up error, in every subcommand.
import { CertboundError, isCertboundError } from './errors.js';

/** The exit codes of `certbound`: 0 done, 1 any error (usage included), 130 stopped by Ctrl-C (SIGINT). */
export const EXIT = Object.freeze({ ok: 0, error: 1, interrupted: 130 });

/**
 * Any error as a CertboundError: an error without a code (a bug, or a failure nothing
 * expected) becomes CB_ERR_INTERNAL with its message, so that no error line lacks a code.
 */
export function asCertboundError(err: unknown): CertboundError {
  if (isCertboundError(err)) return err;
  const message = err instanceof Error ? `${err.message}${(err as NodeJS.ErrnoException).code ? ` (${(err as NodeJS.ErrnoException).code})` : ''}` : String(err);
  return new CertboundError('CB_ERR_INTERNAL', [message], { cause: err });
}

/** A usage error of a command: CB_ERR_INVALID_OPTION naming what was wrong and where help is. */
export function usageError(what: string, why: string, helpCommand = 'certbound help'): CertboundError {
  return new CertboundError('CB_ERR_INVALID_OPTION', [what, `${why} (see ${helpCommand})`]);
}

/** Writes the one error line for `err` and answers the exit code: the one place that decides it. */
export function failWith(err: unknown, writeLine: (line: string) => void): number {
  const e = asCertboundError(err);
  writeLine(`certbound: ${e.code}: ${e.message.replace(/\s*\n\s*/g, ' ')}`);
  return EXIT.error;
}

/** True when a command's arguments ask for help: `--help` or `-h` anywhere (it is never a value). */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h');
}

/**
 * The reason util.parseArgs gives, up to its first sentence ("Unknown option '--colour'"): the
 * rest is advice about `--` that varies with the Node version and the command.
 */
export function parseArgsReason(err: unknown): string {
  return (err as Error).message.split(/\.\s/)[0] ?? String(err);
}
