import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { byName, program, valueOf } from "../helpers/mocks";
import { LocalMachines } from "../../components";

test("LocalMachines refuses to run without root, at preview", () => {
  const original = process.getuid;
  process.getuid = () => 1000;
  try {
    assert.throws(
      () => new LocalMachines("m", { count: 3 }),
      (e: unknown) => e instanceof pulumi.ResourceError && /invalid argument LocalMachines: got "uid 1000"; expected root/.test((e as Error).message),
    );
  } finally {
    process.getuid = original;
  }
});

test("LocalMachines validates its count, names and subnet (before touching the host)", () => {
  const original = process.getuid;
  process.getuid = () => 0;
  try {
    assert.throws(() => new LocalMachines("m1", { count: 0 }), /invalid argument count: got 0; expected an integer from 1 to 50/);
    assert.throws(() => new LocalMachines("m2", { count: 3, namePrefix: "CP" }), /invalid argument namePrefix: got "CP"/);
    assert.throws(() => new LocalMachines("m3", { count: 3, subnet: "10.1.2.3/24" }), /invalid argument subnet: got "10.1.2.3\/24"/);
    assert.throws(() => new LocalMachines("m4", { count: 3, bridgeName: "a-name-far-too-long" }), /invalid argument bridgeName/);
  } finally {
    process.getuid = original;
  }
});

test("LocalMachines groups: several kinds on one bridge, each group from its own address base, the first keeping single-group names", async () => {
  const original = process.getuid;
  process.getuid = () => 0;
  try {
    assert.throws(() => new LocalMachines("g1", { count: 3, groups: [{ namePrefix: "cp", count: 3 }] }), /invalid argument count: got 3; expected either count \(with namePrefix\) or groups, not both/);
    assert.throws(
      () => new LocalMachines("g2", { groups: [{ namePrefix: "cp", count: 3 }, { namePrefix: "cp", count: 1 }] }),
      /invalid argument groups\[1\]\.namePrefix: got "cp"; expected a prefix no other group has/,
    );
    assert.throws(() => new LocalMachines("g3", { groups: [{ namePrefix: "cp", count: 20 }, { namePrefix: "etcd", count: 3 }] }), /invalid argument groups\[0\]\.count: got 20/);
    const m = await program(
      () => new LocalMachines("lm", { groups: [{ namePrefix: "cp", count: 3 }, { namePrefix: "etcd", count: 2 }], subnet: "10.213.250.0/24", bridgeName: "hkgrouptest" }),
    );
    assert.deepEqual(m.hosts.map((h) => [h.name, h.address, h.netns, h.veth]), [
      ["cp-1", "10.213.250.11", "hkgrouptest-1", "hkgrouptestv1"],
      ["cp-2", "10.213.250.12", "hkgrouptest-2", "hkgrouptestv2"],
      ["cp-3", "10.213.250.13", "hkgrouptest-3", "hkgrouptestv3"],
      ["etcd-1", "10.213.250.31", "hkgrouptest-g1-1", "hkgrouptestw1"],
      ["etcd-2", "10.213.250.32", "hkgrouptest-g1-2", "hkgrouptestw2"],
    ]);
    assert.deepEqual(Object.keys(m.groups), ["cp", "etcd"]);
    assert.deepEqual(m.groups.etcd.map((h) => h.name), ["etcd-1", "etcd-2"]);
    // The machines' state resource looks at every machine; a machine's update script repairs it.
    const state = byName("lm-state");
    assert.equal(state.type, "pulumi-nodejs:dynamic:Resource");
    assert.deepEqual((await valueOf<any[]>(state.props.machines)).map((x) => x.name), ["cp-1", "cp-2", "cp-3", "etcd-1", "etcd-2"]);
    const update = await valueOf<string>(byName("lm-etcd-2").props.update);
    assert.match(update, /machine etcd-2 is gone: making it anew/);
    assert.match(update, /machine etcd-2 is not running: booting it again from its files/);
    assert.equal(byName("lm-etcd-2").deleteBeforeReplace, true);
    // Every connection pins the host key the machine's own create printed (read from its
    // files on this host), each machine its own.
    const connections = await Promise.all(m.hosts.map((h) => valueOf<any>(h.connection)));
    assert.deepEqual(connections.map((c) => c.hostKey), m.hosts.map((h) => `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAImocklm${h.name.replace("-", "")}`));
    assert.match(await valueOf<string>(byName("lm-cp-1").props.create), /echo "hakube-hostkey \$\(cut -d ' ' -f 1,2 '[^']*\/cp-1\/etc\/ssh\/ssh_host_ed25519_key\.pub'\)"/);
    assert.match(update, /hakube-hostkey/);
  } finally {
    process.getuid = original;
  }
});
