import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { formatIpv4 } from "../net";
import { invalid, requireInteger } from "../validation";
import type { HaControlPlane } from "../controlplane/haControlPlane";

export interface ClusterDnsArgs {
  readonly controlPlane: HaControlPlane;
  /** The CoreDNS image. @default "registry.k8s.io/coredns/coredns:v1.15.0" */
  readonly image?: string;
  /** "Never" for images imported on the nodes (no registry). @default "IfNotPresent" */
  readonly imagePullPolicy?: "Always" | "IfNotPresent" | "Never";
  /** @default 2 */
  readonly replicas?: number;
  /** What must exist before the pods can run (e.g. the WorkerPool's nodes). */
  readonly after?: readonly pulumi.Resource[];
}

/** The Corefile: the cluster's zone from the API, nothing forwarded (no upstream resolver is assumed). */
export function corefile(clusterDomain: string): string {
  return `.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes ${clusterDomain} in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
    cache 30
    loop
    reload
    loadbalance
}
`;
}

/**
 * CoreDNS in kube-system, made through the control plane's Kubernetes provider: the
 * `kube-dns` Service at the tenth address of the service range (what kubelets give pods as
 * their name server), two replicas on different nodes, RBAC to read Services and
 * EndpointSlices. `pulumi up` waits until its pods are ready.
 */
export class ClusterDns extends pulumi.ComponentResource {
  public readonly serviceIp: string;
  public readonly deployment: k8s.apps.v1.Deployment;

  constructor(name: string, args: ClusterDnsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:ClusterDns", name, {}, opts);
    const cluster = args.controlPlane;
    if (!cluster.provider) {
      invalid(this, "controlPlane", "a control plane made with kubernetesProvider: false", "one with its Kubernetes provider");
    }
    const replicas = requireInteger(this, "replicas", args.replicas ?? 2, 1, 10);
    const image = args.image ?? "registry.k8s.io/coredns/coredns:v1.15.0";
    const pullPolicy = args.imagePullPolicy ?? "IfNotPresent";
    if (!["Always", "IfNotPresent", "Never"].includes(pullPolicy)) {
      invalid(this, "imagePullPolicy", pullPolicy, '"Always", "IfNotPresent" or "Never"');
    }
    this.serviceIp = formatIpv4(cluster.plan.serviceCidr.network + 10);
    const k8sOpt = { parent: this, provider: cluster.provider } as const;
    const labels = { "k8s-app": "kube-dns" };
    const account = new k8s.core.v1.ServiceAccount(`${name}-coredns`, { metadata: { name: "coredns", namespace: "kube-system" } }, k8sOpt);
    const role = new k8s.rbac.v1.ClusterRole(
      `${name}-coredns`,
      {
        metadata: { name: "system:coredns" },
        rules: [
          { apiGroups: [""], resources: ["endpoints", "services", "pods", "namespaces"], verbs: ["list", "watch"] },
          { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["list", "watch"] },
        ],
      },
      k8sOpt,
    );
    const binding = new k8s.rbac.v1.ClusterRoleBinding(
      `${name}-coredns`,
      {
        metadata: { name: "system:coredns" },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:coredns" },
        subjects: [{ kind: "ServiceAccount", name: "coredns", namespace: "kube-system" }],
      },
      { ...k8sOpt, dependsOn: [role, account] },
    );
    const config = new k8s.core.v1.ConfigMap(
      `${name}-coredns`,
      { metadata: { name: "coredns", namespace: "kube-system" }, data: { Corefile: corefile(cluster.clusterDomain) } },
      k8sOpt,
    );
    this.deployment = new k8s.apps.v1.Deployment(
      `${name}-coredns`,
      {
        metadata: { name: "coredns", namespace: "kube-system", labels },
        spec: {
          replicas,
          selector: { matchLabels: labels },
          strategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } },
          template: {
            metadata: { labels },
            spec: {
              serviceAccountName: "coredns",
              priorityClassName: "system-cluster-critical",
              dnsPolicy: "Default",
              affinity: {
                podAntiAffinity: {
                  preferredDuringSchedulingIgnoredDuringExecution: [
                    { weight: 100, podAffinityTerm: { labelSelector: { matchLabels: labels }, topologyKey: "kubernetes.io/hostname" } },
                  ],
                },
              },
              containers: [
                {
                  name: "coredns",
                  image,
                  imagePullPolicy: pullPolicy,
                  args: ["-conf", "/etc/coredns/Corefile"],
                  ports: [
                    { name: "dns", containerPort: 53, protocol: "UDP" },
                    { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                    { name: "metrics", containerPort: 9153, protocol: "TCP" },
                  ],
                  resources: { requests: { cpu: "50m", memory: "40Mi" }, limits: { memory: "170Mi" } },
                  securityContext: {
                    allowPrivilegeEscalation: false,
                    capabilities: { add: ["NET_BIND_SERVICE"], drop: ["ALL"] },
                    readOnlyRootFilesystem: true,
                  },
                  livenessProbe: { httpGet: { path: "/health", port: 8080 }, initialDelaySeconds: 10, timeoutSeconds: 5, failureThreshold: 5 },
                  // Probed every 2 s: ready again soon after its kubelet restarts.
                  readinessProbe: { httpGet: { path: "/ready", port: 8181 }, periodSeconds: 2 },
                  volumeMounts: [{ name: "config", mountPath: "/etc/coredns", readOnly: true }],
                },
              ],
              volumes: [{ name: "config", configMap: { name: "coredns" } }],
            },
          },
        },
      },
      { ...k8sOpt, dependsOn: [binding, config, ...(args.after ?? [])] },
    );
    new k8s.core.v1.Service(
      `${name}-kube-dns`,
      {
        metadata: { name: "kube-dns", namespace: "kube-system", labels: { ...labels, "kubernetes.io/name": "CoreDNS" } },
        spec: {
          selector: labels,
          clusterIP: this.serviceIp,
          ports: [
            { name: "dns", port: 53, protocol: "UDP" },
            { name: "dns-tcp", port: 53, protocol: "TCP" },
            { name: "metrics", port: 9153, protocol: "TCP" },
          ],
        },
      },
      // Not waiting for the pods: the Deployment does that.
      { ...k8sOpt, dependsOn: [binding] },
    );
    this.registerOutputs({ serviceIp: this.serviceIp });
  }
}
