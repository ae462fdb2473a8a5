import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import { ApiEndpoint, Host } from "../types";
import { ExternalEndpointOptions } from "../controlplane/haControlPlane";
import { invalid, knownValue, requireCidr, requireHosts, requireInteger } from "../validation";
import { defaultNlbHealthCheck, NlbHealthCheck, nlbDetectionSeconds } from "./awsRender";
import { API_SERVER_PORT, AwsMachines } from "./awsMachines";

export interface AwsNetworkLoadBalancerArgs {
  /** The machines: their VPC, subnets and control-plane security group; their control-plane hosts are the targets. */
  readonly machines: AwsMachines;
  /** An internet-facing balancer rather than an internal one. @default false */
  readonly internetFacing?: boolean;
  /**
   * Subnets of the balancer, one per zone.
   * @default the hosts' subnets (internal) or the created VPC's public subnets (internet-facing)
   */
  readonly subnetIds?: readonly pulumi.Input<string>[];
  /** Who may connect to the API through the balancer. @default [the VPC range, machines.adminCidr] */
  readonly clientCidrs?: readonly pulumi.Input<string>[];
  /** Targets. @default machines.controlPlaneHosts */
  readonly targets?: readonly Host[];
  /** HTTPS `/readyz` check of every apiserver. @default { intervalSeconds: 10, healthyThreshold: 2, unhealthyThreshold: 2, timeoutSeconds: 5 } */
  readonly healthCheck?: NlbHealthCheck;
  /**
   * Seconds a removed target keeps its connections before they are closed; longer than
   * the apiservers' shutdown delay (detection + 5 s) so that in-flight requests finish.
   * @default 30
   */
  readonly deregistrationDelaySeconds?: number;
  /** @default the machines' tags */
  readonly tags?: Record<string, string>;
}

/**
 * An AWS Network Load Balancer in front of the apiservers (implements `ApiEndpoint`:
 * the endpoint is the NLB's DNS name, port 6443). TCP passthrough (TLS ends at the
 * apiservers), cross-zone load balancing, a target group of the hosts' IP addresses
 * checked with HTTPS `/readyz` (anonymous access to it is allowed by the apiservers).
 *
 * Client IP preservation is off (the default for `ip` targets, set explicitly): a
 * control-plane host that connects to the endpoint may be balanced to itself, and with
 * preservation on, that connection would have the same source and destination and
 * fail (the NLB hairpin problem). The cost: apiserver audit logs show the NLB's
 * addresses as the source. The balancer has a security group of its own, and the
 * control-plane hosts accept 6443 from that group only (besides adminCidr).
 *
 * Connections to a target that turns unhealthy are reset (like HAProxy's
 * `on-marked-down shutdown-sessions`): a stopping apiserver fails `/readyz` first and
 * keeps serving longer than `detectionTimeSeconds`, so new connections have moved.
 */
export class AwsNetworkLoadBalancer extends pulumi.ComponentResource implements ApiEndpoint {
  /** The NLB's DNS name (goes into the apiserver certificate SANs through HaControlPlane). */
  public readonly endpoint: pulumi.Output<string>;
  public readonly port: pulumi.Output<number>;
  /** Worst-case seconds before the NLB stops using a failing apiserver: interval x unhealthy threshold. */
  public readonly detectionTimeSeconds: number;
  /** `loadBalancer: { external: nlb.external }` for HaControlPlane. */
  public readonly external: ExternalEndpointOptions;
  public readonly loadBalancer: aws.lb.LoadBalancer;
  public readonly targetGroup: aws.lb.TargetGroup;
  public readonly securityGroup: aws.ec2.SecurityGroup;

  constructor(name: string, args: AwsNetworkLoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:AwsNetworkLoadBalancer", name, {}, opts);
    if (name.length > 20) {
      // Physical names are autonamed `${name}-nlb-<7 random>`; AWS allows 32 characters.
      invalid(this, "name", name, "at most 20 characters (balancer and target group names are limited to 32 by AWS)");
    }
    const machines = args.machines;
    if (!(machines instanceof AwsMachines)) {
      invalid(this, "machines", typeof machines, "an AwsMachines component");
    }
    const targets = args.targets ?? machines.controlPlaneHosts;
    requireHosts(this, "targets", targets);
    const internetFacing = args.internetFacing ?? false;
    const subnetIds = args.subnetIds ?? (internetFacing ? machines.publicSubnetIds : machines.hostSubnetIds);
    if (subnetIds.length < 2) {
      invalid(
        this,
        "subnetIds",
        `${subnetIds.length} subnet(s)`,
        internetFacing
          ? "at least 2 public subnets in different zones (an existing VPC has no public subnets hakube knows of: give subnetIds)"
          : "at least 2 subnets in different zones",
      );
    }
    const check = { ...defaultNlbHealthCheck, ...(args.healthCheck ?? {}) };
    requireInteger(this, "healthCheck.intervalSeconds", check.intervalSeconds, 5, 300);
    requireInteger(this, "healthCheck.healthyThreshold", check.healthyThreshold, 2, 10);
    requireInteger(this, "healthCheck.unhealthyThreshold", check.unhealthyThreshold, 2, 10);
    requireInteger(this, "healthCheck.timeoutSeconds", check.timeoutSeconds, 2, Math.min(120, check.intervalSeconds));
    const deregistrationDelay = requireInteger(this, "deregistrationDelaySeconds", args.deregistrationDelaySeconds ?? 30, 0, 3600);
    const clientCidrs = args.clientCidrs ?? [machines.vpcCidr, machines.adminCidr];
    clientCidrs.forEach((c, i) => {
      const known = knownValue(c);
      if (known !== undefined) requireCidr(this, `clientCidrs[${i}]`, known);
    });
    const tagged = { ...(args.tags ?? machines.tags), "hakube:balancer": name };
    this.detectionTimeSeconds = nlbDetectionSeconds(check);

    this.securityGroup = new aws.ec2.SecurityGroup(
      `${name}-sg`,
      { vpcId: machines.vpcId, description: "hakube API balancer", tags: { ...tagged, Name: `${name}-sg` } },
      { parent: this },
    );
    const tcp = { ipProtocol: "tcp", fromPort: API_SERVER_PORT, toPort: API_SERVER_PORT, tags: tagged };
    clientCidrs.forEach((cidr, i) => {
      new aws.vpc.SecurityGroupIngressRule(
        `${name}-clients-${i + 1}`,
        { ...tcp, securityGroupId: this.securityGroup.id, description: "API clients", cidrIpv4: cidr },
        { parent: this },
      );
    });
    new aws.vpc.SecurityGroupEgressRule(
      `${name}-to-targets`,
      {
        ...tcp,
        securityGroupId: this.securityGroup.id,
        description: "traffic and health checks to the apiservers",
        referencedSecurityGroupId: machines.controlPlaneSecurityGroup.id,
      },
      { parent: this },
    );
    // "6443 from the balancer" on the control-plane hosts.
    new aws.vpc.SecurityGroupIngressRule(
      `${name}-targets`,
      {
        ...tcp,
        securityGroupId: machines.controlPlaneSecurityGroup.id,
        description: "kube-apiserver from the API balancer",
        referencedSecurityGroupId: this.securityGroup.id,
      },
      { parent: this },
    );

    this.loadBalancer = new aws.lb.LoadBalancer(
      `${name}-nlb`,
      {
        loadBalancerType: "network",
        internal: !internetFacing,
        subnets: [...subnetIds],
        securityGroups: [this.securityGroup.id],
        enableCrossZoneLoadBalancing: true,
        tags: tagged,
      },
      { parent: this },
    );
    this.targetGroup = new aws.lb.TargetGroup(
      `${name}-tg`,
      {
        vpcId: machines.vpcId,
        targetType: "ip",
        protocol: "TCP",
        port: API_SERVER_PORT,
        preserveClientIp: "false",
        deregistrationDelay,
        connectionTermination: true,
        targetHealthStates: [{ enableUnhealthyConnectionTermination: true }],
        healthCheck: {
          enabled: true,
          protocol: "HTTPS",
          path: "/readyz",
          port: String(API_SERVER_PORT),
          matcher: "200",
          interval: check.intervalSeconds,
          timeout: check.timeoutSeconds,
          healthyThreshold: check.healthyThreshold,
          unhealthyThreshold: check.unhealthyThreshold,
        },
        tags: tagged,
      },
      { parent: this },
    );
    new aws.lb.Listener(
      `${name}-listener`,
      {
        loadBalancerArn: this.loadBalancer.arn,
        protocol: "TCP",
        port: API_SERVER_PORT,
        defaultActions: [{ type: "forward", targetGroupArn: this.targetGroup.arn }],
        tags: tagged,
      },
      { parent: this },
    );
    for (const host of targets) {
      new aws.lb.TargetGroupAttachment(
        `${name}-${host.name}`,
        { targetGroupArn: this.targetGroup.arn, targetId: host.address, port: API_SERVER_PORT },
        { parent: this },
      );
    }
    this.endpoint = this.loadBalancer.dnsName;
    this.port = pulumi.output(API_SERVER_PORT);
    this.external = { endpoint: this, detectionTimeSeconds: this.detectionTimeSeconds };
    this.registerOutputs({ endpoint: this.endpoint, port: this.port, detectionTimeSeconds: this.detectionTimeSeconds });
  }
}
