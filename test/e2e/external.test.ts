// End to end, the external etcd topology (stacks/Pulumi.local-external.yaml, as aws-prod
// runs it): 3 control-plane machines and 3 etcd machines on a bridge and subnet of their
// own. Brought up by the main job itself (scripts/local-up.sh, whose status exits non-zero
// unless healthy); one etcd machine is replaced with the documented procedure while the
// probes run; then `pulumi destroy` (the user's teardown) leaves nothing, checked.
process.env.HAKUBE_STACK = "local-external";

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as path from "path";
import { controlPlaneHosts, etcdHosts, pulumi, ROOT, run, stackOutputs } from "../../ops/localStack";
import { Cluster, cluster, etcdMembers, replaceMachine, waitHealthy } from "../../ops/scenarios";
import { LOAD_ETCDCTL_ENV } from "../../ops/parse";
import { assertRejoined } from "../helpers/rejoined";
import { checkAvailability, suiteBound, visibleFailures } from "../../ops/availability";
import { scenarioRecord, writeScenarioRecord, writeSuiteRecord } from "../../ops/records";
import { leftovers } from "../../ops/localDown";
import * as fs from "fs";
import * as yaml from "js-yaml";

const STACK_CONFIG = (yaml.load(fs.readFileSync(path.join(ROOT, "stacks", "Pulumi.local-external.yaml"), "utf8")) as { config: Record<string, string> }).config;
/** The longest failure window any probe may see (ops/bounds.ts: from the stack's timings). */
const BOUND = suiteBound(Number(STACK_CONFIG["hakube:advertIntervalSeconds"] ?? 0.5));

let c: Cluster;
let destroyed = false;
const figures: Record<string, unknown> = {};

before(() => {
  pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
  const up = run("bash", [path.join(ROOT, "scripts", "local-up.sh")], { timeoutMs: 1_500_000 });
  figures.mainJobSeconds = up.seconds;
  assert.equal(up.status, 0, `the main job on local-external failed:\n${up.stdout.slice(-4000)}\n${up.stderr.slice(-2000)}`);
  assert.match(up.stdout, /hakube control plane \(stack local-external\)/);
  c = cluster(stackOutputs());
});

after(() => {
  c?.cred.dispose();
  // The last test destroys the stack and checks it; after a failure before it, local-down.sh
  // tears down whatever is left.
  if (!destroyed) {
    const down = run("bash", [path.join(ROOT, "scripts", "local-down.sh")], { timeoutMs: 600_000 });
    figures.localDownSeconds = down.seconds;
    assert.equal(down.status, 0, `local-down left something:\n${down.stdout.slice(-3000)}\n${down.stderr.slice(-2000)}`);
  }
  writeSuiteRecord("local-external", figures);
  console.log(`local-external: ${JSON.stringify(figures)}`);
});

test("external topology: etcd runs on its own machines only, the apiservers on the control-plane machines talk to all of them", async () => {
  const cp = controlPlaneHosts(c.outputs);
  const etcd = etcdHosts(c.outputs);
  assert.deepEqual(cp.map((h) => h.name), ["cp-1", "cp-2", "cp-3"]);
  assert.deepEqual(etcd.map((h) => h.name), ["etcd-1", "etcd-2", "etcd-3"]);
  assert.deepEqual(etcd.map((h) => h.address), ["10.213.9.31", "10.213.9.32", "10.213.9.33"]);
  const members = await etcdMembers(c, etcd[0]);
  assert.deepEqual(members.map((m) => m.name).sort(), ["etcd-1", "etcd-2", "etcd-3"]);
  for (const h of cp) {
    const r = await c.cred.sshAsync(h.address, "systemctl is-active etcd.service || true; tr '\\0' ' ' < /proc/$(systemctl show -p MainPID --value kube-apiserver.service)/cmdline", 20_000);
    assert.match(r.stdout, /^(inactive|unknown)/m, `no etcd on ${h.name}`);
    assert.match(r.stdout, /--etcd-servers=https:\/\/10\.213\.9\.31:2379,https:\/\/10\.213\.9\.32:2379,https:\/\/10\.213\.9\.33:2379 /, `${h.name}'s apiserver uses every member`);
  }
  for (const h of etcd) {
    const r = await c.cred.sshAsync(h.address, "systemctl is-active kube-apiserver.service || true", 20_000);
    assert.match(r.stdout, /^(inactive|unknown)/m, `no apiserver on ${h.name}`);
  }
  const health = await c.cred.sshAsync(etcd[0].address, `${LOAD_ETCDCTL_ENV}; etcdctl endpoint health`, 20_000);
  assert.equal(health.status, 0, health.stderr);
});

test("replacing an etcd machine with pulumi up --replace: a new machine, its member removed and re-added as a learner, promoted, nothing lost", async () => {
  const r = await replaceMachine(c, [], async (cl) => etcdHosts(cl.outputs)[1], "replace-etcd-machine");
  const f = r.facts as any;
  const a = checkAvailability(r, BOUND);
  writeScenarioRecord(scenarioRecord(r, a, "replacing an etcd machine"));
  console.log(
    `replace-etcd-machine: ${r.requests} requests, ${r.failedRequests} failed, longest failure ${r.longestFailureMs} ms, ` +
      `${r.acknowledgedWrites} writes acknowledged, ${r.acknowledgedWritesLost} lost; up ${f.upSeconds} s, healthy after ${f.healthyAfterMs} ms`,
  );
  figures.replaceEtcdMachine = { requests: r.requests, failedRequests: r.failedRequests, longestFailureMs: r.longestFailureMs, upSeconds: f.upSeconds };
  assert.equal(f.victim, "etcd-2");
  assertRejoined(f, 3);
  assert.equal(r.acknowledgedWritesLost, 0);
  assert.deepEqual(a.problems, [], `over the bounds of ops/availability.ts; the first visible failures: ${visibleFailures(r)}`);
  await waitHealthy(c);
});

test("destroy leaves no machine, namespace, link, route or bridge behind", () => {
  const r = pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
  figures.destroySeconds = r.seconds;
  destroyed = true;
  assert.equal(r.status, 0, `${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
  assert.deepEqual(leftovers(c.outputs), [], "nothing of the stack left on the host");
  assert.equal(run("pgrep", ["-f", `systemd-nspawn.*${c.outputs.bridge}`]).stdout.trim(), "", "no nspawn process left");
  const dir = `/var/lib/hakube/machines/${c.outputs.bridge}`;
  assert.ok(!fs.existsSync(dir) || fs.readdirSync(dir).length === 0, `machine files left in ${dir}`);
});
