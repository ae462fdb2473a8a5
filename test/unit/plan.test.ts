// The one plan of a control plane: every member count, topology and balancer resolves to
// consistent roles, access modes and timings, decided once.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { hosts } from "../helpers/mocks";
import { planControlPlane, topologyOf } from "../../components/controlplane/plan";
import { DEFAULT_KUBERNETES_VERSION } from "../../components/version";

const externalEndpoint = { endpoint: { endpoint: pulumi.output("api.example.internal"), port: pulumi.output(6443) }, detectionTimeSeconds: 20 };

for (const count of [3, 5, 7]) {
  for (const topology of ["stacked", "external"] as const) {
    for (const balancer of ["keepalived", "external"] as const) {
      test(`plan: ${count} etcd members, ${topology} etcd, ${balancer} balancer`, () => {
        const cp = hosts(3);
        const etcd = topology === "external" ? hosts(count, "etcd", 40) : undefined;
        const controlPlane = topology === "stacked" ? hosts(count) : cp;
        const plan = planControlPlane(undefined, {
          controlPlaneHosts: controlPlane,
          etcdHosts: etcd,
          loadBalancer: balancer === "keepalived" ? { keepalived: { virtualIp: "10.0.0.100" } } : { external: externalEndpoint },
        });
        assert.equal(plan.topology, topology);
        assert.equal(topologyOf(plan.controlPlaneHosts, plan.etcdHosts), topology);
        assert.equal(plan.etcdHosts.length, count);
        assert.equal(plan.etcdArgument, topology === "external" ? "etcdHosts" : "controlPlaneHosts (stacked etcd)");
        assert.equal(plan.etcdAccess, topology === "stacked" ? "local" : "cluster", "stacked apiservers use their own member");
        assert.deepEqual(
          plan.balancerHosts.map((h) => h.name),
          balancer === "keepalived" ? plan.controlPlaneHosts.map((h) => h.name) : [],
        );
        // HAProxy checks every 500 ms and falls after 2: about 1 s; the NLB's time as given.
        assert.equal(plan.timings.balancerDetectionSeconds, balancer === "keepalived" ? 1 : 20);
        assert.equal(plan.timings.balancerSettleSeconds, plan.timings.balancerDetectionSeconds + 2);
        assert.deepEqual(plan.timings.leaderElection, { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 });
        assert.deepEqual(plan.versions, { kubernetes: DEFAULT_KUBERNETES_VERSION, etcd: "v3.6.16" });
        assert.equal(plan.apiServerPort, 6443);
      });
    }
  }
}

test("plan: bad input names the argument (even etcd member counts, a VIP that is a host's address)", () => {
  assert.throws(
    () => planControlPlane(undefined, { controlPlaneHosts: hosts(4), loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } } }),
    /invalid argument controlPlaneHosts \(stacked etcd\): got "4 host\(s\)"/,
  );
  assert.throws(
    () => planControlPlane(undefined, { controlPlaneHosts: hosts(3), loadBalancer: { keepalived: { virtualIp: "10.0.0.12" } } }),
    /invalid argument loadBalancer\.keepalived\.virtualIp: got "10\.0\.0\.12"; expected an address no host uses \(it is cp-2's address\)/,
  );
  assert.throws(
    () => planControlPlane(undefined, { controlPlaneHosts: hosts(3), loadBalancer: { external: externalEndpoint }, apiServer: { securePort: 70000 } }),
    /invalid argument apiServer\.securePort: got 70000/,
  );
});
