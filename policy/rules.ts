// hakube's HA invariants as Pulumi policies (CrossGuard). index.ts serves them as the
// policy pack; test/policy/ calls them directly. Everything here reads the resources
// the engine hands to a policy pack: resource inputs (validateResource, before a
// resource is created or changed) and the whole stack (validateStack, at the end of a
// preview or update).
//
// Values that are not known yet (outputs of resources a preview has not created) are
// wrapped by @pulumi/policy so that reading them throws. The resource rules skip a
// value that is not known: `pulumi up` runs the same rule with the real inputs before
// it creates or changes the resource, so nothing slips through. The stack rules let the
// error through only when the verdict depends on it, and @pulumi/policy then reports
// "can't run policy ... during preview" as advisory.
import type {
  PolicyResource,
  ReportViolation,
  ResourceValidationArgs,
  ResourceValidationPolicy,
  StackValidationArgs,
  StackValidationPolicy,
} from "@pulumi/policy";

export const ETCD_CLUSTER_TYPE = "hakube:index:EtcdCluster";
export const KEEPALIVED_TYPE = "hakube:index:KeepalivedLoadBalancer";
export const REMOTE_COMMAND_TYPE = "command:remote:Command";
export const LOCAL_COMMAND_TYPE = "command:local:Command";
export const INSTANCE_TYPE = "aws:ec2/instance:Instance";
export const SUBNET_TYPE = "aws:ec2/subnet:Subnet";
export const TARGET_GROUP_TYPE = "aws:lb/targetGroup:TargetGroup";
export const SECURITY_GROUP_TYPE = "aws:ec2/securityGroup:SecurityGroup";
export const SECURITY_GROUP_INGRESS_RULE_TYPE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule";
export const SECURITY_GROUP_RULE_TYPE = "aws:ec2/securityGroupRule:SecurityGroupRule";
export const PRIVATE_KEY_TYPE = "tls:index/privateKey:PrivateKey";

/** Tag that AwsMachines puts on each instance: `control-plane` or `etcd`. */
export const ROLE_TAG = "hakube:role";
/** The roles whose instances must span availability zones. */
export const ZONED_ROLES = ["control-plane", "etcd"] as const;
/** etcd's client and peer ports. */
export const ETCD_PORTS = { from: 2379, to: 2380 } as const;
/** The outputs of a tls.PrivateKey that hold the private key. */
export const PRIVATE_KEY_OUTPUTS = ["privateKeyOpenssh", "privateKeyPem", "privateKeyPemPkcs8"] as const;
/** The health check path of every apiserver balancer. */
export const READYZ = "/readyz";

/**
 * A readiness path HAProxy may check: /readyz itself, or /readyz without its `shutdown` check
 * (a stopping apiserver is then marked down once it stops listening, after it ended its
 * connections; every other check, etcd's among them, still counts). Pure.
 */
export function isReadyzPath(path: string): boolean {
  return path === READYZ || path === `${READYZ}?exclude=shutdown`;
}
/** The file of a KeepalivedLoadBalancer step that configures HAProxy. */
export const HAPROXY_CONFIG_PATH = "/etc/haproxy/haproxy.cfg";

// ---------------------------------------------------------------------------------------
// Reading values that may not be known yet.

/**
 * Whether an error is @pulumi/policy's "value can't be known during preview" (its class
 * is internal to the package, so it is recognised by its fields).
 */
export function isUnknownValueError(e: unknown): e is Error {
  return (
    e instanceof Error &&
    typeof (e as { unknownTypeSentinel?: unknown }).unknownTypeSentinel === "string" &&
    Array.isArray((e as { props?: unknown }).props)
  );
}

type Read<T> = { known: true; value: T } | { known: false; error: Error };

/** Reads a value, telling "not known during preview" apart from other errors. */
function read<T>(get: () => T): Read<T> {
  try {
    return { known: true, value: get() };
  } catch (e) {
    if (isUnknownValueError(e)) {
      return { known: false, error: e };
    }
    throw e;
  }
}

/** A known value, or undefined when it is missing or not known yet. */
function knownOrUndefined<T>(get: () => T): T | undefined {
  const r = read(get);
  return r.known ? r.value : undefined;
}

/**
 * The type of a resource's parent, from its URN: the qualified type in
 * `urn:pulumi:<stack>::<project>::<parent types $ ...>$<type>::<name>` lists the types of
 * all its ancestors. validateResource gets no parent object, but it gets the URN.
 */
export function parentTypeFromUrn(urn: string): string | undefined {
  const parts = urn.split("::");
  if (parts.length < 4) {
    return undefined;
  }
  const chain = parts[2].split("$");
  return chain.length >= 2 ? chain[chain.length - 2] : undefined;
}

function describe(r: { name: string; type: string }): string {
  return `${r.type} "${r.name}"`;
}

// ---------------------------------------------------------------------------------------
// 1. etcd: an odd number of members, at least 3.

/**
 * Whether a resource is the member step of an etcd host: a `command:remote:Command` whose
 * parent is an EtcdCluster and whose `delete` script stops `etcd.service`. That is what
 * makes a host a member (EtcdCluster's other children, the binary installs and the
 * readiness gate, have no such `delete`), and the `delete` script is a plain string, so
 * it is known in every preview, unlike the addresses or the `create` script (which
 * depend on certificates).
 */
export function isEtcdMemberStep(r: PolicyResource): boolean {
  if (r.type !== REMOTE_COMMAND_TYPE || r.parent?.type !== ETCD_CLUSTER_TYPE) {
    return false;
  }
  const del = read(() => r.props.delete as unknown);
  if (!del.known) {
    throw del.error;
  }
  return typeof del.value === "string" && /\betcd\.service\b/.test(del.value);
}

export function validateEtcdMemberCount(args: StackValidationArgs, reportViolation: ReportViolation): void {
  for (const cluster of args.resources.filter((r) => r.type === ETCD_CLUSTER_TYPE)) {
    const members = args.resources.filter((r) => r.parent?.urn === cluster.urn && isEtcdMemberStep(r));
    const n = members.length;
    if (n < 3 || n % 2 === 0) {
      const names = members.map((m) => m.name).join(", ") || "none";
      reportViolation(
        `etcd cluster "${cluster.name}" has ${n} member(s) (${names}); it needs an odd number of at least 3 ` +
          `so that a majority survives the loss of a member (3 tolerates 1, 5 tolerates 2).`,
        cluster.urn,
      );
    }
  }
}

export const etcdOddMemberCount: StackValidationPolicy = {
  name: "etcd-odd-member-count",
  description: "Every etcd cluster has an odd number of members, at least 3.",
  enforcementLevel: "mandatory",
  validateStack: validateEtcdMemberCount,
};

// ---------------------------------------------------------------------------------------
// 2. Control-plane (and etcd) instances in at least 2 availability zones.

/** The `hakube:role` values of an instance (a tag may list several, e.g. "control-plane,etcd"). */
export function instanceRoles(instance: PolicyResource): string[] {
  const tags =
    knownOrUndefined(() => instance.props.tags as Record<string, unknown> | undefined) ??
    knownOrUndefined(() => instance.props.tagsAll as Record<string, unknown> | undefined);
  if (!tags || typeof tags !== "object") {
    return [];
  }
  const value = knownOrUndefined(() => tags[ROLE_TAG]);
  return typeof value === "string" ? value.split(/[\s,]+/).filter(Boolean) : [];
}

type Zone = { zone: string } | { unknown: Error } | { missing: true };

/**
 * The availability zone of an instance: its own `availabilityZone` (an input, or the
 * output after creation), else that of the subnet its `subnetId` comes from (found
 * through the property dependency, which a preview knows before any id exists), else
 * that of the subnet in the stack whose id it names.
 */
export function instanceZone(instance: PolicyResource, resources: readonly PolicyResource[]): Zone {
  let unknown: Error | undefined;
  const note = (r: Read<unknown>): string | undefined => {
    if (!r.known) {
      unknown ??= r.error;
      return undefined;
    }
    return typeof r.value === "string" && r.value !== "" ? r.value : undefined;
  };
  const own = note(read(() => instance.props.availabilityZone));
  if (own) {
    return { zone: own };
  }
  const subnets = [...(instance.propertyDependencies?.subnetId ?? [])];
  const subnetId = note(read(() => instance.props.subnetId));
  if (subnetId) {
    subnets.push(...resources.filter((r) => r.type === SUBNET_TYPE && knownOrUndefined(() => r.props.id) === subnetId));
  }
  for (const subnet of subnets.filter((s) => s.type === SUBNET_TYPE)) {
    const zone = note(read(() => subnet.props.availabilityZone));
    if (zone) {
      return { zone };
    }
  }
  return unknown ? { unknown } : { missing: true };
}

export function validateControlPlaneZones(args: StackValidationArgs, reportViolation: ReportViolation): void {
  const instances = args.resources.filter((r) => r.type === INSTANCE_TYPE);
  for (const role of ZONED_ROLES) {
    const group = instances.filter((i) => instanceRoles(i).includes(role));
    if (group.length === 0) {
      continue; // no such instances (e.g. the local stack, or stacked etcd)
    }
    const zones = new Map<string, string[]>();
    const undetermined: string[] = [];
    let unknown: Error | undefined;
    for (const instance of group) {
      const z = instanceZone(instance, args.resources);
      if ("zone" in z) {
        zones.set(z.zone, [...(zones.get(z.zone) ?? []), instance.name]);
      } else {
        undetermined.push(instance.name);
        if ("unknown" in z) {
          unknown ??= z.unknown;
        }
      }
    }
    if (zones.size >= 2) {
      continue;
    }
    if (unknown) {
      throw unknown; // the verdict depends on zones a preview cannot know yet
    }
    const spread = [...zones].map(([zone, names]) => `${zone}: ${names.join(", ")}`).join("; ") || "none known";
    const without = undetermined.length > 0 ? `; no zone found for ${undetermined.join(", ")} (set availabilityZone or a subnetId from a subnet with one)` : "";
    reportViolation(
      `the ${group.length} "${role}" instance(s) span ${zones.size} availability zone(s) (${spread})${without}; ` +
        `spread them over at least 2 zones so that losing a zone leaves a quorum and an apiserver.`,
    );
  }
}

export const controlPlaneMultiAz: StackValidationPolicy = {
  name: "control-plane-multi-az",
  description: `EC2 instances tagged ${ROLE_TAG}=control-plane (and those tagged etcd) span at least 2 availability zones.`,
  enforcementLevel: "mandatory",
  validateStack: validateControlPlaneZones,
};

// ---------------------------------------------------------------------------------------
// 3. Balancers check each apiserver's /readyz over HTTPS.

/** The files of a hakube step's stdin bundle (`<mode> <path> <base64>` per line). */
export function decodeFileBundle(bundle: string): Map<string, string> {
  const files = new Map<string, string>();
  for (const line of bundle.split("\n")) {
    const m = /^([0-7]{3,4}) (\S+) ([A-Za-z0-9+/=]*)$/.exec(line.trim());
    if (m) {
      files.set(m[2], Buffer.from(m[3], "base64").toString("utf8"));
    }
  }
  return files;
}

/**
 * What is wrong with the health checks of an HAProxy configuration: every backend a
 * frontend sends to (and every listen section) with servers must check them with
 * `option httpchk` on `/readyz`, over
 * TLS (`check` and `check-ssl` on each server, directly or through `default-server`).
 */
export function haproxyReadyzProblems(config: string): string[] {
  const sections: { header: string; lines: string[] }[] = [];
  for (const raw of config.split("\n")) {
    const line = raw.replace(/#.*$/, "").trimEnd();
    if (line.trim() === "") {
      continue;
    }
    if (/^\S/.test(line)) {
      sections.push({ header: line.trim(), lines: [] });
    } else if (sections.length > 0) {
      sections[sections.length - 1].lines.push(line.trim());
    }
  }
  const problems: string[] = [];
  // The pools that carry traffic: listen sections, and backends a frontend sends to (a
  // backend nothing sends to is only checked, e.g. one a monitor counts).
  const served = new Set(
    sections
      .filter((s) => /^frontend\s/.test(s.header))
      .flatMap((s) => s.lines.map((l) => /^(?:default_backend|use_backend)\s+(\S+)/.exec(l)?.[1]).filter((b): b is string => b !== undefined)),
  );
  const pools = sections.filter((s) => {
    const [kind, name] = s.header.split(/\s+/);
    return (kind === "listen" || (kind === "backend" && served.has(name))) && s.lines.some((l) => /^server\s/.test(l));
  });
  if (pools.length === 0) {
    return ["no backend with servers that a frontend sends to"];
  }
  for (const pool of pools) {
    const name = pool.header;
    const httpchk = pool.lines.find((l) => /^option\s+httpchk\b/.test(l));
    if (!httpchk) {
      problems.push(`${name}: no "option httpchk" (servers are only checked for an open port)`);
    }
    const paths: string[] = [];
    const legacy = httpchk?.split(/\s+/).slice(2) ?? [];
    if (legacy.length > 0) {
      paths.push(legacy.length === 1 ? legacy[0] : legacy[1]); // [<method>] <uri>
    }
    for (const l of pool.lines.filter((x) => /^http-check\s+send\b/.test(x))) {
      const m = /\buri\s+(\S+)/.exec(l);
      if (m) {
        paths.push(m[1]);
      }
    }
    const wrong = paths.filter((p) => !isReadyzPath(p)); // named alone: the others are fine
    if (paths.length === 0 || wrong.length > 0) {
      problems.push(`${name}: health check path is ${paths.length === 0 ? "/ (default)" : wrong.join(", ")}, not ${READYZ}`);
    }
    const defaults = pool.lines.filter((l) => /^default-server\s/.test(l)).flatMap((l) => l.split(/\s+/).slice(1));
    for (const server of pool.lines.filter((l) => /^server\s/.test(l))) {
      const words = [...defaults, ...server.split(/\s+/).slice(3)];
      const serverName = server.split(/\s+/)[1];
      if (!words.includes("check")) {
        problems.push(`${name}: server ${serverName} is not health-checked ("check")`);
      } else if (!words.includes("check-ssl") && !words.includes("ssl")) {
        problems.push(`${name}: server ${serverName} is checked over plain HTTP, not HTTPS ("check-ssl")`);
      }
    }
  }
  return problems;
}

export function validateBalancerHealthCheck(args: ResourceValidationArgs, reportViolation: ReportViolation): void {
  if (args.type === TARGET_GROUP_TYPE) {
    const hc = read(() => {
      const h = args.props.healthCheck as Record<string, unknown> | undefined;
      return { path: h?.path, protocol: h?.protocol, enabled: h?.enabled };
    });
    if (!hc.known) {
      return;
    }
    const { path, protocol, enabled } = hc.value;
    if (enabled === false || path !== READYZ || String(protocol ?? "").toUpperCase() !== "HTTPS") {
      const checks = enabled === false ? "nothing (health check disabled)" : `${String(protocol ?? "(default protocol)")} ${String(path ?? "(default path)")}`;
      reportViolation(
        `target group "${args.name}" checks ${checks}; the apiserver balancer must check HTTPS ${READYZ}, ` +
          `so that a draining or unhealthy apiserver leaves the pool.`,
      );
    }
    return;
  }
  if (args.type === REMOTE_COMMAND_TYPE && parentTypeFromUrn(args.urn) === KEEPALIVED_TYPE) {
    // A balancer step writes haproxy.cfg from its stdin bundle (a secret, which policies
    // see in the clear); its readiness gate has no stdin.
    const stdin = read(() => args.props.stdin as unknown);
    if (!stdin.known || typeof stdin.value !== "string") {
      return;
    }
    const config = decodeFileBundle(stdin.value).get(HAPROXY_CONFIG_PATH);
    if (config === undefined) {
      return;
    }
    const problems = haproxyReadyzProblems(config);
    if (problems.length > 0) {
      reportViolation(`${HAPROXY_CONFIG_PATH} written by "${args.name}": ${problems.join("; ")}.`);
    }
  }
}

export const balancerReadyzHealthCheck: ResourceValidationPolicy = {
  name: "balancer-readyz-health-check",
  description: `API balancers check every apiserver's ${READYZ} over HTTPS (NLB target groups and HAProxy backends).`,
  enforcementLevel: "mandatory",
  validateResource: validateBalancerHealthCheck,
};

// ---------------------------------------------------------------------------------------
// 4. No etcd port open to the world.

const WORLD = /^(0\.0\.0\.0|::)\/0$/;

/** Whether an ingress rule (protocol and port range) reaches etcd's ports. */
export function reachesEtcdPorts(protocol: unknown, fromPort: unknown, toPort: unknown): boolean {
  const p = String(protocol ?? "").toLowerCase();
  if (p === "-1" || p === "all") {
    return true; // every protocol and port; AWS ignores the port range
  }
  if (p !== "tcp" && p !== "6") {
    return false;
  }
  const from = Number(fromPort);
  const to = Number(toPort ?? fromPort);
  if (!Number.isFinite(from) || !Number.isFinite(to)) {
    return true; // unspecified range: assume the worst
  }
  return from <= ETCD_PORTS.to && to >= ETCD_PORTS.from;
}

function worldCidrs(...lists: unknown[]): string[] {
  return lists.flatMap((l) => (Array.isArray(l) ? l : l === undefined || l === null ? [] : [l])).filter((c): c is string => typeof c === "string" && WORLD.test(c.trim()));
}

interface IngressView {
  protocol: unknown;
  fromPort: unknown;
  toPort: unknown;
  cidrs: unknown[];
}

/** The ingress rules of one of the three AWS resource types that open ports. */
function ingressRules(args: ResourceValidationArgs): IngressView[] {
  const p = args.props;
  switch (args.type) {
    case SECURITY_GROUP_TYPE: {
      const ingress = p.ingress as Record<string, unknown>[] | undefined;
      return (Array.isArray(ingress) ? ingress : []).map((r) => ({
        protocol: r.protocol,
        fromPort: r.fromPort,
        toPort: r.toPort,
        cidrs: [r.cidrBlocks, r.ipv6CidrBlocks],
      }));
    }
    case SECURITY_GROUP_INGRESS_RULE_TYPE:
      return [{ protocol: p.ipProtocol, fromPort: p.fromPort, toPort: p.toPort, cidrs: [p.cidrIpv4, p.cidrIpv6] }];
    case SECURITY_GROUP_RULE_TYPE:
      if (p.type !== "ingress") {
        return [];
      }
      return [{ protocol: p.protocol, fromPort: p.fromPort, toPort: p.toPort, cidrs: [p.cidrBlocks, p.ipv6CidrBlocks] }];
    default:
      return [];
  }
}

export function validateNoWorldEtcdPorts(args: ResourceValidationArgs, reportViolation: ReportViolation): void {
  const rules = read(() => ingressRules(args));
  if (!rules.known) {
    return;
  }
  for (const rule of rules.value) {
    const open = read(() => ({ reaches: reachesEtcdPorts(rule.protocol, rule.fromPort, rule.toPort), world: worldCidrs(...rule.cidrs) }));
    if (!open.known) {
      continue;
    }
    if (open.value.reaches && open.value.world.length > 0) {
      reportViolation(
        `${describe(args)} opens ${String(rule.protocol)} ${String(rule.fromPort)}-${String(rule.toPort)} to ${open.value.world.join(", ")}, ` +
          `which includes etcd's ports ${ETCD_PORTS.from}-${ETCD_PORTS.to}; allow them only between etcd members (and from the apiservers).`,
      );
    }
  }
}

export const noWorldOpenEtcdPorts: ResourceValidationPolicy = {
  name: "no-world-open-etcd-ports",
  description: `No security group rule opens etcd's ports ${ETCD_PORTS.from}-${ETCD_PORTS.to} to 0.0.0.0/0 or ::/0.`,
  enforcementLevel: "mandatory",
  validateResource: validateNoWorldEtcdPorts,
};

// ---------------------------------------------------------------------------------------
// 5. Every private key a secret.

/** Scripts of a command that end up in the state and in diffs as plain text. */
const SCRIPT_FIELDS = ["create", "update", "delete"] as const;

/**
 * A tls.PrivateKey must declare its key outputs as `additionalSecretOutputs`, so the engine
 * encrypts them in the state whatever the provider does (the @pulumi/tls SDK adds them;
 * a resource registered another way, or options that drop them, would store the key in
 * the clear). Policies see secret values unwrapped, so this declaration is what can be
 * checked. And no command script may carry a private key: scripts are stored in the
 * state and shown in previews; keys travel on the secret stdin instead.
 */
export function validatePrivateKeysSecret(args: ResourceValidationArgs, reportViolation: ReportViolation): void {
  if (args.type === PRIVATE_KEY_TYPE) {
    const declared = new Set(args.opts?.additionalSecretOutputs ?? []);
    const missing = PRIVATE_KEY_OUTPUTS.filter((o) => !declared.has(o));
    if (missing.length > 0) {
      reportViolation(
        `private key "${args.name}" does not mark ${missing.join(", ")} as secret (additionalSecretOutputs); ` +
          `the key would be stored in the state in plain text. Create it with @pulumi/tls's PrivateKey.`,
      );
    }
    return;
  }
  if (args.type === REMOTE_COMMAND_TYPE || args.type === LOCAL_COMMAND_TYPE) {
    for (const field of SCRIPT_FIELDS) {
      const script = read(() => args.props[field] as unknown);
      if (script.known && typeof script.value === "string" && /PRIVATE KEY/.test(script.value)) {
        reportViolation(
          `the ${field} script of ${describe(args)} contains a private key ("PRIVATE KEY"); scripts are stored in the state ` +
            `and shown in diffs in plain text. Send keys on stdin as a secret (as hakube's host steps do).`,
        );
      }
    }
  }
}

export const privateKeysSecret: ResourceValidationPolicy = {
  name: "private-keys-secret",
  description: "Every private key is a secret: tls.PrivateKey outputs are secret, and no command script holds a private key.",
  enforcementLevel: "mandatory",
  validateResource: validatePrivateKeysSecret,
};

// ---------------------------------------------------------------------------------------
// certificate-renewal-window (advisory): a certificate inside its renewal window.

export const CERTIFICATE_TYPES = ["tls:index/locallySignedCert:LocallySignedCert", "tls:index/selfSignedCert:SelfSignedCert"] as const;

/**
 * Warns for each certificate whose renewal window has begun (its end of validity minus
 * its `earlyRenewalHours` is past): the next `pulumi up` issues it anew and rolls it out
 * host by host; one that has expired is reported as such. Certificates whose end is not
 * known (being issued by this very update) are left alone.
 */
export function validateCertificateRenewal(args: StackValidationArgs, reportViolation: ReportViolation, now = Date.now()): void {
  for (const cert of args.resources.filter((r) => (CERTIFICATE_TYPES as readonly string[]).includes(r.type))) {
    const end = knownOrUndefined(() => cert.props.validityEndTime as string | undefined);
    const early = knownOrUndefined(() => cert.props.earlyRenewalHours as number | undefined) ?? 0;
    if (typeof end !== "string" || Number.isNaN(Date.parse(end))) continue;
    const endMs = Date.parse(end);
    if (endMs <= now) {
      reportViolation(`certificate "${cert.name}" expired at ${end}: run pulumi up to issue it anew.`, cert.urn);
    } else if (endMs - early * 3_600_000 <= now) {
      const days = Math.floor((endMs - now) / 86_400_000);
      reportViolation(
        `certificate "${cert.name}" expires at ${end} (in ${days} days) and is inside its renewal window (${early} hours): ` +
          `the next pulumi up issues it anew and rolls it out one host at a time.`,
        cert.urn,
      );
    }
  }
}

export const certificateRenewalWindow: StackValidationPolicy = {
  name: "certificate-renewal-window",
  description: "Warns when a certificate is inside its renewal window or has expired.",
  enforcementLevel: "advisory",
  validateStack: (args, report) => validateCertificateRenewal(args, report),
};

/** The pack's policies, in the order they are reported. */
export const hakubePolicies = [
  etcdOddMemberCount,
  controlPlaneMultiAz,
  balancerReadyzHealthCheck,
  noWorldOpenEtcdPorts,
  privateKeysSecret,
  certificateRenewalWindow,
];
