// The balancer host set a deployment has, kept in the state, so that a host leaving the set
// stops announcing the VIP before the hosts that stay drop it from their VRRP peers.
//
// Why: Pulumi runs every update before any delete. Shrinking the set (a control-plane
// resize 5 -> 3 with stacked balancers) reloads keepalived on the staying hosts with fewer
// `unicast_peer`s first; the leaving hosts, still running their old configuration, stop
// hearing any advert and, after about three intervals, one of them takes the VIP as well:
// two masters, the VIP's ARP entry flapping between them, and every connection that lands
// on the host without its socket reset, until the leaving host's step is deleted at the
// end of the run (measured: 35 s of resets and a black-holed client, run
// 20261207T2214Z-0063fdc, resize-5-to-3). This record's update runs in the update phase,
// before the staying balancers' steps (they depend on it): it stops keepalived on each
// leaving host (a master hands the VIP over at once with a priority-0 advert), so the
// staying hosts' reload changes nothing for the VIP.
import * as pulumi from "@pulumi/pulumi";
import { HostConnection } from "../types";
import { ObservedNetwork, runOverSsh, SshTarget, sshTarget, stackNetworkProblem } from "../observe/ssh";

interface PeersInputs {
  /** Balancer host names, in order. */
  readonly names: readonly string[];
  /** SSH connection per host name (secret). */
  readonly connections: Readonly<Record<string, SshTarget>>;
  readonly network?: ObservedNetwork;
}

/** Run on a leaving balancer host: keepalived stopped (and not started at boot); idempotent. */
export const RETIRE_VRRP_SCRIPT = `set -u
if systemctl is-active --quiet keepalived.service; then
  systemctl disable --now keepalived.service >/dev/null 2>&1 || systemctl stop keepalived.service
  echo "hakube: keepalived stopped (this host leaves the balancers)"
else
  echo "hakube: keepalived not running"
fi`;

/** The deployed hosts that are not in the desired set, in deployed order. Pure. */
export function leavingPeers(deployed: readonly string[] | undefined, desired: readonly string[]): string[] {
  const stay = new Set(desired);
  return (deployed ?? []).filter((n) => !stay.has(n));
}

/**
 * Stops keepalived on each leaving host, with the connections the state holds. A host that
 * cannot be reached is skipped (a lost machine announces nothing); a host that answers but
 * fails the script fails the update, so the staying hosts are not reloaded into a split brain.
 */
export async function retireLeavingPeers(olds: PeersInputs | undefined, news: PeersInputs): Promise<Record<string, string>> {
  const result: Record<string, string> = {};
  for (const name of leavingPeers(olds?.names, news.names)) {
    const connection = olds?.connections?.[name];
    if (!connection || typeof connection.host !== "string") {
      result[name] = "no connection in the state: skipped";
      continue;
    }
    const blocked = stackNetworkProblem(connection.host, olds?.network ?? news.network);
    if (blocked) throw new Error(`hakube: the leaving balancer host ${name} must stop keepalived first, but ${blocked}`);
    const r = await runOverSsh(connection, RETIRE_VRRP_SCRIPT, 30_000);
    if (r.code === 0) {
      result[name] = r.stdout.trim().split("\n").pop() ?? "";
    } else if (r.code === -1) {
      // ssh's own failure (no route, refused, timed out, not the pinned key): not a machine of ours now.
      result[name] = `unreachable, skipped: ${(r.stderr.trim().split("\n").pop() ?? "").slice(0, 160)}`;
    } else {
      throw new Error(
        `hakube: the leaving balancer host ${name} could not stop keepalived (exit ${r.code}: ${r.stderr.trim().slice(0, 300)}); ` +
          "the staying balancers are not reloaded (two VIP holders otherwise). Repair it, then run pulumi up again",
      );
    }
  }
  return result;
}

const sorted = (ns: readonly string[] | undefined) => JSON.stringify([...(ns ?? [])].sort());

/** Serialized into the state by Pulumi. */
export const balancerPeersProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: PeersInputs, news: PeersInputs) {
    const changes = sorted(olds.names) !== sorted(news.names) || JSON.stringify(olds.connections) !== JSON.stringify(news.connections);
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: PeersInputs) {
    return { id: "balancer-peers", outs: { ...inputs, retired: {} } };
  },
  async update(_id: string, olds: PeersInputs, news: PeersInputs) {
    const retired = await retireLeavingPeers(olds, news);
    return { outs: { ...news, retired } };
  },
};

/**
 * The deployed balancer host set of a {@link KeepalivedLoadBalancer} (see the module
 * comment); every balancer step depends on it.
 */
export class BalancerPeers extends pulumi.dynamic.Resource {
  // `declare`: no class field, which (ES2022) would overwrite the output the base class set.
  declare public readonly names: pulumi.Output<string[]>;
  /** Per leaving host, what the last update did there. */
  declare public readonly retired: pulumi.Output<Record<string, string>>;

  constructor(
    name: string,
    args: { readonly hosts: readonly { readonly name: string; readonly connection: pulumi.Input<HostConnection> }[]; readonly network?: ObservedNetwork },
    opts?: pulumi.CustomResourceOptions,
  ) {
    const connections = pulumi.secret(
      pulumi
        .all(args.hosts.map((h) => pulumi.output(h.connection).apply((c: pulumi.Unwrap<HostConnection>): [string, SshTarget] => [h.name, sshTarget(c)])))
        .apply((pairs) => Object.fromEntries(pairs)),
    );
    super(
      balancerPeersProvider,
      name,
      { names: args.hosts.map((h) => h.name), connections, network: args.network, retired: undefined },
      { ...opts, additionalSecretOutputs: ["connections"] },
    );
  }
}
