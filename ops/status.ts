// Status summary of the running local control plane: the API endpoint and /readyz
// through it, the `kubernetes` Service's endpoints, the Lease holders, and every etcd
// member with its health and the leader. `node build/ops/status.js [--json]`
import { assertSafeUrl } from "./guard";
import { controlPlaneHosts, Credentials, etcdHosts, LocalOutputs, run, stackOutputs } from "./localStack";
import { EtcdEndpointStatus, EtcdHealth, hostOfEndpoint, LOAD_ETCDCTL_ENV, isEtcdLeader, readyAddresses } from "./parse";
import { BackupStatus, backupStatus, formatBackupStatus } from "./backups";
import type { CertificateExpiry } from "../components/pki/clusterPki";

export interface EtcdMemberStatus {
  name: string;
  endpoint: string;
  healthy: boolean;
  leader: boolean;
  error?: string;
}

export interface ControlPlaneStatus {
  endpoint: string;
  readyz: string;
  serviceEndpoints: string[];
  leases: { "kube-controller-manager": string; "kube-scheduler": string };
  etcd: EtcdMemberStatus[];
  /** Resident memory (MiB) of the control-plane processes per machine. */
  memoryMiB: Record<string, Record<string, number>>;
  /** The etcd backups, on a stack that has them. */
  backups?: BackupStatus;
  /** Worker nodes the stack made, with whether each is Ready (absent: not registered). */
  nodes?: { name: string; ready: boolean | undefined }[];
  /** Every certificate of the cluster's PKI with its expiry, soonest first (the stack's output). */
  certificates?: CertificateExpiry[];
}

const DAY_MS = 86_400_000;

/** One line per certificate: name, end of validity, days left, and whether the next `pulumi up` renews it. */
export function formatExpiry(c: CertificateExpiry, now: number): string {
  const left = Math.floor((Date.parse(c.notAfter) - now) / DAY_MS);
  const state =
    Date.parse(c.notAfter) <= now ? "EXPIRED" : c.renewFrom !== "" && Date.parse(c.renewFrom) <= now ? "inside its renewal window: the next pulumi up renews it" : `renews from ${c.renewFrom.slice(0, 10)}`;
  return `${c.name} ${c.kind === "ca" ? "(CA) " : ""}until ${c.notAfter} (${left} days; ${state})`;
}

const PROCESSES = ["etcd", "kube-apiserver", "kube-controller", "kube-scheduler", "haproxy", "keepalived"];

/** RSS of the control-plane processes on each machine (ps, summed per process name). */
export function memoryByHost(cred: Credentials, outputs: LocalOutputs): Record<string, Record<string, number>> {
  const result: Record<string, Record<string, number>> = {};
  for (const host of outputs.hosts) {
    const r = cred.ssh(host.address, "ps -eo rss=,comm=", 15_000);
    if (r.status !== 0) continue;
    const perProcess: Record<string, number> = {};
    for (const line of r.stdout.split("\n")) {
      const [rss, comm] = line.trim().split(/\s+/, 2);
      if (comm && PROCESSES.includes(comm)) {
        perProcess[comm] = (perProcess[comm] ?? 0) + Number(rss) / 1024;
      }
    }
    result[host.name] = Object.fromEntries(Object.entries(perProcess).map(([k, v]) => [k, Math.round(v)]));
  }
  return result;
}

export function readyzThroughEndpoint(cred: Credentials, endpoint: string): string {
  assertSafeUrl(endpoint);
  const r = run("curl", ["--silent", "--show-error", "--max-time", "5", "--cacert", cred.ca, `${endpoint}/readyz`]);
  return r.status === 0 ? r.stdout.trim() : `error: ${r.stderr.trim() || `curl exit ${r.status}`}`;
}

export function serviceEndpoints(cred: Credentials): string[] {
  const r = cred.kubectl(["get", "endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes", "-o", "json"]);
  if (r.status !== 0) {
    throw new Error(`kubectl get endpointslices failed: ${r.stderr}`);
  }
  return readyAddresses(r.stdout);
}

export function leaseHolder(cred: Credentials, lease: string): string {
  const r = cred.kubectl(["get", "lease", "-n", "kube-system", lease, "-o", "jsonpath={.spec.holderIdentity}"]);
  return r.status === 0 ? r.stdout.trim() : "";
}

/** Health and leadership of every member, asked from the first machine that answers. */
export function etcdStatus(cred: Credentials, outputs: LocalOutputs): EtcdMemberStatus[] {
  const script = `${LOAD_ETCDCTL_ENV}
echo "---health"; etcdctl endpoint health -w json 2>/dev/null || true
echo "---status"; etcdctl endpoint status -w json 2>/dev/null || true`;
  for (const host of etcdHosts(outputs)) {
    const r = cred.ssh(host.address, script, 30_000);
    if (r.status !== 0) continue;
    const health = JSON.parse(r.stdout.split("---health")[1].split("---status")[0].trim() || "[]") as EtcdHealth[];
    const statuses = JSON.parse(r.stdout.split("---status")[1].trim() || "[]") as EtcdEndpointStatus[];
    return outputs.etcdEndpoints.map((endpoint) => {
      const h = health.find((x) => x.endpoint === endpoint);
      const s = statuses.find((x) => x.Endpoint === endpoint);
      const name = hostOfEndpoint(outputs.hosts, endpoint)?.name ?? endpoint;
      return {
        name,
        endpoint,
        healthy: h?.health === true,
        leader: s !== undefined && isEtcdLeader(s),
        error: h?.error,
      };
    });
  }
  return outputs.etcdEndpoints.map((endpoint) => ({ name: endpoint, endpoint, healthy: false, leader: false, error: "no machine answered SSH" }));
}

/** Ready condition of each worker the stack made; undefined for one the API does not list. */
export function nodeStatus(cred: Credentials, outputs: LocalOutputs): { name: string; ready: boolean | undefined }[] {
  const r = cred.kubectl(["get", "nodes", "-o", "json"]);
  const items: any[] = r.status === 0 ? JSON.parse(r.stdout).items : [];
  return (outputs.workers ?? []).map((w) => {
    const node = items.find((n) => n.metadata?.name === w.name);
    return { name: w.name, ready: node ? node.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True") === true : undefined };
  });
}

export function collectStatus(outputs: LocalOutputs, cred: Credentials): ControlPlaneStatus {
  return {
    endpoint: outputs.endpoint,
    readyz: readyzThroughEndpoint(cred, outputs.endpoint),
    serviceEndpoints: serviceEndpoints(cred),
    leases: {
      "kube-controller-manager": leaseHolder(cred, "kube-controller-manager"),
      "kube-scheduler": leaseHolder(cred, "kube-scheduler"),
    },
    etcd: etcdStatus(cred, outputs),
    memoryMiB: memoryByHost(cred, outputs),
    backups: outputs.backupStorage ? backupStatus(cred, outputs) : undefined,
    nodes: outputs.workers?.length ? nodeStatus(cred, outputs) : undefined,
    certificates: outputs.certificateExpiry,
  };
}

export function formatStatus(s: ControlPlaneStatus, now = Date.now()): string {
  const lines = [
    `hakube control plane (stack ${process.env.HAKUBE_STACK ?? "local"})`,
    `  API endpoint (VIP)          ${s.endpoint}`,
    `  /readyz through the VIP     ${s.readyz}`,
    `  kubernetes Service          ${s.serviceEndpoints.join(", ")} (${s.serviceEndpoints.length} apiservers)`,
    `  Lease kube-controller-mgr   ${s.leases["kube-controller-manager"] || "(no holder)"}`,
    `  Lease kube-scheduler        ${s.leases["kube-scheduler"] || "(no holder)"}`,
    "  etcd members",
    ...s.etcd.map(
      (m) => `    ${m.name.padEnd(8)} ${m.endpoint.padEnd(28)} ${m.healthy ? "healthy" : `UNHEALTHY${m.error ? ` (${m.error})` : ""}`}${m.leader ? "  leader" : ""}`,
    ),
    ...(s.backups ? [`  last etcd backup            ${formatBackupStatus(s.backups)}`] : []),
    ...(s.nodes ? [`  worker nodes                ${s.nodes.map((n) => `${n.name} ${n.ready === undefined ? "NOT REGISTERED" : n.ready ? "Ready" : "NOT READY"}`).join(", ")}`] : []),
    ...(s.certificates?.length
      ? [
          `  certificates                ${s.certificates.length}, soonest to expire first:`,
          ...s.certificates.slice(0, 3).map((c) => `    ${formatExpiry(c, now)}`),
        ]
      : []),
    "  memory (RSS, MiB)",
    ...Object.entries(s.memoryMiB).map(
      ([host, procs]) =>
        `    ${host.padEnd(8)} ${String(Object.values(procs).reduce((a, b) => a + b, 0)).padStart(5)}  (${Object.entries(procs)
          .map(([p, m]) => `${p} ${m}`)
          .join(", ")})`,
    ),
    `    total    ${String(Object.values(s.memoryMiB).flatMap((p) => Object.values(p)).reduce((a, b) => a + b, 0)).padStart(5)}`,
  ];
  return lines.join("\n");
}

/** What keeps the reported control plane from being healthy; empty when it is. */
export function statusProblems(s: ControlPlaneStatus, apiServerCount: number): string[] {
  const problems: string[] = [];
  if (s.readyz !== "ok") problems.push(`/readyz through the endpoint: ${s.readyz}`);
  if (s.serviceEndpoints.length !== apiServerCount) {
    problems.push(`the kubernetes Service lists ${s.serviceEndpoints.length} of ${apiServerCount} apiservers`);
  }
  for (const [lease, holder] of Object.entries(s.leases)) {
    if (!holder) problems.push(`the ${lease} Lease has no holder`);
  }
  const unhealthy = s.etcd.filter((m) => !m.healthy).map((m) => m.name);
  if (unhealthy.length > 0) problems.push(`etcd members not healthy: ${unhealthy.join(", ")}`);
  if (s.etcd.filter((m) => m.leader).length !== 1) problems.push(`etcd has ${s.etcd.filter((m) => m.leader).length} leaders (want 1)`);
  for (const f of s.backups?.failures ?? []) problems.push(`the last etcd backup failed on ${f.host} at ${f.time}: ${f.error}`);
  if (s.backups?.error) problems.push(`the etcd backups cannot be listed: ${s.backups.error}`);
  const notReady = (s.nodes ?? []).filter((n) => !n.ready).map((n) => n.name);
  if (notReady.length > 0) problems.push(`worker nodes not Ready: ${notReady.join(", ")}`);
  const expired = (s.certificates ?? []).filter((c) => Date.parse(c.notAfter) <= Date.now()).map((c) => c.name);
  if (expired.length > 0) problems.push(`certificates expired: ${expired.join(", ")}`);
  return problems;
}

if (require.main === module) {
  let cred: Credentials | undefined;
  try {
    const outputs = stackOutputs();
    cred = new Credentials(outputs);
    const s = collectStatus(outputs, cred);
    console.log(process.argv.includes("--json") ? JSON.stringify(s, null, 2) : formatStatus(s));
    const problems = statusProblems(s, controlPlaneHosts(outputs).length);
    if (problems.length > 0) {
      console.error(`hakube: the control plane is NOT healthy:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
      process.exitCode = 1;
    }
  } catch (e) {
    // Refused traffic, a missing stack: one clear line, no trace.
    console.error(`hakube: status: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    cred?.dispose();
  }
}
