import { test } from "node:test";
import assert from "node:assert/strict";
import { findSubnetConflict } from "../../components/machines/localMachines";
import * as fs from "fs";
import { baseImageScript, machineCleanupScript, machineCreateScript, machineDeleteScript, MachineSpec, networkCreateScript, nspawnLockFile } from "../../components/machines/localRender";
import { run, tempDir } from "../helpers/tools";

const routes = `default via 192.0.2.1 dev eth0
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
10.213.7.0/24 dev hkabc123 proto kernel scope link src 10.213.7.1
`;

test("a bridge subnet already routed on the host is found; our own bridge's route is not a conflict", () => {
  assert.equal(findSubnetConflict(routes, "192.0.2.0/25", "hkabc123"), "192.0.2.0/24 is routed via eth0");
  assert.equal(findSubnetConflict(routes, "10.213.7.0/24", "hkabc123"), undefined);
  assert.equal(findSubnetConflict(routes, "10.213.7.0/24", "other"), "10.213.7.0/24 is routed via hkabc123");
  assert.equal(findSubnetConflict(routes, "10.214.0.0/24", "hkabc123"), undefined, "the default route is no conflict");
});

const spec: MachineSpec = {
  name: "cp-1",
  image: "/var/cache/hakube/images/bookworm-x",
  dir: "/var/lib/hakube/machines/hkabc123/cp-1",
  netns: "hkabc123-1",
  veth: "hkabc123v1",
  bridge: "hkabc123",
  address: "10.213.7.11",
  prefixLength: 24,
  gateway: "10.213.7.1",
  bootTimeoutSeconds: 60,
};

test("machine scripts are valid bash, clean up leftovers first, and bound their waits", () => {
  for (const script of [machineCreateScript(spec), machineDeleteScript(spec), networkCreateScript({ bridge: "hkabc123", hostCidr: "10.213.7.1/24", subnet: "10.213.7.0/24", owner: "hakube owner=0123456789ab stack=local root=/work/main" }),
    baseImageScript({ cacheDir: "/var/cache/hakube/images", suite: "bookworm", mirror: "http://deb.debian.org/debian", packages: ["systemd"], key: "k" })]) {
    const r = run("bash", ["-n", "-c", script]);
    assert.equal(r.status, 0, r.stderr);
  }
  const create = machineCreateScript(spec);
  assert.ok(create.indexOf("ip netns del hkabc123-1") < create.indexOf("ip netns add hkabc123-1"), "leftovers removed before creating");
  assert.match(create, /--network-namespace-path=\/run\/netns\/hkabc123-1/);
  assert.match(create, /--register=no --keep-unit/);
  assert.match(create, /--capability=CAP_NET_ADMIN,CAP_NET_RAW/);
  assert.match(create, /for i in \$\(seq 1 \$\(\( 60 \* 2 \)\)\)/, "SSH wait bounded by bootTimeoutSeconds");
  assert.doesNotMatch(create, /PRIVATE KEY/);
  assert.match(machineDeleteScript(spec), /ip link del hkabc123v1/);
  // Each machine made is a new machine: its own machine-id and a new instance token.
  assert.match(create, /random\/uuid > '?\/var\/lib\/hakube\/machines\/hkabc123\/cp-1'?\/etc\/machine-id/);
  assert.match(create, /random\/uuid > '?\/var\/lib\/hakube\/machines\/hkabc123\/cp-1'?\.instance/);
  assert.match(create, /echo "hakube-instance \$\(cat /);
  assert.match(machineDeleteScript(spec), /\.instance/, "the token goes with the machine");
  // The pid file names the nspawn process, not the shell running this script (whose
  // command line holds the same --directory text).
  assert.match(create, /pgrep -f -o -- "\^systemd-nspawn \.\*--directory=\/var\/lib\/hakube\/machines\/hkabc123\/cp-1 "/);
});

test("the bridge carries its owner: alias written at create, read back by owner id", async () => {
  const { bridgeOwnerAlias, ownerOfAlias } = await import("../../components/machines/localRender");
  const alias = bridgeOwnerAlias("0123456789ab", "local", "/work/my checkout");
  assert.equal(alias, "hakube owner=0123456789ab stack=local root=/work/my checkout");
  assert.equal(ownerOfAlias(alias), "0123456789ab");
  assert.equal(ownerOfAlias("something else"), undefined);
  assert.equal(bridgeOwnerAlias("ab", "s", "/x'$(y)"), "hakube owner=ab stack=s root=/x___y_", "no quotes, $ or parentheses in an alias");
  const script = networkCreateScript({ bridge: "hkabc123", hostCidr: "10.213.7.1/24", subnet: "10.213.7.0/24", owner: alias });
  assert.match(script, /ip link set hkabc123 alias 'hakube owner=0123456789ab stack=local root=\/work\/my checkout'/);
  assert.match(script, /ip route replace unreachable 10\.213\.7\.0\/24 metric 4294967295/);
});

test("a killed machine's cleanup also removes systemd-nspawn's lock beside its folder (a host reboot's local-down left it)", () => {
  assert.equal(nspawnLockFile("/var/lib/hakube/machines/hkabc123/cp-1"), "/var/lib/hakube/machines/hkabc123/.#cp-1.lck");
  assert.equal(nspawnLockFile("/var/lib/hakube/machines/hkabc123/cp-1/"), "/var/lib/hakube/machines/hkabc123/.#cp-1.lck");
  const dir = tempDir("nspawn-lock");
  const machine = `${dir}/cp-1`;
  fs.mkdirSync(`${machine}/etc`, { recursive: true });
  fs.writeFileSync(`${dir}/.#cp-1.lck`, "");
  fs.writeFileSync(`${dir}/.#cp-2.lck`, "");
  const r = run("bash", ["-c", machineCleanupScript({ ...spec, dir: machine, netns: "hkzz-test-none", veth: "hkzz-none" })]);
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(fs.readdirSync(dir), [".#cp-2.lck"], "its folder and its lock gone, another machine's lock kept");
});
