// Where a `pulumi up`'s time goes: the slowest resource steps of its non-interactive output.
import { test } from "node:test";
import assert from "node:assert/strict";
import { slowestSteps } from "../../ops/parse";

test("the slowest steps of an up's output, slowest first, with their operation", () => {
  const out = [
    "Updating (local):",
    "    ~  command:remote:Command local-lb-cp-1 updating (0s) [diff: ~create]",
    "    ~  command:remote:Command local-lb-cp-1 updated (14s) [diff: ~create]",
    " +  command:local:Command local-cp-4 created (41s)",
    "    -  command:remote:Command local-etcd-cp-5 deleted (23s)",
    "    +-  command:remote:Command local-apiserver-cp-2 created replacement (9s) [diff: ~triggers]",
    "    -   command:remote:Command local-apiserver-cp-2 deleted original (3s)",
    "        pulumi:pulumi:Stack hakube-local running hakube: something (12s) printed by a step",
    "Resources:",
  ].join("\n");
  assert.deepEqual(slowestSteps(out, 3), [
    { step: "local-cp-4", op: "created", seconds: 41 },
    { step: "local-etcd-cp-5", op: "deleted", seconds: 23 },
    { step: "local-lb-cp-1", op: "updated", seconds: 14 },
  ]);
  assert.equal(slowestSteps(out).length, 5);
  assert.deepEqual(slowestSteps("no steps at all"), []);
});
