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
import { vrrpInstances } from "../helpers/keepalived";

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
  assert.match(config, /check_unicast_src\n\s+unicast_peer \{\n\s+10.0.0.22 min_ttl 255\n\s+\}/);
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

test("keepalived.conf: every vrrp_instance takes adverts only from its unicast peers (the other hosts, never itself) on the same segment, and passes keepalived -t", () => {
  // Security review M7: without check_unicast_src keepalived acts on an advert from any
  // address (a worker, a pod), and one with a higher priority takes the VIP.
  const middle = { ...keepalived, selfAddress: "10.0.0.22", peerAddresses: ["10.0.0.21", "10.0.0.23"] };
  for (const s of [keepalived, middle]) {
    const config = renderKeepalivedConfig(s);
    const instances = vrrpInstances(config);
    assert.ok(instances.length > 0, "at least one vrrp_instance");
    for (const i of instances) {
      assert.equal(i.checksUnicastSource, true, `${i.name}: check_unicast_src`);
      assert.equal(i.sourceAddress, s.selfAddress, `${i.name}: sends from its own address`);
      assert.deepEqual(i.peers.map((p) => p.address), s.peerAddresses, `${i.name}: exactly the other hosts`);
      assert.ok(!i.peers.some((p) => p.address === s.selfAddress), `${i.name}: never itself`);
      // keepalived sends unicast adverts with TTL 255; one that crossed a router (a pod's,
      // forwarded by its node) arrives with less and is dropped.
      for (const p of i.peers) assert.equal(p.options, "min_ttl 255", `${i.name}: ${p.address} only from the same segment`);
    }
    const r = keepalivedCheck(config);
    assert.equal(r.status, 0, r.out);
    assert.doesNotMatch(r.out, /Unknown keyword|unknown unicast_peer option/, r.out);
  }
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
      // Before its first check a server shows UP (check status INI): not yet a state a
      // check decided, so it is told apart, and waiting for UP waits for a passed check.
      states[`${f[0]}/${f[1]}`] = f[36] === "INI" ? "UNCHECKED" : f[17].split(" ")[0];
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

/**
 * The real HAProxy on loopback with hakube's config for `backends` (checks every 200 ms),
 * in a new folder with a throwaway certificate (CN apiserver) that is both the stand-in
 * apiservers' certificate and the CA HAProxy checks them against.
 */
async function realHaproxy(prefix: string, frontPort: number, monitorPort: number, backends: { name: string; port: number }[]) {
  const dir = tempDir(prefix);
  const cert = path.join(dir, "ca.crt");
  const key = path.join(dir, "ca.key");
  const made = run("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=apiserver",
    "-days", "1", "-keyout", key, "-out", cert,
  ]);
  assert.equal(made.status, 0, made.stderr);
  const socket = path.join(dir, "admin.sock");
  const config = renderHaproxyConfig({
    port: frontPort,
    monitorPort,
    backends: backends.map((b) => ({ ...b, address: "127.0.0.1" })),
    healthCheck: { intervalMs: 200, fall: 2, rise: 2 },
    shutdownSessionsOnDown: true,
    connectTimeoutMs: 500,
    caFile: cert,
  })
    .replace(/^\s+(user|group) haproxy$/gm, "")
    .replace(/stats socket \S+/, `stats socket ${socket}`)
    .replace(`bind :${frontPort}`, `bind 127.0.0.1:${frontPort}`);
  fs.writeFileSync(path.join(dir, "haproxy.cfg"), config);
  const { spawn } = await import("child_process");
  const haproxy = spawn("haproxy", ["-db", "-f", path.join(dir, "haproxy.cfg")], { stdio: "ignore" });
  return { dir, cert, key, socket, haproxy };
}

/** Polls HAProxy's admin socket (bounded: `attempts`, `everyMs` apart) until `server` is `want`; the last states. */
async function stateBecomes(socket: string, server: string, want: string, attempts: number, everyMs: number): Promise<Record<string, string>> {
  let states: Record<string, string> = {};
  for (let i = 0; i < attempts && states[server] !== want; i++) {
    await new Promise((r) => setTimeout(r, everyMs));
    states = await serverStates(socket).catch(() => ({}));
  }
  return states;
}

test("the real HAProxy: its monitor keeps the VIP while an apiserver answers TLS but none is ready, and drops it when none answers", async () => {
  // Ports on loopback from the process id, away from the stacks' own.
  const base = 20000 + (process.pid % 20000);
  const [apiPort, frontPort, monitorPort] = [base, base + 1, base + 2];
  const h = await realHaproxy("haproxy-monitor", frontPort, monitorPort, [{ name: "cp-1", port: apiPort }]);
  // A TLS server that completes every handshake but never answers /readyz: an apiserver
  // whose etcd has no leader. Any number of connections at once (HAProxy's checks overlap),
  // in a process of its own (the checks below wait with synchronous calls).
  const { spawn } = await import("child_process");
  const server = `const tls = require("tls"), fs = require("fs");
const [port, cert, key] = process.argv.slice(1);
const s = tls.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (c) => c.on("error", () => undefined));
s.on("tlsClientError", () => undefined);
s.listen(Number(port), "127.0.0.1", () => console.log("listening"));`;
  const apiserver = spawn(process.execPath, ["-e", server, String(apiPort), h.cert, h.key], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    apiserver.stdout!.once("data", () => resolve());
    apiserver.once("exit", (code) => reject(new Error(`the stand-in apiserver exited (${code})`)));
  });
  const stop = () => apiserver.kill("SIGKILL");
  try {
    const monitor = `http://127.0.0.1:${monitorPort}/hakube-healthz`;
    // The /readyz backend marks its only server down (no 200 ever comes back) ...
    const states = await stateBecomes(h.socket, "kube-apiservers/cp-1", "DOWN", 60, 250);
    assert.equal(states["kube-apiservers/cp-1"], "DOWN", JSON.stringify(states));
    // ... while the TLS-only check passes (it failed until the stand-in listened, and rises
    // after `rise` checks: awaited, not raced) ...
    const alive = await stateBecomes(h.socket, "kube-apiservers-alive/cp-1", "UP", 60, 250);
    assert.equal(alive["kube-apiservers-alive/cp-1"], "UP", JSON.stringify(alive));
    assert.equal(alive["kube-apiservers/cp-1"], "DOWN", JSON.stringify(alive));
    // ... and the monitor keepalived asks still says healthy: the VIP stays put.
    assert.equal(monitorStatusBecomes(monitor, "200", 1), "200", "an apiserver that answers TLS keeps the monitor up");
    stop();
    assert.equal(monitorStatusBecomes(monitor, "503", 40), "503", "no apiserver answering at all fails the monitor");
  } finally {
    stop();
    h.haproxy.kill("SIGKILL");
    fs.rmSync(h.dir, { recursive: true, force: true });
  }
});

/**
 * A stand-in apiserver on loopback over TLS: `/readyz?exclude=shutdown` answers as told,
 * `/readyz` fails also while it is stopping, `/who` answers its name (over keep-alive
 * connections).
 */
async function stubApiserver(name: string, port: number, cert: string, key: string) {
  const https = await import("https");
  const state = { ready: true, stopping: false };
  const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), keepAliveTimeout: 60_000 }, (req, res) => {
    const answer = (ok: boolean, body: string) => {
      res.writeHead(ok ? 200 : 500, { "content-type": "text/plain" });
      res.end(body);
    };
    if (req.url === "/readyz?exclude=shutdown") answer(state.ready, "ok");
    else if (req.url === "/readyz") answer(state.ready && !state.stopping, state.stopping ? "[-]shutdown failed" : "ok");
    else if (req.url === "/who") answer(true, name);
    else answer(false, "not found");
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { state, server };
}

test("the real HAProxy: an apiserver told to stop gets no new connection but keeps the ones it has, then is marked down when it stops listening", async () => {
  // Ports on loopback from the process id, away from the stacks' own and the test above's.
  const base = 40000 + (process.pid % 20000);
  const [port1, port2, frontPort, monitorPort] = [base, base + 1, base + 2, base + 3];
  const h = await realHaproxy("haproxy-stopping", frontPort, monitorPort, [
    { name: "cp-1", port: port1 },
    { name: "cp-2", port: port2 },
  ]);
  const { cert, key } = h;
  const https = await import("https");
  const cp1 = await stubApiserver("cp-1", port1, cert, key);
  const cp2 = await stubApiserver("cp-2", port2, cert, key);
  /** cp-1's state in the traffic backend becoming `want` (bounded); the last states. */
  const cp1Becomes = (want: string) => stateBecomes(h.socket, "kube-apiservers/cp-1", want, 80, 100);
  const cp2Becomes = (want: string) => stateBecomes(h.socket, "kube-apiservers/cp-2", want, 80, 100);
  /** `/who` through HAProxy: on a new connection each, or on the keep-alive `agent`. */
  const who = (agent: import("https").Agent | false) =>
    new Promise<string>((resolve, reject) => {
      const req = https.get({ host: "127.0.0.1", port: frontPort, path: "/who", ca: fs.readFileSync(cert), checkServerIdentity: () => undefined, agent }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(`${res.statusCode} ${body}`));
      });
      req.setTimeout(3000, () => req.destroy(new Error("timed out")));
      req.on("error", reject);
    });
  const kept = new https.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    let states = await cp1Becomes("UP");
    assert.equal(states["kube-apiservers/cp-1"], "UP", JSON.stringify(states));
    // A kept connection that lands on cp-1 (round robin: at most a few tries).
    let first = "";
    for (let i = 0; i < 6 && first !== "200 cp-1"; i++) {
      kept.destroy();
      first = await who(kept);
    }
    assert.equal(first, "200 cp-1", "a kept connection to cp-1");

    cp1.state.stopping = true; // SIGTERM: serving through its shutdown delay, /readyz fails its shutdown check
    states = await cp1Becomes("NOLB");
    assert.equal(states["kube-apiservers/cp-1"], "NOLB", `out of the rotation, not down: ${JSON.stringify(states)}`);
    // (cp-2 up too: on a busy machine its checks may have missed; awaited, not raced.)
    states = await cp2Becomes("UP");
    assert.equal(states["kube-apiservers/cp-2"], "UP", JSON.stringify(states));
    const fresh: string[] = [];
    for (let i = 0; i < 8; i++) fresh.push(await who(false));
    assert.deepEqual(fresh, Array(8).fill("200 cp-2"), "every new connection goes to cp-2");
    assert.equal(await who(kept), "200 cp-1", "the kept connection still reaches cp-1");

    cp1.server.close(); // the listener closes; it would end its kept connections next
    cp1.server.closeAllConnections();
    states = await cp1Becomes("DOWN");
    assert.equal(states["kube-apiservers/cp-1"], "DOWN", JSON.stringify(states));
    assert.equal(await who(false), "200 cp-2");

    // Started again: ready and no longer stopping, it takes new connections once more.
    const again = await stubApiserver("cp-1", port1, cert, key);
    try {
      states = await cp1Becomes("UP");
      assert.equal(states["kube-apiservers/cp-1"], "UP", JSON.stringify(states));
      states = await cp2Becomes("UP");
      assert.equal(states["kube-apiservers/cp-2"], "UP", JSON.stringify(states));
      const served = new Set<string>();
      for (let i = 0; i < 6; i++) served.add(await who(false));
      assert.deepEqual([...served].sort(), ["200 cp-1", "200 cp-2"], "both serve new connections");
    } finally {
      again.server.closeAllConnections();
      again.server.close();
    }
  } finally {
    kept.destroy();
    h.haproxy.kill("SIGKILL");
    for (const s of [cp1, cp2]) {
      s.server.closeAllConnections();
      s.server.close();
    }
    fs.rmSync(h.dir, { recursive: true, force: true });
  }
});
