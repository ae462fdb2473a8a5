// The CIS Kubernetes Benchmark's control-plane (1.1-1.4) and etcd (2) checks, as kube-bench
// runs them on a master node, evaluated against facts about one host: the arguments of the
// running processes, the scheduler's config file, and the mode and owner of the files the
// checks name. Pure evaluation here (the component tests feed it rendered units); the
// facts of a live machine come from `collectCisFacts` over SSH.
// `node build/ops/cis.js [--json]` prints the report of every control-plane host.
import { controlPlaneHosts, Credentials, LocalOutputs, stackOutputs } from "./localStack";
import { TLS_CIPHER_SUITES, WEAK_OPENSSL_CIPHERS } from "../components/tls";
import { command, shellFunction } from "../components/remote/shell";

export type Component = "kube-apiserver" | "kube-controller-manager" | "kube-scheduler" | "etcd";
export const COMPONENTS: readonly Component[] = ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"];

export interface FileFacts {
  /** Permission bits, e.g. 0o600. */
  readonly mode: number;
  /** "user:group". */
  readonly owner: string;
}

export interface HostFacts {
  /** Each component's command line (arguments after the binary); absent: not running. */
  readonly processes: Partial<Record<Component, readonly string[]>>;
  /** The account each component runs as. */
  readonly users?: Partial<Record<Component, string>>;
  /** Files by path (what a check names and finds); a path that does not exist is absent. */
  readonly files: Readonly<Record<string, FileFacts>>;
  /** The file kube-scheduler's --config names, when it has one. */
  readonly schedulerConfig?: string;
}

export type Verdict = "pass" | "fail" | "manual" | "not-applicable";

export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly verdict: Verdict;
  /** What was found (for a failure: what was found instead). */
  readonly detail: string;
}

/** Where hakube puts what the file checks name (kube-bench's `confs` for a systemd install). */
export const CIS_PATHS = {
  units: {
    "kube-apiserver": "/etc/systemd/system/kube-apiserver.service",
    "kube-controller-manager": "/etc/systemd/system/kube-controller-manager.service",
    "kube-scheduler": "/etc/systemd/system/kube-scheduler.service",
    etcd: "/etc/systemd/system/etcd.service",
  } as Record<Component, string>,
  adminKubeconfig: "/etc/kubernetes/admin.conf",
  schedulerKubeconfig: "/etc/kubernetes/scheduler.conf",
  controllerManagerKubeconfig: "/etc/kubernetes/controller-manager.conf",
  pki: "/etc/kubernetes/pki",
} as const;

/** `--name=value` arguments by name (a bare `--name` is "true"; the last one wins). */
export function parseArgs(args: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>();
  for (const a of args) {
    const m = /^--?([a-zA-Z0-9-]+)(?:=(.*))?$/s.exec(a);
    if (m) flags.set(m[1], m[2] ?? "true");
  }
  return flags;
}

/** The arguments of a unit's ExecStart (its continuation lines joined), without the binary. */
export function unitArgs(unit: string): string[] {
  const m = /^ExecStart=((?:[^\n]*\\\n)*[^\n]*)/m.exec(unit);
  if (!m) return [];
  const words = m[1].replace(/\\\n/g, " ").trim().split(/\s+/);
  return words.slice(1).map((w) => w.replace(/\$\$/g, "$").replace(/%%/g, "%"));
}

/** A top-level `key: value` of a small YAML file (the scheduler's config). */
function yamlTopLevel(text: string | undefined, key: string): string | undefined {
  const m = new RegExp(`^${key}:\\s*(\\S+)\\s*$`, "m").exec(text ?? "");
  return m?.[1];
}

const list = (v: string | undefined) => (v ?? "").split(",").filter((x) => x !== "");

interface Check {
  readonly id: string;
  readonly title: string;
  readonly manual?: string;
  readonly evaluate?: (f: HostFacts) => { ok: boolean | "n/a"; detail: string };
}

function flagCheck(
  id: string,
  title: string,
  component: Component,
  test: (flags: Map<string, string>) => boolean,
  describe: (flags: Map<string, string>) => string,
): Check {
  return {
    id,
    title,
    evaluate: (f) => {
      const args = f.processes[component];
      if (!args) return { ok: false, detail: `${component} is not running` };
      const flags = parseArgs(args);
      return { ok: test(flags), detail: describe(flags) };
    },
  };
}

const show = (name: string) => (flags: Map<string, string>) => (flags.has(name) ? `--${name}=${flags.get(name)}` : `--${name} not set`);
const isSet = (name: string) => (flags: Map<string, string>) => (flags.get(name) ?? "") !== "";
const equals = (name: string, value: string) => (flags: Map<string, string>) => flags.get(name) === value;
const notEquals = (name: string, value: string) => (flags: Map<string, string>) => flags.get(name) !== value;
const atLeast = (name: string, min: number) => (flags: Map<string, string>) => Number(flags.get(name)) >= min;
const includes = (name: string, item: string) => (flags: Map<string, string>) => list(flags.get(name)).includes(item);
const excludes = (name: string, item: string) => (flags: Map<string, string>) => !list(flags.get(name)).includes(item);
const both = (...tests: ((f: Map<string, string>) => boolean)[]) => (flags: Map<string, string>) => tests.every((t) => t(flags));
const showAll = (...names: string[]) => (flags: Map<string, string>) => names.map((n) => show(n)(flags)).join(", ");

function fileCheck(id: string, title: string, paths: (f: HostFacts) => string[], test: (file: FileFacts) => boolean, what: string, optional = false): Check {
  return {
    id,
    title,
    evaluate: (f) => {
      const found = paths(f);
      if (found.length === 0) return optional ? { ok: "n/a", detail: "no such file on this host" } : { ok: false, detail: "missing" };
      const bad = found.filter((p) => !f.files[p] || !test(f.files[p]));
      const describe = (p: string) => (f.files[p] ? `${p} ${f.files[p].mode.toString(8).padStart(3, "0")} ${f.files[p].owner}` : `${p} missing`);
      return { ok: bad.length === 0, detail: bad.length === 0 ? `${found.length} file(s) ${what}` : bad.map(describe).join("; ") };
    },
  };
}

const mode600 = (file: FileFacts) => (file.mode & ~0o600) === 0;
const mode700 = (file: FileFacts) => (file.mode & ~0o700) === 0;
const rootOwned = (file: FileFacts) => file.owner === "root:root";
const one = (path: string) => () => [path];
const ifPresent = (path: string) => (f: HostFacts) => (f.files[path] ? [path] : []);
const underPki = (suffix: RegExp) => (f: HostFacts) => Object.keys(f.files).filter((p) => (p === CIS_PATHS.pki || p.startsWith(`${CIS_PATHS.pki}/`)) && suffix.test(p));
const dataDir = (f: HostFacts) => {
  const d = parseArgs(f.processes.etcd ?? []).get("data-dir");
  return d ? [d] : [];
};

const STRONG_CIPHERS = new Set([
  ...TLS_CIPHER_SUITES,
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
]);
const strongCiphers = (name: string) => (flags: Map<string, string>) => list(flags.get(name)).length > 0 && list(flags.get(name)).every((c) => STRONG_CIPHERS.has(c));

/** The checks, in the benchmark's order. */
export const CIS_CHECKS: readonly Check[] = [
  fileCheck("1.1.1", "API server unit file permissions 600 or more restrictive", one(CIS_PATHS.units["kube-apiserver"]), mode600, "600"),
  fileCheck("1.1.2", "API server unit file ownership root:root", one(CIS_PATHS.units["kube-apiserver"]), rootOwned, "root:root"),
  fileCheck("1.1.3", "controller manager unit file permissions 600 or more restrictive", one(CIS_PATHS.units["kube-controller-manager"]), mode600, "600"),
  fileCheck("1.1.4", "controller manager unit file ownership root:root", one(CIS_PATHS.units["kube-controller-manager"]), rootOwned, "root:root"),
  fileCheck("1.1.5", "scheduler unit file permissions 600 or more restrictive", one(CIS_PATHS.units["kube-scheduler"]), mode600, "600"),
  fileCheck("1.1.6", "scheduler unit file ownership root:root", one(CIS_PATHS.units["kube-scheduler"]), rootOwned, "root:root"),
  fileCheck("1.1.7", "etcd unit file permissions 600 or more restrictive", one(CIS_PATHS.units.etcd), mode600, "600"),
  fileCheck("1.1.8", "etcd unit file ownership root:root", one(CIS_PATHS.units.etcd), rootOwned, "root:root"),
  { id: "1.1.9", title: "Container Network Interface file permissions 600", manual: "no CNI files on control-plane hosts (workers write theirs 0600)" },
  { id: "1.1.10", title: "Container Network Interface file ownership root:root", manual: "no CNI files on control-plane hosts (workers write theirs as root)" },
  fileCheck("1.1.11", "etcd data directory permissions 700 or more restrictive", dataDir, mode700, "700"),
  fileCheck("1.1.12", "etcd data directory ownership etcd:etcd", dataDir, (file) => file.owner === "etcd:etcd", "etcd:etcd"),
  fileCheck("1.1.13", "admin.conf permissions 600", ifPresent(CIS_PATHS.adminKubeconfig), mode600, "600", true),
  fileCheck("1.1.14", "admin.conf ownership root:root", ifPresent(CIS_PATHS.adminKubeconfig), rootOwned, "root:root", true),
  fileCheck("1.1.15", "scheduler.conf permissions 600 or more restrictive", one(CIS_PATHS.schedulerKubeconfig), mode600, "600"),
  fileCheck("1.1.16", "scheduler.conf ownership root:root", one(CIS_PATHS.schedulerKubeconfig), rootOwned, "root:root"),
  fileCheck("1.1.17", "controller-manager.conf permissions 600 or more restrictive", one(CIS_PATHS.controllerManagerKubeconfig), mode600, "600"),
  fileCheck("1.1.18", "controller-manager.conf ownership root:root", one(CIS_PATHS.controllerManagerKubeconfig), rootOwned, "root:root"),
  fileCheck("1.1.19", "Kubernetes PKI directory and files ownership root:root", underPki(/.*/), rootOwned, "root:root"),
  fileCheck("1.1.20", "Kubernetes PKI certificate file permissions 600 or more restrictive", underPki(/\.crt$/), mode600, "600"),
  fileCheck("1.1.21", "Kubernetes PKI key file permissions 600", underPki(/\.key$/), mode600, "600"),

  {
    id: "1.2.1",
    title: "--anonymous-auth is false",
    manual:
      "anonymous requests are authenticated only for /livez, /readyz and /healthz (AuthenticationConfiguration conditions), for the balancer's health checks; RBAC grants them nothing else",
  },
  flagCheck("1.2.2", "--token-auth-file is not set", "kube-apiserver", (f) => !f.has("token-auth-file"), show("token-auth-file")),
  flagCheck("1.2.3", "--DenyServiceExternalIPs admission plugin is set", "kube-apiserver", includes("enable-admission-plugins", "DenyServiceExternalIPs"), show("enable-admission-plugins")),
  flagCheck(
    "1.2.4",
    "--kubelet-client-certificate and --kubelet-client-key are set",
    "kube-apiserver",
    both(isSet("kubelet-client-certificate"), isSet("kubelet-client-key")),
    showAll("kubelet-client-certificate", "kubelet-client-key"),
  ),
  flagCheck("1.2.5", "--kubelet-certificate-authority is set", "kube-apiserver", isSet("kubelet-certificate-authority"), show("kubelet-certificate-authority")),
  flagCheck("1.2.6", "--authorization-mode is not AlwaysAllow", "kube-apiserver", both(isSet("authorization-mode"), excludes("authorization-mode", "AlwaysAllow")), show("authorization-mode")),
  flagCheck("1.2.7", "--authorization-mode includes Node", "kube-apiserver", includes("authorization-mode", "Node"), show("authorization-mode")),
  flagCheck("1.2.8", "--authorization-mode includes RBAC", "kube-apiserver", includes("authorization-mode", "RBAC"), show("authorization-mode")),
  flagCheck(
    "1.2.9",
    "admission control plugin EventRateLimit is set, with its configuration",
    "kube-apiserver",
    both(includes("enable-admission-plugins", "EventRateLimit"), isSet("admission-control-config-file")),
    showAll("enable-admission-plugins", "admission-control-config-file"),
  ),
  flagCheck("1.2.10", "admission control plugin AlwaysAdmit is not set", "kube-apiserver", excludes("enable-admission-plugins", "AlwaysAdmit"), show("enable-admission-plugins")),
  {
    id: "1.2.11",
    title: "admission control plugin AlwaysPullImages is set",
    manual: "not set: nodes run images loaded without a registry (the pause image, CoreDNS), which AlwaysPullImages would make unstartable; a switch is apiServer.extraFlags",
  },
  flagCheck("1.2.12", "admission control plugin ServiceAccount is set", "kube-apiserver", excludes("disable-admission-plugins", "ServiceAccount"), show("disable-admission-plugins")),
  flagCheck("1.2.13", "admission control plugin NamespaceLifecycle is set", "kube-apiserver", excludes("disable-admission-plugins", "NamespaceLifecycle"), show("disable-admission-plugins")),
  flagCheck("1.2.14", "admission control plugin NodeRestriction is set", "kube-apiserver", includes("enable-admission-plugins", "NodeRestriction"), show("enable-admission-plugins")),
  flagCheck("1.2.15", "--profiling is false", "kube-apiserver", equals("profiling", "false"), show("profiling")),
  flagCheck("1.2.16", "--audit-log-path is set", "kube-apiserver", isSet("audit-log-path"), show("audit-log-path")),
  flagCheck("1.2.17", "--audit-log-maxage is 30 or more", "kube-apiserver", atLeast("audit-log-maxage", 30), show("audit-log-maxage")),
  flagCheck("1.2.18", "--audit-log-maxbackup is 10 or more", "kube-apiserver", atLeast("audit-log-maxbackup", 10), show("audit-log-maxbackup")),
  flagCheck("1.2.19", "--audit-log-maxsize is 100 or more", "kube-apiserver", atLeast("audit-log-maxsize", 100), show("audit-log-maxsize")),
  { id: "1.2.20", title: "--request-timeout is set as appropriate", manual: "the default (60 s) is kept" },
  flagCheck("1.2.21", "--service-account-lookup is true", "kube-apiserver", notEquals("service-account-lookup", "false"), show("service-account-lookup")),
  flagCheck("1.2.22", "--service-account-key-file is set", "kube-apiserver", isSet("service-account-key-file"), show("service-account-key-file")),
  flagCheck("1.2.23", "--etcd-certfile and --etcd-keyfile are set", "kube-apiserver", both(isSet("etcd-certfile"), isSet("etcd-keyfile")), showAll("etcd-certfile", "etcd-keyfile")),
  flagCheck("1.2.24", "--tls-cert-file and --tls-private-key-file are set", "kube-apiserver", both(isSet("tls-cert-file"), isSet("tls-private-key-file")), showAll("tls-cert-file", "tls-private-key-file")),
  flagCheck("1.2.25", "--client-ca-file is set", "kube-apiserver", isSet("client-ca-file"), show("client-ca-file")),
  flagCheck("1.2.26", "--etcd-cafile is set", "kube-apiserver", isSet("etcd-cafile"), show("etcd-cafile")),
  flagCheck("1.2.27", "--encryption-provider-config is set", "kube-apiserver", isSet("encryption-provider-config"), show("encryption-provider-config")),
  { id: "1.2.28", title: "encryption providers are appropriately configured", manual: "secretbox for Secrets (the end-to-end test reads the k8s:enc:secretbox:v1 prefix from etcd)" },
  flagCheck("1.2.29", "the API server only uses strong cryptographic ciphers", "kube-apiserver", strongCiphers("tls-cipher-suites"), show("tls-cipher-suites")),
  flagCheck(
    "1.2.30",
    "--service-account-extend-token-expiration is false",
    "kube-apiserver",
    equals("service-account-extend-token-expiration", "false"),
    show("service-account-extend-token-expiration"),
  ),

  flagCheck("1.3.1", "--terminated-pod-gc-threshold is set", "kube-controller-manager", isSet("terminated-pod-gc-threshold"), show("terminated-pod-gc-threshold")),
  flagCheck("1.3.2", "--profiling is false", "kube-controller-manager", equals("profiling", "false"), show("profiling")),
  flagCheck("1.3.3", "--use-service-account-credentials is true", "kube-controller-manager", equals("use-service-account-credentials", "true"), show("use-service-account-credentials")),
  flagCheck("1.3.4", "--service-account-private-key-file is set", "kube-controller-manager", isSet("service-account-private-key-file"), show("service-account-private-key-file")),
  flagCheck("1.3.5", "--root-ca-file is set", "kube-controller-manager", isSet("root-ca-file"), show("root-ca-file")),
  flagCheck(
    "1.3.6",
    "RotateKubeletServerCertificate is not turned off",
    "kube-controller-manager",
    excludes("feature-gates", "RotateKubeletServerCertificate=false"),
    show("feature-gates"),
  ),
  flagCheck("1.3.7", "--bind-address is 127.0.0.1", "kube-controller-manager", equals("bind-address", "127.0.0.1"), show("bind-address")),

  {
    id: "1.4.1",
    title: "--profiling is false (the config file's enableProfiling when --config is given)",
    evaluate: (f) => {
      const flags = parseArgs(f.processes["kube-scheduler"] ?? []);
      if (!f.processes["kube-scheduler"]) return { ok: false, detail: "kube-scheduler is not running" };
      if (flags.has("config")) {
        const v = yamlTopLevel(f.schedulerConfig, "enableProfiling");
        return { ok: v === "false", detail: `${flags.get("config")}: enableProfiling ${v ?? "not set (default true)"}` };
      }
      return { ok: flags.get("profiling") === "false", detail: show("profiling")(flags) };
    },
  },
  flagCheck("1.4.2", "--bind-address is 127.0.0.1", "kube-scheduler", equals("bind-address", "127.0.0.1"), show("bind-address")),

  flagCheck("2.1", "--cert-file and --key-file are set", "etcd", both(isSet("cert-file"), isSet("key-file")), showAll("cert-file", "key-file")),
  flagCheck("2.2", "--client-cert-auth is true", "etcd", equals("client-cert-auth", "true"), show("client-cert-auth")),
  flagCheck("2.3", "--auto-tls is not true", "etcd", notEquals("auto-tls", "true"), show("auto-tls")),
  flagCheck("2.4", "--peer-cert-file and --peer-key-file are set", "etcd", both(isSet("peer-cert-file"), isSet("peer-key-file")), showAll("peer-cert-file", "peer-key-file")),
  flagCheck("2.5", "--peer-client-cert-auth is true", "etcd", equals("peer-client-cert-auth", "true"), show("peer-client-cert-auth")),
  flagCheck("2.6", "--peer-auto-tls is not true", "etcd", notEquals("peer-auto-tls", "true"), show("peer-auto-tls")),
  {
    id: "2.7",
    title: "a unique Certificate Authority is used for etcd",
    evaluate: (f) => {
      const etcdCa = parseArgs(f.processes.etcd ?? []).get("trusted-ca-file");
      const clientCa = parseArgs(f.processes["kube-apiserver"] ?? []).get("client-ca-file");
      const etcdCaFile = parseArgs(f.processes["kube-apiserver"] ?? []).get("etcd-cafile");
      const ok = etcdCa !== undefined && clientCa !== undefined && etcdCa !== clientCa && etcdCaFile !== clientCa;
      return { ok, detail: `etcd --trusted-ca-file=${etcdCa}, apiserver --client-ca-file=${clientCa}` };
    },
  },
  // Not in kube-bench's list; the issue's care for every TLS endpoint of the control plane.
  flagCheck("hakube.tls.1", "etcd only uses strong cryptographic ciphers", "etcd", strongCiphers("cipher-suites"), show("cipher-suites")),
  flagCheck("hakube.tls.2", "controller manager only uses strong cryptographic ciphers", "kube-controller-manager", strongCiphers("tls-cipher-suites"), show("tls-cipher-suites")),
  flagCheck("hakube.tls.3", "scheduler only uses strong cryptographic ciphers", "kube-scheduler", strongCiphers("tls-cipher-suites"), show("tls-cipher-suites")),
  {
    id: "hakube.etcd.user",
    title: "etcd does not run as root",
    evaluate: (f) => {
      const user = f.users?.etcd;
      return { ok: user !== undefined && user !== "root", detail: `etcd runs as ${user ?? "unknown"}` };
    },
  },
];

/** Evaluates every check against one host's facts. */
export function evaluateCis(facts: HostFacts): CheckResult[] {
  return CIS_CHECKS.map((c) => {
    if (c.manual !== undefined || !c.evaluate) return { id: c.id, title: c.title, verdict: "manual", detail: c.manual ?? "" };
    const r = c.evaluate(facts);
    return { id: c.id, title: c.title, verdict: r.ok === "n/a" ? "not-applicable" : r.ok ? "pass" : "fail", detail: r.detail };
  });
}

/**
 * The facts script: for each component its main process's arguments (NUL-separated
 * /proc/<pid>/cmdline) and account, the scheduler's config, and `stat` of the unit files,
 * the kubeconfigs, everything under the PKI folder and etcd's data directory.
 */
export function factsScript(): string {
  const units = COMPONENTS.map((c) => `${c}.service`).join(" ");
  const paths = [...Object.values(CIS_PATHS.units), CIS_PATHS.adminKubeconfig, CIS_PATHS.schedulerKubeconfig, CIS_PATHS.controllerManagerKubeconfig].join(" ");
  return `for u in ${units}; do
  pid=$(systemctl show -p MainPID --value "$u" 2>/dev/null || echo 0)
  echo "==process \${u%.service}"
  if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/cmdline" ]; then
    echo "==user $(stat -c %U "/proc/$pid")"
    tr '\\0' '\\n' < "/proc/$pid/cmdline" | tail -n +2
  fi
done
echo "==stat"
for p in ${paths}; do [ -e "$p" ] && stat -c '%a %U:%G %n' "$p"; done
[ -d ${CIS_PATHS.pki} ] && find ${CIS_PATHS.pki} -exec stat -c '%a %U:%G %n' {} +
data=$(tr '\\0' '\\n' < "/proc/$(systemctl show -p MainPID --value etcd.service)/cmdline" 2>/dev/null | sed -n 's/^--data-dir=//p' || true)
[ -n "$data" ] && [ -d "$data" ] && stat -c '%a %U:%G %n' "$data"
conf=$(tr '\\0' '\\n' < "/proc/$(systemctl show -p MainPID --value kube-scheduler.service)/cmdline" 2>/dev/null | sed -n 's/^--config=//p' || true)
echo "==scheduler-config"
[ -n "$conf" ] && [ -f "$conf" ] && cat "$conf"
exit 0`;
}

/** Parses the facts script's output. */
export function parseFacts(output: string): HostFacts {
  const processes: Partial<Record<Component, string[]>> = {};
  const users: Partial<Record<Component, string>> = {};
  const files: Record<string, FileFacts> = {};
  let schedulerConfig: string | undefined;
  let section: "process" | "stat" | "scheduler" | undefined;
  let component: Component | undefined;
  const schedulerLines: string[] = [];
  for (const line of output.split("\n")) {
    const header = /^==(process|user|stat|scheduler-config)\s*(.*)$/.exec(line);
    if (header) {
      if (header[1] === "process") {
        section = "process";
        component = header[2] as Component;
      } else if (header[1] === "user" && component) {
        users[component] = header[2];
        processes[component] = [];
      } else if (header[1] === "stat") {
        section = "stat";
      } else {
        section = "scheduler";
      }
      continue;
    }
    if (section === "process" && component && processes[component] && line !== "") {
      processes[component]!.push(line);
    } else if (section === "stat") {
      const m = /^([0-7]{3,4}) (\S+) (\/.*)$/.exec(line);
      if (m) files[m[3]] = { mode: parseInt(m[1], 8), owner: m[2] };
    } else if (section === "scheduler") {
      schedulerLines.push(line);
    }
  }
  if (schedulerLines.some((l) => l.trim() !== "")) schedulerConfig = schedulerLines.join("\n");
  return { processes, users, files, schedulerConfig };
}

/** The facts of one control-plane machine of the local stack, over SSH. */
export function collectCisFacts(cred: Credentials, address: string): HostFacts {
  const r = cred.ssh(address, factsScript(), 30_000);
  if (r.status !== 0) {
    throw new Error(`collecting the CIS facts on ${address} failed: ${r.stderr.trim()}`);
  }
  return parseFacts(r.stdout);
}

export function formatCisReport(host: string, results: readonly CheckResult[]): string {
  const count = (v: Verdict) => results.filter((r) => r.verdict === v).length;
  return [
    `${host}: ${count("pass")} pass, ${count("fail")} fail, ${count("manual")} manual, ${count("not-applicable")} not applicable`,
    ...results.map((r) => `  [${r.verdict === "pass" ? "PASS" : r.verdict === "fail" ? "FAIL" : r.verdict === "manual" ? "INFO" : "N/A "}] ${r.id} ${r.title}${r.verdict === "pass" ? "" : `: ${r.detail}`}`),
  ].join("\n");
}

if (require.main === module) {
  const outputs: LocalOutputs = stackOutputs();
  const cred = new Credentials(outputs);
  try {
    const reports = controlPlaneHosts(outputs).map((h) => ({ host: h.name, results: evaluateCis(collectCisFacts(cred, h.address)) }));
    if (process.argv.includes("--json")) {
      console.log(JSON.stringify(reports, null, 2));
    } else {
      console.log(reports.map((r) => formatCisReport(r.host, r.results)).join("\n\n"));
    }
    process.exitCode = reports.some((r) => r.results.some((x) => x.verdict === "fail")) ? 1 : 0;
  } finally {
    cred.dispose();
  }
}

/** Client certificates the TLS probe presents where the endpoint requires one (etcd). */
const PROBE_CLIENT_CERTS: Record<number, { cert: string; key: string }> = {
  2379: { cert: "/etc/etcd/pki/healthcheck-client.crt", key: "/etc/etcd/pki/healthcheck-client.key" },
  2380: { cert: "/etc/etcd/pki/peer.crt", key: "/etc/etcd/pki/peer.key" },
};

/**
 * Run on a control-plane machine: for each port, four TLS handshakes with openssl
 * s_client (`tls1.1`; TLS 1.2 offering only CBC ciphers, `cbc`; TLS 1.2 with an AEAD
 * cipher, `aead`; `tls1.3`), each printing `<port> <what> accepted|refused`. Ciphers for
 * ECDSA and RSA keys are offered (controller-manager and scheduler serve a self-signed RSA
 * certificate of their own). etcd's peer port listens on the
 * machine's address only, everything else is reached on loopback. The client offers TLS
 * 1.1 at security level 0, so a refusal is the server's.
 */
export function tlsProbeScript(ports: readonly number[], hostAddress: string): string {
  const lines = [
    shellFunction(
      "hakube_tls_try",
      `local port=$1 what=$2 address=$3
shift 3
if timeout 10 openssl s_client -connect "$address:$port" "$@" </dev/null >/dev/null 2>&1; then
  echo "$port $what accepted"
else
  echo "$port $what refused"
fi`,
    ),
  ];
  for (const port of ports) {
    const address = port === 2380 ? hostAddress : "127.0.0.1";
    const certs = PROBE_CLIENT_CERTS[port] ? ["-cert", PROBE_CLIENT_CERTS[port].cert, "-key", PROBE_CLIENT_CERTS[port].key] : [];
    const attempt = (what: string, args: string[]) => command(["hakube_tls_try", port, what, address, ...certs, ...args]);
    lines.push(
      attempt("tls1.1", ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]),
      attempt("cbc", ["-tls1_2", "-cipher", WEAK_OPENSSL_CIPHERS.join(":")]),
      attempt("aead", ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"]),
      attempt("tls1.3", ["-tls1_3"]),
    );
  }
  return lines.join("\n");
}
