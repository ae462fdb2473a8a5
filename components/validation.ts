// Early validation: every check runs at preview on values known then, and fails with
// a ResourceError that names the argument, the value received and what is expected.
import * as pulumi from "@pulumi/pulumi";
import { Host } from "./types";
import { Cidr, cidrContains, cidrsOverlap, isIpv4, parseCidr, parseIpv4 } from "./net";
import { parseVersion, Version } from "./version";

export function invalid(
  parent: pulumi.Resource | undefined,
  argument: string,
  value: unknown,
  expected: string,
): never {
  const shown = typeof value === "string" ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  // hideStack: Pulumi prints the message once, attached to the resource, without a trace.
  throw new pulumi.ResourceError(`invalid argument ${argument}: got ${shown}; expected ${expected}`, parent, true);
}

/** The value of an input when it is a plain value at preview, else undefined. */
export function knownValue<T>(input: pulumi.Input<T> | undefined): T | undefined {
  if (input === undefined || pulumi.Output.isInstance(input) || input instanceof Promise) {
    return undefined;
  }
  return input as T;
}

export function requireHosts(
  parent: pulumi.Resource | undefined,
  argument: string,
  hosts: readonly Host[] | undefined,
): void {
  if (!hosts || hosts.length === 0) {
    invalid(parent, argument, hosts ?? null, "a non-empty list of hosts");
  }
  const names = new Set<string>();
  const addresses = new Set<string>();
  hosts.forEach((host, i) => {
    if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(host.name ?? "")) {
      invalid(parent, `${argument}[${i}].name`, host.name, "a lowercase DNS label (a-z, 0-9, '-')");
    }
    if (names.has(host.name)) {
      invalid(parent, `${argument}[${i}].name`, host.name, "host names that are unique");
    }
    names.add(host.name);
    const address = knownValue(host.address);
    if (address !== undefined) {
      if (!isIpv4(address)) {
        invalid(parent, `${argument}[${i}].address`, address, "an IPv4 address");
      }
      if (addresses.has(address)) {
        invalid(parent, `${argument}[${i}].address`, address, "host addresses that are unique");
      }
      addresses.add(address);
    }
  });
}

/** Hosts listed twice across lists that may overlap (stacked etcd) must be the same host. */
export function requireConsistentHosts(
  parent: pulumi.Resource | undefined,
  argument: string,
  lists: readonly (readonly Host[])[],
): void {
  const byName = new Map<string, unknown>();
  const byAddress = new Map<string, string>();
  for (const host of lists.flat()) {
    const address = knownValue(host.address);
    const seen = byName.get(host.name);
    if (seen !== undefined && address !== undefined && seen !== address) {
      invalid(parent, argument, host.name, `one address per host name (seen ${seen} and ${address})`);
    }
    if (address !== undefined) {
      byName.set(host.name, address);
      const owner = byAddress.get(address);
      if (owner !== undefined && owner !== host.name) {
        invalid(parent, argument, address, `one host per address (used by ${owner} and ${host.name})`);
      }
      byAddress.set(address, host.name);
    }
  }
}

export function requireVersion(parent: pulumi.Resource | undefined, argument: string, text: string, minimum?: Version): Version {
  const version = parseVersion(text ?? "");
  if (!version) {
    invalid(parent, argument, text, 'a release version such as "v1.36.3"');
  }
  if (minimum && (version.major !== minimum.major || version.minor < minimum.minor)) {
    invalid(parent, argument, text, `a version ${minimum.major}.x at or above ${minimum.text}`);
  }
  return version;
}

export function requireCidr(parent: pulumi.Resource | undefined, argument: string, text: string): Cidr {
  const cidr = parseCidr(text ?? "");
  if (!cidr) {
    invalid(parent, argument, text, 'an IPv4 network in CIDR notation with no host bits set, such as "10.96.0.0/12"');
  }
  return cidr;
}

/** The service range must not overlap the pod range nor hold any host address. */
export function requireDisjointRanges(
  parent: pulumi.Resource | undefined,
  service: { argument: string; cidr: Cidr },
  pod: { argument: string; cidr: Cidr } | undefined,
  hosts: readonly Host[],
): void {
  if (pod && cidrsOverlap(service.cidr, pod.cidr)) {
    invalid(parent, service.argument, service.cidr.text, `a range that does not overlap ${pod.argument} (${pod.cidr.text})`);
  }
  for (const host of hosts) {
    const address = knownValue(host.address);
    const value = address === undefined ? undefined : parseIpv4(address);
    if (value !== undefined) {
      if (cidrContains(service.cidr, value)) {
        invalid(parent, service.argument, service.cidr.text, `a range that does not hold host ${host.name}'s address ${address}`);
      }
      if (pod && cidrContains(pod.cidr, value)) {
        invalid(parent, pod.argument, pod.cidr.text, `a range that does not hold host ${host.name}'s address ${address}`);
      }
    }
  }
}

export function requireInteger(
  parent: pulumi.Resource | undefined,
  argument: string,
  value: number,
  min: number,
  max: number,
): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    invalid(parent, argument, value, `an integer from ${min} to ${max}`);
  }
  return value;
}

export function requireNumber(
  parent: pulumi.Resource | undefined,
  argument: string,
  value: number,
  min: number,
  max: number,
): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    invalid(parent, argument, value, `a number from ${min} to ${max}`);
  }
  return value;
}

export interface LeaderElectionTimings {
  /** @default 15 */
  readonly leaseDurationSeconds?: number;
  /** @default 10 */
  readonly renewDeadlineSeconds?: number;
  /** @default 2 */
  readonly retryPeriodSeconds?: number;
}

export const defaultLeaderElection = { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 } as const;

export function resolveLeaderElection(
  parent: pulumi.Resource | undefined,
  argument: string,
  timings: LeaderElectionTimings | undefined,
): Required<LeaderElectionTimings> {
  const t = { ...defaultLeaderElection, ...(timings ?? {}) };
  requireNumber(parent, `${argument}.leaseDurationSeconds`, t.leaseDurationSeconds, 1, 3600);
  requireNumber(parent, `${argument}.renewDeadlineSeconds`, t.renewDeadlineSeconds, 1, 3600);
  requireNumber(parent, `${argument}.retryPeriodSeconds`, t.retryPeriodSeconds, 0.1, 3600);
  if (t.renewDeadlineSeconds >= t.leaseDurationSeconds) {
    invalid(
      parent,
      `${argument}.renewDeadlineSeconds`,
      t.renewDeadlineSeconds,
      `less than leaseDurationSeconds (${t.leaseDurationSeconds})`,
    );
  }
  if (t.retryPeriodSeconds >= t.renewDeadlineSeconds) {
    invalid(
      parent,
      `${argument}.retryPeriodSeconds`,
      t.retryPeriodSeconds,
      `less than renewDeadlineSeconds (${t.renewDeadlineSeconds})`,
    );
  }
  return t;
}

export function requireEtcdMemberCount(parent: pulumi.Resource | undefined, argument: string, count: number): void {
  if (count < 3 || count > 7 || count % 2 === 0) {
    invalid(
      parent,
      argument,
      `${count} host(s)`,
      "an odd number of etcd members from 3 to 7 (3 or 5 recommended): an even count adds no fault tolerance and 1 has none",
    );
  }
}
