// The policy pack's rules (policy/rules.ts), called the way @pulumi/policy calls them:
// first on the resources of a real HaControlPlane (recorded through Pulumi mocks), which
// must pass, then on bad programs, one or more per rule, which must be rejected.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import type {
  Policy,
  PolicyResource,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";
import { ETCD_DIGEST, hosts, program, recorded } from "../helpers/mocks";
import { HaControlPlane } from "../../components";
import {
  balancerReadyzHealthCheck,
  controlPlaneMultiAz,
  etcdOddMemberCount,
  hakubePolicies,
  haproxyReadyzProblems,
  noWorldOpenEtcdPorts,
  parentTypeFromUrn,
  privateKeysSecret,
  certificateRenewalWindow,
  validateCertificateRenewal,
} from "../../policy/rules";

// ---------------------------------------------------------------------------------------
// Calling policies as the pack's server does.

interface Violation {
  policy: string;
  message: string;
  urn?: string;
}

interface FakeResource {
  type: string;
  name: string;
  props: Record<string, unknown>;
  parent?: FakeResource;
  additionalSecretOutputs?: string[];
  propertyDependencies?: Record<string, FakeResource[]>;
}

function typeChain(r: FakeResource): string {
  return r.parent ? `${typeChain(r.parent)}$${r.type}` : r.type;
}

function urnOf(r: FakeResource): string {
  return `urn:pulumi:test::hakube::${typeChain(r)}::${r.name}`;
}

const options = (r: FakeResource) => ({
  protect: false,
  ignoreChanges: [],
  aliases: [],
  customTimeouts: { createSeconds: 0, updateSeconds: 0, deleteSeconds: 0 },
  additionalSecretOutputs: r.additionalSecretOutputs ?? [],
});

const notTyped = {
  isType: () => false,
  asType: () => undefined,
};

function resourceArgs(r: FakeResource): ResourceValidationArgs {
  return { type: r.type, name: r.name, urn: urnOf(r), props: r.props, opts: options(r), getConfig: () => ({}), ...notTyped } as unknown as ResourceValidationArgs;
}

function stackArgs(resources: readonly FakeResource[]): StackValidationArgs {
  const converted = new Map<FakeResource, PolicyResource>();
  for (const r of resources) {
    converted.set(r, {
      type: r.type,
      name: r.name,
      urn: urnOf(r),
      props: r.props,
      opts: options(r),
      dependencies: [],
      propertyDependencies: {},
      ...notTyped,
    } as unknown as PolicyResource);
  }
  for (const [r, p] of converted) {
    if (r.parent) {
      p.parent = converted.get(r.parent);
    }
    for (const [k, deps] of Object.entries(r.propertyDependencies ?? {})) {
      p.propertyDependencies[k] = deps.map((d) => converted.get(d)).filter((d): d is PolicyResource => d !== undefined);
    }
  }
  return { resources: [...converted.values()], getConfig: () => ({}) } as unknown as StackValidationArgs;
}

async function run(policies: readonly Policy[], resources: readonly FakeResource[]): Promise<Violation[]> {
  const violations: Violation[] = [];
  for (const policy of policies) {
    const report = (message?: string, urn?: string) => violations.push({ policy: policy.name, message: message ?? "", urn });
    const stack = (policy as StackValidationPolicy).validateStack;
    if (stack) {
      await stack(stackArgs(resources), report);
    }
    const validate = (policy as ResourceValidationPolicy).validateResource;
    if (validate) {
      for (const r of resources) {
        for (const v of Array.isArray(validate) ? validate : [validate]) {
          await v(resourceArgs(r), report);
        }
      }
    }
  }
  return violations;
}

async function rejects(policy: Policy, resources: readonly FakeResource[], pattern: RegExp): Promise<Violation[]> {
  const violations = await run([policy], resources);
  assert.ok(violations.length > 0, `${policy.name} accepted a bad program`);
  assert.ok(
    violations.every((v) => v.policy === policy.name),
    `unexpected violations: ${JSON.stringify(violations)}`,
  );
  assert.match(violations.map((v) => v.message).join("\n"), pattern);
  return violations;
}

async function accepts(policy: Policy, resources: readonly FakeResource[]): Promise<void> {
  assert.deepEqual(await run([policy], resources), []);
}

// ---------------------------------------------------------------------------------------
// A real control plane, recorded through Pulumi mocks.

let real: FakeResource[] = [];

before(async () => {
  await program(() => [
    new HaControlPlane("p3", {
      controlPlaneHosts: hosts(3),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
    }),
    new HaControlPlane("p5", {
      controlPlaneHosts: hosts(3, "cp5", 20),
      etcdHosts: hosts(5, "etcd", 40),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.200", hosts: hosts(2, "lb", 60) } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
    }),
  ]);
  // Resolve every input (the mocks know every value), keeping parents.
  const byResource = new Map<pulumi.Resource, FakeResource>();
  for (const r of recorded) {
    const props = await new Promise<Record<string, unknown>>((resolve) =>
      pulumi.output(r.props).apply((p) => resolve(JSON.parse(JSON.stringify(p ?? {})) as Record<string, unknown>)),
    );
    byResource.set(r.resource, { type: r.type, name: r.name, props, additionalSecretOutputs: r.additionalSecretOutputs });
  }
  for (const r of recorded) {
    const fake = byResource.get(r.resource)!;
    fake.parent = r.parent ? byResource.get(r.parent) : undefined;
  }
  real = [...byResource.values()];
});

const children = (type: string, namePrefix: string) =>
  real.filter((r) => r.type === "command:remote:Command" && r.parent?.type === type && r.name.startsWith(namePrefix));

/** A copy of the real program with some resources left out or changed. */
function variant(change: (r: FakeResource) => FakeResource | undefined): FakeResource[] {
  const out: FakeResource[] = [];
  const map = new Map<FakeResource, FakeResource>();
  for (const r of real) {
    const c = change({ ...r, props: structuredClone(r.props) });
    if (c) {
      map.set(r, c);
      out.push(c);
    }
  }
  for (const c of out) {
    if (c.parent) {
      c.parent = map.get(c.parent) ?? c.parent;
    }
  }
  return out;
}

function bundle(files: Record<string, string>): string {
  return Object.entries(files)
    .map(([path, content]) => `0644 ${path} ${Buffer.from(content).toString("base64")}\n`)
    .join("");
}

function rewriteHaproxy(r: FakeResource, edit: (cfg: string) => string): FakeResource {
  const stdin = r.props.stdin;
  if (r.parent?.type !== "hakube:index:KeepalivedLoadBalancer" || typeof stdin !== "string") {
    return r;
  }
  const lines = stdin.split("\n").map((line) => {
    const [mode, path, data] = line.split(" ");
    if (path !== "/etc/haproxy/haproxy.cfg") {
      return line;
    }
    return `${mode} ${path} ${Buffer.from(edit(Buffer.from(data, "base64").toString("utf8"))).toString("base64")}`;
  });
  return { ...r, props: { ...r.props, stdin: lines.join("\n") } };
}

describe("a real HaControlPlane", () => {
  test("passes every policy of the pack", async () => {
    assert.ok(real.length > 50, `recorded only ${real.length} resources`);
    assert.deepEqual(await run(hakubePolicies, real), []);
  });

  test("the signals the rules rely on are there", () => {
    // etcd member steps: children of EtcdCluster whose delete script stops etcd.service.
    const members = real.filter((r) => r.parent?.type === "hakube:index:EtcdCluster" && /etcd\.service/.test(String(r.props.delete ?? "")));
    assert.deepEqual(members.map((m) => m.name).sort(), [
      "p3-etcd-cp-1", "p3-etcd-cp-2", "p3-etcd-cp-3",
      "p5-etcd-etcd-1", "p5-etcd-etcd-2", "p5-etcd-etcd-3", "p5-etcd-etcd-4", "p5-etcd-etcd-5",
    ]);
    // The balancer steps carry haproxy.cfg in their stdin bundle, checking /readyz.
    assert.equal(children("hakube:index:KeepalivedLoadBalancer", "p3-").filter((r) => typeof r.props.stdin === "string").length, 3);
    // Every private key declares its key outputs secret (the @pulumi/tls SDK does).
    const keys = real.filter((r) => r.type === "tls:index/privateKey:PrivateKey");
    assert.ok(keys.length > 10);
    for (const k of keys) {
      assert.ok(k.additionalSecretOutputs?.includes("privateKeyPem"), k.name);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Bad programs, rule by rule.

describe("etcd-odd-member-count", () => {
  test("rejects a cluster that lost a member step (2 of 3)", async () => {
    const bad = variant((r) => (r.name === "p3-etcd-cp-3" ? undefined : r));
    const [v] = await rejects(etcdOddMemberCount, bad, /"p3-etcd" has 2 member\(s\) \(p3-etcd-cp-1, p3-etcd-cp-2\)/);
    assert.match(v.urn ?? "", /hakube:index:EtcdCluster::p3-etcd$/);
  });

  test("rejects an even cluster (4 of 5) and a single member", async () => {
    await rejects(etcdOddMemberCount, variant((r) => (r.name === "p5-etcd-etcd-5" ? undefined : r)), /"p5-etcd" has 4 member/);
    const one = variant((r) => (/^p3-etcd-cp-[23]$/.test(r.name) ? undefined : r));
    await rejects(etcdOddMemberCount, one, /"p3-etcd" has 1 member/);
  });

  test("counts member steps, not the binary installs or the readiness gate", async () => {
    const cluster: FakeResource = { type: "hakube:index:EtcdCluster", name: "e", props: {} };
    const step = (name: string, del?: string): FakeResource => ({ type: "command:remote:Command", name, parent: cluster, props: { create: "true", ...(del ? { delete: del } : {}) } });
    const stopEtcd = "systemctl disable --now etcd.service";
    const fourOtherSteps = [step("e-a-binaries"), step("e-b-binaries"), step("e-c-binaries"), step("e-ready")];
    await rejects(etcdOddMemberCount, [cluster, step("e-a", stopEtcd), step("e-b", stopEtcd), ...fourOtherSteps], /has 2 member/);
    await accepts(etcdOddMemberCount, [cluster, step("e-a", stopEtcd), step("e-b", stopEtcd), step("e-c", stopEtcd), ...fourOtherSteps]);
  });
});

describe("control-plane-multi-az", () => {
  const instance = (name: string, role: string, props: Record<string, unknown>, deps?: Record<string, FakeResource[]>): FakeResource => ({
    type: "aws:ec2/instance:Instance",
    name,
    props: { tags: { "hakube:role": role, Name: name }, ...props },
    propertyDependencies: deps,
  });
  const subnet = (name: string, zone: string): FakeResource => ({ type: "aws:ec2/subnet:Subnet", name, props: { availabilityZone: zone, cidrBlock: "10.0.0.0/24" } });

  test("rejects three control-plane hosts in one zone", async () => {
    const bad = ["a", "b", "c"].map((n) => instance(`cp-${n}`, "control-plane", { availabilityZone: "eu-central-1a" }));
    await rejects(controlPlaneMultiAz, bad, /3 "control-plane" instance\(s\) span 1 availability zone\(s\) \(eu-central-1a: cp-a, cp-b, cp-c\)/);
  });

  test("rejects five etcd hosts whose subnets are all in one zone", async () => {
    const s = subnet("private-a", "eu-central-1a");
    const cps = ["a", "b", "c"].map((z, i) => instance(`cp-${i}`, "control-plane", { availabilityZone: `eu-central-1${z}` }));
    const etcd = [1, 2, 3, 4, 5].map((i) => instance(`etcd-${i}`, "etcd", { subnetId: "subnet-123" }, { subnetId: [s] }));
    await rejects(controlPlaneMultiAz, [s, ...cps, ...etcd], /5 "etcd" instance\(s\) span 1 availability zone/);
  });

  test("finds zones through subnets and accepts a spread; ignores other instances and local stacks", async () => {
    const subnets = ["a", "b", "c"].map((z) => subnet(`private-${z}`, `eu-central-1${z}`));
    const cps = subnets.map((s, i) => instance(`cp-${i}`, "control-plane", { subnetId: `subnet-${i}` }, { subnetId: [s] }));
    const bastion: FakeResource = { type: "aws:ec2/instance:Instance", name: "bastion", props: { availabilityZone: "eu-central-1a", tags: {} } };
    await accepts(controlPlaneMultiAz, [...subnets, ...cps, bastion]);
    await accepts(controlPlaneMultiAz, real);
  });

  test("a host without a known zone counts against the spread", async () => {
    const bad = [instance("cp-1", "control-plane", { availabilityZone: "eu-central-1a" }), instance("cp-2", "control-plane", {})];
    await rejects(controlPlaneMultiAz, bad, /no zone found for cp-2/);
  });
});

describe("balancer-readyz-health-check", () => {
  test("rejects HAProxy checking /healthz, or checking over plain HTTP", async () => {
    const healthz = variant((r) => rewriteHaproxy(r, (cfg) => cfg.replace(/uri \/readyz\S*/, "uri /healthz")));
    await rejects(balancerReadyzHealthCheck, healthz, /haproxy\.cfg written by "p3-lb-cp-1": backend kube-apiservers: health check path is \/healthz, not \/readyz/);
    const plain = variant((r) => rewriteHaproxy(r, (cfg) => cfg.replace(/ check-ssl/g, "")));
    await rejects(balancerReadyzHealthCheck, plain, /checked over plain HTTP, not HTTPS/);
    const tcpOnly = variant((r) => rewriteHaproxy(r, (cfg) => cfg.replace(/^\s*(option httpchk|http-check .*)$/gm, "")));
    await rejects(balancerReadyzHealthCheck, tcpOnly, /no "option httpchk"/);
  });

  test("reads HAProxy's legacy form and per-server options", () => {
    const cfg = (pool: string) => `global\n  daemon\nfrontend f\n  default_backend api\nbackend api\n${pool}`;
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk GET /readyz\n  server a 10.0.0.1:6443 check check-ssl verify none\n")), []);
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk\n  http-check send meth GET uri /readyz?exclude=shutdown\n  server a 10.0.0.1:6443 check check-ssl\n")), [], "without the shutdown check only");
    assert.deepEqual(
      haproxyReadyzProblems(cfg("  option httpchk\n  http-check send meth GET uri /readyz?exclude=shutdown\n  http-check send meth GET uri /readyz\n  server a 10.0.0.1:6443 check check-ssl\n")),
      [],
      "readiness without the shutdown check, then with it",
    );
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk\n  http-check send meth GET uri /readyz\n  http-check send meth GET uri /readyz/shutdown\n  server a 10.0.0.1:6443 check check-ssl\n")), [
      "backend api: health check path is /readyz/shutdown, not /readyz",
    ], "every path checked counts");
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk\n  http-check send meth GET uri /readyz?exclude=etcd\n  server a 10.0.0.1:6443 check check-ssl\n")), [
      "backend api: health check path is /readyz?exclude=etcd, not /readyz",
    ]);
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk /livez\n  server a 10.0.0.1:6443 check check-ssl\n")), [
      "backend api: health check path is /livez, not /readyz",
    ]);
    assert.deepEqual(haproxyReadyzProblems(cfg("  option httpchk\n  http-check send meth GET uri /readyz\n  server a 10.0.0.1:6443 check-ssl\n")), [
      'backend api: server a is not health-checked ("check")',
    ]);
    assert.deepEqual(haproxyReadyzProblems("global\n  daemon\n"), ["no backend with servers that a frontend sends to"]);
  });

  test("judges the backends that carry traffic; one that is only checked (a monitor's) is not", () => {
    const monitorOnly = "backend alive\n  server a 10.0.0.1:6443 check check-ssl\n";
    const served = "frontend f\n  default_backend api\nbackend api\n  option httpchk GET /readyz\n  server a 10.0.0.1:6443 check check-ssl\n";
    assert.deepEqual(haproxyReadyzProblems(`${served}${monitorOnly}`), []);
    // The same backend, once a frontend sends to it, needs the /readyz check.
    assert.deepEqual(haproxyReadyzProblems(`${served}frontend g\n  use_backend alive if TRUE\n${monitorOnly}`), [
      'backend alive: no "option httpchk" (servers are only checked for an open port)',
      "backend alive: health check path is / (default), not /readyz",
    ]);
    assert.deepEqual(haproxyReadyzProblems(monitorOnly), ["no backend with servers that a frontend sends to"]);
  });

  test("rejects an NLB target group without an HTTPS /readyz check", async () => {
    const tg = (healthCheck?: Record<string, unknown>): FakeResource => ({
      type: "aws:lb/targetGroup:TargetGroup",
      name: "api",
      props: { port: 6443, protocol: "TCP", ...(healthCheck ? { healthCheck } : {}) },
    });
    await rejects(balancerReadyzHealthCheck, [tg({ protocol: "HTTPS", path: "/healthz", port: "traffic-port" })], /checks HTTPS \/healthz/);
    await rejects(balancerReadyzHealthCheck, [tg({ protocol: "TCP" })], /checks TCP \(default path\)/);
    await rejects(balancerReadyzHealthCheck, [tg({ protocol: "HTTPS", path: "/readyz", enabled: false })], /health check disabled/);
    await rejects(balancerReadyzHealthCheck, [tg()], /\(default protocol\) \(default path\)/);
    await accepts(balancerReadyzHealthCheck, [tg({ protocol: "HTTPS", path: "/readyz", port: "traffic-port", matcher: "200" })]);
  });
});

describe("no-world-open-etcd-ports", () => {
  const sg = (ingress: Record<string, unknown>[]): FakeResource => ({ type: "aws:ec2/securityGroup:SecurityGroup", name: "etcd", props: { ingress } });

  test("rejects a security group opening 2379-2380 (or everything) to the world", async () => {
    await rejects(noWorldOpenEtcdPorts, [sg([{ protocol: "tcp", fromPort: 2379, toPort: 2380, cidrBlocks: ["0.0.0.0/0"] }])], /opens tcp 2379-2380 to 0\.0\.0\.0\/0/);
    await rejects(noWorldOpenEtcdPorts, [sg([{ protocol: "-1", fromPort: 0, toPort: 0, ipv6CidrBlocks: ["::/0"] }])], /to ::\/0/);
    await rejects(noWorldOpenEtcdPorts, [sg([{ protocol: "tcp", fromPort: 1024, toPort: 65535, cidrBlocks: ["10.0.0.0/8", "0.0.0.0/0"] }])], /1024-65535/);
  });

  test("rejects standalone ingress rules of both kinds", async () => {
    const vpcRule: FakeResource = {
      type: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
      name: "etcd-client",
      props: { securityGroupId: "sg-1", ipProtocol: "tcp", fromPort: 2379, toPort: 2379, cidrIpv4: "0.0.0.0/0" },
    };
    await rejects(noWorldOpenEtcdPorts, [vpcRule], /etcd-client" opens tcp 2379-2379/);
    const ec2Rule: FakeResource = {
      type: "aws:ec2/securityGroupRule:SecurityGroupRule",
      name: "etcd-peer",
      props: { type: "ingress", securityGroupId: "sg-1", protocol: "tcp", fromPort: 2380, toPort: 2380, ipv6CidrBlocks: ["::/0"] },
    };
    await rejects(noWorldOpenEtcdPorts, [ec2Rule], /etcd-peer" opens tcp 2380-2380 to ::\/0/);
  });

  test("accepts etcd ports between members, the API port to the world, and egress", async () => {
    await accepts(noWorldOpenEtcdPorts, [
      sg([
        { protocol: "tcp", fromPort: 2379, toPort: 2380, cidrBlocks: ["10.0.1.0/24"], securityGroups: ["sg-etcd"] },
        { protocol: "tcp", fromPort: 6443, toPort: 6443, cidrBlocks: ["0.0.0.0/0"] },
        { protocol: "udp", fromPort: 2379, toPort: 2380, cidrBlocks: ["0.0.0.0/0"] },
      ]),
      { type: "aws:ec2/securityGroupRule:SecurityGroupRule", name: "out", props: { type: "egress", protocol: "-1", fromPort: 0, toPort: 0, cidrBlocks: ["0.0.0.0/0"] } },
      { type: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", name: "peer", props: { ipProtocol: "tcp", fromPort: 2380, toPort: 2380, referencedSecurityGroupId: "sg-etcd" } },
    ]);
  });
});

describe("private-keys-secret", () => {
  test("rejects a private key whose key outputs are not declared secret", async () => {
    const bad = variant((r) => (r.name === "p3-pki-cluster-ca-key" && r.type === "tls:index/privateKey:PrivateKey" ? { ...r, additionalSecretOutputs: [] } : r));
    const names = real.filter((r) => r.type === "tls:index/privateKey:PrivateKey").map((r) => r.name);
    assert.ok(names.includes("p3-pki-cluster-ca-key"), `no private key named p3-pki-cluster-ca-key among ${names.join(", ")}`);
    await rejects(privateKeysSecret, bad, /private key "p3-pki-cluster-ca-key" does not mark privateKeyOpenssh, privateKeyPem, privateKeyPemPkcs8 as secret/);
    const partly: FakeResource = { type: "tls:index/privateKey:PrivateKey", name: "k", props: { algorithm: "ED25519" }, additionalSecretOutputs: ["privateKeyPem"] };
    await rejects(privateKeysSecret, [partly], /does not mark privateKeyOpenssh, privateKeyPemPkcs8 as secret/);
  });

  test("rejects a command script holding a private key", async () => {
    const pem = `-----BEGIN EC ${"PRIVATE"} KEY-----\nMHcCAQEE...\n-----END EC ${"PRIVATE"} KEY-----`;
    const bad = variant((r) => (r.name === "p3-etcd-cp-1" ? { ...r, props: { ...r.props, update: `cat >/etc/etcd/pki/server.key <<'EOF'\n${pem}\nEOF` } } : r));
    await rejects(privateKeysSecret, bad, /the update script of command:remote:Command "p3-etcd-cp-1" contains a private key/);
    const local: FakeResource = { type: "command:local:Command", name: "leak", props: { create: `echo '${pem}' > key.pem` } };
    await rejects(privateKeysSecret, [local], /create script of command:local:Command "leak"/);
    // Keys in the secret stdin bundle are fine (that is how hakube ships them).
    await accepts(privateKeysSecret, [{ type: "command:remote:Command", name: "ok", props: { create: "hakube_write_files", stdin: bundle({ "/k.pem": pem }) } }]);
  });
});

describe("values unknown during a preview", () => {
  // @pulumi/policy wraps props so that reading an unknown value throws its
  // UnknownValueError; this stand-in has the same fields.
  class UnknownValueError extends Error {
    constructor(
      readonly unknownTypeSentinel: string,
      readonly props: string[],
    ) {
      super(`string value at .${props.join(".")} can't be known during preview`);
    }
  }
  const unknownAt = (props: Record<string, unknown>, key: string) =>
    new Proxy({ ...props, [key]: "04da6b54-80e4-46f7-96ec-b56ff0331ba9" }, {
      get: (t, p) => {
        if (p === key) {
          throw new UnknownValueError("04da6b54-80e4-46f7-96ec-b56ff0331ba9", [key]);
        }
        return t[p as string];
      },
    });

  test("resource rules skip what is not known yet (up checks the real inputs)", async () => {
    const step: FakeResource = { type: "command:remote:Command", name: "s", props: unknownAt({ delete: "x" }, "create") };
    await accepts(privateKeysSecret, [step]);
    const rule: FakeResource = { type: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", name: "r", props: unknownAt({ ipProtocol: "tcp", fromPort: 2379, toPort: 2379 }, "cidrIpv4") };
    await accepts(noWorldOpenEtcdPorts, [rule]);
  });

  test("a stack rule whose verdict needs an unknown zone lets @pulumi/policy report it", async () => {
    const i = (name: string, props: Record<string, unknown>): FakeResource => ({ type: "aws:ec2/instance:Instance", name, props });
    const tags = { "hakube:role": "control-plane" };
    const resources = [i("a", { tags, availabilityZone: "eu-central-1a" }), i("b", unknownAt({ tags, subnetId: "subnet-1" }, "availabilityZone"))];
    await assert.rejects(run([controlPlaneMultiAz], resources), UnknownValueError);
    // Two known zones already decide it.
    await accepts(controlPlaneMultiAz, [...resources, i("c", { tags, availabilityZone: "eu-central-1b" })]);
  });
});

describe("certificate-renewal-window (advisory)", () => {
  const now = Date.parse("2026-12-02T12:00:00Z");
  const cert = (name: string, end: string | undefined, early: number): FakeResource => ({
    type: "tls:index/locallySignedCert:LocallySignedCert",
    name,
    props: { validityEndTime: end, earlyRenewalHours: early },
  });
  const check = (resources: FakeResource[]) => {
    const found: string[] = [];
    validateCertificateRenewal(stackArgs(resources), (m) => found.push(m ?? ""), now);
    return found;
  };

  test("is advisory and part of the pack", () => {
    assert.equal(certificateRenewalWindow.enforcementLevel, "advisory");
    assert.ok(hakubePolicies.includes(certificateRenewalWindow));
  });

  test("warns for a certificate inside its renewal window and for one that expired, not for the others", () => {
    const found = check([
      cert("fresh", "2027-12-02T12:00:00Z", 720),
      cert("soon", "2026-12-20T12:00:00Z", 720),
      cert("gone", "2026-12-01T12:00:00Z", 720),
      cert("issuing", undefined, 720),
      { type: "tls:index/selfSignedCert:SelfSignedCert", name: "ca-soon", props: { validityEndTime: "2027-01-10T12:00:00Z", earlyRenewalHours: 1440 } },
    ]);
    assert.equal(found.length, 3, found.join("\n"));
    assert.match(found.find((m) => m.includes('"soon"'))!, /in 18 days.*renewal window \(720 hours\)/);
    assert.match(found.find((m) => m.includes('"gone"'))!, /expired at 2026-12-01T12:00:00Z/);
    assert.ok(found.some((m) => m.includes('"ca-soon"')));
  });
});

test("parentTypeFromUrn reads the parent's type from a URN", () => {
  assert.equal(
    parentTypeFromUrn("urn:pulumi:local::hakube::hakube:index:HaControlPlane$hakube:index:KeepalivedLoadBalancer$command:remote:Command::local-lb-cp-1"),
    "hakube:index:KeepalivedLoadBalancer",
  );
  assert.equal(parentTypeFromUrn("urn:pulumi:local::hakube::pulumi:pulumi:Stack::hakube-local"), undefined);
});
