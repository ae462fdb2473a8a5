// Gate and create scripts run for real against stub commands: a gate retries the check
// itself (not a value computed once before its loop), and the etcd create script makes
// the data directory it is given.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { controllersGateScript } from "../../components/controllers/render";
import { ETCDCTL_ENV, etcdCreateScript, MEMBER_ENV, memberEnv } from "../../components/etcd/render";
import { command, quote, retry } from "../../components/remote/shell";
import { failTimesThen, stubsDisposedAfterTests } from "../helpers/stubs";

const stubs = stubsDisposedAfterTests();

test("quote and command: values are never expanded or split by the shell", () => {
  assert.equal(quote("/var/lib/etcd"), "/var/lib/etcd");
  assert.equal(quote("a b"), "'a b'");
  assert.equal(quote("$(rm -rf /)"), "'$(rm -rf /)'");
  assert.equal(quote("it's"), `'it'\\''s'`);
  assert.equal(quote(""), "''");
  const s = stubs({ printer: [{ stdout: "" }] });
  const r = s.run(command(["printer", "a b", "$(echo no)", "it's", "", "*"]));
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(s.argv("printer"), [["a b", "$(echo no)", "it's", "", "*"]]);
  assert.throws(() => command([]), /empty argument list/);
});

test("retry runs the command afresh on every attempt", () => {
  const s = stubs({ probe: failTimesThen(2, { stdout: "ok" }) });
  const r = s.run(retry({ attempts: 5, delaySeconds: 0 }, "probe", ["probe", "x"]));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(s.calls("probe"), 3);
});

test("the controllers' Lease gate asks the API again on each attempt (no holder twice, then one)", () => {
  const s = stubs({ kubectl: [{ stdout: "" }, { stdout: "" }, { stdout: "cp-1_0cf41e34" }] });
  const r = s.run(controllersGateScript(5, 0));
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /hakube: leases held/);
  // Two empty answers for the controller-manager's Lease, then a holder; then the scheduler's.
  assert.equal(s.calls("kubectl"), 4);
  const leases = s.argv("kubectl").map((argv) => argv[argv.indexOf("lease") + 1]);
  assert.deepEqual(leases, ["kube-controller-manager", "kube-controller-manager", "kube-controller-manager", "kube-scheduler"]);
});

test("the controllers' Lease gate fails, bounded, when no Lease gets a holder", () => {
  const s = stubs({ kubectl: [{ stdout: "" }] });
  const r = s.run(controllersGateScript(3, 0));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /kube-controller-manager Lease holder: still failing after 3 attempts/);
  assert.equal(s.calls("kubectl"), 3);
});

test("the controllers' Lease gate treats an API error as no holder and retries", () => {
  const s = stubs({ kubectl: [{ exitCode: 1 }, { stdout: "cp-2_x" }] });
  const r = s.run(controllersGateScript(3, 0));
  assert.equal(r.status, 0, r.stderr);
  assert.equal(s.calls("kubectl"), 3, "one error, one holder, then the scheduler's");
});

test("the etcd create script makes the etcd account and the data directory it is given, private", () => {
  // daemon-reload, enable, is-active (inactive: 3), restart; no other member answers; no etcd account yet
  const s = stubs({ systemctl: [{}, {}, { exitCode: 3 }, {}], etcdctl: [{ exitCode: 1 }], id: [{ exitCode: 1 }], useradd: [{}] });
  const dataDir = path.join(s.dir, "data dir", "etcd");
  fs.writeFileSync(path.join(s.dir, "etcdctl.env"), "ETCDCTL_ENDPOINTS=https://10.0.0.11:2379,https://10.0.0.12:2379\n");
  fs.writeFileSync(path.join(s.dir, "member.env"), memberEnv({ name: "cp-1", address: "10.0.0.11" }, { clusterToken: "t", dataDir, clientPort: 2379, peerPort: 2380, heartbeatIntervalMs: 100, electionTimeoutMs: 1000 }));
  const script = etcdCreateScript(dataDir, 150, 2379, true)
    .replaceAll(ETCDCTL_ENV, path.join(s.dir, "etcdctl.env"))
    .replaceAll(MEMBER_ENV, path.join(s.dir, "member.env"));
  assert.doesNotMatch(script, /\/var\/lib\/etcd/, "no fixed path");
  const r = s.run(script, { HAKUBE_CHANGED: "" });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.statSync(dataDir).mode & 0o777, 0o700);
  assert.ok(s.argv("systemctl").some((a) => a[0] === "restart"), "starts etcd when it is not active");
  assert.deepEqual(s.argv("useradd"), [["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "etcd"]]);
  assert.deepEqual(s.argv("etcdctl"), [["endpoint", "health"]], "asked whether the other member holds a quorum (it does not: bootstrap)");
});
