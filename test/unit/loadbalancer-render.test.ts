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
  fs.writeFileSync(file, config.replace(/ca-file \S+/g, `ca-file ${path.join(dir, "ca.crt")}`));
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
  // keepalived's monitor counts apiservers that answer TLS (ready or not), in a backend
  // no frontend sends to: an etcd election that fails every /readyz keeps the VIP put.
  assert.match(config, /monitor fail if \{ nbsrv\(kube-apiservers-alive\) lt 1 \}/);
  const alive = config.slice(config.indexOf("backend kube-apiservers-alive"));
  assert.doesNotMatch(alive, /httpchk|http-check/);
  assert.match(alive, /default-server check check-ssl verify required ca-file \S+ inter 500ms fall 2 rise 2/);
  assert.equal((alive.match(/^  server /gm) ?? []).length, backends.length);
  assert.doesNotMatch(config, /(default_backend|use_backend) kube-apiservers-alive/);
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

/** `<backend>/<server>` -> status (UP, DOWN, ...) from HAProxy's admin socket ("show stat"). */
async function serverStates(socket: string): Promise<Record<string, string>> {
  const net = await import("net");
  const text = await new Promise<string>((resolve, reject) => {
    let out = "";
    const c = net.createConnection(socket, () => c.write("show stat\n"));
    c.setTimeout(2000, () => c.destroy(new Error("admin socket timed out")));
    c.on("data", (d) => (out += d.toString()));
    c.on("end", () => resolve(out));
    c.on("error", reject);
  });
  const states: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const f = line.split(",");
    if (f.length > 17 && !line.startsWith("#") && f[1] !== "FRONTEND" && f[1] !== "BACKEND") {
      states[`${f[0]}/${f[1]}`] = f[17].split(" ")[0];
    }
  }
  return states;
}

/** Polls `url` (loopback only) until its HTTP status is `want`, bounded; returns the last status. */
function monitorStatusBecomes(url: string, want: string, attempts: number): string {
  let status = "";
  for (let i = 0; i < attempts; i++) {
    status = run("curl", ["--silent", "--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}", url]).stdout.trim();
    if (status === want) return status;
    run("sleep", ["0.25"]);
  }
  return status;
}

test("the real HAProxy: its monitor keeps the VIP while an apiserver answers TLS but none is ready, and drops it when none answers", async () => {
  const dir = tempDir("haproxy-monitor");
  const ca = path.join(dir, "ca.crt");
  const key = path.join(dir, "ca.key");
  const made = run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=apiserver",
    "-days", "1", "-keyout", key, "-out", ca,
  ]);
  assert.equal(made.status, 0, made.stderr);
  // Ports on loopback from the process id, away from the stacks' own.
  const base = 20000 + (process.pid % 20000);
  const [apiPort, frontPort, monitorPort] = [base, base + 1, base + 2];
  const config = renderHaproxyConfig({
    port: frontPort,
    monitorPort,
    backends: [{ name: "cp-1", address: "127.0.0.1", port: apiPort }],
    healthCheck: { intervalMs: 200, fall: 2, rise: 2 },
    shutdownSessionsOnDown: true,
    connectTimeoutMs: 500,
    caFile: ca,
  })
    .replace(/^\s+(user|group) haproxy$/gm, "")
    .replace(/stats socket \S+/, `stats socket ${path.join(dir, "admin.sock")}`)
    .replace(`bind :${frontPort}`, `bind 127.0.0.1:${frontPort}`);
  fs.writeFileSync(path.join(dir, "haproxy.cfg"), config);
  const { spawn } = await import("child_process");
  // A TLS server that completes the handshake but never answers /readyz with 200: an
  // apiserver whose etcd has no leader.
  const apiserver = spawn("openssl", ["s_server", "-quiet", "-accept", `127.0.0.1:${apiPort}`, "-cert", ca, "-key", key], { stdio: "ignore" });
  const haproxy = spawn("haproxy", ["-db", "-f", path.join(dir, "haproxy.cfg")], { stdio: "ignore" });
  try {
    const monitor = `http://127.0.0.1:${monitorPort}/hakube-healthz`;
    const socket = path.join(dir, "admin.sock");
    // The /readyz backend marks its only server down (no 200 ever comes back) ...
    let states: Record<string, string> = {};
    for (let i = 0; i < 60 && states["kube-apiservers/cp-1"] !== "DOWN"; i++) {
      await new Promise((r) => setTimeout(r, 250));
      states = await serverStates(socket).catch(() => ({}));
    }
    assert.equal(states["kube-apiservers/cp-1"], "DOWN", JSON.stringify(states));
    assert.equal(states["kube-apiservers-alive/cp-1"], "UP", JSON.stringify(states));
    // ... and the monitor keepalived asks still says healthy: the VIP stays put.
    assert.equal(monitorStatusBecomes(monitor, "200", 1), "200", "an apiserver that answers TLS keeps the monitor up");
    apiserver.kill("SIGKILL");
    assert.equal(monitorStatusBecomes(monitor, "503", 40), "503", "no apiserver answering at all fails the monitor");
  } finally {
    apiserver.kill("SIGKILL");
    haproxy.kill("SIGKILL");
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
