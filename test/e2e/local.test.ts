// End to end on real machines: `pulumi up` of the local stack, the status checks as
// assertions, kubectl through the VIP, encryption at rest, no private key in plain state,
// a no-change preview, and a destroy that leaves nothing behind. Needs root and the
// toolchain (scripts/setup.sh); .ci/run provides both.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Credentials, LocalOutputs, pulumi, ROOT, run, stackOutputs } from "../../ops/localStack";
import { collectStatus, ControlPlaneStatus, formatStatus } from "../../ops/status";
import { LOAD_ETCDCTL_ENV } from "../../ops/parse";

let outputs: LocalOutputs;
let cred: Credentials;
let status: ControlPlaneStatus;
let destroyed = false;
const timings: Record<string, number> = {};

const POLICY_PACK = path.join(ROOT, "policy");
let upOutput = "";

function up(): void {
  // The HA policy pack (policy/) checks the program as the engine runs it.
  const r = pulumi(["up", "--yes", "--skip-preview", "--policy-pack", POLICY_PACK], 900_000);
  timings.upSeconds = r.seconds;
  upOutput = r.stdout + r.stderr;
  assert.equal(r.status, 0, `pulumi up failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
}

function destroy() {
  const r = pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
  timings.destroySeconds = r.seconds;
  return r;
}

before(() => {
  // A clean start: remove whatever an interrupted earlier run left.
  destroy();
  up();
  outputs = stackOutputs();
  cred = new Credentials(outputs);
  status = collectStatus(outputs, cred);
  console.log(formatStatus(status));
});

after(() => {
  cred?.dispose();
  if (!destroyed) {
    destroy();
  }
  console.log(`e2e timings: ${JSON.stringify(timings)}`);
});

test("the HA policy pack ran during pulumi up and found no violation", () => {
  assert.match(upOutput, /hakube-ha@v0\.1\.0/, "the policy pack reported");
  assert.doesNotMatch(upOutput, /\[mandatory\]/);
});

test("the API answers /readyz through the VIP", () => {
  assert.equal(status.readyz, "ok");
  assert.equal(outputs.endpoint, `https://${outputs.virtualIp}:8443`);
});

test("the kubernetes Service lists all three apiservers", () => {
  assert.deepEqual(status.serviceEndpoints, outputs.hosts.map((h) => h.address).sort());
});

test("controller-manager and scheduler Leases are held by control-plane hosts", () => {
  for (const lease of ["kube-controller-manager", "kube-scheduler"] as const) {
    const holder = status.leases[lease];
    assert.ok(outputs.hosts.some((h) => holder.startsWith(`${h.name}_`)), `${lease} holder ${JSON.stringify(holder)}`);
  }
});

test("every etcd member is healthy and exactly one leads", () => {
  assert.equal(status.etcd.length, 3);
  assert.ok(status.etcd.every((m) => m.healthy), JSON.stringify(status.etcd));
  assert.equal(status.etcd.filter((m) => m.leader).length, 1);
});

const NS = "hakube-e2e";
const SECRET_VALUE = `hakube-e2e-plaintext-${process.pid}-${Date.now()}`;

test("kubectl through the VIP creates and reads back a namespace and a Secret", () => {
  assert.equal(cred.kubectl(["create", "namespace", NS]).status, 0);
  const created = cred.kubectl(["-n", NS, "create", "secret", "generic", "probe", `--from-literal=value=${SECRET_VALUE}`]);
  assert.equal(created.status, 0, created.stderr);
  const read = cred.kubectl(["-n", NS, "get", "secret", "probe", "-o", "jsonpath={.data.value}"]);
  assert.equal(read.status, 0, read.stderr);
  assert.equal(Buffer.from(read.stdout, "base64").toString(), SECRET_VALUE);
  assert.equal(cred.kubectl(["get", "namespace", NS, "-o", "jsonpath={.status.phase}"]).stdout, "Active");
});

test("the Secret is encrypted at rest in etcd", () => {
  const r = cred.ssh(
    outputs.hosts[0].address,
    `${LOAD_ETCDCTL_ENV}
etcdctl get /registry/secrets/${NS}/probe --print-value-only | head -c 64 | tr -c '[:print:]' '.'; echo
if etcdctl get /registry/secrets/${NS}/probe --print-value-only | grep -c -a -F -- "$1" >/dev/null; then echo PLAINTEXT-FOUND; fi`.replace("$1", SECRET_VALUE),
  );
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^k8s:enc:secretbox:v1:key1:/, "stored with the secretbox provider");
  assert.doesNotMatch(r.stdout, /PLAINTEXT-FOUND/);
});

test("the Pulumi state file holds no private key or kubeconfig in plain text", () => {
  const stateFile = path.join(ROOT, ".pulumi-state", ".pulumi", "stacks", "hakube", "local.json");
  assert.ok(fs.existsSync(stateFile), stateFile);
  const state = fs.readFileSync(stateFile, "utf8");
  assert.ok(state.length > 10_000, "the state holds the deployment");
  assert.doesNotMatch(state, /BEGIN (EC |OPENSSH |RSA )?PRIVATE KEY/);
  assert.doesNotMatch(state, /client-key-data/);
  assert.ok(!state.includes(Buffer.from(`-----BEGIN EC ${"PRIVATE"} KEY`).toString("base64").slice(0, 20)), "no base64 key either");
  assert.match(state, /"4dabf18193072939515e22adb298388d"/, "secrets are stored as Pulumi secrets");
});

test("a second preview reports no changes", () => {
  const r = pulumi(["preview", "--expect-no-changes", "--diff", "--policy-pack", POLICY_PACK], 300_000);
  timings.noChangePreviewSeconds = r.seconds;
  assert.equal(r.status, 0, `preview found changes or failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-2000)}`);
});

/**
 * The "Diagnostics:" part of a Pulumi run's output, where each message is listed once
 * under its resource (the progress lines above it also show a failing resource's status).
 */
function diagnostics(out: string): string {
  const at = out.indexOf("Diagnostics:");
  return at < 0 ? "" : out.slice(at);
}

/** Lines that only a stack trace or an object dump would print. */
const TRACE = /^\s+at .+[.:]\d+|ResourceError|__pulumi|\[Object\]|^\s*[{}]\s*$/m;

test("a bad value is refused at preview with its message once, no stack trace, and the cluster untouched", () => {
  const r = pulumi(["preview", "--config", "hakube:controlPlaneCount=4"], 300_000);
  const out = r.stdout + r.stderr;
  assert.notEqual(r.status, 0, "the preview fails");
  const message = /invalid argument controlPlaneHosts \(stacked etcd\): got "4 host\(s\)"; expected an odd number of etcd members/g;
  assert.equal(diagnostics(out).match(message)?.length, 1, `the message exactly once among the diagnostics:\n${out}`);
  assert.match(diagnostics(out), /hakube:index:HaControlPlane \(local\):\n\s+error: invalid argument/, "under the resource it names");
  assert.doesNotMatch(out, TRACE, `no stack trace or object dump:\n${out}`);
  assert.doesNotMatch(out, /unhandled error|non-zero exit code/i, `no second, generic error:\n${out}`);
  const again = pulumi(["preview", "--expect-no-changes"], 300_000);
  assert.equal(again.status, 0, `the deployed stack is unchanged:\n${again.stdout.slice(-3000)}`);
});

test("an error of the stack program itself is one line too", () => {
  const r = pulumi(["preview", "--config", "hakube:machines=gcp"], 300_000);
  const out = r.stdout + r.stderr;
  assert.notEqual(r.status, 0);
  assert.equal(diagnostics(out).match(/hakube:machines is "gcp"; expected "local" or "aws"/g)?.length, 1, out);
  assert.doesNotMatch(out, TRACE, out);
  assert.doesNotMatch(out, /unhandled error|non-zero exit code/i, out);
});

test("a second checkout (another state backend) is refused the bridge at preview, and this stack is untouched", () => {
  const other = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-second-"));
  try {
    const r = run("bash", [path.join(ROOT, "scripts", "pulumi-local.sh"), "preview"], { env: { HAKUBE_STATE_DIR: other }, timeoutMs: 300_000 });
    const out = r.stdout + r.stderr;
    assert.notEqual(r.status, 0, out);
    assert.match(out, new RegExp(`invalid argument bridgeName: got "${outputs.bridge}"; expected a bridge no other stack holds: ${outputs.bridge} is held by owner=[0-9a-f]+ stack=local root=${ROOT}`));
  } finally {
    fs.rmSync(other, { recursive: true, force: true });
  }
  const same = pulumi(["preview", "--expect-no-changes"], 300_000);
  assert.equal(same.status, 0, `this stack is unchanged:\n${same.stdout.slice(-3000)}`);
});

test("traffic safety: with the bridge down, nothing is sent to the stack's addresses, and the stack comes back", async () => {
  const route = () => run("ip", ["route", "show", outputs.subnet]).stdout;
  assert.match(route(), /unreachable .* metric 4294967295/, "the guard route is installed with the bridge");
  assert.equal(run("ip", ["route", "get", outputs.virtualIp]).stdout.includes(outputs.bridge), true, "the VIP is routed by the bridge");
  run("ip", ["link", "set", outputs.bridge, "down"]);
  try {
    // The kernel answers "no route to host" (the guard route) instead of the default route.
    const get = run("ip", ["route", "get", outputs.virtualIp]);
    assert.notEqual(get.status, 0, `no route while the bridge is down: ${get.stdout}`);
    assert.throws(() => cred.ssh(outputs.hosts[0].address, "true"), /traffic safety: stack local: bridge .* does not carry/);
    const status = run("node", [path.join(ROOT, "build", "ops", "status.js")], { timeoutMs: 60_000 });
    assert.equal(status.status, 1, "the status summary fails");
    assert.match(status.stderr, /hakube: status: traffic safety: /);
  } finally {
    run("ip", ["link", "set", outputs.bridge, "up"]);
  }
  // Bounded wait until the control plane is whole again (the machines were cut off for a moment).
  let healthy = false;
  for (let i = 0; i < 60 && !healthy; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    const st = run("node", [path.join(ROOT, "build", "ops", "status.js")], { timeoutMs: 60_000 });
    healthy = st.status === 0;
  }
  assert.ok(healthy, "healthy again after the bridge came back");
});

test("after every machine and the bridge vanished (as after a host reboot): local-down.sh leaves nothing in bounded time, local-up.sh brings it back", () => {
  // What a reboot leaves: machine files on disk, but no process, namespace, link, bridge or route.
  for (const h of outputs.hosts) {
    const pid = fs.readFileSync(`${h.dir}.pid`, "utf8").trim();
    run("bash", ["-c", `kill -KILL $(ip netns pids ${h.netns}) ${pid} 2>/dev/null; sleep 0.5; ip netns del ${h.netns}; ip link del ${h.veth} 2>/dev/null; true`]);
  }
  run("ip", ["link", "del", outputs.bridge]);
  run("ip", ["route", "del", "unreachable", outputs.subnet, "metric", "4294967295"]);
  const down = run("bash", [path.join(ROOT, "scripts", "local-down.sh")], { timeoutMs: 300_000 });
  timings.localDownAfterLossSeconds = down.seconds;
  assert.equal(down.status, 0, `local-down failed:\n${down.stdout}\n${down.stderr}`);
  assert.match(down.stdout, /bridge .* is gone: cleaning up on the host/);
  assert.ok(down.seconds < 120, `bounded: ${down.seconds} s`);
  for (const h of outputs.hosts) assert.ok(!fs.existsSync(h.dir!), `${h.dir} removed`);
  const up = run("bash", [path.join(ROOT, "scripts", "local-up.sh")], { timeoutMs: 900_000 });
  timings.localUpAgainSeconds = up.seconds;
  assert.equal(up.status, 0, `local-up failed:\n${up.stdout.slice(-3000)}\n${up.stderr.slice(-2000)}`);
  assert.match(up.stdout, /etcd members/);
  cred.dispose();
  outputs = stackOutputs();
  cred = new Credentials(outputs);
  assert.equal(collectStatus(outputs, cred).serviceEndpoints.length, 3);
});

test("destroy leaves no machine, namespace, link or bridge behind", () => {
  const r = destroy();
  destroyed = true;
  assert.equal(r.status, 0, r.stderr);
  const links = run("ip", ["-o", "link", "show"]).stdout;
  assert.ok(!links.includes(`${outputs.bridge}:`) && !links.includes(`${outputs.bridge}v`), `links left: ${links}`);
  const namespaces = run("ip", ["netns", "list"]).stdout;
  for (const h of outputs.hosts) {
    assert.ok(!namespaces.includes(h.netns), `namespace ${h.netns} left`);
  }
  const procs = run("pgrep", ["-f", `systemd-nspawn.*${outputs.bridge}`]);
  assert.equal(procs.stdout.trim(), "", "no nspawn process left");
  assert.equal(run("ip", ["route", "show", outputs.subnet]).stdout.trim(), "", "no route left for the subnet");
  const dir = `/var/lib/hakube/machines/${outputs.bridge}`;
  assert.ok(!fs.existsSync(dir) || fs.readdirSync(dir).length === 0, `machine files left in ${dir}`);
});
