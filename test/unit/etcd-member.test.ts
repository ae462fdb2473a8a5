// Joining a member with no data to a running cluster, against a stateful fake etcdctl:
// a replaced member is removed only when dead, re-added as a learner, started with
// `existing`, promoted once in sync; unsafe cases are refused and change nothing.
import { after, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { INITIAL_CLUSTER_ENV, memberFunctions } from "../../components/etcd/member";
import { ETCDCTL_ENV, etcdCreateScript, etcdUpdateScript, MEMBER_ENV } from "../../components/etcd/render";
import { command, quote } from "../../components/remote/shell";
import { FakeEtcd, fakeEtcd, FakeMember } from "../helpers/fakeEtcd";

const open: FakeEtcd[] = [];
after(() => open.forEach((f) => f.dispose()));

const url = (n: number, port: number) => `https://10.0.0.1${n}:${port}`;
const member = (n: number, over: Partial<FakeMember> = {}): FakeMember => ({
  id: `a${n}`,
  name: `cp-${n}`,
  peer: url(n, 2380),
  client: url(n, 2379),
  learner: false,
  started: true,
  ...over,
});
const ENDPOINTS = [1, 2, 3].map((n) => url(n, 2379)).join(",");

/** cp-2 is the machine running the script; its data dir is empty. */
function cluster(members: FakeMember[], health: Record<string, boolean>, promoteFailures = 0): { fake: FakeEtcd; run: () => ReturnType<FakeEtcd["run"]>; envFile: string; data: string } {
  const fake = fakeEtcd({ members, health, promoteFailures, self: { name: "cp-2", peer: url(2, 2380), client: url(2, 2379) } });
  open.push(fake);
  const envFile = path.join(fake.dir, "initial-cluster.env");
  const data = path.join(fake.dir, "data");
  const run = () =>
    fake.run(`export ETCDCTL_ENDPOINTS=${ENDPOINTS}
${memberFunctions}
${command(["hakube_etcd_join", "cp-2", url(2, 2380), url(2, 2379), data, 5, 0, envFile])}`);
  return { fake, run, envFile, data };
}
const healthy = { [url(1, 2379)]: true, [url(3, 2379)]: true };

test("a replaced member: the dead entry is removed, a learner added, started with existing, promoted when in sync", () => {
  const c = cluster([member(1), member(2), member(3)], healthy, 2);
  fs.mkdirSync(c.data);
  fs.writeFileSync(path.join(c.data, "stale"), "x");
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.deepEqual(
    s.log.filter((l) => l.startsWith("member")),
    ["member remove a2", `member add cp-2 --learner`, ...["(not in sync)", "(not in sync)"].map((x) => `member promote ${s.members[2].id} ${x}`), `member promote ${s.members[2].id}`],
  );
  assert.ok(s.log.indexOf("systemctl stop etcd.service") < s.log.findIndex((l) => l.startsWith("member remove")), "stopped before asking");
  const joined = s.members.find((m) => m.peer === url(2, 2380))!;
  assert.deepEqual([joined.name, joined.learner, joined.started], ["cp-2", false, true]);
  assert.equal(
    fs.readFileSync(c.envFile, "utf8"),
    `ETCD_INITIAL_CLUSTER=cp-1=${url(1, 2380)},cp-3=${url(3, 2380)},cp-2=${url(2, 2380)}\nETCD_INITIAL_CLUSTER_STATE=existing\n`,
  );
  assert.ok(fs.existsSync(path.join(c.data + ".hakube-old", "stale")), "old data kept aside, not deleted");
  assert.deepEqual(fs.readdirSync(c.data), []);
});

test("a new member (resize): added as a learner without removing anything", () => {
  const c = cluster([member(1), member(3)], healthy);
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.equal(s.log.filter((l) => l.startsWith("member remove")).length, 0);
  assert.ok(s.log.includes("member add cp-2 --learner"));
  assert.equal(s.members.length, 3);
});

test("re-entrant: a learner added by an earlier, interrupted run is started and promoted, not added again", () => {
  const c = cluster([member(1), member(2, { id: "b2", name: "", client: "", learner: true, started: false }), member(3)], healthy);
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.deepEqual(s.log.filter((l) => l.startsWith("member")), ["member promote b2"]);
});

test("a bootstrap member that never started starts as part of the new cluster (no membership change)", () => {
  const c = cluster([member(1), member(2, { started: false }), member(3)], healthy);
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(c.fake.state().log.filter((l) => l.startsWith("member")), []);
  assert.ok(c.fake.state().log.includes("systemctl start --no-block etcd.service"));
  assert.match(r.stdout, /never started: starting it as part of the new cluster/);
});

test("refused: the old member still answers healthy (something else serves it): nothing removed", () => {
  const c = cluster([member(2, { client: "https://10.0.0.99:2379" }), member(1), member(3)], { ...healthy, "https://10.0.0.99:2379": true });
  const r = c.run();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /refusing to remove etcd member cp-2 \(a2\): it answers healthy/);
  assert.equal(c.fake.state().members.length, 3);
});

test("refused: another member is unhealthy too (removing would leave no margin): nothing removed", () => {
  const c = cluster([member(1), member(2), member(3), member(4), member(5)], { [url(1, 2379)]: true, [url(3, 2379)]: false });
  const r = c.run();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /not removing etcd member cp-2 \(a2\): another member is unhealthy/);
  assert.equal(c.fake.state().members.length, 5);
});

test("refused: no quorum among the others (every member lost): a restore is needed", () => {
  const c = cluster([member(1), member(2), member(3)], {});
  const r = c.run();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no other member answers with a quorum: it cannot join \(every member lost\? restore from a backup\)/);
  assert.deepEqual(c.fake.state().log, []);
});

test("refused: another learner is pending (one membership change at a time)", () => {
  const c = cluster([member(1), member(3), member(4, { learner: true, started: false, name: "", client: "" })], healthy);
  const r = c.run();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /another learner is pending/);
  assert.equal(c.fake.state().log.filter((l) => l.startsWith("member")).length, 0);
});

test("the etcd update script on a machine with an empty disk joins instead of restarting", () => {
  const c = cluster([member(1), member(2), member(3)], healthy);
  const dataDir = path.join(c.fake.dir, "etcd");
  fs.writeFileSync(path.join(c.fake.dir, "etcdctl.env"), `ETCDCTL_ENDPOINTS=${ENDPOINTS}\n`);
  fs.writeFileSync(path.join(c.fake.dir, "member.env"), `HAKUBE_ETCD_NAME=cp-2\nHAKUBE_ETCD_PEER_URL=${url(2, 2380)}\nHAKUBE_ETCD_CLIENT_URL=${url(2, 2379)}\n`);
  const script = etcdUpdateScript(5, 2379, { securePort: 6443, settleSeconds: 0 }, dataDir)
    .replaceAll(ETCDCTL_ENV, path.join(c.fake.dir, "etcdctl.env"))
    .replaceAll(MEMBER_ENV, path.join(c.fake.dir, "member.env"))
    .replaceAll(INITIAL_CLUSTER_ENV, c.envFile);
  const r = c.fake.run(script);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /etcd member joined and healthy/);
  const log = c.fake.state().log;
  assert.ok(log.includes("member remove a2") && log.includes("member add cp-2 --learner"), log.join("\n"));
  assert.ok(!log.some((l) => l.startsWith("systemctl restart")), "no restart of a member without data");
  assert.equal(fs.statSync(dataDir).mode & 0o777, 0o700);
  assert.match(fs.readFileSync(c.envFile, "utf8"), /ETCD_INITIAL_CLUSTER_STATE=existing/);
});

test("a replaced machine with a new address: its old entry is found by name and removed", () => {
  const c = cluster([member(1), member(2, { peer: "https://10.0.0.42:2380", client: "https://10.0.0.42:2379" }), member(3)], healthy);
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.ok(s.log.includes("member remove a2"), s.log.join("\n"));
  assert.deepEqual(s.members.map((m) => m.peer).sort(), [url(1, 2380), url(2, 2380), url(3, 2380)].sort());
});

/** cp-2 leaves: its data dir exists; `leader` names the leader's id. */
function leaving(health: Record<string, boolean>, leader = "a1") {
  const fake = fakeEtcd({ members: [member(1), member(2), member(3)], health, promoteFailures: 0, leader, self: { name: "cp-2", peer: url(2, 2380), client: url(2, 2379) } });
  open.push(fake);
  const data = path.join(fake.dir, "data");
  fs.mkdirSync(path.join(data, "member"), { recursive: true });
  const run = () =>
    fake.run(`export ETCDCTL_ENDPOINTS=${ENDPOINTS}
${memberFunctions}
${command(["hakube_etcd_leave", "cp-2", url(2, 2380), url(2, 2379), data, 2, 0])}`);
  return { fake, run, data };
}
const allHealthy = { [url(1, 2379)]: true, [url(2, 2379)]: true, [url(3, 2379)]: true, "https://127.0.0.1:2379": true };

/** The folders beside the data directory that a leave moved it to. */
function movedAside(data: string): string[] {
  return fs.readdirSync(path.dirname(data)).filter((f) => f.startsWith(`${path.basename(data)}.left-`));
}

test("a member leaving: removed through the others before it is stopped, then its data moved aside (never deleted in the same step)", () => {
  const c = leaving(allHealthy);
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.deepEqual(s.members.map((m) => m.name), ["cp-1", "cp-3"]);
  const removed = s.log.indexOf("member remove a2");
  const stopped = s.log.findIndex((l) => l.startsWith("systemctl disable --now etcd.service"));
  assert.ok(removed >= 0 && stopped > removed, `removed, then stopped: ${s.log.join(" | ")}`);
  assert.ok(!s.log.some((l) => l.startsWith("move-leader")), "a follower hands nothing over");
  assert.equal(fs.existsSync(c.data), false, "no data left where a new member would start from it");
  const aside = movedAside(c.data);
  assert.equal(aside.length, 1, `moved aside once: ${aside}`);
  assert.match(aside[0], /^data\.left-\d{8}T\d{6}Z$/);
  assert.ok(fs.existsSync(path.join(path.dirname(c.data), aside[0], "member")), "the member's files kept");
  assert.match(r.stdout, /etcd member cp-2 stopped; its data moved aside to .*data\.left-/);
});

test("a leader leaving hands leadership to another started voter first", () => {
  const c = leaving(allHealthy, "a2");
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  const moved = s.log.findIndex((l) => l.startsWith("move-leader "));
  assert.ok(moved >= 0 && moved < s.log.indexOf("member remove a2"), s.log.join(" | "));
  assert.notEqual(s.leader, "a2");
  assert.ok(["a1", "a3"].includes(s.leader ?? ""));
});

test("a removal that would cost quorum is refused: the member keeps running and keeps its data", () => {
  const c = leaving({ ...allHealthy, [url(3, 2379)]: false });
  const r = c.run();
  assert.equal(r.status, 1);
  assert.match(r.stderr, /etcd refused to remove member cp-2 .*keeps running/);
  const s = c.fake.state();
  assert.equal(s.members.length, 3);
  assert.ok(!s.log.some((l) => l.startsWith("systemctl disable")), "not stopped");
  assert.ok(fs.existsSync(path.join(c.data, "member")), "data kept");
});

test("the last member (no other answers) stops without a membership change", () => {
  const c = leaving({ "https://127.0.0.1:2379": true, [url(2, 2379)]: true });
  const r = c.run();
  assert.equal(r.status, 0, r.stderr);
  const s = c.fake.state();
  assert.equal(s.members.length, 3);
  assert.ok(s.log.some((l) => l.startsWith("systemctl disable --now etcd.service")));
  // The last member holds the only copy: kept.
  assert.equal(movedAside(c.data).length, 1);
});

test("a member add refused while the cluster settles (\"unhealthy cluster\" right after a promotion) is retried, and made once", () => {
  const fake = fakeEtcd({ members: [member(1), member(3)], health: healthy, promoteFailures: 0, addFailures: 2, self: { name: "cp-2", peer: url(2, 2380), client: url(2, 2379) } });
  open.push(fake);
  const r = fake.run(`export ETCDCTL_ENDPOINTS=${ENDPOINTS}
${memberFunctions}
${command(["hakube_etcd_join", "cp-2", url(2, 2380), url(2, 2379), path.join(fake.dir, "data"), 5, 0, path.join(fake.dir, "env")])}`);
  assert.equal(r.status, 0, r.stderr);
  const adds = fake.state().log.filter((l) => l.startsWith("member add"));
  assert.deepEqual(adds, ["member add (unhealthy cluster)", "member add (unhealthy cluster)", "member add cp-2 --learner"]);
});

test("the etcd update restarts a running member only when something it reads changed (not for etcdctl's files: a resize restarts no member)", () => {
  for (const [changed, restarts] of [
    [[ETCDCTL_ENV, MEMBER_ENV, INITIAL_CLUSTER_ENV], false],
    [[ETCDCTL_ENV, "/etc/etcd/pki/server.crt"], true],
    [["/etc/systemd/system/etcd.service"], true],
  ] as const) {
    const c = cluster([member(1), member(2), member(3)], { ...healthy, [url(2, 2379)]: true, "https://127.0.0.1:2379": true });
    const dataDir = path.join(c.fake.dir, "etcd");
    fs.mkdirSync(path.join(dataDir, "member"), { recursive: true });
    fs.writeFileSync(path.join(c.fake.dir, "etcdctl.env"), `ETCDCTL_ENDPOINTS=${ENDPOINTS}\n`);
    fs.writeFileSync(path.join(c.fake.dir, "member.env"), `HAKUBE_ETCD_NAME=cp-2\nHAKUBE_ETCD_PEER_URL=${url(2, 2380)}\nHAKUBE_ETCD_CLIENT_URL=${url(2, 2379)}\n`);
    const fake = (p: string) => p.replace(ETCDCTL_ENV, path.join(c.fake.dir, "etcdctl.env")).replace(MEMBER_ENV, path.join(c.fake.dir, "member.env")).replace(INITIAL_CLUSTER_ENV, c.envFile);
    const script = etcdUpdateScript(5, 2379, undefined, dataDir)
      .replaceAll(ETCDCTL_ENV, path.join(c.fake.dir, "etcdctl.env"))
      .replaceAll(MEMBER_ENV, path.join(c.fake.dir, "member.env"))
      .replaceAll(INITIAL_CLUSTER_ENV, c.envFile);
    const r = c.fake.run(`HAKUBE_CHANGED=${quote(changed.map(fake).join("\n") + "\n")}\n${script}`);
    assert.equal(r.status, 0, r.stderr);
    const restarted = c.fake.state().log.includes("systemctl restart etcd.service");
    assert.equal(restarted, restarts, `changed ${changed.join(", ")}: ${r.stdout}`);
  }
});

test("a learner whose promotion timed out in an earlier run is promoted by the next one (update and create), once in sync; a voter is left alone", () => {
  for (const script of ["update", "create"] as const) {
    for (const learner of [true, false]) {
      const c = cluster([member(1), member(2, { learner }), member(3)], { ...healthy, [url(2, 2379)]: true, "https://127.0.0.1:2379": true }, 1);
      const dataDir = path.join(c.fake.dir, "etcd");
      fs.mkdirSync(path.join(dataDir, "member"), { recursive: true });
      fs.writeFileSync(path.join(c.fake.dir, "etcdctl.env"), `ETCDCTL_ENDPOINTS=${ENDPOINTS}\n`);
      fs.writeFileSync(path.join(c.fake.dir, "member.env"), `HAKUBE_ETCD_NAME=cp-2\nHAKUBE_ETCD_PEER_URL=${url(2, 2380)}\nHAKUBE_ETCD_CLIENT_URL=${url(2, 2379)}\n`);
      const text = (script === "update" ? etcdUpdateScript(5, 2379, undefined, dataDir) : etcdCreateScript(dataDir, 5, 2379))
        .replaceAll(ETCDCTL_ENV, path.join(c.fake.dir, "etcdctl.env"))
        .replaceAll(MEMBER_ENV, path.join(c.fake.dir, "member.env"))
        .replaceAll(INITIAL_CLUSTER_ENV, c.envFile)
        .replace(/^.*useradd.*$/m, ":")
        .replace(/^\s*install -d -m 0700 .*$/m, ":");
      const r = c.fake.run(`HAKUBE_CHANGED=\n${text}`);
      assert.equal(r.status, 0, `${script}: ${r.stderr}`);
      const s = c.fake.state();
      assert.equal(s.members.find((m) => m.name === "cp-2")!.learner, false, `${script}: cp-2 is a voter after the run (${s.log.join(" | ")})`);
      assert.equal(s.log.filter((l) => l === "member promote a2").length, learner ? 1 : 0, `${script}, learner ${learner}: ${s.log.join(" | ")}`);
      if (learner) assert.match(r.stdout, /cp-2 is still a learner .*promoting it/);
    }
  }
});

/**
 * cp-2 runs the member's create (or update) script with no data while no other member
 * answers: `bootstrap` says whether cp-2 is one of the members the state's cluster was
 * first deployed with (a brand-new cluster) or not (the state says the cluster exists).
 */
function noQuorum(script: "create" | "update", bootstrap: boolean) {
  const c = cluster([member(1), member(2, { started: false }), member(3)], {});
  const dataDir = path.join(c.fake.dir, "etcd");
  fs.writeFileSync(path.join(c.fake.dir, "etcdctl.env"), `ETCDCTL_ENDPOINTS=${ENDPOINTS}\n`);
  fs.writeFileSync(path.join(c.fake.dir, "member.env"), `HAKUBE_ETCD_NAME=cp-2\nHAKUBE_ETCD_PEER_URL=${url(2, 2380)}\nHAKUBE_ETCD_CLIENT_URL=${url(2, 2379)}\n`);
  fs.writeFileSync(c.envFile, "ETCD_INITIAL_CLUSTER=cp-1=x,cp-2=y,cp-3=z\nETCD_INITIAL_CLUSTER_STATE=new\n");
  const text = (script === "update" ? etcdUpdateScript(5, 2379, undefined, dataDir) : etcdCreateScript(dataDir, 5, 2379, bootstrap))
    .replaceAll(ETCDCTL_ENV, path.join(c.fake.dir, "etcdctl.env"))
    .replaceAll(MEMBER_ENV, path.join(c.fake.dir, "member.env"))
    .replaceAll(INITIAL_CLUSTER_ENV, c.envFile);
  // On creation every file is new: the step lists them as changed.
  const r = c.fake.run(`HAKUBE_CHANGED=/etc/systemd/system/etcd.service\n${text}`);
  const started = c.fake.state().log.filter((l) => /^systemctl (re)?start .*etcd\.service/.test(l));
  return { r, started, dataDir };
}

test("a member with no data and no quorum around it never starts a new, empty cluster when the state says the cluster is deployed (create and update refuse)", () => {
  for (const script of ["create", "update"] as const) {
    const { r, started } = noQuorum(script, false);
    assert.equal(r.status, 1, `${script} must refuse: ${r.stdout}`);
    assert.deepEqual(started, [], `${script}: etcd was not started`);
    assert.match(r.stderr, /etcd member cp-2 has no data and no other member answers with a quorum/);
    assert.match(r.stderr, /restore from a backup\)?; see the README, Backups and restore \(hakube:restoreFrom, or backups\.restore\)/);
  }
  const { r } = noQuorum("create", false);
  assert.match(r.stderr, /refusing to start it as a new, empty cluster: the stack says this etcd cluster is deployed already \(cp-2 is not one of the members it was first deployed with\)/);
});

test("a member of a brand-new cluster (one the state's cluster is first deployed with) still starts it with the others", () => {
  const { r, started } = noQuorum("create", true);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(started, ["systemctl restart --no-block etcd.service"]);
});
