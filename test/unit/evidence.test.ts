// The availability bound follows from the timings; the evidence sampler's log becomes a
// timeline of changes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import { availabilityBound } from "../../ops/bounds";
import { changes, evidenceAround, samplerScript } from "../../ops/evidence";

test("the bound: the slowest of VRRP, HAProxy detection and an etcd election, plus one probe timeout and a margin", () => {
  const local = availabilityBound({ advertIntervalSeconds: 0.3, electionTimeoutMs: 1200, probeTimeoutMs: 2000 });
  assert.deepEqual(local.parts, { vrrpMs: 1200, haproxyMs: 1000, etcdElectionMs: 2500, probeTimeoutMs: 2000, marginMs: 1000 });
  assert.equal(local.ms, 5500);
  // Slow adverts make VRRP the slowest part.
  assert.equal(availabilityBound({ advertIntervalSeconds: 1, electionTimeoutMs: 1000, probeTimeoutMs: 2000 }).ms, 4000 + 3000);
  assert.equal(availabilityBound({ advertIntervalSeconds: 0.3, healthCheck: { intervalMs: 2000, fall: 3 }, electionTimeoutMs: 1000, probeTimeoutMs: 2000 }).ms, 6000 + 3000);
});

test("evidence: only changes are kept (the load alone is no change), relative to the fault", () => {
  const log = [
    "1000 vip=1 readyz=200 hap=[cp-1:UP cp-2:UP] etcd=11/2 load=0.5",
    "1250 vip=1 readyz=200 hap=[cp-1:UP cp-2:UP] etcd=11/2 load=0.9",
    "1500 vip=0 readyz=200 hap=[cp-1:DOWN cp-2:UP] etcd=12/3 load=1.1",
    "garbage",
  ].join("\n");
  const lines = changes("cp-2", log);
  assert.deepEqual(lines.map((l) => l.at), [1000, 1500]);
  const around = evidenceAround({ timeline: lines, cpu: [{ at: 1400, steal: 0.2, running: 7 }] }, 1000, 1200, 1600);
  // A state from long before the window is kept as the machine's context.
  assert.deepEqual(evidenceAround({ timeline: lines, cpu: [] }, 0, 9000, 9500).timeline, ["1500 cp-2 vip=0 readyz=200 hap=[cp-1:DOWN cp-2:UP] etcd=12/3 load=1.1"]);
  assert.deepEqual(around.timeline, ["0 cp-2 vip=1 readyz=200 hap=[cp-1:UP cp-2:UP] etcd=11/2 load=0.5", "500 cp-2 vip=0 readyz=200 hap=[cp-1:DOWN cp-2:UP] etcd=12/3 load=1.1"]);
  assert.equal(around.maxSteal, 0.2);
  assert.equal(around.maxRunning, 7);
});

test("the sampler script parses as bash and is bounded", () => {
  const script = samplerScript("10.213.7.100", 40);
  assert.equal(spawnSync("bash", ["-n", "-c", script]).status, 0);
  assert.match(script, /for i in \$\(seq 1 40\)/);
});
