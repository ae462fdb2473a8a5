# Shared settings for the scripts (sourced, not run).
HAKUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HAKUBE_TOOLCHAIN_DIR=${HAKUBE_TOOLCHAIN_DIR:-/var/cache/hakube/toolchain}
HAKUBE_STATE_DIR=${HAKUBE_STATE_DIR:-$HAKUBE_ROOT/.pulumi-state}
HAKUBE_STACK=${HAKUBE_STACK:-local}
_hakube_t0=${_hakube_t0:-$(date +%s)}

say() { printf '[hakube %4ss] %s\n' "$(( $(date +%s) - _hakube_t0 ))" "$*"; }
die() { printf 'hakube: %s\n' "$*" >&2; exit 1; }

# run_id [PREFIX]: a new id for a run of the tests, <UTC time>-<commit> (ops/records.ts reads
# it from HAKUBE_RUN_ID; every file of one run shares it, so its records land in one folder).
run_id() {
  printf '%s%s-%s\n' "${1:-}" "$(date -u +%Y%m%dT%H%MZ)" "$(git -C "$HAKUBE_ROOT" rev-parse --short=7 HEAD 2>/dev/null || echo unknown)"
}

require_root() {
  [ "$(id -u)" -eq 0 ] || die "run as root (sudo): local machines need network namespaces, a bridge and systemd-nspawn"
}

# become_root SCRIPT [ARG...]: as root, returns; otherwise runs SCRIPT again through sudo
# (keeping PATH, where go and node may live, and the HAKUBE_* settings), or stops with a
# message when there is no sudo. Local machines need network namespaces, a bridge and
# systemd-nspawn, so these scripts run as root either way.
become_root() {
  [ "$(id -u)" -ne 0 ] || return 0
  [ -z "${HAKUBE_VIA_SUDO:-}" ] || die "still not root after sudo (uid $(id -u)): check the sudo configuration"
  command -v sudo >/dev/null 2>&1 \
    || die "run as root: local machines need network namespaces, a bridge and systemd-nspawn, and there is no sudo here (log in as root, or install sudo)"
  local keep=("PATH=$PATH") v
  for v in $(compgen -v HAKUBE_); do
    case "$v" in HAKUBE_ROOT | _hakube_*) ;; *) keep+=("$v=${!v}") ;; esac
  done
  say "not root: running $(basename "$1") again through sudo"
  exec sudo env "${keep[@]}" HAKUBE_VIA_SUDO=1 bash "$@"
}

# The Kubernetes version a stack file pins (hakube:kubernetesVersion), e.g. v1.37.2.
stack_kubernetes_version() {
  sed -n 's/^ *hakube:kubernetesVersion: *"\{0,1\}\(v[0-9.]*\)"\{0,1\} *$/\1/p' "$HAKUBE_ROOT/stacks/Pulumi.$1.yaml" | head -n 1
}

# stack_families VERSION: the toolchain families a local stack on Kubernetes VERSION runs
# (scripts/local-up.sh builds them; .ci/run waits for them before the end-to-end suite).
stack_families() {
  echo pulumi plugins k8sprovider etcd versitygw "kubernetes-$1" "node-$1" images
}

# Environment for the offline Pulumi CLI, the file backend inside the project and the
# local stack's passphrase (random, generated once, mode 0600, never committed).
pulumi_env() {
  [ -f "$HAKUBE_TOOLCHAIN_DIR/env.sh" ] || die "the toolchain is not built: run scripts/setup.sh (or toolchain/build.sh)"
  # shellcheck disable=SC1091
  . "$HAKUBE_TOOLCHAIN_DIR/env.sh"
  mkdir -p "$HAKUBE_STATE_DIR"
  chmod 0700 "$HAKUBE_STATE_DIR"
  if [ ! -s "$HAKUBE_STATE_DIR/passphrase" ]; then
    (umask 077; head -c 32 /dev/urandom | base64 > "$HAKUBE_STATE_DIR/passphrase")
  fi
  export PULUMI_BACKEND_URL="file://$HAKUBE_STATE_DIR"
  export PULUMI_CONFIG_PASSPHRASE_FILE="$HAKUBE_STATE_DIR/passphrase"
  unset PULUMI_CONFIG_PASSPHRASE
  # The stack's config is read from a copy, so that the encryption salt Pulumi adds
  # stays out of the committed stacks/Pulumi.<stack>.yaml.
  cp "$HAKUBE_ROOT/stacks/Pulumi.$HAKUBE_STACK.yaml" "$HAKUBE_STATE_DIR/Pulumi.$HAKUBE_STACK.yaml"
  HAKUBE_CONFIG_FILE="$HAKUBE_STATE_DIR/Pulumi.$HAKUBE_STACK.yaml"
}

# Traffic safety: when the state names the stack's bridge and subnet and the bridge is
# gone (after a host reboot or a half-finished teardown), the subnet is marked unreachable
# before Pulumi's steps SSH to the machines; without the bridge their packets would leave
# the host by the default route. (LocalMachines installs the same guard route with the
# bridge; a reboot removes both.)
guard_stack_network() {
  local out bridge subnet
  out=$(cd "$HAKUBE_ROOT" && pulumi stack output --json --stack "$HAKUBE_STACK" 2>/dev/null) || return 0
  read -r bridge subnet < <(printf '%s' "$out" | node -e '
    let s = ""; process.stdin.on("data", (d) => (s += d)).on("end", () => {
      let o = {}; try { o = JSON.parse(s); } catch { }
      const ok = (v, re) => (typeof v === "string" && re.test(v) ? v : "-");
      console.log(ok(o.bridge, /^[A-Za-z0-9_.-]{1,15}$/), ok(o.subnet, /^[0-9.]+\/[0-9]+$/));
    });') || return 0
  [ "$subnet" != - ] || return 0
  if [ "$bridge" = - ] || [ ! -d "/sys/class/net/$bridge" ]; then
    ip route replace unreachable "$subnet" metric 4294967295
    say "bridge $bridge of stack $HAKUBE_STACK is missing: $subnet is marked unreachable, so nothing for it leaves this host"
  fi
}

# pulumi with the stack and its config copy: hpulumi up --yes
hpulumi() {
  local extra=()
  case "${1:-}" in
    up | preview | destroy | refresh | import) extra=(--config-file "$HAKUBE_CONFIG_FILE"); guard_stack_network ;;
  esac
  (cd "$HAKUBE_ROOT" && pulumi "$@" --stack "$HAKUBE_STACK" "${extra[@]}" --non-interactive)
}

ensure_stack() {
  if ! (cd "$HAKUBE_ROOT" && pulumi stack ls --json 2>/dev/null | grep -q "\"name\": \"$HAKUBE_STACK\""); then
    say "creating stack $HAKUBE_STACK (file backend in $HAKUBE_STATE_DIR)"
    local keep
    keep=$(mktemp)
    cp "$HAKUBE_ROOT/stacks/Pulumi.$HAKUBE_STACK.yaml" "$keep"
    (cd "$HAKUBE_ROOT" && pulumi stack init "$HAKUBE_STACK" --secrets-provider passphrase --non-interactive >/dev/null)
    cp "$keep" "$HAKUBE_ROOT/stacks/Pulumi.$HAKUBE_STACK.yaml"
    rm -f "$keep"
  fi
}
