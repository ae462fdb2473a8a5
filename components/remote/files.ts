// Delivery of rendered files to a host without putting their contents on a command
// line: the files travel as a bundle on the command's stdin (a Pulumi secret when any
// file is secret), and a fixed script writes each one atomically with its mode.
import { createHash } from "crypto";

export interface FileSpec {
  /** Absolute path on the host. */
  readonly path: string;
  readonly content: string;
  /** Octal mode, e.g. "0600" for keys and kubeconfigs, "0644" for the rest. */
  readonly mode: "0600" | "0644" | "0755";
}

const SAFE_PATH = /^\/[A-Za-z0-9._\/-]+$/;

/**
 * Renders the bundle read by `writeFilesFunction`: one line per file,
 * `<mode> <path> <base64 content>`.
 */
export function renderFileBundle(files: readonly FileSpec[]): string {
  const seen = new Set<string>();
  return files
    .map((file) => {
      if (!SAFE_PATH.test(file.path) || file.path.includes("..")) {
        throw new Error(`unsafe file path ${JSON.stringify(file.path)}`);
      }
      if (seen.has(file.path)) {
        throw new Error(`file ${file.path} listed twice`);
      }
      seen.add(file.path);
      return `${file.mode} ${file.path} ${Buffer.from(file.content, "utf8").toString("base64")}\n`;
    })
    .join("");
}

/** SHA-256 (hex) of a text; listed in step headers so a change re-runs exactly its step. */
export function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

/**
 * Shell function `hakube_write_files`: reads a bundle from stdin, writes each file that
 * differs (mode set before any byte is written), and records changed paths in
 * $HAKUBE_CHANGED (newline separated). Prints paths only, never contents.
 */
export const writeFilesFunction = `hakube_write_files() {
  HAKUBE_CHANGED=""
  local mode path data dir tmp
  while read -r mode path data; do
    [ -n "$path" ] || continue
    dir=$(dirname "$path")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.hakube.XXXXXX")
    chmod "$mode" "$tmp"
    printf '%s' "$data" | base64 -d > "$tmp"
    if [ -f "$path" ] && cmp -s "$tmp" "$path"; then
      rm -f "$tmp"
      chmod "$mode" "$path"
    else
      mv -f "$tmp" "$path"
      HAKUBE_CHANGED="$HAKUBE_CHANGED$path
"
      echo "hakube: wrote $path"
    fi
  done
}`;

/** The standard script prologue: strict mode and a umask that keeps new files private. */
export const scriptPrologue = `set -euo pipefail
umask 077
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

/**
 * Shell function `hakube_retry <attempts> <delay-seconds> <description> -- <cmd...>`:
 * a bounded retry loop used by every readiness gate.
 */
export const retryFunction = `hakube_retry() {
  local attempts=$1 delay=$2 what=$3 i
  shift 4
  for i in $(seq 1 "$attempts"); do
    if "$@"; then
      return 0
    fi
    if [ "$i" -lt "$attempts" ]; then sleep "$delay"; fi
  done
  echo "hakube: $what: still failing after $attempts attempts, $delay s apart" >&2
  return 1
}`;
