// Access to the running local stack for the status summary, the end-to-end test and the
// fault-injection tests: stack outputs, kubectl through the VIP, SSH to the machines.
// Credentials are written to a private temp dir (0700, files 0600) and removed after use.
import { spawn, spawnSync, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { allowStackNetwork, assertSafeDestination } from "./guard";
import type { CertificateExpiry } from "../components/pki/clusterPki";

export const ROOT = path.resolve(__dirname, "..", "..");
export const TOOLCHAIN_BIN = path.join(process.env.HAKUBE_TOOLCHAIN_DIR ?? "/var/cache/hakube/toolchain", "bin");

export interface LocalHost {
  name: string;
  address: string;
  veth: string;
  netns: string;
  /** Root file system of the machine on the host (outputs of stacks before this field lack it). */
  dir?: string;
  /** "etcd" for a machine of an external etcd cluster; control plane otherwise. */
  role?: "control-plane" | "etcd";
}

/** The machines running an apiserver (all of them on a stacked stack). */
export function controlPlaneHosts(outputs: LocalOutputs): LocalHost[] {
  return outputs.hosts.filter((h) => h.role !== "etcd");
}

/** The machines running an etcd member (named by the stack's etcd endpoints). */
export function etcdHosts(outputs: LocalOutputs): LocalHost[] {
  return outputs.hosts.filter((h) => outputs.etcdEndpoints.some((e) => e.includes(`//${h.address}:`)));
}

export interface LocalOutputs {
  endpoint: string;
  virtualIp: string;
  caCertificate: string;
  kubeconfig: string;
  sshPrivateKey: string;
  etcdEndpoints: string[];
  bridge: string;
  /** The stack's machine subnet, routed through `bridge` while the stack exists. */
  subnet: string;
  hosts: LocalHost[];
  /** Machines of the backups' object store (not part of the control plane). */
  storageHosts?: LocalHost[];
  /** Where backups go, on a stack that has them. */
  backupStorage?: { endpoint: string; bucket: string; prefix: string };
  /** Worker nodes, with each one's pod range. */
  workers?: (LocalHost & { podCidr: string })[];
  /** The cluster DNS Service's address, on a stack with workers. */
  clusterDns?: string;
  /** Every certificate's end of validity and renewal time, soonest first. */
  certificateExpiry?: CertificateExpiry[];
}

/** Every machine of the stack: the control plane's, the object store's and the workers. */
export function allMachines(outputs: LocalOutputs): LocalHost[] {
  return [...outputs.hosts, ...(outputs.storageHosts ?? []), ...(outputs.workers ?? [])];
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export function run(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Run {
  const start = Date.now();
  const r: SpawnSyncReturns<string> = spawnSync(cmd, args, {
    input: opts.input,
    env: { ...process.env, ...(opts.env ?? {}) },
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 120_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code !== "ETIMEDOUT") {
    throw new Error(`${cmd} could not run: ${r.error.message}`);
  }
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", seconds: (Date.now() - start) / 1000 };
}

/**
 * Like `run`, without blocking the event loop (probes keep their timing while a fault is
 * injected or `pulumi up` runs). Killed after timeoutMs.
 */
export function runAsync(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  const start = Date.now();
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"], env: { ...process.env, ...(opts.env ?? {}) } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d));
    child.stderr.on("data", (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ status: -1, stdout, stderr: `${stderr}${e.message}`, seconds: (Date.now() - start) / 1000 });
    });
    child.on("close", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, seconds: (Date.now() - start) / 1000 });
    });
    child.stdin.on("error", () => undefined); // a command that exits without reading its input
    child.stdin.end(opts.input ?? "");
  });
}

export function pulumiAsync(args: string[], timeoutMs = 900_000, env?: NodeJS.ProcessEnv): Promise<Run> {
  return runAsync("bash", [path.join(ROOT, "scripts", "pulumi-local.sh"), ...args], { timeoutMs, env });
}

/** The Pulumi CLI on the local stack (env, backend, passphrase and config copy set up by the script). */
export function pulumi(args: string[], timeoutMs = 900_000, env?: NodeJS.ProcessEnv): Run {
  return run("bash", [path.join(ROOT, "scripts", "pulumi-local.sh"), ...args], { timeoutMs, env });
}

export function stackOutputs(): LocalOutputs {
  const r = pulumi(["stack", "output", "--json", "--show-secrets"], 120_000);
  if (r.status !== 0) {
    throw new Error(`pulumi stack output failed: ${r.stderr}`);
  }
  return JSON.parse(r.stdout) as LocalOutputs;
}

export class Credentials {
  readonly dir: string;
  readonly kubeconfig: string;
  readonly sshKey: string;
  readonly ca: string;

  constructor(readonly outputs: LocalOutputs) {
    if (!outputs.subnet || !outputs.bridge) {
      throw new Error("the local stack's outputs name no bridge or subnet: run `bash scripts/local-up.sh` (it updates them)");
    }
    // Tools may send to this stack's addresses only while its bridge carries its subnet.
    allowStackNetwork(process.env.HAKUBE_STACK ?? "local", outputs.bridge, outputs.subnet);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-cred-"));
    fs.chmodSync(this.dir, 0o700);
    this.kubeconfig = path.join(this.dir, "kubeconfig");
    this.sshKey = path.join(this.dir, "ssh-key");
    this.ca = path.join(this.dir, "ca.crt");
    fs.writeFileSync(this.kubeconfig, outputs.kubeconfig, { mode: 0o600 });
    fs.writeFileSync(this.sshKey, outputs.sshPrivateKey.endsWith("\n") ? outputs.sshPrivateKey : `${outputs.sshPrivateKey}\n`, { mode: 0o600 });
    fs.writeFileSync(this.ca, outputs.caCertificate, { mode: 0o644 });
  }

  kubectl(args: string[], input?: string, timeoutMs = 30_000): Run {
    assertSafeDestination(this.outputs.virtualIp);
    return run(path.join(TOOLCHAIN_BIN, "kubectl"), ["--kubeconfig", this.kubeconfig, "--request-timeout=10s", ...args], { input, timeoutMs });
  }

  /** Runs a bash script on a machine as root (the script travels on stdin). */
  ssh(address: string, script: string, timeoutMs = 60_000): Run {
    assertSafeDestination(address);
    return run("ssh", this.sshArgs(address), { input: script, timeoutMs });
  }

  sshAsync(address: string, script: string, timeoutMs = 60_000): Promise<Run> {
    assertSafeDestination(address);
    return runAsync("ssh", this.sshArgs(address), { input: script, timeoutMs });
  }

  private sshArgs(address: string): string[] {
    return [
        "-i", this.sshKey,
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=5",
        `root@${address}`,
        "bash -s",
    ];
  }

  dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
