// The hakube program: one per environment, selected by stack (stacks/Pulumi.<stack>.yaml).
// `hakube:machines` picks the machine layer; everything below it is the same.
import * as pulumi from "@pulumi/pulumi";
import { formatIpv4, HaControlPlane, LocalMachines, parseCidr } from "../components";

const config = new pulumi.Config("hakube");

/** Structured config set with `--config-path` may arrive as strings: make numbers of them. */
function numbers(o: Record<string, unknown> | undefined): Record<string, number> | undefined {
  return o && Object.fromEntries(Object.entries(o).map(([k, v]) => [k, Number(v)]));
}

function local() {
  const subnet = config.get("subnet") ?? "10.213.7.0/24";
  const machines = new LocalMachines("local", {
    count: config.getNumber("controlPlaneCount") ?? 3,
    namePrefix: "cp",
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
  const cluster = new HaControlPlane("local", {
    controlPlaneHosts: machines.hosts,
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
    apiServer: { extraFlags: config.getObject<Record<string, string>>("apiServerExtraFlags") },
    controllers: { leaderElection: numbers(config.getObject<Record<string, unknown>>("leaderElection")) },
    kubernetesProvider: config.getBoolean("kubernetesProvider") ?? true,
  });
  return {
    endpoint: cluster.endpoint,
    virtualIp,
    caCertificate: cluster.caCertificate,
    kubeconfig: cluster.adminKubeconfig,
    etcdEndpoints: cluster.etcdEndpoints,
    sshPrivateKey: machines.sshPrivateKey,
    bridge: machines.bridge,
    hosts: machines.hosts.map((h) => ({ name: h.name, address: h.address, veth: h.veth, netns: h.netns })),
  };
}

const machines = config.get("machines") ?? "local";
let outputs: Record<string, unknown>;
switch (machines) {
  case "local":
    outputs = local();
    break;
  default:
    throw new pulumi.RunError(`hakube:machines is "${machines}"; expected "local"`);
}
export = outputs;
