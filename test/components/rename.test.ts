// Renaming a component keeps what it made: with `aliases: [{ name: <old name> }]` on the
// component, Pulumi's engine gives each child an alias under the old parent, its name's
// parent prefix replaced by the old name (every hakube child is named after its parent),
// so no etcd member step, key or machine is deleted and made anew. The mocks do not compute
// inherited aliases (the engine does), so `engineAliases` applies the engine's rule.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { decodeBundle, ETCD_DIGEST, hosts, program, Recorded, recorded, valueOf } from "../helpers/mocks";
import { AwsMachines, AwsMachinesArgs, HaControlPlane, HaControlPlaneArgs } from "../../components";

const storage = {
  endpoint: "https://127.0.0.1:9",
  bucket: "b",
  credentials: "instance-profile" as const,
};
const cpArgs = (): HaControlPlaneArgs => ({
  controlPlaneHosts: hosts(3),
  loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
  binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
  backups: { storage },
});
const awsArgs: AwsMachinesArgs = { vpc: { cidrBlock: "10.30.0.0/16" }, adminCidr: "198.51.100.0/24", etcdCount: 3 };

let trees: { old: Recorded[]; renamed: Recorded[] }[] = [];
before(async () => {
  const roots = await program(() => [
    new HaControlPlane("old", cpArgs()),
    new HaControlPlane("new", cpArgs(), { aliases: [{ name: "old" }] }),
    new AwsMachines("oldm", awsArgs),
    new AwsMachines("newm", awsArgs, { aliases: [{ name: "oldm" }] }),
  ]);
  const under = (root: pulumi.Resource) => recorded.filter((r) => {
    for (let x: Recorded | undefined = r; x; x = recorded.find((y) => y.resource === x!.parent)) if (x.resource === root) return true;
    return false;
  });
  trees = [
    { old: under(roots[0]), renamed: under(roots[1]) },
    { old: under(roots[2]), renamed: under(roots[3]) },
  ];
});

/**
 * A resource's URN as the engine writes it: the types of its parents and its own, joined
 * with "$" (the root stack no part of it). The mocks' URNs keep only the direct parent's.
 */
function urnOf(r: Recorded): string {
  const types: string[] = [];
  for (let x: Recorded | undefined = r; x; x = recorded.find((y) => y.resource === x!.parent)) types.unshift(x.type);
  return `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${types.join("$")}::${r.name}`;
}
const parts = (urn: string) => {
  const [prefix, project, type, name] = urn.split("::");
  return { stack: prefix.slice("urn:pulumi:".length), project, type, name };
};

/**
 * The URN each resource of `tree` takes over from the deployed state (`deployed`), by the
 * engine's rule: its own URN, else its explicit aliases (a name alias keeps the type and the
 * current parent), else, when its parent took over an old URN, the same child under that
 * parent, named with the old parent name in place of the new one where its name starts with
 * the parent's name (pulumi/pulumi pkg/resource/deploy step_generator: generateAliases,
 * inheritedChildAlias).
 */
async function engineAliases(tree: Recorded[], deployed: Set<string>): Promise<Map<Recorded, string>> {
  const took = new Map<Recorded, string>();
  for (const r of tree) {
    const urn = urnOf(r);
    const u = parts(urn);
    const candidates = [urn];
    for (const a of r.aliases) {
      const alias = (await valueOf(a)) as string | pulumi.Alias;
      if (typeof alias === "string") candidates.push(alias);
      else candidates.push(`urn:pulumi:${u.stack}::${u.project}::${u.type}::${String(alias.name ?? r.name)}`);
    }
    const parent = tree.find((x) => x.resource === r.parent);
    const parentOld = parent && took.get(parent);
    if (parent && parentOld) {
      const p = parts(parentOld);
      const name = r.name.startsWith(parent.name) ? p.name + r.name.slice(parent.name.length) : r.name;
      candidates.push(`urn:pulumi:${p.stack}::${p.project}::${p.type}$${r.type}::${name}`);
    }
    const found = candidates.find((c) => deployed.has(c));
    if (found) took.set(r, found);
  }
  return took;
}

test("a renamed HaControlPlane or AwsMachines (aliases: [{ name: old }]) takes over every resource of the old name: nothing is deleted, nothing made anew", async () => {
  for (const { old, renamed } of trees) {
    const deployed = new Set(old.map(urnOf));
    const took = await engineAliases(renamed, deployed);
    const missing = renamed.filter((r) => !took.has(r)).map((r) => r.name);
    assert.deepEqual(missing, [], "every resource of the new name finds its old one");
    const claimed = [...took.values()];
    assert.equal(new Set(claimed).size, claimed.length, "no old resource claimed twice");
    assert.equal(claimed.length, deployed.size, "every old resource is claimed (none deleted)");
  }
  const [cp] = trees;
  const took = await engineAliases(cp.renamed, new Set(cp.old.map(urnOf)));
  const byName = (n: string) => took.get(cp.renamed.find((r) => r.name === n)!);
  assert.equal(byName("new-etcd-cp-1"), "urn:pulumi:test::hakube::hakube:index:HaControlPlane$hakube:index:EtcdCluster$command:remote:Command::old-etcd-cp-1");
  assert.equal(byName("new-backups-key"), "urn:pulumi:test::hakube::hakube:index:HaControlPlane$tls:index/privateKey:PrivateKey::old-backups-key");
  assert.equal(byName("new-pki-cluster-ca-key"), "urn:pulumi:test::hakube::hakube:index:HaControlPlane$hakube:index:ClusterPki$tls:index/privateKey:PrivateKey::old-pki-cluster-ca-key");
});


/**
 * A resource's inputs, resolved and comparable across the two names: the mocks' made-up
 * keys, certificates and ids carry their resource's name (an aliased resource keeps its old
 * outputs, so they are read as the old one's, in kubeconfigs too), a step's files are decoded (the script
 * headers' file hashes go: the files are compared), and a gate's triggers (hashes of the
 * steps it guards) go. Properties the resource ignores changes of keep the old value.
 */
async function comparable(r: Recorded, name: string): Promise<Record<string, unknown>> {
  // (kubeconfigs carry them base64-encoded)
  const unmock = (t: string) =>
    t.replace(/(-data: )([A-Za-z0-9+/=]+)/g, (_, field, data) => field + Buffer.from(data, "base64").toString("utf8"))
      .replace(new RegExp(`mock-?${name}`, "g"), "mock-NAME")
      .replace(new RegExp(`\\b${name}(-[a-z0-9-]+-(?:id|key))\\b`, "g"), "NAME$1");
  const deep = (v: unknown): unknown =>
    typeof v === "string" ? unmock(v) : Array.isArray(v) ? v.map(deep) : v && typeof v === "object" ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deep(x)])) : v;
  const props = (await valueOf(pulumi.output(r.props))) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(props)) {
    if (k === "stdin" && typeof v === "string") {
      out[k] = Object.fromEntries([...decodeBundle(v)].map(([path, f]) => [path, unmock(f.content)]));
    } else if ((k === "create" || k === "update") && typeof v === "string") {
      out[k] = unmock(v.replace(/^#   \S+ sha256:[0-9a-f]{16}$/gm, ""));
    } else if (k === "triggers" && r.name.endsWith("-ready")) {
      continue;
    } else {
      out[k] = deep(v);
    }
  }
  return out;
}

/** What a rename (with aliases) changes in each resource's inputs, the ignored ones left out: resource name -> property -> [old, new]. */
async function renameChanges(old: Recorded[], renamed: Recorded[], from: string, to: string): Promise<Map<string, Record<string, [unknown, unknown]>>> {
  const took = await engineAliases(renamed, new Set(old.map(urnOf)));
  const changes = new Map<string, Record<string, [unknown, unknown]>>();
  for (const r of renamed) {
    const before = old.find((x) => urnOf(x) === took.get(r))!;
    const [a, b] = [await comparable(before, from), await comparable(r, to)];
    const diff: Record<string, [unknown, unknown]> = {};
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (r.ignoreChanges.includes(k)) continue;
      if (JSON.stringify(a[k]) !== JSON.stringify(b[k])) diff[k] = [a[k], b[k]];
    }
    if (Object.keys(diff).length > 0) changes.set(r.name, diff);
  }
  return changes;
}

test("a rename (with aliases) changes no input that replaces a resource: the backup certificate keeps its subject (a new one would make every earlier backup unrestorable), the kubernetes provider its cluster identifier (a new one replaces every object made through it)", async () => {
  const [cp, machines] = trees;
  const changes = await renameChanges(cp.old, cp.renamed, "old", "new");
  assert.equal(changes.get("new-backups-cert"), undefined, `the backup certificate: ${JSON.stringify(changes.get("new-backups-cert"))}`);
  assert.equal(changes.get("new-k8s"), undefined, `the kubernetes provider: ${JSON.stringify(changes.get("new-k8s"))}`);
  // Only the etcd members' unit changes: its cluster token is the component's name, which
  // etcd reads only to start a new cluster (one rolling restart, member by member).
  for (const [name, diff] of changes) {
    assert.match(name, /^new-etcd-cp-\d$/, `${name} changes: ${JSON.stringify(diff).slice(0, 400)}`);
    assert.deepEqual(Object.keys(diff).sort(), ["stdin"], name);
    const [a, b] = diff.stdin as [Record<string, string>, Record<string, string>];
    const files = Object.keys(a).filter((f) => a[f] !== b[f]);
    assert.deepEqual(files, ["/etc/systemd/system/etcd.service"], name);
    assert.equal(b[files[0]], a[files[0]].replace("--initial-cluster-token=old-etcd", "--initial-cluster-token=new-etcd"), name);
  }
  // A renamed AwsMachines changes only tags (the Name tag follows the name), which AWS
  // updates in place: no instance, volume, network or key is made anew.
  for (const [name, diff] of await renameChanges(machines.old, machines.renamed, "oldm", "newm")) {
    assert.deepEqual(Object.keys(diff).filter((k) => k !== "tags" && k !== "volumeTags"), [], `${name}: ${JSON.stringify(diff).slice(0, 400)}`);
  }
});
