// The in-cluster probe's pure parts: its pod (bounded, unprivileged, pinned), its records
// (a torn last line dropped) and the failure windows shared with the out-of-cluster probe.
import assert from "node:assert/strict";
import { test } from "node:test";
import { inClusterPod, inClusterRbac, inClusterReport, parseProbeRecords } from "../../ops/inCluster";
import { failureWindowsOf } from "../../ops/probe";

test("in-cluster probe pod: pinned to its node, two bounded loops through the Service, unprivileged, records on a hostPath", () => {
  const pod = JSON.parse(inClusterPod({ name: "lose-vip-holder-in-cluster", namespace: "hakube-probe", node: "worker-1", maxSeconds: 360 }));
  assert.equal(pod.spec.nodeName, "worker-1");
  assert.equal(pod.spec.restartPolicy, "Never");
  assert.deepEqual(pod.spec.securityContext, { runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true });
  assert.deepEqual(pod.spec.volumes[0].hostPath, { path: "/var/lib/hakube-probe/lose-vip-holder-in-cluster", type: "Directory" });
  assert.deepEqual(pod.spec.containers.map((c: any) => c.name), ["per-request", "http2"]);
  for (const c of pod.spec.containers) {
    assert.equal(c.imagePullPolicy, "Never");
    assert.ok(c.args.includes("-max-seconds=360") && c.args.includes("-max-requests=3610"), c.args.join(" "));
    assert.ok(c.args.includes("-path=/api/v1/namespaces/hakube-probe"));
    assert.equal(c.args.includes("-per-request"), c.name === "per-request");
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  }
  const rbac = JSON.parse(inClusterRbac("hakube-probe"));
  assert.deepEqual(rbac.items[0].rules, [{ apiGroups: [""], resources: ["namespaces"], resourceNames: ["hakube-probe"], verbs: ["get"] }]);
  assert.deepEqual(rbac.items[1].subjects, [{ kind: "ServiceAccount", name: "default", namespace: "hakube-probe" }]);
});

test("in-cluster probe records: parsed and sorted, a torn line dropped; windows from the first failure to the next success", () => {
  const text = [
    '{"at":1000,"ms":5,"op":"read","ok":true,"status":200}',
    '{"at":1300,"ms":2000,"op":"read","ok":false,"error":"context deadline exceeded"}',
    '{"at":1100,"ms":4,"op":"read","ok":true,"status":200}',
    '{"at":3400,"ms":7,"op":"read","ok":true,"status":200}',
    '{"at":3500,"ms":3,"op":"read","ok":false,"status":503,"error":"HTTP 503"}',
    '{"at":3550,"ms":3,"op":"read","ok":false,"status":429,"error":"HTTP 429","retryAfter":5}',
    '{"at":3600,"ms":',
  ].join("\n");
  const records = parseProbeRecords(text);
  assert.deepEqual(records.map((r) => r.at), [1000, 1100, 1300, 3400, 3500, 3550]);
  assert.equal(records[4].status, 503);
  assert.equal(records[4].retryAfterSeconds, undefined);
  assert.equal(records[5].retryAfterSeconds, 5, "the Retry-After the answer carried (client-go sends it again)");
  assert.deepEqual(failureWindowsOf(records), [{ start: 1300, end: 3407 }, { start: 3500, end: 3553 }]);
  const report = inClusterReport("http2", "worker-1", records);
  assert.equal(report.requests, 6);
  assert.equal(report.failedRequests, 3);
  assert.equal(report.longestFailureMs, 2107);
  assert.deepEqual(inClusterReport("per-request", "worker-1", []).failureWindows, []);
});
