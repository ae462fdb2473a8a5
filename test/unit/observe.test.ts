// Drift observation: what a refresh records (pure judge), the observe and record scripts run
// for real against stub commands, the local machines' state, and the observation provider's
// refusal to dial a host whose stack bridge is missing.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { judge, Known, noRepairs, OBSERVE_SCRIPT, parseObservation, recordStepFunction, repairLine } from "../../components/observe/observe";
import { hostObservationProvider } from "../../components/observe/hostObservation";
import { hostKeyProblem, knownHostsLine, runOverSsh, sshArgv } from "../../components/observe/ssh";
import * as net from "net";
import { localMachineProblem, localMachinesStateProvider, observeLocalMachines } from "../../components/machines/localState";
import { command } from "../../components/remote/shell";
import { stubsDisposedAfterTests } from "../helpers/stubs";
import { tempDir } from "../helpers/tools";

const stubs = stubsDisposedAfterTests();

const known: Known = { machineId: "aaaa1111", repairs: noRepairs() };

test("judge: nothing found keeps the very same state, so a refresh changes nothing", () => {
  assert.equal(judge(known, { machineId: "aaaa1111", drift: {} }), known);
});

test("judge: a different machine, an unreachable host and a stopped service each move their generation forward", () => {
  const replaced = judge(known, { machineId: "bbbb2222", drift: {} });
  assert.equal(replaced.machineId, "bbbb2222");
  assert.match(replaced.repairs.host, /^1 a different machine \(machine-id aaaa1111 -> bbbb2222\)$/);
  assert.equal(replaced.repairs.etcd, "0");
  const gone = judge(replaced, "unreachable over SSH: connect timed out");
  assert.match(gone.repairs.host, /^2 unreachable over SSH/);
  const stopped = judge(known, { machineId: "aaaa1111", drift: { etcd: "etcd.service is inactive" } });
  assert.equal(stopped.repairs.etcd, "1 etcd.service is inactive");
  assert.equal(stopped.repairs.host, "0");
  assert.equal(judge(stopped, { machineId: "aaaa1111", drift: { etcd: "etcd.service is failed" } }).repairs.etcd, "2 etcd.service is failed");
  // The first look at a host records its id without calling it a replacement.
  assert.equal(judge({ machineId: "", repairs: noRepairs() }, { machineId: "cccc", drift: {} }).repairs.host, "0");
});

test("repairLine: no header line while a component was never repaired", () => {
  assert.equal(repairLine(noRepairs(), "etcd"), "");
  assert.equal(repairLine(undefined, "etcd"), "");
  assert.equal(repairLine({ ...noRepairs(), etcd: "3 etcd.service is inactive" }, "etcd"), "repair etcd 3 etcd.service is inactive");
});

test("parseObservation reads the machine id and the first problem per component, and ignores unknown components", () => {
  const seen = parseObservation("machine-id abc\ndrift etcd etcd.service is inactive\ndrift etcd later\ndrift bogus x\n");
  assert.deepEqual(seen, { machineId: "abc", drift: { etcd: "etcd.service is inactive" } });
  assert.equal(parseObservation("Permission denied"), undefined);
});

test("the record and observe scripts: unchanged files and active units are no drift; a changed file or a unit that stays down is", () => {
  const dir = tempDir("observe");
  const steps = path.join(dir, "steps");
  const unit = path.join(dir, "etcd.service");
  const env = path.join(dir, "member.env");
  fs.writeFileSync(unit, "[Unit]\n");
  fs.writeFileSync(env, "A=1\n");
  const vars = { HAKUBE_STEPS_DIR: steps };
  const record = stubs({}).run(`${recordStepFunction}\n${command(["hakube_record_step", "etcd", "etcd.service", "--", unit, env])}`, vars);
  assert.equal(record.status, 0, record.stderr);
  assert.equal(fs.statSync(steps).mode & 0o777, 0o700, "the record is root's only");
  assert.equal(fs.readFileSync(path.join(steps, "etcd.units"), "utf8"), "etcd.service\n");

  const healthy = stubs({ systemctl: [{ stdout: "active\n" }] });
  const ok = healthy.run(OBSERVE_SCRIPT, vars);
  assert.equal(ok.status, 0, ok.stderr);
  assert.deepEqual(parseObservation(ok.stdout)?.drift, {});
  assert.deepEqual(healthy.argv("systemctl"), [["is-active", "etcd.service"]]);

  // A restart in progress: down at the first look, active at the second.
  const restarting = stubs({ systemctl: [{ stdout: "activating\n", exitCode: 3 }, { stdout: "active\n" }] });
  assert.deepEqual(parseObservation(restarting.run(OBSERVE_SCRIPT, vars).stdout)?.drift, {});

  const down = stubs({ systemctl: [{ stdout: "inactive\n", exitCode: 3 }] });
  assert.deepEqual(parseObservation(down.run(OBSERVE_SCRIPT, vars).stdout)?.drift, { etcd: "etcd.service is inactive" });

  fs.writeFileSync(env, "A=2\n");
  const changed = parseObservation(healthy.run(OBSERVE_SCRIPT, vars).stdout);
  assert.deepEqual(changed?.drift, { etcd: `changed or missing: ${env}` });
  fs.rmSync(unit);
  assert.match(parseObservation(healthy.run(OBSERVE_SCRIPT, vars).stdout)?.drift.etcd ?? "", new RegExp(`changed or missing: .*${unit.replace(/[.]/g, "\\.")}`));
});

test("local machines: gone, stopped and running are told apart from the host's files alone", () => {
  const dir = tempDir("machines");
  const m = { name: "cp-2", dir: path.join(dir, "cp-2"), netns: "hk-test-none" };
  assert.match(localMachineProblem(m) ?? "", /cp-2 is gone/);
  fs.mkdirSync(path.join(m.dir, "root"), { recursive: true });
  fs.writeFileSync(`${m.dir}.instance`, "token\n");
  assert.match(localMachineProblem(m) ?? "", /cp-2 is not running/);
  // A pid file naming a live process that is not this machine's nspawn is not running either.
  fs.writeFileSync(`${m.dir}.pid`, `${process.pid}\n`);
  assert.match(localMachineProblem(m) ?? "", /cp-2 is not running/);
});

test("local machines state: a refresh that finds nothing returns the same state; each loss moves the machine's generation", async () => {
  const created = await localMachinesStateProvider.create!({ machines: [{ name: "cp-1", dir: "/x/cp-1", netns: "n1" }, { name: "cp-2", dir: "/x/cp-2", netns: "n2" }] });
  const state = created.outs;
  assert.deepEqual(state.repairs, { "cp-1": "0", "cp-2": "0" });
  assert.equal(observeLocalMachines(state, () => undefined), state);
  const once = observeLocalMachines(state, (m) => (m.name === "cp-2" ? "machine cp-2 is gone" : undefined));
  assert.deepEqual(once.repairs, { "cp-1": "0", "cp-2": "1 machine cp-2 is gone" });
  assert.equal(observeLocalMachines(once, (m) => (m.name === "cp-2" ? "gone" : undefined)).repairs["cp-2"], "2 gone");
  // A resize keeps the generations of the machines that stay.
  const grown = await localMachinesStateProvider.update!("id", once, { machines: [...state.machines, { name: "cp-3", dir: "/x/cp-3", netns: "n3" }] });
  assert.deepEqual(grown.outs.repairs, { "cp-1": "0", "cp-2": "1 machine cp-2 is gone", "cp-3": "0" });
});

test("host observation: no packet while the stack's bridge is missing; a new instance is a change, the same inputs are not", async () => {
  const props = {
    name: "cp-1",
    connection: { host: "10.213.250.11", user: "root", privateKey: "not a key" },
    instance: "i-1",
    network: { bridge: "hkabsent0", subnet: "10.213.250.0/24" },
    machineId: "aaaa",
    repairs: noRepairs(),
  };
  const read = await hostObservationProvider.read!("observe-cp-1", props);
  assert.match(read.props.repairs.host, /^1 unreachable: stack this: bridge hkabsent0 with 10.213.250.0\/24 is missing/);
  assert.equal(read.props.machineId, "aaaa");
  const same = await hostObservationProvider.diff!("observe-cp-1", props, { name: "cp-1", connection: props.connection, instance: "i-1", network: props.network });
  assert.equal(same.changes, false);
  const replaced = await hostObservationProvider.diff!("observe-cp-1", props, { name: "cp-1", connection: props.connection, instance: "i-2", network: props.network });
  assert.equal(replaced.changes, true);
  const noKey = await hostObservationProvider.read!("observe-cp-1", { ...props, connection: { host: "10.213.250.11" } });
  assert.equal(noKey.props.repairs.host, "0", "nothing to look with: nothing recorded");
});

test("ssh argv: the key is a file, never a value on the command line; a bastion goes through ProxyCommand", () => {
  const argv = sshArgv(
    { host: "10.0.1.5", user: "admin", privateKey: "SECRET", hostKey: "ssh-ed25519 AAAAhost", proxy: { host: "bastion", user: "ops", hostKey: "ssh-rsa AAAAjump" } },
    { key: "/t/key", proxyKey: "/t/pk", knownHosts: "/t/known_hosts" },
  );
  assert.ok(!argv.join(" ").includes("SECRET"));
  assert.deepEqual(argv.slice(-3), ["admin@10.0.1.5", "bash", "-s"]);
  assert.ok(argv.includes("/t/key"));
  const proxy = argv.find((a) => a.startsWith("ProxyCommand="));
  assert.match(proxy ?? "", /ssh .* -i \/t\/pk -p 22 -W %h:%p ops@bastion$/);
  // Both hops verify the pinned key: strict checking against the one known-hosts file.
  const options = (a: string[]) => a.filter((_, i) => a[i - 1] === "-o");
  assert.ok(options(argv).includes("StrictHostKeyChecking=yes") && options(argv).includes("UserKnownHostsFile=/t/known_hosts"));
  assert.ok(options(argv).includes("HostKeyAlgorithms=ssh-ed25519"));
  assert.ok(!argv.some((a) => /StrictHostKeyChecking=(no|accept-new)|UserKnownHostsFile=\/dev\/null/.test(a)), "no option that skips the check");
  assert.match(proxy ?? "", /StrictHostKeyChecking=yes .*UserKnownHostsFile=\/t\/known_hosts -o HostKeyAlgorithms=rsa-sha2-512,rsa-sha2-256/);
  assert.equal(knownHostsLine("10.0.1.5", 22, "ssh-ed25519 AAAAhost comment"), "10.0.1.5 ssh-ed25519 AAAAhost");
  assert.equal(knownHostsLine("10.0.1.5", 2222, "ssh-ed25519 AAAAhost"), "[10.0.1.5]:2222 ssh-ed25519 AAAAhost");
});

test("ssh: a connection without the host's key, or with a malformed one, is refused before anything is sent (no TCP connection at all)", async () => {
  const seen: string[] = [];
  const server = net.createServer((sock) => {
    sock.on("data", (d) => seen.push(d.toString()));
    sock.on("error", () => undefined);
    setTimeout(() => sock.destroy(), 200);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  try {
    for (const hostKey of [undefined, "not-a-key", "ssh-ed25519 AAAA\nssh-ed25519 BBBB"]) {
      const r = await runOverSsh({ host: "127.0.0.1", port, privateKey: "a made-up key (never used: refused before)", hostKey }, "touch /tmp/should-not-run", 5000);
      assert.equal(r.code, -1);
      assert.match(r.stderr, /refused to connect to 127\.0\.0\.1: (no host key in the connection|the connection's hostKey is not one public key)/);
    }
    assert.deepEqual(seen, [], "nothing reached the host");
  } finally {
    server.close();
  }
  assert.equal(hostKeyProblem("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA"), undefined);
});
