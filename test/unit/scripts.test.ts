// The README's two commands work as root and as a user: scripts/lib.sh's become_root
// runs a script again through sudo (keeping PATH and the HAKUBE_* settings), and says
// clearly what to do where there is no sudo. Runs the real lib.sh as an unprivileged
// user (setpriv, when the tests run as root) against a stub sudo that records its call.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-sudo-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));

// A copy of lib.sh and a script using it, in a folder an unprivileged user can read.
fs.mkdirSync(path.join(work, "scripts"));
fs.copyFileSync(path.join(ROOT, "scripts", "lib.sh"), path.join(work, "scripts", "lib.sh"));
fs.writeFileSync(
  path.join(work, "scripts", "job.sh"),
  '#!/usr/bin/env bash\nset -euo pipefail\n. "$(dirname "$0")/lib.sh"\nbecome_root "$0" "$@"\necho "ran as $(id -u) with $*"\n',
);
const stubs = path.join(work, "stubs");
fs.mkdirSync(stubs);
const calls = path.join(work, "calls");
// The stub records its arguments, one per line, and does not run anything.
fs.writeFileSync(path.join(stubs, "sudo"), `#!/bin/sh\nprintf '%s\\n' "$@" > ${calls}\n`, { mode: 0o755 });
fs.chmodSync(work, 0o755);
fs.writeFileSync(calls, "", { mode: 0o666 });
fs.chmodSync(calls, 0o666);

/** Runs job.sh as an unprivileged user with the given PATH. */
function asUser(pathVar: string, env: Record<string, string> = {}) {
  const job = path.join(work, "scripts", "job.sh");
  const asRoot = process.getuid?.() === 0;
  const argv = asRoot
    ? ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", `PATH=${pathVar}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "bash", job, "up", "--yes"]
    : ["env", `PATH=${pathVar}`, ...Object.entries(env).map(([k, v]) => `${k}=${v}`), "bash", job, "up", "--yes"];
  const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", cwd: work, timeout: 20_000 });
  return { status: r.status, out: (r.stdout ?? "") + (r.stderr ?? "") };
}

const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

test("as a user with sudo: the script runs itself again through sudo, keeping PATH and HAKUBE_* settings", () => {
  const r = asUser(`${stubs}:${SYSTEM_PATH}`, { HAKUBE_STACK: "local-external" });
  assert.equal(r.status, 0, r.out);
  assert.match(r.out, /not root: running job\.sh again through sudo/);
  const argv = fs.readFileSync(calls, "utf8").trim().split("\n");
  assert.equal(argv[0], "env");
  assert.ok(argv.includes(`PATH=${stubs}:${SYSTEM_PATH}`), `PATH kept: ${argv}`);
  assert.ok(argv.includes("HAKUBE_STACK=local-external"), `HAKUBE_STACK kept: ${argv}`);
  assert.ok(argv.includes("HAKUBE_VIA_SUDO=1"), `marks the second run: ${argv}`);
  assert.ok(!argv.some((a) => a.startsWith("HAKUBE_ROOT=")), "HAKUBE_ROOT is found again from the script's own folder");
  assert.deepEqual(argv.slice(-4), ["bash", path.join(work, "scripts", "job.sh"), "up", "--yes"], "the same script with the same arguments");
});

test("as a user without sudo: a clear message, exit 1, nothing run", () => {
  // A PATH with only the tools lib.sh uses, and no sudo.
  const bin = path.join(work, "bin");
  fs.mkdirSync(bin, { recursive: true });
  for (const tool of ["bash", "id", "dirname", "basename", "date", "env"]) {
    const found = SYSTEM_PATH.split(":").map((d) => path.join(d, tool)).find((f) => fs.existsSync(f));
    assert.ok(found, `${tool} is installed`);
    fs.symlinkSync(found, path.join(bin, tool));
  }
  const r = asUser(bin);
  assert.equal(r.status, 1, r.out);
  assert.match(r.out, /hakube: run as root: .*there is no sudo here \(log in as root, or install sudo\)/);
  assert.doesNotMatch(r.out, /ran as/);
});

test("still not root after sudo: stops instead of looping", () => {
  const r = asUser(`${stubs}:${SYSTEM_PATH}`, { HAKUBE_VIA_SUDO: "1" });
  assert.equal(r.status, 1, r.out);
  assert.match(r.out, /still not root after sudo/);
  assert.doesNotMatch(r.out, /ran as/);
});
