import { test } from "node:test";
import assert from "node:assert/strict";
import * as yaml from "js-yaml";
import {
  amiFilters,
  cloudInit,
  debian12Amd64,
  nlbDetectionSeconds,
  parseCidr,
  spreadAcrossZones,
  subnetLayout,
  ubuntu2404Amd64,
} from "../../components";
import { assertGolden } from "../helpers/golden";

test("subnet layout: private blocks first, public blocks from the second half, no overlap", () => {
  assert.deepEqual(subnetLayout(parseCidr("10.30.0.0/16")!, 3), {
    private: ["10.30.0.0/19", "10.30.32.0/19", "10.30.64.0/19"],
    public: ["10.30.128.0/19", "10.30.160.0/19", "10.30.192.0/19"],
  });
  assert.deepEqual(subnetLayout(parseCidr("192.168.5.0/24")!, 2), {
    private: ["192.168.5.0/27", "192.168.5.32/27"],
    public: ["192.168.5.128/27", "192.168.5.160/27"],
  });
  assert.throws(() => subnetLayout(parseCidr("10.0.0.0/16")!, 5), RangeError);
});

test("hosts go round-robin across zones: 5 etcd members over 3 zones are 2+2+1", () => {
  assert.deepEqual(spreadAcrossZones(3, 3), [0, 1, 2]);
  assert.deepEqual(spreadAcrossZones(5, 3), [0, 1, 2, 0, 1]);
  assert.deepEqual(spreadAcrossZones(0, 3), []);
});

test("image filters: Debian 12 from Debian's account by default, Ubuntu 24.04 from Canonical's", () => {
  assert.deepEqual(debian12Amd64.owners, ["136693071363"]);
  assert.deepEqual(amiFilters(debian12Amd64)[0], { name: "name", values: ["debian-12-amd64-*"] });
  assert.deepEqual(amiFilters(ubuntu2404Amd64)[1], { name: "architecture", values: ["x86_64"] });
  assert.match(ubuntu2404Amd64.name, /noble-24\.04-amd64/);
});

test("cloud-init lets root log in with the key only, and installs the host key made in Pulumi as the only one (golden)", () => {
  const hostKey = {
    privateKeyOpenssh: "first line of a made-up key\nAAAAfake\nBBBBfake\nlast line of a made-up key\n",
    publicKeyOpenssh: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIfake\n",
  };
  const text = cloudInit("cp-2", hostKey);
  assertGolden("aws-cloud-init.yaml", text);
  assert.ok(text.startsWith("#cloud-config\n"));
  const doc = yaml.load(text) as Record<string, any>;
  assert.equal(doc.disable_root, false);
  assert.equal(doc.ssh_pwauth, false);
  assert.equal(doc.hostname, "cp-2");
  assert.match(doc.write_files[0].content, /^PermitRootLogin prohibit-password$/m);
  assert.match(doc.write_files[0].content, /^PasswordAuthentication no$/m);
  assert.equal(doc.ssh_keys.ed25519_private, hostKey.privateKeyOpenssh);
  assert.equal(doc.ssh_keys.ed25519_public, hostKey.publicKeyOpenssh.trim());
  assert.equal(doc.ssh_deletekeys, true);
  assert.deepEqual(doc.ssh_genkeytypes, []);
  assert.match(doc.write_files[0].content, /^HostKey \/etc\/ssh\/ssh_host_ed25519_key$/m);
});

test("NLB detection time is interval x unhealthy threshold", () => {
  assert.equal(nlbDetectionSeconds(), 20);
  assert.equal(nlbDetectionSeconds({ intervalSeconds: 5, unhealthyThreshold: 3 }), 15);
});
