import { test } from "node:test";
import assert from "node:assert/strict";
import * as yaml from "js-yaml";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { spawnSync } from "child_process";
import {
  apiServerFlags,
  apiServerGateScript,
  apiServerUnit,
  ApiServerSettings,
  auditPolicy,
  authenticationConfig,
  encryptionConfig,
} from "../../components/apiserver/render";
import { verifyUnit } from "../helpers/tools";
import { assertGolden } from "../helpers/golden";

const settings: ApiServerSettings = {
  securePort: 6443,
  etcdServers: ["https://10.0.0.11:2379", "https://10.0.0.12:2379", "https://10.0.0.13:2379"],
  serviceCidr: "10.96.0.0/12",
  serviceAccountIssuer: "https://kubernetes.default.svc.cluster.local",
  serviceAccountTokenMaxSeconds: 86400,
  shutdownDelayDurationSeconds: 8,
  audit: { maxAgeDays: 7, maxBackups: 5, maxSizeMb: 100 },
};

test("apiserver flags: TLS to etcd, Node,RBAC, SA keys, encryption, audit, no insecure serving", () => {
  const flags = Object.fromEntries(apiServerFlags("10.0.0.11", settings));
  assert.equal(flags["authorization-mode"], "Node,RBAC");
  assert.equal(flags["etcd-servers"], settings.etcdServers.join(","));
  assert.ok(flags["etcd-certfile"] && flags["etcd-keyfile"] && flags["etcd-cafile"]);
  assert.equal(flags["service-account-issuer"], "https://kubernetes.default.svc.cluster.local");
  assert.equal(flags["service-account-key-file"], "/etc/kubernetes/pki/sa.pub");
  assert.equal(flags["service-account-signing-key-file"], "/etc/kubernetes/pki/sa.key");
  assert.equal(flags["encryption-provider-config"], "/etc/kubernetes/encryption-config.yaml");
  assert.equal(flags["audit-log-path"], "/var/log/kubernetes/audit/audit.log");
  assert.equal(flags["shutdown-delay-duration"], "8s");
  assert.equal(flags["endpoint-reconciler-type"], "lease");
  for (const name of Object.keys(flags)) {
    assert.ok(!/insecure|apiserver-count|anonymous-auth/.test(name), `flag ${name} must not be set`);
  }
  assert.ok(!Object.values(flags).some((v) => String(v).includes("8080")), "no port 8080");
});

test("extra flags override defaults and add new ones", () => {
  const flags = Object.fromEntries(apiServerFlags("10.0.0.11", { ...settings, extraFlags: { "profiling": "true", "goaway-chance": "0.001" } }));
  assert.equal(flags["profiling"], "true");
  assert.equal(flags["goaway-chance"], "0.001");
});

test("apiserver unit verifies, drains longer than the shutdown delay, and matches its golden file", () => {
  const unit = apiServerUnit("10.0.0.11", settings);
  assert.match(unit, /TimeoutStopSec=68/);
  const r = verifyUnit("kube-apiserver.service", unit);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.trim(), "", `systemd-analyze warned: ${r.stderr}`);
  assertGolden("kube-apiserver.service", unit);
});

test("encryption config: secretbox with the 32-byte key first, identity last", () => {
  const key = Buffer.alloc(32, 7).toString("base64");
  const doc = yaml.load(encryptionConfig(key)) as any;
  assert.equal(doc.kind, "EncryptionConfiguration");
  assert.deepEqual(doc.resources[0].resources, ["secrets"]);
  assert.equal(doc.resources[0].providers[0].secretbox.keys[0].secret, key);
  assert.deepEqual(doc.resources[0].providers.at(-1), { identity: {} });
  assert.throws(() => encryptionConfig(Buffer.alloc(16).toString("base64")), /32 bytes/);
});

test("audit policy skips health probes and logs metadata only", () => {
  const doc = yaml.load(auditPolicy()) as any;
  assert.equal(doc.kind, "Policy");
  assert.equal(doc.rules[0].level, "None");
  assert.ok(doc.rules[0].nonResourceURLs.includes("/readyz*"));
  assert.equal(doc.rules.at(-1).level, "Metadata");
  assert.ok(!auditPolicy().includes("RequestResponse"), "request bodies (Secrets) never logged");
});

test("anonymous access is limited to health endpoints", () => {
  const doc = yaml.load(authenticationConfig()) as any;
  assert.equal(doc.anonymous.enabled, true);
  assert.deepEqual(
    doc.anonymous.conditions.map((c: any) => c.path).sort(),
    ["/healthz", "/livez", "/readyz"],
  );
});

test("gate checks /readyz of every member with the cluster CA, bounded", () => {
  const script = apiServerGateScript(["10.0.0.11", "10.0.0.12", "10.0.0.13"], 6443, 30);
  assert.equal(script.match(/hakube_retry 30 2 "kube-apiserver/g)?.length, 3);
  assert.match(script, /--cacert \/etc\/kubernetes\/pki\/ca.crt https:\/\/10.0.0.13:6443\/readyz/);
  assert.equal(script.match(/hakube_retry 30 2 "kubernetes Service lists/g)?.length, 3);
  // Every /readyz wait comes before the first EndpointSlice wait.
  assert.ok(script.lastIndexOf("/readyz\" --") < script.indexOf("hakube_slice_lists 10.0.0.11"));
});

test("gate's EndpointSlice check passes only for an address the slice lists", () => {
  const script = apiServerGateScript(["10.0.0.11"], 6443, 30);
  const fn = script.slice(script.indexOf("hakube_slice_lists() {"), script.indexOf("\n}\n") + 3);
  // A stand-in curl that records its arguments and prints a slice listing .11 and .12.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-slice-"));
  const slice = JSON.stringify({ kind: "EndpointSlice", endpoints: [{ addresses: ["10.0.0.11"] }, { addresses: ["10.0.0.12"] }] });
  fs.writeFileSync(path.join(dir, "curl"), `#!/bin/sh\necho "$@" > ${dir}/args\necho '${slice}'\n`, { mode: 0o755 });
  const check = (address: string) =>
    spawnSync("bash", ["-c", `${fn}\nhakube_slice_lists ${address}`], { env: { PATH: `${dir}:/usr/bin:/bin` } }).status;
  try {
    assert.equal(check("10.0.0.11"), 0);
    assert.equal(check("10.0.0.12"), 0);
    assert.equal(check("10.0.0.13"), 1);
    assert.equal(check("10.0.0.1"), 1, "a prefix of a listed address does not count");
    const args = fs.readFileSync(path.join(dir, "args"), "utf8");
    assert.match(args, /--cert \/etc\/kubernetes\/pki\/apiserver-kubelet-client.crt --key \/etc\/kubernetes\/pki\/apiserver-kubelet-client.key/);
    assert.match(args, /https:\/\/127.0.0.1:6443\/apis\/discovery.k8s.io\/v1\/namespaces\/default\/endpointslices\/kubernetes/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
