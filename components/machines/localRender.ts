// Shell for local machines (pure renderers): a cached Debian base image, an isolated
// bridge with no route out, and systemd-nspawn machines each in a network namespace of
// its own. Every script is idempotent and cleans up what an earlier failed run left.

export interface BaseImageSpec {
  /** Where images are cached, keyed by a hash of suite, mirror and packages. */
  readonly cacheDir: string;
  readonly suite: string;
  readonly mirror: string;
  readonly packages: readonly string[];
  /** Folder name of this image under cacheDir. */
  readonly key: string;
}

export const defaultImagePackages = [
  "systemd",
  "systemd-sysv",
  "dbus",
  "openssh-server",
  "iproute2",
  "procps",
  "curl",
  "ca-certificates",
  // Worker nodes: kube-proxy's rules and the pod network's masquerading.
  "iptables",
  "conntrack",
  // The etcd backups encrypt with openssl cms (the machines have no route to a mirror).
  "openssl",
  "haproxy",
  "keepalived",
  "iputils-ping",
  "psmisc",
];

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Builds the base image once (debootstrap, then packages in a chroot); prints progress. */
export function baseImageScript(spec: BaseImageSpec): string {
  const image = `${spec.cacheDir}/${spec.key}`;
  return `set -euo pipefail
image=${q(image)}
if [ -f "$image/.hakube-complete" ]; then
  echo "hakube: base image cached at $image"
  exit 0
fi
mkdir -p ${q(spec.cacheDir)}
exec 9>${q(spec.cacheDir)}/.lock
flock 9
if [ -f "$image/.hakube-complete" ]; then exit 0; fi
tmp="$image.tmp"
rm -rf "$tmp"
start=$(date +%s)
echo "hakube: building base image (${spec.suite}, minbase) into $image"
if ! debootstrap --variant=minbase --include=${spec.packages.join(",")} ${q(spec.suite)} "$tmp" ${q(spec.mirror)} > "$image.log" 2>&1; then
  echo "hakube: debootstrap failed; see $image.log (is ${spec.mirror} reachable?)" >&2
  tail -n 20 "$image.log" >&2
  rm -rf "$tmp"
  exit 1
fi
# Machines get host keys and a machine id of their own; nothing in the image may start
# services that need the network from outside.
rm -f "$tmp"/etc/ssh/ssh_host_*
: > "$tmp/etc/machine-id"
chroot "$tmp" systemctl enable ssh.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl disable haproxy.service keepalived.service >/dev/null 2>&1 || true
chroot "$tmp" systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true
rm -rf "$tmp"/var/cache/apt/archives/*.deb
touch "$tmp/.hakube-complete"
mv "$tmp" "$image"
echo "hakube: base image ready in $(( $(date +%s) - start )) s"`;
}

export interface NetworkSpec {
  readonly bridge: string;
  /** Host address on the bridge with prefix, e.g. 10.213.7.1/24. */
  readonly hostCidr: string;
  /** The machines' subnet, e.g. 10.213.7.0/24. */
  readonly subnet: string;
  /** The bridge's alias naming the stack that holds it (see `bridgeOwnerAlias`). */
  readonly owner: string;
}

/**
 * The alias a stack writes on its bridge, so that another stack or checkout on the same
 * host can tell the bridge is taken: `hakube owner=<id> stack=<stack> root=<project dir>`.
 */
export function bridgeOwnerAlias(ownerId: string, stack: string, root: string): string {
  return `hakube owner=${ownerId} stack=${stack} root=${root}`.replace(/[^A-Za-z0-9 =/._:-]/g, "_").slice(0, 250);
}

/** The owner id of a bridge alias written by `bridgeOwnerAlias`, if it is one. */
export function ownerOfAlias(alias: string): string | undefined {
  return /^hakube owner=([0-9a-f]+)\b/.exec(alias.trim())?.[1];
}

/**
 * The highest route metric: the guard route for a stack's subnet loses to the bridge's own
 * link route while the bridge exists, and answers "no route to host" once it is gone, so
 * nothing for the stack's addresses leaves by the default route.
 */
export const GUARD_ROUTE_METRIC = 4294967295;

export function networkCreateScript(n: NetworkSpec): string {
  return `set -euo pipefail
if ! ip link show ${n.bridge} >/dev/null 2>&1; then
  if ! ip link add ${n.bridge} type bridge; then
    echo "hakube: cannot create bridge ${n.bridge}: this kernel lacks bridge support or you are not root" >&2
    exit 1
  fi
fi
ip link set ${n.bridge} alias ${q(n.owner)}
ip addr replace ${n.hostCidr} dev ${n.bridge}
ip link set ${n.bridge} up
ip route replace unreachable ${n.subnet} metric ${GUARD_ROUTE_METRIC}
echo "hakube: bridge ${n.bridge} ${n.hostCidr} (no route out; ${n.subnet} unreachable without it)"`;
}

export function networkDeleteScript(n: NetworkSpec): string {
  return `ip link del ${n.bridge} 2>/dev/null || true
ip route del unreachable ${n.subnet} metric ${GUARD_ROUTE_METRIC} 2>/dev/null || true
echo "hakube: bridge ${n.bridge} removed"`;
}

export interface MachineSpec {
  readonly name: string;
  readonly image: string;
  readonly dir: string;
  readonly netns: string;
  readonly veth: string;
  readonly bridge: string;
  readonly address: string;
  readonly prefixLength: number;
  readonly gateway: string;
  readonly bootTimeoutSeconds: number;
  /** A machine that runs kubelet and containers (see `nodePrepUnit`). @default false */
  readonly node?: boolean;
}

/**
 * A unit inside a node machine that, at each boot before containerd and kubelet, makes
 * what they need of an nspawn container on this host: the cgroup v1 controllers, which
 * nspawn mounts read-only, writable (kubelet makes the pods' cgroups there); the three
 * global sysctls kubelet checks (read-only in a container, and not ours to change on the
 * host) covered by files holding the values kubelet wants; /dev/kmsg for its OOM watcher.
 */
export const NODE_PREP_UNIT = "hakube-node-prep.service";
export function nodePrepScript(): string {
  return `#!/bin/sh
# Written by hakube (LocalMachines): what kubelet needs of a systemd-nspawn machine.
set -eu
for d in /sys/fs/cgroup/*/; do
  case "$d" in */unified/|*/systemd/) continue ;; esac
  mount -o remount,bind,rw "$d" 2>/dev/null || true
done
mkdir -p /run/hakube/sysctl
cover() { printf '%s\n' "$2" > "/run/hakube/sysctl/$(echo "$1" | tr / _)"; mount --bind "/run/hakube/sysctl/$(echo "$1" | tr / _)" "/proc/sys/$1"; }
cover vm/overcommit_memory 1
cover kernel/panic 10
cover kernel/panic_on_oops 1
[ -e /dev/kmsg ] || ln -s /dev/console /dev/kmsg
`;
}
export function nodePrepUnit(): string {
  return `# Written by hakube (LocalMachines).
[Unit]
Description=Prepare this systemd-nspawn machine for kubelet (hakube)
DefaultDependencies=no
After=local-fs.target
Before=containerd.service kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/hakube-node-prep

[Install]
WantedBy=multi-user.target
`;
}

/** Stops the machine (clean poweroff, then force) and removes its namespace, link and files. */
export function machineCleanupScript(m: MachineSpec): string {
  return `pidfile=${q(m.dir)}.pid
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      # Still shutting down after 30 s: killing the machine's init (nspawn's child) ends
      # every process in its PID namespace, pods included, wherever they were reparented.
      pkill -KILL -P "$pid" 2>/dev/null || true
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
fi
if [ -e /run/netns/${m.netns} ]; then
  pids=$(ip netns pids ${m.netns} 2>/dev/null || true)
  if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; sleep 0.5; fi
  ip netns del ${m.netns} 2>/dev/null || true
fi
ip link del ${m.veth} 2>/dev/null || true
# systemd-nspawn's lock of the machine's folder, beside it (left when the machine was killed).
rm -rf ${q(m.dir)} ${q(m.dir)}.log ${q(m.dir)}.instance ${q(nspawnLockFile(m.dir))}`;
}

/** The lock file systemd-nspawn keeps beside a machine's folder while it runs (`.#<folder>.lck`). */
export function nspawnLockFile(dir: string): string {
  const slash = dir.replace(/\/+$/, "").lastIndexOf("/");
  return `${dir.slice(0, slash + 1)}.#${dir.replace(/\/+$/, "").slice(slash + 1)}.lck`;
}

/** Copies the base image into the machine's folder and gives it its own name, ids, host keys and authorized key. */
function provisionScript(m: MachineSpec): string {
  return `mkdir -p "$(dirname ${q(m.dir)})"
cp -a --reflink=auto ${q(m.image)} ${q(m.dir)}
echo ${q(m.name)} > ${q(m.dir)}/etc/hostname
# A machine-id of its own (the image's would be shared by every machine made from it).
tr -d '-' < /proc/sys/kernel/random/uuid > ${q(m.dir)}/etc/machine-id
printf '127.0.0.1 localhost\\n${m.address} ${m.name}\\n' > ${q(m.dir)}/etc/hosts
install -d -m 0700 ${q(m.dir)}/root/.ssh
printf '%s\\n' "$HAKUBE_PUBLIC_KEY" > ${q(m.dir)}/root/.ssh/authorized_keys
chmod 0600 ${q(m.dir)}/root/.ssh/authorized_keys
chroot ${q(m.dir)} ssh-keygen -A -q >/dev/null
${m.node ? nodeProvisionScript(m) : ""}# A new token for every machine made: it changes when the machine is replaced.
cat /proc/sys/kernel/random/uuid > ${q(m.dir)}.instance`;
}

function nodeProvisionScript(m: MachineSpec): string {
  return `install -d ${q(m.dir)}/usr/local/sbin ${q(m.dir)}/etc/systemd/system/multi-user.target.wants
cat > ${q(m.dir)}/usr/local/sbin/hakube-node-prep <<'HAKUBE_EOF'
${nodePrepScript()}HAKUBE_EOF
chmod 0755 ${q(m.dir)}/usr/local/sbin/hakube-node-prep
cat > ${q(m.dir)}/etc/systemd/system/${NODE_PREP_UNIT} <<'HAKUBE_EOF'
${nodePrepUnit()}HAKUBE_EOF
ln -sf ../${NODE_PREP_UNIT} ${q(m.dir)}/etc/systemd/system/multi-user.target.wants/${NODE_PREP_UNIT}
`;
}

/** Namespace, link and the nspawn process of a provisioned machine; waits until it answers SSH. */
function bootScript(m: MachineSpec): string {
  return `ip netns add ${m.netns}
ip link add ${m.veth} type veth peer name eth0 netns ${m.netns}
ip link set ${m.veth} master ${m.bridge} up
ip -n ${m.netns} link set lo up
ip -n ${m.netns} addr add ${m.address}/${m.prefixLength} dev eth0
ip -n ${m.netns} link set eth0 up
ip -n ${m.netns} route add default via ${m.gateway}
# /proc/sys/net writable, as on a VM (only this machine's namespace is affected): the
# control plane's host network step sets TCP settings there.
SYSTEMD_NSPAWN_API_VFS_WRITABLE=network setsid -f systemd-nspawn --quiet --register=no --keep-unit --boot --console=passive \\
  --directory=${q(m.dir)} --machine=${m.name} --network-namespace-path=/run/netns/${m.netns} \\
  --capability=CAP_NET_ADMIN,CAP_NET_RAW --rlimit=RLIMIT_NOFILE=1048576:1048576 \\
  --link-journal=no --resolv-conf=off --timezone=off \\
  </dev/null >${q(m.dir)}.log 2>&1
# setsid -f returns at once: find the nspawn process by its machine directory (anchored
# at the program name: this script's own shell has the same text in its command line).
for _ in $(seq 1 20); do
  pid=$(pgrep -f -o -- "^systemd-nspawn .*--directory=${m.dir} " || true)
  [ -n "$pid" ] && break
  sleep 0.25
done
if [ -z "$pid" ]; then
  echo "hakube: systemd-nspawn for ${m.name} did not start:" >&2
  cat ${q(m.dir)}.log >&2 || true
  exit 1
fi
echo "$pid" > ${q(m.dir)}.pid
booted=0
for i in $(seq 1 $(( ${m.bootTimeoutSeconds} * 2 ))); do
  if timeout 1 bash -c 'exec 3<>/dev/tcp/${m.address}/22' 2>/dev/null; then
    echo "hakube: machine ${m.name} at ${m.address} answers SSH"
    echo "hakube-instance $(cat ${q(m.dir)}.instance)"
    ${hostKeyLine(m)}
    booted=1
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then break; fi
  sleep 0.5
done
if [ "$booted" != 1 ]; then
  echo "hakube: machine ${m.name} did not answer SSH on ${m.address}:22 within ${m.bootTimeoutSeconds} s; its console log:" >&2
  tail -n 30 ${q(m.dir)}.log >&2 || true
  exit 1
fi`;
}

/**
 * The machine's SSH host key (public, ed25519), printed for the connection to pin: read
 * from the machine's files on this host, where provisioning made it (ssh-keygen -A in the
 * machine's folder), never learnt over the network.
 */
export const HOST_KEY_LINE = /^hakube-hostkey (ssh-ed25519 [A-Za-z0-9+/=]+)$/m;

function hostKeyLine(m: MachineSpec): string {
  return `echo "hakube-hostkey $(cut -d ' ' -f 1,2 ${q(`${m.dir}/etc/ssh/ssh_host_ed25519_key.pub`)})"`;
}

/** Namespace and link of a machine whose nspawn process is gone (its files are kept). */
function unplugScript(m: MachineSpec): string {
  return `rm -f ${q(m.dir)}.pid
if [ -e /run/netns/${m.netns} ]; then
  pids=$(ip netns pids ${m.netns} 2>/dev/null || true)
  if [ -n "$pids" ]; then kill -KILL $pids 2>/dev/null || true; sleep 0.5; fi
  ip netns del ${m.netns} 2>/dev/null || true
fi
ip link del ${m.veth} 2>/dev/null || true`;
}

export function machineCreateScript(m: MachineSpec): string {
  return `set -euo pipefail
${machineCleanupScript(m)}
${provisionScript(m)}
${bootScript(m)}`;
}

export function machineDeleteScript(m: MachineSpec): string {
  return `set -uo pipefail
${machineCleanupScript(m)}
echo "hakube: machine ${m.name} removed"`;
}

/**
 * Update, which also repairs (the machines' state resource puts a repair line in this
 * script when a refresh finds the machine gone): a machine whose files are gone is made
 * anew (a new instance, so every step on it runs again); one whose files are there but
 * whose nspawn process is not is booted again from them (the same instance: its services
 * start as they were); a running one only gets its authorized key refreshed. Other
 * machine changes need `pulumi destroy` and `pulumi up`.
 */
export function machineUpdateScript(m: MachineSpec, repair = ""): string {
  return `set -euo pipefail${repair ? `\n# ${repair.replace(/\n/g, " ")}` : ""}
pidfile=${q(m.dir)}.pid
running=0
if [ -f "$pidfile" ] && pid=$(cat "$pidfile") && [ -n "$pid" ] && tr '\\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q -F -- "--directory=${m.dir} "; then
  running=1
fi
if [ ! -d ${q(m.dir)}/root ] || [ ! -s ${q(m.dir)}.instance ]; then
  echo "hakube: machine ${m.name} is gone: making it anew (a new machine: every step on it runs again)"
  ${machineCleanupScript(m).replace(/\n/g, "\n  ")}
  ${provisionScript(m).replace(/\n/g, "\n  ")}
  ${bootScript(m).replace(/\n/g, "\n  ")}
  exit 0
fi
printf '%s\\n' "$HAKUBE_PUBLIC_KEY" > ${q(m.dir)}/root/.ssh/authorized_keys
chmod 0600 ${q(m.dir)}/root/.ssh/authorized_keys
if [ "$running" != 1 ]; then
  echo "hakube: machine ${m.name} is not running: booting it again from its files"
  ${unplugScript(m).replace(/\n/g, "\n  ")}
  ${bootScript(m).replace(/\n/g, "\n  ")}
  exit 0
fi
echo "hakube: machine ${m.name} kept; its authorized key refreshed (other machine changes need destroy and up)"
echo "hakube-instance $(cat ${q(m.dir)}.instance)"
${hostKeyLine(m)}`;
}
