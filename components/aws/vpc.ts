// The network AwsMachines creates when it is given a CIDR block rather than an existing
// VPC: one VPC, subnets across the zones, an internet gateway and, for hosts without
// public addresses, one NAT gateway.
import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { Cidr } from "../net";
import { subnetLayout } from "./awsRender";

export interface CreatedVpc {
  readonly vpcId: pulumi.Output<string>;
  /** One per zone; empty when the hosts have public addresses. */
  readonly privateSubnetIds: pulumi.Output<string>[];
  /** One per zone. */
  readonly publicSubnetIds: pulumi.Output<string>[];
}

/** A route to a worker's pod range through its network interface. */
export interface PodRoute {
  readonly cidrBlock: string;
  readonly networkInterfaceId: string;
}

export interface CreateVpcArgs {
  readonly cidr: Cidr;
  /** Routes to the workers' pod ranges, in every route table (the workers come later: a deferred output). */
  readonly podRoutes?: pulumi.Input<PodRoute[]>;
  readonly zones: readonly pulumi.Input<string>[];
  /** Private subnets with a NAT gateway (hosts without public addresses). */
  readonly privateSubnets: boolean;
  readonly tags: Record<string, string>;
}

/**
 * Public subnets are always made: they hold the NAT gateway, an internet-facing
 * balancer, and dev hosts with public addresses. Private subnets (the hosts) route out
 * through ONE NAT gateway in the first zone: hosts need the Internet only to download
 * release binaries and packages when they are installed or upgraded, never to serve,
 * so a zone outage there does not affect the running control plane (only an upgrade
 * started during it), and one NAT gateway costs a third of three.
 */
export function createVpc(name: string, parent: pulumi.Resource, args: CreateVpcArgs): CreatedVpc {
  const opts = { parent };
  const tagged = (suffix: string) => ({ ...args.tags, Name: `${name}-${suffix}` });
  const layout = subnetLayout(args.cidr, args.zones.length);
  const vpc = new aws.ec2.Vpc(
    `${name}-vpc`,
    { cidrBlock: args.cidr.text, enableDnsSupport: true, enableDnsHostnames: true, tags: tagged("vpc") },
    opts,
  );
  const igw = new aws.ec2.InternetGateway(`${name}-igw`, { vpcId: vpc.id, tags: tagged("igw") }, opts);
  const publicRoutes = new aws.ec2.RouteTable(
    `${name}-public-routes`,
    { vpcId: vpc.id, routes: withPodRoutes({ cidrBlock: "0.0.0.0/0", gatewayId: igw.id }, args.podRoutes), tags: tagged("public") },
    opts,
  );
  // One subnet per zone, each routed through `routes`. Instances ask for a public address
  // explicitly (dev only); nothing gets one by default.
  const subnets = (kind: "public" | "private", cidrs: readonly string[], routes: aws.ec2.RouteTable) =>
    args.zones.map((zone, i) => {
      const subnet = new aws.ec2.Subnet(
        `${name}-${kind}-${i + 1}`,
        { vpcId: vpc.id, cidrBlock: cidrs[i], availabilityZone: zone, mapPublicIpOnLaunch: false, tags: tagged(`${kind}-${i + 1}`) },
        opts,
      );
      new aws.ec2.RouteTableAssociation(`${name}-${kind}-${i + 1}-routes`, { subnetId: subnet.id, routeTableId: routes.id }, opts);
      return subnet;
    });
  const publicSubnets = subnets("public", layout.public, publicRoutes);
  let privateSubnets: aws.ec2.Subnet[] = [];
  if (args.privateSubnets) {
    const eip = new aws.ec2.Eip(`${name}-nat-ip`, { domain: "vpc", tags: tagged("nat") }, opts);
    const nat = new aws.ec2.NatGateway(
      `${name}-nat`,
      { allocationId: eip.id, subnetId: publicSubnets[0].id, tags: tagged("nat") },
      { parent, dependsOn: [igw] },
    );
    const privateRoutes = new aws.ec2.RouteTable(
      `${name}-private-routes`,
      { vpcId: vpc.id, routes: withPodRoutes({ cidrBlock: "0.0.0.0/0", natGatewayId: nat.id }, args.podRoutes), tags: tagged("private") },
      opts,
    );
    privateSubnets = subnets("private", layout.private, privateRoutes);
  }
  return {
    vpcId: vpc.id,
    privateSubnetIds: privateSubnets.map((s) => s.id),
    publicSubnetIds: publicSubnets.map((s) => s.id),
  };
}

/** A route table's inline routes: its way out, then one per worker pod range. */
function withPodRoutes(
  out: aws.types.input.ec2.RouteTableRoute,
  podRoutes: pulumi.Input<PodRoute[]> | undefined,
): pulumi.Input<aws.types.input.ec2.RouteTableRoute[]> {
  if (podRoutes === undefined) return [out];
  return pulumi.output(podRoutes).apply((routes) => [out, ...routes.map((r) => ({ cidrBlock: r.cidrBlock, networkInterfaceId: r.networkInterfaceId }))]);
}
