// What a machine that came back under its name must show (the facts of the replace and
// lose-for-good scenarios, ops/scenarios.ts): a new machine, its old etcd member removed
// and a new one added, every member a started voter.
import assert from "node:assert/strict";

export function assertRejoined(f: any, memberCount: number): void {
  assert.equal(f.upOk, true, f.upOutput);
  assert.ok(f.healthyAfterMs > 0, `healthy again: ${f.notHealthy}`);
  assert.notEqual(f.machineIdAfter, f.machineIdBefore, "a new machine (new machine-id)");
  assert.notEqual(f.memberIdAfter, undefined, `the member is back: ${JSON.stringify(f.membersAfter)}`);
  assert.notEqual(f.memberIdAfter, f.memberIdBefore, "the old member was removed and a new one added");
  assert.equal(f.membersAfter.length, memberCount, "no member left behind");
  assert.ok(f.membersAfter.every((m: any) => m.started && !m.learner), `every member a started voter: ${JSON.stringify(f.membersAfter)}`);
}
