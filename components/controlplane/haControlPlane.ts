import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { restoreReadyScript } from "../backup/restore";
import { K8S_PKI } from "../apiserver/render";
import { onceStep } from "../remote/hostStep";
import { ApiEndpoint, endpointUrl, Host } from "../types";
import { ClusterPki, ClusterPkiArgs } from "../pki/clusterPki";
import { EtcdCluster, EtcdClusterArgs } from "../etcd/etcdCluster";
import { ApiServerPool, ApiServerPoolArgs } from "../apiserver/apiServerPool";
import { KeepalivedLoadBalancer, KeepalivedLoadBalancerArgs } from "../loadbalancer/keepalivedLoadBalancer";
import { LeaderElectedControllers, LeaderElectedControllersArgs } from "../controllers/leaderElectedControllers";
import { BinarySource } from "../binaries/source";
import { DeployedVersions } from "./deployedVersions";
import { ControlPlanePlan, planControlPlane } from "./plan";
import { HostObservation, ObservedNetwork } from "../observe/hostObservation";
import { HostNetworkSettings, hostNetworkStep } from "../host/hostNetwork";
import { BackupStorageArgs, backupFiles, backupKeyPair, backupSigningKey, clusterIdOf, EtcdBackups, resolveBackupSettings } from "../backup/etcdBackups";

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
  readonly certificates?: Pick<ClusterPkiArgs, "caValidityHours" | "certificateValidityHours" | "earlyRenewalHours" | "extraApiServerSans" | "serviceAccountKeys" | "certificateAuthorities">;
  /** etcd tuning (timing, ports, data directory, ready timeout), passed to {@link EtcdCluster}. */
  readonly etcd?: Pick<EtcdClusterArgs, "heartbeatIntervalMs" | "electionTimeoutMs" | "clientPort" | "peerPort" | "dataDir" | "readyTimeoutSeconds">;
  /** kube-apiserver tuning (port, shutdown delay, audit log, extra flags, etcd access), passed to {@link ApiServerPool}. */
  readonly apiServer?: Pick<
    ApiServerPoolArgs,
    "securePort" | "shutdownDelayDurationSeconds" | "audit" | "extraFlags" | "readyTimeoutSeconds" | "etcdAccess" | "secretsEncryption"
  >;
  /** How controller-manager and scheduler reach the API and their leader-election timings, passed to {@link LeaderElectedControllers}. */
  readonly controllers?: Pick<LeaderElectedControllersArgs, "apiAccess" | "leaderElection" | "readyTimeoutSeconds">;
  /** Make a `@pulumi/kubernetes` Provider for the new cluster (loads the kubernetes plugin). @default true */
  readonly kubernetesProvider?: boolean;
  /**
   * Drift checks on refresh: one {@link HostObservation} per host looks at it over SSH (the
   * system `ssh` client, the connection's private key) when you run `pulumi preview
   * --refresh` or `pulumi up --refresh`, and the steps of what it finds wrong run again.
   * `network`: on a local stack, the bridge the hosts are reached through (no packet is sent
   * while it is missing). @default { enabled: true }
   */
  readonly observe?: { readonly enabled?: boolean; readonly network?: ObservedNetwork };
  /**
   * TCP settings on every host, applied before the services start and at each boot: the
   * retransmission timeout is capped (`tcpRtoMaxMs`, Linux >= 6.15), so a connection that
   * outlived a network partition carries etcd's votes again soon after it heals; older
   * kernels get `fallbackTcpRetries2` instead (such a connection is dropped sooner and
   * redialled). `false` leaves the hosts' settings alone.
   * @default { tcpRtoMaxMs: 1000, fallbackTcpRetries2: 5 }
   */
  readonly hostNetwork?: Partial<HostNetworkSettings> | false;
  /**
   * Scheduled, encrypted etcd snapshots to S3 or an S3-compatible server (see
   * {@link EtcdBackups}). @default none (no backups: say so in production)
   */
  readonly backups?: {
    readonly storage: BackupStorageArgs;
    /** @default 30 */
    readonly intervalMinutes?: number;
    /** @default 48 */
    readonly keep?: number;
    /**
     * Restore every etcd member from a backup in this `pulumi up`: `from` is "latest" or a
     * backup's name. It runs when the request is new (remove it once restored; setting it
     * again restores again). Refused while etcd still has quorum unless `confirm` is
     * "replace-a-healthy-cluster". Nothing is stopped until every host has checked the backup.
     */
    readonly restore?: { readonly from: string; readonly confirm?: string };
    /**
     * Read the newest backup from storage when the program runs (`backups.lastBackup`, a
     * stack output users export). Needs an access key in `storage.credentials`. @default true
     */
    readonly readLastBackup?: boolean;
  };
}

/**
 * A highly available Kubernetes control plane on the given hosts: PKI, etcd (stacked or
 * external), one apiserver per host behind one stable endpoint, and leader-elected
 * controller-manager and scheduler. Each part waits for the one below it to be ready.
 */
export class HaControlPlane extends pulumi.ComponentResource {
  /** `https://<endpoint>:<port>` */
  public readonly endpoint: pulumi.Output<string>;
  /** PEM of the cluster CAs (trust anchors for the API endpoint; two during a CA rotation). */
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
  /** The etcd backups, when `backups` is given. */
  public readonly backups?: EtcdBackups;
  /**
   * PEM of the private key backups are encrypted to (secret). Made whether or not `backups`
   * is given: turning backups off and on again keeps the key every earlier backup needs.
   */
  public readonly backupKey: pulumi.Output<string>;
  /** PEM of the backup key's certificate. */
  public readonly backupCertificate: pulumi.Output<string>;
  /** The Kubernetes and etcd versions recorded in the state (checked against the next ones). */
  public readonly versions: DeployedVersions;
  /** One per host: what the last refresh found of it. */
  public readonly observations: HostObservation[];
  /** One per host (unless `hostNetwork: false`): its TCP settings; every other step on the host waits for it. */
  public readonly hostNetworkSteps: pulumi.Resource[];
  /** The cluster's DNS domain (`clusterDomain`). */
  public readonly clusterDomain: string;
  /** The resolved plan: topology, hosts per role, versions, ranges, ports and timings. */
  public readonly plan: ControlPlanePlan;
  /** Completes when the API answers through the endpoint and both Leases are held. */
  public readonly ready: pulumi.Resource[];

  constructor(name: string, args: HaControlPlaneArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:HaControlPlane", name, {}, opts);
    // Every default, the topology, ports and timings, resolved and checked once.
    const plan = planControlPlane(this, args);
    this.plan = plan;
    this.clusterDomain = args.clusterDomain ?? "cluster.local";
    // Registered before anything that acts on a host: its check refuses, at preview, an
    // upgrade that skips a minor release or goes back from the deployed versions.
    this.versions = new DeployedVersions(
      `${name}-versions`,
      { kubernetesVersion: plan.versions.kubernetes, etcdVersion: plan.versions.etcd },
      { parent: this },
    );

    // Per host (a host may carry several roles), the view the components get: observed
    // (its steps run again when a refresh found it drifted), and waiting for its network
    // settings, which come before any service on it opens a connection.
    const seen = new Map<string, Host>();
    this.observations = [];
    this.hostNetworkSteps = [];
    for (const host of plan.hosts) {
      let current = host;
      if (args.observe?.enabled ?? true) {
        const observation = new HostObservation(`${name}-observe-${host.name}`, { host, network: args.observe?.network }, { parent: this });
        this.observations.push(observation);
        current = observation.observed(host);
      }
      if (plan.hostNetwork) {
        const step = hostNetworkStep(`${name}-network-${host.name}`, current, plan.hostNetwork, { parent: this, dependsOn: [this.versions] });
        this.hostNetworkSteps.push(step);
        current = { ...current, after: step };
      }
      seen.set(host.name, current);
    }
    const view = (hosts: readonly Host[]) => hosts.map((h) => seen.get(h.name) ?? h);
    const cp = view(plan.controlPlaneHosts);
    const etcdHosts = view(plan.etcdHosts);
    const balancerHosts = view(plan.balancerHosts);
    const serviceCidr = plan.serviceCidr;
    const podCidr = plan.podCidr;
    const detectionSeconds = plan.timings.balancerDetectionSeconds;
    this.pki = new ClusterPki(
      `${name}-pki`,
      {
        controlPlaneHosts: cp,
        etcdHosts,
        apiEndpoint: plan.apiEndpointAddress,
        serviceCidr: serviceCidr.text,
        clusterDomain: args.clusterDomain,
        ...args.certificates,
      },
      { parent: this },
    );
    // The backup keys first: a restore in this very `pulumi up` checks the backup's
    // signature with the one and decrypts it with the other. Made even with backups off
    // (same names), so a setting turned off for a while (`hakube:backups false`) does not
    // drop from the state the keys every earlier backup is encrypted to and signed with.
    const backupSettings = args.backups ? resolveBackupSettings(this, args.backups) : undefined;
    const backupKey = backupKeyPair(`${name}-backups`, this);
    const backupSigning = backupSigningKey(`${name}-backups`, this);
    this.backupKey = backupKey.keyPem;
    this.backupCertificate = backupKey.certPem;
    this.etcd = new EtcdCluster(
      `${name}-etcd`,
      {
        hosts: etcdHosts,
        pki: this.pki,
        version: plan.versions.etcd,
        binaries: args.binaries?.etcd,
        localApiServer:
          plan.topology === "stacked" ? { securePort: plan.apiServerPort, settleSeconds: plan.timings.balancerSettleSeconds } : undefined,
        membership: { argument: plan.etcdArgument, network: args.observe?.network },
        restore:
          args.backups?.restore && backupSettings
            ? {
                from: args.backups.restore.from,
                confirm: args.backups.restore.confirm,
                // The public half of the signing key only: a restore checks, it signs nothing.
                files: backupFiles(args.backups.storage, backupSettings, this.pki.clusterIdentityPem.apply(clusterIdOf), backupKey.certPem, backupSigning.publicKeyPem),
                key: backupKey,
                apiHosts: cp,
              }
            : undefined,
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
        kubernetesVersion: plan.versions.kubernetes,
        binaries: args.binaries?.kubernetes,
        serviceCidr: serviceCidr.text,
        clusterDomain: args.clusterDomain,
        balancerDetectionSeconds: detectionSeconds,
        ...args.apiServer,
        securePort: plan.apiServerPort,
        etcdAccess: plan.etcdAccess,
        network: args.observe?.network,
        after: this.etcd.restored ? [this.etcd.restored] : undefined,
      },
      { parent: this },
    );
    this.loadBalancer =
      plan.balancer.kind === "keepalived"
        ? new KeepalivedLoadBalancer(
            `${name}-lb`,
            { ...plan.balancer.options, hosts: balancerHosts, apiServers: this.apiServers, pki: this.pki, network: args.observe?.network },
            { parent: this },
          )
        : plan.balancer.options.endpoint;
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
        leaderElection: plan.timings.leaderElection,
      },
      { parent: this },
    );

    this.endpoint = endpointUrl(this.loadBalancer);
    this.caCertificate = this.pki.clusterCaBundle;
    this.adminKubeconfig = this.pki.kubeconfig(this.pki.adminClient, "hakube-admin", this.endpoint, args.clusterName ?? "hakube");
    this.etcdEndpoints = this.etcd.clientEndpoints;
    const ready = [this.controllers.ready, this.apiServers.secretsEncrypted, ...(this.loadBalancer.ready ? [this.loadBalancer.ready] : [])];
    if (this.etcd.restoreStarted && this.etcd.restoreTriggers) {
      // The gates once more after a restore, which changes none of the components' steps.
      const lb = this.loadBalancer instanceof KeepalivedLoadBalancer ? this.loadBalancer : undefined;
      const script = pulumi
        .all([pulumi.all(cp.map((h) => h.address)), lb?.endpoint, lb?.port])
        .apply(([addresses, vip, port]) =>
          restoreReadyScript({
            apiAddresses: addresses,
            apiPort: plan.apiServerPort,
            balancer: vip !== undefined && port !== undefined ? { virtualIp: vip, port, caPath: `${K8S_PKI}/ca.crt` } : undefined,
            attempts: 90,
          }),
        );
      ready.push(
        onceStep(`${name}-restore-ready`, { host: cp[0], create: script, triggers: this.etcd.restoreTriggers }, { parent: this, dependsOn: [...this.etcd.restoreStarted, ...ready] }),
      );
    }
    this.ready = ready;
    if (args.backups) {
      this.backups = new EtcdBackups(
        `${name}-backups`,
        {
          hosts: etcdHosts,
          storage: args.backups.storage,
          // The first cluster CA's: a CA rotation keeps the backups where they are.
          clusterCaCertificate: this.pki.clusterIdentityPem,
          intervalMinutes: args.backups.intervalMinutes,
          keep: args.backups.keep,
          key: backupKey,
          signingKey: backupSigning,
          readLastBackup: args.backups.readLastBackup,
          network: args.observe?.network,
          // After the whole control plane: the first backup holds the bootstrapped cluster.
          after: [this.etcd.ready, ...(this.etcd.restored ? [this.etcd.restored] : []), ...this.ready],
        },
        { parent: this },
      );
    }
    if (args.kubernetesProvider ?? true) {
      // skipUpdateUnreachable: the repair and restore command (`pulumi up --refresh`) reads
      // every object before the program runs, which is when the API may be down (the reason
      // for the repair). Unreachable, the provider keeps the objects' recorded state instead
      // of failing the run; the provider itself is registered only after the ready gates, so
      // the objects are applied against a control plane that answers.
      //
      // clusterIdentifier: the provider stands for this control plane for good. Without it,
      // a change of the kubeconfig's cluster entry (its CA data, in every CA rotation step)
      // makes the provider plan a replacement of itself and of every object made through it:
      // each object is created again under the same name and then the original deleted,
      // which deletes the live object (CoreDNS, RBAC, the bootstrap token).
      this.provider = new k8s.Provider(
        `${name}-k8s`,
        {
          kubeconfig: this.adminKubeconfig,
          enableServerSideApply: true,
          skipUpdateUnreachable: true,
          clusterIdentifier: `hakube/${args.clusterName ?? "hakube"}/${name}`,
        },
        // The identifier the provider was first made with stays: a rename of this control
        // plane (with aliases) must not replace the provider and every object made through it.
        { parent: this, dependsOn: this.ready, ignoreChanges: ["clusterIdentifier"] },
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
