// Resize refusals at preview (pure): a change of the etcd member set is refused while a
// member that stays is unhealthy, when a member to remove cannot remove itself, or while a
// learner is pending; the message names the argument and the value.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bootstrapMembers, etcdMembershipProvider, membershipChangeProblem, memberLookScript, parseMemberLook } from "../../components/etcd/membership";

const ARG = "controlPlaneHosts (stacked etcd)";
const ok = (name: string) => ({ name, healthy: true, learners: [] });
const three = ["cp-1", "cp-2", "cp-3"];
const five = [...three, "cp-4", "cp-5"];

test("no change of the set: nothing to refuse (and nothing was looked at)", () => {
  assert.equal(membershipChangeProblem(ARG, three, [...three].reverse(), []), undefined);
});

test("a healthy cluster may grow 3 -> 5 and shrink 5 -> 3", () => {
  assert.equal(membershipChangeProblem(ARG, three, five, three.map(ok)), undefined);
  assert.equal(membershipChangeProblem(ARG, five, three, five.map(ok)), undefined);
});

test("refused: a change that keeps no quorum of the deployed members (every host renamed, stacked to external etcd, 3 -> another 3, 5 keeping 2), the healthiest cluster included; the message says how to migrate", () => {
  const all = ["cp-1", "cp-2", "cp-3", "cp-4", "cp-5", "etcd-1", "etcd-2", "etcd-3"].map(ok);
  const cases: [string[], string[], RegExp][] = [
    [three, ["etcd-1", "etcd-2", "etcd-3"], /got "3 host\(s\)" \(adding etcd-1, etcd-2, etcd-3, removing cp-1, cp-2, cp-3\); expected a change that keeps a quorum of the deployed etcd members \(at least 2 of cp-1, cp-2, cp-3\); it keeps 0/],
    [three, ["cp-1", "x-2", "x-3"], /keeps 1: cp-1/],
    [five, ["cp-1", "cp-2", "n-3"], /at least 3 of cp-1, cp-2, cp-3, cp-4, cp-5\); it keeps 2: cp-1, cp-2/],
  ];
  for (const [deployed, desired, message] of cases) {
    const p = membershipChangeProblem(ARG, deployed, desired, all);
    assert.match(p ?? "", new RegExp(`^invalid argument controlPlaneHosts \\(stacked etcd\\): `));
    assert.match(p ?? "", message);
    assert.match(p ?? "", /new members would start an empty cluster and the removed ones' data would be deleted.*one member at a time/);
  }
  // Keeping a quorum stays allowed: one host renamed out of three (2 stay), 5 -> 3.
  assert.equal(membershipChangeProblem(ARG, three, ["cp-1", "cp-2", "cp-9"], all), undefined);
});

test("refused: a member that stays is unhealthy or does not answer", () => {
  const p = membershipChangeProblem(ARG, three, five, [ok("cp-1"), { name: "cp-2", healthy: false, learners: [] }, { name: "cp-3", unreachable: "over SSH: connection refused" }]);
  assert.equal(
    p,
    `invalid argument ${ARG}: got "5 host(s)" (adding cp-4, cp-5); expected a resize while every etcd member that stays is healthy: ` +
      "cp-2 is not (its etcd endpoint health fails); cp-3 is not (over SSH: connection refused). Repair it first (pulumi up --refresh), then resize",
  );
});

test("refused: a member to remove that cannot remove itself", () => {
  const p = membershipChangeProblem(ARG, five, three, [...three.map(ok), ok("cp-4"), { name: "cp-5", unreachable: "over SSH: timed out" }]);
  assert.match(p ?? "", /^invalid argument controlPlaneHosts \(stacked etcd\): got "3 host\(s\)" \(removing cp-4, cp-5\); expected members to remove that are healthy and answer over SSH .*: cp-5 does not/);
});

test("refused: a learner is pending", () => {
  const p = membershipChangeProblem("etcdHosts", three, five, [ok("cp-1"), ok("cp-2"), { name: "cp-3", healthy: true, learners: ["cp-4"] }]);
  assert.match(p ?? "", /^invalid argument etcdHosts: .*expected no pending learner .*: cp-4 is a learner/);
});

test("the member look: health and learners from a member's own host", () => {
  assert.deepEqual(parseMemberLook("cp-1", "health ok\nlearner cp-4\n"), { name: "cp-1", healthy: true, learners: ["cp-4"] });
  assert.equal(parseMemberLook("cp-1", "health failing\n").healthy, false);
  assert.ok(parseMemberLook("cp-1", "").unreachable);
  assert.match(memberLookScript(2379), /ETCDCTL_ENDPOINTS=https:\/\/127\.0\.0\.1:2379 etcdctl endpoint health/);
});

test("check: the first deployment and an unchanged set send nothing and pass", async () => {
  const news = { argument: ARG, clientPort: 2379, names: three, connections: {} };
  assert.deepEqual((await etcdMembershipProvider.check!(undefined as any, news)).failures, []);
  assert.deepEqual((await etcdMembershipProvider.check!(news, { ...news, names: [...three].reverse() })).failures, []);
});

test("check: a resize on a stack whose bridge is missing is refused without sending a packet", async () => {
  const olds = {
    argument: ARG,
    clientPort: 2379,
    names: three,
    connections: Object.fromEntries(three.map((n, i) => [n, { host: `10.213.251.${11 + i}`, privateKey: "x" }])),
    network: { bridge: "hkabsent1", subnet: "10.213.251.0/24" },
  };
  const r = await etcdMembershipProvider.check!(olds, { ...olds, names: five });
  assert.equal(r.failures?.length, 1);
  assert.match(r.failures![0].reason, /every etcd member that stays is healthy: cp-1 is not \(stack this: bridge hkabsent1 with 10\.213\.251\.0\/24 is missing/);
});

test("the members a new cluster may start with: all on the first deployment, then kept less the removed ones; none in a state from before the record", async () => {
  assert.deepEqual(bootstrapMembers(undefined, three), three);
  assert.deepEqual(bootstrapMembers({}, three), three, "a new resource's olds are empty");
  assert.deepEqual(bootstrapMembers({ names: three, bootstrap: three }, five), three, "members added later never bootstrap");
  assert.deepEqual(bootstrapMembers({ names: five, bootstrap: three }, ["cp-1", "cp-2", "cp-4"]), ["cp-1", "cp-2"], "a removed member, added again later, joins");
  assert.deepEqual(bootstrapMembers({ names: three }, three), [], "deployed before the record: the cluster exists");
  // check carries it as an input, so the state keeps it and a preview sees it.
  const first = await etcdMembershipProvider.check!({} as any, { argument: ARG, clientPort: 2379, names: three, connections: {} });
  assert.deepEqual(first.inputs.bootstrap, three);
  const later = await etcdMembershipProvider.check!(first.inputs, { argument: ARG, clientPort: 2379, names: three, connections: {} });
  assert.deepEqual(later.inputs.bootstrap, three);
  const legacy = await etcdMembershipProvider.check!({ argument: ARG, clientPort: 2379, names: three, connections: {} }, { argument: ARG, clientPort: 2379, names: three, connections: {} });
  assert.deepEqual(legacy.inputs.bootstrap, []);
});
