// The etcd member set a deployment has, kept in the state, so that a preview can refuse a
// resize that would risk quorum: when the set changes, the provider's Check looks at the
// deployed members over SSH (and only then: a plain preview sends nothing) and refuses a
// change while a member that stays is unhealthy, a removal of a member that cannot remove
// itself (it does not answer), or any change while a learner is pending. The refusal
// stops the preview (and `up`) before any step runs.
import * as pulumi from "@pulumi/pulumi";
import { HostConnection } from "../types";
import { ObservedNetwork, runWhereRoutable, SshTarget, sshTarget } from "../observe/ssh";
import { quote } from "../remote/shell";

interface MembershipInputs {
  /** The argument a refusal names (e.g. "controlPlaneHosts (stacked etcd)"). */
  readonly argument: string;
  readonly clientPort: number;
  /** Member names, in order (known at preview even for machines not made yet). */
  readonly names: readonly string[];
  /** SSH connection per member name (secret; may be unknown at preview for new machines). */
  readonly connections: Readonly<Record<string, SshTarget>>;
  readonly network?: ObservedNetwork;
  /**
   * The members a brand-new cluster is first deployed with (the only ones whose step may
   * start a new cluster, see etcdCreateScript). Set by check, not by the caller: the names of
   * the first deployment, then kept (less any member removed since) for the life of the
   * state; empty for a cluster deployed before it was recorded.
   */
  readonly bootstrap?: readonly string[];
}

/**
 * The members a new cluster may be bootstrapped with, from the deployed inputs: every
 * member on the first deployment (nothing deployed), else the deployed record less the
 * members no longer in the set (a member removed and added again joins the cluster that
 * exists). A state from before the record: none. Pure.
 */
export function bootstrapMembers(olds: { readonly names?: readonly string[]; readonly bootstrap?: readonly string[] } | undefined, desired: readonly string[]): string[] {
  if (olds?.names === undefined) return [...desired];
  return (olds.bootstrap ?? []).filter((n) => desired.includes(n));
}

/** What a deployed member says about itself (from its own host). */
export interface MemberLook {
  readonly name: string;
  /** Why it could not be looked at (unreachable), or undefined. */
  readonly unreachable?: string;
  /** Its local `endpoint health`. */
  readonly healthy?: boolean;
  /** Names (or peer URLs, if unstarted) of learners in its `member list`. */
  readonly learners?: readonly string[];
}

/** The script run on a deployed member: its own health, and the learners it knows of. */
export function memberLookScript(clientPort: number): string {
  return `set -u
[ -f /etc/etcd/etcdctl.env ] || { echo "health no etcd here"; exit 0; }
set -a; . /etc/etcd/etcdctl.env; set +a
if ETCDCTL_ENDPOINTS=${quote(`https://127.0.0.1:${clientPort}`)} etcdctl endpoint health >/dev/null 2>&1; then echo "health ok"; else echo "health failing"; fi
ETCDCTL_ENDPOINTS=${quote(`https://127.0.0.1:${clientPort}`)} etcdctl member list -w simple 2>/dev/null | tr -d ' ' | awk -F, '$6 == "true" { print "learner " ($3 != "" ? $3 : $4) }'
exit 0`;
}

export function parseMemberLook(name: string, stdout: string): MemberLook {
  const health = /^health (.*)$/m.exec(stdout)?.[1];
  return {
    name,
    healthy: health === "ok",
    learners: [...stdout.matchAll(/^learner (\S+)$/gm)].map((m) => m[1]),
    ...(health === undefined ? { unreachable: "no answer from its etcd check" } : {}),
  };
}

/**
 * Why changing the member set from `deployed` to `desired` is unsafe now, given what the
 * deployed members say; undefined when it is safe (or nothing changes). Pure.
 */
export function membershipChangeProblem(
  argument: string,
  deployed: readonly string[],
  desired: readonly string[],
  looks: readonly MemberLook[],
): string | undefined {
  const adding = desired.filter((n) => !deployed.includes(n));
  const removing = deployed.filter((n) => !desired.includes(n));
  if (adding.length === 0 && removing.length === 0) return undefined;
  const change = [adding.length ? `adding ${adding.join(", ")}` : "", removing.length ? `removing ${removing.join(", ")}` : ""].filter(Boolean).join(", ");
  const got = `got "${desired.length} host(s)" (${change})`;
  const byName = new Map(looks.map((l) => [l.name, l]));
  const staying = deployed.filter((n) => desired.includes(n));
  // Members join the running cluster through the ones that stay: without a quorum of them,
  // the new members would find none to join and start an empty cluster of their own, and
  // the removed members' deletes would take the data with them. Refused, however healthy.
  const quorum = Math.floor(deployed.length / 2) + 1;
  if (staying.length < quorum) {
    return (
      `invalid argument ${argument}: ${got}; expected a change that keeps a quorum of the deployed etcd members (at least ${quorum} of ${deployed.join(", ")}); ` +
      `it keeps ${staying.length}${staying.length ? `: ${staying.join(", ")}` : ""}. Applied, new members would start an empty cluster and the removed ones' data would be deleted. ` +
      `Migrate one member at a time instead: each pulumi up adds or renames hosts so that most deployed members stay (e.g. 3 -> 5, then 5 -> 3 on the new names), ` +
      `or take a backup and restore it into the new cluster (README, Backups and restore)`
    );
  }
  const unhealthy = staying
    .map((n) => byName.get(n) ?? { name: n, unreachable: "not looked at" })
    .filter((l) => l.unreachable !== undefined || !l.healthy)
    .map((l) => `${l.name} is not (${l.unreachable ?? "its etcd endpoint health fails"})`);
  if (unhealthy.length > 0) {
    return `invalid argument ${argument}: ${got}; expected a resize while every etcd member that stays is healthy: ${unhealthy.join("; ")}. Repair it first (pulumi up --refresh), then resize`;
  }
  const silent = removing.map((n) => byName.get(n)).filter((l) => !l || l.unreachable !== undefined || !l.healthy).map((l) => l?.name);
  if (silent.length > 0) {
    return `invalid argument ${argument}: ${got}; expected members to remove that are healthy and answer over SSH (a member removes itself, handing over leadership first): ${silent.join(", ")} does not. Repair it first (pulumi up --refresh), then remove it`;
  }
  const learners = [...new Set(looks.flatMap((l) => l.learners ?? []))];
  if (learners.length > 0) {
    return `invalid argument ${argument}: ${got}; expected no pending learner (one membership change at a time): ${learners.join(", ")} is a learner. Let the last change finish first (pulumi up --refresh)`;
  }
  return undefined;
}

async function lookAt(name: string, connection: SshTarget | undefined, clientPort: number, network: ObservedNetwork | undefined): Promise<MemberLook> {
  if (!connection || typeof connection.host !== "string") return { name, unreachable: "no connection in the state" };
  const r = await runWhereRoutable(connection, network, memberLookScript(clientPort), 15000);
  return "stdout" in r ? parseMemberLook(name, r.stdout) : { name, unreachable: r.unreachable };
}

const sorted = (ns: readonly string[] | undefined) => JSON.stringify([...(ns ?? [])].sort());

/** Serialized into the state by Pulumi. */
export const etcdMembershipProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: MembershipInputs, news: MembershipInputs) {
    const deployed = olds?.names ?? [];
    const desired = news.names;
    // Kept as an input: check sees the deployed inputs (not the outputs), and a preview's
    // outputs are these inputs, so the steps read the same value at preview and at up.
    const inputs = { ...news, bootstrap: bootstrapMembers(olds, desired) };
    const changed = olds?.names !== undefined && sorted(deployed) !== sorted(desired);
    if (!changed) return { inputs, failures: [] };
    // Only the deployed members are asked, with the connections the state has (a new
    // machine may not exist yet).
    const looks = await Promise.all(deployed.map((n) => lookAt(n, olds.connections?.[n], olds.clientPort ?? news.clientPort, olds.network ?? news.network)));
    const problem = membershipChangeProblem(news.argument, deployed, desired, looks);
    return { inputs, failures: problem ? [{ property: "", reason: problem }] : [] };
  },
  async diff(_id: string, olds: MembershipInputs, news: MembershipInputs) {
    // The connections are kept fresh too (a replaced machine), without showing as a change
    // of the member set: they are compared, but only the names make the preview speak.
    const changes = sorted(olds.names) !== sorted(news.names) || JSON.stringify(olds.connections) !== JSON.stringify(news.connections);
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: MembershipInputs) {
    return { id: "etcd-membership", outs: { ...inputs } };
  },
  async update(_id: string, _olds: MembershipInputs, news: MembershipInputs) {
    return { outs: { ...news } };
  },
};

/**
 * The deployed etcd member set of an {@link EtcdCluster}; registered before its steps, so a
 * refused resize stops before any host is touched.
 */
export class EtcdMembership extends pulumi.dynamic.Resource {
  // `declare`: no class field, which (ES2022) would overwrite the output the base class set.
  declare public readonly names: pulumi.Output<string[]>;
  /**
   * The members the cluster was first deployed with, less those removed since (see
   * {@link bootstrapMembers}); undefined in a state from before it was recorded (none).
   */
  declare public readonly bootstrap: pulumi.Output<string[] | undefined>;

  constructor(
    name: string,
    args: {
      readonly argument: string;
      readonly clientPort: number;
      readonly members: readonly { readonly name: string; readonly connection: pulumi.Input<HostConnection> }[];
      readonly network?: ObservedNetwork;
    },
    opts?: pulumi.CustomResourceOptions,
  ) {
    const connections = pulumi.secret(
      pulumi
        .all(
          args.members.map((m) =>
            pulumi.output(m.connection).apply((c: pulumi.Unwrap<HostConnection>): [string, SshTarget] => [m.name, sshTarget(c)]),
          ),
        )
        .apply((pairs) => Object.fromEntries(pairs)),
    );
    super(
      etcdMembershipProvider,
      name,
      { argument: args.argument, clientPort: args.clientPort, names: args.members.map((m) => m.name), connections, network: args.network, bootstrap: undefined },
      { ...opts, additionalSecretOutputs: ["connections"] },
    );
  }
}
