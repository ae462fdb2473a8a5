import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { createHash } from "crypto";
import { AddressInfo } from "net";
import {
  localBinaryPaths,
  releaseArtifact,
  renderReleaseInstallScript,
  renderUploadedInstallScript,
} from "../../components/binaries/source";
import { scriptPrologue } from "../../components/remote/files";
import { run, tempDir } from "../helpers/tools";

test("official release locations and pinned digest", () => {
  const k = releaseArtifact("kubernetes", "v1.36.0", { kind: "release" });
  assert.equal(k.url, "https://dl.k8s.io/v1.36.0/kubernetes-server-linux-amd64.tar.gz");
  assert.match(k.digest!, /^sha512:[0-9a-f]{128}$/);
  const e = releaseArtifact("etcd", "v3.6.16", { kind: "release" });
  assert.equal(e.url, "https://github.com/etcd-io/etcd/releases/download/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz");
  assert.equal(e.digest, undefined, "no etcd digest is pinned without an official source");
  assert.equal(e.innerDirectory, "etcd-v3.6.16-linux-amd64");
});

/** Serves one tarball on loopback, runs the rendered install script against it. */
async function installFromMirror(digestFor: (bytes: Buffer) => string) {
  const work = tempDir("release");
  const inner = path.join(work, "src", "etcd-v3.6.16-linux-amd64");
  fs.mkdirSync(inner, { recursive: true });
  for (const b of ["etcd", "etcdctl"]) {
    fs.writeFileSync(path.join(inner, b), `#!/bin/sh\necho ${b}-fake\n`, { mode: 0o755 });
  }
  const tarball = path.join(work, "etcd.tar.gz");
  assert.equal(run("tar", ["-czf", tarball, "-C", path.join(work, "src"), "etcd-v3.6.16-linux-amd64"]).status, 0);
  const bytes = fs.readFileSync(tarball);
  let requests = 0;
  const server = http.createServer((req, res) => {
    requests++;
    if (req.url === "/v3.6.16/etcd-v3.6.16-linux-amd64.tar.gz") {
      res.writeHead(200).end(bytes);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  try {
    const artifact = releaseArtifact("etcd", "v3.6.16", { kind: "release", mirrorUrl: `http://127.0.0.1:${port}/`, digest: digestFor(bytes) });
    const script = `${scriptPrologue}\n${renderReleaseInstallScript(artifact, "v3.6.16", ["etcd", "etcdctl"], {
      cacheDir: path.join(work, "cache"),
      binDir: path.join(work, "bin"),
    })}`;
    fs.mkdirSync(path.join(work, "bin"));
    const first = await runAsync(script);
    const second = await runAsync(script);
    return { work, first, second, requests: () => requests };
  } finally {
    server.close();
  }
}

function runAsync(script: string): Promise<{ status: number | null; stdout: string; stderr: string }> {
  // The HTTP server lives in this process, so the script must run asynchronously.
  const { spawn } = require("child_process") as typeof import("child_process");
  return new Promise((resolve) => {
    const child = spawn("bash", ["-c", script]);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (status: number | null) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

test("release install downloads once, verifies the digest and installs the binaries", async () => {
  const { work, first, second, requests } = await installFromMirror((b) => `sha256:${createHash("sha256").update(b).digest("hex")}`);
  assert.equal(first.status, 0, first.stderr);
  assert.equal(second.status, 0, second.stderr);
  assert.equal(requests(), 1, "a verified tarball is not downloaded again");
  assert.equal(run(path.join(work, "bin", "etcdctl"), []).stdout.trim(), "etcdctl-fake");
  assert.equal((fs.statSync(path.join(work, "bin", "etcd")).mode & 0o777).toString(8), "755");
  fs.rmSync(work, { recursive: true, force: true });
});

test("release install refuses a tarball whose digest does not match", async () => {
  const wrong = `sha512:${"0".repeat(128)}`;
  const { work, first } = await installFromMirror(() => wrong);
  assert.notEqual(first.status, 0);
  assert.match(first.stderr, /does not match the pinned sha512 digest/);
  assert.equal(fs.existsSync(path.join(work, "bin", "etcd")), false, "nothing installed");
  fs.rmSync(work, { recursive: true, force: true });
});

test("uploaded install and local directory checks", () => {
  assert.match(renderUploadedInstallScript("etcd", ["etcd"]), /install -m 0755 \/var\/lib\/hakube\/uploads\/etcd\/etcd/);
  assert.throws(() => renderUploadedInstallScript("etcd", ["../x"]), /bad binary name/);
  const dir = tempDir("bins");
  fs.writeFileSync(path.join(dir, "etcd"), "x", { mode: 0o755 });
  fs.writeFileSync(path.join(dir, "etcdctl"), "x", { mode: 0o644 });
  const found = localBinaryPaths(dir, ["etcd", "etcdctl", "etcdutl"]);
  assert.equal(found[0].problem, undefined);
  assert.match(found[1].problem!, /not executable/);
  assert.match(found[2].problem!, /missing/);
  fs.rmSync(dir, { recursive: true, force: true });
});
