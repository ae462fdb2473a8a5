// The stack program with the aws-dev and aws-prod stack configs (stacks/Pulumi.aws-*.yaml)
// under Pulumi mocks: the config keys the files set are the ones the program reads.
import assert from "node:assert/strict";
import { test } from "node:test";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import { ETCD_DIGEST, program, Recorded, recorded, valueOf } from "../helpers/mocks";

const STACKS = path.resolve(__dirname, "..", "..", "..", "stacks");

/** A stack file's config as the Pulumi language host passes it: strings, objects as JSON. */
function stackConfig(file: string, extra: Record<string, string>): Record<string, string> {
  const doc = yaml.load(fs.readFileSync(path.join(STACKS, file), "utf8")) as { config: Record<string, unknown> };
  const entries = Object.entries({ ...doc.config, ...extra }).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]);
  return Object.fromEntries(entries);
}

/** Runs stacks/index.ts with the given config; returns its outputs and the resources it made. */
async function runStack(config: Record<string, string>): Promise<{ outputs: Record<string, any>; resources: Recorded[] }> {
  pulumi.runtime.setAllConfig(config, ["hakube:bastionPrivateKey"]);
  const modulePath = require.resolve("../../stacks");
  delete require.cache[modulePath];
  const start = recorded.length;
  const outputs = await program(() => require(modulePath) as Record<string, any>);
  return { outputs, resources: recorded.slice(start) };
}

const secrets = { "hakube:etcdDigest": ETCD_DIGEST, "hakube:bastionPrivateKey": "BASTION-KEY" };
const named = (resources: Recorded[], type: string) => resources.filter((r) => r.type === type).map((r) => r.name);

test("aws-dev: 3 control-plane hosts with stacked etcd, 3 workers, public addresses, internet-facing NLB", async () => {
  const { outputs, resources } = await runStack(stackConfig("Pulumi.aws-dev.yaml", secrets));
  assert.deepEqual(named(resources, "aws:ec2/instance:Instance"), ["test-cp-1", "test-cp-2", "test-cp-3", "test-worker-1", "test-worker-2", "test-worker-3"]);
  assert.ok(resources.some((r) => r.type === "hakube:index:WorkerPool"), "a WorkerPool for the workers");
  assert.equal(resources.filter((r) => r.type === "kubernetes:apps/v1:Deployment" && r.name === "test-dns-coredns").length, 1, "CoreDNS");
  const etcd = resources.filter((r) => r.type === "command:remote:Command" && /^test-etcd-[a-z]+-\d$/.test(r.name)).map((r) => r.name);
  assert.deepEqual(etcd, ["test-etcd-cp-1", "test-etcd-cp-2", "test-etcd-cp-3"], "stacked etcd on the control-plane hosts");
  const lb = resources.find((r) => r.type === "aws:lb/loadBalancer:LoadBalancer")!;
  assert.equal(await valueOf(lb.props.internal), false);
  const cp1 = resources.find((r) => r.name === "test-cp-1")!;
  assert.equal(await valueOf(cp1.props.associatePublicIpAddress), true);
  assert.match(await valueOf<string>(outputs.endpoint), /^https:\/\/api-nlb-[0-9a-f]+\.elb\.eu-central-1\.amazonaws\.com:6443$/);
  assert.equal((await valueOf<unknown[]>(outputs.hosts)).length, 3);
  const apiserver = resources.find((r) => r.name === "test-apiserver-cp-1")!;
  assert.match(await valueOf<string>(apiserver.props.update), /binaries v1\.37\.1 sha512:/, "Kubernetes v1.37.1 (the default) from the release, pinned digest");
});

test("aws-prod: 3 control-plane hosts and 5 etcd hosts of their own, bastion, internal NLB", async () => {
  const { outputs, resources } = await runStack(stackConfig("Pulumi.aws-prod.yaml", secrets));
  assert.deepEqual(named(resources, "aws:ec2/instance:Instance"), [
    "test-cp-1",
    "test-cp-2",
    "test-cp-3",
    "test-etcd-1",
    "test-etcd-2",
    "test-etcd-3",
    "test-etcd-4",
    "test-etcd-5",
    "test-worker-1",
    "test-worker-2",
    "test-worker-3",
  ]);
  const etcd = resources.filter((r) => r.type === "command:remote:Command" && /^test-etcd-[a-z]+-\d$/.test(r.name)).map((r) => r.name);
  assert.deepEqual(etcd, ["test-etcd-etcd-1", "test-etcd-etcd-2", "test-etcd-etcd-3", "test-etcd-etcd-4", "test-etcd-etcd-5"]);
  const lb = resources.find((r) => r.type === "aws:lb/loadBalancer:LoadBalancer")!;
  assert.equal(await valueOf(lb.props.internal), true);
  assert.equal(named(resources, "aws:ec2/natGateway:NatGateway").length, 1);
  const ssh = resources.find((r) => r.name === "test-ssh")!;
  assert.equal(await valueOf(ssh.props.cidrIpv4), "10.8.0.10/32", "SSH from the bastion only");
  assert.equal((await valueOf<unknown[]>(outputs.etcdEndpoints)).length, 5);
});

/** The error the program throws while it is loaded (before it makes any resource). */
async function stackError(config: Record<string, string>): Promise<Error> {
  pulumi.runtime.setAllConfig(config, []);
  const modulePath = require.resolve("../../stacks");
  delete require.cache[modulePath];
  const start = recorded.length;
  const error = await program(() => {
    try {
      require(modulePath);
    } catch (e) {
      return e as Error;
    }
    return new Error("no error");
  });
  assert.equal(recorded.length, start, "nothing was made");
  return error;
}

test("the stack program refuses a missing etcd digest, an unknown machine layer and a VPC over the cluster ranges", async () => {
  assert.match((await stackError(stackConfig("Pulumi.aws-dev.yaml", {}))).message, /Missing required configuration variable 'hakube:etcdDigest'/);
  assert.match((await stackError({ "hakube:machines": "gcp" })).message, /hakube:machines is "gcp"; expected "local" or "aws"/);
  const overlapping = stackConfig("Pulumi.aws-dev.yaml", { ...secrets, "hakube:vpc": JSON.stringify({ cidrBlock: "10.96.0.0/16" }) });
  assert.match((await stackError(overlapping)).message, /hakube:vpc\.cidrBlock 10\.96\.0\.0\/16 overlaps the cluster range 10\.96\.0\.0\/12/);
});

test("aws backups: a versioned, encrypted, private, TLS-only bucket with lifecycle expiry; the etcd hosts' profile may touch only the prefix", async () => {
  const { outputs, resources } = await runStack(stackConfig("Pulumi.aws-prod.yaml", secrets));
  const of = (type: string) => resources.filter((r) => r.type === type);
  assert.equal(of("aws:s3/bucket:Bucket").length, 1);
  assert.equal(await valueOf(of("aws:s3/bucketVersioning:BucketVersioning")[0].props.versioningConfiguration.status), "Enabled");
  const sse = await valueOf<any[]>(of("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[0].props.rules);
  assert.equal(sse[0].applyServerSideEncryptionByDefault.sseAlgorithm, "AES256");
  const pab = of("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")[0].props;
  for (const k of ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"]) assert.equal(await valueOf(pab[k]), true, k);
  const rules = await valueOf<any[]>(of("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")[0].props.rules);
  assert.equal(rules[0].filter.prefix, "test/etcd/");
  assert.equal(rules[0].expiration.days, 14);
  const tlsOnly = JSON.parse(await valueOf<string>(of("aws:s3/bucketPolicy:BucketPolicy")[0].props.policy));
  assert.deepEqual(tlsOnly.Statement[0].Condition, { Bool: { "aws:SecureTransport": "false" } });
  assert.equal(tlsOnly.Statement[0].Effect, "Deny");
  const policy = JSON.parse(await valueOf<string>(of("aws:iam/rolePolicy:RolePolicy")[0].props.policy));
  for (const st of policy.Statement) {
    const resource = String(st.Resource);
    assert.ok(!resource.endsWith("/*") || resource.endsWith("/test/etcd/*"), `objects only under the prefix: ${resource}`);
    assert.ok(!String(st.Action).includes("*"), "no wildcard action");
  }
  assert.deepEqual(policy.Statement.find((s: any) => s.Action === "s3:ListBucket").Condition, { StringLike: { "s3:prefix": ["test/etcd/*"] } });
  // prod has etcd hosts of their own: only they get the profile.
  for (const i of of("aws:ec2/instance:Instance")) {
    const profile = await valueOf(i.props.iamInstanceProfile);
    assert.equal(profile !== undefined, i.name.includes("-etcd-"), `${i.name}: ${profile}`);
  }
  // Every etcd host gets the backup program, configured for the instance profile.
  const steps = resources.filter((r) => /^test-backups-etcd-\d$/.test(r.name));
  assert.equal(steps.length, 5);
  assert.ok(await valueOf(outputs.backupKey), "the backup key is a stack output");
  // The newest backup, read through the AWS provider: the latest manifest of the prefix.
  const last = await valueOf<any>(outputs.lastBackup);
  assert.equal(last.error, undefined);
  assert.equal(last.backup.name, "etcd-20261201T103000Z-r57");
  assert.equal(last.backup.revision, 57);
  assert.ok(typeof last.ageSeconds === "number");
});

test("every resource of the stack program is named after the component it belongs to (so a component's aliases carry to all of them)", async () => {
  const { resources } = await runStack(stackConfig("Pulumi.aws-dev.yaml", secrets));
  const strays = resources
    .filter((r) => r.parent && r.type !== "pulumi:pulumi:Stack")
    .map((r) => ({ r, parent: resources.find((x) => x.resource === r.parent) }))
    .filter(({ r, parent }) => parent && !r.name.startsWith(parent.name))
    .map(({ r, parent }) => `${r.name} (under ${parent!.name})`);
  // The one exception: the client certificates a WorkerPool asks of the control plane's
  // PKI are children of the PKI named after the pool. A renamed pool has them issued anew
  // (leaf certificates: its kube-proxy and the serving approver restart with new ones).
  assert.deepEqual(
    strays.filter((s) => !/^test-workers-(kube-proxy|kubelet-serving-approver)(-key|-csr|-renewal)? \(under test-pki\)$/.test(s)),
    [],
  );
});
