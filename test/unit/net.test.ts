import { test } from "node:test";
import assert from "node:assert/strict";
import { cidrsOverlap, firstHostAddress, formatIpv4, isDnsName, parseCidr, parseIpv4 } from "../../components/net";
import { compareVersions, parseVersion } from "../../components/version";

test("parseIpv4 accepts dotted quads and rejects everything else", () => {
  assert.equal(parseIpv4("10.0.0.1"), 10 * 2 ** 24 + 1);
  assert.equal(formatIpv4(parseIpv4("192.168.100.254")!), "192.168.100.254");
  for (const bad of ["10.0.0", "10.0.0.256", "01.0.0.1", "a.b.c.d", "", "10.0.0.1 "]) {
    assert.equal(parseIpv4(bad), undefined, bad);
  }
});

test("parseCidr rejects host bits and bad prefixes", () => {
  assert.deepEqual(parseCidr("10.96.0.0/12"), { network: parseIpv4("10.96.0.0"), prefix: 12, text: "10.96.0.0/12" });
  assert.equal(parseCidr("10.96.0.1/12"), undefined);
  assert.equal(parseCidr("10.96.0.0/33"), undefined);
  assert.equal(parseCidr("10.96.0.0"), undefined);
});

test("overlap and first host address", () => {
  assert.equal(cidrsOverlap(parseCidr("10.96.0.0/12")!, parseCidr("10.100.0.0/16")!), true);
  assert.equal(cidrsOverlap(parseCidr("10.96.0.0/12")!, parseCidr("10.244.0.0/16")!), false);
  assert.equal(firstHostAddress(parseCidr("10.96.0.0/12")!), "10.96.0.1");
});

test("DNS names", () => {
  assert.ok(isDnsName("api.example.com"));
  assert.ok(isDnsName("my-nlb-123.elb.eu-west-1.amazonaws.com"));
  assert.ok(!isDnsName("bad_name.example"));
  assert.ok(!isDnsName("-x.example"));
});

test("versions", () => {
  assert.equal(parseVersion("1.36.3")?.text, "v1.36.3");
  assert.equal(parseVersion("v3.6.16")?.minor, 6);
  assert.equal(parseVersion("v1.36"), undefined);
  assert.equal(parseVersion("latest"), undefined);
  assert.ok(compareVersions(parseVersion("v1.36.10")!, parseVersion("v1.36.9")!) > 0);
});
