import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { spawnSync } from "child_process";
import { byName, decodeBundle, ETCD_DIGEST, hosts, isSecret, nameOf, program, recorded, valueOf } from "../helpers/mocks";
import { HaControlPlane, planControlPlane } from "../../components";
import { CIS_PATHS, COMPONENTS, evaluateCis, formatCisReport, HostFacts, unitArgs } from "../../ops/cis";
import { formatExpiry } from "../../ops/status";
import type { CertificateExpiry } from "../../components";
import { vrrpInstances } from "../helpers/keepalived";

// Two control planes in one program: 3 hosts (VIP on the control-plane hosts) and
// 5 hosts with 5 external etcd hosts and 2 balancer hosts of their own.
let three: HaControlPlane;
let five: HaControlPlane;
before(async () => {
  [three, five] = await program(() => [
    new HaControlPlane("c3", {
      controlPlaneHosts: hosts(3),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
    }),
    new HaControlPlane("c5", {
      controlPlaneHosts: hosts(5, "cp5", 20),
      etcdHosts: hosts(5, "etcd", 40),
      loadBalancer: { keepalived: { virtualIp: "10.0.0.200", hosts: hosts(2, "lb", 60) } },
      binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
      controllers: { apiAccess: "balanced", leaderElection: { leaseDurationSeconds: 8, renewDeadlineSeconds: 6, retryPeriodSeconds: 1 } },
      apiServer: { secretsEncryption: { keys: ["key1", "key2"], active: "key2" } },
      certificates: {
        serviceAccountKeys: { keys: ["key1", "key2"], active: "key2", tokenMaxHours: 12 },
        // The cluster CA mid-rotation (switched), the etcd CA just added, the front-proxy CA as it was.
        certificateAuthorities: { cluster: { keys: ["ca1", "ca2"], active: "ca2" }, etcd: { keys: ["ca1", "ca2"] } },
      },
    }),
  ]);
});

const of = (prefix: string, type: string) => recorded.filter((r) => r.name.startsWith(prefix) && r.type === type);
const steps = (prefix: string, component: string) =>
  recorded.filter((r) => r.type === "command:remote:Command" && new RegExp(`^${prefix}-${component}-[a-z0-9]+-\\d+$`).test(r.name));

async function bundleOf(name: string) {
  return decodeBundle(await valueOf<string>(byName(name).props.stdin));
}

test("resource graph: one etcd, apiserver, controller and balancer step per host", () => {
  assert.equal(steps("c3", "etcd").length, 3);
  assert.equal(steps("c3", "apiserver").length, 3);
  assert.equal(steps("c3", "controllers").length, 3);
  assert.equal(steps("c3", "lb").length, 3, "balancer on the 3 control-plane hosts");
  assert.equal(steps("c5", "etcd").length, 5);
  assert.equal(steps("c5", "apiserver").length, 5);
  assert.equal(steps("c5", "controllers").length, 5);
  assert.equal(steps("c5", "lb").length, 2, "balancer on its own 2 hosts");
  for (const component of ["ClusterPki", "EtcdCluster", "ApiServerPool", "KeepalivedLoadBalancer", "LeaderElectedControllers"]) {
    assert.equal(of("c3", `hakube:index:${component}`).length, 1, component);
  }
  assert.equal(of("c3", "pulumi:providers:kubernetes").length, 1);
  // External etcd: members run on the etcd hosts, not on the control-plane hosts.
  assert.deepEqual(
    steps("c5", "etcd").map((r) => r.name),
    ["c5-etcd-etcd-1", "c5-etcd-etcd-2", "c5-etcd-etcd-3", "c5-etcd-etcd-4", "c5-etcd-etcd-5"],
  );
});

test("host network: one step per host (any roles), first after the versions; every other step on the host waits for it", () => {
  assert.deepEqual(steps("c3", "network").map((r) => r.name), ["c3-network-cp-1", "c3-network-cp-2", "c3-network-cp-3"]);
  // c5: 5 control-plane, 5 etcd and 2 balancer hosts of their own, one step each.
  assert.equal(steps("c5", "network").length, 12);
  for (const r of [...steps("c3", "network"), ...steps("c5", "network")]) {
    assert.deepEqual(r.dependsOn.map(nameOf), [r.name.replace(/-network-.*$/, "-versions")]);
  }
  for (const prefix of ["c3", "c5"]) {
    for (const component of ["etcd", "apiserver", "controllers", "lb"]) {
      for (const r of steps(prefix, component)) {
        const host = r.name.slice(`${prefix}-${component}-`.length);
        assert.ok(r.dependsOn.map(nameOf).includes(`${prefix}-network-${host}`), `${r.name} waits for ${prefix}-network-${host}`);
      }
    }
  }
});

test("host network: bad settings are refused at preview, naming the argument", () => {
  const base = { controlPlaneHosts: hosts(3), loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } } } as const;
  assert.throws(() => planControlPlane(undefined, { ...base, hostNetwork: { tcpRtoMaxMs: 200 } }), /hostNetwork\.tcpRtoMaxMs.*200.*an integer from 1000 to 120000/);
  assert.throws(() => planControlPlane(undefined, { ...base, hostNetwork: { fallbackTcpRetries2: 1 } }), /hostNetwork\.fallbackTcpRetries2.*1.*an integer from 3 to 15/);
  assert.equal(planControlPlane(undefined, { ...base, hostNetwork: false }).hostNetwork, undefined);
  assert.deepEqual(planControlPlane(undefined, base).hostNetwork, { tcpRtoMaxMs: 1000, fallbackTcpRetries2: 5 });
});

test("parenting: every resource descends from its HaControlPlane and is named after its parent", () => {
  for (const r of recorded) {
    if (r.type === "hakube:index:HaControlPlane") {
      assert.equal(r.parent, undefined);
      continue;
    }
    const parentName = nameOf(r.parent);
    assert.ok(parentName, `${r.name} has a parent`);
    assert.ok(r.name.startsWith(`${parentName}-`), `${r.name} is named after its parent ${parentName}`);
    let top = r;
    while (top.parent) top = recorded.find((x) => x.resource === top.parent)!;
    assert.equal(top.type, "hakube:index:HaControlPlane");
  }
});

test("ordering: etcd ready before apiservers, apiservers ready before controllers and the balancer gate", async () => {
  for (const r of steps("c3", "apiserver")) {
    assert.ok(r.dependsOn.map(nameOf).includes("c3-etcd-ready"), `${r.name} waits for etcd`);
  }
  for (const r of steps("c3", "controllers")) {
    assert.ok(r.dependsOn.map(nameOf).includes("c3-apiserver-ready"), `${r.name} waits for the apiservers`);
  }
  assert.ok(byName("c3-lb-ready").dependsOn.map(nameOf).includes("c3-apiserver-ready"));
  // A host leaving the balancers stops keepalived before any balancer is reloaded
  // (components/loadbalancer/peers.ts).
  assert.equal(steps("c3", "lb").length, 3);
  for (const r of steps("c3", "lb")) {
    assert.ok(r.dependsOn.map(nameOf).includes("c3-lb-peers"), `${r.name} waits for the balancer set's record`);
  }
  assert.deepEqual(
    byName("c3-etcd-ready").dependsOn.map(nameOf),
    ["c3-etcd-cp-1", "c3-etcd-cp-2", "c3-etcd-cp-3"],
    "the etcd gate waits for every member",
  );
  // Rolling changes: each host's step waits for the previous host's.
  assert.ok(byName("c3-apiserver-cp-2").dependsOn.map(nameOf).includes("c3-apiserver-cp-1"));
  assert.ok(byName("c3-etcd-cp-3").dependsOn.map(nameOf).includes("c3-etcd-cp-2"));
  assert.ok(byName("c3-controllers-cp-3").dependsOn.map(nameOf).includes("c3-controllers-cp-2"));
  // Balanced controllers also wait for the balancer.
  assert.ok(byName("c5-controllers-cp5-1").dependsOn.map(nameOf).includes("c5-lb-ready"));
  // Upgrades follow the version-skew order: the controllers' new binaries arrive only
  // once every apiserver is ready (on its new version).
  const controllerBinaries = recorded.filter((x) => /^c3-controllers-cp-\d+-binaries$/.test(x.name));
  assert.equal(controllerBinaries.length, 3);
  for (const r of controllerBinaries) {
    assert.ok(r.dependsOn.map(nameOf).includes("c3-apiserver-ready"), `${r.name} waits for the apiservers`);
  }
  const provider = of("c3", "pulumi:providers:kubernetes")[0];
  assert.deepEqual(provider.dependsOn.map(nameOf).sort(), ["c3-apiserver-secrets-encrypted", "c3-controllers-ready", "c3-lb-ready"]);
  // The encryption key ring is checked before any apiserver step; every Secret is rewritten
  // once all apiservers are ready, then checked in etcd.
  assert.ok(byName("c3-apiserver-cp-1").dependsOn.map(nameOf).includes("c3-apiserver-encryption-keys"));
  assert.ok(byName("c3-apiserver-rewrite-secrets").dependsOn.map(nameOf).includes("c3-apiserver-ready"));
  assert.ok(byName("c3-apiserver-secrets-encrypted").dependsOn.map(nameOf).includes("c3-apiserver-rewrite-secrets"));
  // A refresh while the API is down keeps the objects' recorded state (the repair command).
  assert.equal(await valueOf(provider.props.skipUpdateUnreachable), "true");
  // A fixed identity: a CA rotation changes the kubeconfig's cluster entry, never the provider's cluster.
  assert.equal(await valueOf(provider.props.clusterIdentifier), "hakube/hakube/c3");
});

test("secrets: every private key, kubeconfig and file bundle is secret; none is on a command line", async () => {
  const pki = three.pki;
  for (const pair of [pki.clusterCa, pki.etcdCa, pki.frontProxyCa, pki.apiServerServing["cp-1"], pki.apiServerServing["cp-3"], pki.adminClient, pki.controllerManagerClient, pki.schedulerClient, pki.apiServerEtcdClient, pki.etcdServer["cp-1"], pki.etcdPeer["cp-1"]]) {
    assert.equal(await isSecret(pair.keyPem), true);
  }
  assert.equal(await isSecret(pki.serviceAccount.privateKeyPem), true);
  assert.equal(await isSecret(three.adminKubeconfig), true);
  for (const r of recorded.filter((x) => x.type === "tls:index/privateKey:PrivateKey")) {
    assert.ok(r.additionalSecretOutputs.includes("privateKeyPem"), `${r.name} marks its key secret in state`);
  }
  assert.ok(byName("c3-apiserver-encryption-key").additionalSecretOutputs.includes("stdout"), "encryption key secret in state");
  assert.equal(byName("c3-apiserver-encryption-key").props.logging, "none", "encryption key never logged");
  // An update of the key's command (a changed script, option or provider) keeps the key: it
  // prints the one in the state; with none there it fails rather than make a new key, which
  // would leave every Secret unreadable.
  for (const name of ["c3-apiserver-encryption-key", "c5-apiserver-encryption-key-key2"]) {
    const update = await valueOf<string | undefined>(byName(name).props.update);
    assert.equal(typeof update, "string", `${name} has an update of its own (else create runs again: a new key)`);
    const kept = spawnSync("bash", ["-c", update!], { encoding: "utf8", env: { PATH: process.env.PATH, PULUMI_COMMAND_STDOUT: "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItdGVzdHM=" } });
    assert.equal(kept.status, 0, kept.stderr);
    assert.equal(kept.stdout, "c2VjcmV0LWtleS1vZi0zMi1ieXRlcy1mb3ItdGVzdHM=");
    const none = spawnSync("bash", ["-c", update!], { encoding: "utf8", env: { PATH: process.env.PATH } });
    assert.notEqual(none.status, 0);
    assert.equal(none.stdout, "", "no new key made");
    assert.match(none.stderr, /refusing to make a new Secrets encryption key/);
  }
  for (const r of recorded.filter((x) => x.type === "command:remote:Command")) {
    for (const field of ["create", "update", "delete"]) {
      const text = await valueOf<string | undefined>(r.props[field]);
      assert.ok(!text || !/PRIVATE KEY|client-key-data|kind: EncryptionConfiguration/.test(text), `${r.name}.${field} holds no secret`);
    }
    if (r.props.stdin !== undefined) {
      assert.equal(await isSecret(r.props.stdin), true, `${r.name} stdin is secret`);
    }
  }
});

test("CIS file modes: keys, kubeconfigs, certificates, configs and unit files 0600; etcd's certificates readable by its account", async () => {
  const files = await bundleOf("c3-controllers-cp-1");
  assert.equal(files.get("/etc/kubernetes/controller-manager.conf")?.mode, "0600");
  assert.equal(files.get("/etc/kubernetes/scheduler.conf")?.mode, "0600");
  assert.equal(files.get("/etc/kubernetes/pki/ca.key")?.mode, "0600");
  assert.equal(files.get("/etc/kubernetes/pki/ca.crt")?.mode, "0600");
  const apiserver = await bundleOf("c3-apiserver-cp-1");
  const etcd = await bundleOf("c3-etcd-cp-1");
  for (const [path, file] of [...files, ...apiserver, ...etcd]) {
    if (/PRIVATE KEY|client-key-data|secretbox/.test(file.content)) {
      assert.equal(file.mode, "0600", `${path} holds a secret`);
    }
    if (path.startsWith("/etc/systemd/system/") || path.startsWith("/etc/kubernetes/")) {
      assert.equal(file.mode, "0600", `${path} (CIS 1.1: unit files, configs and PKI files 600)`);
    }
  }
  assert.ok(apiserver.has("/etc/kubernetes/admission-config.yaml"));
  // etcd runs as its own account: it reads its certificates, and its keys become its own at start.
  assert.equal(etcd.get("/etc/etcd/pki/server.crt")?.mode, "0644");
  assert.equal(etcd.get("/etc/etcd/pki/server.key")?.mode, "0600");
  const unit = etcd.get("/etc/systemd/system/etcd.service")!.content;
  assert.match(unit, /^User=etcd$/m);
  assert.match(unit, /^ExecStartPre=\+\/usr\/bin\/chown -R etcd:etcd \/var\/lib\/etcd \/etc\/etcd\/pki\/server.key \/etc\/etcd\/pki\/peer.key$/m);
});

test("CIS: the rendered control plane passes every automated control-plane and etcd check but the data directory's (live only)", async () => {
  const bundles = new Map([...(await bundleOf("c3-etcd-cp-1")), ...(await bundleOf("c3-apiserver-cp-1")), ...(await bundleOf("c3-controllers-cp-1"))]);
  const processes: HostFacts["processes"] = {};
  const users: Record<string, string> = {};
  for (const c of COMPONENTS) {
    const unit = bundles.get(CIS_PATHS.units[c])!.content;
    processes[c] = unitArgs(unit);
    users[c] = /^User=(\S+)$/m.exec(unit)?.[1] ?? "root";
  }
  // Written by root with their bundle's mode; etcd's data directory exists only on a machine.
  const files = Object.fromEntries([...bundles].map(([path, f]) => [path, { mode: parseInt(f.mode, 8), owner: "root:root" }]));
  const results = evaluateCis({ processes, users, files, schedulerConfig: bundles.get("/etc/kubernetes/scheduler-config.yaml")!.content });
  const failed = results.filter((r) => r.verdict === "fail");
  assert.deepEqual(failed.map((r) => r.id), ["1.1.11", "1.1.12"], formatCisReport("cp-1 (rendered)", results));
  assert.ok(results.filter((r) => r.verdict === "pass").length >= 50, "the checks ran");
  // The scheduler takes profiling from its config file: the flag alone would not do.
  const withoutConfigField = evaluateCis({ processes, users, files, schedulerConfig: "kind: KubeSchedulerConfiguration\n" });
  assert.equal(withoutConfigField.find((r) => r.id === "1.4.1")!.verdict, "fail");
});

test("certificate expiry: every CA and leaf, soonest first, each with the time a pulumi up renews it", async () => {
  const expiry = await valueOf<CertificateExpiry[]>(three.pki.certificateExpiry());
  const leaves = expiry.filter((c) => c.kind === "leaf");
  assert.equal(expiry.filter((c) => c.kind === "ca").length, 3);
  assert.ok(leaves.length >= 3 * 3 + 7, `${leaves.length} leaves: etcd server and peer and apiserver serving per host, and the clients`);
  assert.deepEqual(expiry.slice(0, leaves.length).map((c) => c.kind), leaves.map(() => "leaf"), "leaves (1 year) before the CAs (10 years)");
  assert.ok(expiry.every((c, i) => i === 0 || Date.parse(expiry[i - 1].notAfter) <= Date.parse(c.notAfter)), "sorted");
  const apiserver = expiry.find((c) => c.name === "c3-pki-apiserver-cp-1")!;
  assert.equal(Date.parse(apiserver.notAfter) - Date.parse(apiserver.renewFrom), 720 * 3_600_000, "30 days of early renewal");
  const now = Date.parse(apiserver.notAfter) - 10 * 86_400_000;
  assert.match(formatExpiry(apiserver, now), /until .* \(10 days; inside its renewal window: the next pulumi up renews it\)/);
  assert.match(formatExpiry(apiserver, Date.parse(apiserver.notAfter) + 1000), /EXPIRED/);
});

test("apiserver certificate SANs: endpoint, every address, kubernetes names, first service IP", async () => {
  const sans = await valueOf(three.pki.apiServerSans);
  for (const expected of [
    "10.0.0.100",
    "10.0.0.11",
    "10.0.0.12",
    "10.0.0.13",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "10.96.0.1",
  ]) {
    assert.ok(sans.includes(expected), `SAN ${expected}`);
  }
  const csr = byName("c3-pki-apiserver-cp-2-csr");
  const ips = await valueOf<string[]>(csr.props.ipAddresses);
  const dns = await valueOf<string[]>(csr.props.dnsNames);
  assert.ok(ips.includes("10.0.0.100") && ips.includes("10.96.0.1"));
  assert.ok(dns.includes("kubernetes.default.svc.cluster.local"));
  assert.ok(!dns.some((d) => /^\d+\.\d+\.\d+\.\d+$/.test(d)), "IPs are not listed as DNS names");
  const etcdIps = await valueOf<string[]>(byName("c3-pki-etcd-peer-cp-2-csr").props.ipAddresses);
  assert.deepEqual(etcdIps, ["10.0.0.12", "127.0.0.1"]);
});

test("leader election through Leases with default and tuned timings", async () => {
  const defaults = await bundleOf("c3-controllers-cp-1");
  const cm = defaults.get("/etc/systemd/system/kube-controller-manager.service")!.content;
  assert.match(cm, /--leader-elect-resource-lock=leases/);
  assert.match(cm, /--leader-elect-lease-duration=15s/);
  assert.match(cm, /--leader-elect-renew-deadline=10s/);
  assert.match(cm, /--leader-elect-retry-period=2s/);
  assert.match(defaults.get("/etc/kubernetes/scheduler-config.yaml")!.content, /resourceLock: leases/);
  assert.match(defaults.get("/etc/kubernetes/controller-manager.conf")!.content, /server: "https:\/\/127.0.0.1:6443"/, "local access by default");
  const tuned = await bundleOf("c5-controllers-cp5-2");
  assert.match(tuned.get("/etc/systemd/system/kube-controller-manager.service")!.content, /--leader-elect-lease-duration=8s/);
  assert.match(tuned.get("/etc/kubernetes/scheduler-config.yaml")!.content, /retryPeriod: 1s/);
  assert.match(tuned.get("/etc/kubernetes/scheduler.conf")!.content, /server: "https:\/\/10.0.0.200:6443"/, "balanced access");
});

test("no insecure port anywhere; encryption at rest and the same SA key on every apiserver", async () => {
  const first = await bundleOf("c3-apiserver-cp-1");
  const second = await bundleOf("c3-apiserver-cp-2");
  const unit = first.get("/etc/systemd/system/kube-apiserver.service")!.content;
  assert.doesNotMatch(unit, /insecure|:8080|apiserver-count/);
  assert.match(unit, /--encryption-provider-config=/);
  assert.match(first.get("/etc/kubernetes/encryption-config.yaml")!.content, /secretbox/);
  assert.equal(first.get("/etc/kubernetes/pki/sa.key")!.content, second.get("/etc/kubernetes/pki/sa.key")!.content);
  assert.equal(
    first.get("/etc/kubernetes/encryption-config.yaml")!.content,
    second.get("/etc/kubernetes/encryption-config.yaml")!.content,
    "one encryption key for the whole pool",
  );
  // Shutdown delay is longer than HAProxy's detection time (1 s by default).
  assert.match(unit, /--shutdown-delay-duration=6s/);
  assert.match(unit, /--advertise-address=10.0.0.11/);
});

test("Secrets encryption key rotation: the active key encrypts, the others decrypt; every Secret is rewritten on the first apiserver and checked on the first etcd host", async () => {
  const conf = (await bundleOf("c5-apiserver-cp5-1")).get("/etc/kubernetes/encryption-config.yaml")!.content;
  assert.deepEqual([...conf.matchAll(/- name: (\S+)/g)].map((m) => m[1]), ["key2", "key1"]);
  assert.ok(byName("c5-apiserver-encryption-key-key2").additionalSecretOutputs.includes("stdout"), "each key secret in state");
  assert.equal(byName("c5-apiserver-encryption-key-key2").props.logging, "none");
  const ring = byName("c5-apiserver-encryption-keys");
  assert.deepEqual(await valueOf(ring.props.keys), ["key1", "key2"]);
  assert.equal(await valueOf(ring.props.active), "key2");
  assert.equal(await isSecret(ring.props.usage), true, "the SSH connection it looks through is secret");
  const rewrite = byName("c5-apiserver-rewrite-secrets");
  const kubeconfig = (await bundleOf("c5-apiserver-rewrite-secrets")).get("/run/hakube/rewrite-secrets.kubeconfig")!;
  assert.equal(kubeconfig.mode, "0600");
  assert.match(kubeconfig.content, /server: "?https:\/\/127.0.0.1:6443/);
  assert.match(await valueOf<string>(rewrite.props.create), /kubectl --kubeconfig .* replace -f -/);
  assert.match(await valueOf<string>(rewrite.props.create), /trap 'rm -f/, "the kubeconfig does not outlive the run");
  assert.deepEqual(await valueOf(rewrite.props.triggers), ["secrets encrypted with key2"]);
  const gate = byName("c5-apiserver-secrets-encrypted");
  assert.match(JSON.stringify(await valueOf(gate.props.connection)), /10\.0\.0\.41/, "checked where etcd runs (etcd-1)");
  assert.match(await valueOf<string>(gate.props.create), /not encrypted with key2/);
});

test("service-account key rotation: every key's public half verifies, the active key signs on the apiservers and the controller-manager; tokens capped", async () => {
  const api = await bundleOf("c5-apiserver-cp5-1");
  const pub = api.get("/etc/kubernetes/pki/sa.pub")!.content;
  assert.equal((pub.match(/-----BEGIN PUBLIC KEY-----/g) ?? []).length, 2, "both public keys");
  assert.ok(byName("c5-pki-service-account-key2").additionalSecretOutputs.includes("privateKeyPem"), "the new key is secret in state");
  assert.equal(api.get("/etc/kubernetes/pki/sa.key")!.content, await valueOf<string>(five.pki.serviceAccount.privateKeyPem));
  assert.equal((await bundleOf("c5-controllers-cp5-1")).get("/etc/kubernetes/pki/sa.key")!.content, api.get("/etc/kubernetes/pki/sa.key")!.content);
  assert.match(api.get("/etc/systemd/system/kube-apiserver.service")!.content, /--service-account-max-token-expiration=43200s/);
  const ring = byName("c5-pki-service-account-keys");
  assert.equal(await valueOf(ring.props.active), "key2");
  assert.equal(await valueOf(ring.props.retireAfterSeconds), 43200, "the old key stays as long as a token lasts");
  // The default: one key, a day.
  const three1 = await bundleOf("c3-apiserver-cp-1");
  assert.equal((three1.get("/etc/kubernetes/pki/sa.pub")!.content.match(/BEGIN PUBLIC KEY/g) ?? []).length, 1);
  assert.match(three1.get("/etc/systemd/system/kube-apiserver.service")!.content, /--service-account-max-token-expiration=86400s/);
});

test("CA rotation: every CA of a ring is trusted (the active one first); the active one signs the leaves and the controller-manager's CSRs", async () => {
  const pems = (text: string) => [...text.matchAll(/mock-(\S+)/g)].map((m) => m[1]);
  const api = await bundleOf("c5-apiserver-cp5-1");
  assert.deepEqual(pems(api.get("/etc/kubernetes/pki/ca.crt")!.content), ["c5-pki-cluster-ca-ca2", "c5-pki-cluster-ca"], "both cluster CAs, ca2 first");
  assert.deepEqual(pems(api.get("/etc/kubernetes/pki/etcd-ca.crt")!.content), ["c5-pki-etcd-ca", "c5-pki-etcd-ca-ca2"], "the added etcd CA is trusted, ca1 still first");
  assert.deepEqual(pems(api.get("/etc/kubernetes/pki/front-proxy-ca.crt")!.content), ["c5-pki-front-proxy-ca"]);
  const controllers = await bundleOf("c5-controllers-cp5-1");
  assert.deepEqual(pems(controllers.get("/etc/kubernetes/pki/signing-ca.crt")!.content), ["c5-pki-cluster-ca-ca2"], "the controller-manager signs with the active CA");
  assert.equal(controllers.get("/etc/kubernetes/pki/ca.crt")!.content, api.get("/etc/kubernetes/pki/ca.crt")!.content, "one ca.crt on a host, whichever step writes it");
  assert.equal(controllers.get("/etc/kubernetes/pki/ca.key")!.content, await valueOf<string>(five.pki.clusterCa.keyPem));
  assert.match(controllers.get("/etc/systemd/system/kube-controller-manager.service")!.content, /--cluster-signing-cert-file=\/etc\/kubernetes\/pki\/signing-ca.crt/);
  assert.match(controllers.get("/etc/systemd/system/kube-controller-manager.service")!.content, /--root-ca-file=\/etc\/kubernetes\/pki\/ca.crt/, "pods trust every CA");
  assert.deepEqual(pems(await valueOf<string>(byName("c5-pki-apiserver-cp5-1").props.caCertPem)), ["c5-pki-cluster-ca-ca2"], "leaves come from the active CA");
  assert.deepEqual(pems(await valueOf<string>(byName("c5-pki-etcd-server-etcd-1").props.caCertPem)), ["c5-pki-etcd-ca"], "until the switch, from the old one");
  assert.ok(byName("c5-pki-cluster-ca-ca2-key").additionalSecretOutputs.includes("privateKeyPem"), "the new CA's key is secret in state");
  const etcd = await bundleOf("c5-etcd-etcd-1");
  assert.deepEqual(pems(etcd.get("/etc/etcd/pki/ca.crt")!.content), ["c5-pki-etcd-ca", "c5-pki-etcd-ca-ca2"]);
  const ring = byName("c5-pki-cluster-ca-ring");
  assert.deepEqual(await valueOf(ring.props.keys), ["ca1", "ca2"]);
  assert.equal(await valueOf(ring.props.active), "ca2");
  assert.match(await valueOf<string>(ring.props.identity), /mock-c5-pki-cluster-ca-ca2/, "a first deployment names the cluster by its active CA");
  const admin = await valueOf<string>(five.adminKubeconfig);
  const ca = Buffer.from(/certificate-authority-data: "?([A-Za-z0-9+/=]+)/.exec(admin)![1], "base64").toString();
  assert.deepEqual(pems(ca), ["c5-pki-cluster-ca-ca2", "c5-pki-cluster-ca"], "kubeconfigs trust both CAs");
  assert.equal(await valueOf<string>(five.caCertificate), api.get("/etc/kubernetes/pki/ca.crt")!.content);
  // Without rotation: one CA each, the names they always had.
  assert.deepEqual(pems((await bundleOf("c3-apiserver-cp-1")).get("/etc/kubernetes/pki/ca.crt")!.content), ["c3-pki-cluster-ca"]);
});

test("balancer colocated with apiservers listens on 8443; on its own hosts on 6443", async () => {
  assert.equal(await valueOf(three.loadBalancer.port), 8443);
  assert.equal(await valueOf(five.loadBalancer.port), 6443);
  assert.equal(await valueOf(three.endpoint), "https://10.0.0.100:8443");
  const lb = await bundleOf("c3-lb-cp-2");
  assert.match(lb.get("/etc/haproxy/haproxy.cfg")!.content, /bind :8443/);
  assert.match(lb.get("/etc/keepalived/keepalived.conf")!.content, /priority 140/);
  assert.match(lb.get("/etc/keepalived/keepalived.conf")!.content, /unicast_peer \{\n\s+10.0.0.11 min_ttl 255\n\s+10.0.0.13 min_ttl 255\n/);
});

test("VRRP: each balancer host's keepalived takes adverts only from the other balancer hosts (check_unicast_src), never from itself or any other host", async () => {
  const cases = [
    { prefix: "c3", balancers: hosts(3), others: [] as ReturnType<typeof hosts> },
    { prefix: "c5", balancers: hosts(2, "lb", 60), others: [...hosts(5, "cp5", 20), ...hosts(5, "etcd", 40)] },
  ];
  for (const { prefix, balancers, others } of cases) {
    for (const self of balancers) {
      const conf = (await bundleOf(`${prefix}-lb-${self.name}`)).get("/etc/keepalived/keepalived.conf")!.content;
      const instances = vrrpInstances(conf);
      assert.ok(instances.length > 0, `${prefix} ${self.name}: a vrrp_instance`);
      for (const i of instances) {
        const where = `${prefix} ${self.name} ${i.name}`;
        assert.equal(i.checksUnicastSource, true, `${where}: check_unicast_src`);
        assert.equal(i.sourceAddress, self.address, `${where}: sends from its own address`);
        const peers = i.peers.map((p) => p.address);
        assert.deepEqual(peers, balancers.filter((b) => b !== self).map((b) => b.address), `${where}: exactly the other balancer hosts`);
        assert.ok(!peers.includes(self.address), `${where}: never itself`);
        for (const o of others) assert.ok(!peers.includes(o.address), `${where}: never ${o.name}`);
      }
    }
  }
});

test("outputs: endpoint, CA, admin kubeconfig through the endpoint, etcd endpoints", async () => {
  assert.deepEqual(await valueOf(three.etcdEndpoints), ["https://10.0.0.11:2379", "https://10.0.0.12:2379", "https://10.0.0.13:2379"]);
  assert.equal((await valueOf(five.etcdEndpoints)).length, 5);
  assert.match(await valueOf(three.caCertificate), /BEGIN CERTIFICATE/);
  assert.match(await valueOf(three.adminKubeconfig), /server: "https:\/\/10.0.0.100:8443"/);
});

test("a change re-runs exactly its step's update (never a replacement that would stop the service)", async () => {
  const step = byName("c3-apiserver-cp-1");
  const update = await valueOf<string>(step.props.update);
  assert.match(update, /^# hakube step inputs/);
  assert.match(update, /^#   \/etc\/systemd\/system\/kube-apiserver.service sha256:[0-9a-f]{16}$/m);
  assert.match(update, /^#   \/etc\/kubernetes\/pki\/apiserver.key \(secret\)$/m);
  assert.match(update, /^#   binaries v1.37.1 sha512:/m);
  assert.doesNotMatch(update, /BEGIN|PRIVATE/);
  // The command SDK replaces a command whose triggers change: no per-host step has any.
  for (const r of recorded.filter((x) => x.type === "command:remote:Command" && /-(etcd|apiserver|controllers|lb)-[a-z0-9]+-\d+$/.test(x.name))) {
    assert.equal(r.props.triggers, undefined, `${r.name} has no triggers`);
    assert.ok(r.props.update, `${r.name} has an update script`);
  }
  // A gate is re-run (replaced) when a step it guards changes.
  assert.equal((await valueOf<unknown[]>(byName("c3-apiserver-ready").props.triggers)).length, 3);
});

test("stacked apiservers use their local etcd member; external topology uses every member", async () => {
  const stacked = (await bundleOf("c3-apiserver-cp-2")).get("/etc/systemd/system/kube-apiserver.service")!.content;
  assert.match(stacked, /--etcd-servers=https:\/\/127.0.0.1:2379 /);
  const external = (await bundleOf("c5-apiserver-cp5-1")).get("/etc/systemd/system/kube-apiserver.service")!.content;
  assert.match(external, /--etcd-servers=https:\/\/10.0.0.41:2379,https:\/\/10.0.0.42:2379,https:\/\/10.0.0.43:2379,https:\/\/10.0.0.44:2379,https:\/\/10.0.0.45:2379 /);
});

test("rolling etcd restarts drain the local apiserver only in the stacked topology", async () => {
  assert.match(await valueOf<string>(byName("c3-etcd-cp-1").props.update), /systemctl stop kube-apiserver.service/);
  assert.doesNotMatch(await valueOf<string>(byName("c5-etcd-etcd-1").props.update), /systemctl stop kube-apiserver.service/);
});

test("the deployed versions are recorded first, before anything acts on a host", async () => {
  const versions = byName("c3-versions");
  assert.equal(versions.type, "pulumi-nodejs:dynamic:Resource");
  assert.equal(await valueOf(versions.props.kubernetesVersion), "v1.37.1", "the default Kubernetes version");
  assert.equal(await valueOf(versions.props.etcdVersion), "v3.6.16");
  assert.equal(versions.dependsOn.length, 0);
  const children = recorded.filter((r) => r.name.startsWith("c3-") && r.type !== "hakube:index:HaControlPlane");
  assert.equal(children[0].name, "c3-versions", "registered before the PKI, etcd and every step");
});

test("one observation per host, registered after the versions, whose outputs the steps read (no class field hides them)", async () => {
  const names = recorded.filter((r) => r.name.startsWith("c5-observe-")).map((r) => r.name);
  assert.deepEqual(names.sort(), [...["cp5-1", "cp5-2", "cp5-3", "cp5-4", "cp5-5"], ...["etcd-1", "etcd-2", "etcd-3", "etcd-4", "etcd-5"], "lb-1", "lb-2"].map((n) => `c5-observe-${n}`).sort());
  assert.equal(three.observations.length, 3);
  for (const o of [...three.observations, ...five.observations]) {
    assert.ok(pulumi.Output.isInstance(o.repairs), "repairs is the resource's output");
    assert.ok(pulumi.Output.isInstance(o.machineId));
  }
  assert.ok(pulumi.Output.isInstance(three.versions.kubernetesVersion));
  assert.ok(pulumi.Output.isInstance(three.etcd.membership.names));
  const membership = byName("c5-etcd-membership");
  assert.equal(await valueOf(membership.props.argument), "etcdHosts");
  assert.equal(await valueOf(byName("c3-etcd-membership").props.argument), "controlPlaneHosts (stacked etcd)");
  assert.ok(isSecret(membership.props.connections), "the members' connections are a secret");
});

test("one apiserver serving certificate per host, with that host's address only: a resize re-issues no other host's certificate", async () => {
  const csr = (host: string) => byName(`c3-pki-apiserver-${host}-csr`);
  const cp1 = await valueOf<string[]>(csr("cp-1").props.ipAddresses);
  assert.ok(cp1.includes("10.0.0.11") && cp1.includes("10.0.0.100") && cp1.includes("10.96.0.1"), cp1.join(","));
  assert.ok(!cp1.includes("10.0.0.12") && !cp1.includes("10.0.0.13"), `only its own address: ${cp1.join(",")}`);
  assert.deepEqual(
    recorded.filter((r) => r.type === "tls:index/locallySignedCert:LocallySignedCert" && /^c3-pki-apiserver-cp-\d$/.test(r.name)).map((r) => r.name).sort(),
    ["c3-pki-apiserver-cp-1", "c3-pki-apiserver-cp-2", "c3-pki-apiserver-cp-3"],
  );
});

test("etcd members: only those the cluster is first deployed with may start a new one (the membership's record)", async () => {
  for (const r of steps("c3", "etcd")) {
    const create = await valueOf<string>(r.props.create);
    assert.doesNotMatch(create, /refusing to start it as a new, empty cluster/, `${r.name}: a member of the first deployment may bootstrap`);
    assert.match(create, /hakube_etcd_join/);
  }
});
