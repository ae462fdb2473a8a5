// Parsing shared by the status summary and the fault scenarios (pure).
import { ETCDCTL_ENV } from "../components/etcd/render";
import { LocalHost } from "./localStack";

/** Loads the etcdctl environment EtcdCluster writes on every member (endpoints, client certificate). */
export const LOAD_ETCDCTL_ENV = `set -a; . ${ETCDCTL_ENV}; set +a`;

/** Addresses of the ready endpoints in an EndpointSlice list (the `kubernetes` Service's apiservers). */
export function readyAddresses(endpointSliceListJson: string): string[] {
  const slices = JSON.parse(endpointSliceListJson).items as { endpoints?: { addresses: string[]; conditions?: { ready?: boolean } }[] }[];
  return slices
    .flatMap((s) => s.endpoints ?? [])
    .filter((e) => e.conditions?.ready !== false)
    .flatMap((e) => e.addresses)
    .sort();
}

/** One entry of `etcdctl endpoint health -w json`. */
export interface EtcdHealth {
  endpoint: string;
  health: boolean;
  error?: string;
}

/** One entry of `etcdctl endpoint status -w json`. */
export interface EtcdEndpointStatus {
  Endpoint: string;
  Status: { header: { member_id: number | string }; leader: number | string };
}

export function isEtcdLeader(s: EtcdEndpointStatus): boolean {
  return String(s.Status.header.member_id) === String(s.Status.leader);
}

/** The machine an endpoint URL (`https://<address>:<port>`) points at. */
export function hostOfEndpoint(hosts: readonly LocalHost[], endpoint: string): LocalHost | undefined {
  return hosts.find((h) => endpoint.includes(`//${h.address}:`));
}

/** One resource step of a `pulumi up`, as its progress display ends it ("created (12s)"). */
export interface StepTime {
  readonly step: string;
  readonly op: string;
  readonly seconds: number;
}

/**
 * The slowest resource steps of a `pulumi up`'s output (the non-interactive display ends
 * each with its operation and whole seconds), slowest first: where an up's time goes.
 */
export function slowestSteps(upStdout: string, max = 8): StepTime[] {
  const steps: StepTime[] = [];
  const re = /^\s*\S{0,3}\s+\S+ (\S+) (created replacement|deleted original|created|updated|deleted|replaced) \((\d+)s\)/gm;
  for (const m of upStdout.matchAll(re)) steps.push({ step: m[1], op: m[2], seconds: Number(m[3]) });
  return steps.sort((a, b) => b.seconds - a.seconds).slice(0, max);
}
