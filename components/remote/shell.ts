// Shell built from argument lists, never by pasting text into `sh -c`: every word is
// single-quoted, so nothing in a value (a path, a flag value, a name) is expanded, split
// or run by the shell that reads the script.

/** One shell word: single-quoted unless it is made only of characters that need no quoting. */
export function quote(word: string | number): string {
  const text = String(word);
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) {
    return text;
  }
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/** A command line from its argument vector, each word quoted. */
export function command(argv: readonly (string | number)[]): string {
  if (argv.length === 0) {
    throw new Error("command: empty argument list");
  }
  return argv.map(quote).join(" ");
}

/** Bounded retries of a gate or wait: attempts, and seconds between them. */
export interface Retry {
  readonly attempts: number;
  readonly delaySeconds: number;
}

/**
 * `hakube_retry <attempts> <delay> <what> -- <argv...>` (see `retryFunction`): the command
 * runs afresh on every attempt. To retry something that needs the shell (a pipe, a test
 * of a command's output), put it in a shell function and retry the function by name.
 */
export function retry(r: Retry, what: string, argv: readonly (string | number)[]): string {
  return command(["hakube_retry", r.attempts, r.delaySeconds, what, "--", ...argv]);
}

/** A shell function definition; the body is shell text written by hakube, not data. */
export function shellFunction(name: string, body: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) {
    throw new Error(`shellFunction: bad name ${JSON.stringify(name)}`);
  }
  return `${name}() {\n${body.replace(/^/gm, "  ")}\n}`;
}
