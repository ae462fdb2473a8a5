// Worker node rendering (pure): kubelet, containerd, the CNI network, kube-proxy, the pod
// routes between nodes, and the kubelet CSR approver (serving certificates, and each
// node's first client certificate) that runs on the control plane. Everything a WorkerPool writes on a host comes from here.
import { renderUnit } from "../systemd";
import { quote as q } from "../remote/shell";
import { renderKubeconfig } from "../pki/kubeconfig";
import { KUBERNETES_TLS_MIN_VERSION, TLS_CIPHER_SUITES } from "../tls";

/** Paths on a worker. */
export const NODE_PATHS = {
  ca: "/etc/kubernetes/pki/ca.crt",
  kubeletConfig: "/etc/kubernetes/kubelet.yaml",
  bootstrapKubeconfig: "/etc/kubernetes/bootstrap-kubelet.conf",
  kubeletKubeconfig: "/var/lib/kubelet/kubeconfig",
  kubeletCertDir: "/var/lib/kubelet/pki",
  kubeletResolvConf: "/etc/kubernetes/kubelet-resolv.conf",
  kubeProxyConfig: "/etc/kubernetes/kube-proxy.yaml",
  kubeProxyKubeconfig: "/etc/kubernetes/kube-proxy.conf",
  containerdConfig: "/etc/containerd/config.toml",
  cniConfig: "/etc/cni/net.d/10-hakube.conflist",
  cniBin: "/opt/cni/bin",
  images: "/var/lib/hakube/images",
  podRoutes: "/etc/hakube/pod-routes",
} as const;

/** How the node's container runtime and kubelet meet the machine they run on. */
export interface NodeRuntimeSettings {
  /** "systemd" on ordinary hosts; "cgroupfs" where systemd cannot delegate (nspawn on cgroup v1). */
  readonly cgroupDriver: "systemd" | "cgroupfs";
  /** Let kubelet run on a cgroup v1 host (it refuses by default since 1.35). */
  readonly allowCgroupV1: boolean;
  /** kubelet leaves the kernel's settings alone instead of failing on a mismatch. */
  readonly protectKernelDefaults: boolean;
  /** Containers may not lower their oom_score_adj below containerd's (hosts without CAP_SYS_RESOURCE). */
  readonly restrictOomScoreAdj: boolean;
  /** runc makes no session keyring (hosts whose seccomp filter forbids the keyring calls). */
  readonly noNewKeyring: boolean;
}

/** Ordinary hosts (VMs, EC2). */
export const defaultNodeRuntime: NodeRuntimeSettings = {
  cgroupDriver: "systemd",
  allowCgroupV1: false,
  protectKernelDefaults: true,
  restrictOomScoreAdj: false,
  noNewKeyring: false,
};

export interface KubeletSettings {
  readonly nodeName: string;
  readonly nodeAddress: string;
  readonly clusterDns: string;
  readonly clusterDomain: string;
  readonly runtime: NodeRuntimeSettings;
}

export function kubeletConfig(s: KubeletSettings): string {
  return [
    "# Managed by hakube.",
    "apiVersion: kubelet.config.k8s.io/v1beta1",
    "kind: KubeletConfiguration",
    "authentication:",
    "  anonymous:",
    "    enabled: false",
    "  webhook:",
    "    enabled: true",
    "  x509:",
    `    clientCAFile: ${NODE_PATHS.ca}`,
    "authorization:",
    "  mode: Webhook",
    `cgroupDriver: ${s.runtime.cgroupDriver}`,
    `failCgroupV1: ${!s.runtime.allowCgroupV1}`,
    `protectKernelDefaults: ${s.runtime.protectKernelDefaults}`,
    "clusterDNS:",
    `- ${s.clusterDns}`,
    `clusterDomain: ${s.clusterDomain}`,
    "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock",
    // The client certificate from the bootstrap token, renewed by the kubelet itself; the
    // serving certificate from a CSR that hakube's approver checks (name and addresses).
    "rotateCertificates: true",
    "serverTLSBootstrap: true",
    "readOnlyPort: 0",
    `resolvConf: ${NODE_PATHS.kubeletResolvConf}`,
    `tlsMinVersion: ${KUBERNETES_TLS_MIN_VERSION}`,
    "tlsCipherSuites:",
    ...TLS_CIPHER_SUITES.map((c) => `- ${c}`),
    "",
  ].join("\n");
}

export function kubeletUnit(s: KubeletSettings): string {
  return renderUnit({
    description: "Kubernetes node agent (hakube)",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/",
    binary: "/usr/local/bin/kubelet",
    flags: [
      ["config", NODE_PATHS.kubeletConfig],
      ["kubeconfig", NODE_PATHS.kubeletKubeconfig],
      ["bootstrap-kubeconfig", NODE_PATHS.bootstrapKubeconfig],
      ["cert-dir", NODE_PATHS.kubeletCertDir],
      ["node-ip", s.nodeAddress],
      ["hostname-override", s.nodeName],
    ],
    after: ["containerd.service"],
  });
}

export interface ContainerdSettings {
  readonly sandboxImage: string;
  readonly runtime: NodeRuntimeSettings;
}

/** containerd 2 (config version 3): the CRI plugin with runc and the CNI network. */
export function containerdConfig(s: ContainerdSettings): string {
  return [
    "# Managed by hakube.",
    "version = 3",
    "",
    "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    `  sandbox = ${JSON.stringify(s.sandboxImage)}`,
    "",
    "[plugins.'io.containerd.cri.v1.runtime']",
    `  restrict_oom_score_adj = ${s.runtime.restrictOomScoreAdj}`,
    "",
    "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
    "  BinaryName = '/usr/local/bin/runc'",
    `  SystemdCgroup = ${s.runtime.cgroupDriver === "systemd"}`,
    `  NoNewKeyring = ${s.runtime.noNewKeyring}`,
    "",
    "[plugins.'io.containerd.cri.v1.runtime'.cni]",
    `  bin_dirs = ['${NODE_PATHS.cniBin}']`,
    "  conf_dir = '/etc/cni/net.d'",
    "",
  ].join("\n");
}

export const containerdUnit = `# Managed by hakube.
[Unit]
Description=containerd container runtime (hakube)
Documentation=https://containerd.io
After=network.target local-fs.target hakube-node-prep.service

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/local/bin/containerd --config ${NODE_PATHS.containerdConfig}
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=2
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`;

/** The node's pod network: a bridge with its pod range, hairpin for Services that loop back. */
export function cniConfig(podCidr: string): string {
  return `${JSON.stringify(
    {
      cniVersion: "1.0.0",
      name: "hakube",
      plugins: [
        {
          type: "bridge",
          bridge: "cni0",
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: { type: "host-local", ranges: [[{ subnet: podCidr }]], routes: [{ dst: "0.0.0.0/0" }] },
        },
        { type: "portmap", capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

export interface KubeProxySettings {
  readonly nodeName: string;
  readonly clusterCidr: string;
  readonly mode: "iptables" | "nftables";
}

export function kubeProxyConfig(s: KubeProxySettings): string {
  return [
    "# Managed by hakube.",
    "apiVersion: kubeproxy.config.k8s.io/v1alpha1",
    "kind: KubeProxyConfiguration",
    "clientConnection:",
    `  kubeconfig: ${NODE_PATHS.kubeProxyKubeconfig}`,
    `mode: ${s.mode}`,
    `clusterCIDR: ${s.clusterCidr}`,
    `hostnameOverride: ${s.nodeName}`,
    "metricsBindAddress: 127.0.0.1:10249",
    // 0: leave the host's conntrack table size alone (a global setting).
    "conntrack:",
    "  maxPerCore: 0",
    "",
  ].join("\n");
}

export const kubeProxyUnit = renderUnit({
  description: "Kubernetes network proxy (hakube)",
  documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/",
  binary: "/usr/local/bin/kube-proxy",
  flags: [["config", NODE_PATHS.kubeProxyConfig]],
  after: ["kubelet.service"],
});

/** A kubeconfig that authenticates with a bootstrap token (the kubelet's first contact). */
export function bootstrapKubeconfig(input: { server: string; caCertPem: string; token: string; clusterName: string }): string {
  return renderKubeconfig({ ...input, userName: "kubelet-bootstrap" });
}

export interface PodRoute {
  readonly cidr: string;
  readonly via: string;
}

/**
 * The pod network between nodes, applied at boot and on every change: a route to every
 * other node's pod range through that node, stale routes into the cluster's pod range
 * removed, and pod traffic to anything outside the pod range masqueraded behind the
 * node's address (the control-plane hosts have no routes to the pods).
 */
export function podRoutesScript(s: { podCidr: string; nodePodCidr: string; routes: readonly PodRoute[] }): string {
  const wanted = s.routes.map((r) => `${r.cidr} ${r.via}`).join("\n");
  return `#!/bin/bash
# Managed by hakube: routes to the other nodes' pods, masquerading out of the pod range.
set -euo pipefail
# hakube_in_pod_range CIDR: is CIDR inside ${s.podCidr}?
hakube_in_pod_range() {
  ${podRangeCheck(s.podCidr)}
}
wanted=${q(wanted)}
while read -r cidr via; do
  [ -n "$cidr" ] || continue
  ip route replace "$cidr" via "$via" proto static
done <<< "$wanted"
# Routes of nodes that left: every static route into the pod range not wanted any more.
ip route show proto static | while read -r cidr _; do
  case "$cidr" in */*) ;; *) continue ;; esac
  grep -q "^$cidr " <<< "$wanted" && continue
  if hakube_in_pod_range "$cidr"; then ip route del "$cidr" proto static || true; fi
done
rule=(-s ${s.nodePodCidr} ! -d ${s.podCidr} -m comment --comment hakube-pod-masquerade -j MASQUERADE)
iptables -t nat -C POSTROUTING "\${rule[@]}" 2>/dev/null || iptables -t nat -A POSTROUTING "\${rule[@]}"
`;
}

/** Shell body of a function whose $1 (a.b.c.d/n) is inside cidr, by integer arithmetic. */
function podRangeCheck(cidr: string): string {
  const [base, bits] = cidr.split("/");
  const n = Number(bits);
  const value = base.split(".").reduce((a, o) => a * 256 + Number(o), 0);
  const mask = n === 0 ? 0 : (0xffffffff << (32 - n)) >>> 0;
  return `local ip=\${1%/*} len=\${1#*/} a b c d
  [ "$len" -ge ${n} ] || return 1
  IFS=. read -r a b c d <<< "$ip"
  [ $(( ((a << 24) | (b << 16) | (c << 8) | d) & ${mask} )) -eq ${(value & mask) >>> 0} ]`;
}

export const podRoutesUnit = `# Managed by hakube.
[Unit]
Description=Routes to the other nodes' pods (hakube)
After=network-online.target
Wants=network-online.target
Before=kubelet.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/sbin/hakube-pod-routes

[Install]
WantedBy=multi-user.target
`;

/** Where the pods' connections to the kubernetes Service go (WorkerPoolArgs.podApiAccess). */
export const API_BALANCED_PATHS = {
  script: "/usr/local/sbin/hakube-api-balanced",
  service: "/etc/systemd/system/hakube-api-balanced.service",
  timer: "/etc/systemd/system/hakube-api-balanced.timer",
} as const;

/**
 * The node's rule that sends connections for the kubernetes Service (serviceIp:443) to the
 * control plane's balanced endpoint (the VIP's HAProxy, which checks every apiserver's
 * /readyz twice a second) instead of kube-proxy's pick among the Service's endpoints, which
 * keeps a crashed apiserver until its endpoint lease expires (15 s, then up to 10 s until a
 * live apiserver reconciles). Its own nat chain, jumped to first in PREROUTING (pods) and
 * OUTPUT (host-network pods): kube-proxy prepends its own jump when it starts, so the
 * script runs again on a timer and puts this one first again. `to` undefined: removes it.
 */
export function apiBalancedScript(s: { serviceIp: string; to?: { address: string; port: number } }): string {
  const chain = "HAKUBE-API";
  const remove = `for hook in PREROUTING OUTPUT; do
  while iptables -w 5 -t nat -D "$hook" -j ${chain} 2>/dev/null; do :; done
done
iptables -w 5 -t nat -F ${chain} 2>/dev/null || true
iptables -w 5 -t nat -X ${chain} 2>/dev/null || true`;
  if (!s.to) {
    return `#!/bin/bash
# Managed by hakube: pods reach the kubernetes Service through kube-proxy alone.
set -uo pipefail
${remove}
`;
  }
  return `#!/bin/bash
# Managed by hakube: pods' connections to the kubernetes Service (${s.serviceIp}:443) go to
# the balanced endpoint ${s.to.address}:${s.to.port}.
set -euo pipefail
rule=(-d ${s.serviceIp}/32 -p tcp --dport 443 -m comment --comment hakube-api-balanced -j DNAT --to-destination ${s.to.address}:${s.to.port})
iptables -w 5 -t nat -N ${chain} 2>/dev/null || true
if ! iptables -w 5 -t nat -C ${chain} "\${rule[@]}" 2>/dev/null || [ "$(iptables -w 5 -t nat -S ${chain} | wc -l)" != 2 ]; then
  iptables -w 5 -t nat -F ${chain}
  iptables -w 5 -t nat -A ${chain} "\${rule[@]}"
fi
for hook in PREROUTING OUTPUT; do
  # The first rule of the hook (line 1 is its policy).
  [ "$(iptables -w 5 -t nat -S "$hook" | sed -n 2p)" = "-A $hook -j ${chain}" ] && continue
  while iptables -w 5 -t nat -D "$hook" -j ${chain} 2>/dev/null; do :; done
  iptables -w 5 -t nat -I "$hook" 1 -j ${chain}
done
`;
}

export const apiBalancedService = `# Managed by hakube.
[Unit]
Description=Pods reach the kubernetes Service through the balanced endpoint (hakube)
After=network-online.target kube-proxy.service

[Service]
Type=oneshot
ExecStart=${API_BALANCED_PATHS.script}
`;

export const apiBalancedTimer = `# Managed by hakube.
[Unit]
Description=Keeps the balanced-endpoint rule first after kube-proxy's (hakube)

[Timer]
OnBootSec=5s
OnUnitActiveSec=10s
AccuracySec=1s

[Install]
WantedBy=timers.target
`;

/** A node the approver may sign a serving certificate for, and the addresses it may name. */
export interface ServingNode {
  readonly name: string;
  readonly addresses: readonly string[];
}

/**
 * The group a node's bootstrap token authenticates as besides the pool's, which names
 * that node (bootstrap tokens' extra groups must match
 * `system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]`; a host name, a lowercase DNS label,
 * does). The approver approves a client certificate for a token of this group only for
 * this node.
 */
export const NODE_BOOTSTRAP_GROUP_PREFIX = "system:bootstrappers:hakube:node:";

export function nodeBootstrapGroup(node: string): string {
  return `${NODE_BOOTSTRAP_GROUP_PREFIX}${node}`;
}

export const APPROVER_PATHS = {
  script: "/usr/local/sbin/hakube-kubelet-serving-approver",
  check: "/usr/local/sbin/hakube-serving-csr-check",
  nodes: "/etc/hakube/kubelet-serving-nodes",
  kubeconfig: "/etc/kubernetes/kubelet-serving-approver.conf",
} as const;

/** The key usages a kubelet's client certificate may ask for (the signer's own rule). */
const CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"] as const;

/**
 * hakube's approver of kubelet certificates, run by a timer on every control-plane host.
 * Serving certificates (signer kubernetes.io/kubelet-serving): a pending CSR is approved
 * only when its requester is system:node:<name> of a worker hakube made, its subject is
 * that node, and every DNS name and IP address it asks for is that node's name or one of
 * its addresses. A node's first client certificate (signer
 * kubernetes.io/kube-apiserver-client-kubelet, requested with its bootstrap token): only
 * when the requester is a bootstrap token (system:bootstrap:<id>) whose groups name
 * exactly one node (`nodeBootstrapGroup`), a worker hakube made, and the request is for
 * that node: subject exactly O=system:nodes, CN=system:node:<node>, no extension or other
 * attribute, a client's key usages only. A node renewing its own client certificate is
 * left to the controller-manager (selfnodeclient, which checks that the requester is the
 * node named). Anything else stays pending (and is logged). Approving twice is harmless,
 * so every host may run it.
 */
export function approverScript(): string {
  const allowedUsages = CLIENT_USAGES.map((u) => q(u)).join("|");
  return `#!/bin/bash
# Managed by hakube: approves kubelet serving certificates of known nodes, and a node's
# first client certificate for the node its bootstrap token belongs to only.
set -uo pipefail
kc=${APPROVER_PATHS.kubeconfig}
allowed=${APPROVER_PATHS.nodes}
k() { kubectl --kubeconfig "$kc" --request-timeout=5s "$@"; }
# verified NAME NODE [CHECK ARGS...]: is CSR NAME's request signed by its key and, read as
# DER (not openssl's text, where a comment or a name with a newline can pass for names),
# what ${APPROVER_PATHS.check} allows for NODE? Says why not otherwise.
verified() {
  local name=$1 request why
  shift
  request=$(k get csr "$name" -o 'jsonpath={.spec.request}' | base64 -d) && [ -n "$request" ] \\
    || { echo "hakube-approver: $name: cannot read its request; left pending"; return 1; }
  openssl req -noout -verify <<< "$request" >/dev/null 2>&1 \\
    || { echo "hakube-approver: $name: its signature does not verify; left pending"; return 1; }
  why=$(openssl req -outform DER <<< "$request" 2>/dev/null | ${APPROVER_PATHS.check} "$@") \\
    || { echo "hakube-approver: $name: \${why:-its request cannot be read}; left pending"; return 1; }
}
# serving NAME USER: approve serving CSR NAME when it is what node USER may ask for.
serving() {
  local name=$1 user=$2 node addresses
  node=\${user#system:node:}
  if [ "$node" = "$user" ] || ! addresses=$(awk -v n="$node" '$1 == n { $1 = ""; print; found = 1 } END { exit !found }' "$allowed"); then
    echo "hakube-approver: $name: requester $user is not a node hakube made; left pending"
    return 0
  fi
  # Approved or denied already (conditions set): nothing to do.
  [ -z "$(k get csr "$name" -o 'jsonpath={.status.conditions[*].type}')" ] || return 0
  verified "$name" "$node" $addresses || return 0
  k certificate approve "$name" >/dev/null && echo "hakube-approver: approved $name for node $node"
}
# client NAME USER: approve client CSR NAME when USER is the bootstrap token of the one
# node it asks for.
client() {
  local name=$1 user=$2 groups nodes node usages usage
  # A node renewing its own certificate: the controller-manager's (selfnodeclient).
  case "$user" in system:node:*) return 0 ;; esac
  [ -z "$(k get csr "$name" -o 'jsonpath={.status.conditions[*].type}')" ] || return 0
  groups=$(k get csr "$name" -o 'jsonpath={range .spec.groups[*]}{@}{"\\n"}{end}') \\
    || { echo "hakube-approver: $name: cannot read its requester's groups; left pending"; return 0; }
  nodes=$(sed -n 's/^${NODE_BOOTSTRAP_GROUP_PREFIX}//p' <<< "$groups")
  node=$nodes
  if ! [[ "$user" =~ ^system:bootstrap:[a-z0-9]{6}$ ]] || [ -z "$nodes" ] || [ "$(wc -l <<< "$nodes")" -ne 1 ] \\
    || ! awk -v n="$node" '$1 == n { found = 1 } END { exit !found }' "$allowed"; then
    echo "hakube-approver: $name: requester $user is not the bootstrap token of one node hakube made; left pending"
    return 0
  fi
  usages=$(k get csr "$name" -o 'jsonpath={range .spec.usages[*]}{@}{"\\n"}{end}') \\
    || { echo "hakube-approver: $name: cannot read its key usages; left pending"; return 0; }
  while IFS= read -r usage; do
    case "$usage" in
      ${allowedUsages}|"") ;;
      *) echo "hakube-approver: $name: asks for the usage $usage (a client certificate's are ${CLIENT_USAGES.join(", ")}); left pending"; return 0 ;;
    esac
  done <<< "$usages"
  verified "$name" --client "$node" || return 0
  k certificate approve "$name" >/dev/null && echo "hakube-approver: approved $name: the client certificate of node $node"
}
list() { k get csr -o "jsonpath={range .items[?(@.spec.signerName==\\"$1\\")]}{.metadata.name} {.spec.username} {.status.certificate}{\\"\\\\n\\"}{end}"; }
pending=$(list kubernetes.io/kubelet-serving) || exit 1
while read -r name user issued; do
  [ -n "$name" ] && [ -z "\${issued:-}" ] || continue
  serving "$name" "$user"
done <<< "$pending"
pending=$(list kubernetes.io/kube-apiserver-client-kubelet) || exit 1
while read -r name user issued; do
  [ -n "$name" ] && [ -z "\${issued:-}" ] || continue
  client "$name" "$user"
done <<< "$pending"
`;
}

/**
 * The kubelet CSR check (perl, core only: every Debian has perl-base), given the node's
 * name and addresses, the request's DER on stdin: exits 0 when the request asks for exactly
 * what that node may have, else prints why and exits 1. It walks the ASN.1 itself: the
 * subject is exactly O=system:nodes and CN=system:node:<name>; the only attribute is the
 * extension request, whose only extension is one subjectAltName; its names are DNS names
 * (host-name characters only) equal to the node's name and IPv4 addresses among its own,
 * at least one; anything else (another extension, a comment, an e-mail or URI name, a
 * name with a newline, trailing bytes) is refused. With `--client` first (a client
 * certificate), the same subject and no extension at all.
 */
export function servingCsrCheckScript(): string {
  return `#!/usr/bin/perl
# Managed by hakube: checks a kubelet serving CSR (DER on stdin) for node $ARGV[0] with addresses @ARGV[1..];
# with --client first, a kubelet client CSR for node $ARGV[1].
use strict;
use warnings;
my $client = @ARGV && $ARGV[0] eq "--client" ? shift @ARGV : undef;
my ($node, @allowed) = @ARGV;
sub fail { print "$_[0]\\n"; exit 1 }
fail("no node given") unless defined $node && length $node;
binmode STDIN;
my $der = do { local $/; <STDIN> };
fail("its request cannot be read") unless defined $der && length $der;
# One element at $p of $b: (tag, content, where the next one starts).
sub tlv {
  my ($b, $p) = @_;
  fail("a truncated request") if $p + 2 > length $b;
  my $tag = ord substr($b, $p, 1);
  my $len = ord substr($b, $p + 1, 1);
  my $head = 2;
  if ($len & 0x80) {
    my $n = $len & 0x7f;
    fail("a malformed length") if $n < 1 || $n > 3 || $p + 2 + $n > length $b;
    $len = 0;
    $len = ($len << 8) | ord substr($b, $p + 2 + $_, 1) for 0 .. $n - 1;
    $head += $n;
  }
  fail("a truncated request") if $p + $head + $len > length $b;
  return ($tag, substr($b, $p + $head, $len), $p + $head + $len);
}
# Every element of a constructed value, as [tag, content].
sub items {
  my ($b) = @_;
  my ($p, @out) = (0);
  while ($p < length $b) { my ($t, $c, $n) = tlv($b, $p); push @out, [$t, $c]; $p = $n }
  return @out;
}
sub oid {
  my @b = unpack("C*", $_[0]);
  my $first = shift @b;
  fail("an empty object identifier") unless defined $first;
  my @arcs = $first >= 80 ? (2, $first - 80) : (int($first / 40), $first % 40);
  my $v = 0;
  for (@b) { $v = ($v << 7) | ($_ & 0x7f); unless ($_ & 0x80) { push @arcs, $v; $v = 0 } }
  return join(".", @arcs);
}
my ($t, $csr, $end) = tlv($der, 0);
fail("not one certification request") unless $t == 0x30 && $end == length $der;
my @top = items($csr);
fail("not a certification request") unless @top == 3 && $top[0][0] == 0x30;
my @info = items($top[0][1]);
fail("not a certification request") unless (@info == 3 || @info == 4) && $info[0][0] == 0x02 && $info[1][0] == 0x30 && $info[2][0] == 0x30;
my (%subject, $parts);
for my $rdn (items($info[1][1])) {
  fail("a malformed subject") unless $rdn->[0] == 0x31;
  for my $ava (items($rdn->[1])) {
    my @a = items($ava->[1]);
    fail("a malformed subject") unless $ava->[0] == 0x30 && @a == 2 && $a[0][0] == 0x06 && grep { $_ == $a[1][0] } (0x0c, 0x13, 0x16);
    my $o = oid($a[0][1]);
    fail("a subject naming $o twice") if exists $subject{$o};
    $subject{$o} = $a[1][1];
    $parts++;
  }
}
fail("subject is not node $node") unless ($parts // 0) == 2 && ($subject{"2.5.4.10"} // "") eq "system:nodes" && ($subject{"2.5.4.3"} // "") eq "system:node:$node";
my ($sans, $names) = (0, 0);
if (@info == 4) {
  fail("a malformed attribute list") unless $info[3][0] == 0xa0;
  for my $attr (items($info[3][1])) {
    my @a = items($attr->[1]);
    fail("a malformed attribute") unless $attr->[0] == 0x30 && @a == 2 && $a[0][0] == 0x06 && $a[1][0] == 0x31;
    my $o = oid($a[0][1]);
    fail("asks for attribute $o (only the extension request)") unless $o eq "1.2.840.113549.1.9.14";
    my @sets = items($a[1][1]);
    fail("a malformed extension request") unless @sets == 1 && $sets[0][0] == 0x30;
    for my $ext (items($sets[0][1])) {
      my @e = items($ext->[1]);
      fail("a malformed extension") unless $ext->[0] == 0x30 && (@e == 2 || @e == 3) && $e[0][0] == 0x06 && $e[-1][0] == 0x04;
      my $eo = oid($e[0][1]);
      fail("asks for extension $eo (a client certificate asks for none)") if $client;
      fail("asks for extension $eo (only subjectAltName)") unless $eo eq "2.5.29.17";
      fail("asks for subjectAltName twice") if $sans++;
      my ($gt, $general, $gend) = tlv($e[-1][1], 0);
      fail("a malformed subjectAltName") unless $gt == 0x30 && $gend == length $e[-1][1];
      for my $name (items($general)) {
        my ($kind, $value) = @$name;
        if ($kind == 0x82) {
          fail("a DNS name that is not a host name") unless $value =~ /\\A[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?\\z/;
          fail("DNS:$value is not the name of node $node") unless $value eq $node;
        } elsif ($kind == 0x87) {
          fail("an IP address that is not IPv4") unless length $value == 4;
          my $ip = join(".", unpack("C4", $value));
          fail("IP Address:$ip is not an address of node $node") unless grep { $_ eq $ip } @allowed;
        } else {
          fail(sprintf("asks for a name of kind [%d] (only DNS names and IP addresses)", $kind & 0x1f));
        }
        $names++;
      }
    }
  }
}
fail("names no address") unless $names || $client;
exit 0;
`;
}

/** The approver's allow list: one line per node, its name then its addresses. */
export function approverNodes(nodes: readonly ServingNode[]): string {
  return nodes.map((n) => [n.name, ...n.addresses].join(" ")).join("\n") + "\n";
}

export const approverService = `# Managed by hakube.
[Unit]
Description=Approve kubelet certificates of hakube's nodes (hakube)
After=kube-apiserver.service

[Service]
Type=oneshot
ExecStart=${APPROVER_PATHS.script}
TimeoutStartSec=60
`;

export const approverTimer = `# Managed by hakube.
[Unit]
Description=Approve kubelet certificates of hakube's nodes every 10 s (hakube)

[Timer]
OnActiveSec=5s
OnUnitActiveSec=10s
AccuracySec=1s

[Install]
WantedBy=timers.target
`;
