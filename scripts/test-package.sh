#!/usr/bin/env bash
# Proves that the npm package works from the registry: packs it (prepack builds the
# library), checks the tarball's file list, installs the tarball with its peer
# dependencies into a new project outside the repository, compiles a small program
# against it with strict tsc (CommonJS through `main`/`types`, and Node16 resolution
# through `exports`), runs it against Pulumi mocks, and imports the package from an ES
# module. Then builds the API docs (any TypeDoc warning fails). Exits non-zero on any
# failure; removes its temporary folders.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$(date +%s)
log() { printf '[package %4ss] %s\n' "$(( $(date +%s) - start ))" "$*"; }
fail() { printf '[package] FAIL: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/hakube-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
case "$work" in "$repo"/*) fail "temporary folder $work is inside the repository" ;; esac

if [ ! -x node_modules/.bin/tsc ] || [ ! -x node_modules/.bin/typedoc ]; then
  log "npm ci (the repository's dev dependencies are not installed)"
  npm ci --no-audit --no-fund
fi

# --- pack --------------------------------------------------------------------------
log "npm pack (prepack builds build/components with tsconfig.lib.json)"
mkdir -p "$work/pack"
npm pack --pack-destination "$work/pack" --loglevel=warn >"$work/pack.log" 2>&1 || { cat "$work/pack.log" >&2; fail "npm pack"; }
tarballs=("$work"/pack/*.tgz)
if [ "${#tarballs[@]}" -ne 1 ] || [ ! -f "${tarballs[0]}" ]; then fail "expected one tarball in $work/pack, got: ${tarballs[*]}"; fi
tarball=${tarballs[0]}
log "tarball $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"

# The tarball holds the compiled library, its declarations and the docs files, nothing else.
tar -tzf "$tarball" | sed 's|^package/||' | sort >"$work/files.txt"
for required in package.json README.md LICENSE CHANGELOG.md build/components/index.js build/components/index.d.ts \
  build/components/controlplane/haControlPlane.js build/components/controlplane/haControlPlane.d.ts; do
  grep -qxF "$required" "$work/files.txt" || fail "tarball lacks $required"
done
unexpected=$(grep -vxE 'package\.json|README\.md|LICENSE|CHANGELOG\.md|build/components/.+\.(js|d\.ts)' "$work/files.txt" || true)
[ -z "$unexpected" ] || fail "tarball has unexpected files: $(echo "$unexpected" | tr '\n' ' ')"
js=$(grep -c '\.js$' "$work/files.txt")
dts=$(grep -c '\.d\.ts$' "$work/files.txt")
sources=$(find components -name '*.ts' | wc -l)
if [ "$js" -ne "$sources" ] || [ "$dts" -ne "$sources" ]; then
  fail "expected $sources .js and .d.ts files (one per components/*.ts), got $js and $dts"
fi
log "tarball files: $(wc -l <"$work/files.txt") ($js .js, $dts .d.ts, package.json, README.md, LICENSE, CHANGELOG.md)"

# --- a new project outside the repository ---------------------------------------------
consumer="$work/consumer"
mkdir -p "$consumer/src"
# Peer dependencies at the versions this repository develops and tests against, and
# the compiler and Node types it uses.
# shellcheck disable=SC2016 # JavaScript, not shell
mapfile -t deps < <(node -e '
  const p = require(process.argv[1]);
  const names = [...Object.keys(p.peerDependencies), "typescript", "@types/node"];
  for (const n of names) {
    const v = p.devDependencies[n];
    if (!v) { console.error(`no devDependency version for ${n}`); process.exit(1); }
    console.log(`${n}@${v}`);
  }' "$repo/package.json")
cat >"$consumer/package.json" <<'EOF'
{
  "name": "hakube-package-test",
  "version": "0.0.0",
  "private": true,
  "description": "A project that uses hakube from its packed tarball"
}
EOF
log "npm install in $consumer: the tarball, ${deps[*]}"
# --ignore-scripts: the Pulumi packages' install scripts download provider plugins,
# which a program run against mocks does not use.
(cd "$consumer" && npm install --no-audit --no-fund --ignore-scripts --save-exact --loglevel=error "$tarball" "${deps[@]}") \
  >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; fail "npm install"; }
(cd "$consumer" && npm ls --all >/dev/null 2>"$work/ls.log") || { cat "$work/ls.log" >&2; fail "npm ls: missing or invalid (peer) dependencies"; }
[ ! -e "$consumer/node_modules/hakube/node_modules/@pulumi/pulumi" ] || fail "hakube got a private copy of @pulumi/pulumi (peer dependency not shared)"
log "installed hakube $(node -p 'require(process.argv[1]).version' "$consumer/node_modules/hakube/package.json") with its peers; npm ls is clean"

cat >"$consumer/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "module": "node16",
    "moduleResolution": "node16",
    "lib": ["ES2022"],
    "types": ["node"],
    "strict": true,
    "noUnusedLocals": true,
    "noImplicitReturns": true,
    "exactOptionalPropertyTypes": false,
    "esModuleInterop": true,
    "skipLibCheck": true,
    "outDir": "out",
    "rootDir": "src"
  },
  "include": ["src/**/*.ts"]
}
EOF
# The same program type-checked through the classic `main`/`types` resolution.
cat >"$consumer/tsconfig.node10.json" <<'EOF'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "module": "commonjs", "moduleResolution": "node10", "noEmit": true }
}
EOF
# hakube's own declarations checked too (skipLibCheck off: they must compile in strict
# mode against the peers' types, at the pinned versions above).
cat >"$consumer/tsconfig.decls.json" <<'EOF'
{
  "extends": "./tsconfig.json",
  "compilerOptions": { "noEmit": true, "skipLibCheck": false, "noUnusedLocals": false },
  "include": ["node_modules/hakube/build/components/**/*.d.ts"]
}
EOF

cat >"$consumer/src/main.ts" <<'EOF'
// Uses hakube as a registry user would: only through the package name.
import * as assert from "node:assert/strict";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import {
  ApiEndpoint,
  HaControlPlane,
  HaControlPlaneArgs,
  Host,
  KeepalivedOptions,
  endpointUrl,
} from "hakube";

const PRIV = ["PRIVATE", "KEY"].join(" ");
const pem = (label: string, name: string) => `-----BEGIN ${label}-----\nmock-${name}\n-----END ${label}-----\n`;

pulumi.runtime.setMocks(
  {
    newResource(args: pulumi.runtime.MockResourceArgs) {
      const state: Record<string, unknown> = { ...args.inputs };
      switch (args.type) {
        case "tls:index/privateKey:PrivateKey":
          state.privateKeyPem = pem(PRIV, args.name);
          state.publicKeyPem = pem("PUBLIC KEY", args.name);
          break;
        case "tls:index/selfSignedCert:SelfSignedCert":
        case "tls:index/locallySignedCert:LocallySignedCert":
          state.certPem = pem("CERTIFICATE", args.name);
          break;
        case "tls:index/certRequest:CertRequest":
          state.certRequestPem = pem("CERTIFICATE REQUEST", args.name);
          break;
        case "command:local:Command":
          state.stdout = Buffer.alloc(32, 9).toString("base64");
          break;
        case "command:remote:Command":
          state.stdout = "";
          break;
      }
      return { id: `${args.name}-id`, state };
    },
    call(args: pulumi.runtime.MockCallArgs) {
      return args.inputs;
    },
  },
  "hakube-package-test",
  "test",
  false,
);

interface Registered {
  readonly type: string;
  readonly name: string;
  readonly resource: pulumi.Resource;
  readonly parent?: pulumi.Resource;
}
const registered: Registered[] = [];

function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}

const hosts: Host[] = [11, 12, 13].map((n, i) => ({
  name: `cp-${i + 1}`,
  address: `10.0.0.${n}`,
  connection: pulumi.secret({ host: `10.0.0.${n}`, user: "root", privateKey: "SSH-PRIVATE-KEY" }),
}));
const keepalived: KeepalivedOptions = { virtualIp: "10.0.0.100" };
const args: HaControlPlaneArgs = {
  controlPlaneHosts: hosts,
  loadBalancer: { keepalived },
  binaries: { etcd: { kind: "release", digest: `sha256:${"a".repeat(64)}` } },
};

async function main(): Promise<void> {
  // One copy of @pulumi/pulumi, shared with hakube (a peer dependency, not a private one).
  const hakubeDir = path.dirname(require.resolve("hakube"));
  assert.equal(require.resolve("@pulumi/pulumi", { paths: [hakubeDir] }), require.resolve("@pulumi/pulumi"));

  let cluster: HaControlPlane | undefined;
  await pulumi.runtime.runInPulumiStack(async () => {
    pulumi.runtime.registerStackTransformation((t) => {
      registered.push({ type: t.type, name: t.name, resource: t.resource, parent: t.opts.parent });
      return undefined;
    });
    cluster = new HaControlPlane("smoke", args);
    return {};
  });
  assert.ok(cluster, "HaControlPlane constructed");

  const types = new Set(registered.map((r) => r.type));
  for (const component of ["HaControlPlane", "ClusterPki", "EtcdCluster", "ApiServerPool", "KeepalivedLoadBalancer", "LeaderElectedControllers"]) {
    assert.ok(types.has(`hakube:index:${component}`), `registered hakube:index:${component}; have ${[...types].join(", ")}`);
  }
  for (const type of ["tls:index/privateKey:PrivateKey", "command:remote:Command", "pulumi:providers:kubernetes"]) {
    assert.ok(types.has(type), `registered ${type}`);
  }
  const top = registered.filter((r) => r.type === "hakube:index:HaControlPlane");
  assert.equal(top.length, 1);
  assert.equal(top[0].resource, cluster);
  for (const r of registered) {
    if (r === top[0]) continue;
    let ancestor: Registered | undefined = r;
    while (ancestor?.parent) ancestor = registered.find((x) => x.resource === ancestor!.parent);
    assert.equal(ancestor?.resource, cluster, `${r.name} (${r.type}) descends from the HaControlPlane`);
    assert.ok(r.name.startsWith("smoke-"), `${r.name} is named after its component`);
  }
  const steps = registered.filter((r) => r.type === "command:remote:Command");

  const balancer: ApiEndpoint = cluster.loadBalancer;
  assert.equal(await valueOf(endpointUrl(balancer)), "https://10.0.0.100:8443");
  assert.equal(await valueOf(cluster.endpoint), "https://10.0.0.100:8443");
  assert.equal(await pulumi.isSecret(cluster.adminKubeconfig), true, "adminKubeconfig is a secret");
  assert.match(await valueOf(cluster.adminKubeconfig), /server: "https:\/\/10\.0\.0\.100:8443"/);
  assert.equal((await valueOf(cluster.etcdEndpoints)).length, 3);

  // Invalid input fails at construction with a ResourceError of the shared @pulumi/pulumi.
  assert.throws(
    () => new HaControlPlane("bad", { ...args, controlPlaneHosts: [...hosts, { ...hosts[0], name: "cp-4", address: "10.0.0.14" }] }),
    (e: unknown) => {
      assert.ok(e instanceof pulumi.ResourceError, `a ResourceError, got ${String(e)}`);
      assert.match(e.message, /^invalid argument controlPlaneHosts \(stacked etcd\): got "4 host\(s\)"; expected an odd number of etcd members/);
      return true;
    },
  );
  assert.throws(
    () => new HaControlPlane("bad-vip", { ...args, loadBalancer: { keepalived: { virtualIp: "10.0.0.11" } } }),
    (e: unknown) => e instanceof pulumi.ResourceError && /invalid argument loadBalancer\.keepalived\.virtualIp: got "10\.0\.0\.11"/.test(e.message),
  );

  console.log(`ok: ${registered.length} resources registered (${types.size} types, ${steps.length} remote steps), all under hakube:index:HaControlPlane; endpoint, secret kubeconfig and ResourceError checks passed`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
EOF

cat >"$consumer/esm.mjs" <<'EOF'
// An ES module importing the CommonJS package by name (named exports through Node's
// CommonJS interop).
import { HaControlPlane, ClusterPki, invalid } from "hakube";
import * as assert from "node:assert/strict";
assert.equal(typeof HaControlPlane, "function");
assert.equal(typeof ClusterPki, "function");
assert.equal(typeof invalid, "function");
console.log("ok: ES module import");
EOF

log "tsc --strict, module node16 (resolves hakube through package.json exports)"
(cd "$consumer" && node_modules/.bin/tsc -p tsconfig.json) || fail "tsc -p tsconfig.json"
log "tsc --strict, module commonjs / node10 resolution (through main/types)"
(cd "$consumer" && node_modules/.bin/tsc -p tsconfig.node10.json) || fail "tsc -p tsconfig.node10.json"
log "tsc --strict on hakube's own declarations (skipLibCheck off)"
(cd "$consumer" && node_modules/.bin/tsc -p tsconfig.decls.json) || fail "hakube's .d.ts files do not type-check"
log "node out/main.js (Pulumi mocks)"
(cd "$consumer" && node out/main.js) || fail "the program against Pulumi mocks"
log "node esm.mjs"
(cd "$consumer" && node esm.mjs) || fail "ES module import"

# --- API docs ----------------------------------------------------------------------------
log "npm run docs (TypeDoc, warnings are errors)"
npm run --silent docs >"$work/docs.log" 2>&1 || { cat "$work/docs.log" >&2; fail "npm run docs"; }
[ -f build/docs/index.html ] || fail "build/docs/index.html missing"
log "API docs in build/docs ($(find build/docs -name '*.html' | wc -l) pages)"

rm -rf "$work"
log "ok (temporary folders removed)"
