// The one plan of a control plane (pure: no resources): topology, defaults, versions,
// ranges, ports and timings are resolved here, once, from HaControlPlane's arguments, and
// the components receive resolved values instead of deciding them again.
import * as pulumi from "@pulumi/pulumi";
import { ApiEndpoint, Host } from "../types";
import { Cidr, isIpv4 } from "../net";
import { haproxyDetectionSeconds } from "../loadbalancer/render";
import {
  invalid,
  knownValue,
  requireCidr,
  requireConsistentHosts,
  requireDisjointRanges,
  requireEtcdMemberCount,
  requireHosts,
  requireInteger,
  requireVersion,
  resolveLeaderElection,
} from "../validation";
import { DEFAULT_KUBERNETES_VERSION, MINIMUM_ETCD_VERSION, MINIMUM_KUBERNETES_VERSION, parseVersion } from "../version";
import type { LeaderElectionTimings } from "../validation";
import { DEFAULT_ETCD_VERSION } from "../etcd/etcdCluster";
import type { ExternalEndpointOptions, HaControlPlaneArgs, KeepalivedOptions } from "./haControlPlane";
import { defaultHostNetwork, HostNetworkSettings } from "../host/hostNetwork";

/** Where etcd runs: on the control-plane hosts (stacked, as kubeadm does) or on hosts of its own. */
export type Topology = "stacked" | "external";

export interface ControlPlanePlan {
  readonly topology: Topology;
  /** The argument a message about the etcd member count names. */
  readonly etcdArgument: "etcdHosts" | "controlPlaneHosts (stacked etcd)";
  readonly controlPlaneHosts: readonly Host[];
  readonly etcdHosts: readonly Host[];
  /** keepalived + HAProxy hosts; empty with an external balancer. */
  readonly balancerHosts: readonly Host[];
  /** Every host once, whatever its roles: control plane, then etcd, then balancer. */
  readonly hosts: readonly Host[];
  readonly balancer: { readonly kind: "keepalived"; readonly options: KeepalivedOptions } | { readonly kind: "external"; readonly options: ExternalEndpointOptions };
  /** The address clients reach the API at (the VIP, or the external balancer's). */
  readonly apiEndpointAddress: pulumi.Input<string>;
  readonly versions: { readonly kubernetes: string; readonly etcd: string };
  readonly serviceCidr: Cidr;
  readonly podCidr: Cidr;
  readonly apiServerPort: number;
  /** Stacked apiservers talk to their local member only; external ones to every member. */
  readonly etcdAccess: "local" | "cluster";
  /** TCP settings applied on every host; undefined leaves them alone. */
  readonly hostNetwork: HostNetworkSettings | undefined;
  readonly timings: {
    /** Worst-case seconds for the balancer to stop sending to a failing apiserver. */
    readonly balancerDetectionSeconds: number;
    /** Stacked: seconds a rolling etcd restart waits after its apiserver is ready again. */
    readonly balancerSettleSeconds: number;
    readonly leaderElection: Required<LeaderElectionTimings>;
  };
}

/** The topology of these hosts: stacked when every etcd host is a control-plane host. */
export function topologyOf(controlPlaneHosts: readonly Host[], etcdHosts: readonly Host[]): Topology {
  const names = new Set(controlPlaneHosts.map((h) => h.name));
  return etcdHosts.every((h) => names.has(h.name)) ? "stacked" : "external";
}

/**
 * Resolves and checks HaControlPlane's arguments. Bad input throws the `ResourceError` of
 * `invalid` attributed to `parent`, naming the argument, the value and what is expected.
 */
export function planControlPlane(parent: pulumi.Resource | undefined, args: HaControlPlaneArgs): ControlPlanePlan {
  const cp = args.controlPlaneHosts;
  requireHosts(parent, "controlPlaneHosts", cp);
  const etcdHosts = args.etcdHosts ?? cp;
  requireHosts(parent, "etcdHosts", etcdHosts);
  const etcdArgument = args.etcdHosts ? "etcdHosts" : "controlPlaneHosts (stacked etcd)";
  requireEtcdMemberCount(parent, etcdArgument, etcdHosts.length);
  const leaderElection = resolveLeaderElection(parent, "controllers.leaderElection", args.controllers?.leaderElection);
  if (!args.loadBalancer || (!("keepalived" in args.loadBalancer) && !("external" in args.loadBalancer))) {
    invalid(parent, "loadBalancer", args.loadBalancer ?? null, "{ keepalived: {...} } or { external: {...} }");
  }
  const keepalived = "keepalived" in args.loadBalancer ? args.loadBalancer.keepalived : undefined;
  const external = "external" in args.loadBalancer ? args.loadBalancer.external : undefined;
  const balancerHosts = keepalived ? (keepalived.hosts ?? cp) : [];
  if (keepalived) {
    if (!isIpv4(keepalived.virtualIp ?? "")) {
      invalid(parent, "loadBalancer.keepalived.virtualIp", keepalived.virtualIp, "an IPv4 address");
    }
    const owner = [...cp, ...etcdHosts, ...balancerHosts].find((h) => knownValue(h.address) === keepalived.virtualIp);
    if (owner) {
      invalid(parent, "loadBalancer.keepalived.virtualIp", keepalived.virtualIp, `an address no host uses (it is ${owner.name}'s address)`);
    }
  }
  requireConsistentHosts(parent, "hosts", [cp, etcdHosts, balancerHosts]);
  // A name is one host in every role (checked above), so the first of each name is the host.
  const hosts = [...cp, ...etcdHosts, ...balancerHosts].filter((h, i, all) => all.findIndex((o) => o.name === h.name) === i);
  const serviceCidr = requireCidr(parent, "serviceCidr", args.serviceCidr ?? "10.96.0.0/12");
  const podCidr = requireCidr(parent, "podCidr", args.podCidr ?? "10.244.0.0/16");
  requireDisjointRanges(parent, { argument: "serviceCidr", cidr: serviceCidr }, { argument: "podCidr", cidr: podCidr }, hosts);
  const kubernetes = requireVersion(
    parent,
    "kubernetesVersion",
    args.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION,
    parseVersion(MINIMUM_KUBERNETES_VERSION),
  ).text;
  const etcd = requireVersion(parent, "etcdVersion", args.etcdVersion ?? DEFAULT_ETCD_VERSION, parseVersion(MINIMUM_ETCD_VERSION)).text;
  const apiServerPort = requireInteger(parent, "apiServer.securePort", args.apiServer?.securePort ?? 6443, 1, 65535);
  const topology = topologyOf(cp, etcdHosts);
  const etcdAccess = args.apiServer?.etcdAccess ?? (topology === "stacked" ? "local" : "cluster");
  const hostNetwork =
    args.hostNetwork === false
      ? undefined
      : {
          tcpRtoMaxMs: requireInteger(parent, "hostNetwork.tcpRtoMaxMs", args.hostNetwork?.tcpRtoMaxMs ?? defaultHostNetwork.tcpRtoMaxMs, 1000, 120000),
          fallbackTcpRetries2: requireInteger(
            parent,
            "hostNetwork.fallbackTcpRetries2",
            args.hostNetwork?.fallbackTcpRetries2 ?? defaultHostNetwork.fallbackTcpRetries2,
            3,
            15,
          ),
        };
  const balancerDetectionSeconds = keepalived ? haproxyDetectionSeconds(keepalived.healthCheck) : external!.detectionTimeSeconds;
  return {
    topology,
    etcdArgument,
    controlPlaneHosts: cp,
    etcdHosts,
    balancerHosts,
    hosts,
    balancer: keepalived ? { kind: "keepalived", options: keepalived } : { kind: "external", options: external! },
    apiEndpointAddress: keepalived ? keepalived.virtualIp : (external!.endpoint as ApiEndpoint).endpoint,
    versions: { kubernetes, etcd },
    serviceCidr,
    podCidr,
    apiServerPort,
    etcdAccess,
    hostNetwork,
    timings: { balancerDetectionSeconds, balancerSettleSeconds: balancerDetectionSeconds + 2, leaderElection },
  };
}
