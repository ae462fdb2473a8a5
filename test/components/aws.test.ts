// The AWS layer with Pulumi mocks (it cannot reach AWS here): placement across zones,
// security group rules, instance hardening, the NLB and its DNS name in the SANs.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { decodeBundle, ETCD_DIGEST, isSecret, nameOf, program, Recorded, recorded, valueOf } from "../helpers/mocks";
import { AwsMachines, AwsMachinesArgs, AwsNetworkLoadBalancer, HaControlPlane } from "../../components";

interface Env {
  machines: AwsMachines;
  api: AwsNetworkLoadBalancer;
  cluster: HaControlPlane;
}

// dev: 3 hosts, stacked etcd, public addresses, internet-facing NLB.
// prod: 3 control-plane hosts + 5 etcd hosts, private subnets, bastion, internal NLB.
// existing: an existing VPC by id.
let dev: Env;
let prod: Env;
let existing: AwsMachines;
let wk: AwsMachines;
before(async () => {
  [dev, prod, existing, wk] = await program(() => {
    const env = (name: string, args: AwsMachinesArgs, internetFacing: boolean): Env => {
      const machines = new AwsMachines(name, args);
      const api = new AwsNetworkLoadBalancer(`${name}lb`, { machines, internetFacing });
      const cluster = new HaControlPlane(`${name}cp`, {
        controlPlaneHosts: machines.controlPlaneHosts,
        etcdHosts: machines.externalEtcd ? machines.etcdHosts : undefined,
        loadBalancer: { external: api.external },
        binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
        kubernetesProvider: false,
      });
      return { machines, api, cluster };
    };
    return [
      env("dev", { vpc: { cidrBlock: "10.30.0.0/16" }, adminCidr: "198.51.100.0/24", ssh: { publicAddresses: true } }, true),
      env(
        "prod",
        {
          etcdCount: 5,
          vpc: { cidrBlock: "10.40.0.0/16" },
          adminCidr: "10.8.0.0/16",
          ssh: { bastion: { host: "203.0.113.10", user: "admin", privateKey: pulumi.secret("BASTION-KEY"), hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbastion", cidr: "10.8.0.10/32" } },
        },
        false,
      ),
      new AwsMachines("existing", { vpc: { vpcId: "vpc-0abc", subnetIds: ["subnet-a", "subnet-b", "subnet-c"] }, adminCidr: "10.8.0.0/16" }),
      new AwsMachines("wk", { workerCount: 4, vpc: { cidrBlock: "10.50.0.0/16" }, adminCidr: "10.8.0.0/16" }),
      new AwsMachines("wkx", { workerCount: 2, vpc: { vpcId: "vpc-0def", subnetIds: ["subnet-d", "subnet-e", "subnet-f"], routeTableIds: ["rtb-1", "rtb-2"] }, adminCidr: "10.8.0.0/16" }),
    ] as const;
  });
});

const ofType = (prefix: string, type: string) => recorded.filter((r) => r.name.startsWith(`${prefix}-`) && r.type === type);
const instances = (prefix: string) => ofType(prefix, "aws:ec2/instance:Instance");
const find = (name: string): Recorded => {
  const r = recorded.find((x) => x.name === name);
  assert.ok(r, `resource ${name}`);
  return r;
};
/** Mock ids are `<name>-id`: the resource name behind an id. */
const idName = (id: string | undefined) => id?.replace(/-id$/, "");

async function zoneOfSubnet(subnetId: string): Promise<string> {
  return valueOf<string>(find(idName(subnetId)!).props.availabilityZone);
}

test("control-plane and etcd hosts are spread round-robin across three zones", async () => {
  const zonesOf = async (names: string[]) =>
    Promise.all(names.map(async (n) => zoneOfSubnet(await valueOf<string>(find(n).props.subnetId))));
  assert.deepEqual(await zonesOf(["dev-cp-1", "dev-cp-2", "dev-cp-3"]), ["eu-central-1a", "eu-central-1b", "eu-central-1c"]);
  assert.deepEqual(await zonesOf(["prod-cp-1", "prod-cp-2", "prod-cp-3"]), ["eu-central-1a", "eu-central-1b", "eu-central-1c"]);
  assert.deepEqual(
    await zonesOf(["prod-etcd-1", "prod-etcd-2", "prod-etcd-3", "prod-etcd-4", "prod-etcd-5"]),
    ["eu-central-1a", "eu-central-1b", "eu-central-1c", "eu-central-1a", "eu-central-1b"],
    "2+2+1: losing a zone keeps etcd quorum",
  );
  // prod hosts are in private subnets (no public address), dev hosts in public ones.
  assert.equal(await valueOf(find("prod-cp-1").props.subnetId), "prod-private-1-id");
  assert.equal(await valueOf(find("prod-cp-1").props.associatePublicIpAddress), false);
  assert.equal(await valueOf(find("dev-cp-2").props.subnetId), "dev-public-2-id");
  assert.equal(await valueOf(find("dev-cp-2").props.associatePublicIpAddress), true);
  // A replaced host goes first (its etcd member must be dead before the new one joins),
  // and its instance id is the host's identity (a new one re-runs the host's steps).
  for (const r of [...instances("dev"), ...instances("prod")]) {
    assert.equal(r.deleteBeforeReplace, true, `${r.name} is replaced delete-first`);
  }
  // Each instance names its zone too (what previews and the policy pack see).
  for (const r of [...instances("dev"), ...instances("prod")]) {
    assert.equal(await valueOf(r.props.availabilityZone), await zoneOfSubnet(await valueOf<string>(r.props.subnetId)), r.name);
  }
  // An existing VPC: round-robin over the given subnets, zones from the subnets.
  assert.deepEqual(
    await Promise.all(instances("existing").map((r) => valueOf(r.props.subnetId))),
    ["subnet-a", "subnet-b", "subnet-c"],
  );
  assert.deepEqual(
    await Promise.all(instances("existing").map((r) => valueOf(r.props.availabilityZone))),
    ["zone-of-subnet-a", "zone-of-subnet-b", "zone-of-subnet-c"],
  );
  // Role tags: stacked control-plane hosts are etcd members too.
  const role = async (name: string) => (await valueOf<Record<string, string>>(find(name).props.tags))["hakube:role"];
  assert.equal(await role("dev-cp-1"), "control-plane,etcd");
  assert.equal(await role("prod-cp-1"), "control-plane");
  assert.equal(await role("prod-etcd-1"), "etcd");
});

test("created VPC: subnets per zone, a NAT gateway only where hosts have no public address", async () => {
  assert.equal(await valueOf(find("prod-vpc").props.cidrBlock), "10.40.0.0/16");
  assert.deepEqual(
    await Promise.all(ofType("prod", "aws:ec2/subnet:Subnet").map((r) => valueOf(r.props.cidrBlock))),
    ["10.40.128.0/19", "10.40.160.0/19", "10.40.192.0/19", "10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"],
  );
  assert.equal(ofType("prod", "aws:ec2/natGateway:NatGateway").length, 1);
  assert.equal(ofType("dev", "aws:ec2/natGateway:NatGateway").length, 0);
  assert.equal(ofType("dev", "aws:ec2/subnet:Subnet").length, 3, "dev: public subnets only");
  assert.equal(ofType("existing", "aws:ec2/vpc:Vpc").length, 0);
});

interface Rule {
  group: string;
  ports: string;
  source: string;
}

/** Every ingress (or egress) rule on the given groups, as "group ports source". */
async function rules(type: "Ingress" | "Egress", groups: string[]): Promise<Rule[]> {
  const all = recorded.filter((r) => r.type === `aws:vpc/security${type === "Ingress" ? "GroupIngress" : "GroupEgress"}Rule:SecurityGroup${type}Rule`);
  const out: Rule[] = [];
  for (const r of all) {
    const group = idName(await valueOf<string>(r.props.securityGroupId))!;
    if (!groups.includes(group)) continue;
    const [protocol, from, to, cidr, sg] = await Promise.all(
      ["ipProtocol", "fromPort", "toPort", "cidrIpv4", "referencedSecurityGroupId"].map((k) => valueOf<any>(r.props[k])),
    );
    const ports = protocol === "-1" ? "all" : `${protocol} ${from}-${to}`;
    out.push({ group, ports, source: sg ? `sg ${idName(sg)}` : `cidr ${cidr}` });
  }
  return out.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

const sorted = (rs: Rule[]) => [...rs].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

test("security groups (prod): exactly 22 from the bastion, 6443 from the balancer and admins, 2379-2380 between etcd members", async () => {
  const groups = ["prod-hosts", "prod-control-plane", "prod-etcd", "prodlb-sg"];
  assert.deepEqual(
    await rules("Ingress", groups),
    sorted([
      { group: "prod-hosts", ports: "tcp 22-22", source: "cidr 10.8.0.10/32" },
      { group: "prod-control-plane", ports: "tcp 6443-6443", source: "cidr 10.8.0.0/16" },
      { group: "prod-control-plane", ports: "tcp 6443-6443", source: "sg prod-control-plane" },
      { group: "prod-control-plane", ports: "tcp 6443-6443", source: "sg prodlb-sg" },
      { group: "prod-etcd", ports: "tcp 2379-2380", source: "sg prod-etcd" },
      { group: "prod-etcd", ports: "tcp 2379-2379", source: "sg prod-control-plane" },
      { group: "prodlb-sg", ports: "tcp 6443-6443", source: "cidr 10.40.0.0/16" },
      { group: "prodlb-sg", ports: "tcp 6443-6443", source: "cidr 10.8.0.0/16" },
    ]),
  );
  assert.deepEqual(
    await rules("Egress", groups),
    sorted([
      { group: "prod-hosts", ports: "all", source: "cidr 0.0.0.0/0" },
      { group: "prodlb-sg", ports: "tcp 6443-6443", source: "sg prod-control-plane" },
    ]),
  );
  // Which hosts are in which groups.
  const groupsOf = async (name: string) => ((await valueOf<string[]>(find(name).props.vpcSecurityGroupIds)) ?? []).map(idName);
  assert.deepEqual(await groupsOf("prod-cp-1"), ["prod-hosts", "prod-control-plane"]);
  assert.deepEqual(await groupsOf("prod-etcd-4"), ["prod-hosts", "prod-etcd"]);
});

test("security groups (dev, stacked etcd): SSH from adminCidr, control-plane hosts are the etcd members", async () => {
  assert.deepEqual(
    await rules("Ingress", ["dev-hosts", "dev-control-plane", "dev-etcd", "devlb-sg"]),
    sorted([
      { group: "dev-hosts", ports: "tcp 22-22", source: "cidr 198.51.100.0/24" },
      { group: "dev-control-plane", ports: "tcp 6443-6443", source: "cidr 198.51.100.0/24" },
      { group: "dev-control-plane", ports: "tcp 6443-6443", source: "sg dev-control-plane" },
      { group: "dev-control-plane", ports: "tcp 6443-6443", source: "sg devlb-sg" },
      { group: "dev-etcd", ports: "tcp 2379-2380", source: "sg dev-etcd" },
      { group: "devlb-sg", ports: "tcp 6443-6443", source: "cidr 10.30.0.0/16" },
      { group: "devlb-sg", ports: "tcp 6443-6443", source: "cidr 198.51.100.0/24" },
    ]),
  );
  const sgs = (await valueOf<string[]>(find("dev-cp-3").props.vpcSecurityGroupIds)).map(idName);
  assert.deepEqual(sgs, ["dev-hosts", "dev-control-plane", "dev-etcd"]);
});

test("no ingress from 0.0.0.0/0 anywhere, and never on 22 or 2379-2380", async () => {
  const all = recorded.filter((r) => r.type === "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule");
  assert.ok(all.length >= 15);
  for (const r of all) {
    const [cidr, from, to] = await Promise.all([valueOf<string>(r.props.cidrIpv4), valueOf<number>(r.props.fromPort), valueOf<number>(r.props.toPort)]);
    assert.notEqual(cidr, "0.0.0.0/0", `${r.name} is not open to the world`);
    const sensitive = (from <= 22 && 22 <= to) || (from <= 2380 && 2379 <= to);
    if (sensitive) {
      assert.ok(cidr === undefined || !cidr.endsWith("/0"), `${r.name} (${from}-${to}) is not open to the world`);
    }
  }
});

test("every instance: IMDSv2 only, encrypted root volume, root login by key through cloud-init", async () => {
  const all = recorded.filter((r) => r.type === "aws:ec2/instance:Instance");
  assert.equal(all.length, 3 + 8 + 3 + 7 + 5);
  for (const r of all) {
    const metadata = await valueOf<any>(r.props.metadataOptions);
    assert.equal(metadata.httpTokens, "required", `${r.name} requires IMDSv2`);
    assert.equal(metadata.httpPutResponseHopLimit, 1);
    const root = await valueOf<any>(r.props.rootBlockDevice);
    assert.equal(root.encrypted, true, `${r.name} root volume encrypted`);
    assert.equal(await valueOf(r.props.ami), "ami-0123456789abcdef0");
    assert.match(await valueOf<string>(r.props.userData), /^disable_root: false$/m);
    assert.equal(await valueOf(r.props.keyName), `${r.name.split("-")[0]}-key-pair-key`);
  }
  assert.equal(await valueOf(find("prod-etcd-2").props.instanceType), "m7i.large");
  // Hosts of a role are chained: an in-place change stops one at a time.
  assert.deepEqual(find("prod-etcd-3").dependsOn.map(nameOf), ["prod-etcd-2"]);
  assert.deepEqual(find("prod-cp-1").dependsOn.map(nameOf), []);
});

test("hosts: private addresses, root over SSH with a secret key (public address in dev, through the bastion in prod)", async () => {
  const cp1 = prod.machines.controlPlaneHosts[0];
  assert.equal(cp1.name, "cp-1");
  const address = await valueOf(cp1.address);
  assert.match(address, /^10\.\d+\.0\.10$/);
  assert.equal(await isSecret(cp1.connection), true);
  const connection = await valueOf<any>(cp1.connection);
  assert.equal(connection.host, address);
  assert.equal(connection.user, "root");
  assert.match(connection.privateKey, new RegExp(`OPENSSH ${"PRIVATE"} KEY`));
  assert.deepEqual(connection.proxy, { host: "203.0.113.10", user: "admin", privateKey: "BASTION-KEY", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbastion", port: 22 });
  // The host key is made in Pulumi for each host, installed by its user data (a secret),
  // and pinned by the connection.
  assert.equal(connection.hostKey, "ssh-ed25519 mock-prod-cp-1-host-key");
  assert.ok(find("prod-cp-1-host-key").additionalSecretOutputs.includes("privateKeyOpenssh"));
  assert.equal(await isSecret(find("prod-cp-1").props.userData), true);
  const userData = await valueOf<string>(find("prod-cp-1").props.userData);
  assert.match(userData, new RegExp(`ed25519_private: \\|\\n {4}-----BEGIN OPENSSH ${"PRIVATE"} KEY-----\\n {4}mock-prod-cp-1-host-key`));
  assert.match(userData, /ed25519_public: ssh-ed25519 mock-prod-cp-1-host-key\n/);
  assert.notEqual((await valueOf<any>(prod.machines.controlPlaneHosts[1].connection)).hostKey, connection.hostKey, "each host its own key");
  const devConnection = await valueOf<any>(dev.machines.controlPlaneHosts[1].connection);
  assert.match(devConnection.host, /^203\.0\.113\.\d+$/);
  assert.equal(devConnection.proxy, undefined);
  assert.equal(await isSecret(prod.machines.sshPrivateKey), true);
  assert.ok(find("prod-ssh-key").additionalSecretOutputs.includes("privateKeyOpenssh"));
  assert.equal(await valueOf(find("prod-ssh-key").props.algorithm), "ED25519");
});

test("prod has 5 etcd hosts of their own, separate from the control plane", async () => {
  assert.deepEqual(prod.machines.etcdHosts.map((h) => h.name), ["etcd-1", "etcd-2", "etcd-3", "etcd-4", "etcd-5"]);
  assert.deepEqual(prod.machines.controlPlaneHosts.map((h) => h.name), ["cp-1", "cp-2", "cp-3"]);
  assert.equal(prod.machines.hosts.length, 8);
  const cpAddresses = await Promise.all(prod.machines.controlPlaneHosts.map((h) => valueOf(h.address)));
  const etcdAddresses = await Promise.all(prod.machines.etcdHosts.map((h) => valueOf(h.address)));
  assert.equal(new Set([...cpAddresses, ...etcdAddresses]).size, 8, "eight distinct hosts");
  const steps = (component: string) =>
    recorded.filter((r) => r.type === "command:remote:Command" && new RegExp(`^prodcp-${component}-[a-z]+-\\d$`).test(r.name)).map((r) => r.name);
  assert.deepEqual(steps("etcd"), ["prodcp-etcd-etcd-1", "prodcp-etcd-etcd-2", "prodcp-etcd-etcd-3", "prodcp-etcd-etcd-4", "prodcp-etcd-etcd-5"]);
  assert.deepEqual(steps("apiserver"), ["prodcp-apiserver-cp-1", "prodcp-apiserver-cp-2", "prodcp-apiserver-cp-3"]);
  assert.equal((await valueOf(prod.cluster.etcdEndpoints)).length, 5);
  // dev: stacked, etcd on the control-plane hosts.
  assert.equal(dev.machines.etcdHosts, dev.machines.controlPlaneHosts);
  assert.equal(dev.machines.hosts.length, 3);
});

test("NLB: TCP 6443 across the zones, cross-zone, HTTPS /readyz health check, IP targets without client IP preservation", async () => {
  const tg = find("prodlb-tg");
  const check = await valueOf<any>(tg.props.healthCheck);
  assert.equal(check.protocol, "HTTPS");
  assert.equal(check.path, "/readyz");
  assert.equal(check.port, "6443");
  assert.equal(check.interval, 10);
  assert.equal(check.healthyThreshold, 2);
  assert.equal(check.unhealthyThreshold, 2);
  assert.equal(await valueOf(tg.props.protocol), "TCP");
  assert.equal(await valueOf(tg.props.port), 6443);
  assert.equal(await valueOf(tg.props.targetType), "ip");
  assert.equal(await valueOf(tg.props.preserveClientIp), "false");
  assert.equal(await valueOf(tg.props.deregistrationDelay), 30);
  assert.equal(await valueOf(tg.props.vpcId), "prod-vpc-id");
  const lb = find("prodlb-nlb");
  assert.equal(await valueOf(lb.props.loadBalancerType), "network");
  assert.equal(await valueOf(lb.props.internal), true);
  assert.equal(await valueOf(lb.props.enableCrossZoneLoadBalancing), true);
  assert.deepEqual(await valueOf(lb.props.subnets), ["prod-private-1-id", "prod-private-2-id", "prod-private-3-id"]);
  assert.deepEqual((await valueOf<string[]>(lb.props.securityGroups)).map(idName), ["prodlb-sg"]);
  const devLb = find("devlb-nlb");
  assert.equal(await valueOf(devLb.props.internal), false);
  assert.deepEqual(await valueOf(devLb.props.subnets), ["dev-public-1-id", "dev-public-2-id", "dev-public-3-id"]);
  const listener = find("prodlb-listener");
  assert.equal(await valueOf(listener.props.protocol), "TCP");
  assert.equal(await valueOf(listener.props.port), 6443);
  // One target per control-plane host (never the etcd hosts), by private address.
  const attachments = ofType("prodlb", "aws:lb/targetGroupAttachment:TargetGroupAttachment");
  assert.deepEqual(attachments.map((r) => r.name), ["prodlb-cp-1", "prodlb-cp-2", "prodlb-cp-3"]);
  const cpAddresses = await Promise.all(prod.machines.controlPlaneHosts.map((h) => valueOf(h.address)));
  assert.deepEqual(await Promise.all(attachments.map((r) => valueOf(r.props.targetId))), cpAddresses);
  // Detection time (10 s x 2) drives the apiservers' shutdown delay (detection + 5).
  assert.equal(prod.api.detectionTimeSeconds, 20);
  const bundle = decodeBundle(await valueOf<string>(find("prodcp-apiserver-cp-1").props.stdin));
  assert.match(bundle.get("/etc/systemd/system/kube-apiserver.service")!.content, /--shutdown-delay-duration=25s/);
});

test("the NLB's DNS name is the endpoint and is in the apiserver certificate SANs", async () => {
  const dns = await valueOf(dev.api.endpoint);
  assert.match(dns, /^devlb-nlb-[0-9a-f]+\.elb\.eu-central-1\.amazonaws\.com$/);
  assert.equal(await valueOf(dev.api.port), 6443);
  assert.equal(await valueOf(dev.cluster.endpoint), `https://${dns}:6443`);
  assert.ok((await valueOf(dev.cluster.pki.apiServerSans)).includes(dns));
  assert.ok((await valueOf<string[]>(find("devcp-pki-apiserver-cp-1-csr").props.dnsNames)).includes(dns));
  assert.match(await valueOf(dev.cluster.adminKubeconfig), new RegExp(`server: "https://${dns.replace(/\./g, "\\.")}:6443"`));
});

test("parenting: every AWS resource is a child of its component, named after it", () => {
  for (const r of recorded.filter((x) => x.type.startsWith("aws:") || x.name.startsWith("prod-ssh") || x.name.startsWith("dev-ssh"))) {
    const parent = recorded.find((x) => x.resource === r.parent);
    assert.ok(parent, `${r.name} has a parent`);
    assert.match(parent.type, /^hakube:index:Aws(Machines|NetworkLoadBalancer)$/);
    assert.ok(r.name.startsWith(`${parent.name}-`), `${r.name} is named after ${parent.name}`);
  }
});

function rejects(make: () => unknown, message: RegExp) {
  assert.throws(make, (e: unknown) => {
    assert.ok(e instanceof pulumi.ResourceError, `a ResourceError, got ${e}`);
    assert.match((e as Error).message, message);
    return true;
  });
}

let n = 0;
const base: AwsMachinesArgs = { vpc: { cidrBlock: "10.30.0.0/16" }, adminCidr: "10.8.0.0/16" };
const machines = (args: Partial<AwsMachinesArgs>) => () => new AwsMachines(`bad${n++}`, { ...base, ...args });

test("bad input to AwsMachines is rejected at preview with the argument, the value and what is expected", () => {
  rejects(
    machines({ adminCidr: "0.0.0.0/0" }),
    /invalid argument adminCidr: got "0\.0\.0\.0\/0"; expected a range narrower than 0\.0\.0\.0\/0 \(it opens SSH and the API to the whole Internet\); set allowAnywhere: true/,
  );
  rejects(machines({ adminCidr: "10.8.0.1/16" }), /invalid argument adminCidr: got "10\.8\.0\.1\/16"; expected an IPv4 network in CIDR notation/);
  rejects(machines({ etcdCount: 4 }), /invalid argument etcdCount: got 4; expected 0 \(etcd stacked on the control-plane hosts\), 3 or 5 etcd hosts/);
  rejects(machines({ controlPlaneCount: 2 }), /invalid argument controlPlaneCount: got 2; expected 3 or 5 control-plane hosts/);
  rejects(machines({ vpc: { cidrBlock: "10.0.0.0/8" } }), /invalid argument vpc\.cidrBlock: got "10\.0\.0\.0\/8"; expected a \/16 to \/24 network/);
  rejects(machines({ vpc: { vpcId: "vpc-1", subnetIds: ["subnet-a", "subnet-b"] } }), /invalid argument vpc\.subnetIds: got "2 subnet\(s\)"; expected 3 to 6 subnets, each in a different zone/);
  rejects(
    machines({ vpc: { vpcId: "vpc-1", subnetIds: ["subnet-a", "subnet-b", "subnet-c"] }, availabilityZones: ["eu-central-1a", "eu-central-1b", "eu-central-1c"] }),
    /invalid argument availabilityZones: .*expected no zones with an existing VPC/,
  );
  rejects(
    machines({ availabilityZones: ["eu-central-1a", "eu-central-1b"] }),
    /invalid argument availabilityZones: got \["eu-central-1a","eu-central-1b"\]; expected 3 to 4 different zone names/,
  );
  rejects(
    machines({ ssh: { bastion: { host: "b", user: "admin", privateKey: "k", hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIbastion", cidr: "0.0.0.0/0" } } }),
    /invalid argument ssh\.bastion\.cidr: got "0\.0\.0\.0\/0"/,
  );
});

test("bad input to AwsNetworkLoadBalancer is rejected at preview", () => {
  rejects(
    () => new AwsNetworkLoadBalancer(`badlb${n++}`, { machines: prod.machines, healthCheck: { intervalSeconds: 3 } }),
    /invalid argument healthCheck\.intervalSeconds: got 3; expected an integer from 5 to 300/,
  );
  rejects(
    () => new AwsNetworkLoadBalancer(`badlb${n++}`, { machines: prod.machines, healthCheck: { timeoutSeconds: 12 } }),
    /invalid argument healthCheck\.timeoutSeconds: got 12; expected an integer from 2 to 10/,
  );
  rejects(
    () => new AwsNetworkLoadBalancer(`badlb${n++}`, { machines: existing, internetFacing: true }),
    /invalid argument subnetIds: got "0 subnet\(s\)"; expected at least 2 public subnets/,
  );
  rejects(
    () => new AwsNetworkLoadBalancer("a-balancer-name-that-is-too-long", { machines: prod.machines }),
    /invalid argument name: got "a-balancer-name-that-is-too-long"; expected at most 20 characters/,
  );
  rejects(
    () => new AwsNetworkLoadBalancer(`badlb${n++}`, { machines: prod.machines, clientCidrs: ["10.0.0.1/8"] }),
    /invalid argument clientCidrs\[0\]: got "10\.0\.0\.1\/8"/,
  );
});

test("workers: spread across the zones, forwarding their pods' traffic, each pod range routed to its worker in every route table", async () => {
  assert.deepEqual(wk.workerHosts.map((h) => h.name), ["worker-1", "worker-2", "worker-3", "worker-4"]);
  const zones = await Promise.all(["wk-worker-1", "wk-worker-2", "wk-worker-3", "wk-worker-4"].map(async (n) => zoneOfSubnet(await valueOf<string>(find(n).props.subnetId))));
  assert.deepEqual(zones, ["eu-central-1a", "eu-central-1b", "eu-central-1c", "eu-central-1a"]);
  for (const n of ["wk-worker-1", "wk-worker-4"]) assert.equal(await valueOf(find(n).props.sourceDestCheck), false, n);
  assert.equal(await valueOf(find("wk-cp-1").props.sourceDestCheck), undefined, "control-plane hosts keep the check");
  // The created VPC's private route table: out through the NAT gateway, then one route per pod range.
  const routes = await valueOf<{ cidrBlock: string; networkInterfaceId?: string; natGatewayId?: string }[]>(find("wk-private-routes").props.routes);
  assert.deepEqual(routes.map((r) => r.cidrBlock), ["0.0.0.0/0", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.4.0/24"]);
  assert.ok(routes.slice(1).every((r) => r.networkInterfaceId), "through each worker's network interface");
  // An existing VPC: a Route per pod range in each given route table.
  const given = recorded.filter((r) => r.type === "aws:ec2/route:Route" && r.name.startsWith("wkx-")).map((r) => r.name).sort();
  assert.deepEqual(given, ["wkx-pods-1-rt1", "wkx-pods-1-rt2", "wkx-pods-2-rt1", "wkx-pods-2-rt2"]);
  assert.equal(await valueOf(find("wkx-pods-2-rt1").props.destinationCidrBlock), "10.244.2.0/24");
  // Security group: kubelet from the control plane only; workers and pod ranges among themselves.
  const rules = recorded.filter((r) => r.type === "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule" && ["wk-kubelet", "wk-workers", "wk-pods"].includes(r.name));
  assert.equal(rules.length, 3);
  assert.equal(await valueOf(find("wk-kubelet").props.fromPort), 10250);
  assert.equal(await valueOf(find("wk-pods").props.cidrIpv4), "10.244.0.0/16");
});
