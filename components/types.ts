import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";

/** SSH connection to a host, as taken by `@pulumi/command` remote resources. */
export type HostConnection = command.types.input.remote.ConnectionArgs;

/**
 * A machine the control plane runs on. Machine layers (`LocalMachines`, `AwsMachines`)
 * yield these; the control-plane components know nothing else about the machine.
 */
export interface Host {
  /** Unique, stable name; used in resource names and as the etcd member name. */
  readonly name: string;
  /** IPv4 address the other hosts and the balancer reach this host at. */
  readonly address: pulumi.Input<string>;
  /**
   * SSH connection (holds a private key: pass it as a secret). Its `hostKey` (the host's
   * public SSH key, authorized_keys format, e.g. "ssh-ed25519 AAAA...") is required: every
   * connection verifies the host's key, and a host answering with another is refused
   * before anything is sent to it.
   */
  readonly connection: pulumi.Input<HostConnection>;
  /**
   * Identity of the machine behind the name, which changes when the machine is replaced
   * (a new disk): an EC2 instance id, a local machine's token. A new value re-runs every
   * step on the host (binaries copied again, services set up again, an etcd member with
   * no data joins the cluster again). @default none (steps do not notice a replacement)
   */
  readonly instance?: pulumi.Input<string>;
  /**
   * Repair generations per component ("0", or "<n> <reason>"), set by HaControlPlane from
   * the host's `HostObservation`: a step whose component's generation moves runs again.
   * @default none
   */
  readonly repairs?: pulumi.Input<Readonly<Record<string, string>>>;
  /**
   * What every step on this host waits for (HaControlPlane sets it to the host's network
   * settings step). @default none
   */
  readonly after?: pulumi.Resource;
}

/**
 * One stable API endpoint in front of the apiservers. Implemented by
 * `KeepalivedLoadBalancer` (a VRRP virtual IP with HAProxy) and by
 * `AwsNetworkLoadBalancer`.
 */
export interface ApiEndpoint {
  /** The address clients use: an IP (VIP) or a DNS name (NLB). */
  readonly endpoint: pulumi.Output<string>;
  /** The TCP port clients use. */
  readonly port: pulumi.Output<number>;
  /** Completes when the API answers through this endpoint, where the balancer can tell. */
  readonly ready?: pulumi.Resource;
}

/** `https://<endpoint>:<port>` of an `ApiEndpoint`. */
export function endpointUrl(endpoint: ApiEndpoint): pulumi.Output<string> {
  return pulumi.interpolate`https://${endpoint.endpoint}:${endpoint.port}`;
}
