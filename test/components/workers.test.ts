// WorkerPool and ClusterDns against Pulumi mocks: the graph per worker, secrets and file
// modes, what the kubelet waits for, and the refusals at preview.
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import { before, test } from "node:test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { byName, decodeBundle, ETCD_DIGEST, hosts, nameOf, program, recorded, valueOf } from "../helpers/mocks";
import { ClusterDns, HaControlPlane, WorkerPool } from "../../components";
import { kubeletSkewProblem } from "../../components/workers/workerPool";
import { vrrpInstances } from "../helpers/keepalived";

let pool: WorkerPool;
let cluster: HaControlPlane;
before(async () => {
  [cluster, pool] = await program(() => {
    const c = new HaControlPlane("w3", {
      controlPlaneHosts: hosts(3),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
    });
    const p = new WorkerPool("wp", {
      hosts: hosts(2, "worker", 70),
      controlPlane: c,
      kubernetesBinaries: { kind: "release" },
      runtimeBinaries: { kind: "packages" },
    });
    new ClusterDns("dns", { controlPlane: c, after: p.ready });
    return [c, p] as const;
  });
});

const step = (name: string) => byName(name);
async function bundleOf(name: string) {
  return decodeBundle(await valueOf<string>(step(name).props.stdin));
}

test("workers: runtime, kubelet and kube-proxy steps per worker, the approver on every control-plane host", () => {
  for (const w of ["worker-1", "worker-2"]) {
    for (const s of ["runtime", "kubelet", "kube-proxy"]) assert.ok(step(`wp-${w}-${s}`), `${w} ${s}`);
  }
  assert.deepEqual(
    recorded.filter((r) => /^wp-approver-/.test(r.name)).map((r) => r.name),
    ["wp-approver-cp-1", "wp-approver-cp-2", "wp-approver-cp-3"],
  );
  assert.deepEqual(pool.workers.map((w) => w.podCidr), ["10.244.1.0/24", "10.244.2.0/24"]);
});

test("workers: no control-plane host's keepalived takes VRRP adverts from a worker; each takes them only from the other control-plane hosts (check_unicast_src)", async () => {
  const cps = hosts(3);
  const workers = hosts(2, "worker", 70);
  for (const self of cps) {
    for (const i of vrrpInstances((await bundleOf(`w3-lb-${self.name}`)).get("/etc/keepalived/keepalived.conf")!.content)) {
      assert.equal(i.checksUnicastSource, true, `${self.name} ${i.name}: check_unicast_src`);
      const peers = i.peers.map((p) => p.address);
      assert.deepEqual(peers, cps.filter((h) => h !== self).map((h) => h.address), `${self.name} ${i.name}: exactly the other control-plane hosts`);
      for (const w of workers) assert.ok(!peers.includes(w.address), `${self.name} ${i.name}: never ${w.name}`);
    }
  }
});

test("workers: the bootstrap kubeconfig and kube-proxy's kubeconfig are 0600 on the node and hold no certificate key in plain script", async () => {
  const kubelet = await bundleOf("wp-worker-1-kubelet");
  assert.equal(kubelet.get("/etc/kubernetes/bootstrap-kubelet.conf")?.mode, "0600");
  assert.match(kubelet.get("/etc/kubernetes/bootstrap-kubelet.conf")!.content, /token: "/);
  const proxy = await bundleOf("wp-worker-1-kube-proxy");
  assert.equal(proxy.get("/etc/kubernetes/kube-proxy.conf")?.mode, "0600");
  const approver = await bundleOf("wp-approver-cp-1");
  assert.equal(approver.get("/etc/kubernetes/kubelet-serving-approver.conf")?.mode, "0600");
  assert.equal(approver.get("/etc/hakube/kubelet-serving-nodes")?.content, "worker-1 10.0.0.71\nworker-2 10.0.0.72\n");
  const script = await valueOf<string>(step("wp-worker-1-kubelet").props.create);
  assert.doesNotMatch(script, /token: |PRIVATE KEY/, "secrets travel on stdin, not in the script");
  // A changed cluster CA bundle (a CA rotation step) makes the kubelet bootstrap again.
  assert.match(script, /rebootstrap=\$\(printf '%s' "\$HAKUBE_CHANGED" \| grep -x -F \/etc\/kubernetes\/pki\/ca.crt/);
  assert.match(script, /rm -f \/var\/lib\/kubelet\/kubeconfig \/var\/lib\/kubelet\/pki\/kubelet-client-\*.pem \/var\/lib\/kubelet\/pki\/kubelet-server-\*.pem/);
  assert.match(script, /kubelet has its serving certificate/);
  assert.equal(spawnSync("bash", ["-n"], { input: script }).status, 0, "the script parses");
});

// The review's M8: one worker's bootstrap token must not get another worker's identity.
test("workers: no ClusterRoleBinding lets the controller-manager approve node client certificates for bootstrap tokens (nodeclient); nodes renew their own", async () => {
  const bindings = recorded.filter((r) => r.type === "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding");
  assert.ok(bindings.length > 0);
  const roles = await Promise.all(bindings.map(async (b) => ({ name: b.name, role: (await valueOf<{ name: string }>(b.props.roleRef)).name, subjects: await valueOf<{ kind: string; name: string }[]>(b.props.subjects) })));
  const nodeclient = roles.filter((b) => b.role === "system:certificates.k8s.io:certificatesigningrequests:nodeclient");
  assert.deepEqual(nodeclient.map((b) => `${b.name}: ${JSON.stringify(b.subjects)}`), [], "nothing bound to nodeclient");
  assert.ok(!roles.some((b) => b.subjects.some((s) => s.name.startsWith("system:bootstrappers")) && b.role !== "system:node-bootstrapper"), JSON.stringify(roles));
  const renewal = roles.find((b) => b.role === "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient");
  assert.deepEqual(renewal?.subjects.map((s) => s.name), ["system:nodes"], "nodes renew their own client certificates");
});

test("workers: each worker joins with a bootstrap token of its own, whose Secret names that node's group", async () => {
  const secrets = recorded.filter((r) => r.type === "kubernetes:core/v1:Secret" && /bootstrap-token/.test(r.name));
  const tokens: Record<string, string> = {};
  for (const w of ["worker-1", "worker-2"]) {
    const secret = secrets.find((r) => r.name === `wp-${w}-bootstrap-token`);
    assert.ok(secret, `a token Secret for ${w}; have ${secrets.map((r) => r.name).join(", ")}`);
    assert.equal(await valueOf(secret.props.type), "bootstrap.kubernetes.io/token");
    const data = await valueOf<Record<string, string>>(secret.props.stringData);
    assert.deepEqual(data["auth-extra-groups"].split(","), ["system:bootstrappers:hakube:workers", `system:bootstrappers:hakube:node:${w}`]);
    assert.equal(data["usage-bootstrap-authentication"], "true");
    tokens[w] = `${data["token-id"]}.${data["token-secret"]}`;
    const kubeconfig = (await bundleOf(`wp-${w}-kubelet`)).get("/etc/kubernetes/bootstrap-kubelet.conf")!.content;
    assert.ok(kubeconfig.includes(`token: "${tokens[w]}"`), `${w}'s bootstrap kubeconfig holds its own token`);
  }
  assert.equal(secrets.length, 2, "one token per worker, none for the pool");
  assert.notEqual(tokens["worker-1"], tokens["worker-2"]);
  const made = recorded.filter((r) => r.type === "pulumi-nodejs:dynamic:Resource" && /bootstrap-token/.test(r.name));
  assert.deepEqual(made.map((r) => r.name).sort(), ["wp-worker-1-bootstrap-token", "wp-worker-2-bootstrap-token"]);
  for (const t of made) assert.ok(t.additionalSecretOutputs.includes("tokenSecret"));
});

test("workers: a kubelet starts only after the control plane is ready, the node RBAC, its token and the approvers exist, and its runtime is set up", async () => {
  const deps = new Set(step("wp-worker-1-kubelet").dependsOn.map(nameOf));
  for (const d of ["wp-worker-1-bootstrap-token", "wp-kubelet-bootstrap", "wp-approver-cp-1", "wp-approver-cp-2", "wp-approver-cp-3", "w3-controllers-ready", "wp-worker-1-kubernetes"]) {
    assert.ok(deps.has(d), `${d} in ${[...deps].join(", ")}`);
  }
  assert.ok(step("wp-worker-2-kubelet").dependsOn.map(nameOf).includes("wp-worker-1-kube-proxy"), "one node at a time: worker-2 after worker-1");
  assert.ok(!step("wp-worker-1-kubelet").dependsOn.map(nameOf).some((n) => /worker-2/.test(n ?? "")));
  const script = await valueOf<string>(step("wp-worker-1-kubelet").props.create);
  assert.match(script, /fieldSelector=spec.nodeName%3Dworker-1%2Cstatus.phase%3DRunning%2Cmetadata.namespace%3Dkube-system/);
  assert.match(script, /the pods on worker-1 ready again/, "a restarted kubelet waits for its kube-system pods");
  const coredns = recorded.find((r) => r.type === "kubernetes:apps/v1:Deployment")!;
  const after = new Set(coredns.dependsOn.map(nameOf));
  assert.ok(after.has("wp-worker-1-kubelet") && after.has("wp-worker-2-kubelet"), "CoreDNS waits for the nodes");
  const service = await valueOf<{ clusterIP: string }>(recorded.find((r) => r.type === "kubernetes:core/v1:Service" && r.name === "dns-kube-dns")!.props.spec);
  assert.equal(service.clusterIP, "10.96.0.10");
});

test("workers: refused at preview without the cluster's provider, for a control-plane host, and for a name without a number", () => {
  const rejects = (fn: () => unknown, message: RegExp) =>
    assert.throws(fn, (e: unknown) => {
      assert.ok(e instanceof pulumi.ResourceError, `a ResourceError, got ${e}`);
      assert.match((e as Error).message, message);
      return true;
    });
  const noProvider = new HaControlPlane("np", { controlPlaneHosts: hosts(3), loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } }, binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } }, kubernetesProvider: false });
  const args = { kubernetesBinaries: { kind: "release" }, runtimeBinaries: { kind: "packages" } } as const;
  rejects(() => new WorkerPool("np-w", { ...args, hosts: hosts(1, "worker", 70), controlPlane: noProvider }), /invalid argument controlPlane: got "a control plane made with kubernetesProvider: false"/);
  rejects(() => new WorkerPool("cp-w", { ...args, hosts: hosts(1), controlPlane: cluster }), /invalid argument hosts: got "cp-1"; expected workers that are not control-plane, etcd or balancer hosts/);
  rejects(
    () => new WorkerPool("nn-w", { ...args, hosts: [{ name: "edge", address: "10.0.0.90", connection: { host: "10.0.0.90" } }], controlPlane: cluster }),
    /invalid argument hosts\[0\]\.name: got "edge"; expected a name ending in a number/,
  );
});

test("workers: kubelet never newer than the apiservers, at most three minors older (version-skew policy), checked from the node folder's stamp at preview", () => {
  assert.equal(kubeletSkewProblem("v1.37.2", "v1.37.2"), undefined);
  assert.equal(kubeletSkewProblem("v1.36.5", "v1.37.2"), undefined, "a minor older: the control plane is upgraded first");
  assert.equal(kubeletSkewProblem("v1.34.0", "v1.37.2"), undefined, "three minors older");
  assert.equal(kubeletSkewProblem("v1.37.3", "v1.37.2"), undefined, "a newer patch of the same minor");
  assert.equal(kubeletSkewProblem(undefined, "v1.37.2"), undefined, "no stamp: nothing to check");
  assert.match(kubeletSkewProblem("v1.37.2", "v1.36.5")!, /this folder holds v1\.37\.2, newer than the apiservers; upgrade the control plane first, or use the node family of v1\.36\.5: toolchain\/build\.sh node-v1\.36\.5/);
  assert.match(kubeletSkewProblem("v1.33.9", "v1.37.2")!, /at most three minor releases older than the control plane's v1\.37\.2 \(this folder holds v1\.33\.9\)/);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-node-"));
  try {
    for (const b of ["kubelet", "kube-proxy"]) fs.writeFileSync(path.join(dir, b), "#!/bin/sh\n", { mode: 0o755 });
    fs.writeFileSync(path.join(dir, "kubernetes-version"), "v1.38.0\n");
    assert.throws(
      () => new WorkerPool("skew-w", { hosts: hosts(1, "worker", 70), controlPlane: cluster, kubernetesBinaries: { kind: "localDirectory", directory: dir }, runtimeBinaries: { kind: "packages" } }),
      (e: unknown) => {
        assert.ok(e instanceof pulumi.ResourceError, `a ResourceError, got ${e}`);
        assert.match((e as Error).message, new RegExp(`invalid argument kubernetesBinaries\\.directory: got "${dir.replace(/[.]/g, "\\.")}"; expected kubelet and kube-proxy of the control plane's minor release v1\\.37\\.\\d+ or up to three older \\(this folder holds v1\\.38\\.0`));
        return true;
      },
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("workers: a new kubelet or kube-proxy binary restarts the service even when none of its files changed", async () => {
  for (const [s, unit] of [["kubelet", "kubelet.service"], ["kube-proxy", "kube-proxy.service"]]) {
    const script = await valueOf<string>(step(`wp-worker-1-${s}`).props.create);
    assert.match(script, /hakube_running_replaced\(\) \{/);
    assert.match(script, new RegExp(`\\|\\| hakube_running_replaced ${unit.replace(".", "\\.")}; then systemctl restart ${unit.replace(".", "\\.")}`));
  }
});

test("workers: with a keepalived VIP, pods' connections to the kubernetes Service go to the balanced endpoint (a rule kept first by a timer); refused where a node cannot do that", async () => {
  const proxy = await bundleOf("wp-worker-1-kube-proxy");
  const script = proxy.get("/usr/local/sbin/hakube-api-balanced");
  assert.equal(script?.mode, "0755");
  assert.match(script!.content, /-d 10\.96\.0\.1\/32 -p tcp --dport 443 .* -j DNAT --to-destination 10\.0\.0\.100:8443/);
  assert.match(proxy.get("/etc/systemd/system/hakube-api-balanced.timer")!.content, /OnUnitActiveSec=10s\nAccuracySec=1s/);
  const create = await valueOf<string>(step("wp-worker-1-kube-proxy").props.create);
  assert.match(create, /kube-proxy \/healthz[\s\S]*systemctl enable --now hakube-api-balanced\.timer[\s\S]*\/usr\/local\/sbin\/hakube-api-balanced/);
  const args = { hosts: hosts(1, "worker", 70), controlPlane: cluster, kubernetesBinaries: { kind: "release" }, runtimeBinaries: { kind: "packages" } } as const;
  assert.throws(
    () => new WorkerPool("nft-w", { ...args, kubeProxyMode: "nftables", podApiAccess: "balancer" }),
    /invalid argument podApiAccess: got "balancer"; expected "service" with kubeProxyMode "nftables", or a keepalived VIP with kubeProxyMode "iptables"/,
  );
  assert.throws(() => new WorkerPool("bad-w", { ...args, podApiAccess: "vip" as never }), /invalid argument podApiAccess: got "vip"; expected "balancer" or "service"/);
});
