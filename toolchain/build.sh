#!/usr/bin/env bash
# Builds hakube's offline toolchain from Go modules into a cache outside the repo:
#   pulumi      the Pulumi CLI at the version of @pulumi/pulumi in package.json
#   plugins     hakube's own pulumi-language-nodejs and pulumi-resource-{command,tls}
#               (see toolchain/README.md for why they are not the upstream ones)
#   kubernetes  kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, for
#               every version in K8S_VERSIONS (one folder and one marker each)
#   etcd        etcd, etcdctl, etcdutl
#   actionlint  the GitHub workflow linter (scripts/lint-workflows.sh)
#   versitygw   the S3-compatible server the local stack keeps etcd backups in
#   k8sprovider the upstream Pulumi Kubernetes provider (pulumi-resource-kubernetes)
#   node        kubelet and kube-proxy (newest Kubernetes version), containerd with its
#               shim and ctr, runc, the CNI plugins (bridge, host-local, loopback, portmap)
#   images      image archives for the worker nodes, built from local binaries: pause and
#               probe (toolchain/images) and CoreDNS (built here from its module)
# Each family lands in $HAKUBE_TOOLCHAIN_DIR/<family>-<version>/ with a .complete
# marker written only after success; a family whose marker matches its inputs is
# skipped. Finally $HAKUBE_TOOLCHAIN_DIR/bin holds links to every binary, the
# provider plugins are installed into $PULUMI_HOME/plugins, and env.sh is written.
#
# Usage: toolchain/build.sh [--force] [--update-pins] [family ...]
#   family         pulumi, plugins, kubernetes (all versions), kubernetes-vX.Y.Z
#                  (one listed version), etcd, actionlint, versitygw, k8sprovider, node
#                  (all versions), node-vX.Y.Z (one listed version) or images; default: all
#   --force        rebuild the named (or all) families even if cached
#   --update-pins  rewrite toolchain/pulumi/go.mod to package.json's @pulumi/pulumi
#                  version (needs the Go module proxy), then build
#   --versions     print the Kubernetes versions it builds, oldest first, and stop
#   --plan         print the families it would go through, in order, and stop
set -Eeuo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
TC="${HAKUBE_TOOLCHAIN_DIR:-/var/cache/hakube/toolchain}"
GOBASE="${HAKUBE_GO_DIR:-/var/cache/hakube/go}"

# Pins that are not read from package.json. Keep in step with the go.mod files.
# Kubernetes: every version listed is built into kubernetes-<version>/ from its own Go
# module toolchain/k8s/<version>/ (k8s.io/kubernetes at that version, staging modules at
# v0.<minor>.<patch>); the newest built is linked into bin/. The local stack runs the newest
# (v1.37.2); the upgrade test starts from v1.36.5. Also served: v1.36.1, v1.36.3.
K8S_VERSIONS=(v1.36.5 v1.37.2)
ETCD_VERSION=v3.6.16
ACTIONLINT_VERSION=v1.7.12
VERSITYGW_VERSION=v1.8.0
# The Pulumi Kubernetes provider: the commit tagged v4.25.0 (served as this pseudo-version),
# installed under the version of @pulumi/kubernetes in package.json.
K8SPROVIDER_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
K8SPROVIDER_UPSTREAM=v4.25.0
CONTAINERD_VERSION=v2.4.2
RUNC_VERSION=v1.5.3
CNI_VERSION=v1.10.0
COREDNS_VERSION=v1.15.0
DEFAULT_PULUMI=3.260.0
DEFAULT_COMMAND=1.2.1
DEFAULT_TLS=5.6.1
DEFAULT_KUBERNETES=4.34.2

FORCE=0
UPDATE_PINS=0
PLAN=0
FAMILIES=()
for a in "$@"; do
  case "$a" in
    --force) FORCE=1 ;;
    --update-pins) UPDATE_PINS=1 ;;
    -h|--help) sed -n '2,/^set -/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --versions) printf '%s\n' "${K8S_VERSIONS[@]}" | sort -V; exit 0 ;;
    --plan) PLAN=1 ;;
    pulumi|plugins|kubernetes|etcd|actionlint|versitygw|k8sprovider|node|images) FAMILIES+=("$a") ;;
    kubernetes-v*|node-v*)
      [[ " ${K8S_VERSIONS[*]} " == *" ${a#*-} "* ]] \
        || { echo "build.sh: ${a#*-} is not in K8S_VERSIONS (${K8S_VERSIONS[*]}) in toolchain/build.sh" >&2; exit 2; }
      FAMILIES+=("$a") ;;
    *) echo "build.sh: unknown argument '$a' (families: pulumi plugins kubernetes kubernetes-<version> etcd actionlint versitygw k8sprovider node node-<version> images)" >&2; exit 2 ;;
  esac
done
# Default: every family, in the order that lets the end-to-end suite start soonest: what the
# local stack runs on its oldest Kubernetes version first (the suite starts there), the
# newer versions last (the suite's upgrade needs them only later: .ci/run builds them in
# the background while the first tests run).
if [ ${#FAMILIES[@]} = 0 ]; then
  FAMILIES=(pulumi plugins etcd actionlint versitygw k8sprovider images)
  for v in $(printf '%s\n' "${K8S_VERSIONS[@]}" | sort -V); do FAMILIES+=("kubernetes-$v" "node-$v"); done
fi
[ "$PLAN" = 0 ] || { printf '%s\n' "${FAMILIES[@]}"; exit 0; }

T0=$(date +%s)
say() { printf '[toolchain %4ss] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
CURRENT="" CURRENT_FAMILY="" CURRENT_DIR=""
on_error() {
  local rc=$? line=${BASH_LINENO[0]} cmd=$BASH_COMMAND
  if [ -z "$CURRENT" ]; then
    echo "toolchain: FAILED (exit $rc) at build.sh line $line: $cmd" >&2
    echo "  what to do: read the error above; 'go list -m' failures mean the Go module proxy is" >&2
    echo "  unreachable or a pin in toolchain/*/go.mod (toolchain/k8s/<version>/go.mod) is not" >&2
    echo "  served; run 'go mod tidy' there." >&2
    exit "$rc"
  fi
  {
    echo
    echo "toolchain: FAILED while building '$CURRENT' (exit $rc)."
    echo "  log:    $TC/logs/$CURRENT.log (last lines above)"
    [ -z "$CURRENT_DIR" ] || echo "  nothing half-built was kept: $CURRENT_DIR.tmp is removed on the next run."
    echo "  what to do: check the Go module proxy is reachable (go env GOPROXY), that"
    echo "  $GOBASE has free space, and that go >= 1.26 is on PATH; then run"
    echo "  toolchain/build.sh $CURRENT_FAMILY again. A go.sum mismatch means the pins in"
    echo "  toolchain/*/go.mod (toolchain/k8s/<version>/go.mod) were edited by hand: run"
    echo "  'go mod tidy' in that folder."
  } >&2
  exit "$rc"
}
trap on_error ERR

command -v go >/dev/null || { echo "toolchain: 'go' is not on PATH; install Go >= 1.26 (e.g. /usr/local/go/bin)." >&2; exit 1; }
GOV=$(go env GOVERSION); GOMINOR=$(echo "$GOV" | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "$GOMINOR" -ge 26 ] 2>/dev/null || { echo "toolchain: $GOV is too old; Kubernetes 1.36 needs Go >= 1.26." >&2; exit 1; }

export GOPATH="$GOBASE" GOMODCACHE="$GOBASE/pkg/mod" GOCACHE="$GOBASE/build"
export GOFLAGS="-modcacherw -mod=readonly" CGO_ENABLED=0 GOTOOLCHAIN=local GOWORK=off
mkdir -p "$TC/logs" "$TC/locks" "$GOBASE"

# Versions from package.json (dependencies, then devDependencies), defaults otherwise.
npm_version() {
  local pkg="$1" def="$2" v=""
  if [ -f "$REPO/package.json" ] && command -v node >/dev/null; then
    v=$(node -e '
      const p = require(process.argv[1]); const n = process.argv[2];
      const v = (p.dependencies || {})[n] || (p.devDependencies || {})[n] || "";
      process.stdout.write(v.replace(/^[\^~=v]+/, ""));' "$REPO/package.json" "$pkg")
  fi
  echo "${v:-$def}"
}
PULUMI_VERSION=$(npm_version @pulumi/pulumi "$DEFAULT_PULUMI")
COMMAND_VERSION=$(npm_version @pulumi/command "$DEFAULT_COMMAND")
TLS_VERSION=$(npm_version @pulumi/tls "$DEFAULT_TLS")
KUBERNETES_VERSION=$(npm_version @pulumi/kubernetes "$DEFAULT_KUBERNETES")
for v in "$PULUMI_VERSION" "$COMMAND_VERSION" "$TLS_VERSION" "$KUBERNETES_VERSION"; do
  [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "toolchain: package.json must pin exact versions of @pulumi/*; got '$v'." >&2; exit 1; }
done

pinned() { (cd "$1" && go list -m -f '{{.Version}}' "$2"); }
if [ "$UPDATE_PINS" = 1 ]; then
  say "updating toolchain/pulumi/go.mod to v$PULUMI_VERSION"
  (cd "$HERE/pulumi" && GOFLAGS=-modcacherw go get "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION" && GOFLAGS=-modcacherw go mod tidy)
fi
PIN=$(pinned "$HERE/pulumi" github.com/pulumi/pulumi/pkg/v3)
if [ "$PIN" != "v$PULUMI_VERSION" ]; then
  echo "toolchain: package.json wants @pulumi/pulumi $PULUMI_VERSION but toolchain/pulumi/go.mod pins $PIN." >&2
  echo "  Run: toolchain/build.sh --update-pins   (the module proxy must serve pkg/v3 v$PULUMI_VERSION)" >&2
  exit 1
fi
for v in "${K8S_VERSIONS[@]}"; do
  [[ "$v" =~ ^v1\.[0-9]+\.[0-9]+$ ]] || { echo "toolchain: K8S_VERSIONS in build.sh holds '$v'; want v1.<minor>.<patch>." >&2; exit 1; }
  m="$HERE/k8s/$v/go.mod"
  if [ ! -f "$m" ]; then
    echo "toolchain: K8S_VERSIONS in build.sh lists $v but toolchain/k8s/$v/go.mod does not exist." >&2
    echo "  Make it from another version's folder (see 'Changing versions' in toolchain/README.md)." >&2
    exit 1
  fi
  PIN=$(pinned "$HERE/k8s/$v" k8s.io/kubernetes)
  [ "$PIN" = "$v" ] || { echo "toolchain: K8S_VERSIONS in build.sh lists $v but toolchain/k8s/$v/go.mod pins k8s.io/kubernetes $PIN." >&2; exit 1; }
  # Every staging module must be replaced by its release for this version.
  BAD=$(awk -v want="v0.${v#v1.}" '/=>/ && $(NF-1) ~ /^k8s\.io\// && $NF != want { printf " %s@%s", $(NF-1), $NF }' "$m")
  [ -z "$BAD" ] || { echo "toolchain: toolchain/k8s/$v/go.mod replaces staging modules with other versions than v0.${v#v1.}:$BAD" >&2; exit 1; }
done
K8S_LATEST=$(printf '%s\n' "${K8S_VERSIONS[@]}" | sort -V | tail -n 1)
PIN=$(pinned "$HERE/etcd" go.etcd.io/etcd/server/v3)
[ "$PIN" = "$ETCD_VERSION" ] || { echo "toolchain: ETCD_VERSION=$ETCD_VERSION in build.sh but toolchain/etcd/go.mod pins $PIN." >&2; exit 1; }
PIN=$(pinned "$HERE/actionlint" github.com/rhysd/actionlint)
[ "$PIN" = "$ACTIONLINT_VERSION" ] || { echo "toolchain: ACTIONLINT_VERSION=$ACTIONLINT_VERSION in build.sh but toolchain/actionlint/go.mod pins $PIN." >&2; exit 1; }
PIN=$(pinned "$HERE/versitygw" github.com/versity/versitygw)
[ "$PIN" = "$VERSITYGW_VERSION" ] || { echo "toolchain: VERSITYGW_VERSION=$VERSITYGW_VERSION in build.sh but toolchain/versitygw/go.mod pins $PIN." >&2; exit 1; }
# check_pin FOLDER MODULE WANT VARIABLE
check_pin() {
  local got; got=$(pinned "$HERE/$1" "$2")
  [ "$got" = "$3" ] || { echo "toolchain: $4=$3 in build.sh but toolchain/$1/go.mod pins $2 $got." >&2; exit 1; }
}
check_pin k8sprovider github.com/pulumi/pulumi-kubernetes/provider/v4 "$K8SPROVIDER_MODULE_VERSION" K8SPROVIDER_MODULE_VERSION
check_pin containerd github.com/containerd/containerd/v2 "$CONTAINERD_VERSION" CONTAINERD_VERSION
check_pin runc github.com/opencontainers/runc "$RUNC_VERSION" RUNC_VERSION
check_pin cni github.com/containernetworking/plugins "$CNI_VERSION" CNI_VERSION
check_pin coredns github.com/coredns/coredns "$COREDNS_VERSION" COREDNS_VERSION

# A family's inputs: its go.mod, go.sum, own sources, the Go version and the recipe
# (bump hakube-toolchain-N when a build command below changes in a way that matters).
# k8s= is the version built for kubernetes-<version>, and the newest one for the other
# families (from when only one was built; kept so that existing markers stay valid).
recipe() {
  echo "hakube-toolchain-1 k8s=$1 etcd=$ETCD_VERSION pulumi=$PULUMI_VERSION command=$COMMAND_VERSION tls=$TLS_VERSION kubernetes=$KUBERNETES_VERSION"
}
# inputs_hash K8S-VERSION PATH...
inputs_hash() {
  local k8s="$1"; shift
  { echo "$GOV"; recipe "$k8s"; find "$@" -type d -name '*test' -prune -o -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -print0 | sort -z | xargs -0 cat; } | sha256sum | cut -c1-16
}

# build_family FAMILY LABEL DIR-NAME HASH FUNCTION [ARG...]
# LABEL names the log and the progress lines; FUNCTION gets the output folder and ARGs.
build_family() {
  local family="$1" fam="$2" dir="$TC/$3" hash="$4" fn="$5"; shift 5
  # One build of a family at a time on this machine: another run that wants it (the
  # suite's own setup while .ci/run's background build is at it) waits, then finds it
  # cached. The lock is the open file; it goes with the process that holds it.
  local lockfd waited=0
  exec {lockfd}>"$TC/locks/$fam.lock"
  if ! flock -n "$lockfd"; then
    say "$fam: another run is building it; waiting for that build"
    until flock -w 30 "$lockfd"; do
      waited=$((waited + 30))
      say "$fam: still waiting for the other build ($(minutes "$waited") so far; log: $TC/logs/$fam.log)"
    done
  fi
  if [ "$FORCE" = 0 ] && [ -f "$dir/.complete" ] && grep -qx "inputs=$hash" "$dir/.complete"; then
    say "$fam: cached ($dir)"
    exec {lockfd}>&-
    return 0
  fi
  CURRENT="$fam" CURRENT_FAMILY="$family" CURRENT_DIR="$dir"
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
  say "$fam: building into $dir (log: $TC/logs/$fam.log)"
  local t=$(date +%s)
  local rc=0 pid n=0 total=""
  # The build runs in the background; every 30 s a line says how many of the packages
  # it needs `go build -v` has compiled and, from the rate so far, about how long is left
  # (packages already in the Go build cache are not compiled again, so the estimate
  # errs long). The count comes from `go list -deps`, written first by the job itself.
  rm -f "$TC/logs/$fam.total"
  (
    trap - ERR; set -e
    "${fn}_packages" "$@" >"$TC/logs/$fam.packages"
    (cd "$BUILD_DIR" && xargs go list -deps <"$TC/logs/$fam.packages" 2>/dev/null | wc -l) >"$TC/logs/$fam.total.tmp" || true
    mv "$TC/logs/$fam.total.tmp" "$TC/logs/$fam.total"
    "$fn" "$dir.tmp" "$@"
  ) >"$TC/logs/$fam.log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    n=$((n + 1))
    if [ $((n % 30)) = 0 ] && kill -0 "$pid" 2>/dev/null; then
      [ -n "$total" ] || total=$(cat "$TC/logs/$fam.total" 2>/dev/null || true)
      say "$fam: $(progress "$n" "$total" "$(grep -cv '^go: ' "$TC/logs/$fam.log" || true)")"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 30 "$TC/logs/$fam.log" >&2
    false
  fi
  local secs=$(( $(date +%s) - t ))
  printf 'inputs=%s\nbuilt=%s\nseconds=%s\ngo=%s\n' "$hash" "$(date -u +%FT%TZ)" "$secs" "$GOV" >"$dir.tmp/.complete"
  # Swap by two renames, so the folder is missing for an instant at most; bin/ holds
  # hard links and is unaffected.
  rm -rf "$dir.old"
  [ ! -e "$dir" ] || mv "$dir" "$dir.old"
  mv "$dir.tmp" "$dir"
  rm -rf "$dir.old"
  CURRENT="" CURRENT_FAMILY="" CURRENT_DIR=""
  exec {lockfd}>&-
  say "$fam: done in ${secs}s"
}

# progress ELAPSED-SECONDS TOTAL-PACKAGES COMPILED-PACKAGES: one line for the log.
progress() {
  local secs="$1" total="$2" done="$3"
  local line
  line="still building, $(minutes "$secs") so far"
  if [ -n "$total" ] && [ "$total" -gt 0 ] 2>/dev/null; then
    [ "$done" -le "$total" ] || done=$total
    line="$line; $done of $total packages ($(( done * 100 / total ))%)"
    if [ "$done" -ge $(( total / 20 + 1 )) ]; then
      if [ "$done" -ge "$total" ]; then
        line="$line, linking"
      else
        line="$line, about $(minutes $(( secs * (total - done) / done ))) left"
      fi
    fi
  fi
  echo "$line"
}
minutes() { if [ "$1" -ge 60 ]; then printf '%dm%02ds' $(( $1 / 60 )) $(( $1 % 60 )); else printf '%ds' "$1"; fi; }

PLUGINS_DIR="plugins-v$PULUMI_VERSION-command-$COMMAND_VERSION-tls-$TLS_VERSION"
K8SPROVIDER_DIR="k8sprovider-$K8SPROVIDER_UPSTREAM-as-$KUBERNETES_VERSION"
# The images' references, as the local stack's pods name them (see components/workers).
IMAGE_PAUSE="hakube.local/pause:1"
IMAGE_PROBE="hakube.local/probe:1"
IMAGE_COREDNS="hakube.local/coredns:$COREDNS_VERSION"
LDPULUMI="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION"

# Each family: b_<name> OUT [ARG] builds; b_<name>_packages [ARG] prints its main
# packages (relative to BUILD_DIR, which b_<name>_packages sets as a global first).
b_pulumi_packages() { BUILD_DIR="$HERE/pulumi"; echo github.com/pulumi/pulumi/pkg/v3/cmd/pulumi; }
b_plugins_packages() { BUILD_DIR="$HERE/pulumi"; echo ./cmd/pulumi-language-nodejs ./cmd/pulumi-resource-command ./cmd/pulumi-resource-tls; }
b_kubernetes_packages() {
  BUILD_DIR="$HERE/k8s/$1"
  echo k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
}
b_etcd_packages() { BUILD_DIR="$HERE/etcd"; echo go.etcd.io/etcd/server/v3 go.etcd.io/etcd/etcdctl/v3 go.etcd.io/etcd/etcdutl/v3; }
b_actionlint_packages() { BUILD_DIR="$HERE/actionlint"; echo github.com/rhysd/actionlint/cmd/actionlint; }
b_versitygw_packages() { BUILD_DIR="$HERE/versitygw"; echo github.com/versity/versitygw/cmd/versitygw; }
b_k8sprovider_packages() { BUILD_DIR="$HERE/k8sprovider"; echo github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider; }
b_node_packages() {
  BUILD_DIR="$HERE/k8s/$1"
  echo k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}
b_images_packages() { BUILD_DIR="$HERE/coredns"; echo github.com/coredns/coredns; }

b_pulumi() {
  cd "$HERE/pulumi"
  go build -v -trimpath -ldflags "$LDPULUMI" -o "$1/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  "$1/pulumi" version
}

b_plugins() {
  cd "$HERE/pulumi"
  go build -v -trimpath -ldflags "-s -w -X main.version=$PULUMI_VERSION" -o "$1/pulumi-language-nodejs" ./cmd/pulumi-language-nodejs
  go build -v -trimpath -ldflags "-s -w -X main.version=$COMMAND_VERSION" -o "$1/pulumi-resource-command" ./cmd/pulumi-resource-command
  go build -v -trimpath -ldflags "-s -w -X main.version=$TLS_VERSION" -o "$1/pulumi-resource-tls" ./cmd/pulumi-resource-tls
}

# k8s_ldflags VERSION: linker flags that stamp a Kubernetes program with its version (run
# in the version's module folder: the build date is the module's).
k8s_ldflags() {
  local version="$1" minor date ld="-s -w" k
  minor=$(echo "$version" | cut -d. -f2)
  date=$(go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
  for k in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
    ld="$ld -X $k.gitVersion=$version -X $k.gitMajor=1 -X $k.gitMinor=$minor -X $k.gitTreeState=clean -X $k.buildDate=$date"
  done
  echo "$ld"
}

# b_kubernetes OUT VERSION
b_kubernetes() {
  local out="$1" version="$2" ld
  cd "$HERE/k8s/$version"
  ld=$(k8s_ldflags "$version")
  # One go build: the shared packages compile once, then the four programs link. The
  # build cache ($GOBASE/build) is shared, so packages that two versions have in common
  # (most third-party ones) compile only once.
  go build -v -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  local got; got=$("$out/kube-apiserver" --version); echo "$got"
  [ "$got" = "Kubernetes $version" ] || { echo "kube-apiserver --version says '$got', want 'Kubernetes $version'"; exit 1; }
}

b_etcd() {
  cd "$HERE/etcd"
  local ld="-s -w" m
  for m in server etcdctl etcdutl; do
    local out=$m; [ $m = server ] && out=etcd
    go build -v -trimpath -ldflags "$ld" -o "$1/$out" "go.etcd.io/etcd/$m/v3"
  done
  "$1/etcd" --version
}

b_actionlint() {
  cd "$HERE/actionlint"
  go build -v -trimpath -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    -o "$1/actionlint" github.com/rhysd/actionlint/cmd/actionlint
  "$1/actionlint" -version
}

b_versitygw() {
  cd "$HERE/versitygw"
  go build -v -trimpath -ldflags "-s -w -X main.Version=$VERSITYGW_VERSION" -o "$1/versitygw" github.com/versity/versitygw/cmd/versitygw
  "$1/versitygw" --version
}

# b_k8sprovider OUT: upstream's main package embeds schema-embed.json (the module's
# schema.json with the version set) and terraform-mapping-embed.json (its
# terraform-mapping.json), which the module does not ship; its generate.go writes them.
# hakube's main (toolchain/k8sprovider/main.go) is built from a copy of that folder in
# the output's staging area, next to the two files written the same way.
b_k8sprovider() {
  local out="$1" src="$1/.src" mod
  mkdir -p "$src"
  cp "$HERE/k8sprovider/go.mod" "$HERE/k8sprovider/go.sum" "$HERE/k8sprovider/main.go" "$src/"
  cd "$src"
  mod=$(go list -m -f '{{.Dir}}' github.com/pulumi/pulumi-kubernetes/provider/v4)
  node -e '
    const fs = require("fs"); const [dir, version, out] = process.argv.slice(1);
    const schema = JSON.parse(fs.readFileSync(dir + "/schema.json", "utf8"));
    schema.version = version;
    fs.writeFileSync(out + "/schema-embed.json", JSON.stringify(schema));
    const mapping = JSON.parse(fs.readFileSync(dir + "/terraform-mapping.json", "utf8"));
    fs.writeFileSync(out + "/terraform-mapping-embed.json", JSON.stringify(mapping));' \
    "$mod/cmd/pulumi-resource-kubernetes" "$KUBERNETES_VERSION" "$src"
  go build -v -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$KUBERNETES_VERSION" \
    -o "$out/pulumi-resource-kubernetes" .
  cd "$out" && rm -rf "$src"
}

# b_node OUT VERSION: what a worker node of that Kubernetes version runs besides its
# configuration (kubelet and kube-proxy of the version, the same container runtime for all).
b_node() {
  local out="$1" version="$2" ld
  cd "$HERE/k8s/$version"
  ld=$(k8s_ldflags "$version")
  go build -v -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ld" -o "$out/" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  "$out/kubelet" --version
  echo "$version" >"$out/kubernetes-version"
  # containerd 2 without the btrfs and devmapper snapshotters (no cgo needed).
  cd "$HERE/containerd"
  go build -v -trimpath -tags no_btrfs,no_devmapper \
    -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" -o "$out/" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr
  "$out/containerd" --version
  # runc needs cgo and libseccomp (containerd 2 gives every container a seccomp profile).
  cd "$HERE/runc"
  CGO_ENABLED=1 go build -v -trimpath -tags seccomp -ldflags "-s -w" -o "$out/runc" github.com/opencontainers/runc
  "$out/runc" --version
  cd "$HERE/cni"
  mkdir -p "$out/cni"
  go build -v -trimpath -ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_VERSION" -o "$out/cni/" \
    github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/ipam/host-local \
    github.com/containernetworking/plugins/plugins/main/loopback github.com/containernetworking/plugins/plugins/meta/portmap
}

# pack_image ARCHIVE REF ROOTFS ENTRYPOINT-JSON: a docker-archive image (what `docker save`
# writes and `ctr images import` reads) of one layer holding ROOTFS, reproducibly.
pack_image() {
  local archive="$1" ref="$2" rootfs="$3" entrypoint="$4" work diff config
  work=$(mktemp -d "$archive.XXXXXX")
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" .
  diff=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
  mkdir "$work/$diff"; mv "$work/layer.tar" "$work/$diff/layer.tar"
  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Entrypoint":%s,"Env":["PATH=/"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$entrypoint" "$diff" >"$work/config.json"
  config=$(sha256sum "$work/config.json" | cut -d' ' -f1)
  mv "$work/config.json" "$work/$config.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["%s/layer.tar"]}]' "$config" "$ref" "$diff" >"$work/manifest.json"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work" -cf "$archive" .
  rm -rf "$work"
  echo "$ref $(basename "$archive") sha256:$config"
}

# b_images OUT: the worker nodes' images, as archives imported on each node (no registry).
b_images() {
  local out="$1" root
  root=$(mktemp -d "$out/.root.XXXXXX")
  cd "$HERE/images"
  go build -v -trimpath -ldflags "-s -w" -o "$root/" ./pause ./probe
  cd "$HERE/coredns"
  go build -v -trimpath -ldflags "-s -w" -o "$root/" github.com/coredns/coredns
  "$root/coredns" -version
  local name
  for name in pause probe coredns; do
    mkdir -p "$root/$name.fs/etc"
    cp "$root/$name" "$root/$name.fs/$name"
  done
  {
    pack_image "$out/pause.tar" "$IMAGE_PAUSE" "$root/pause.fs" '["/pause"]'
    pack_image "$out/probe.tar" "$IMAGE_PROBE" "$root/probe.fs" '["/probe"]'
    pack_image "$out/coredns.tar" "$IMAGE_COREDNS" "$root/coredns.fs" '["/coredns"]'
  } | tee "$out/images.txt"
  rm -rf "$root"
}

build_kubernetes() {
  build_family "kubernetes-$1" "kubernetes-$1" "kubernetes-$1" "$(inputs_hash "$1" "$HERE/k8s/$1")" b_kubernetes "$1"
}
# The folder of a version's node family (node-<version> links to it).
node_dir() { echo "node-$1-containerd-$CONTAINERD_VERSION"; }
build_node() {
  build_family "node-$1" "node-$1" "$(node_dir "$1")" \
    "$(inputs_hash "$1" "$HERE/k8s/$1" "$HERE/containerd" "$HERE/runc" "$HERE/cni")" b_node "$1"
}

say "versions: pulumi v$PULUMI_VERSION; plugins command $COMMAND_VERSION, tls $TLS_VERSION (hakube builds), kubernetes $K8SPROVIDER_UPSTREAM (upstream, as $KUBERNETES_VERSION); Kubernetes ${K8S_VERSIONS[*]} (bin/ and node: the newest built); etcd $ETCD_VERSION; actionlint $ACTIONLINT_VERSION; versitygw $VERSITYGW_VERSION; containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_VERSION, CoreDNS $COREDNS_VERSION"
say "cache: $TC (go modules and build cache: $GOBASE)"
for f in "${FAMILIES[@]}"; do
  case "$f" in
    pulumi) build_family pulumi pulumi "pulumi-v$PULUMI_VERSION" "$(inputs_hash "$K8S_LATEST" "$HERE/pulumi/go.mod" "$HERE/pulumi/go.sum")" b_pulumi ;;
    plugins) build_family plugins plugins "$PLUGINS_DIR" "$(inputs_hash "$K8S_LATEST" "$HERE/pulumi")" b_plugins ;;
    kubernetes) for v in "${K8S_VERSIONS[@]}"; do build_kubernetes "$v"; done ;;
    kubernetes-v*) build_kubernetes "${f#kubernetes-}" ;;
    etcd) build_family etcd etcd "etcd-$ETCD_VERSION" "$(inputs_hash "$K8S_LATEST" "$HERE/etcd")" b_etcd ;;
    actionlint) build_family actionlint actionlint "actionlint-$ACTIONLINT_VERSION" "$(inputs_hash "$K8S_LATEST" "$HERE/actionlint")" b_actionlint ;;
    versitygw) build_family versitygw versitygw "versitygw-$VERSITYGW_VERSION" "$(inputs_hash "$K8S_LATEST" "$HERE/versitygw")" b_versitygw ;;
    k8sprovider) build_family k8sprovider k8sprovider "$K8SPROVIDER_DIR" "$(inputs_hash "$K8S_LATEST" "$HERE/k8sprovider")" b_k8sprovider ;;
    node) for v in "${K8S_VERSIONS[@]}"; do build_node "$v"; done ;;
    node-v*) build_node "${f#node-}" ;;
    images) build_family images images "images-coredns-$COREDNS_VERSION" "$(inputs_hash "$K8S_LATEST" "$HERE/images" "$HERE/coredns")" b_images ;;
  esac
done

# What follows (links, plugins, env.sh) runs in one build.sh at a time.
exec {finishfd}>"$TC/locks/finish.lock"
flock "$finishfd"

# bin/: hard links (copies across filesystems) to the binaries of every built family,
# Kubernetes at its newest version built. Not symlinks: pulumi looks for its language host
# next to its own resolved path. Each link is replaced by a rename, so it never goes missing.
link_all() {
  local src="$1"; shift
  [ -f "$TC/$src/.complete" ] || return 0
  local b; for b in "$@"; do
    [ ! "$TC/$src/$b" -ef "$TC/bin/$b" ] || continue
    rm -f "$TC/bin/.$b.new"
    ln "$TC/$src/$b" "$TC/bin/.$b.new" 2>/dev/null || cp "$TC/$src/$b" "$TC/bin/.$b.new"
    mv -f "$TC/bin/.$b.new" "$TC/bin/$b"
  done
}
mkdir -p "$TC/bin"
link_all "pulumi-v$PULUMI_VERSION" pulumi
link_all "$PLUGINS_DIR" pulumi-language-nodejs pulumi-resource-command pulumi-resource-tls
link_all "$K8SPROVIDER_DIR" pulumi-resource-kubernetes
# newest_built PREFIX: the newest version in K8S_VERSIONS whose folder <PREFIX><version>
# is complete (the newer ones may still be building in another run).
newest_built() {
  local v best=""
  for v in $(printf '%s\n' "${K8S_VERSIONS[@]}" | sort -V); do
    [ ! -f "$TC/$1$v${2:-}/.complete" ] || best=$v
  done
  echo "$best"
}
K8S_BIN=$(newest_built kubernetes-)
[ -z "$K8S_BIN" ] || link_all "kubernetes-$K8S_BIN" kube-apiserver kube-controller-manager kube-scheduler kubectl
link_all "etcd-$ETCD_VERSION" etcd etcdctl etcdutl
link_all "actionlint-$ACTIONLINT_VERSION" actionlint
link_all "versitygw-$VERSITYGW_VERSION" versitygw
# The worker nodes' files are not linked into bin/ (they are copied to the machines, not
# run here): $TC/node-<version> (a stack's kubernetesVersion picks its workers' folder),
# $TC/node (the newest version) and $TC/images point at the built folders.
link_dir() { [ -f "$TC/$1/.complete" ] || return 0; ln -sfn "$1" "$TC/.$2.new" && mv -Tf "$TC/.$2.new" "$TC/$2"; }
for v in "${K8S_VERSIONS[@]}"; do link_dir "$(node_dir "$v")" "node-$v"; done
K8S_NODE=$(newest_built node- "-containerd-$CONTAINERD_VERSION")
[ -z "$K8S_NODE" ] || link_dir "$(node_dir "$K8S_NODE")" node
link_dir "images-coredns-$COREDNS_VERSION" images

# Node.js dynamic providers (pulumi.dynamic.Resource, e.g. hakube's DeployedVersions) run
# in the plugin `pulumi-resource-pulumi-nodejs`, which the engine looks for next to the
# pulumi binary (a "bundled" plugin): a small launcher of @pulumi/pulumi's
# cmd/dynamic-provider from the node_modules nearest above the folder the engine starts
# it in (the program's folder, stacks/ here). Written by rename, like the links above.
cat >"$TC/bin/.pulumi-resource-pulumi-nodejs.new" <<'LAUNCHER'
#!/bin/sh
# Written by hakube toolchain/build.sh: starts the Node.js dynamic provider host of the
# @pulumi/pulumi in the nearest node_modules above the current folder.
d=$PWD
while [ ! -f "$d/node_modules/@pulumi/pulumi/cmd/dynamic-provider/index.js" ]; do
  if [ "$d" = / ]; then
    echo "pulumi-resource-pulumi-nodejs: no node_modules/@pulumi/pulumi in $PWD or above it" >&2
    exit 1
  fi
  d=$(dirname "$d")
done
exec node "$d/node_modules/@pulumi/pulumi/cmd/dynamic-provider" "$@"
LAUNCHER
chmod 0755 "$TC/bin/.pulumi-resource-pulumi-nodejs.new"
mv -f "$TC/bin/.pulumi-resource-pulumi-nodejs.new" "$TC/bin/pulumi-resource-pulumi-nodejs"

# Provider plugins into the plugin cache at the npm packages' versions, so the engine
# finds resource-<name>-v<version> without downloading anything.
export PULUMI_HOME="${PULUMI_HOME:-$TC/pulumi-home}"
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_IGNORE_AMBIENT_PLUGINS=true
if [ -x "$TC/bin/pulumi" ] && [ -x "$TC/bin/pulumi-resource-command" ]; then
  for p in "command $COMMAND_VERSION" "tls $TLS_VERSION" "kubernetes $KUBERNETES_VERSION"; do
    set -- $p
    [ -x "$TC/bin/pulumi-resource-$1" ] || continue
    if [ ! -x "$PULUMI_HOME/plugins/resource-$1-v$2/pulumi-resource-$1" ] || ! cmp -s "$TC/bin/pulumi-resource-$1" "$PULUMI_HOME/plugins/resource-$1-v$2/pulumi-resource-$1"; then
      CURRENT="plugin-install-$1" CURRENT_FAMILY="plugins"
      "$TC/bin/pulumi" plugin install resource "$1" "$2" --file "$TC/bin/pulumi-resource-$1" --reinstall >"$TC/logs/plugin-install-$1.log" 2>&1 \
        || { cat "$TC/logs/plugin-install-$1.log" >&2; false; }
      CURRENT="" CURRENT_FAMILY=""
      say "installed plugin resource-$1 v$2 into $PULUMI_HOME/plugins"
    fi
  done
fi

cat >"$TC/env.sh" <<EOF
# Generated by toolchain/build.sh: source it to use the offline toolchain.
export PATH="$TC/bin:\$PATH"
export PULUMI_HOME="$PULUMI_HOME"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# Plugins come from \$PULUMI_HOME/plugins at the npm packages' exact versions, the
# language host from beside the pulumi binary; none from PATH.
export PULUMI_IGNORE_AMBIENT_PLUGINS=true
EOF
say "all done in $(( $(date +%s) - T0 ))s. To use it:"
sed -n '2,$p' "$TC/env.sh" | sed 's/^/    /'
echo "    (or: source $TC/env.sh)"
