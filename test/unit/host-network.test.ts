import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { defaultHostNetwork, HOST_NETWORK_UNIT, renderHostNetworkScript, renderHostNetworkUnit } from "../../components/host/hostNetwork";
import { run, tempDir, verifyUnit } from "../helpers/tools";

function fakeProcSys(withCap: boolean): string {
  const dir = tempDir("procsys");
  fs.mkdirSync(path.join(dir, "net", "ipv4"), { recursive: true });
  if (withCap) fs.writeFileSync(path.join(dir, "net", "ipv4", "tcp_rto_max_ms"), "120000\n");
  fs.writeFileSync(path.join(dir, "net", "ipv4", "tcp_retries2"), "15\n");
  return dir;
}

function runScript(procSys: string): ReturnType<typeof run> {
  const script = path.join(procSys, "apply.sh");
  fs.writeFileSync(script, renderHostNetworkScript(defaultHostNetwork), { mode: 0o755 });
  return run("bash", [script], { env: { ...process.env, HAKUBE_PROC_SYS: procSys } });
}

test("host network: caps the retransmission timeout where the kernel has the setting, and leaves tcp_retries2 alone", () => {
  const dir = fakeProcSys(true);
  const r = runScript(dir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, "net/ipv4/tcp_rto_max_ms"), "utf8").trim(), "1000");
  assert.equal(fs.readFileSync(path.join(dir, "net/ipv4/tcp_retries2"), "utf8").trim(), "15");
  assert.match(r.stdout, /net\.ipv4\.tcp_rto_max_ms = 1000/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("host network: an older kernel (no tcp_rto_max_ms) gets the fallback and says so", () => {
  const dir = fakeProcSys(false);
  const r = runScript(dir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.readFileSync(path.join(dir, "net/ipv4/tcp_retries2"), "utf8").trim(), "5");
  assert.match(r.stdout, /no net\.ipv4\.tcp_rto_max_ms/);
  fs.rmSync(dir, { recursive: true, force: true });
});

test("host network: the real kernel setting, in a network namespace of its own (as root, as CI runs)", () => {
  const ns = `hakube-t${process.pid}`;
  assert.equal(run("ip", ["netns", "add", ns]).status, 0);
  try {
    const script = path.join(tempDir("hostnet"), "apply.sh");
    fs.writeFileSync(script, renderHostNetworkScript(defaultHostNetwork), { mode: 0o755 });
    const r = run("ip", ["netns", "exec", ns, "bash", script]);
    assert.equal(r.status, 0, r.stderr);
    const read = run("ip", ["netns", "exec", ns, "cat", "/proc/sys/net/ipv4/tcp_rto_max_ms"]).stdout.trim();
    // Kernels before 6.15 have no such setting; then the fallback was applied instead.
    if (read === "") {
      assert.equal(run("ip", ["netns", "exec", ns, "cat", "/proc/sys/net/ipv4/tcp_retries2"]).stdout.trim(), "5");
    } else {
      assert.equal(read, "1000");
    }
    // A read-only /proc/sys/net (a container that may not change it) fails, with the reason.
    const ro = run("ip", [
      "netns", "exec", ns, "unshare", "--mount", "--propagation", "private", "bash", "-c",
      `f=/proc/sys/net/ipv4/tcp_rto_max_ms; [ -e $f ] || f=/proc/sys/net/ipv4/tcp_retries2; cat /proc/sys/net/ipv4/tcp_rto_max_ms >/dev/null 2>&1 && echo 120000 > $f || echo 15 > $f
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,ro /proc/sys/net && bash ${script}`,
    ]);
    assert.notEqual(ro.status, 0);
    assert.match(ro.stderr, /cannot set net\.ipv4\.\S+ to \d+: \/proc\/sys\/net\/ipv4\/\S+ is read-only/);
  } finally {
    run("ip", ["netns", "del", ns]);
  }
});

test("host network unit: runs the script once per boot before the control-plane services, and verifies", () => {
  const unit = renderHostNetworkUnit();
  assert.match(unit, /Type=oneshot\nRemainAfterExit=yes/);
  assert.match(unit, /Before=.*etcd\.service.*kube-apiserver\.service/);
  assert.match(unit, /WantedBy=multi-user.target/);
  const r = verifyUnit(HOST_NETWORK_UNIT, unit.replace("/usr/local/sbin/", "/usr/local/bin/"));
  assert.equal(r.status, 0, r.stdout + r.stderr);
});
