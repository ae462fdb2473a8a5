// End to end on real machines: `pulumi up` of the local stack, the status checks as
// assertions, kubectl through the VIP, encryption at rest, no private key in plain state,
// a no-change preview, and a destroy that leaves nothing behind. Needs root and the
// toolchain (scripts/setup.sh); .ci/run provides both.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { allMachines, Credentials, LocalOutputs, pulumi, ROOT, run, stackOutputs } from "../../ops/localStack";
import { collectStatus, ControlPlaneStatus, formatStatus, statusProblems } from "../../ops/status";
import { backupList, backupNow, destroyEtcdData, setRestoreRequest } from "../../ops/backups";
import { LOAD_ETCDCTL_ENV } from "../../ops/parse";
import { destroyMachine, killMachine, upReport } from "../../ops/scenarios";
import { collectCisFacts, evaluateCis, formatCisReport, tlsProbeScript } from "../../ops/cis";

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
  assert.equal(r.status, 0, `pulumi up failed:\n${upReport(r)}`);
}

function destroy() {
  const r = pulumi(["destroy", "--yes", "--skip-preview"], 600_000);
  timings.destroySeconds = r.seconds;
  return r;
}

/** The tracked stack file: tests that `pulumi config set` write into it; put back as it was after. */
const STACK_FILE = path.join(ROOT, "stacks", "Pulumi.local.yaml");
const stackFileBefore = fs.readFileSync(STACK_FILE, "utf8");

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
  fs.writeFileSync(STACK_FILE, stackFileBefore);
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

test("CIS: every automated control-plane and etcd check passes on every control-plane machine (etcd as its own account)", () => {
  for (const host of outputs.hosts) {
    const results = evaluateCis(collectCisFacts(cred, host.address));
    const report = formatCisReport(host.name, results);
    assert.deepEqual(results.filter((r) => r.verdict === "fail").map((r) => r.id), [], report);
    assert.equal(results.find((r) => r.id === "1.1.12")!.verdict, "pass", "the data directory is etcd's");
    assert.equal(results.find((r) => r.id === "hakube.etcd.user")!.verdict, "pass");
  }
});

test("TLS: apiserver, etcd (client and peer), controller-manager, scheduler and the balancer refuse TLS 1.1 and CBC ciphers, and accept TLS 1.3 and AEAD TLS 1.2 ciphers", () => {
  const host = outputs.hosts[0];
  // From the machine itself, to its own ports (the balancer's frontend passes TLS through).
  const r = cred.ssh(host.address, tlsProbeScript([6443, 8443, 2379, 2380, 10257, 10259], host.address), 120_000);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  for (const port of [6443, 8443, 2379, 2380, 10257, 10259]) {
    assert.ok(lines.includes(`${port} tls1.1 refused`), `${port}: ${r.stdout}`);
    assert.ok(lines.includes(`${port} cbc refused`), `${port}: ${r.stdout}`);
    assert.ok(lines.includes(`${port} aead accepted`), `${port}: ${r.stdout}`);
    assert.ok(lines.includes(`${port} tls1.3 accepted`), `${port}: ${r.stdout}`);
  }
});

test("admission: a Service claiming an external IP is refused (DenyServiceExternalIPs)", () => {
  const manifest = JSON.stringify({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name: "hakube-external-ip", namespace: "default" },
    spec: { ports: [{ port: 80 }], externalIPs: ["203.0.113.10"] },
  });
  const refused = cred.kubectl(["create", "--dry-run=server", "-f", "-"], manifest);
  assert.notEqual(refused.status, 0, refused.stdout);
  assert.match(refused.stderr, /externalIPs|DenyServiceExternalIPs/i);
});

test("expiry: the stack output lists every certificate soonest first, as the machines hold them; the status summary shows the soonest; no renewal warning", () => {
  const list = outputs.certificateExpiry ?? [];
  assert.ok(list.length >= 20, `${list.length} certificates`);
  assert.ok(list.every((c, i) => i === 0 || Date.parse(list[i - 1].notAfter) <= Date.parse(c.notAfter)), "soonest first");
  assert.ok(Date.parse(list[0].notAfter) - Date.now() > 300 * 86_400_000, "a new stack's leaves are valid for a year");
  const host = outputs.hosts[0];
  const entry = list.find((c) => c.name === `local-pki-apiserver-${host.name}`);
  assert.ok(entry, list.map((c) => c.name).join(", "));
  const r = cred.ssh(host.address, "openssl x509 -noout -enddate -in /etc/kubernetes/pki/apiserver.crt");
  assert.equal(r.status, 0, r.stderr);
  assert.equal(Date.parse(r.stdout.trim().replace(/^notAfter=/, "")), Math.floor(Date.parse(entry.notAfter) / 1000) * 1000, "the serving certificate on the machine is the one in the output");
  assert.match(formatStatus(status), /certificates\s+\d+, soonest to expire first:\n {4}\S+ until \S+ \(\d+ days; renews from \d{4}-\d\d-\d\d\)/);
  assert.doesNotMatch(upOutput, /certificate-renewal-window/, "no certificate inside its renewal window");
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

/** Polls `check` every 2 s, at most `attempts` times. */
async function eventually<T>(what: string, attempts: number, check: () => T | undefined): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const v = check();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 2000));
  }
  throw new Error(`${what}: not within ${attempts * 2} s`);
}

function kubectlJson(args: string[]): any {
  const r = cred.kubectl([...args, "-o", "json"]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

// ---- Worker nodes, pods and the add-ons made through the real Kubernetes provider ----

const PODS_NS = "hakube-e2e-pods";
const PROBE_IMAGE = "hakube.local/probe:1";

/** A pod of the probe image pinned to a node, answering HTTP on 8080 with its name. */
function probePod(name: string, node: string): string {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: PODS_NS, labels: { app: name } },
    spec: {
      nodeName: node,
      serviceAccountName: "probe",
      securityContext: { runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true },
      containers: [{ name: "probe", image: PROBE_IMAGE, imagePullPolicy: "Never", args: ["serve"], ports: [{ containerPort: 8080 }] }],
    },
  });
}

function kubectlOk(args: string[], input?: string): string {
  const r = cred.kubectl(args, input, 60_000);
  assert.equal(r.status, 0, `kubectl ${args.join(" ")}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

test("workers: every node joined through TLS bootstrapping and is Ready at its own address", () => {
  assert.equal(outputs.workers?.length, 2, "the local stack has two workers");
  const nodes = kubectlJson(["get", "nodes"]).items;
  assert.deepEqual(nodes.map((n: any) => n.metadata.name).sort(), outputs.workers!.map((w) => w.name).sort());
  for (const n of nodes) {
    const ready = n.status.conditions.find((c: any) => c.type === "Ready");
    assert.equal(ready?.status, "True", `${n.metadata.name}: ${JSON.stringify(ready)}`);
    const worker = outputs.workers!.find((w) => w.name === n.metadata.name)!;
    assert.ok(n.status.addresses.some((a: any) => a.type === "InternalIP" && a.address === worker.address), JSON.stringify(n.status.addresses));
  }
  // Client certificates from the bootstrap token (approved by the controller-manager),
  // serving certificates approved by hakube's approver: both from the cluster CA, for
  // this node's name (and, serving, its address).
  for (const w of outputs.workers!) {
    const r = cred.ssh(
      w.address,
      `cd /var/lib/kubelet/pki
for f in kubelet-client-current.pem kubelet-server-current.pem; do
  openssl x509 -in "$f" -noout -subject -issuer -ext subjectAltName -nameopt compat 2>/dev/null | tr '\\n' ' '; echo
done`,
    );
    assert.equal(r.status, 0, r.stderr);
    const [client, serving] = r.stdout.trim().split("\n");
    assert.match(client, new RegExp(`subject=/O=system:nodes/CN=system:node:${w.name} issuer=/CN=kubernetes`), `${w.name}'s client certificate: ${client}`);
    assert.match(serving, new RegExp(`subject=/O=system:nodes/CN=system:node:${w.name} issuer=/CN=kubernetes .*IP Address:${w.address.replace(/\./g, "\\.")}`), `${w.name}'s serving certificate: ${serving}`);
  }
});

test("workers: a pod on each node resolves kubernetes.default.svc, lists namespaces with its token, reaches the other pod and its Service", async () => {
  const [w1, w2] = outputs.workers!;
  kubectlOk(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: PODS_NS } }));
  kubectlOk(["-n", PODS_NS, "create", "serviceaccount", "probe"]);
  // RBAC granted for the test: the probe's service account may list namespaces.
  kubectlOk(["create", "clusterrole", "hakube-e2e-list-namespaces", "--verb=list", "--resource=namespaces"]);
  kubectlOk(["create", "clusterrolebinding", "hakube-e2e-list-namespaces", "--clusterrole=hakube-e2e-list-namespaces", `--serviceaccount=${PODS_NS}:probe`]);
  kubectlOk(["apply", "-f", "-"], probePod("probe-a", w1.name));
  kubectlOk(["apply", "-f", "-"], probePod("probe-b", w2.name));
  kubectlOk(["-n", PODS_NS, "expose", "pod", "probe-b", "--port=8080", "--name=probe-b"]);
  kubectlOk(["-n", PODS_NS, "wait", "--for=condition=Ready", "pod/probe-a", "pod/probe-b", "--timeout=120s"]);
  const pod = (name: string) => kubectlJson(["-n", PODS_NS, "get", "pod", name]);
  const a = pod("probe-a");
  const b = pod("probe-b");
  assert.equal(a.spec.nodeName, w1.name);
  assert.equal(b.spec.nodeName, w2.name);
  assert.ok(a.status.podIP.startsWith(w1.podCidr.split(".").slice(0, 3).join(".") + "."), `probe-a's IP ${a.status.podIP} in ${w1.podCidr}`);
  assert.ok(b.status.podIP.startsWith(w2.podCidr.split(".").slice(0, 3).join(".") + "."), `probe-b's IP ${b.status.podIP} in ${w2.podCidr}`);
  const exec = (name: string, args: string[]) => kubectlOk(["-n", PODS_NS, "exec", name, "--", "/probe", ...args]);
  for (const name of ["probe-a", "probe-b"]) {
    assert.equal(exec(name, ["resolve", "kubernetes.default.svc"]).trim(), "10.96.0.1", `${name} resolves the API's Service`);
    const list = JSON.parse(exec(name, ["api", "/api/v1/namespaces"]));
    assert.ok(list.items.some((n: any) => n.metadata.name === PODS_NS), `${name} lists namespaces with its token`);
  }
  // Across nodes: pod to pod (each way), pod to a Service, by name through the cluster DNS.
  assert.equal(exec("probe-a", ["get", `http://${b.status.podIP}:8080/`]).trim(), "probe-b");
  assert.equal(exec("probe-b", ["get", `http://${a.status.podIP}:8080/`]).trim(), "probe-a");
  assert.equal(exec("probe-a", ["get", `http://probe-b.${PODS_NS}.svc.cluster.local:8080/`]).trim(), "probe-b");
  // The apiserver reached each kubelet over TLS it verified (exec above; logs here).
  assert.equal(kubectlOk(["-n", PODS_NS, "logs", "probe-a"]).includes("panic"), false);
});

test("add-ons through the real Kubernetes provider: node RBAC, the bootstrap token with its expiry, CoreDNS ready on two nodes", () => {
  for (const b of ["hakube:kubelet-bootstrap", "hakube:node-autoapprove-bootstrap", "hakube:node-autoapprove-certificate-rotation", "hakube:kubelet-serving-approver"]) {
    kubectlOk(["get", "clusterrolebinding", b]);
  }
  const tokens = kubectlJson(["-n", "kube-system", "get", "secrets", "--field-selector", "type=bootstrap.kubernetes.io/token"]).items;
  assert.equal(tokens.length, 1, "one bootstrap token");
  const expiry = Date.parse(Buffer.from(tokens[0].data.expiration, "base64").toString());
  assert.ok(expiry > Date.now() && expiry < Date.now() + 25 * 3600 * 1000, `expires within a day: ${new Date(expiry).toISOString()}`);
  const dns = kubectlJson(["-n", "kube-system", "get", "deployment", "coredns"]);
  assert.equal(dns.status.readyReplicas, 2);
  const nodes = new Set(kubectlJson(["-n", "kube-system", "get", "pods", "-l", "k8s-app=kube-dns"]).items.map((p: any) => p.spec.nodeName));
  assert.equal(nodes.size, 2, "one CoreDNS on each worker");
  assert.equal(kubectlOk(["-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}"]), outputs.clusterDns);
});

const storageDir = () => `/var/lib/hakube/object-store/${outputs.backupStorage!.bucket}/${outputs.backupStorage!.prefix}`;

test("backups: the first one right after deployment, one more on demand, in storage as ciphertext and in the status summary", async () => {
  assert.ok(outputs.backupStorage && outputs.storageHosts?.length === 1, "the local stack has its object store");
  const first = await eventually("the first backup", 60, () => backupList(cred, outputs)[0]);
  assert.equal(first.cluster.length, 16);
  const made = await backupNow(cred, outputs);
  assert.notEqual(made.name, first.name);
  assert.ok(made.revision >= first.revision && made.totalKey > 0, JSON.stringify(made));
  const st = collectStatus(outputs, cred);
  assert.equal(st.backups?.latest?.name, made.name);
  assert.deepEqual(st.backups?.failures, []);
  assert.match(formatStatus(st), new RegExp(`last etcd backup +${made.name}`));
  // What storage holds is ciphertext: no Secret value or etcd key in it.
  const grep = cred.ssh(outputs.storageHosts![0].address, `grep -c -a /registry/ ${storageDir()}/${made.name}.db.cms || true`);
  assert.equal(grep.stdout.trim(), "0");
});

test("restore: refused with nothing stopped for a cluster that has quorum, a backup that does not exist, a corrupt one and a wrong key", () => {
  const pids = () => outputs.hosts.map((h) => cred.ssh(h.address, "systemctl show -P MainPID kube-apiserver.service etcd.service").stdout.trim());
  const before = pids();
  const refused = (from: string, confirm: string | undefined, message: RegExp) => {
    setRestoreRequest(from, confirm);
    const r = pulumi(["up", "--yes", "--skip-preview", "--refresh"], 900_000);
    const out = r.stdout + r.stderr;
    assert.notEqual(r.status, 0, out.slice(-3000));
    assert.match(out, message);
    assert.doesNotMatch(out, /stopped kube-apiserver.service for the restore/);
  };
  refused("latest", undefined, /refusing to restore: etcd still has quorum/);
  refused("etcd-20000101T000000Z-r1", "replace-a-healthy-cluster", /backup 'etcd-20000101T000000Z-r1' does not exist/);
  const latest = backupList(cred, outputs).pop()!;
  const object = `${storageDir()}/${latest.name}.db.cms`;
  const store = outputs.storageHosts![0].address;
  assert.equal(cred.ssh(store, `cp -p ${object} ${object}.good && printf 'x' | dd of=${object} bs=1 seek=4096 conv=notrunc status=none`).status, 0);
  try {
    refused(latest.name, "replace-a-healthy-cluster", /cannot be decrypted: the file is corrupt or truncated/);
    // A wrong key: the same backup encrypted to a key of another stack, its manifest unchanged.
    const other = "/root/hakube-other-backup-key";
    const reencrypt =
      `set -e; umask 077; openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=another-stack -days 1 -keyout ${other}.key -out ${other}.crt 2>/dev/null; ` +
      `head -c 65536 /dev/urandom > ${other}.bin; openssl cms -encrypt -binary -aes-256-gcm -outform DER -in ${other}.bin -out ${object} ${other}.crt; rm -f ${other}.*`;
    assert.equal(cred.ssh(store, reencrypt).status, 0);
    refused(latest.name, "replace-a-healthy-cluster", /cannot be decrypted: .*encrypted to another key/);
    // The manifest names another backup key: refused before anything is downloaded.
    const manifest = `${storageDir()}/${latest.name}.json`;
    assert.equal(cred.ssh(store, `cp -p ${manifest} ${manifest}.good && sed -i 's/"recipient":"[0-9A-F]*"/"recipient":"0BADC0DE"/' ${manifest}`).status, 0);
    try {
      refused(latest.name, "replace-a-healthy-cluster", /was encrypted to another backup key \(certificate serial 0BADC0DE/);
    } finally {
      cred.ssh(store, `mv -f ${manifest}.good ${manifest}`);
    }
  } finally {
    cred.ssh(store, `mv -f ${object}.good ${object}`);
  }
  setRestoreRequest();
  assert.deepEqual(pids(), before, "no apiserver or etcd member was restarted");
  const clean = pulumi(["up", "--yes", "--skip-preview"], 900_000);
  assert.equal(clean.status, 0, clean.stdout.slice(-3000));
});

test("restore: every member's data destroyed, then one pulumi up --refresh brings back every object written before the backup", async (t) => {
  const ns = "hakube-restore";
  const items = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
    ...Array.from({ length: 20 }, (_, i) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${i}`, namespace: ns }, data: { value: `config-${i}` } })),
    ...Array.from({ length: 5 }, (_, i) => ({ apiVersion: "v1", kind: "Secret", metadata: { name: `secret-${i}`, namespace: ns }, stringData: { value: `secret-${i}` } })),
  ];
  const apply = cred.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
  assert.equal(apply.status, 0, apply.stderr);
  const backup = await backupNow(cred, outputs);
  assert.equal(cred.kubectl(["create", "configmap", "after-backup", "-n", ns, "--from-literal=value=late"]).status, 0);
  // Every member's data gone: etcd stopped, its data directory deleted.
  await destroyEtcdData(cred, outputs);
  setRestoreRequest(backup.name);
  t.after(() => setRestoreRequest());
  const r = pulumi(["up", "--yes", "--skip-preview", "--refresh"], 900_000);
  timings.restoreUpSeconds = r.seconds;
  assert.equal(r.status, 0, `the restore failed:\n${r.stdout.slice(-5000)}\n${r.stderr.slice(-2000)}`);
  const restored = pulumi(["stack", "output", "restoredFrom"], 60_000).stdout;
  assert.match(restored, new RegExp(`"name":"${backup.name}"`), "the stack names the backup it restored from");
  const cms = kubectlJson(["get", "configmaps", "-n", ns]).items.filter((x: any) => x.metadata.name.startsWith("cm-"));
  assert.equal(cms.length, 20);
  for (const c of cms) assert.equal(c.data.value, `config-${c.metadata.name.slice(3)}`);
  const secrets = kubectlJson(["get", "secrets", "-n", ns]).items.filter((x: any) => x.metadata.name.startsWith("secret-"));
  assert.equal(secrets.length, 5);
  for (const x of secrets) assert.equal(Buffer.from(x.data.value, "base64").toString(), `secret-${x.metadata.name.slice(7)}`);
  assert.equal(cred.kubectl(["get", "configmap", "after-backup", "-n", ns]).status, 1, "written after the backup: not restored");
  const st = await eventually("the restored control plane healthy as the up ends (its ready gate)", 3, () => {
    const s = collectStatus(outputs, cred);
    return statusProblems(s, outputs.hosts.length).length === 0 ? s : undefined;
  });
  assert.equal(st.serviceEndpoints.length, outputs.hosts.length);
  // The same request again restores nothing; removing it changes nothing on the hosts.
  const again = pulumi(["preview", "--expect-no-changes"], 300_000);
  assert.equal(again.status, 0, `a second run would restore again:\n${again.stdout.slice(-3000)}`);
  setRestoreRequest();
  const removed = pulumi(["up", "--yes", "--skip-preview"], 900_000);
  assert.equal(removed.status, 0, removed.stdout.slice(-3000));
  assert.equal(cred.kubectl(["get", "configmap", "cm-7", "-n", ns]).status, 0);
});

test("restore onto all-new machines: every control-plane machine lost with its disk, one pulumi up --refresh makes them anew from the backup", async (t) => {
  const ns = "hakube-restore-new";
  const items = [
    { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } },
    ...Array.from({ length: 10 }, (_, i) => ({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `cm-${i}`, namespace: ns }, data: { value: `new-${i}` } })),
    { apiVersion: "v1", kind: "Secret", metadata: { name: "secret", namespace: ns }, stringData: { value: "kept" } },
  ];
  const apply = cred.kubectl(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items }));
  assert.equal(apply.status, 0, apply.stderr);
  const backup = await backupNow(cred, outputs);
  const machineIds = outputs.hosts.map((h) => cred.ssh(h.address, "cat /etc/machine-id").stdout.trim());
  // As a zone outage with stacked etcd: every control-plane machine gone, storage kept.
  for (const h of outputs.hosts) await destroyMachine(h);
  setRestoreRequest("latest");
  t.after(() => setRestoreRequest());
  const r = pulumi(["up", "--yes", "--skip-preview", "--refresh"], 1_500_000);
  timings.restoreNewMachinesUpSeconds = r.seconds;
  assert.equal(r.status, 0, `the restore onto new machines failed:\n${r.stdout.slice(-6000)}\n${r.stderr.slice(-2000)}`);
  const restored = pulumi(["stack", "output", "restoredFrom"], 60_000).stdout;
  assert.match(restored, new RegExp(`"name":"${backup.name}"`), "latest resolved to the backup just taken");
  outputs.hosts.forEach((h, i) => {
    const id = cred.ssh(h.address, "cat /etc/machine-id").stdout.trim();
    assert.ok(/^[0-9a-f]{32}$/.test(id) && id !== machineIds[i], `${h.name} is a new machine`);
  });
  const cms = kubectlJson(["get", "configmaps", "-n", ns]).items.filter((x: any) => x.metadata.name.startsWith("cm-"));
  assert.equal(cms.length, 10);
  for (const c of cms) assert.equal(c.data.value, `new-${c.metadata.name.slice(3)}`);
  const secret = kubectlJson(["get", "secret", "secret", "-n", ns]);
  assert.equal(Buffer.from(secret.data.value, "base64").toString(), "kept");
  const st = await eventually("the restored control plane healthy as the up ends (its ready gate)", 3, () => {
    const s = collectStatus(outputs, cred);
    return statusProblems(s, outputs.hosts.length).length === 0 ? s : undefined;
  });
  assert.equal(st.serviceEndpoints.length, outputs.hosts.length);
  assert.ok(Object.values(st.leases).every(Boolean), `both Leases are held: ${JSON.stringify(st.leases)}`);
  const again = pulumi(["preview", "--expect-no-changes"], 300_000);
  assert.equal(again.status, 0, `a second run would change something:\n${again.stdout.slice(-3000)}`);
  setRestoreRequest();
  const removed = pulumi(["up", "--yes", "--skip-preview"], 900_000);
  assert.equal(removed.status, 0, removed.stdout.slice(-3000));
  // The stack output of the newest backup, read from storage as the program ran.
  const last = JSON.parse(pulumi(["stack", "output", "lastBackup", "--json"], 60_000).stdout);
  assert.equal(last.error, undefined, JSON.stringify(last));
  assert.ok(last.backup.name >= backup.name && last.backup.size > 0, JSON.stringify(last));
});

test("backups on a schedule: a 1-minute timer makes backups on its own and storage keeps the newest 2", async () => {
  const set = (k: string, v?: string) =>
    assert.equal((v === undefined ? pulumi(["config", "rm", `hakube:${k}`], 60_000) : pulumi(["config", "set", `hakube:${k}`, v], 60_000)).status, 0);
  const before = backupList(cred, outputs);
  assert.ok(before.length >= 3, `more backups than the 2 to keep before the change: ${before.length}`);
  set("backupIntervalMinutes", "1");
  set("backupKeep", "2");
  try {
    const r = pulumi(["up", "--yes", "--skip-preview"], 900_000);
    assert.equal(r.status, 0, r.stdout.slice(-3000));
    // The up itself takes a backup; the timer's first one comes a minute after it.
    const start = Date.now();
    const list = await eventually("a scheduled backup", 90, () => {
      const l = backupList(cred, outputs);
      return l.some((m) => Date.parse(m.time) > start + 30_000) ? l : undefined;
    });
    assert.equal(list.length, 2, `retention keeps the newest 2: ${list.map((m) => m.name).join(", ")}`);
    assert.ok(Date.parse(list[1].time) > start + 30_000, `the newest is the timer's: ${list[1].name}`);
  } finally {
    set("backupIntervalMinutes");
    set("backupKeep");
    pulumi(["up", "--yes", "--skip-preview"], 900_000);
  }
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
  // Bounded wait (in tries and in time) until the control plane is whole again (the
  // machines were cut off for a moment).
  let healthy = false;
  let last = "";
  const deadline = Date.now() + 240_000;
  for (let i = 0; i < 60 && !healthy && Date.now() < deadline; i++) {
    await new Promise((r) => setTimeout(r, 2000));
    const st = run("node", [path.join(ROOT, "build", "ops", "status.js")], { timeoutMs: 60_000 });
    healthy = st.status === 0;
    last = `${st.stdout}\n${st.stderr}`;
  }
  assert.ok(healthy, `healthy again within 4 minutes after the bridge came back; the last status:\n${last.slice(-3000)}`);
});

test("after every machine and the bridge vanished (as after a host reboot): local-down.sh leaves nothing in bounded time, local-up.sh brings it back", async () => {
  // What a reboot leaves: machine files on disk, but no process, namespace, link, bridge or route.
  for (const h of allMachines(outputs)) await killMachine(h);
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
