// Worker nodes: the pod ranges from the plan, the rendered kubelet, containerd, CNI and
// kube-proxy settings, the pod routes script and the kubelet-serving approver, run for
// real against stand-in commands (the approver against real CSRs made by openssl).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parseCidr } from "../../components/net";
import { Host } from "../../components/types";
import { kubeletScript, planPodRanges } from "../../components/workers/workerPool";
import { tokenDue } from "../../components/workers/bootstrapToken";
import {
  apiBalancedScript,
  approverNodes,
  approverScript,
  servingCsrCheckScript,
  cniConfig,
  containerdConfig,
  defaultNodeRuntime,
  kubeletConfig,
  kubeProxyConfig,
  podRoutesScript,
} from "../../components/workers/render";
import { stubsDisposedAfterTests } from "../helpers/stubs";
import { retryFunction, scriptPrologue } from "../../components/remote/files";
import { tempDir } from "../helpers/tools";

const stubs = stubsDisposedAfterTests();
const host = (name: string, address = "10.0.0.1"): Host => ({ name, address, connection: { host: address } });
const pods = parseCidr("10.244.0.0/16")!;

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof pulumi.ResourceError, String(e));
    return (e as Error).message;
  }
  assert.fail("no error");
}

/** The approver script run as real bash in `dir` (its paths moved there), with the stand-ins in `bin` first on PATH. */
function runApprover(dir: string, bin: string) {
  fs.writeFileSync(path.join(dir, "csr-check"), servingCsrCheckScript(), { mode: 0o755 });
  const script = approverScript()
    .replace("/etc/kubernetes/kubelet-serving-approver.conf", path.join(dir, "kubeconfig"))
    .replace("/etc/hakube/kubelet-serving-nodes", path.join(dir, "nodes"))
    .replaceAll("/usr/local/sbin/hakube-serving-csr-check", path.join(dir, "csr-check"));
  return spawnSync("bash", ["-c", script], { encoding: "utf8", env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
}

test("pod ranges: the n-th /24 for the host named <prefix>-n, so other workers keep theirs", () => {
  const planned = planPodRanges(undefined, [host("worker-1"), host("worker-3"), host("gpu-12")], pods);
  assert.deepEqual(
    planned.map((w) => [w.host.name, w.podCidr]),
    [
      ["worker-1", "10.244.1.0/24"],
      ["worker-3", "10.244.3.0/24"],
      ["gpu-12", "10.244.12.0/24"],
    ],
  );
  const explicit = planPodRanges(undefined, [host("edge"), host("worker-2")], pods, { edge: "10.244.200.0/24" });
  assert.deepEqual(explicit.map((w) => w.podCidr), ["10.244.200.0/24", "10.244.2.0/24"]);
});

test("pod ranges: a name without a number, a shared range, or a range outside podCidr are refused naming the argument", () => {
  assert.match(refusal(() => planPodRanges(undefined, [host("edge")], pods)), /invalid argument hosts\[0\]\.name: got "edge"; expected a name ending in a number from 1 to 255/);
  assert.match(
    refusal(() => planPodRanges(undefined, [host("a-2"), host("b-2")], pods)),
    /invalid argument hosts\[1\]\.name: got "b-2"; expected a pod range of its own \(10\.244\.2\.0\/24 is a-2's too\)/,
  );
  assert.match(refusal(() => planPodRanges(undefined, [host("edge")], pods, { edge: "10.9.0.0/24" })), /invalid argument podCidrs\.edge: got "10\.9\.0\.0\/24"; expected a \/24 inside the cluster's podCidr 10\.244\.0\.0\/16/);
  assert.match(refusal(() => planPodRanges(undefined, [host("w-1")], parseCidr("10.244.0.0/20")!)), /invalid argument podCidr: got "10\.244\.0\.0\/20"; expected a pod range of \/16 or larger/);
});

test("kubelet: TLS bootstrap with rotation, serving certificates by CSR, webhook auth, no read-only port", () => {
  const config = kubeletConfig({ nodeName: "worker-1", nodeAddress: "10.0.0.71", clusterDns: "10.96.0.10", clusterDomain: "cluster.local", runtime: defaultNodeRuntime });
  for (const line of ["rotateCertificates: true", "serverTLSBootstrap: true", "readOnlyPort: 0", "  mode: Webhook", "    enabled: false", "cgroupDriver: systemd", "failCgroupV1: true", "protectKernelDefaults: true", "- 10.96.0.10"]) {
    assert.ok(config.split("\n").includes(line), `${line} in\n${config}`);
  }
  const nspawn = kubeletConfig({ nodeName: "w", nodeAddress: "10.0.0.71", clusterDns: "10.96.0.10", clusterDomain: "cluster.local", runtime: { ...defaultNodeRuntime, cgroupDriver: "cgroupfs", allowCgroupV1: true, protectKernelDefaults: false } });
  assert.match(nspawn, /^cgroupDriver: cgroupfs$/m);
  assert.match(nspawn, /^failCgroupV1: false$/m);
});

test("containerd: the pinned sandbox image, the cgroup driver and the runtime restrictions as given", () => {
  const c = containerdConfig({ sandboxImage: "hakube.local/pause:1", runtime: { ...defaultNodeRuntime, cgroupDriver: "cgroupfs", restrictOomScoreAdj: true, noNewKeyring: true } });
  assert.match(c, /^version = 3$/m);
  assert.match(c, /^ {2}sandbox = "hakube\.local\/pause:1"$/m);
  assert.match(c, /^ {2}SystemdCgroup = false$/m);
  assert.match(c, /^ {2}restrict_oom_score_adj = true$/m);
  assert.match(c, /^ {2}NoNewKeyring = true$/m);
  assert.match(containerdConfig({ sandboxImage: "x", runtime: defaultNodeRuntime }), /^ {2}SystemdCgroup = true$/m);
});

test("CNI: a bridge with the node's pod range, hairpin on, no masquerading by the plugin; kube-proxy knows the cluster range", () => {
  const c = JSON.parse(cniConfig("10.244.3.0/24"));
  assert.equal(c.plugins[0].type, "bridge");
  assert.equal(c.plugins[0].hairpinMode, true);
  assert.equal(c.plugins[0].ipMasq, false);
  assert.deepEqual(c.plugins[0].ipam.ranges, [[{ subnet: "10.244.3.0/24" }]]);
  const p = kubeProxyConfig({ nodeName: "worker-3", clusterCidr: "10.244.0.0/16", mode: "iptables" });
  assert.match(p, /^clusterCIDR: 10\.244\.0\.0\/16$/m);
  assert.match(p, /^hostnameOverride: worker-3$/m);
  assert.match(p, /^ {2}maxPerCore: 0$/m);
});

test("pod routes: every other node's range through it, stale ranges inside the pod range removed, others kept, masquerading once", () => {
  const s = stubs({
    // `ip route show proto static`: one wanted, one stale in the pod range, one outside it.
    ip: [{ stdout: "10.244.2.0/24 via 10.0.0.72 dev eth0\n10.244.9.0/24 via 10.0.0.79 dev eth0\n192.168.5.0/24 via 10.0.0.1 dev eth0\n" }],
    iptables: [{ exitCode: 1 }, { exitCode: 0 }],
  });
  const script = podRoutesScript({ podCidr: "10.244.0.0/16", nodePodCidr: "10.244.1.0/24", routes: [{ cidr: "10.244.2.0/24", via: "10.0.0.72" }, { cidr: "10.244.3.0/24", via: "10.0.0.73" }] });
  const r = s.run(script.replace(/^#!.*\n/, ""));
  assert.equal(r.status, 0, r.stderr);
  const ip = s.argv("ip").map((a) => a.join(" "));
  assert.deepEqual(ip, [
    "route replace 10.244.2.0/24 via 10.0.0.72 proto static",
    "route replace 10.244.3.0/24 via 10.0.0.73 proto static",
    "route show proto static",
    "route del 10.244.9.0/24 proto static",
  ]);
  const ipt = s.argv("iptables").map((a) => a.join(" "));
  assert.deepEqual(ipt, [
    "-t nat -C POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -m comment --comment hakube-pod-masquerade -j MASQUERADE",
    "-t nat -A POSTROUTING -s 10.244.1.0/24 ! -d 10.244.0.0/16 -m comment --comment hakube-pod-masquerade -j MASQUERADE",
  ]);
});

/** DER of one element (short or one-byte long form): what openssl's `DER:` extension values take. */
function der(tag: number, content: Buffer): Buffer {
  const n = content.length;
  return Buffer.concat([Buffer.from([tag, ...(n < 128 ? [n] : [0x81, n])]), content]);
}

/**
 * A crafted serving CSR: the subject and extensions of an openssl config section (raw DER
 * values allowed), base64 as the API holds it.
 */
function craftedCsr(dir: string, label: string, subject: string, extensions: string[]): string {
  const key = path.join(dir, `${label}.key`);
  const csr = path.join(dir, `${label}.csr`);
  const cnf = path.join(dir, `${label}.cnf`);
  const dn = subject.split("/").filter(Boolean).join("\n");
  fs.writeFileSync(cnf, `[req]\ndistinguished_name = dn\nreq_extensions = ext\nprompt = no\n[dn]\n${dn}\n[ext]\n${extensions.join("\n")}\n`);
  const r = spawnSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-config", cnf], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(csr).toString("base64");
}

/** A CSR as a kubelet makes it for its serving certificate, base64 as the API holds it. */
function servingCsr(dir: string, label: string, subject: string, sans: string): string {
  const key = path.join(dir, `${label}.key`);
  const csr = path.join(dir, `${label}.csr`);
  const r = spawnSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-subj", subject, "-addext", `subjectAltName=${sans}`], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(csr).toString("base64");
}

test("the approver approves a known node's serving CSR for its own name and address only", () => {
  const dir = tempDir("approver");
  try {
    const csrs: Record<string, { user: string; request: string }> = {
      good: { user: "system:node:worker-1", request: servingCsr(dir, "good", "/O=system:nodes/CN=system:node:worker-1", "DNS:worker-1,IP:10.0.0.71") },
      wrongip: { user: "system:node:worker-1", request: servingCsr(dir, "wrongip", "/O=system:nodes/CN=system:node:worker-1", "DNS:worker-1,IP:10.0.0.99") },
      othername: { user: "system:node:worker-1", request: servingCsr(dir, "othername", "/O=system:nodes/CN=system:node:worker-1", "DNS:api.example.com,IP:10.0.0.71") },
      stranger: { user: "system:node:intruder", request: servingCsr(dir, "stranger", "/O=system:nodes/CN=system:node:intruder", "DNS:intruder") },
      subject: { user: "system:node:worker-2", request: servingCsr(dir, "subject", "/O=system:nodes/CN=system:node:worker-1", "DNS:worker-2,IP:10.0.0.72") },
      // The review's H2: a Netscape comment after the names, printed on lines of its own
      // that look like the names, hid them from the text-reading approver.
      comment: {
        user: "system:node:worker-1",
        request: craftedCsr(dir, "comment", "/O=system:nodes/CN=system:node:worker-1", [
          "subjectAltName = DNS:worker-1,DNS:kubernetes.default.svc,IP:10.213.7.100",
          `nsComment = DER:${der(0x16, Buffer.from("Subject Alternative Name:\n    DNS:worker-1, IP Address:10.0.0.71")).toString("hex")}`,
        ]),
      },
      commentonly: {
        user: "system:node:worker-1",
        request: craftedCsr(dir, "commentonly", "/O=system:nodes/CN=system:node:worker-1", ["subjectAltName = DNS:worker-1,IP:10.0.0.71", "nsComment = a comment"]),
      },
      // A DNS name with a newline in it: the rest of the line reads as more names.
      newline: {
        user: "system:node:worker-1",
        request: craftedCsr(dir, "newline", "/O=system:nodes/CN=system:node:worker-1", [
          `subjectAltName = DER:${der(0x30, Buffer.concat([der(0x82, Buffer.from("worker-1\nDNS:kubernetes.default.svc")), der(0x87, Buffer.from([10, 0, 0, 71]))])).toString("hex")}`,
        ]),
      },
      extraip: { user: "system:node:worker-1", request: servingCsr(dir, "extraip", "/O=system:nodes/CN=system:node:worker-1", "DNS:worker-1,IP:10.0.0.71,IP:10.213.7.100") },
      email: { user: "system:node:worker-1", request: servingCsr(dir, "email", "/O=system:nodes/CN=system:node:worker-1", "DNS:worker-1,IP:10.0.0.71,email:a@b.c") },
      extension: {
        user: "system:node:worker-1",
        request: craftedCsr(dir, "extension", "/O=system:nodes/CN=system:node:worker-1", ["subjectAltName = DNS:worker-1,IP:10.0.0.71", "basicConstraints = critical,CA:TRUE"]),
      },
      extrasubject: { user: "system:node:worker-1", request: servingCsr(dir, "extrasubject", "/O=system:nodes/OU=admins/CN=system:node:worker-1", "DNS:worker-1,IP:10.0.0.71") },
    };
    for (const [name, c] of Object.entries(csrs)) fs.writeFileSync(path.join(dir, `${name}.b64`), c.request);
    const list = Object.entries(csrs).map(([name, c]) => `${name} ${c.user} `).join("\n") + "\n";
    fs.writeFileSync(path.join(dir, "list"), list);
    fs.writeFileSync(path.join(dir, "nodes"), approverNodes([{ name: "worker-1", addresses: ["10.0.0.71"] }, { name: "worker-2", addresses: ["10.0.0.72"] }]));
    // A stand-in kubectl answering the approver's three questions and recording approvals.
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, "kubectl"),
      `#!/bin/bash
args="$*"
case "$args" in
  *"get csr -o"*kubelet-serving*) cat ${dir}/list ;;
  *"get csr -o"*) ;;
  *"certificate approve"*) echo "\${@: -1}" >> ${dir}/approved ;;
  *"status.conditions"*) ;;
  *"spec.request"*) for a in "$@"; do [ -f "${dir}/$a.b64" ] && cat "${dir}/$a.b64"; done ;;
  *) echo "unexpected kubectl $args" >&2; exit 2 ;;
esac
exit 0
`,
      { mode: 0o755 },
    );
    const r = runApprover(dir, bin);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(fs.readFileSync(path.join(dir, "approved"), "utf8").trim().split("\n"), ["good"], r.stdout);
    assert.match(r.stdout, /wrongip: IP Address:10\.0\.0\.99 is not an address of node worker-1; left pending/);
    assert.match(r.stdout, /othername: DNS:api\.example\.com is not the name of node worker-1; left pending/);
    assert.match(r.stdout, /stranger: requester system:node:intruder is not a node hakube made; left pending/);
    assert.match(r.stdout, /subject: subject is not node worker-2; left pending/);
    assert.match(r.stdout, /comment: DNS:kubernetes\.default\.svc is not the name of node worker-1; left pending/);
    assert.match(r.stdout, /commentonly: asks for extension 2\.16\.840\.1\.113730\.1\.13 \(only subjectAltName\); left pending/);
    assert.match(r.stdout, /newline: a DNS name that is not a host name; left pending/);
    assert.match(r.stdout, /extraip: IP Address:10\.213\.7\.100 is not an address of node worker-1; left pending/);
    assert.match(r.stdout, /email: asks for a name of kind \[1\] \(only DNS names and IP addresses\); left pending/);
    assert.match(r.stdout, /extension: asks for extension 2\.5\.29\.19 \(only subjectAltName\); left pending/);
    assert.match(r.stdout, /extrasubject: subject is not node worker-1; left pending/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/** A CSR as a kubelet makes it for its client certificate (no extension), or with the extensions given. */
function clientCsr(dir: string, label: string, subject: string, extensions: string[] = []): string {
  const key = path.join(dir, `${label}.key`);
  const csr = path.join(dir, `${label}.csr`);
  const cnf = path.join(dir, `${label}.cnf`);
  const dn = subject.split("/").filter(Boolean).join("\n");
  const ext = extensions.length > 0 ? `req_extensions = ext\n` : "";
  fs.writeFileSync(cnf, `[req]\ndistinguished_name = dn\n${ext}prompt = no\n[dn]\n${dn}\n[ext]\n${extensions.join("\n")}\n`);
  const r = spawnSync("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr, "-config", cnf], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return fs.readFileSync(csr).toString("base64");
}

// The review's M8: a bootstrap token of one node must not get a client certificate for
// another. The approver approves a kubelet client CSR from a bootstrap token only for the
// node whose group the token carries (system:bootstrappers:hakube:node:<node>).
test("the approver approves a bootstrap client CSR only for the node its token belongs to", () => {
  const dir = tempDir("client-approver");
  try {
    const group = (node: string) => `system:bootstrappers:hakube:node:${node}`;
    const token1 = ["system:bootstrappers", "system:bootstrappers:hakube:workers", group("worker-1"), "system:authenticated"];
    const usages = ["digital signature", "client auth"];
    const node1 = "/O=system:nodes/CN=system:node:worker-1";
    const csrs: Record<string, { user: string; groups: string[]; usages?: string[]; request: string }> = {
      good: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "good", node1) },
      // worker-1's token asking for worker-2's identity: the attack of the review.
      othernode: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "othernode", "/O=system:nodes/CN=system:node:worker-2") },
      // A token of the pool's group only (as hakube made them before): no node of its own.
      poolonly: { user: "system:bootstrap:def456", groups: ["system:bootstrappers", "system:bootstrappers:hakube:workers", "system:authenticated"], request: clientCsr(dir, "poolonly", node1) },
      twonodes: { user: "system:bootstrap:ghi789", groups: [...token1, group("worker-2")], request: clientCsr(dir, "twonodes", node1) },
      stranger: { user: "system:bootstrap:jkl012", groups: ["system:bootstrappers", group("intruder")], request: clientCsr(dir, "stranger", "/O=system:nodes/CN=system:node:intruder") },
      // The node group from anything but a bootstrap token.
      notatoken: { user: "alice", groups: [group("worker-1"), "system:authenticated"], request: clientCsr(dir, "notatoken", node1) },
      names: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "names", node1, ["subjectAltName = DNS:worker-1"]) },
      extension: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "extension", node1, ["basicConstraints = critical,CA:TRUE"]) },
      extrasubject: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "extrasubject", "/O=system:nodes/OU=admins/CN=system:node:worker-1") },
      twoorgs: { user: "system:bootstrap:abc123", groups: token1, request: clientCsr(dir, "twoorgs", "/0.O=system:nodes/1.O=system:masters/CN=system:node:worker-1") },
      serverauth: { user: "system:bootstrap:abc123", groups: token1, usages: [...usages, "server auth"], request: clientCsr(dir, "serverauth", node1) },
      // A node renewing its own certificate is the controller-manager's (selfnodeclient).
      renewal: { user: "system:node:worker-1", groups: ["system:nodes", "system:authenticated"], request: clientCsr(dir, "renewal", node1) },
    };
    for (const [name, c] of Object.entries(csrs)) {
      fs.writeFileSync(path.join(dir, `${name}.b64`), c.request);
      fs.writeFileSync(path.join(dir, `${name}.groups`), c.groups.join("\n") + "\n");
      fs.writeFileSync(path.join(dir, `${name}.usages`), (c.usages ?? usages).join("\n") + "\n");
    }
    fs.writeFileSync(path.join(dir, "list"), Object.entries(csrs).map(([name, c]) => `${name} ${c.user} `).join("\n") + "\n");
    fs.writeFileSync(path.join(dir, "nodes"), approverNodes([{ name: "worker-1", addresses: ["10.0.0.71"] }, { name: "worker-2", addresses: ["10.0.0.72"] }]));
    // A stand-in kubectl: the client CSRs above for the kubelet client signer, none for
    // the serving signer; each CSR's fields from its files; approvals recorded.
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    fs.writeFileSync(
      path.join(bin, "kubectl"),
      `#!/bin/bash
args="$*"
field() { for a in "$@"; do [ -f "${dir}/$a.$ext" ] && cat "${dir}/$a.$ext"; done; return 0; }
case "$args" in
  *"get csr -o"*kube-apiserver-client-kubelet*) cat ${dir}/list ;;
  *"get csr -o"*) ;;
  *"certificate approve"*) echo "\${@: -1}" >> ${dir}/approved ;;
  *"status.conditions"*) ;;
  *"spec.groups"*) ext=groups field "$@" ;;
  *"spec.usages"*) ext=usages field "$@" ;;
  *"spec.request"*) ext=b64 field "$@" ;;
  *) echo "unexpected kubectl $args" >&2; exit 2 ;;
esac
exit 0
`,
      { mode: 0o755 },
    );
    const r = runApprover(dir, bin);
    assert.equal(r.status, 0, r.stderr);
    const approved = fs.existsSync(path.join(dir, "approved")) ? fs.readFileSync(path.join(dir, "approved"), "utf8").trim().split("\n") : [];
    assert.deepEqual(approved, ["good"], `approved only worker-1's own client CSR from worker-1's token; the approver said:\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /approved good: the client certificate of node worker-1/);
    assert.match(r.stdout, /othernode: subject is not node worker-1; left pending/);
    assert.match(r.stdout, /poolonly: requester system:bootstrap:def456 is not the bootstrap token of one node hakube made; left pending/);
    assert.match(r.stdout, /twonodes: requester system:bootstrap:ghi789 is not the bootstrap token of one node hakube made; left pending/);
    assert.match(r.stdout, /stranger: requester system:bootstrap:jkl012 is not the bootstrap token of one node hakube made; left pending/);
    assert.match(r.stdout, /notatoken: requester alice is not the bootstrap token of one node hakube made; left pending/);
    assert.match(r.stdout, /names: asks for extension 2\.5\.29\.17 \(a client certificate asks for none\); left pending/);
    assert.match(r.stdout, /extension: asks for extension 2\.5\.29\.19 \(a client certificate asks for none\); left pending/);
    assert.match(r.stdout, /extrasubject: subject is not node worker-1; left pending/);
    assert.match(r.stdout, /twoorgs: a subject naming 2\.5\.4\.10 twice; left pending/);
    assert.match(r.stdout, /serverauth: asks for the usage server auth \(a client certificate's are digital signature, key encipherment, client auth\); left pending/);
    assert.doesNotMatch(r.stdout, /renewal/, "a node's own renewal is left to the controller-manager, silently");
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The kubelet step's script, run with real bash in a folder standing for the node's root:
 * a stand-in systemctl whose `restart kubelet.service` plays a kubelet (with the bootstrap
 * kubeconfig there, and `joins` true, it writes its kubeconfig and certificates, as a
 * kubelet that bootstrapped; it records whether the bootstrap kubeconfig was there), and a
 * stand-in curl that says the node and its pods are ready.
 */
function runKubeletStep(s: { joined: boolean; changed: string[]; joins: boolean; unusable?: boolean }) {
  const root = tempDir("kubelet-step");
  const at = (p: string) => path.join(root, p);
  const bin = at("bin");
  fs.mkdirSync(bin);
  fs.mkdirSync(at("etc/kubernetes/pki"), { recursive: true });
  fs.mkdirSync(at("var/lib/kubelet/pki"), { recursive: true });
  // A real certificate, valid for a day: what a kubelet's client certificate file holds.
  const cert = at("cert.pem");
  const r = spawnSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", at("cert.key"), "-out", cert, "-days", "1", "-subj", "/O=system:nodes/CN=system:node:worker-1"], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  const boot = at("etc/kubernetes/bootstrap-kubelet.conf");
  fs.writeFileSync(boot, "token: made-up\n", { mode: 0o600 });
  fs.writeFileSync(at("etc/kubernetes/pki/ca.crt"), "ca\n");
  const joinedFiles = `cp ${cert} ${at("var/lib/kubelet/pki/kubelet-client-current.pem")}; cp ${cert} ${at("var/lib/kubelet/pki/kubelet-server-current.pem")}; echo kubeconfig > ${at("var/lib/kubelet/kubeconfig")}`;
  if (s.joined) {
    spawnSync("bash", ["-c", joinedFiles]);
    fs.writeFileSync(at("active"), "");
  }
  if (s.unusable) fs.writeFileSync(at("var/lib/kubelet/pki/kubelet-client-current.pem"), "no certificate\n");
  fs.writeFileSync(
    path.join(bin, "systemctl"),
    `#!/bin/bash
case "$1" in
  is-active) [ -e ${at("active")} ] ;;
  show) echo 0 ;;
  stop) [ "$2" != kubelet.service ] || rm -f ${at("active")} ;;
  restart)
    [ "$2" = kubelet.service ] || exit 0
    touch ${at("active")}
    if [ -e ${boot} ]; then echo yes >> ${at("saw-bootstrap")}; else echo no >> ${at("saw-bootstrap")}; fi
    if [ -e ${boot} ] && ${s.joins}; then ${joinedFiles}; fi ;;
esac
exit 0
`,
    { mode: 0o755 },
  );
  fs.writeFileSync(path.join(bin, "curl"), `#!/bin/bash\ncase "$*" in *"/api/v1/nodes/"*) echo '{"type":"Ready","status":"True"}' ;; *) echo '{}' ;; esac\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(bin, "sleep"), "#!/bin/bash\nexit 0\n", { mode: 0o755 });
  const script = kubeletScript("worker-1", "https://10.0.0.100:6443", 4).replaceAll("/etc/kubernetes", at("etc/kubernetes")).replaceAll("/var/lib/kubelet", at("var/lib/kubelet"));
  const changed = s.changed.map((p) => p.replace("/etc/kubernetes", at("etc/kubernetes"))).join("\n");
  // The step's prologue (strict mode, umask) without its fixed PATH, which would hide the stand-ins.
  const prologue = scriptPrologue.split("\n").filter((l) => !l.startsWith("export PATH=")).join("\n");
  const run = spawnSync("bash", ["-c", `${prologue}\n${retryFunction}\n${script}`], {
    encoding: "utf8",
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, HAKUBE_CHANGED: changed ? `${changed}\n` : "" },
    timeout: 60_000,
  });
  const saw = fs.existsSync(at("saw-bootstrap")) ? fs.readFileSync(at("saw-bootstrap"), "utf8").trim().split("\n") : [];
  const left = fs.existsSync(boot);
  fs.rmSync(root, { recursive: true, force: true });
  return { ...run, restartsSawBootstrap: saw, bootstrapLeft: left };
}

// The review's M8: the token stays on a worker only while its kubelet needs it.
test("the kubelet step removes the bootstrap kubeconfig once the kubelet has its client certificate, and at once when it has one already", () => {
  const boot = "/etc/kubernetes/bootstrap-kubelet.conf";
  const fresh = runKubeletStep({ joined: false, changed: [boot, "/etc/kubernetes/kubelet.yaml"], joins: true });
  assert.equal(fresh.status, 0, fresh.stdout + fresh.stderr);
  assert.deepEqual(fresh.restartsSawBootstrap, ["yes"], "a new node's kubelet starts with its bootstrap kubeconfig");
  assert.equal(fresh.bootstrapLeft, false, `a new node: the bootstrap kubeconfig is gone once the kubelet has its certificate\n${fresh.stdout}`);

  const renewed = runKubeletStep({ joined: true, changed: [boot], joins: true });
  assert.equal(renewed.status, 0, renewed.stdout + renewed.stderr);
  assert.deepEqual(renewed.restartsSawBootstrap, [], "a renewed token restarts no kubelet");
  assert.equal(renewed.bootstrapLeft, false, `a joined node: a renewed token's kubeconfig is removed at once\n${renewed.stdout}`);

  // A CA rotation step: the kubelet bootstraps again, with the kubeconfig written for it.
  const rotated = runKubeletStep({ joined: true, changed: ["/etc/kubernetes/pki/ca.crt", boot], joins: true });
  assert.equal(rotated.status, 0, rotated.stdout + rotated.stderr);
  assert.match(rotated.stdout, /kubelet bootstraps its certificates again/);
  assert.deepEqual(rotated.restartsSawBootstrap, ["yes"]);
  assert.equal(rotated.bootstrapLeft, false, `after the CA rotation's bootstrap the kubeconfig is gone\n${rotated.stdout}`);

  // A client certificate openssl cannot accept (expired while the node was off, or broken):
  // the kubelet bootstraps again with the kubeconfig written for it.
  const unusable = runKubeletStep({ joined: true, unusable: true, changed: [boot], joins: true });
  assert.equal(unusable.status, 0, unusable.stdout + unusable.stderr);
  assert.match(unusable.stdout, /the kubelet has no valid client certificate: it bootstraps again/);
  assert.deepEqual(unusable.restartsSawBootstrap, ["yes"]);
  assert.equal(unusable.bootstrapLeft, false);

  // A join that does not finish in time: the step fails and takes the token with it.
  const stuck = runKubeletStep({ joined: false, changed: [boot], joins: false });
  assert.notEqual(stuck.status, 0);
  assert.match(stuck.stderr, /kubelet has its client certificate: still failing/);
  assert.equal(stuck.bootstrapLeft, false, "a failed join leaves no token on the node");
});

test("bootstrap tokens are renewed once less than half of their lifetime is left", () => {
  const now = Date.parse("2026-12-02T12:00:00Z");
  assert.equal(tokenDue("2026-12-03T11:00:00Z", 24, now), false, "23 h of 24 left");
  assert.equal(tokenDue("2026-12-02T23:00:00Z", 24, now), true, "11 h of 24 left");
  assert.equal(tokenDue("2026-12-01T00:00:00Z", 24, now), true, "expired");
  assert.equal(tokenDue("garbage", 24, now), true);
});

/**
 * A stand-in for iptables' nat table that keeps its chains in files (-N -X -F -A -I -D -C
 * -S), so the balanced-endpoint script runs for real against kube-proxy-like state.
 */
function fakeIptables(dir: string): { bin: string; chain: (name: string) => string[] } {
  const state = path.join(dir, "nat");
  const bin = path.join(dir, "bin");
  fs.mkdirSync(state, { recursive: true });
  fs.mkdirSync(bin, { recursive: true });
  for (const c of ["PREROUTING", "OUTPUT"]) fs.writeFileSync(path.join(state, c), "");
  fs.writeFileSync(
    path.join(bin, "iptables"),
    `#!/bin/bash
state=${state}
args=()
while [ $# -gt 0 ]; do case "$1" in -w) shift 2 ;; -t) shift 2 ;; *) args+=("$1"); shift ;; esac; done
op=\${args[0]} chain=\${args[1]} f="$state/\${args[1]}"
rest="\${args[*]:2}"
case "$op" in
  -N) [ -e "$f" ] && exit 1; : > "$f" ;;
  -X) [ -e "$f" ] || exit 1; rm "$f" ;;
  -F) [ -e "$f" ] || exit 1; : > "$f" ;;
  -A) [ -e "$f" ] || exit 1; echo "$rest" >> "$f" ;;
  -I) [ -e "$f" ] || exit 1; rest="\${args[*]:3}"; { echo "$rest"; cat "$f"; } > "$f.new"; mv "$f.new" "$f" ;;
  -C) [ -e "$f" ] && grep -qxF -- "$rest" "$f" ;;
  -D) [ -e "$f" ] && grep -qxF -- "$rest" "$f" || exit 1
      awk -v r="$rest" '!done && $0 == r { done = 1; next } { print }' "$f" > "$f.new"; mv "$f.new" "$f" ;;
  -S) [ -e "$f" ] || exit 1
      case "$chain" in PREROUTING|OUTPUT) echo "-P $chain ACCEPT" ;; *) echo "-N $chain" ;; esac
      sed "s/^/-A $chain /" "$f" ;;
  *) echo "fake iptables: $op" >&2; exit 2 ;;
esac
`,
    { mode: 0o755 },
  );
  return { bin, chain: (name) => (fs.existsSync(path.join(state, name)) ? fs.readFileSync(path.join(state, name), "utf8").split("\n").filter(Boolean) : []) };
}

test("pods to the balanced endpoint: the DNAT rule in its own chain, jumped to first even after kube-proxy prepended its jump, idempotent, and removed on request", () => {
  const dir = tempDir("api-balanced");
  const ipt = fakeIptables(dir);
  const run = (script: string) => {
    const r = spawnSync("bash", ["-c", script.replace(/^#!.*\n/, "")], { encoding: "utf8", env: { ...process.env, PATH: `${ipt.bin}:${process.env.PATH}` } });
    assert.equal(r.status, 0, r.stderr);
  };
  const on = apiBalancedScript({ serviceIp: "10.96.0.1", to: { address: "10.213.7.100", port: 8443 } });
  // kube-proxy got there first (at boot its jump is prepended).
  fs.appendFileSync(path.join(dir, "nat", "PREROUTING"), "-j KUBE-SERVICES\n");
  fs.appendFileSync(path.join(dir, "nat", "OUTPUT"), "-j KUBE-SERVICES\n");
  run(on);
  const dnat = "-d 10.96.0.1/32 -p tcp --dport 443 -m comment --comment hakube-api-balanced -j DNAT --to-destination 10.213.7.100:8443";
  assert.deepEqual(ipt.chain("HAKUBE-API"), [dnat]);
  assert.deepEqual(ipt.chain("PREROUTING"), ["-j HAKUBE-API", "-j KUBE-SERVICES"]);
  assert.deepEqual(ipt.chain("OUTPUT"), ["-j HAKUBE-API", "-j KUBE-SERVICES"]);
  run(on);
  assert.deepEqual(ipt.chain("PREROUTING"), ["-j HAKUBE-API", "-j KUBE-SERVICES"], "a second run changes nothing");
  // kube-proxy restarted and prepended its jump again: the timer's run puts ours first.
  fs.writeFileSync(path.join(dir, "nat", "PREROUTING"), "-j KUBE-SERVICES\n-j HAKUBE-API\n");
  run(on);
  assert.deepEqual(ipt.chain("PREROUTING"), ["-j HAKUBE-API", "-j KUBE-SERVICES"]);
  // A new VIP replaces the rule.
  run(apiBalancedScript({ serviceIp: "10.96.0.1", to: { address: "10.213.7.101", port: 8443 } }));
  assert.deepEqual(ipt.chain("HAKUBE-API"), [dnat.replace("10.213.7.100", "10.213.7.101")]);
  // podApiAccess "service": the jumps and the chain go, kube-proxy's rules stay.
  run(apiBalancedScript({ serviceIp: "10.96.0.1" }));
  assert.deepEqual(ipt.chain("PREROUTING"), ["-j KUBE-SERVICES"]);
  assert.deepEqual(ipt.chain("OUTPUT"), ["-j KUBE-SERVICES"]);
  assert.equal(fs.existsSync(path.join(dir, "nat", "HAKUBE-API")), false);
  run(apiBalancedScript({ serviceIp: "10.96.0.1" }));
});
