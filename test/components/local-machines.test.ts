import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import "../helpers/mocks";
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
