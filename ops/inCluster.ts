// The in-cluster probe: a pod on a worker node that reads the API through
// https://kubernetes.default.svc (the `kubernetes` Service, kube-proxy's rules) with its
// service-account token, as in-cluster clients do. Two containers of hakube's probe image
// (toolchain/images/probe): one opens a new connection per request, one keeps a single
// HTTP/2 connection (client-go's way). Each appends a JSON line per request to a file on
// the node (a hostPath folder), read back over SSH when the pod is stopped, so a fault that
// takes the API down loses no record.
import type { Credentials, LocalHost, LocalOutputs } from "./localStack";
import { failureWindowsOf, RequestRecord } from "./probe";
import { quote } from "../components/remote/shell";

export const IN_CLUSTER_IMAGE = "hakube.local/probe:1";
const HOST_DIR = "/var/lib/hakube-probe";
const NOBODY = 65534;

export interface InClusterReport {
  readonly kind: "per-request" | "http2";
  readonly node: string;
  readonly requests: number;
  readonly failedRequests: number;
  readonly longestFailureMs: number;
  readonly failureWindows: { start: number; end: number }[];
  readonly records: RequestRecord[];
}

/** The namespace's read access the probe's service account gets (GET of its own namespace). */
export function inClusterRbac(namespace: string): string {
  const name = `hakube-probe-read-${namespace}`;
  return JSON.stringify({
    apiVersion: "v1",
    kind: "List",
    items: [
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        metadata: { name },
        rules: [{ apiGroups: [""], resources: ["namespaces"], resourceNames: [namespace], verbs: ["get"] }],
      },
      {
        apiVersion: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        metadata: { name },
        roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name },
        subjects: [{ kind: "ServiceAccount", name: "default", namespace }],
      },
    ],
  });
}

/** The probe pod: pinned to `node`, unprivileged, bounded in requests and time. */
export function inClusterPod(o: { name: string; namespace: string; node: string; maxSeconds: number; intervalMs?: number }): string {
  const interval = o.intervalMs ?? 100;
  const maxRequests = Math.ceil((o.maxSeconds * 1000) / interval) + 10;
  const container = (kind: InClusterReport["kind"]) => ({
    name: kind,
    image: IN_CLUSTER_IMAGE,
    imagePullPolicy: "Never",
    args: [
      "loop",
      `-interval=${interval}ms`,
      "-timeout=2s",
      `-max-seconds=${o.maxSeconds}`,
      `-max-requests=${maxRequests}`,
      `-path=/api/v1/namespaces/${o.namespace}`,
      `-out=/data/${kind}.jsonl`,
      ...(kind === "per-request" ? ["-per-request"] : []),
    ],
    volumeMounts: [{ name: "data", mountPath: "/data" }],
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
  });
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: o.name, namespace: o.namespace, labels: { app: "hakube-probe" } },
    spec: {
      nodeName: o.node,
      restartPolicy: "Never",
      terminationGracePeriodSeconds: 1,
      securityContext: { runAsUser: NOBODY, runAsGroup: NOBODY, runAsNonRoot: true },
      containers: [container("per-request"), container("http2")],
      volumes: [{ name: "data", hostPath: { path: `${HOST_DIR}/${o.name}`, type: "Directory" } }],
    },
  });
}

/** Parses the probe's JSON lines (a torn last line, from a pod stopped mid-write, is dropped). */
export function parseProbeRecords(text: string): RequestRecord[] {
  const records: RequestRecord[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as { at: number; ms: number; op: string; ok: boolean; status?: number; error?: string; retryAfter?: number };
      if (typeof r.at === "number" && typeof r.ms === "number" && typeof r.ok === "boolean") {
        const retryAfterSeconds = typeof r.retryAfter === "number" ? r.retryAfter : undefined;
        records.push({ at: r.at, ms: r.ms, op: "read", ok: r.ok, status: r.status || undefined, error: r.error, ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }) });
      }
    } catch {
      // the line a stopped container was writing
    }
  }
  return records.sort((a, b) => a.at - b.at);
}

export function inClusterReport(kind: InClusterReport["kind"], node: string, records: RequestRecord[]): InClusterReport {
  const windows = failureWindowsOf(records);
  return {
    kind,
    node,
    requests: records.length,
    failedRequests: records.filter((r) => !r.ok).length,
    longestFailureMs: windows.reduce((m, w) => Math.max(m, w.end - w.start), 0),
    failureWindows: windows,
    records,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * One run of the in-cluster probe on the first worker of a stack with workers. start()
 * returns once both containers have written their first record; stop() deletes the pod
 * and reads the records from the node.
 */
export class InClusterProbe {
  private readonly node: LocalHost;

  constructor(
    private readonly cred: Credentials,
    outputs: LocalOutputs,
    private readonly name: string,
    private readonly namespace: string,
    private readonly maxSeconds: number,
  ) {
    const node = outputs.workers?.[0];
    if (!node) throw new Error("the in-cluster probe needs a stack with workers (hakube:workerCount > 0)");
    this.node = node;
  }

  private kubectl(args: string[], input?: string): void {
    const r = this.cred.kubectl(args, input, 60_000);
    if (r.status !== 0) throw new Error(`in-cluster probe ${this.name}: kubectl ${args.join(" ")}: ${(r.stderr || r.stdout).trim()}`);
  }

  private files(): Record<InClusterReport["kind"], string> {
    const r = this.cred.ssh(this.node.address, `cd ${quote(`${HOST_DIR}/${this.name}`)} 2>/dev/null || exit 0\nfor k in per-request http2; do echo "== $k"; cat "$k.jsonl" 2>/dev/null || true; done`);
    if (r.status !== 0) throw new Error(`in-cluster probe ${this.name}: cannot read its records on ${this.node.name}: ${r.stderr.trim()}`);
    const out: Record<string, string> = { "per-request": "", http2: "" };
    let current: string | undefined;
    for (const line of r.stdout.split("\n")) {
      const head = /^== (per-request|http2)$/.exec(line);
      if (head) current = head[1];
      else if (current) out[current] += line + "\n";
    }
    return out as Record<InClusterReport["kind"], string>;
  }

  async start(): Promise<void> {
    const dir = `${HOST_DIR}/${this.name}`;
    const prep = this.cred.ssh(this.node.address, `rm -rf ${quote(dir)}\ninstall -d -m 0755 -o ${NOBODY} -g ${NOBODY} ${quote(HOST_DIR)} ${quote(dir)}`);
    if (prep.status !== 0) throw new Error(`in-cluster probe ${this.name}: cannot make ${dir} on ${this.node.name}: ${prep.stderr.trim()}`);
    this.kubectl(["apply", "-f", "-"], inClusterRbac(this.namespace));
    this.kubectl(["-n", this.namespace, "delete", "pod", this.name, "--ignore-not-found", "--wait=true", "--timeout=60s"]);
    this.kubectl(["apply", "-f", "-"], inClusterPod({ name: this.name, namespace: this.namespace, node: this.node.name, maxSeconds: this.maxSeconds }));
    // Bounded: 60 s for both containers to answer once (a pod start on a Ready node takes a few).
    for (let i = 0; i < 120; i++) {
      const f = this.files();
      if (parseProbeRecords(f["per-request"]).some((r) => r.ok) && parseProbeRecords(f.http2).some((r) => r.ok)) return;
      await sleep(500);
    }
    const phase = this.cred.kubectl(["-n", this.namespace, "get", "pod", this.name, "-o", "jsonpath={.status.phase} {.status.containerStatuses[*].state}"]);
    throw new Error(`in-cluster probe ${this.name} on ${this.node.name}: no successful request within 60 s (pod: ${phase.stdout.trim() || phase.stderr.trim()})`);
  }

  async stop(): Promise<InClusterReport[]> {
    // The pod's records are on the node: delete it (bounded), then read them.
    this.cred.kubectl(["-n", this.namespace, "delete", "pod", this.name, "--ignore-not-found", "--wait=true", "--timeout=60s"], undefined, 90_000);
    const f = this.files();
    this.cred.ssh(this.node.address, `rm -rf ${quote(`${HOST_DIR}/${this.name}`)}`);
    return (["per-request", "http2"] as const).map((kind) => inClusterReport(kind, this.node.name, parseProbeRecords(f[kind])));
  }
}
