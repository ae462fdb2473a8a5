// A script run on a host over SSH with the system OpenSSH client, for providers that look
// at live state (HostObservation, EtcdMembership). The private key goes into a 0600 file in
// a 0700 temporary folder, removed afterwards; it is never on a command line. The host's
// key is pinned: a known-hosts file holding only the connection's `hostKey` (and the jump
// host's), strict checking, so a host answering with another key gets nothing.
// Node built-ins are required inside the functions: these run serialized in the dynamic
// provider, outside this module.
import { destinationProblem, parseRoutes } from "../routes";
import { parseCidr } from "../net";

export interface SshTarget {
  readonly host: string;
  readonly port?: number;
  readonly user?: string;
  readonly privateKey?: string;
  /** The host's public SSH key (authorized_keys format), which the connection verifies. */
  readonly hostKey?: string;
  /** A jump host (the command connection's `proxy`). */
  readonly proxy?: { readonly host: string; readonly port?: number; readonly user?: string; readonly privateKey?: string; readonly hostKey?: string };
}

/** The bridge a host is reached through, on a local stack: never dial while it is missing. */
export interface ObservedNetwork {
  readonly bridge: string;
  readonly subnet: string;
}

/**
 * Why `address` must not be dialled now (its stack's bridge does not carry the subnet:
 * packets would leave by the default route), or undefined. No network: always fine.
 */
export function stackNetworkProblem(address: string, network: ObservedNetwork | undefined): string | undefined {
  if (!network) return undefined;
  const fs = require("fs") as typeof import("fs");
  const subnet = parseCidr(network.subnet);
  if (!subnet) return `bad subnet ${network.subnet}`;
  let routes = "";
  try {
    routes = fs.readFileSync("/proc/net/route", "utf8");
  } catch {
    return "cannot read /proc/net/route";
  }
  return destinationProblem(address, [{ stack: "this", bridge: network.bridge, subnet }], parseRoutes(routes), (b) =>
    fs.existsSync(`/sys/class/net/${b}/bridge`),
  );
}

/** The SSH target of a command connection (what these providers need of it). */
export function sshTarget(c: {
  readonly host: string;
  readonly port?: number;
  readonly user?: string;
  readonly privateKey?: string;
  readonly hostKey?: string;
  readonly proxy?: { readonly host: string; readonly port?: number; readonly user?: string; readonly privateKey?: string; readonly hostKey?: string };
}): SshTarget {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    privateKey: c.privateKey,
    hostKey: c.hostKey,
    ...(c.proxy ? { proxy: { host: c.proxy.host, port: c.proxy.port, user: c.proxy.user, privateKey: c.proxy.privateKey, hostKey: c.proxy.hostKey } } : {}),
  };
}

/** A host's line in a known-hosts file (OpenSSH's `[host]:port` form off port 22). */
export function knownHostsLine(host: string, port: number | undefined, hostKey: string): string {
  const name = (port ?? 22) === 22 ? host : `[${host}]:${port}`;
  return `${name} ${hostKey.trim().split(/\s+/).slice(0, 2).join(" ")}`;
}

/** The host key algorithms that present a key of this type (an RSA key signs with SHA-2). */
export function hostKeyAlgorithms(hostKey: string): string {
  const type = hostKey.trim().split(/\s+/)[0];
  return type === "ssh-rsa" ? "rsa-sha2-512,rsa-sha2-256" : type;
}

/** Why a host key cannot be pinned (missing or not one key in authorized_keys format), or undefined. */
export function hostKeyProblem(hostKey: string | undefined): string | undefined {
  if (!hostKey) return "no host key in the connection (hostKey: the host's public SSH key, e.g. \"ssh-ed25519 AAAA...\"; hakube verifies every host)";
  if (!/^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]+={0,2}( [^\n]*)?$/.test(hostKey.trim())) {
    return `the connection's hostKey is not one public key in authorized_keys format (got "${hostKey.slice(0, 40)}..."; expected e.g. "ssh-ed25519 AAAA...")`;
  }
  return undefined;
}

export interface SshResult {
  /** Exit code of the script, or -1 when ssh could not run it (no connection, timeout). */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

const COMMON = [
  "-F", "/dev/null",
  "-o", "BatchMode=yes",
  "-o", "IdentitiesOnly=yes",
  "-o", "StrictHostKeyChecking=yes",
  "-o", "GlobalKnownHostsFile=/dev/null",
  "-o", "CheckHostIP=no",
  "-o", "LogLevel=ERROR",
  "-o", "ConnectTimeout=5",
  "-o", "ServerAliveInterval=2",
  "-o", "ServerAliveCountMax=2",
];

/**
 * ssh's arguments for a target, given the files holding its keys and the known-hosts file
 * holding its (and its jump host's) pinned host key.
 */
export function sshArgv(t: SshTarget, files: { readonly key: string; readonly proxyKey?: string; readonly knownHosts: string }): string[] {
  const pin = (hostKey: string | undefined) => ["-o", `UserKnownHostsFile=${files.knownHosts}`, "-o", `HostKeyAlgorithms=${hostKeyAlgorithms(hostKey ?? "")}`];
  const argv = [...COMMON, ...pin(t.hostKey), "-i", files.key, "-p", String(t.port ?? 22)];
  if (t.proxy) {
    const jump = [
      "ssh", ...COMMON, ...pin(t.proxy.hostKey), ...(files.proxyKey ? ["-i", files.proxyKey] : []), "-p", String(t.proxy.port ?? 22), "-W", "%h:%p",
      `${t.proxy.user ?? "root"}@${t.proxy.host}`,
    ];
    argv.push("-o", `ProxyCommand=${jump.join(" ")}`);
  }
  argv.push(`${t.user ?? "root"}@${t.host}`, "bash", "-s");
  return argv;
}

/** Runs `script` (bash, on stdin) on the target; never throws, bounded by `timeoutMs`. */
export async function runOverSsh(t: SshTarget, script: string, timeoutMs: number): Promise<SshResult> {
  const fs = require("fs") as typeof import("fs");
  const os = require("os") as typeof import("os");
  const path = require("path") as typeof import("path");
  const cp = require("child_process") as typeof import("child_process");
  if (!t.privateKey) {
    return { code: -1, stdout: "", stderr: "no private key in the connection" };
  }
  const keyProblem = hostKeyProblem(t.hostKey) ?? (t.proxy ? hostKeyProblem(t.proxy.hostKey)?.replace("the connection", "the jump host's connection") : undefined);
  if (keyProblem) {
    return { code: -1, stdout: "", stderr: `refused to connect to ${t.host}: ${keyProblem}` };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-ssh-"));
  try {
    fs.chmodSync(dir, 0o700);
    const key = path.join(dir, "key");
    fs.writeFileSync(key, t.privateKey.endsWith("\n") ? t.privateKey : `${t.privateKey}\n`, { mode: 0o600 });
    const knownHosts = path.join(dir, "known_hosts");
    const pinned = [knownHostsLine(t.host, t.port, t.hostKey!), ...(t.proxy ? [knownHostsLine(t.proxy.host, t.proxy.port, t.proxy.hostKey!)] : [])];
    fs.writeFileSync(knownHosts, `${pinned.join("\n")}\n`, { mode: 0o600 });
    let proxyKey: string | undefined;
    if (t.proxy?.privateKey) {
      proxyKey = path.join(dir, "proxy-key");
      fs.writeFileSync(proxyKey, t.proxy.privateKey.endsWith("\n") ? t.proxy.privateKey : `${t.proxy.privateKey}\n`, { mode: 0o600 });
    }
    return await new Promise<SshResult>((resolve) => {
      let stdout = "";
      let stderr = "";
      let child: import("child_process").ChildProcess;
      try {
        child = cp.spawn("ssh", sshArgv(t, { key, proxyKey, knownHosts }), { stdio: ["pipe", "pipe", "pipe"] });
      } catch (e) {
        resolve({ code: -1, stdout: "", stderr: String(e) });
        return;
      }
      const timer = setTimeout(() => {
        stderr += `\ntimed out after ${timeoutMs} ms`;
        child.kill("SIGKILL");
      }, timeoutMs);
      child.stdout?.on("data", (d) => (stdout += d));
      child.stderr?.on("data", (d) => (stderr += d));
      child.on("error", (e) => {
        clearTimeout(timer);
        resolve({ code: -1, stdout, stderr: `${stderr}${e.message}` });
      });
      child.on("close", (code) => {
        clearTimeout(timer);
        // ssh exits 255 when it cannot connect or authenticate.
        resolve({ code: code === null || code === 255 ? -1 : code, stdout, stderr });
      });
      child.stdin?.on("error", () => undefined);
      child.stdin?.end(script);
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs `script` on the target unless its stack network forbids dialling it: its output on
 * exit 0, else why not (the network problem, or "over SSH: " and the first error line).
 */
export async function runWhereRoutable(
  t: SshTarget,
  network: ObservedNetwork | undefined,
  script: string,
  timeoutMs: number,
): Promise<{ readonly stdout: string } | { readonly unreachable: string }> {
  const blocked = stackNetworkProblem(t.host, network);
  if (blocked) return { unreachable: blocked.slice(0, 160) };
  const r = await runOverSsh(t, script, timeoutMs);
  if (r.code === 0) return { stdout: r.stdout };
  return { unreachable: `over SSH: ${(r.stderr.trim().split("\n")[0] || `exit ${r.code}`).slice(0, 160)}` };
}
