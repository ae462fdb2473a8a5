import * as pulumi from "@pulumi/pulumi";
import * as aws from "@pulumi/aws";
import * as tls from "@pulumi/tls";
import { Host, HostConnection } from "../types";
import { invalid, requireCidr, requireInteger } from "../validation";
import { Cidr } from "../net";
import { hostKeyProblem } from "../observe/ssh";
import { AwsImageFilter, amiFilters, cloudInit, debian12Amd64, MAX_ZONES, spreadAcrossZones } from "./awsRender";
import { createVpc, PodRoute } from "./vpc";
import { planPodRanges } from "../workers/workerPool";

/** The port of every kube-apiserver (the balancer's target port). */
export const API_SERVER_PORT = 6443;

/** Create a VPC with this range (a /16 to a /24), with subnets across the zones. */
export interface AwsNewVpc {
  readonly cidrBlock: string;
}

/** Use an existing VPC: the hosts go round-robin into these subnets (in different zones). */
export interface AwsExistingVpc {
  readonly vpcId: pulumi.Input<string>;
  readonly subnetIds: readonly pulumi.Input<string>[];
  /** Route tables of those subnets, which get a route per worker pod range. @default none (no workers, or routes made elsewhere) */
  readonly routeTableIds?: readonly pulumi.Input<string>[];
}

/** An SSH jump host (`proxy` of the command connection). */
export interface AwsBastion {
  /** The bastion's address, as reached from where Pulumi runs. */
  readonly host: pulumi.Input<string>;
  readonly user: pulumi.Input<string>;
  /** The bastion's SSH private key (pass it as a secret). */
  readonly privateKey: pulumi.Input<string>;
  /** The bastion's public SSH host key ("ssh-ed25519 AAAA..."): every connection through it verifies it. */
  readonly hostKey: pulumi.Input<string>;
  /** @default 22 */
  readonly port?: number;
  /** SSH to the hosts is allowed from this security group (a bastion inside the VPC). */
  readonly securityGroupId?: pulumi.Input<string>;
  /** Else SSH is allowed from this range (e.g. the bastion's private address as a /32). @default adminCidr */
  readonly cidr?: string;
}

/** How Pulumi reaches the hosts over SSH. */
export type AwsSshAccess = { readonly bastion: AwsBastion } | { readonly publicAddresses: true };

export interface AwsMachinesArgs {
  /** Control-plane hosts (apiserver, controller-manager, scheduler; etcd when stacked): 3 or 5. @default 3 */
  readonly controlPlaneCount?: number;
  /** Hosts of their own for etcd: 0 (stacked etcd on the control-plane hosts), 3 or 5. @default 0 */
  readonly etcdCount?: number;
  /** A VPC to create (`{ cidrBlock }`) or an existing one (`{ vpcId, subnetIds }`). */
  readonly vpc: AwsNewVpc | AwsExistingVpc;
  /**
   * Zones of a created VPC (3 or 4: with 2, one zone would hold a majority of the etcd
   * members). @default the first 3 available zones of the region
   */
  readonly availabilityZones?: readonly string[];
  /** @default "m7i.large" */
  readonly instanceType?: string;
  /** Instance type of the etcd hosts. @default "m7i.large" */
  readonly etcdInstanceType?: string;
  /** Worker hosts (`worker-1` ...), spread round-robin across the zones like the others. @default 0 */
  readonly workerCount?: number;
  /** @default "m7i.large" */
  readonly workerInstanceType?: string;
  /** The cluster's pod range (HaControlPlane's `podCidr`): each worker's /24 of it is routed to it. @default "10.244.0.0/16" */
  readonly podCidr?: string;
  /**
   * The image: a filter (most recent match, looked up when an instance is created) or a
   * fixed AMI id. A newer image never replaces running hosts (see `ignoreChanges`).
   * @default debian12Amd64 (Debian 12, amd64, owner 136693071363)
   */
  readonly image?: AwsImageFilter | { readonly amiId: pulumi.Input<string> };
  /** Encrypted gp3 root volume size. @default 30 */
  readonly rootVolumeSizeGb?: number;
  /** Where administrators (and Pulumi) come from: SSH and the API are open to this range only. */
  readonly adminCidr: string;
  /** Accept 0.0.0.0/0 as adminCidr (or bastion cidr). @default false */
  readonly allowAnywhere?: boolean;
  /**
   * How Pulumi reaches the hosts.
   * @default SSH straight to the private addresses from adminCidr (Pulumi runs in the VPC or over a VPN)
   */
  readonly ssh?: AwsSshAccess;
  /** Tags on every resource that takes them. @default {} */
  readonly tags?: Record<string, string>;
  /**
   * Instance profile of the etcd hosts (the control-plane hosts when etcd is stacked),
   * e.g. `AwsBackupBucket.instanceProfile` so they can write backups. @default none
   */
  readonly etcdInstanceProfile?: pulumi.Input<string | aws.iam.InstanceProfile>;
}

/**
 * EC2 hosts for a control plane: control-plane hosts (and etcd hosts when etcd runs on
 * hosts of its own) spread round-robin across zones, from a current Debian or Ubuntu
 * image, IMDSv2 only, encrypted root volumes, one SSH key pair (secret), and security
 * groups that open only what the control plane needs. Yields `Host`s like
 * `LocalMachines`; root logs in with the key (hakube's remote steps run as root).
 *
 * Security groups (ingress; egress is open so hosts can download release binaries):
 * - hosts (every host): 22 from adminCidr, or from the bastion's group or range;
 * - control plane: 6443 from adminCidr and from the control-plane group itself (the
 *   readiness gate checks every apiserver from the first host); the balancer adds 6443
 *   from its own group;
 * - etcd: 2379-2380 from the etcd group only (members); with external etcd also 2379
 *   (client port only) from the control-plane group, since apiservers are etcd clients.
 */
export class AwsMachines extends pulumi.ComponentResource {
  public readonly controlPlaneHosts: Host[];
  /** The etcd hosts: hosts of their own, or the control-plane hosts when etcd is stacked. */
  public readonly etcdHosts: Host[];
  /** Every host once. */
  public readonly hosts: Host[];
  /** True when etcd runs on hosts of its own. */
  public readonly externalEtcd: boolean;
  public readonly instances: aws.ec2.Instance[];
  public readonly vpcId: pulumi.Output<string>;
  public readonly vpcCidr: pulumi.Output<string>;
  /** Subnets the hosts run in, one per zone. */
  public readonly hostSubnetIds: pulumi.Output<string>[];
  /** The zone of each of hostSubnetIds. */
  public readonly hostZones: pulumi.Output<string>[];
  /** Public subnets of a created VPC (empty for an existing VPC). */
  public readonly publicSubnetIds: pulumi.Output<string>[];
  public readonly adminCidr: string;
  /** Tags on every resource that takes them (args.tags and `hakube:machines`). */
  public readonly tags: Record<string, string>;
  public readonly hostsSecurityGroup: aws.ec2.SecurityGroup;
  public readonly controlPlaneSecurityGroup: aws.ec2.SecurityGroup;
  public readonly etcdSecurityGroup: aws.ec2.SecurityGroup;
  /** kubelet from the control plane, everything between workers and from the pod range. */
  public readonly workerSecurityGroup: aws.ec2.SecurityGroup;
  /** Worker hosts (for a WorkerPool), each with its pod range routed to it in the VPC. */
  public readonly workerHosts: Host[];
  /** The stack's SSH private key (OpenSSH format, secret). */
  public readonly sshPrivateKey: pulumi.Output<string>;

  constructor(name: string, args: AwsMachinesArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:AwsMachines", name, {}, opts);
    const controlPlaneCount = args.controlPlaneCount ?? 3;
    if (controlPlaneCount !== 3 && controlPlaneCount !== 5) {
      invalid(this, "controlPlaneCount", controlPlaneCount, "3 or 5 control-plane hosts (one per zone round-robin; an odd count keeps a stacked etcd quorum)");
    }
    const etcdCount = args.etcdCount ?? 0;
    if (etcdCount !== 0 && etcdCount !== 3 && etcdCount !== 5) {
      invalid(this, "etcdCount", etcdCount, "0 (etcd stacked on the control-plane hosts), 3 or 5 etcd hosts");
    }
    const allowAnywhere = args.allowAnywhere ?? false;
    const adminCidr = requireNarrowCidr(this, "adminCidr", args.adminCidr, allowAnywhere);
    const bastion = args.ssh && "bastion" in args.ssh ? args.ssh.bastion : undefined;
    const publicAddresses = !!(args.ssh && "publicAddresses" in args.ssh && args.ssh.publicAddresses);
    if (args.ssh && !bastion && !publicAddresses) {
      invalid(this, "ssh", Object.keys(args.ssh), "{ bastion: {...} } or { publicAddresses: true }");
    }
    if (bastion && (bastion.host === undefined || bastion.user === undefined || bastion.privateKey === undefined || bastion.hostKey === undefined)) {
      invalid(this, "ssh.bastion", Object.keys(bastion), "host, user, privateKey and hostKey");
    }
    if (bastion && typeof bastion.hostKey === "string" && hostKeyProblem(bastion.hostKey)) {
      invalid(this, "ssh.bastion.hostKey", bastion.hostKey, "the bastion's public SSH host key in authorized_keys format, e.g. \"ssh-ed25519 AAAA...\" (its /etc/ssh/ssh_host_ed25519_key.pub, fetched out of band): every connection through it verifies it");
    }
    const bastionCidr = bastion?.cidr === undefined ? undefined : requireNarrowCidr(this, "ssh.bastion.cidr", bastion.cidr, allowAnywhere);
    const rootVolumeSizeGb = args.rootVolumeSizeGb ?? 30;
    if (!Number.isInteger(rootVolumeSizeGb) || rootVolumeSizeGb < 8 || rootVolumeSizeGb > 16384) {
      invalid(this, "rootVolumeSizeGb", rootVolumeSizeGb, "an integer from 8 to 16384");
    }
    const image = args.image ?? debian12Amd64;
    if (!("amiId" in image) && (!image.owners?.length || !image.name)) {
      invalid(this, "image", image, "{ owners, name } of an image filter, or { amiId }");
    }
    const tags = { ...(args.tags ?? {}), "hakube:machines": name };
    this.tags = tags;
    this.adminCidr = adminCidr.text;
    this.externalEtcd = etcdCount > 0;
    const workerCount = requireInteger(this, "workerCount", args.workerCount ?? 0, 0, 100);
    const podCidr = requireCidr(this, "podCidr", args.podCidr ?? "10.244.0.0/16");
    // The workers' pod ranges, as WorkerPool plans them from the same names.
    const workerNames = Array.from({ length: workerCount }, (_, i) => `worker-${i + 1}`);
    const podRanges = planPodRanges(this, workerNames.map((name) => ({ name })), podCidr).map((w) => w.podCidr);
    const [podRoutes, resolvePodRoutes] = pulumi.deferredOutput<PodRoute[]>();

    // Network: created, or existing subnets by id.
    if (!args.vpc || (!("cidrBlock" in args.vpc) && !("vpcId" in args.vpc))) {
      invalid(this, "vpc", args.vpc ? Object.keys(args.vpc) : null, "{ cidrBlock } to create a VPC, or { vpcId, subnetIds } of an existing one");
    }
    if ("cidrBlock" in args.vpc) {
      const cidr = requireCidr(this, "vpc.cidrBlock", args.vpc.cidrBlock);
      if (cidr.prefix < 16 || cidr.prefix > 24) {
        invalid(this, "vpc.cidrBlock", cidr.text, "a /16 to /24 network (AWS allows no larger VPC; a smaller one leaves no room for subnets)");
      }
      const zones = this.zones(args.availabilityZones);
      const vpc = createVpc(name, this, { cidr, zones, privateSubnets: !publicAddresses, tags, podRoutes: workerCount > 0 ? podRoutes : undefined });
      this.vpcId = vpc.vpcId;
      this.vpcCidr = pulumi.output(cidr.text);
      this.publicSubnetIds = vpc.publicSubnetIds;
      this.hostSubnetIds = publicAddresses ? vpc.publicSubnetIds : vpc.privateSubnetIds;
      this.hostZones = zones.map((z) => pulumi.output(z));
    } else {
      if (args.availabilityZones !== undefined) {
        invalid(this, "availabilityZones", args.availabilityZones, "no zones with an existing VPC: the subnets' zones are used");
      }
      const subnetIds = args.vpc.subnetIds ?? [];
      if (subnetIds.length < 3 || subnetIds.length > 6) {
        invalid(this, "vpc.subnetIds", `${subnetIds.length} subnet(s)`, "3 to 6 subnets, each in a different zone, so that a zone outage leaves an etcd quorum");
      }
      this.vpcId = pulumi.output(args.vpc.vpcId);
      this.vpcCidr = aws.ec2.getVpcOutput({ id: args.vpc.vpcId }, { parent: this }).cidrBlock;
      this.publicSubnetIds = [];
      this.hostSubnetIds = subnetIds.map((s) => pulumi.output(s));
      this.hostZones = subnetIds.map((id) => aws.ec2.getSubnetOutput({ id }, { parent: this }).availabilityZone);
    }

    // Security groups: one per role, rules as separate resources (reviewable diffs).
    const group = (role: string, description: string) =>
      new aws.ec2.SecurityGroup(
        `${name}-${role}`,
        { vpcId: this.vpcId, description, tags: { ...tags, Name: `${name}-${role}` } },
        { parent: this },
      );
    const rule = (ruleName: string, args: aws.vpc.SecurityGroupIngressRuleArgs) =>
      new aws.vpc.SecurityGroupIngressRule(`${name}-${ruleName}`, { ...args, tags }, { parent: this });
    this.hostsSecurityGroup = group("hosts", "hakube hosts: SSH from administrators");
    this.controlPlaneSecurityGroup = group("control-plane", "hakube control plane: kube-apiserver");
    this.etcdSecurityGroup = group("etcd", "hakube etcd members");
    this.workerSecurityGroup = group("workers", "hakube worker nodes");
    const sshSource = bastion?.securityGroupId
      ? { referencedSecurityGroupId: bastion.securityGroupId }
      : { cidrIpv4: (bastionCidr ?? adminCidr).text };
    rule("ssh", {
      securityGroupId: this.hostsSecurityGroup.id,
      description: bastion ? "SSH from the bastion" : "SSH from administrators",
      ipProtocol: "tcp",
      fromPort: 22,
      toPort: 22,
      ...sshSource,
    });
    new aws.vpc.SecurityGroupEgressRule(
      `${name}-egress`,
      {
        securityGroupId: this.hostsSecurityGroup.id,
        description: "release downloads, packages, and traffic between hosts",
        ipProtocol: "-1",
        cidrIpv4: "0.0.0.0/0",
        tags,
      },
      { parent: this },
    );
    const api = { securityGroupId: this.controlPlaneSecurityGroup.id, ipProtocol: "tcp", fromPort: API_SERVER_PORT, toPort: API_SERVER_PORT };
    rule("api-admin", { ...api, description: "kube-apiserver from administrators", cidrIpv4: adminCidr.text });
    rule("api-peers", {
      ...api,
      description: "kube-apiserver from control-plane hosts (readiness gate)",
      referencedSecurityGroupId: this.controlPlaneSecurityGroup.id,
    });
    rule("etcd-peers", {
      securityGroupId: this.etcdSecurityGroup.id,
      description: "etcd client and peer ports between members",
      ipProtocol: "tcp",
      fromPort: 2379,
      toPort: 2380,
      referencedSecurityGroupId: this.etcdSecurityGroup.id,
    });
    if (workerCount > 0) {
      const workers = { securityGroupId: this.workerSecurityGroup.id };
      rule("kubelet", { ...workers, description: "kubelet from the apiservers (logs, exec, port-forward)", ipProtocol: "tcp", fromPort: 10250, toPort: 10250, referencedSecurityGroupId: this.controlPlaneSecurityGroup.id });
      rule("workers", { ...workers, description: "everything between workers (Services, node ports)", ipProtocol: "-1", referencedSecurityGroupId: this.workerSecurityGroup.id });
      rule("pods", { ...workers, description: "pods on other workers (routed pod ranges)", ipProtocol: "-1", cidrIpv4: podCidr.text });
    }
    if (this.externalEtcd) {
      rule("etcd-clients", {
        securityGroupId: this.etcdSecurityGroup.id,
        description: "etcd client port from the apiservers",
        ipProtocol: "tcp",
        fromPort: 2379,
        toPort: 2379,
        referencedSecurityGroupId: this.controlPlaneSecurityGroup.id,
      });
    }

    // SSH key and image.
    const key = new tls.PrivateKey(
      `${name}-ssh-key`,
      { algorithm: "ED25519" },
      { parent: this, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] },
    );
    this.sshPrivateKey = pulumi.secret(key.privateKeyOpenssh);
    const keyPair = new aws.ec2.KeyPair(`${name}-key-pair`, { publicKey: key.publicKeyOpenssh, tags }, { parent: this });
    const ami =
      "amiId" in image
        ? pulumi.output(image.amiId)
        : aws.ec2.getAmiOutput({ mostRecent: true, owners: [...image.owners], filters: amiFilters(image) }, { parent: this }).id;

    const connect = (instance: aws.ec2.Instance, hostKey: tls.PrivateKey): pulumi.Output<HostConnection> => {
      const base = {
        host: publicAddresses ? instance.publicIp : instance.privateIp,
        user: "root",
        privateKey: key.privateKeyOpenssh,
        // The host key its user data installed: verified from the first connection on.
        hostKey: hostKey.publicKeyOpenssh.apply((k) => k.trim()),
        // A new instance answers SSH (with root's key in place) once cloud-init has run.
        dialErrorLimit: 60,
      };
      const proxy = bastion && { host: bastion.host, user: bastion.user, privateKey: bastion.privateKey, hostKey: bastion.hostKey, port: bastion.port ?? 22 };
      return pulumi.secret(pulumi.output(proxy ? { ...base, proxy } : base)) as pulumi.Output<HostConnection>;
    };

    // Stacked control-plane hosts are etcd members too: their role tag lists both.
    const machines = (role: "control-plane" | "control-plane,etcd" | "etcd" | "worker", prefix: string, count: number, instanceType: string, groups: aws.ec2.SecurityGroup[]) => {
      let previous: aws.ec2.Instance | undefined;
      return spreadAcrossZones(count, this.hostSubnetIds.length).map((zone, i) => {
        const hostName = `${prefix}-${i + 1}`;
        // The host's SSH key, made here so that the first connection can verify it; a
        // replaced instance gets a new one (the key is replaced with it).
        const hostKey = new tls.PrivateKey(
          `${name}-${hostName}-host-key`,
          { algorithm: "ED25519" },
          { parent: this, additionalSecretOutputs: ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] },
        );
        const instance = new aws.ec2.Instance(
          `${name}-${hostName}`,
          {
            ami,
            instanceType,
            subnetId: this.hostSubnetIds[zone],
            // Implied by the subnet; set so that previews and policies see the spread.
            availabilityZone: this.hostZones[zone],
            vpcSecurityGroupIds: groups.map((g) => g.id),
            keyName: keyPair.keyName,
            associatePublicIpAddress: publicAddresses,
            // Workers forward their pods' traffic (addresses that are not the instance's).
            sourceDestCheck: role === "worker" ? false : undefined,
            metadataOptions: { httpEndpoint: "enabled", httpTokens: "required", httpPutResponseHopLimit: 1 },
            iamInstanceProfile: role.includes("etcd") ? args.etcdInstanceProfile : undefined,
            rootBlockDevice: { encrypted: true, volumeType: "gp3", volumeSize: rootVolumeSizeGb, deleteOnTermination: true },
            // Holds the host's private key: a secret in the state.
            userData: pulumi.secret(pulumi.all([hostKey.privateKeyOpenssh, hostKey.publicKeyOpenssh]).apply(([privateKeyOpenssh, publicKeyOpenssh]) => cloudInit(hostName, { privateKeyOpenssh, publicKeyOpenssh }))),
            tags: { ...tags, Name: `${name}-${hostName}`, "hakube:role": role, "hakube:host": hostName },
            volumeTags: { ...tags, Name: `${name}-${hostName}` },
          },
          {
            parent: this,
            // A newer image or changed user data would replace (or stop) every host of a
            // role at once: they apply to new hosts only. Roll hosts one at a time with
            // `pulumi up --replace <urn>`. Hosts of a role are chained so that an
            // in-place change that stops an instance (instance type) stops one at a time.
            ignoreChanges: ["ami", "userData"],
            // A replaced host goes before its successor starts: the old etcd member must
            // be dead before the new one (same name) takes its place in the cluster.
            deleteBeforeReplace: true,
            dependsOn: previous ? [previous] : [],
          },
        );
        previous = instance;
        return { instance, host: { name: hostName, address: instance.privateIp, connection: connect(instance, hostKey), instance: instance.id } as Host };
      });
    };
    const instanceType = args.instanceType ?? "m7i.large";
    const controlPlane = machines(
      this.externalEtcd ? "control-plane" : "control-plane,etcd",
      "cp",
      controlPlaneCount,
      instanceType,
      this.externalEtcd
        ? [this.hostsSecurityGroup, this.controlPlaneSecurityGroup]
        : [this.hostsSecurityGroup, this.controlPlaneSecurityGroup, this.etcdSecurityGroup],
    );
    const etcd = machines("etcd", "etcd", etcdCount, args.etcdInstanceType ?? "m7i.large", [this.hostsSecurityGroup, this.etcdSecurityGroup]);
    this.controlPlaneHosts = controlPlane.map((m) => m.host);
    this.etcdHosts = this.externalEtcd ? etcd.map((m) => m.host) : this.controlPlaneHosts;
    this.hosts = this.externalEtcd ? [...this.controlPlaneHosts, ...this.etcdHosts] : this.controlPlaneHosts;
    const workers = machines("worker", "worker", workerCount, args.workerInstanceType ?? "m7i.large", [this.hostsSecurityGroup, this.workerSecurityGroup]);
    this.workerHosts = workers.map((m) => m.host);
    const routes = pulumi.all(workers.map((m, i) => m.instance.primaryNetworkInterfaceId.apply((eni) => ({ cidrBlock: podRanges[i], networkInterfaceId: eni }))));
    resolvePodRoutes(routes);
    if (!("cidrBlock" in args.vpc) && workerCount > 0) {
      (args.vpc.routeTableIds ?? []).forEach((table, t) =>
        workers.forEach((m, i) => {
          new aws.ec2.Route(`${name}-pods-${i + 1}-rt${t + 1}`, { routeTableId: table, destinationCidrBlock: podRanges[i], networkInterfaceId: m.instance.primaryNetworkInterfaceId }, { parent: this });
        }),
      );
    }
    this.instances = [...controlPlane, ...etcd, ...workers].map((m) => m.instance);
    this.registerOutputs({
      vpcId: this.vpcId,
      addresses: this.hosts.map((h) => h.address),
      instanceIds: this.instances.map((i) => i.id),
    });
  }

  /** The zones of a created VPC: given (3 to 4), or the first 3 available in the region. */
  private zones(given: readonly string[] | undefined): pulumi.Input<string>[] {
    if (given !== undefined) {
      if (given.length < 3 || given.length > MAX_ZONES || new Set(given).size !== given.length || !given.every((z) => /^[a-z0-9-]+$/.test(z ?? ""))) {
        invalid(this, "availabilityZones", given, `3 to ${MAX_ZONES} different zone names such as "eu-central-1a" (a zone outage must leave an etcd quorum)`);
      }
      return [...given];
    }
    const available = aws.getAvailabilityZonesOutput(
      { state: "available", filters: [{ name: "opt-in-status", values: ["opt-in-not-required"] }] },
      { parent: this },
    );
    return [0, 1, 2].map((i) =>
      available.names.apply((names) => {
        if (names.length < 3) {
          throw new pulumi.ResourceError(`the region has ${names.length} available zone(s); hakube spreads hosts over 3 (set availabilityZones)`, this, true);
        }
        return names[i];
      }),
    );
  }
}

/** A CIDR that is not the whole Internet, unless allowAnywhere. */
function requireNarrowCidr(parent: pulumi.Resource, argument: string, text: string, allowAnywhere: boolean): Cidr {
  const cidr = requireCidr(parent, argument, text);
  if (cidr.prefix === 0 && !allowAnywhere) {
    invalid(parent, argument, text, "a range narrower than 0.0.0.0/0 (it opens SSH and the API to the whole Internet); set allowAnywhere: true to accept it");
  }
  return cidr;
}
