import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import * as k8s from "@pulumi/kubernetes";
import * as fs from "fs";
import * as path from "path";
import { Host } from "../types";
import { Cidr, cidrContains, formatIpv4 } from "../net";
import { invalid, requireCidr, requireHosts, requireInteger } from "../validation";
import { BinarySource, localBinaryPaths } from "../binaries/source";
import { fileStamp, installBinaries, planBinaries } from "../binaries/install";
import { hostStep } from "../remote/hostStep";
import { parseVersion } from "../version";
import { command as shellCommand, quote, retry, shellFunction } from "../remote/shell";
import { sha256 } from "../remote/files";
import type { HaControlPlane } from "../controlplane/haControlPlane";
import { BootstrapToken } from "./bootstrapToken";
import {
  API_BALANCED_PATHS,
  apiBalancedScript,
  apiBalancedService,
  apiBalancedTimer,
  APPROVER_PATHS,
  approverNodes,
  approverScript,
  servingCsrCheckScript,
  approverService,
  approverTimer,
  bootstrapKubeconfig,
  nodeBootstrapGroup,
  cniConfig,
  containerdConfig,
  containerdUnit,
  defaultNodeRuntime,
  kubeletConfig,
  kubeletUnit,
  kubeProxyConfig,
  kubeProxyUnit,
  NODE_PATHS,
  NodeRuntimeSettings,
  PodRoute,
  podRoutesScript,
  podRoutesUnit,
} from "./render";

/** The container runtime's files: containerd, its shim, ctr, runc and the CNI plugins. */
export const RUNTIME_BINARIES = ["containerd", "containerd-shim-runc-v2", "ctr", "runc"] as const;
export const CNI_PLUGINS = ["bridge", "host-local", "loopback", "portmap"] as const;

/**
 * The group bootstrap tokens of a WorkerPool authenticate as (RBAC lets it ask for
 * certificates); each token also names its own node's group (`nodeBootstrapGroup`).
 */
export const BOOTSTRAP_GROUP = "system:bootstrappers:hakube:workers";
/** The approver's user name (its client certificate's common name). */
export const APPROVER_USER = "hakube:kubelet-serving-approver";

export interface NodeImages {
  /** A folder on the machine that runs Pulumi holding image archives (`docker save` format). */
  readonly directory: string;
  /** The archives in it to import on every node (`ctr images import`). */
  readonly archives: readonly string[];
  /** The pod sandbox image, one of the archives' references (containerd's pinned sandbox). */
  readonly sandbox: string;
}

export interface WorkerPoolArgs {
  /** The worker hosts; each name must end in a number (its pod range), e.g. worker-3. */
  readonly hosts: readonly Host[];
  /** The control plane the workers join (its endpoint, PKI, ranges and Kubernetes provider). */
  readonly controlPlane: HaControlPlane;
  /** kubelet and kube-proxy (the Kubernetes server release has both). */
  readonly kubernetesBinaries: BinarySource;
  /**
   * containerd, containerd-shim-runc-v2, ctr and runc, and the CNI plugins in a `cni`
   * folder beside them. `packages`: the host's own (Debian/Ubuntu: containerd, runc,
   * containernetworking-plugins; installed by apt-get).
   */
  readonly runtimeBinaries: { readonly kind: "localDirectory"; readonly directory: string } | { readonly kind: "packages" };
  /** Images to import on every node (no registry), and the sandbox image. @default pull from registries; sandbox registry.k8s.io/pause:3.10.2 */
  readonly images?: NodeImages;
  /** How the machines differ from ordinary hosts (LocalMachines.nodeRuntime). @default defaultNodeRuntime */
  readonly runtime?: Partial<NodeRuntimeSettings>;
  /** @default "iptables" */
  readonly kubeProxyMode?: "iptables" | "nftables";
  /** Pod range of each node, a /24 inside the cluster's podCidr. @default 10.244.<n>.0/24 for the host named `<prefix>-<n>` */
  readonly podCidrs?: Readonly<Record<string, string>>;
  /**
   * Lifetime in hours of each node's bootstrap token (renewed by a `pulumi up` once less
   * than half of it is left, and made anew when the node's machine or the cluster's CA
   * bundle changes), at most 48. @default 6
   */
  readonly bootstrapTokenTtlHours?: number;
  /** Seconds a node may take to become Ready. @default 180 */
  readonly readyTimeoutSeconds?: number;
  /**
   * Where pods' connections to the `kubernetes` Service go. `"balancer"`: each node sends
   * them to the control plane's balanced endpoint (the keepalived VIP's HAProxy, which
   * stops using a failed apiserver within a second), so a crashed apiserver that the
   * Service still lists (until its endpoint lease expires, 15-25 s) gets none of them; the
   * Service and its EndpointSlice are unchanged. `"service"`: kube-proxy's pick among the
   * Service's endpoints. `"balancer"` needs a keepalived VIP and kube-proxy in iptables mode.
   * @default "balancer" with a keepalived VIP and iptables mode, else "service"
   */
  readonly podApiAccess?: "balancer" | "service";
}

/** One worker, resolved. */
export interface PlannedWorker<H extends { readonly name: string } = Host> {
  readonly host: H;
  readonly podCidr: string;
}

/**
 * Each worker's pod range: the host's own entry in `podCidrs`, else the n-th /24 of the
 * cluster's pod range for the host named `<prefix>-<n>`, so adding or removing a worker
 * moves no other worker's range. Pure; bad input throws naming the argument.
 */
export function planPodRanges<H extends { readonly name: string }>(
  parent: pulumi.Resource | undefined,
  hosts: readonly H[],
  podCidr: Cidr,
  explicit?: Readonly<Record<string, string>>,
): PlannedWorker<H>[] {
  if (podCidr.prefix > 16) {
    invalid(parent, "podCidr", podCidr.text, "a pod range of /16 or larger, to give each worker a /24");
  }
  const seen = new Map<string, string>();
  return hosts.map((host, i) => {
    let range: Cidr;
    if (explicit?.[host.name] !== undefined) {
      range = requireCidr(parent, `podCidrs.${host.name}`, explicit[host.name]);
      if (range.prefix !== 24 || !cidrContains(podCidr, range.network)) {
        invalid(parent, `podCidrs.${host.name}`, range.text, `a /24 inside the cluster's podCidr ${podCidr.text}`);
      }
    } else {
      const n = /-(\d+)$/.exec(host.name)?.[1];
      const index = n === undefined ? NaN : Number(n);
      const slots = 2 ** (24 - podCidr.prefix);
      if (!Number.isInteger(index) || index < 1 || index >= slots) {
        invalid(parent, `hosts[${i}].name`, host.name, `a name ending in a number from 1 to ${slots - 1} (its pod range), or an entry for it in podCidrs`);
      }
      range = { network: podCidr.network + index * 256, prefix: 24, text: `${formatIpv4(podCidr.network + index * 256)}/24` } as Cidr;
    }
    const other = seen.get(range.text);
    if (other) {
      invalid(parent, `hosts[${i}].name`, host.name, `a pod range of its own (${range.text} is ${other}'s too)`);
    }
    seen.set(range.text, host.name);
    return { host, podCidr: range.text };
  });
}

/**
 * Worker nodes joined to an HaControlPlane through its stable endpoint with TLS
 * bootstrapping: each node's own bootstrap token (secret, with an expiry, on the node only
 * until its kubelet has a client certificate) gets its kubelet a client certificate for
 * that node only, approved by hakube's approver on the control-plane hosts and signed by
 * the controller-manager, which also approves the node's own renewals; serving
 * certificates are approved by the same approver after it checked the node's name and
 * addresses, and the apiservers verify them. containerd and runc run the pods,
 * each node's pods get a /24 with routes to it from every other node, and kube-proxy
 * serves the Services. Needs the control plane's Kubernetes provider.
 */
export class WorkerPool extends pulumi.ComponentResource {
  /** The workers with their pod ranges. */
  public readonly workers: readonly PlannedWorker[];
  /** Each worker's bootstrap token, by host name. */
  public readonly bootstrapTokens: Readonly<Record<string, BootstrapToken>>;
  /** One per worker: completes when the node is Ready. */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: WorkerPoolArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:WorkerPool", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    const cluster = args.controlPlane;
    const provider = cluster.provider;
    if (!provider) {
      invalid(this, "controlPlane", "a control plane made with kubernetesProvider: false", "one with its Kubernetes provider (the node RBAC and the bootstrap token are made through it)");
    }
    const plan = cluster.plan;
    const clash = args.hosts.find((w) => plan.hosts.some((h) => h.name === w.name));
    if (clash) {
      invalid(this, "hosts", clash.name, "workers that are not control-plane, etcd or balancer hosts");
    }
    this.workers = planPodRanges(this, args.hosts, plan.podCidr, args.podCidrs);
    const runtime: NodeRuntimeSettings = { ...defaultNodeRuntime, ...args.runtime };
    const proxyMode = args.kubeProxyMode ?? "iptables";
    if (proxyMode !== "iptables" && proxyMode !== "nftables") {
      invalid(this, "kubeProxyMode", proxyMode, '"iptables" or "nftables"');
    }
    const vip = plan.balancer.kind === "keepalived" ? plan.balancer.options.virtualIp : undefined;
    const podApiAccess = args.podApiAccess ?? (vip !== undefined && proxyMode === "iptables" ? "balancer" : "service");
    if (podApiAccess !== "balancer" && podApiAccess !== "service") {
      invalid(this, "podApiAccess", podApiAccess, '"balancer" or "service"');
    }
    if (podApiAccess === "balancer" && (vip === undefined || proxyMode !== "iptables")) {
      invalid(this, "podApiAccess", podApiAccess, `"service" with ${vip === undefined ? "an external balancer (its address may be a name a node cannot rewrite to)" : 'kubeProxyMode "nftables"'}, or a keepalived VIP with kubeProxyMode "iptables"`);
    }
    const ttlHours = requireInteger(this, "bootstrapTokenTtlHours", args.bootstrapTokenTtlHours ?? 6, 1, 48);
    const readySeconds = requireInteger(this, "readyTimeoutSeconds", args.readyTimeoutSeconds ?? 180, 10, 3600);
    const images = args.images;
    if (images) {
      for (const archive of images.archives) {
        const file = path.resolve(images.directory, archive);
        if (!fs.existsSync(file)) {
          invalid(this, "images.archives", archive, `image archives in ${images.directory} (${file} is missing; toolchain/build.sh images builds them)`);
        }
      }
    }
    const kubeBinaries = planBinaries(this, "kubernetesBinaries", "kubernetes", plan.versions.kubernetes, ["kubelet", "kube-proxy"], args.kubernetesBinaries);
    if (args.kubernetesBinaries.kind === "localDirectory") {
      const problem = kubeletSkewProblem(stampedVersion(args.kubernetesBinaries.directory), plan.versions.kubernetes);
      if (problem) {
        invalid(this, "kubernetesBinaries.directory", args.kubernetesBinaries.directory, problem);
      }
    }
    const runtimeFiles: { name: string; file: string }[] = [];
    if (args.runtimeBinaries.kind === "localDirectory") {
      const directory = args.runtimeBinaries.directory;
      const files = localBinaryPaths(directory, [...RUNTIME_BINARIES, ...CNI_PLUGINS.map((p) => `cni/${p}`)]);
      const bad = files.find((f) => f.problem);
      if (bad) {
        invalid(this, "runtimeBinaries.directory", directory, `a folder holding ${RUNTIME_BINARIES.join(", ")} and cni/{${CNI_PLUGINS.join(",")}} (${bad.path} ${bad.problem})`);
      }
      runtimeFiles.push(...files.map((f) => ({ name: f.binary, file: f.path })));
    }
    const opt = { parent: this } as const;
    const k8sOpt = { parent: this, provider } as const;

    // Who may do what (RBAC through the cluster's provider): bootstrap tokens of this pool
    // may ask for node client certificates, which hakube's approver approves for the
    // token's own node only (nothing lets the controller-manager approve them: its
    // nodeclient approval would sign any node's name for any token); nodes renew their
    // own (selfnodeclient: the requester is the node named); the approver approves
    // kubelet serving and kubelet client certificates only.
    const bind = (bindingName: string, role: string, subject: { kind: "Group" | "User"; name: string }) =>
      new k8s.rbac.v1.ClusterRoleBinding(
        `${name}-${bindingName}`,
        {
          metadata: { name: `hakube:${bindingName}` },
          roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role },
          subjects: [{ apiGroup: "rbac.authorization.k8s.io", ...subject }],
        },
        k8sOpt,
      );
    const approverRole = new k8s.rbac.v1.ClusterRole(
      `${name}-kubelet-serving-approver`,
      {
        metadata: { name: APPROVER_USER },
        rules: [
          { apiGroups: ["certificates.k8s.io"], resources: ["certificatesigningrequests"], verbs: ["get", "list", "watch"] },
          { apiGroups: ["certificates.k8s.io"], resources: ["certificatesigningrequests/approval"], verbs: ["update"] },
          { apiGroups: ["certificates.k8s.io"], resources: ["signers"], resourceNames: ["kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client-kubelet"], verbs: ["approve"] },
        ],
      },
      k8sOpt,
    );
    const rbac: pulumi.Resource[] = [
      bind("kubelet-bootstrap", "system:node-bootstrapper", { kind: "Group", name: BOOTSTRAP_GROUP }),
      bind("node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", { kind: "Group", name: "system:nodes" }),
      approverRole,
      bind("kubelet-serving-approver", APPROVER_USER, { kind: "User", name: APPROVER_USER }),
    ];

    // One bootstrap token per worker, whose Secret names that node's group: the approver
    // approves a client certificate for this token for that node only. A new machine or a
    // new CA bundle (what makes the kubelet bootstrap again) makes a new token at once.
    const tokens: Record<string, BootstrapToken> = {};
    const tokenSecrets: Record<string, k8s.core.v1.Secret> = {};
    for (const w of this.workers) {
      const node = w.host.name;
      const epoch = pulumi.all([w.host.instance ?? "", cluster.caCertificate]).apply(([instance, ca]) => sha256(`${instance}\n${ca}`).slice(0, 16));
      const token = new BootstrapToken(`${name}-${node}-bootstrap-token`, { ttlHours, epoch }, opt);
      tokens[node] = token;
      tokenSecrets[node] = new k8s.core.v1.Secret(
        `${name}-${node}-bootstrap-token`,
        {
          metadata: { name: pulumi.interpolate`bootstrap-token-${token.tokenId}`, namespace: "kube-system" },
          type: "bootstrap.kubernetes.io/token",
          stringData: {
            "token-id": token.tokenId,
            "token-secret": token.tokenSecret,
            expiration: token.expiration,
            description: `hakube WorkerPool ${name}, node ${node}`,
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": `${BOOTSTRAP_GROUP},${nodeBootstrapGroup(node)}`,
          },
        },
        { ...k8sOpt, deleteBeforeReplace: false },
      );
    }
    this.bootstrapTokens = tokens;

    // The approver on every control-plane host: a timer, its allow list, its identity.
    const approverClient = cluster.pki.clientCertificate(`${name}-kubelet-serving-approver`, { commonName: APPROVER_USER });
    const approverKubeconfig = cluster.pki.kubeconfig(approverClient, APPROVER_USER, cluster.endpoint, "hakube");
    const allowList = pulumi.all(this.workers.map((w) => pulumi.output(w.host.address).apply((a) => ({ name: w.host.name, addresses: [a] })))).apply(approverNodes);
    const approvers = plan.controlPlaneHosts.map((cp) =>
      hostStep(
        `${name}-approver-${cp.name}`,
        {
          host: cp,
          files: [
            { path: APPROVER_PATHS.script, mode: "0755", content: approverScript() },
            { path: APPROVER_PATHS.check, mode: "0755", content: servingCsrCheckScript() },
            { path: APPROVER_PATHS.nodes, mode: "0600", secret: false, content: allowList },
            { path: APPROVER_PATHS.kubeconfig, mode: "0600", content: approverKubeconfig },
            { path: "/etc/systemd/system/hakube-kubelet-serving-approver.service", mode: "0600", secret: false, content: approverService },
            { path: "/etc/systemd/system/hakube-kubelet-serving-approver.timer", mode: "0600", secret: false, content: approverTimer },
          ],
          create: "systemctl daemon-reload\nsystemctl enable --now hakube-kubelet-serving-approver.timer",
          delete: "systemctl disable --now hakube-kubelet-serving-approver.timer\nrm -f /etc/systemd/system/hakube-kubelet-serving-approver.* " + APPROVER_PATHS.script + " " + APPROVER_PATHS.nodes + " " + APPROVER_PATHS.kubeconfig,
        },
        { parent: this, dependsOn: [...cluster.ready, ...rbac] },
      ),
    );

    const kubeProxyClient = cluster.pki.clientCertificate(`${name}-kube-proxy`, { commonName: "system:kube-proxy" });
    const kubeProxyKubeconfig = cluster.pki.kubeconfig(kubeProxyClient, "system:kube-proxy", cluster.endpoint, "hakube");
    const bootstrap = (node: string) =>
      pulumi
        .all([cluster.endpoint, cluster.caCertificate, tokens[node].token])
        .apply(([server, ca, t]) => bootstrapKubeconfig({ server, caCertPem: ca, token: t, clusterName: "hakube" }));
    const clusterDns = formatIpv4(plan.serviceCidr.network + 10);
    const clusterDomain = cluster.clusterDomain;
    const sandbox = images?.sandbox ?? "registry.k8s.io/pause:3.10.2";

    const serviceIp = formatIpv4(plan.serviceCidr.network + 1);
    const apiBalanced =
      podApiAccess === "balancer"
        ? pulumi.output(cluster.endpoint).apply((e) => {
            const url = new URL(e);
            return apiBalancedScript({ serviceIp, to: { address: url.hostname, port: Number(url.port || 443) } });
          })
        : pulumi.output(apiBalancedScript({ serviceIp }));

    // One node at a time: a node's kubelet (re)starts after the previous node is done.
    let previousNode: pulumi.Resource | undefined;
    this.ready = this.workers.map((w) => {
      const host = w.host;
      const hostOpt = { parent: this, dependsOn: [...cluster.ready, ...rbac] };
      // Uploads: the runtime's binaries and the image archives.
      const uploads: pulumi.Resource[] = [];
      const mkdir = new command.remote.Command(
        `${name}-${host.name}-uploads`,
        { connection: host.connection, create: "mkdir -p /var/lib/hakube/uploads/node/cni /var/lib/hakube/uploads/images", triggers: host.instance === undefined ? [] : [host.instance] },
        hostOpt,
      );
      const copy = (label: string, file: string, remotePath: string) =>
        uploads.push(
          new command.remote.CopyToRemote(
            `${name}-${host.name}-${label}`,
            { connection: host.connection, source: new pulumi.asset.FileAsset(file), remotePath, triggers: [fileStamp(file), ...(host.instance === undefined ? [] : [host.instance])] },
            { parent: this, dependsOn: [mkdir] },
          ),
        );
      for (const f of runtimeFiles) copy(f.name.replace("/", "-"), f.file, `/var/lib/hakube/uploads/node/${f.name}`);
      for (const archive of images?.archives ?? []) copy(`image-${archive.replace(/\.tar$/, "")}`, path.resolve(images!.directory, archive), `/var/lib/hakube/uploads/images/${archive}`);
      const stamps = [...runtimeFiles.map((f) => `${f.name} ${fileStamp(f.file)}`), ...(images?.archives ?? []).map((a) => `image ${a} ${fileStamp(path.resolve(images!.directory, a))}`)];

      const others: pulumi.Input<PodRoute>[] = this.workers.filter((o) => o !== w).map((o) => pulumi.output(o.host.address).apply((via) => ({ cidr: o.podCidr, via })));
      const runtimeStep = hostStep(
        `${name}-${host.name}-runtime`,
        {
          host,
          files: [
            { path: NODE_PATHS.containerdConfig, mode: "0600", secret: false, content: containerdConfig({ sandboxImage: sandbox, runtime }) },
            { path: "/etc/systemd/system/containerd.service", mode: "0600", secret: false, content: containerdUnit },
            { path: NODE_PATHS.cniConfig, mode: "0600", secret: false, content: cniConfig(w.podCidr) },
            { path: "/usr/local/sbin/hakube-pod-routes", mode: "0755", content: pulumi.all(others).apply((routes) => podRoutesScript({ podCidr: plan.podCidr.text, nodePodCidr: w.podCidr, routes })) },
            { path: "/etc/systemd/system/hakube-pod-routes.service", mode: "0600", secret: false, content: podRoutesUnit },
          ],
          identity: stamps,
          create: runtimeScript(args.runtimeBinaries.kind, images?.archives ?? [], readySeconds),
          delete: runtimeDeleteScript,
        },
        { ...hostOpt, dependsOn: [...hostOpt.dependsOn, ...uploads] },
      );
      const kubeInstall = installBinaries(`${name}-${host.name}-kubernetes`, host, "node", kubeBinaries, { ...hostOpt, dependsOn: [...hostOpt.dependsOn, runtimeStep] });
      const settings = pulumi.output(host.address).apply((address) => ({ nodeName: host.name, nodeAddress: address, clusterDns, clusterDomain, runtime }));
      const kubelet = hostStep(
        `${name}-${host.name}-kubelet`,
        {
          host,
          files: [
            { path: NODE_PATHS.ca, mode: "0600", secret: false, content: cluster.caCertificate },
            { path: NODE_PATHS.kubeletConfig, mode: "0600", secret: false, content: settings.apply(kubeletConfig) },
            { path: NODE_PATHS.kubeletResolvConf, mode: "0600", secret: false, content: "# kubelet: pods get the cluster DNS; nothing from this host.\n" },
            { path: NODE_PATHS.bootstrapKubeconfig, mode: "0600", content: bootstrap(host.name) },
            { path: "/etc/systemd/system/kubelet.service", mode: "0600", secret: false, content: settings.apply(kubeletUnit) },
          ],
          identity: [kubeBinaries.identity],
          create: pulumi.all([cluster.endpoint]).apply(([endpoint]) => kubeletScript(host.name, endpoint, readySeconds)),
          delete: kubeletDeleteScript,
        },
        // Its token exists and the approvers run before the kubelet asks for a certificate.
        { ...hostOpt, dependsOn: [...hostOpt.dependsOn, tokenSecrets[host.name], ...approvers, kubeInstall, ...(previousNode ? [previousNode] : [])] },
      );
      previousNode = hostStep(
        `${name}-${host.name}-kube-proxy`,
        {
          host,
          files: [
            { path: NODE_PATHS.kubeProxyConfig, mode: "0600", secret: false, content: kubeProxyConfig({ nodeName: host.name, clusterCidr: plan.podCidr.text, mode: proxyMode }) },
            { path: NODE_PATHS.kubeProxyKubeconfig, mode: "0600", content: kubeProxyKubeconfig },
            { path: "/etc/systemd/system/kube-proxy.service", mode: "0600", secret: false, content: kubeProxyUnit },
            { path: API_BALANCED_PATHS.script, mode: "0755", content: apiBalanced },
            { path: API_BALANCED_PATHS.service, mode: "0600", secret: false, content: apiBalancedService },
            { path: API_BALANCED_PATHS.timer, mode: "0600", secret: false, content: apiBalancedTimer },
          ],
          identity: [kubeBinaries.identity],
          create: kubeProxyScript(readySeconds, podApiAccess),
          delete: ["systemctl disable --now kube-proxy.service", "systemctl disable --now hakube-api-balanced.timer 2>/dev/null", apiBalancedScript({ serviceIp }).replace(/^#!.*\n/, "")].join("\n"),
        },
        { ...hostOpt, dependsOn: [...hostOpt.dependsOn, kubelet] },
      );
      return kubelet;
    });
    this.registerOutputs({});
  }
}

/** The version a toolchain folder says it was built for (its `kubernetes-version` file), if any. */
function stampedVersion(directory: string): string | undefined {
  const file = path.join(directory, "kubernetes-version");
  return fs.existsSync(file) ? fs.readFileSync(file, "utf8").trim() : undefined;
}

/**
 * Why kubelet and kube-proxy of version `node` may not run against apiservers of version
 * `controlPlane`, or undefined: Kubernetes' version-skew policy lets them be up to three
 * minor releases older than the apiservers, never newer (so a control plane is upgraded
 * before its workers). An unknown version allows anything.
 */
export function kubeletSkewProblem(node: string | undefined, controlPlane: string): string | undefined {
  const n = node === undefined ? undefined : parseVersion(node);
  const c = parseVersion(controlPlane);
  if (!n || !c) return undefined;
  if (n.major > c.major || (n.major === c.major && n.minor > c.minor)) {
    return `kubelet and kube-proxy of the control plane's minor release ${c.text} or up to three older (this folder holds ${n.text}, newer than the apiservers; upgrade the control plane first, or use the node family of ${c.text}: toolchain/build.sh node-${c.text})`;
  }
  if (n.major !== c.major || c.minor - n.minor > 3) {
    return `kubelet and kube-proxy at most three minor releases older than the control plane's ${c.text} (this folder holds ${n.text})`;
  }
  return undefined;
}

function installRuntimeScript(kind: "localDirectory" | "packages"): string {
  if (kind === "packages") {
    return `if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || [ ! -x ${NODE_PATHS.cniBin}/bridge ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc containernetworking-plugins >/dev/null
  mkdir -p ${NODE_PATHS.cniBin}
  for p in ${CNI_PLUGINS.join(" ")}; do [ -x ${NODE_PATHS.cniBin}/$p ] || ln -sf /usr/lib/cni/$p ${NODE_PATHS.cniBin}/$p; done
fi
ln -sf "$(command -v runc)" /usr/local/bin/runc 2>/dev/null || true
ln -sf "$(command -v containerd)" /usr/local/bin/containerd 2>/dev/null || true`;
  }
  const up = "/var/lib/hakube/uploads/node";
  return [
    `mkdir -p ${NODE_PATHS.cniBin}`,
    ...RUNTIME_BINARIES.map((b) => `install -m 0755 ${up}/${b} /usr/local/bin/${b}.hakube-new && mv -f /usr/local/bin/${b}.hakube-new /usr/local/bin/${b}`),
    ...CNI_PLUGINS.map((p) => `install -m 0755 ${up}/cni/${p} ${NODE_PATHS.cniBin}/${p}.hakube-new && mv -f ${NODE_PATHS.cniBin}/${p}.hakube-new ${NODE_PATHS.cniBin}/${p}`),
  ].join("\n");
}

/** The runtime step: binaries, containerd (restarted only when its files changed), the pod routes, images. */
export function runtimeScript(kind: "localDirectory" | "packages", archives: readonly string[], readySeconds: number): string {
  const attempts = Math.ceil(readySeconds / 2);
  return [
    installRuntimeScript(kind),
    "systemctl daemon-reload",
    "systemctl enable hakube-pod-routes.service containerd.service >/dev/null 2>&1",
    "systemctl restart hakube-pod-routes.service",
    'if [ -n "$HAKUBE_CHANGED" ] || ! systemctl is-active --quiet containerd.service; then systemctl restart containerd.service; fi',
    retry({ attempts, delaySeconds: 2 }, "containerd answers", ["ctr", "--timeout", "5s", "version"]) + " >/dev/null",
    ...archives.map((a) =>
      shellCommand(["ctr", "-n", "k8s.io", "images", "import", "--local", `/var/lib/hakube/uploads/images/${a}`]) + ` >/dev/null && echo ${quote(`hakube: imported ${a}`)}`,
    ),
  ].join("\n");
}

export const runtimeDeleteScript = `systemctl disable --now hakube-pod-routes.service containerd.service 2>/dev/null
rm -f /etc/systemd/system/containerd.service /etc/systemd/system/hakube-pod-routes.service ${NODE_PATHS.cniConfig}`;

/**
 * Whether a unit's main process runs a binary that has since been replaced (installs move
 * a new file over the old one, so the running one shows as deleted): a new version of
 * kubelet or kube-proxy (the step's identity changed, none of its files) restarts it.
 */
const runningReplacedFunction = shellFunction(
  "hakube_running_replaced",
  `pid=$(systemctl show -p MainPID --value "$1" 2>/dev/null || echo 0)
[ "\${pid:-0}" -gt 0 ] || return 1
case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in *" (deleted)") return 0 ;; esac
return 1`,
);

/**
 * The kubelet step: (re)started when its files changed or its binary was replaced, apart from the bootstrap
 * kubeconfig (a renewed token matters only to a node that has not joined yet); then
 * bounded waits until it has its client certificate and the node is Ready. The bootstrap
 * kubeconfig (this node's token) stays on the node only while the kubelet needs it: it is
 * removed at once when the kubelet has a valid client certificate, else as soon as it has
 * one, and on every way out of the step.
 */
export function kubeletScript(nodeName: string, endpoint: string, readySeconds: number): string {
  const attempts = Math.ceil(readySeconds / 2);
  const ready = shellFunction(
    "hakube_node_ready",
    `curl --silent --fail --max-time 3 --cacert ${NODE_PATHS.ca} --cert ${NODE_PATHS.kubeletCertDir}/kubelet-client-current.pem \\
  ${quote(`${endpoint}/api/v1/nodes/${nodeName}`)} | tr -d ' \\n' | grep -q '"type":"Ready","status":"True"'`,
  );
  // Running kube-system pods (the cluster DNS among them) on this node whose Ready condition
  // is False (a number; "x" when the API does not answer); users' pods never hold a node up. Fields of a condition come in the order the API writes them.
  const podsUnready = [
    shellFunction(
      "hakube_pods_unready",
      `out=$(curl --silent --fail --max-time 3 --cacert ${NODE_PATHS.ca} --cert ${NODE_PATHS.kubeletCertDir}/kubelet-client-current.pem \\
  ${quote(`${endpoint}/api/v1/pods?fieldSelector=spec.nodeName%3D${nodeName}%2Cstatus.phase%3DRunning%2Cmetadata.namespace%3Dkube-system`)}) || { echo x; return 0; }
printf '%s' "$out" | tr -d ' \\n' | grep -o -E '"type":"Ready",("observedGeneration":[0-9]+,)?"status":"False"' | wc -l | tr -d ' '`,
    ),
    shellFunction("hakube_pods_settled", '[ "$(hakube_pods_unready)" = 0 ]'),
  ].join("\n");
  const clientCert = `${NODE_PATHS.kubeletCertDir}/kubelet-client-current.pem`;
  // A kubeconfig and a client certificate that has not expired (where openssl is there to
  // tell): the kubelet starts without its bootstrap kubeconfig.
  const clientValid = shellFunction(
    "hakube_client_valid",
    `[ -s ${NODE_PATHS.kubeletKubeconfig} ] && [ -s ${clientCert} ] || return 1
! command -v openssl >/dev/null || openssl x509 -checkend 0 -noout -in ${clientCert} >/dev/null 2>&1`,
  );
  return [
    `mkdir -p ${NODE_PATHS.kubeletCertDir} /var/lib/kubelet`,
    `trap 'rm -f ${NODE_PATHS.bootstrapKubeconfig}' EXIT`,
    "systemctl daemon-reload",
    "systemctl enable kubelet.service >/dev/null 2>&1",
    `restart=$(printf '%s' "$HAKUBE_CHANGED" | grep -v -x -F ${NODE_PATHS.bootstrapKubeconfig} || true)`,
    runningReplacedFunction,
    clientValid,
    // A new cluster CA bundle (each CA rotation step changes it: the active CA comes first):
    // the kubelet bootstraps again, so its kubeconfig trusts what the bundle holds and its
    // certificates come from the CA that signs now; the node and its pods keep running.
    `rebootstrap=$(printf '%s' "$HAKUBE_CHANGED" | grep -x -F ${NODE_PATHS.ca} || true)`,
    `if [ -n "$rebootstrap" ] && [ -e ${NODE_PATHS.kubeletKubeconfig} ]; then`,
    "  echo 'hakube: the cluster CAs changed: kubelet bootstraps its certificates again'",
    // A kubeconfig whose certificate is missing or expired (a join cut short, a node off
    // for longer than its certificate lived): the same, or the wait below would pass on
    // the old file.
    `elif [ -e ${NODE_PATHS.kubeletKubeconfig} ] && ! hakube_client_valid; then`,
    "  echo 'hakube: the kubelet has no valid client certificate: it bootstraps again'",
    "  rebootstrap=yes",
    "fi",
    `if [ -n "$rebootstrap" ] && [ -e ${NODE_PATHS.kubeletKubeconfig} ]; then`,
    "  systemctl stop kubelet.service",
    `  rm -f ${NODE_PATHS.kubeletKubeconfig} ${NODE_PATHS.kubeletCertDir}/kubelet-client-*.pem ${NODE_PATHS.kubeletCertDir}/kubelet-server-*.pem`,
    "  restart=yes",
    "fi",
    // A joined node does not need its token: gone before the kubelet (re)starts.
    `if hakube_client_valid; then rm -f ${NODE_PATHS.bootstrapKubeconfig}; fi`,
    "restarted=",
    'if [ -n "$restart" ] || ! systemctl is-active --quiet kubelet.service || hakube_running_replaced kubelet.service; then systemctl restart kubelet.service; restarted=yes; fi',
    retry({ attempts, delaySeconds: 2 }, "kubelet has its client certificate", ["test", "-s", clientCert]),
    // The kubelet read its bootstrap kubeconfig when it started and never reads it again
    // while its certificate is valid (it renews that certificate with the certificate).
    `rm -f ${NODE_PATHS.bootstrapKubeconfig}`,
    ready,
    retry({ attempts, delaySeconds: 2 }, `node ${nodeName} Ready`, ["hakube_node_ready"]),
    // A restarted kubelet probes its pods' readiness anew (they count as not ready until
    // then): wait for the kube-system pods on this node to be ready again before the next
    // node restarts,
    // so a Service (the cluster DNS) never loses every endpoint at once.
    podsUnready,
    'if [ -n "$restarted" ]; then',
    "  n=0",
    "  while [ $n -lt 5 ] && [ \"$(hakube_pods_unready)\" = 0 ]; do sleep 1; n=$((n + 1)); done",
    retry({ attempts, delaySeconds: 2 }, `the pods on ${nodeName} ready again`, ["hakube_pods_settled"]).replace(/^/gm, "  "),
    "fi",
    // Logs, exec and metrics need the serving certificate (approved by hakube's approver).
    `if [ -n "$rebootstrap" ]; then`,
    retry({ attempts, delaySeconds: 2 }, "kubelet has its serving certificate", ["test", "-s", `${NODE_PATHS.kubeletCertDir}/kubelet-server-current.pem`]).replace(/^/gm, "  "),
    "fi",
    `echo ${quote(`hakube: node ${nodeName} is Ready`)}`,
  ].join("\n");
}

/** Stops kubelet, then every container, so the machine stops at once and nothing is left running. */
export const kubeletDeleteScript = `systemctl disable --now kubelet.service 2>/dev/null
if command -v ctr >/dev/null; then
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s KILL "$t" 2>/dev/null; done
fi
rm -f /etc/systemd/system/kubelet.service ${NODE_PATHS.bootstrapKubeconfig}`;

export function kubeProxyScript(readySeconds: number, podApiAccess: "balancer" | "service" = "service"): string {
  const attempts = Math.ceil(readySeconds / 2);
  // After kube-proxy has its rules: the balanced-endpoint rule first (and kept first by its
  // timer), or removed with its timer.
  const access =
    podApiAccess === "balancer"
      ? ["systemctl daemon-reload", "systemctl enable --now hakube-api-balanced.timer >/dev/null 2>&1", API_BALANCED_PATHS.script]
      : ["systemctl disable --now hakube-api-balanced.timer >/dev/null 2>&1 || true", API_BALANCED_PATHS.script];
  return [
    "systemctl daemon-reload",
    "systemctl enable kube-proxy.service >/dev/null 2>&1",
    runningReplacedFunction,
    'if [ -n "$HAKUBE_CHANGED" ] || ! systemctl is-active --quiet kube-proxy.service || hakube_running_replaced kube-proxy.service; then systemctl restart kube-proxy.service; fi',
    retry({ attempts, delaySeconds: 2 }, "kube-proxy /healthz", ["curl", "--silent", "--fail", "--max-time", "3", "-o", "/dev/null", "http://127.0.0.1:10256/healthz"]),
    ...access,
  ].join("\n");
}
