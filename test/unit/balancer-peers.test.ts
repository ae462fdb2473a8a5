// A balancer host leaving the set stops keepalived before the staying hosts drop it from
// their VRRP peers (components/loadbalancer/peers.ts): the script, run as real bash against
// a stub systemctl, and the set arithmetic.
import { test } from "node:test";
import assert from "node:assert/strict";
import { leavingPeers, retireLeavingPeers, RETIRE_VRRP_SCRIPT } from "../../components/loadbalancer/peers";
import { stubCommands } from "../helpers/stubs";

test("a leaving balancer host: keepalived is stopped and disabled when it runs, left alone when it does not", () => {
  const running = stubCommands({ systemctl: [{ exitCode: 0 }] });
  try {
    const r = running.run(RETIRE_VRRP_SCRIPT);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /keepalived stopped/);
    assert.deepEqual(running.argv("systemctl"), [
      ["is-active", "--quiet", "keepalived.service"],
      ["disable", "--now", "keepalived.service"],
    ]);
  } finally {
    running.dispose();
  }
  const stopped = stubCommands({ systemctl: [{ exitCode: 3 }] });
  try {
    const r = stopped.run(RETIRE_VRRP_SCRIPT);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /keepalived not running/);
    assert.equal(stopped.calls("systemctl"), 1, "nothing but the check");
  } finally {
    stopped.dispose();
  }
});

test("the leaving hosts are the deployed ones not desired, in deployed order; growing or a first deployment retires none", () => {
  assert.deepEqual(leavingPeers(["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"], ["cp-1", "cp-2", "cp-3"]), ["cp-4", "cp-5"]);
  assert.deepEqual(leavingPeers(["cp-1", "cp-2", "cp-3"], ["cp-1", "cp-2", "cp-3", "cp-4", "cp-5"]), []);
  assert.deepEqual(leavingPeers(undefined, ["cp-1", "cp-2"]), []);
  assert.deepEqual(leavingPeers(["lb-1", "lb-2"], ["lb-2", "lb-3"]), ["lb-1"]);
});

test("a leaving host without a connection in the state is skipped and named; nothing is dialled for hosts that stay", async () => {
  const r = await retireLeavingPeers(
    { names: ["cp-1", "cp-2", "cp-3", "cp-4"], connections: {} },
    { names: ["cp-1", "cp-2", "cp-3"], connections: {} },
  );
  assert.deepEqual(r, { "cp-4": "no connection in the state: skipped" });
});
