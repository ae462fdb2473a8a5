import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { ApiEndpoint, endpointUrl, Host } from "../types";
import { ClusterPki, ClusterPkiArgs } from "../pki/clusterPki";
import { EtcdCluster, EtcdClusterArgs } from "../etcd/etcdCluster";
import { ApiServerPool, ApiServerPoolArgs } from "../apiserver/apiServerPool";
import { KeepalivedLoadBalancer, KeepalivedLoadBalancerArgs } from "../loadbalancer/keepalivedLoadBalancer";
import { haproxyDetectionSeconds } from "../loadbalancer/render";
import { LeaderElectedControllers, LeaderElectedControllersArgs } from "../controllers/leaderElectedControllers";
import { BinarySource } from "../binaries/source";
import { isIpv4 } from "../net";
import {
  invalid,
  knownValue,
  requireCidr,
  requireConsistentHosts,
  requireDisjointRanges,
  requireEtcdMemberCount,
  requireHosts,
  requireVersion,
  resolveLeaderElection,
} from "../validation";
import { DEFAULT_KUBERNETES_VERSION, MINIMUM_ETCD_VERSION, MINIMUM_KUBERNETES_VERSION, parseVersion } from "../version";
import { DEFAULT_ETCD_VERSION } from "../etcd/etcdCluster";
import { DeployedVersions } from "./deployedVersions";

/** keepalived + HAProxy options, without what HaControlPlane supplies itself. */
export type KeepalivedOptions = Omit<KeepalivedLoadBalancerArgs, "hosts" | "apiServers" | "pki"> & {
  /** Balancer hosts. @default the control-plane hosts (HAProxy then listens on 8443) */
  readonly hosts?: readonly Host[];
};

/** An endpoint made outside (e.g. `AwsNetworkLoadBalancer`), already targeting the control-plane hosts. */
export interface ExternalEndpointOptions {
  /** The balancer's address and port (e.g. `AwsNetworkLoadBalancer.external.endpoint`); goes into the apiserver certificate's SANs. */
  readonly endpoint: ApiEndpoint;
  /** Worst-case seconds for the balancer to stop using a failing apiserver. */
  readonly detectionTimeSeconds: number;
}

/** Arguments of {@link HaControlPlane}; checked at preview (bad input throws a `ResourceError` naming the argument). */
export interface HaControlPlaneArgs {
  /** Hosts running kube-apiserver, kube-controller-manager and kube-scheduler (and etcd when stacked). */
  readonly controlPlaneHosts: readonly Host[];
  /** Hosts of an external etcd cluster. @default controlPlaneHosts (stacked etcd) */
  readonly etcdHosts?: readonly Host[];
  /** The stable API endpoint: a keepalived VIP with HAProxy, or an external balancer. */
  readonly loadBalancer: { readonly keepalived: KeepalivedOptions } | { readonly external: ExternalEndpointOptions };
  /**
   * Upgrades move one minor release at a time and never back (checked at preview against
   * the deployed version); apiservers roll first, then controller-manager and scheduler.
   * @default "v1.37.1" (`DEFAULT_KUBERNETES_VERSION`)
   */
  readonly kubernetesVersion?: string;
  /** Moves one minor release at a time and never back, like kubernetesVersion. @default "v3.6.16" */
  readonly etcdVersion?: string;
  /** @default both { kind: "release" } */
  readonly binaries?: { readonly kubernetes?: BinarySource; readonly etcd?: BinarySource };
  /** @default "10.96.0.0/12" */
  readonly serviceCidr?: string;
  /** @default "10.244.0.0/16" */
  readonly podCidr?: string;
  /** @default "cluster.local" */
  readonly clusterDomain?: string;
  /** @default "hakube" */
  readonly clusterName?: string;
  /** Certificate validity, early renewal and extra apiserver SANs, passed to {@link ClusterPki}. */
  readonly certificates?: Pick<ClusterPkiArgs, "caValidityHours" | "certificateValidityHours" | "earlyRenewalHours" | "extraApiServerSans">;
  /** etcd tuning (timing, ports, data directory, ready timeout), passed to {@link EtcdCluster}. */
  readonly etcd?: Pick<EtcdClusterArgs, "heartbeatIntervalMs" | "electionTimeoutMs" | "clientPort" | "peerPort" | "dataDir" | "readyTimeoutSeconds">;
  /** kube-apiserver tuning (port, shutdown delay, audit log, extra flags, etcd access), passed to {@link ApiServerPool}. */
  readonly apiServer?: Pick<
    ApiServerPoolArgs,
    "securePort" | "shutdownDelayDurationSeconds" | "audit" | "extraFlags" | "readyTimeoutSeconds" | "etcdAccess"
  >;
  /** How controller-manager and scheduler reach the API and their leader-election timings, passed to {@link LeaderElectedControllers}. */
  readonly controllers?: Pick<LeaderElectedControllersArgs, "apiAccess" | "leaderElection" | "readyTimeoutSeconds">;
  /** Make a `@pulumi/kubernetes` Provider for the new cluster (loads the kubernetes plugin). @default true */
  readonly kubernetesProvider?: boolean;
}

/**
 * A highly available Kubernetes control plane on the given hosts: PKI, etcd (stacked or
 * external), one apiserver per host behind one stable endpoint, and leader-elected
 * controller-manager and scheduler. Each part waits for the one below it to be ready.
 */
export class HaControlPlane extends pulumi.ComponentResource {
  /** `https://<endpoint>:<port>` */
  public readonly endpoint: pulumi.Output<string>;
  /** PEM of the cluster CA (trust anchor for the API endpoint). */
  public readonly caCertificate: pulumi.Output<string>;
  /** Secret. */
  public readonly adminKubeconfig: pulumi.Output<string>;
  /** A `@pulumi/kubernetes` Provider for the new cluster (unless `kubernetesProvider: false`). */
  public readonly provider?: k8s.Provider;
  /** `https://<address>:<clientPort>` of every etcd member. */
  public readonly etcdEndpoints: pulumi.Output<string[]>;
  /** CAs, certificates and kubeconfigs of the cluster. */
  public readonly pki: ClusterPki;
  /** The etcd cluster (stacked or external). */
  public readonly etcd: EtcdCluster;
  /** One kube-apiserver per control-plane host. */
  public readonly apiServers: ApiServerPool;
  /** The stable API endpoint: the {@link KeepalivedLoadBalancer}, or the external endpoint given. */
  public readonly loadBalancer: ApiEndpoint;
  /** kube-controller-manager and kube-scheduler, leader-elected. */
  public readonly controllers: LeaderElectedControllers;
  /** The Kubernetes and etcd versions recorded in the state (checked against the next ones). */
  public readonly versions: DeployedVersions;
  /** Completes when the API answers through the endpoint and both Leases are held. */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: HaControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:HaControlPlane", name, {}, opts);
    const cp = args.controlPlaneHosts;
    requireHosts(this, "controlPlaneHosts", cp);
    const etcdHosts = args.etcdHosts ?? cp;
    requireHosts(this, "etcdHosts", etcdHosts);
    // Checked here too so that messages name this component's arguments.
    requireEtcdMemberCount(this, args.etcdHosts ? "etcdHosts" : "controlPlaneHosts (stacked etcd)", etcdHosts.length);
    resolveLeaderElection(this, "controllers.leaderElection", args.controllers?.leaderElection);
    if (!args.loadBalancer || (!("keepalived" in args.loadBalancer) && !("external" in args.loadBalancer))) {
      invalid(this, "loadBalancer", args.loadBalancer ?? null, "{ keepalived: {...} } or { external: {...} }");
    }
    const keepalived = "keepalived" in args.loadBalancer ? args.loadBalancer.keepalived : undefined;
    const external = "external" in args.loadBalancer ? args.loadBalancer.external : undefined;
    const balancerHosts = keepalived?.hosts ?? (keepalived ? cp : []);
    if (keepalived) {
      if (!isIpv4(keepalived.virtualIp ?? "")) {
        invalid(this, "loadBalancer.keepalived.virtualIp", keepalived.virtualIp, "an IPv4 address");
      }
      const owner = [...cp, ...etcdHosts, ...balancerHosts].find((h) => knownValue(h.address) === keepalived.virtualIp);
      if (owner) {
        invalid(this, "loadBalancer.keepalived.virtualIp", keepalived.virtualIp, `an address no host uses (it is ${owner.name}'s address)`);
      }
    }
    requireConsistentHosts(this, "hosts", [cp, etcdHosts, balancerHosts]);
    const serviceCidr = requireCidr(this, "serviceCidr", args.serviceCidr ?? "10.96.0.0/12");
    const podCidr = requireCidr(this, "podCidr", args.podCidr ?? "10.244.0.0/16");
    requireDisjointRanges(
      this,
      { argument: "serviceCidr", cidr: serviceCidr },
      { argument: "podCidr", cidr: podCidr },
      [...cp, ...etcdHosts, ...balancerHosts],
    );
    const kubernetesVersion = requireVersion(
      this,
      "kubernetesVersion",
      args.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION,
      parseVersion(MINIMUM_KUBERNETES_VERSION),
    ).text;
    const etcdVersion = requireVersion(this, "etcdVersion", args.etcdVersion ?? DEFAULT_ETCD_VERSION, parseVersion(MINIMUM_ETCD_VERSION)).text;
    // Registered before anything that acts on a host: its check refuses, at preview, an
    // upgrade that skips a minor release or goes back from the deployed versions.
    this.versions = new DeployedVersions(`${name}-versions`, { kubernetesVersion, etcdVersion }, { parent: this });
    const detectionSeconds = keepalived ? haproxyDetectionSeconds(keepalived.healthCheck) : external!.detectionTimeSeconds;
    const apiEndpointAddress = keepalived ? pulumi.output(keepalived.virtualIp) : external!.endpoint.endpoint;

    this.pki = new ClusterPki(
      `${name}-pki`,
      {
        controlPlaneHosts: cp,
        etcdHosts,
        apiEndpoint: apiEndpointAddress,
        serviceCidr: serviceCidr.text,
        clusterDomain: args.clusterDomain,
        ...args.certificates,
      },
      { parent: this },
    );
    const cpNames = new Set(cp.map((h) => h.name));
    const stacked = etcdHosts.every((h) => cpNames.has(h.name));
    this.etcd = new EtcdCluster(
      `${name}-etcd`,
      {
        hosts: etcdHosts,
        pki: this.pki,
        version: etcdVersion,
        binaries: args.binaries?.etcd,
        localApiServer: stacked ? { securePort: args.apiServer?.securePort ?? 6443, settleSeconds: detectionSeconds + 2 } : undefined,
        ...args.etcd,
      },
      { parent: this },
    );
    this.apiServers = new ApiServerPool(
      `${name}-apiserver`,
      {
        hosts: cp,
        pki: this.pki,
        etcd: this.etcd,
        kubernetesVersion,
        binaries: args.binaries?.kubernetes,
        serviceCidr: serviceCidr.text,
        clusterDomain: args.clusterDomain,
        balancerDetectionSeconds: detectionSeconds,
        ...args.apiServer,
      },
      { parent: this },
    );
    this.loadBalancer = keepalived
      ? new KeepalivedLoadBalancer(
          `${name}-lb`,
          { ...keepalived, hosts: balancerHosts, apiServers: this.apiServers, pki: this.pki },
          { parent: this },
        )
      : external!.endpoint;
    this.controllers = new LeaderElectedControllers(
      `${name}-controllers`,
      {
        hosts: cp,
        pki: this.pki,
        apiServers: this.apiServers,
        endpoint: this.loadBalancer,
        podCidr: podCidr.text,
        serviceCidr: serviceCidr.text,
        clusterName: args.clusterName,
        ...args.controllers,
      },
      { parent: this },
    );

    this.endpoint = endpointUrl(this.loadBalancer);
    this.caCertificate = this.pki.clusterCa.certPem;
    this.adminKubeconfig = this.pki.kubeconfig(this.pki.adminClient, "hakube-admin", this.endpoint, args.clusterName ?? "hakube");
    this.etcdEndpoints = this.etcd.clientEndpoints;
    this.ready = [this.controllers.ready, ...(this.loadBalancer.ready ? [this.loadBalancer.ready] : [])];
    if (args.kubernetesProvider ?? true) {
      this.provider = new k8s.Provider(
        `${name}-k8s`,
        { kubeconfig: this.adminKubeconfig, enableServerSideApply: true },
        { parent: this, dependsOn: this.ready },
      );
    }
    this.registerOutputs({
      endpoint: this.endpoint,
      caCertificate: this.caCertificate,
      adminKubeconfig: this.adminKubeconfig,
      etcdEndpoints: this.etcdEndpoints,
    });
  }
}
