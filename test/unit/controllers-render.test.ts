import { test } from "node:test";
import assert from "node:assert/strict";
import * as yaml from "js-yaml";
import {
  controllerManagerFlags,
  controllerManagerUnit,
  goDuration,
  schedulerConfig,
  schedulerUnit,
} from "../../components/controllers/render";
import { verifyUnit } from "../helpers/tools";
import { assertGolden } from "../helpers/golden";

const leaderElection = { leaseDurationSeconds: 8, renewDeadlineSeconds: 6, retryPeriodSeconds: 1 };
const settings = { clusterName: "hakube", podCidr: "10.244.0.0/16", serviceCidr: "10.96.0.0/12", leaderElection };

test("controller-manager elects a leader through a Lease with the given timings", () => {
  const flags = Object.fromEntries(controllerManagerFlags(settings));
  assert.equal(flags["leader-elect"], true);
  assert.equal(flags["leader-elect-resource-lock"], "leases");
  assert.equal(flags["leader-elect-resource-name"], "kube-controller-manager");
  assert.equal(flags["leader-elect-lease-duration"], "8s");
  assert.equal(flags["leader-elect-renew-deadline"], "6s");
  assert.equal(flags["leader-elect-retry-period"], "1s");
  assert.equal(flags["use-service-account-credentials"], true);
  assert.ok(!Object.keys(flags).some((n) => n.includes("insecure")), "no insecure flags");
});

test("scheduler config elects through a Lease", () => {
  const doc = yaml.load(schedulerConfig(leaderElection)) as any;
  assert.equal(doc.apiVersion, "kubescheduler.config.k8s.io/v1");
  assert.deepEqual(doc.leaderElection, {
    leaderElect: true,
    resourceLock: "leases",
    resourceNamespace: "kube-system",
    resourceName: "kube-scheduler",
    leaseDuration: "8s",
    renewDeadline: "6s",
    retryPeriod: "1s",
  });
});

test("go durations", () => {
  assert.equal(goDuration(15), "15s");
  assert.equal(goDuration(0.5), "500ms");
});

test("units verify and match golden files", () => {
  for (const [name, unit] of [
    ["kube-controller-manager.service", controllerManagerUnit(settings)],
    ["kube-scheduler.service", schedulerUnit()],
  ] as const) {
    const r = verifyUnit(name, unit);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), "", `systemd-analyze warned about ${name}: ${r.stderr}`);
    assertGolden(name, unit);
  }
});
