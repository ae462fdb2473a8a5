// Bad input is rejected at preview with a ResourceError naming the argument, the value
// received and what is expected.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { ETCD_DIGEST, hosts } from "../helpers/mocks";
import { ApiServerPool, ClusterPki, EtcdCluster, HaControlPlane, HaControlPlaneArgs, LeaderElectedControllers } from "../../components";

let n = 0;
const base = (): HaControlPlaneArgs => ({
  controlPlaneHosts: hosts(3),
  loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
  binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
});

function rejects(args: HaControlPlaneArgs, message: RegExp) {
  assert.throws(
    () => new HaControlPlane(`bad${n++}`, args),
    (e: unknown) => {
      assert.ok(e instanceof pulumi.ResourceError, `a ResourceError, got ${e}`);
      assert.match((e as Error).message, message);
      return true;
    },
  );
}

test("etcd member count: even, 1 and more than 7 are rejected", () => {
  for (const count of [1, 2, 4, 6, 9]) {
    rejects(
      { ...base(), etcdHosts: hosts(count, "etcd", 40) },
      new RegExp(`invalid argument etcdHosts: got "${count} host\\(s\\)"; expected an odd number of etcd members from 3 to 7`),
    );
  }
  rejects({ ...base(), controlPlaneHosts: hosts(2) }, /invalid argument controlPlaneHosts \(stacked etcd\): got "2 host\(s\)"; expected an odd number/);
});

test("empty host list", () => {
  rejects({ ...base(), controlPlaneHosts: [] }, /invalid argument controlPlaneHosts: got \[\]; expected a non-empty list of hosts/);
});

test("duplicate host names or addresses", () => {
  const dupName = hosts(3);
  dupName[2] = { ...dupName[2], name: "cp-1" };
  rejects({ ...base(), controlPlaneHosts: dupName }, /invalid argument controlPlaneHosts\[2\].name: got "cp-1"; expected host names that are unique/);
  const dupAddress = hosts(3);
  dupAddress[1] = { ...dupAddress[1], address: "10.0.0.11" };
  rejects({ ...base(), controlPlaneHosts: dupAddress }, /invalid argument controlPlaneHosts\[1\].address: got "10.0.0.11"; expected host addresses that are unique/);
  // The same address under another name in another list.
  const etcd = hosts(3, "etcd", 40);
  etcd[0] = { ...etcd[0], address: "10.0.0.12" };
  rejects({ ...base(), etcdHosts: etcd }, /invalid argument hosts: got "10.0.0.12"; expected one host per address \(used by cp-2 and etcd-1\)/);
  const badAddress = hosts(3);
  badAddress[0] = { ...badAddress[0], address: "10.0.0.300" };
  rejects({ ...base(), controlPlaneHosts: badAddress }, /controlPlaneHosts\[0\].address: got "10.0.0.300"; expected an IPv4 address/);
});

test("lease timings out of order", () => {
  rejects(
    { ...base(), controllers: { leaderElection: { leaseDurationSeconds: 10, renewDeadlineSeconds: 10 } } },
    /invalid argument controllers.leaderElection.renewDeadlineSeconds: got 10; expected less than leaseDurationSeconds \(10\)/,
  );
  rejects(
    { ...base(), controllers: { leaderElection: { retryPeriodSeconds: 12 } } },
    /invalid argument controllers.leaderElection.retryPeriodSeconds: got 12; expected less than renewDeadlineSeconds \(10\)/,
  );
  rejects(
    { ...base(), controllers: { leaderElection: { leaseDurationSeconds: -1 } } },
    /controllers.leaderElection.leaseDurationSeconds: got -1; expected a number from 1 to 3600/,
  );
});

test("service range overlapping the pod range or the hosts' addresses", () => {
  rejects(
    { ...base(), serviceCidr: "10.244.0.0/20" },
    /invalid argument serviceCidr: got "10.244.0.0\/20"; expected a range that does not overlap podCidr \(10.244.0.0\/16\)/,
  );
  rejects(
    { ...base(), serviceCidr: "10.0.0.0/24" },
    /invalid argument serviceCidr: got "10.0.0.0\/24"; expected a range that does not hold host cp-1's address 10.0.0.11/,
  );
  rejects({ ...base(), podCidr: "10.0.0.0/16" }, /invalid argument podCidr: got "10.0.0.0\/16"; expected a range that does not hold host cp-1's address/);
  rejects({ ...base(), serviceCidr: "10.96.0.1/12" }, /invalid argument serviceCidr: got "10.96.0.1\/12"; expected an IPv4 network in CIDR notation/);
});

test("unparsable or unsupported versions", () => {
  rejects({ ...base(), kubernetesVersion: "latest" }, /invalid argument kubernetesVersion: got "latest"; expected a release version such as "v1.36.3"/);
  rejects({ ...base(), etcdVersion: "3.6" }, /invalid argument etcdVersion: got "3.6"; expected a release version/);
  rejects({ ...base(), kubernetesVersion: "v1.28.0" }, /invalid argument kubernetesVersion: got "v1.28.0"; expected a version 1.x at or above v1.36.0/);
});

test("a VIP that is also a host address", () => {
  rejects(
    { ...base(), loadBalancer: { keepalived: { virtualIp: "10.0.0.12" } } },
    /invalid argument loadBalancer.keepalived.virtualIp: got "10.0.0.12"; expected an address no host uses \(it is cp-2's address\)/,
  );
  rejects({ ...base(), loadBalancer: { keepalived: { virtualIp: "not-an-ip" } } }, /invalid argument loadBalancer.keepalived.virtualIp: got "not-an-ip"; expected an IPv4 address/);
});

test("balancer port, priorities and hosts", () => {
  rejects(
    { ...base(), loadBalancer: { keepalived: { virtualIp: "10.0.0.100", port: 6443 } } },
    /invalid argument port: got 6443; expected a port other than the apiservers' \(6443\) when the balancer shares their hosts/,
  );
  rejects(
    { ...base(), loadBalancer: { keepalived: { virtualIp: "10.0.0.100", priorities: [100, 100, 90] } } },
    /invalid argument priorities: got \[100,100,90\]; expected distinct priorities/,
  );
  rejects(
    { ...base(), loadBalancer: { keepalived: { virtualIp: "10.0.0.100", hosts: hosts(1, "lb", 60) } } },
    /invalid argument hosts: got "1 host\(s\)"; expected at least 2 balancer hosts/,
  );
  rejects(
    { ...base(), loadBalancer: { keepalived: { virtualIp: "10.0.0.100", advertIntervalSeconds: 0.005 } } },
    /invalid argument advertIntervalSeconds: got 0.005; expected a number from 0.01 to 40.95/,
  );
});

test("etcd timings and apiserver shutdown delay", () => {
  rejects(
    { ...base(), etcd: { heartbeatIntervalMs: 300, electionTimeoutMs: 1000 } },
    /invalid argument electionTimeoutMs: got 1000; expected at least 5 x heartbeatIntervalMs \(1500\)/,
  );
  rejects(
    { ...base(), apiServer: { shutdownDelayDurationSeconds: 1 } },
    /invalid argument shutdownDelayDurationSeconds: got 1; expected more than balancerDetectionSeconds \(1\)/,
  );
  rejects(
    { ...base(), apiServer: { extraFlags: { "insecure-port": "8080" } } },
    /invalid argument extraFlags.insecure-port: got "8080"; expected a flag name without "--", other than insecure-port/,
  );
});

test("local etcd access needs an etcd member on every apiserver host", () => {
  rejects(
    { ...base(), etcdHosts: hosts(3, "etcd", 40), apiServer: { etcdAccess: "local" } },
    /invalid argument etcdAccess: got "local"; expected "cluster": host cp-1 runs no etcd member/,
  );
});

test("binaries: missing digest, malformed digest, missing local directory", () => {
  rejects(
    { ...base(), binaries: {} },
    /invalid argument binaries.digest: got null; expected the digest of https:\/\/github.com\/etcd-io\/etcd\/releases\/download\/v3.6.16\/etcd-v3.6.16-linux-amd64.tar.gz/,
  );
  rejects(
    { ...base(), binaries: { etcd: { kind: "release", digest: "md5:abc" } } },
    /invalid argument binaries.digest: got "md5:abc"; expected a digest "sha256:<64 hex>"/,
  );
  rejects(
    { ...base(), binaries: { etcd: { kind: "release", digest: ETCD_DIGEST }, kubernetes: { kind: "localDirectory", directory: "/nonexistent/hakube" } } },
    /invalid argument binaries.directory: got "\/nonexistent\/hakube"; expected a directory holding kube-apiserver, kubectl \(\/nonexistent\/hakube\/kube-apiserver is missing or not executable\)/,
  );
});

test("components used on their own validate too", () => {
  const pki = new ClusterPki("solo-pki", { controlPlaneHosts: hosts(3), apiEndpoint: "10.0.0.100" });
  const etcd = new EtcdCluster("solo-etcd", { hosts: hosts(3), pki, binaries: { kind: "release", digest: ETCD_DIGEST } });
  assert.throws(
    () => new EtcdCluster("solo-etcd-2", { hosts: hosts(3, "x", 70), pki, binaries: { kind: "release", digest: ETCD_DIGEST } }),
    /invalid argument pki: got "x-1"; expected a ClusterPki whose etcdHosts include every etcd host/,
  );
  const pool = new ApiServerPool("solo-api", { hosts: hosts(3), pki, etcd });
  assert.throws(
    () => new LeaderElectedControllers("solo-ctl", { hosts: hosts(3), pki, apiServers: pool, apiAccess: "balanced" }),
    /invalid argument endpoint: got null; expected an ApiEndpoint/,
  );
  assert.throws(
    () => new LeaderElectedControllers("solo-ctl2", { hosts: hosts(1, "other", 80), pki, apiServers: pool }),
    /invalid argument hosts: got "other-1"; expected control-plane hosts that also run an apiserver/,
  );
  assert.throws(
    () => new ClusterPki("solo-pki2", { controlPlaneHosts: hosts(3), apiEndpoint: "10.0.0.100", earlyRenewalHours: 9000 }),
    /invalid argument earlyRenewalHours: got 9000; expected less than certificateValidityHours \(8760\)/,
  );
});

test("Secrets encryption keys: an unknown active key, a repeated or bad name, an empty list", () => {
  const ring = (secretsEncryption: { keys?: string[]; active?: string }) => ({ ...base(), apiServer: { secretsEncryption } });
  rejects(ring({ keys: ["key1"], active: "key9" }), /invalid argument secretsEncryption\.active: got "key9"; expected one of keys \(key1\)/);
  rejects(ring({ keys: ["key1", "key1"] }), /invalid argument secretsEncryption\.keys\[1\]: got "key1"; expected a name not already in the list/);
  rejects(ring({ keys: ["Key 2"] }), /invalid argument secretsEncryption\.keys\[0\]: got "Key 2"; expected a key name/);
  rejects(ring({ keys: [] }), /invalid argument secretsEncryption\.keys: got \[\]; expected a list of 1 to 5 key names/);
});

test("service-account keys: an unknown active key, a token lifetime out of range", () => {
  rejects({ ...base(), certificates: { serviceAccountKeys: { keys: ["key1", "key2"], active: "key3" } } }, /invalid argument serviceAccountKeys\.active: got "key3"; expected one of keys \(key1, key2\)/);
  rejects({ ...base(), certificates: { serviceAccountKeys: { tokenMaxHours: 0 } } }, /invalid argument serviceAccountKeys\.tokenMaxHours: got 0/);
  rejects({ ...base(), certificates: { certificateAuthorities: { cluster: { keys: ["ca1", "ca2"], active: "ca3" } } } }, /invalid argument certificateAuthorities\.cluster\.active: got "ca3"; expected one of keys \(ca1, ca2\)/);
  rejects({ ...base(), certificates: { certificateAuthorities: { etcd: { keys: ["ca1", "ca1"] } } } }, /invalid argument certificateAuthorities\.etcd\.keys\[1\]: got "ca1"; expected a name not already in the list/);
  rejects({ ...base(), certificates: { certificateAuthorities: { frontProxy: { keys: [] } } } }, /invalid argument certificateAuthorities\.frontProxy\.keys: got \[\]/);
});
