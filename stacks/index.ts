// The hakube program: one per environment, selected by stack (stacks/Pulumi.<stack>.yaml).
// `hakube:machines` picks the machine layer; everything below it is the same.
import * as pulumi from "@pulumi/pulumi";
import {
  AwsBackupBucket,
  AwsExistingVpc,
  AwsImageFilter,
  AwsMachines,
  AwsNetworkLoadBalancer,
  AwsNewVpc,
  AwsSshAccess,
  CaRingArgs,
  ClusterDns,
  cidrsOverlap,
  formatIpv4,
  HaControlPlane,
  LocalMachines,
  LocalObjectStore,
  parseCidr,
  WorkerPool,
} from "../components";

// Pulumi takes a stack trace for every resource and promise the program registers, and
// ts-node's source-map support maps each one through the source maps: a sizeable part of
// the CPU of every preview and up (a CPU profile of a no-change preview of the local stack
// found it the largest single cost). This program's traces keep V8's own positions (in
// ts-node's output, a few lines off the .ts ones) instead.
Reflect.deleteProperty(Error, "prepareStackTrace");

const config = new pulumi.Config("hakube");

/** Structured config set with `--config-path` may arrive as strings: make numbers of them. */
function numbers(o: Record<string, unknown> | undefined): Record<string, number> | undefined {
  return o && Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v)]));
}

/** hakube:certificateValidityHours, hakube:earlyRenewalHours and hakube:serviceAccountKeys (ClusterPki's defaults when unset). */
function certificateSettings() {
  return {
    certificateValidityHours: config.getNumber("certificateValidityHours"),
    earlyRenewalHours: config.getNumber("earlyRenewalHours"),
    serviceAccountKeys: config.getObject<{ keys?: string[]; active?: string; tokenMaxHours?: number }>("serviceAccountKeys"),
    // { cluster?: { keys, active }, etcd?: ..., frontProxy?: ... } (README: rotations).
    certificateAuthorities: config.getObject<{ cluster?: CaRingArgs; etcd?: CaRingArgs; frontProxy?: CaRingArgs }>("certificateAuthorities"),
  };
}

function local() {
  const subnet = config.get("subnet") ?? "10.213.7.0/24";
  // etcdCount > 0: etcd on machines of its own (external topology), else stacked.
  const etcdCount = config.getNumber("etcdCount") ?? 0;
  // Backups go to an S3-compatible server on a machine of its own (hakube:backups false: none).
  const backups = config.getBoolean("backups") ?? true;
  // Worker nodes (kubelet, containerd, kube-proxy) on machines of their own; 0: none.
  const workerCount = config.getNumber("workerCount") ?? 2;
  const machines = new LocalMachines("local", {
    // Groups in a fixed order, so each keeps its addresses: cp .11-, etcd .31-, s3 .51, worker .71-.
    groups: [
      { namePrefix: "cp", count: config.getNumber("controlPlaneCount") ?? 3 },
      { namePrefix: "etcd", count: etcdCount },
      { namePrefix: "s3", count: backups ? 1 : 0 },
      { namePrefix: "worker", count: workerCount, nodes: true },
    ],
    subnet,
    bridgeName: config.get("bridgeName"),
  });
  const network = parseCidr(subnet);
  const virtualIp = config.get("virtualIp") ?? (network ? formatIpv4(network.network + 100) : "");
  // The toolchain keeps each version in a folder of its own, so changing
  // kubernetesVersion rolls the cluster to the binaries of that version.
  const toolchain = config.get("toolchainDir") ?? "/var/cache/hakube/toolchain";
  const kubernetesVersion = config.require("kubernetesVersion");
  const etcdVersion = config.require("etcdVersion");
  const store = backups
    ? new LocalObjectStore("local-s3", { host: machines.groups.s3[0], binaryDirectory: `${toolchain}/versitygw-${config.get("versitygwVersion") ?? "v1.8.0"}` })
    : undefined;
  const cluster = new HaControlPlane("local", {
    controlPlaneHosts: machines.groups.cp,
    etcdHosts: etcdCount > 0 ? machines.groups.etcd : undefined,
    loadBalancer: {
      keepalived: {
        virtualIp,
        advertIntervalSeconds: config.getNumber("advertIntervalSeconds"),
      },
    },
    kubernetesVersion,
    etcdVersion,
    binaries: {
      kubernetes: { kind: "localDirectory", directory: `${toolchain}/kubernetes-${kubernetesVersion}` },
      etcd: { kind: "localDirectory", directory: `${toolchain}/etcd-${etcdVersion}` },
    },
    etcd: numbers(config.getObject<Record<string, unknown>>("etcd")),
    apiServer: {
      extraFlags: config.getObject<Record<string, string>>("apiServerExtraFlags"),
      secretsEncryption: config.getObject<{ keys?: string[]; active?: string }>("secretsEncryption"),
    },
    controllers: { leaderElection: numbers(config.getObject<Record<string, unknown>>("leaderElection")) },
    certificates: certificateSettings(),
    kubernetesProvider: config.getBoolean("kubernetesProvider") ?? true,
    // Refresh looks at the machines only while their bridge exists.
    observe: { network: { bridge: machines.bridge, subnet } },
    backups: store && {
      storage: {
        endpoint: store.endpoint,
        bucket: store.bucket,
        prefix: `${pulumi.getStack()}/etcd`,
        credentials: { accessKeyId: store.accessKeyId, secretAccessKey: store.secretAccessKey },
        caCertificate: store.caCertificate,
      },
      intervalMinutes: config.getNumber("backupIntervalMinutes"),
      keep: config.getNumber("backupKeep"),
      restore: config.get("restoreFrom") ? { from: config.require("restoreFrom"), confirm: config.get("restoreConfirm") } : undefined,
    },
  });
  // Workers from the toolchain's node folder of the stack's Kubernetes version (kubelet and
  // kube-proxy, containerd, runc, CNI plugins: changing kubernetesVersion upgrades them
  // after the control plane) and images imported on each node.
  const workers =
    workerCount > 0
      ? new WorkerPool("local-workers", {
          hosts: machines.groups.worker,
          controlPlane: cluster,
          kubernetesBinaries: { kind: "localDirectory", directory: `${toolchain}/node-${kubernetesVersion}` },
          runtimeBinaries: { kind: "localDirectory", directory: `${toolchain}/node-${kubernetesVersion}` },
          images: { directory: `${toolchain}/images`, archives: ["pause.tar", "coredns.tar", "probe.tar"], sandbox: "hakube.local/pause:1" },
          runtime: machines.nodeRuntime,
          // "balancer" (default): pods reach the kubernetes Service through the VIP; "service": through kube-proxy's pick.
          podApiAccess: config.get("podApiAccess") as "balancer" | "service" | undefined,
        })
      : undefined;
  const dns = workers
    ? new ClusterDns("local-dns", { controlPlane: cluster, image: `hakube.local/coredns:${config.get("corednsVersion") ?? "v1.15.0"}`, imagePullPolicy: "Never", after: workers.ready })
    : undefined;
  return {
    endpoint: cluster.endpoint,
    virtualIp,
    caCertificate: cluster.caCertificate,
    kubeconfig: cluster.adminKubeconfig,
    etcdEndpoints: cluster.etcdEndpoints,
    sshPrivateKey: machines.sshPrivateKey,
    bridge: machines.bridge,
    subnet,
    // The control plane's machines; the backups' object store and the workers apart
    // (status and fault scenarios look at `hosts`, teardown at all of them).
    hosts: machines.hosts
      .filter((h) => !h.name.startsWith("s3-") && !h.name.startsWith("worker-"))
      .map((h) => ({
        name: h.name,
        address: h.address,
        veth: h.veth,
        netns: h.netns,
        dir: h.dir,
        hostKey: h.hostKey,
        role: h.name.startsWith("etcd-") ? "etcd" : "control-plane",
      })),
    backupKey: cluster.backupKey,
    backupStorage: store && { endpoint: store.endpoint, bucket: store.bucket, prefix: `${pulumi.getStack()}/etcd` },
    restoredFrom: cluster.etcd.restoredFrom,
    lastBackup: cluster.backups?.lastBackup,
    // Every certificate's end of validity and renewal time, soonest first.
    certificateExpiry: cluster.pki.certificateExpiry(),
    storageHosts: (machines.groups.s3 ?? []).map((h) => ({ name: h.name, address: h.address, veth: h.veth, netns: h.netns, dir: h.dir, hostKey: h.hostKey })),
    workers: (workers?.workers ?? []).map((w) => {
      const m = machines.groups.worker.find((h) => h.name === w.host.name)!;
      return { name: m.name, address: m.address, veth: m.veth, netns: m.netns, dir: m.dir, hostKey: m.hostKey, podCidr: w.podCidr };
    }),
    clusterDns: dns?.serviceIp,
  };
}

/** Structured config of the SSH access; the bastion's key is the secret `hakube:bastionPrivateKey`. */
interface SshConfig {
  readonly publicAddresses?: boolean;
  readonly bastion?: { host: string; user: string; hostKey: string; port?: number; securityGroupId?: string; cidr?: string };
}

function sshAccess(ssh: SshConfig | undefined): AwsSshAccess | undefined {
  if (ssh?.bastion) {
    const port = ssh.bastion.port === undefined ? undefined : Number(ssh.bastion.port);
    return { bastion: { ...ssh.bastion, port, privateKey: config.requireSecret("bastionPrivateKey") } };
  }
  if (ssh?.publicAddresses === true || String(ssh?.publicAddresses) === "true") {
    return { publicAddresses: true };
  }
  return undefined;
}

/** The defaults of HaControlPlane's serviceCidr and podCidr: a created VPC must not overlap them. */
const clusterRanges = ["10.96.0.0/12", "10.244.0.0/16"];

function aws() {
  const env = pulumi.getStack();
  // Required settings first, so that a missing one fails before anything is planned.
  const etcdDigest = config.require("etcdDigest");
  const adminCidr = config.require("adminCidr");
  const vpc = config.requireObject<AwsNewVpc | AwsExistingVpc>("vpc");
  const vpcCidr = "cidrBlock" in vpc ? parseCidr(vpc.cidrBlock) : undefined;
  const clash = clusterRanges.find((r) => vpcCidr && cidrsOverlap(vpcCidr, parseCidr(r)!));
  if (vpcCidr && clash) {
    throw new pulumi.RunError(`hakube:vpc.cidrBlock ${vpcCidr.text} overlaps the cluster range ${clash}; pick another, e.g. 10.30.0.0/16`);
  }
  // Backups to an S3 bucket of this stack, written through the etcd hosts' instance profile.
  const region = new pulumi.Config("aws").get("region") ?? "eu-central-1";
  const backupBucket = (config.getBoolean("backups") ?? true)
    ? new AwsBackupBucket(`${env}-backup-bucket`, { region, prefix: `${env}/etcd`, expireAfterDays: config.getNumber("backupExpireAfterDays"), tags: { "hakube:stack": env } })
    : undefined;
  const machines = new AwsMachines(env, {
    etcdInstanceProfile: backupBucket?.instanceProfile,
    controlPlaneCount: config.getNumber("controlPlaneCount") ?? 3,
    etcdCount: config.getNumber("etcdCount") ?? 0,
    vpc,
    availabilityZones: config.getObject<string[]>("availabilityZones"),
    instanceType: config.get("instanceType"),
    etcdInstanceType: config.get("etcdInstanceType"),
    workerCount: config.getNumber("workerCount") ?? 0,
    workerInstanceType: config.get("workerInstanceType"),
    image: config.getObject<AwsImageFilter | { amiId: string }>("image"),
    adminCidr,
    ssh: sshAccess(config.getObject<SshConfig>("ssh")),
    tags: { ...(config.getObject<Record<string, string>>("tags") ?? {}), "hakube:stack": env },
  });
  // A short name: AWS limits the balancer's and target group's names to 32 characters.
  const api = new AwsNetworkLoadBalancer("api", {
    machines,
    internetFacing: config.getBoolean("internetFacing") ?? false,
  });
  const cluster = new HaControlPlane(env, {
    controlPlaneHosts: machines.controlPlaneHosts,
    etcdHosts: machines.externalEtcd ? machines.etcdHosts : undefined,
    loadBalancer: { external: api.external },
    kubernetesVersion: config.get("kubernetesVersion"),
    etcdVersion: config.get("etcdVersion"),
    binaries: {
      // hakube pins the digests of v1.36.0, v1.37.0 and v1.37.1 (others need hakube:kubernetesDigest);
      // etcd's digest comes from the release's SHA256SUMS.
      kubernetes: { kind: "release", digest: config.get("kubernetesDigest") },
      etcd: { kind: "release", digest: etcdDigest },
    },
    etcd: numbers(config.getObject<Record<string, unknown>>("etcd")),
    controllers: { leaderElection: numbers(config.getObject<Record<string, unknown>>("leaderElection")) },
    certificates: certificateSettings(),
    backups: backupBucket && {
      storage: backupBucket.storage,
      intervalMinutes: config.getNumber("backupIntervalMinutes"),
      keep: config.getNumber("backupKeep"),
      restore: config.get("restoreFrom") ? { from: config.require("restoreFrom"), confirm: config.get("restoreConfirm") } : undefined,
    },
    kubernetesProvider: config.getBoolean("kubernetesProvider") ?? true,
  });
  // Workers pull images from registries and take containerd, runc and the CNI plugins from
  // the image's packages; kubelet and kube-proxy come from the control plane's release.
  const workers =
    machines.workerHosts.length > 0
      ? new WorkerPool(`${env}-workers`, {
          hosts: machines.workerHosts,
          controlPlane: cluster,
          kubernetesBinaries: { kind: "release", digest: config.get("kubernetesDigest") },
          runtimeBinaries: { kind: "packages" },
        })
      : undefined;
  if (workers) new ClusterDns(`${env}-dns`, { controlPlane: cluster, after: workers.ready });
  return {
    endpoint: cluster.endpoint,
    balancerDnsName: api.endpoint,
    caCertificate: cluster.caCertificate,
    kubeconfig: cluster.adminKubeconfig,
    etcdEndpoints: cluster.etcdEndpoints,
    sshPrivateKey: machines.sshPrivateKey,
    vpcId: machines.vpcId,
    backupKey: cluster.backupKey,
    backupBucket: backupBucket?.bucket.bucket,
    restoredFrom: cluster.etcd.restoredFrom,
    lastBackup: backupBucket?.lastBackup,
    certificateExpiry: cluster.pki.certificateExpiry(),
    hosts: machines.hosts.map((h) => ({ name: h.name, address: h.address })),
    workers: machines.workerHosts.map((h) => ({ name: h.name, address: h.address })),
  };
}

const machines = config.get("machines") ?? "local";
let outputs: Record<string, unknown>;
switch (machines) {
  case "local":
    outputs = local();
    break;
  case "aws":
    outputs = aws();
    break;
  default:
    throw new pulumi.RunError(`hakube:machines is "${machines}"; expected "local" or "aws"`);
}
export = outputs;
