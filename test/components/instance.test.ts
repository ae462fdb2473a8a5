// A host's instance (the machine behind its name) re-runs every step on that host when it
// changes: it is in each step's script header and in its binaries' triggers.
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { byName, ETCD_DIGEST, hosts, program, recorded, valueOf } from "../helpers/mocks";
import { HaControlPlane } from "../../components";

before(async () => {
  await program(() =>
    new HaControlPlane("inst", {
      controlPlaneHosts: hosts(3).map((h, i) => ({ ...h, instance: `i-0${i + 1}` })),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
    }),
  );
});

test("every step on cp-2 names cp-2's instance in its header; no step on another host does", async () => {
  for (const component of ["etcd", "apiserver", "controllers", "lb"]) {
    const update = await valueOf<string>(byName(`inst-${component}-cp-2`).props.update);
    assert.match(update, /^#   machine i-02$/m, `${component} on cp-2`);
    assert.doesNotMatch(update, /machine i-01|machine i-03/, `${component} on cp-2 names only its own machine`);
  }
});

test("binaries are copied again on a new instance (it is in their triggers)", async () => {
  const installs = recorded.filter((r) => /^inst-(etcd|apiserver|controllers)-cp-2-binaries$/.test(r.name));
  assert.equal(installs.length, 3);
  for (const r of installs) {
    assert.ok((await valueOf<string[]>(r.props.triggers)).includes("i-02"), `${r.name} triggers`);
  }
});
