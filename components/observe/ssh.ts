// A script run on a host over SSH with the system OpenSSH client, for providers that look
// at live state (HostObservation, EtcdMembership). The private key goes into a 0600 file in
// a 0700 temporary folder, removed afterwards; it is never on a command line.
// Node built-ins are required inside the functions: these run serialized in the dynamic
// provider, outside this module.
import { destinationProblem, parseRoutes } from "../routes";
import { parseCidr } from "../net";

export interface SshTarget {
  readonly host: string;
  readonly port?: number;
  readonly user?: string;
  readonly privateKey?: string;
  /** A jump host (the command connection's `proxy`). */
  readonly proxy?: { readonly host: string; readonly port?: number; readonly user?: string; readonly privateKey?: string };
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
  readonly proxy?: { readonly host: string; readonly port?: number; readonly user?: string; readonly privateKey?: string };
}): SshTarget {
  return {
    host: c.host,
    port: c.port,
    user: c.user,
    privateKey: c.privateKey,
    ...(c.proxy ? { proxy: { host: c.proxy.host, port: c.proxy.port, user: c.proxy.user, privateKey: c.proxy.privateKey } } : {}),
  };
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
  "-o", "StrictHostKeyChecking=no",
  "-o", "UserKnownHostsFile=/dev/null",
  "-o", "LogLevel=ERROR",
  "-o", "ConnectTimeout=5",
  "-o", "ServerAliveInterval=2",
  "-o", "ServerAliveCountMax=2",
];

/** ssh's arguments for a target, given the files holding its keys. */
export function sshArgv(t: SshTarget, files: { readonly key: string; readonly proxyKey?: string }): string[] {
  const argv = [...COMMON, "-i", files.key, "-p", String(t.port ?? 22)];
  if (t.proxy) {
    const jump = [
      "ssh", ...COMMON, ...(files.proxyKey ? ["-i", files.proxyKey] : []), "-p", String(t.proxy.port ?? 22), "-W", "%h:%p",
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
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "hakube-ssh-"));
  try {
    fs.chmodSync(dir, 0o700);
    const key = path.join(dir, "key");
    fs.writeFileSync(key, t.privateKey.endsWith("\n") ? t.privateKey : `${t.privateKey}\n`, { mode: 0o600 });
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
        child = cp.spawn("ssh", sshArgv(t, { key, proxyKey }), { stdio: ["pipe", "pipe", "pipe"] });
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
