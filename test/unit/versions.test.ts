// The version-skew rules checked at preview: one minor at a time, never back.
import { test } from "node:test";
import assert from "node:assert/strict";
import { deployedVersionsProvider, upgradeProblem } from "../../components";

test("upgrades within a minor and to the next minor are allowed", () => {
  assert.equal(upgradeProblem("v1.36.5", "v1.36.5"), undefined);
  assert.equal(upgradeProblem("v1.36.4", "v1.36.5"), undefined);
  assert.equal(upgradeProblem("v1.36.5", "v1.37.2"), undefined);
  assert.equal(upgradeProblem("v1.36.0", "v1.37.0"), undefined);
  assert.equal(upgradeProblem("v3.5.21", "v3.6.16"), undefined);
  assert.equal(upgradeProblem(undefined, "v1.38.0"), undefined, "nothing deployed yet");
  assert.equal(upgradeProblem("garbage", "v1.38.0"), undefined, "no readable deployed version");
});

test("skipping a minor is refused with the next step named", () => {
  assert.equal(
    upgradeProblem("v1.36.5", "v1.38.0"),
    "an upgrade from the deployed v1.36.5 to v1.38.0 skips a minor release; upgrade to v1.37.x first, then on from there",
  );
  assert.match(upgradeProblem("v1.36.5", "v2.0.0")!, /skips a minor release; upgrade to v1\.37\.x first/);
  assert.match(upgradeProblem("v3.5.21", "v3.7.0")!, /upgrade to v3\.6\.x first/);
});

test("going back is refused, patch or minor", () => {
  assert.match(upgradeProblem("v1.37.2", "v1.36.5")!, /^going back from the deployed v1\.37\.2 to v1\.36\.5 is not supported/);
  assert.match(upgradeProblem("v1.37.2", "v1.37.1")!, /^going back from the deployed v1\.37\.2 to v1\.37\.1/);
});

test("the provider's check names the argument, the value and the deployed version", async () => {
  const check = deployedVersionsProvider.check!;
  const ok = await check({ kubernetesVersion: "v1.36.5", etcdVersion: "v3.6.16" }, { kubernetesVersion: "v1.37.2", etcdVersion: "v3.6.16" });
  assert.deepEqual(ok.failures, []);
  const first = await check({}, { kubernetesVersion: "v1.37.2", etcdVersion: "v3.6.16" });
  assert.deepEqual(first.failures, [], "a first deployment has no old inputs");
  const bad = await check({ kubernetesVersion: "v1.36.5", etcdVersion: "v3.6.16" }, { kubernetesVersion: "v1.38.0", etcdVersion: "v3.5.21" });
  assert.equal(bad.failures!.length, 2);
  assert.match(
    bad.failures![0].reason,
    /^invalid argument kubernetesVersion: got "v1\.38\.0"; expected a version the deployed cluster can move to: an upgrade from the deployed v1\.36\.5/,
  );
  assert.match(bad.failures![1].reason, /^invalid argument etcdVersion: got "v3\.5\.21"; .*going back from the deployed v3\.6\.16/);
  const diff = deployedVersionsProvider.diff!;
  assert.equal((await diff("id", { kubernetesVersion: "v1.36.5", etcdVersion: "v3.6.16" }, { kubernetesVersion: "v1.36.5", etcdVersion: "v3.6.16" })).changes, false);
  assert.equal((await diff("id", { kubernetesVersion: "v1.36.5", etcdVersion: "v3.6.16" }, { kubernetesVersion: "v1.37.2", etcdVersion: "v3.6.16" })).changes, true);
});
