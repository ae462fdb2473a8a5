// Pure helpers of the AWS machine layer: subnet layout, zone spreading, the cloud-init
// user data, image filters and the NLB's detection time. No Pulumi resources here.
import { Cidr, formatIpv4 } from "../net";

/** An EC2 image looked up by filter when an instance is created (the most recent match). */
export interface AwsImageFilter {
  /** AMI owner account ids. */
  readonly owners: readonly string[];
  /** Image name pattern (`name` filter, `*` wildcards). */
  readonly name: string;
  /** @default "x86_64" */
  readonly architecture?: "x86_64" | "arm64";
}

/** Debian 12 (bookworm), amd64, from Debian's own AWS account. */
export const debian12Amd64: AwsImageFilter = { owners: ["136693071363"], name: "debian-12-amd64-*", architecture: "x86_64" };

/** Ubuntu 24.04 LTS (noble), amd64, from Canonical's AWS account. */
export const ubuntu2404Amd64: AwsImageFilter = {
  owners: ["099720109477"],
  name: "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*",
  architecture: "x86_64",
};

/** The `filters` of `aws.ec2.getAmi` for an image filter. */
export function amiFilters(image: AwsImageFilter): { name: string; values: string[] }[] {
  return [
    { name: "name", values: [image.name] },
    { name: "architecture", values: [image.architecture ?? "x86_64"] },
    { name: "virtualization-type", values: ["hvm"] },
    { name: "root-device-type", values: ["ebs"] },
    { name: "state", values: ["available"] },
  ];
}

export interface SubnetLayout {
  /** One private subnet per zone (hosts, internal balancer). */
  readonly private: string[];
  /** One public subnet per zone (NAT gateway, internet-facing balancer, dev hosts with public addresses). */
  readonly public: string[];
}

/** Largest number of zones a created VPC spreads over. */
export const MAX_ZONES = 4;

/**
 * Splits a VPC range into eight equal blocks: blocks 0..n-1 are the private subnets,
 * blocks 4..4+n-1 the public ones (a /16 gives /19 subnets; a /24 gives /27).
 */
export function subnetLayout(vpc: Cidr, zoneCount: number): SubnetLayout {
  if (!Number.isInteger(zoneCount) || zoneCount < 1 || zoneCount > MAX_ZONES) {
    throw new RangeError(`zoneCount ${zoneCount} is not from 1 to ${MAX_ZONES}`);
  }
  const prefix = vpc.prefix + 3;
  const size = 2 ** (32 - prefix);
  const block = (i: number) => `${formatIpv4(vpc.network + i * size)}/${prefix}`;
  const zones = Array.from({ length: zoneCount }, (_, i) => i);
  return { private: zones.map((i) => block(i)), public: zones.map((i) => block(MAX_ZONES + i)) };
}

/** Round-robin placement: the zone index of each of `count` hosts. */
export function spreadAcrossZones(count: number, zoneCount: number): number[] {
  return Array.from({ length: count }, (_, i) => i % zoneCount);
}

/** A host's SSH host key, made in Pulumi (the private half a secret) and installed by user data. */
export interface HostKeyPair {
  /** OpenSSH private key (ed25519). */
  readonly privateKeyOpenssh: string;
  /** The public key, authorized_keys format: what every connection to the host pins. */
  readonly publicKeyOpenssh: string;
}

/**
 * cloud-init user data of a host. hakube's remote steps run as root (systemctl,
 * /etc/kubernetes, /var/lib/etcd without sudo), so root logs in with the stack's key:
 * `disable_root: false` makes cloud-init install the EC2 key pair for root as well as
 * for the image's default user (Debian: `admin`, Ubuntu: `ubuntu`), and the sshd
 * drop-in allows root with a key only, never a password. The host's SSH key is the one
 * given (made in Pulumi, so every connection can verify it from the first): the image's
 * keys are deleted, no other is generated, and sshd offers only that one.
 */
export function cloudInit(hostname: string, hostKey: HostKeyPair): string {
  const indent = (text: string, by: string) => text.trim().split("\n").map((l) => `${by}${l}`).join("\n");
  return [
    "#cloud-config",
    `hostname: ${hostname}`,
    "preserve_hostname: false",
    "disable_root: false",
    "ssh_pwauth: false",
    "ssh_deletekeys: true",
    "ssh_genkeytypes: []",
    "ssh_keys:",
    "  ed25519_private: |",
    indent(hostKey.privateKeyOpenssh, "    "),
    `  ed25519_public: ${hostKey.publicKeyOpenssh.trim()}`,
    "package_update: false",
    "packages: [curl, ca-certificates]",
    "write_files:",
    "  - path: /etc/ssh/sshd_config.d/10-hakube.conf",
    '    permissions: "0644"',
    "    content: |",
    "      PermitRootLogin prohibit-password",
    "      PasswordAuthentication no",
    "      HostKey /etc/ssh/ssh_host_ed25519_key",
    "runcmd:",
    "  - [systemctl, try-reload-or-restart, ssh.service]",
    "",
  ].join("\n");
}

export interface NlbHealthCheck {
  /** Seconds between two checks of a target (5 to 300). @default 10 */
  readonly intervalSeconds?: number;
  /** Successes before a target is healthy (2 to 10). @default 2 */
  readonly healthyThreshold?: number;
  /** Failures before a target is unhealthy (2 to 10). @default 2 */
  readonly unhealthyThreshold?: number;
  /** Seconds without an answer that count as a failure (2 to 120, at most the interval). @default 5 */
  readonly timeoutSeconds?: number;
}

export const defaultNlbHealthCheck: Required<NlbHealthCheck> = {
  intervalSeconds: 10,
  healthyThreshold: 2,
  unhealthyThreshold: 2,
  timeoutSeconds: 5,
};

/** Seconds for the NLB to stop sending new connections to a failing apiserver: interval x unhealthy threshold. */
export function nlbDetectionSeconds(check?: NlbHealthCheck): number {
  const c = { ...defaultNlbHealthCheck, ...(check ?? {}) };
  return c.intervalSeconds * c.unhealthyThreshold;
}
