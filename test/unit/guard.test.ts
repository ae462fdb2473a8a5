// Traffic safety: tools send to a stack's address only while its bridge carries its subnet.
import { test } from "node:test";
import assert from "node:assert/strict";
import { destinationProblem, parseRoutes } from "../../ops/guard";
import { parseCidr } from "../../components/net";

// /proc/net/route as the kernel writes it: a default route, the host's own network, the
// stack's bridge, and hakube's unreachable guard route for the subnet (highest metric).
const HEADER = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT";
const DEFAULT = "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0";
const LAN = "eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
const BRIDGE = "hk1234\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
const GUARD = "*\t0007D50A\t00000000\t0201\t0\t0\t4294967295\t00FFFFFF\t0\t0\t0";
const networks = [{ stack: "local", bridge: "hk1234", subnet: parseCidr("10.213.7.0/24")! }];
const routes = (...lines: string[]) => parseRoutes([HEADER, ...lines].join("\n"));

test("parseRoutes reads addresses, prefixes, gateway and reject flags", () => {
  const [d, lan, br, guard] = routes(DEFAULT, LAN, BRIDGE, GUARD);
  assert.deepEqual([d.prefixLength, d.viaGateway], [0, true]);
  assert.deepEqual([lan.destination, lan.prefixLength], [0xc0000200, 24]);
  assert.deepEqual([br.iface, br.destination, br.prefixLength, br.reject], ["hk1234", 0x0ad50700, 24, false]);
  assert.deepEqual([guard.reject, guard.metric], [true, 4294967295]);
});

test("allowed: loopback always, and the stack's addresses while its bridge routes the subnet", () => {
  const up = routes(DEFAULT, LAN, BRIDGE, GUARD);
  assert.equal(destinationProblem("127.0.0.1", [], [], () => false), undefined);
  assert.equal(destinationProblem("10.213.7.100", networks, up, () => true), undefined);
  assert.equal(destinationProblem("10.213.7.11", networks, up, () => true), undefined);
});

test("refused: the bridge is missing (the packet would leave by the default route)", () => {
  const gone = routes(DEFAULT, LAN);
  assert.match(destinationProblem("10.213.7.12", networks, gone, () => false)!, /stack local: bridge hk1234 with 10\.213\.7\.0\/24 is missing; refusing to send to 10\.213\.7\.12/);
});

test("refused: the bridge exists but the subnet is routed elsewhere, or only by the guard route", () => {
  assert.match(destinationProblem("10.213.7.12", networks, routes(DEFAULT, LAN), () => true)!, /the kernel routes it by 0\.0\.0\.0\/0 via eth0 \(gateway\)/);
  assert.match(destinationProblem("10.213.7.12", networks, routes(DEFAULT, GUARD), () => true)!, /does not carry 10\.213\.7\.12/);
  const other = "eth1\t0007D50A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0";
  assert.match(destinationProblem("10.213.7.12", networks, routes(DEFAULT, other), () => true)!, /routes it by 10\.213\.7\.0\/24 via eth1/);
});

test("refused: an address in no stack's subnet, or not an address", () => {
  assert.match(destinationProblem("192.0.2.10", networks, routes(DEFAULT, LAN, BRIDGE), () => true)!, /in no local stack's subnet \(local 10\.213\.7\.0\/24\)/);
  assert.match(destinationProblem("example.com", networks, [], () => true)!, /not an IPv4 address/);
});

test("the status summary's verdict: healthy only with /readyz, every apiserver, both Leases and every etcd member", async () => {
  const { statusProblems } = await import("../../ops/status");
  const healthy = {
    endpoint: "https://10.213.7.100:8443",
    readyz: "ok",
    serviceEndpoints: ["10.213.7.11", "10.213.7.12", "10.213.7.13"],
    leases: { "kube-controller-manager": "cp-1_a", "kube-scheduler": "cp-2_b" },
    etcd: ["cp-1", "cp-2", "cp-3"].map((name, i) => ({ name, endpoint: `https://10.213.7.1${i + 1}:2379`, healthy: true, leader: i === 0 })),
    memoryMiB: {},
  };
  assert.deepEqual(statusProblems(healthy, 3), []);
  const sick = {
    ...healthy,
    serviceEndpoints: healthy.serviceEndpoints.slice(0, 2),
    leases: { ...healthy.leases, "kube-scheduler": "" },
    etcd: healthy.etcd.map((m) => (m.name === "cp-2" ? { ...m, healthy: false } : m)),
  };
  assert.deepEqual(statusProblems(sick, 3), [
    "the kubernetes Service lists 2 of 3 apiservers",
    "the kube-scheduler Lease has no holder",
    "etcd members not healthy: cp-2",
  ]);
});
