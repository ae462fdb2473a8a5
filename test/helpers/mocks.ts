// Pulumi mocks for component tests: records every resource with its parent and
// dependsOn (through a stack transformation), and fakes the providers' outputs.
import * as pulumi from "@pulumi/pulumi";
import { createHash } from "crypto";

export interface Recorded {
  readonly type: string;
  readonly name: string;
  readonly resource: pulumi.Resource;
  readonly parent?: pulumi.Resource;
  readonly dependsOn: pulumi.Resource[];
  readonly props: Record<string, any>;
  readonly additionalSecretOutputs: string[];
  readonly deleteBeforeReplace: boolean;
  readonly retainOnDelete: boolean;
  readonly ignoreChanges: string[];
  readonly aliases: pulumi.Input<string | pulumi.Alias>[];
}

export const recorded: Recorded[] = [];

/** Fake PEM labels are assembled here so scanners for committed keys skip these fixtures. */
const PRIV = ["PRIVATE", "KEY"].join(" ");

/** A self-signed P-256 certificate made for these tests (its key was discarded). */
const FIXTURE_CERT = `-----BEGIN CERTIFICATE-----
MIIBdTCCARugAwIBAgIUD47x3olh8WCEQS//ST9h7FESoiYwCgYIKoZIzj0EAwIw
DzENMAsGA1UEAwwEbW9jazAgFw0yNjEyMDExNDM3MDVaGA8yMTI2MTEwNzE0Mzcw
NVowDzENMAsGA1UEAwwEbW9jazBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABI4w
b5SNUiavfKhi1rYGlYyFzJnDrsGnFEq+PZyrRPFzMis+p40Q6kCUYnPtj6agzLFn
q0+HdwR0TMi5TTZqEECjUzBRMB0GA1UdDgQWBBSL2eULC+5IK2l8XeF50rnnUN2Z
oDAfBgNVHSMEGDAWgBSL2eULC+5IK2l8XeF50rnnUN2ZoDAPBgNVHRMBAf8EBTAD
AQH/MAoGCCqGSM49BAMCA0gAMEUCIQCB8/A9IJ0kcGr97d9tpiZiXE4XgFRq9i2W
YsCWBSv9jQIgTh1YLiIxdBmIGQ+gNBd44d36jLJXuFMmlGDUCmnZ780=
-----END CERTIFICATE-----`;

/** Mock EC2 instances get distinct private addresses 10.<n>.0.10. */
let instanceCount = 0;

/** Certificates of the mocks are issued at this instant. */
export const MOCK_ISSUED_AT = Date.parse("2026-01-01T00:00:00Z");
const mockValidityEnd = (hours: number) => new Date(MOCK_ISSUED_AT + hours * 3_600_000).toISOString();

pulumi.runtime.setMocks(
  {
    newResource(args) {
      const state: Record<string, any> = { ...args.inputs };
      switch (args.type) {
        case "tls:index/privateKey:PrivateKey":
          state.privateKeyPem = `-----BEGIN ${PRIV}-----\nmock-${args.name}\n-----END ${PRIV}-----\n`;
          state.publicKeyPem = `-----BEGIN PUBLIC KEY-----\nmock-${args.name}\n-----END PUBLIC KEY-----\n`;
          state.privateKeyOpenssh = `-----BEGIN OPENSSH ${PRIV}-----\nmock-${args.name}\n-----END OPENSSH ${PRIV}-----\n`;
          state.publicKeyOpenssh = `ssh-ed25519 mock-${args.name}`;
          break;
        case "tls:index/selfSignedCert:SelfSignedCert":
          // A real (public, throw-away) certificate after the name: code that reads a CA's
          // public key (the backups' cluster id) can parse it.
          state.certPem = `mock-${args.name}\n${FIXTURE_CERT}\n`;
          state.validityEndTime = mockValidityEnd(args.inputs.validityPeriodHours);
          break;
        case "tls:index/locallySignedCert:LocallySignedCert":
          state.certPem = `-----BEGIN CERTIFICATE-----\nmock-${args.name}\n-----END CERTIFICATE-----\n`;
          state.validityEndTime = mockValidityEnd(args.inputs.validityPeriodHours);
          break;
        case "tls:index/certRequest:CertRequest":
          state.certRequestPem = `-----BEGIN CERTIFICATE REQUEST-----\nmock-${args.name}\n-----END CERTIFICATE REQUEST-----\n`;
          break;
        case "command:local:Command":
          state.stdout = Buffer.alloc(32, 9).toString("base64");
          // A local machine prints the host key its provisioning made (LocalMachines pins it).
          if (String(args.inputs.create ?? "").includes("hakube-hostkey")) {
            state.stdout = `hakube-instance mock-${args.name}\nhakube-hostkey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAImock${args.name.replace(/[^A-Za-z0-9]/g, "")}`;
          }
          break;
        case "command:remote:Command":
          state.stdout = "";
          break;
        case "pulumi-nodejs:dynamic:Resource":
          // A bootstrap token (hakube's dynamic provider does not run under mocks): an id
          // and a secret of its own, made from its name.
          if (args.inputs.ttlHours !== undefined) {
            const digits = createHash("sha256").update(args.name).digest("hex");
            state.tokenId = digits.slice(0, 6);
            state.tokenSecret = digits.slice(6, 22);
            state.expiration = mockValidityEnd(args.inputs.ttlHours);
          }
          // An EtcdMembership's check on a first deployment: every member may bootstrap.
          if (args.name.endsWith("-membership") && Array.isArray(args.inputs.names)) state.bootstrap = args.inputs.names;
          break;
        case "aws:ec2/instance:Instance":
          instanceCount++;
          state.privateIp = `10.${instanceCount}.0.10`;
          state.publicIp = args.inputs.associatePublicIpAddress ? `203.0.113.${instanceCount}` : "";
          state.arn = `arn:aws:ec2:eu-central-1:123456789012:instance/${args.name}`;
          state.primaryNetworkInterfaceId = `eni-${args.name}`;
          break;
        case "aws:ec2/keyPair:KeyPair":
          state.keyName = args.inputs.keyName ?? `${args.name}-key`;
          break;
        case "aws:lb/loadBalancer:LoadBalancer":
          state.arn = `arn:aws:elasticloadbalancing:eu-central-1:123456789012:loadbalancer/net/${args.name}/0123456789abcdef`;
          state.dnsName = `${args.name}-0123456789abcdef.elb.eu-central-1.amazonaws.com`;
          break;
        case "aws:lb/targetGroup:TargetGroup":
          state.arn = `arn:aws:elasticloadbalancing:eu-central-1:123456789012:targetgroup/${args.name}/0123456789abcdef`;
          break;
      }
      return { id: `${args.name}-id`, state };
    },
    call(args) {
      switch (args.token) {
        case "aws:index/getAvailabilityZones:getAvailabilityZones":
          return { ...args.inputs, names: ["eu-central-1a", "eu-central-1b", "eu-central-1c"], zoneIds: ["euc1-az2", "euc1-az3", "euc1-az1"] };
        case "aws:ec2/getAmi:getAmi":
          return { ...args.inputs, id: "ami-0123456789abcdef0", name: "debian-12-amd64-20260101-0000" };
        case "aws:ec2/getSubnet:getSubnet":
          return { ...args.inputs, availabilityZone: `zone-of-${args.inputs.id}` };
        case "aws:ec2/getVpc:getVpc":
          return { ...args.inputs, cidrBlock: "10.50.0.0/16" };
        // A bucket holding two backups and an unrelated object.
        case "aws:s3/getObjects:getObjects": {
          const p = args.inputs.prefix;
          return { ...args.inputs, keys: [`${p}etcd-20261201T100000Z-r41.db.cms`, `${p}etcd-20261201T100000Z-r41.json`, `${p}etcd-20261201T103000Z-r57.db.cms`, `${p}etcd-20261201T103000Z-r57.json`, `${p}notes.txt`] };
        }
        case "aws:s3/getObject:getObject": {
          const m = /etcd-(\d{8})T(\d{2})(\d{2})(\d{2})Z-r(\d+)\.json$/.exec(args.inputs.key);
          const manifest = m && { name: `etcd-${m[1]}T${m[2]}${m[3]}${m[4]}Z-r${m[5]}`, time: `2026-12-01T${m[2]}:${m[3]}:${m[4]}Z`, revision: Number(m[5]), size: 4096, dbSize: 20480, totalKey: 300, member: "cp-2" };
          return { ...args.inputs, bodyBase64: Buffer.from(JSON.stringify(manifest)).toString("base64") };
        }
      }
      return args.inputs;
    },
  },
  "hakube",
  "test",
  false,
);

/**
 * Runs a program inside a stack (as `pulumi up` does) so a stack transformation can
 * record every resource's parent and dependsOn. Returns what the program returned.
 */
export async function program<T>(fn: () => T): Promise<T> {
  let result: T | undefined;
  await pulumi.runtime.runInPulumiStack(async () => {
    pulumi.runtime.registerStackTransformation((args) => {
      const deps = args.opts.dependsOn;
      recorded.push({
        type: args.type,
        name: args.name,
        resource: args.resource,
        parent: args.opts.parent,
        dependsOn: (Array.isArray(deps) ? deps : deps ? [deps] : []) as pulumi.Resource[],
        props: args.props,
        additionalSecretOutputs: (args.opts as pulumi.CustomResourceOptions).additionalSecretOutputs ?? [],
        deleteBeforeReplace: (args.opts as pulumi.CustomResourceOptions).deleteBeforeReplace === true,
        retainOnDelete: args.opts.retainOnDelete === true,
        ignoreChanges: args.opts.ignoreChanges ?? [],
        aliases: args.opts.aliases ?? [],
      });
      return undefined;
    });
    result = fn();
    return {};
  });
  return result as T;
}

/** The value of an output (mocks resolve everything). */
export function valueOf<T>(output: pulumi.Input<T>): Promise<T> {
  return new Promise((resolve) => pulumi.output(output).apply((v) => resolve(v as T)));
}

export async function isSecret(output: pulumi.Input<unknown>): Promise<boolean> {
  return (pulumi.output(output) as any).isSecret as Promise<boolean>;
}

/** Decodes a host step's stdin bundle into path -> { mode, content }. */
export function decodeBundle(bundle: string): Map<string, { mode: string; content: string }> {
  const files = new Map<string, { mode: string; content: string }>();
  for (const line of bundle.split("\n").filter(Boolean)) {
    const [mode, path, data] = line.split(" ");
    files.set(path, { mode, content: Buffer.from(data ?? "", "base64").toString("utf8") });
  }
  return files;
}

export function byName(name: string): Recorded {
  const r = recorded.find((x) => x.name === name);
  if (!r) {
    throw new Error(`no resource named ${name}; have ${recorded.map((x) => x.name).join(", ")}`);
  }
  return r;
}

export function nameOf(resource: pulumi.Resource | undefined): string | undefined {
  return recorded.find((r) => r.resource === resource)?.name;
}

export function hosts(count: number, prefix = "cp", base = 10) {
  return Array.from({ length: count }, (_, i) => ({
    name: `${prefix}-${i + 1}`,
    address: `10.0.0.${base + i + 1}`,
    connection: pulumi.secret({ host: `10.0.0.${base + i + 1}`, user: "root", privateKey: "SSH-PRIVATE-KEY" }),
  }));
}

export const ETCD_DIGEST = `sha256:${"a".repeat(64)}`;
