// Helpers for tests that run real validators (haproxy, keepalived, systemd-analyze, bash).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `hakube-${prefix}-`));
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): RunResult {
  const r = spawnSync(cmd, args, { input: opts.input, env: opts.env ?? process.env, cwd: opts.cwd, encoding: "utf8", timeout: 60_000 });
  if (r.error) {
    throw new Error(`${cmd} could not run: ${r.error.message} (is it installed? .ci/run installs it)`);
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * `systemd-analyze verify` on a rendered unit. The unit's binaries under /usr/local/bin
 * are pointed at stand-ins in a temp dir (the host has none); everything else is as rendered.
 */
export function verifyUnit(name: string, unit: string): RunResult {
  const dir = tempDir("unit");
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  for (const match of unit.matchAll(/\/usr\/local\/bin\/([a-z0-9-]+)/g)) {
    fs.writeFileSync(path.join(bin, match[1]), "#!/bin/sh\n", { mode: 0o755 });
  }
  const file = path.join(dir, name);
  fs.writeFileSync(file, unit.replace(/\/usr\/local\/bin\//g, `${bin}/`));
  const result = run("systemd-analyze", ["verify", "--man=no", file]);
  fs.rmSync(dir, { recursive: true, force: true });
  return result;
}
