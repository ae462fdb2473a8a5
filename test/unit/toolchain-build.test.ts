// toolchain/build.sh when two runs want the same family at once (.ci/run builds the
// toolchain in the background while the suite's own setup asks for what it needs): the
// family is built once, the second run waits for it and finds it cached; bin/ links the
// newest Kubernetes version built so far, so a run that starts before the newer version
// is built has a kubectl. The real build.sh runs against a stub `go` that records each
// build and takes a few seconds over it.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

const ROOT = path.resolve(__dirname, "..", "..", "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-toolchain-"));
after(() => fs.rmSync(work, { recursive: true, force: true }));
const stubs = path.join(work, "stubs");
const tc = path.join(work, "toolchain");
const builds = path.join(work, "builds");
fs.mkdirSync(stubs);
fs.writeFileSync(builds, "");

// The stub answers what build.sh asks of go: its version, a module's pinned version (from
// the go.mod of the folder it runs in), the packages a build needs, and a build, which
// writes each program named by -o as a small script after 3 s and records the call.
fs.writeFileSync(
  path.join(stubs, "go"),
  `#!/bin/bash
case "$1" in
  env) echo go1.26.0 ;;
  list)
    if [ "$2" = -m ]; then awk -v m="$5" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' go.mod; else echo one/package; fi ;;
  build)
    out=""; prev=""
    for a in "$@"; do [ "$prev" = -o ] && out=$a; prev=$a; done
    sleep 3
    printf '%s\\n' "$out" >> ${builds}
    printf '#!/bin/sh\\necho stub\\n' > "$out"; chmod 0755 "$out" ;;
  *) echo "stub go: $*" >&2; exit 2 ;;
esac
`,
  { mode: 0o755 },
);

const env = { ...process.env, PATH: `${stubs}:${process.env.PATH}`, HAKUBE_TOOLCHAIN_DIR: tc, HAKUBE_GO_DIR: path.join(work, "go") };
const buildSh = path.join(ROOT, "toolchain", "build.sh");

function buildAsync(...families: string[]): Promise<{ status: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn("bash", [buildSh, ...families], { env });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d));
    child.stderr.on("data", (d: Buffer) => (out += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, out });
    });
  });
}

test("two runs of the same family at once: built once, the second waits for it and finds it cached", async () => {
  const first = buildAsync("actionlint");
  // The second starts once the first holds the family (its progress line is out).
  const log = path.join(tc, "logs", "actionlint.log");
  for (let i = 0; i < 100 && !fs.existsSync(log); i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(fs.existsSync(log), "the first run started building");
  const second = buildAsync("actionlint");
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 0, a.out);
  assert.equal(b.status, 0, b.out);
  const built = fs.readFileSync(builds, "utf8").trim().split("\n").filter((l) => l.endsWith("/actionlint"));
  assert.equal(built.length, 1, `one build of actionlint: ${built.join(", ")}`);
  assert.match(a.out, /actionlint: done in \d+s/);
  assert.match(b.out, /actionlint: another run is building it; waiting for that build/);
  assert.match(b.out, /actionlint: cached \(/);
  assert.ok(fs.statSync(path.join(tc, "bin", "actionlint")).isFile(), "bin/actionlint linked");
});

/** A Kubernetes family folder as build.sh leaves it: its binaries and a complete marker. */
function fakeKubernetes(version: string): void {
  const dir = path.join(tc, `kubernetes-${version}`);
  fs.mkdirSync(dir, { recursive: true });
  for (const b of ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"]) {
    fs.writeFileSync(path.join(dir, b), `#!/bin/sh\necho ${version}\n`, { mode: 0o755 });
  }
  fs.writeFileSync(path.join(dir, ".complete"), "inputs=made-by-the-test\n");
}

/** The Kubernetes versions build.sh builds, oldest first (its --versions). */
function versions(): string[] {
  return spawnSync("bash", [buildSh, "--versions"], { encoding: "utf8" }).stdout.trim().split("\n");
}

test("bin/ links the newest Kubernetes version built so far, and the newer one once it is built", () => {
  const [older, newer] = versions();
  assert.ok(older && newer, `build.sh lists two versions: ${versions()}`);
  fakeKubernetes(older);
  const once = spawnSync("bash", [buildSh, "actionlint"], { env, encoding: "utf8", timeout: 60_000 });
  assert.equal(once.status, 0, once.stdout + once.stderr);
  const kubectl = () => spawnSync(path.join(tc, "bin", "kubectl"), { encoding: "utf8" }).stdout.trim();
  assert.equal(kubectl(), older, "only the older version is built: its kubectl");
  fakeKubernetes(newer);
  const again = spawnSync("bash", [buildSh, "actionlint"], { env, encoding: "utf8", timeout: 60_000 });
  assert.equal(again.status, 0, again.stdout + again.stderr);
  assert.equal(kubectl(), newer, "the newer version is built: its kubectl");
});

test("every family by default, in the order the suite needs them: the older Kubernetes version's before the newer one's", () => {
  const [older, newer] = versions();
  const order = spawnSync("bash", [buildSh, "--plan"], { env, encoding: "utf8" });
  assert.equal(order.status, 0, order.stderr);
  assert.equal(
    order.stdout.trim().split("\n").join(" "),
    `pulumi plugins etcd actionlint versitygw k8sprovider images kubernetes-${older} node-${older} kubernetes-${newer} node-${newer}`,
  );
});
