import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import {
  defaultHealthCheck,
  haproxyDetectionSeconds,
  renderHaproxyConfig,
  renderKeepalivedCheck,
  renderKeepalivedConfig,
} from "../../components/loadbalancer/render";
import { run, tempDir } from "../helpers/tools";
import { assertGolden } from "../helpers/golden";

const backends = [
  { name: "cp-1", address: "10.0.0.11", port: 6443 },
  { name: "cp-2", address: "10.0.0.12", port: 6443 },
  { name: "cp-3", address: "10.0.0.13", port: 6443 },
];

function haproxyCheck(config: string): { status: number | null; out: string } {
  const dir = tempDir("haproxy");
  const ca = run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=test-ca",
    "-days", "1", "-keyout", path.join(dir, "ca.key"), "-out", path.join(dir, "ca.crt"),
  ]);
  assert.equal(ca.status, 0, ca.stderr);
  const file = path.join(dir, "haproxy.cfg");
  fs.writeFileSync(file, config.replace(/ca-file \S+/, `ca-file ${path.join(dir, "ca.crt")}`));
  const r = run("haproxy", ["-c", "-f", file]);
  fs.rmSync(dir, { recursive: true, force: true });
  return { status: r.status, out: r.stdout + r.stderr };
}

test("haproxy.cfg forwards TCP to every apiserver, checks /readyz over TLS, and passes haproxy -c", () => {
  const config = renderHaproxyConfig({ port: 6443, monitorPort: 8404, backends, healthCheck: defaultHealthCheck, shutdownSessionsOnDown: true, connectTimeoutMs: 500 });
  assert.match(config, /^\s+mode tcp$/m);
  assert.match(config, /http-check send meth GET uri \/readyz/);
  assert.match(config, /http-check expect status 200/);
  assert.match(config, /timeout connect 500ms\n  timeout client 1h/);
  assert.match(config, /retries 3\n  option redispatch 1/, "every retry goes to another apiserver");
  assert.match(config, /default-server check check-ssl verify required ca-file \S+ inter 500ms/);
  for (const b of backends) {
    assert.match(config, new RegExp(`server ${b.name} ${b.address}:6443$`, "m"));
  }
  const r = haproxyCheck(config);
  assert.equal(r.status, 0, r.out);
  assert.doesNotMatch(r.out, /\[WARNING\]|\[ALERT\]/, r.out);
  assertGolden("haproxy.cfg", config);
});

test("haproxy -c really rejects a broken config (the validator is live)", () => {
  const config = renderHaproxyConfig({ port: 6443, monitorPort: 8404, backends, healthCheck: defaultHealthCheck, shutdownSessionsOnDown: false, connectTimeoutMs: 500 });
  assert.doesNotMatch(config, /shutdown-sessions/);
  const r = haproxyCheck(config.replace("balance roundrobin", "balance nonsense"));
  assert.notEqual(r.status, 0);
});

test("detection time is interval x fall", () => {
  assert.equal(haproxyDetectionSeconds(undefined), 1);
  assert.equal(haproxyDetectionSeconds({ intervalMs: 500, fall: 3 }), 2);
  assert.equal(haproxyDetectionSeconds({ intervalMs: 2000, fall: 3 }), 6);
});

function keepalivedCheck(config: string): { status: number | null; out: string } {
  const dir = tempDir("keepalived");
  const script = path.join(dir, "check.sh");
  fs.writeFileSync(script, renderKeepalivedCheck(8404), { mode: 0o755 });
  const file = path.join(dir, "keepalived.conf");
  fs.writeFileSync(file, config.replace(/script "[^"]+"/, `script "${script}"`));
  const r = run("keepalived", ["-t", "-f", file, "-l"]);
  fs.rmSync(dir, { recursive: true, force: true });
  return { status: r.status, out: r.stdout + r.stderr };
}

const keepalived = {
  routerId: "lb-1",
  interface: "eth0",
  virtualRouterId: 51,
  priority: 150,
  advertIntervalSeconds: 0.5,
  preempt: false,
  selfAddress: "10.0.0.21",
  peerAddresses: ["10.0.0.22"],
  virtualIp: "10.0.0.100",
  virtualIpPrefixLength: 32,
};

test("keepalived.conf: unicast VRRPv3, tracks HAProxy, and passes keepalived -t", () => {
  const config = renderKeepalivedConfig(keepalived);
  assert.match(config, /vrrp_version 3/);
  assert.match(config, /advert_int 0.5/);
  assert.match(config, /nopreempt/);
  assert.match(config, /unicast_src_ip 10.0.0.21/);
  assert.match(config, /unicast_peer \{\n\s+10.0.0.22\n\s+\}/);
  assert.match(config, /10.0.0.100\/32 dev eth0/);
  assert.match(config, /track_script \{\n\s+hakube_haproxy/);
  // The holder re-announces the VIP every second and a stepping-down master speaks first.
  assert.match(config, /vrrp_garp_master_refresh 1\n/);
  assert.match(config, /vrrp_higher_prio_send_advert true/);
  const r = keepalivedCheck(config);
  assert.equal(r.status, 0, r.out);
  // keepalived -t only warns about a keyword it does not know.
  assert.doesNotMatch(r.out, /Unknown keyword/);
  assertGolden("keepalived.conf", config);
});

test("keepalived -t really rejects a broken config (the validator is live)", () => {
  const r = keepalivedCheck(renderKeepalivedConfig(keepalived).replace("virtual_router_id 51", "virtual_router_id 999"));
  assert.notEqual(r.status, 0, r.out);
});

test("preempt drops nopreempt; the check script asks HAProxy's monitor", () => {
  assert.doesNotMatch(renderKeepalivedConfig({ ...keepalived, preempt: true }), /nopreempt/);
  assert.match(renderKeepalivedCheck(8404), /http:\/\/127.0.0.1:8404\/hakube-healthz/);
});
