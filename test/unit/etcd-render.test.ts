import { test } from "node:test";
import { initialClusterEnv } from "../../components/etcd/member";
import { memberEnv } from "../../components/etcd/render";
import assert from "node:assert/strict";
import { etcdctlEnv, etcdFlags, etcdGateScript, etcdUnit, etcdUpdateScript, initialCluster, EtcdSettings } from "../../components/etcd/render";
import { run, verifyUnit } from "../helpers/tools";
import { assertGolden } from "../helpers/golden";

const settings: EtcdSettings = {
  clusterToken: "cp-etcd",
  dataDir: "/var/lib/etcd",
  clientPort: 2379,
  peerPort: 2380,
  heartbeatIntervalMs: 100,
  electionTimeoutMs: 1000,
};
const members = [
  { name: "cp-1", address: "10.0.0.11" },
  { name: "cp-2", address: "10.0.0.12" },
  { name: "cp-3", address: "10.0.0.13" },
];

test("etcd flags: TLS with client certificate auth on both ports; every member in the initial cluster file", () => {
  const flags = Object.fromEntries(etcdFlags(members[1], members, settings));
  assert.equal(flags["client-cert-auth"], true);
  assert.equal(flags["peer-client-cert-auth"], true);
  assert.equal(flags["listen-client-urls"], "https://10.0.0.12:2379,https://127.0.0.1:2379");
  assert.equal(flags["listen-peer-urls"], "https://10.0.0.12:2380");
  // The initial cluster comes from an environment file, so a resize changes no member's unit.
  assert.equal(flags["initial-cluster"], undefined);
  assert.equal(flags["initial-cluster-state"], undefined);
  assert.equal(
    initialClusterEnv(initialCluster(members, settings)),
    "ETCD_INITIAL_CLUSTER=cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380,cp-3=https://10.0.0.13:2380\nETCD_INITIAL_CLUSTER_STATE=new\n",
  );
  assert.equal(etcdUnit(members[0], members, settings), etcdUnit(members[0], members.slice(0, 2), settings), "the unit does not list the members");
  assert.equal(memberEnv(members[1], settings), "HAKUBE_ETCD_NAME=cp-2\nHAKUBE_ETCD_PEER_URL=https://10.0.0.12:2380\nHAKUBE_ETCD_CLIENT_URL=https://10.0.0.12:2379\n");
  assert.equal(flags["heartbeat-interval"], 100);
  assert.equal(flags["election-timeout"], 1000);
  assert.ok(!Object.values(flags).some((v) => String(v).startsWith("http://") && !String(v).includes("127.0.0.1")), "only metrics is plain HTTP, on loopback");
  assert.equal(initialCluster(members.slice(0, 1), settings), "cp-1=https://10.0.0.11:2380");
});

test("etcd unit passes systemd-analyze verify and matches its golden file", () => {
  const unit = etcdUnit(members[0], members, settings);
  assert.match(unit, /Type=notify/);
  assert.match(unit, /Restart=always/);
  const r = verifyUnit("etcd.service", unit);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), "", `systemd-analyze warned: ${r.stderr}`);
  assertGolden("etcd.service", unit);
});

test("etcdctl environment points at every member with the healthcheck client", () => {
  const env = etcdctlEnv(members, settings);
  assert.match(env, /^ETCDCTL_ENDPOINTS=https:\/\/10.0.0.11:2379,https:\/\/10.0.0.12:2379,https:\/\/10.0.0.13:2379$/m);
  assert.match(env, /ETCDCTL_KEY=\/etc\/etcd\/pki\/healthcheck-client.key/);
});

test("the update script checks the local member without a flag that shadows the etcdctl environment", () => {
  const script = etcdUpdateScript(30, 2379);
  assert.match(script, /ETCDCTL_ENDPOINTS=https:\/\/127.0.0.1:2379 hakube_retry 30 2 "etcd member health" -- etcdctl endpoint health/);
  assert.doesNotMatch(script, /--endpoints/, "etcdctl exits when a flag shadows ETCDCTL_ENDPOINTS");
  assert.doesNotMatch(etcdGateScript(30), /--endpoints/);
});

test("a stacked member drains its local apiserver around the restart; an external one touches nothing else", () => {
  const stacked = etcdUpdateScript(30, 2379, { securePort: 6443, settleSeconds: 4 });
  assert.ok(stacked.indexOf("systemctl stop kube-apiserver") < stacked.indexOf("systemctl restart etcd"));
  assert.ok(stacked.indexOf("systemctl restart etcd") < stacked.indexOf("systemctl start kube-apiserver"));
  assert.match(stacked, /https:\/\/127.0.0.1:6443\/readyz/);
  const external = etcdUpdateScript(30, 2379);
  assert.doesNotMatch(external, /kube-apiserver/, "no apiserver drain without a local apiserver");
  for (const script of [stacked, external]) {
    const r = run("bash", ["-n", "-c", script]);
    assert.equal(r.status, 0, r.stderr);
  }
});
