// Access to the running local stack for the status summary, the end-to-end test and the
// fault-injection tests: stack outputs, kubectl through the VIP, SSH to the machines.
// Credentials are written to a private temp dir (0700, files 0600) and removed after use.
import { spawn, spawnSync, SpawnSyncReturns } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { allowStackNetwork, assertSafeDestination } from "./guard";
import { hostKeyProblem, knownHostsLine, sshArgv } from "../components/observe/ssh";
import { HOST_KEY_LINE } from "../components/machines/localRender";
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
  /** Its SSH host key (public), pinned by every SSH connection the tools make. */
  hostKey?: string;
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

/** What OpenSSH prints when the host's key is not the pinned one. */
const HOST_KEY_REFUSED = /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED|No (ED25519|ECDSA|RSA) host key is known/i;

/**
 * Every machine's host key as the stack's state holds it now, by address: the stdout of
 * each machine's command (`hakube-hostkey ...`, components/machines/localRender.ts), at the
 * address its create script gives the machine (machines a resize added included). Empty
 * when the state cannot be read.
 */
export function hostKeysInState(): Map<string, string> {
  const keys = new Map<string, string>();
  const r = pulumi(["stack", "export"], 120_000);
  if (r.status !== 0) return keys;
  let resources: { urn?: string; inputs?: { create?: unknown }; outputs?: { stdout?: unknown } }[] = [];
  try {
    resources = JSON.parse(r.stdout)?.deployment?.resources ?? [];
  } catch {
    return keys;
  }
  for (const res of resources) {
    const key = typeof res.outputs?.stdout === "string" ? HOST_KEY_LINE.exec(res.outputs.stdout)?.[1] : undefined;
    if (!key || !res.urn?.includes("command:local:Command::")) continue;
    const address = typeof res.inputs?.create === "string" ? /^ip -n \S+ addr add (\d+\.\d+\.\d+\.\d+)\//m.exec(res.inputs.create)?.[1] : undefined;
    if (address) keys.set(address, key);
  }
  return keys;
}

/** A run refused before any connection (no host key to verify the machine by). */
function refusedRun(message: string): Run {
  return { status: 255, stdout: "", stderr: message, seconds: 0 };
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

  /**
   * Runs a bash script on a machine as root (the script travels on stdin), its host key
   * verified. A key that does not match is tried once more with the key the stack's state
   * holds now (a machine made anew since these credentials were made), never learnt from
   * the machine.
   */
  ssh(address: string, script: string, timeoutMs = 60_000): Run {
    assertSafeDestination(address);
    const once = () => {
      const argv = this.sshArgsOrProblem(address);
      return typeof argv === "string" ? refusedRun(argv) : run("ssh", argv, { input: script, timeoutMs });
    };
    const r = once();
    if (r.status === 255 && HOST_KEY_REFUSED.test(r.stderr)) {
      this.stale.add(address);
      return once();
    }
    return r;
  }

  async sshAsync(address: string, script: string, timeoutMs = 60_000): Promise<Run> {
    assertSafeDestination(address);
    const once = () => {
      const argv = this.sshArgsOrProblem(address);
      return typeof argv === "string" ? Promise.resolve(refusedRun(argv)) : runAsync("ssh", argv, { input: script, timeoutMs });
    };
    const r = await once();
    if (r.status === 255 && HOST_KEY_REFUSED.test(r.stderr)) {
      this.stale.add(address);
      return once();
    }
    return r;
  }

  private readonly stale = new Set<string>();
  private readonly hostKeys = new Map<string, string>();
  private lastRead = 0;

  private sshArgsOrProblem(address: string): string[] | string {
    try {
      return this.sshArgs(address);
    } catch (e) {
      return (e as Error).message;
    }
  }

  /**
   * ssh's arguments for a machine of the stack: its host key pinned from the stack's state
   * (the key its provisioning made on this host), strict checking. A machine the stack does
   * not list, or lists without a key, is refused before any connection.
   */
  private sshArgs(address: string): string[] {
    const pinned = this.knownHostsFor(address);
    // The observers' arguments (components/observe/ssh.ts): one way to pin a host.
    return sshArgv({ host: address, user: "root", hostKey: pinned.hostKey }, { key: this.sshKey, knownHosts: pinned.file });
  }

  /**
   * The pinned key of a machine and a known-hosts file holding only it. Machines made anew
   * (a replacement, a repair, a restore onto new machines, a reboot) get new keys: when
   * the address has none or its key was refused, the keys are read again from the stack's
   * state (`pulumi stack export`: each machine's create printed its key, read from its files
   * on this host; the state has it as soon as the machine is made, before the `pulumi up`
   * that makes it ends), at most once every 5 s. Never learnt from the machine.
   */
  private knownHostsFor(address: string): { hostKey: string; file: string } {
    let hostKey = this.hostKeys.get(address) ?? allMachines(this.outputs).find((h) => h.address === address)?.hostKey;
    if ((!hostKey || this.stale.has(address)) && Date.now() - this.lastRead > 5_000) {
      this.lastRead = Date.now();
      for (const [a, k] of hostKeysInState()) this.hostKeys.set(a, k);
      hostKey = this.hostKeys.get(address) ?? hostKey;
    }
    this.stale.delete(address);
    const problem = hostKeyProblem(hostKey);
    if (problem) throw new Error(`refused to connect to ${address}: ${problem} (the stack's outputs list no key for it: run \`bash scripts/local-up.sh\`)`);
    const file = path.join(this.dir, `known_hosts-${address}`);
    fs.writeFileSync(file, `${knownHostsLine(address, 22, hostKey!)}\n`, { mode: 0o600 });
    return { hostKey: hostKey!, file };
  }

  dispose(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
