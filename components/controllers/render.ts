// kube-controller-manager and kube-scheduler rendering (pure).
import { retry, shellFunction } from "../remote/shell";
import { Flag, renderUnit } from "../systemd";
import { K8S_PKI } from "../apiserver/render";
import { KUBERNETES_TLS_MIN_VERSION, TLS_CIPHER_SUITES } from "../tls";

/**
 * Terminated pods kept before the pod garbage collector deletes the oldest (CIS asks for
 * a threshold; Kubernetes' own default, 12500, lets them pile up in etcd).
 */
export const TERMINATED_POD_GC_THRESHOLD = 1000;

/** The secure port's TLS settings, shared by controller-manager and scheduler. */
const secureServingFlags: Flag[] = [
  ["bind-address", "127.0.0.1"],
  ["tls-min-version", KUBERNETES_TLS_MIN_VERSION],
  ["tls-cipher-suites", TLS_CIPHER_SUITES.join(",")],
];

export const CM_KUBECONFIG = "/etc/kubernetes/controller-manager.conf";
export const SCHED_KUBECONFIG = "/etc/kubernetes/scheduler.conf";
export const SCHED_CONFIG = "/etc/kubernetes/scheduler-config.yaml";

export interface LeaderElection {
  readonly leaseDurationSeconds: number;
  readonly renewDeadlineSeconds: number;
  readonly retryPeriodSeconds: number;
}

/** Go duration text: whole seconds as "15s", fractions as milliseconds ("500ms"). */
export function goDuration(seconds: number): string {
  return Number.isInteger(seconds) ? `${seconds}s` : `${Math.round(seconds * 1000)}ms`;
}

export interface ControllerManagerSettings {
  readonly clusterName: string;
  readonly podCidr: string;
  readonly serviceCidr: string;
  readonly leaderElection: LeaderElection;
}

export function controllerManagerFlags(s: ControllerManagerSettings): Flag[] {
  return [
    ["kubeconfig", CM_KUBECONFIG],
    ["authentication-kubeconfig", CM_KUBECONFIG],
    ["authorization-kubeconfig", CM_KUBECONFIG],
    ...secureServingFlags,
    ["leader-elect", true],
    ["leader-elect-resource-lock", "leases"],
    ["leader-elect-resource-namespace", "kube-system"],
    ["leader-elect-resource-name", "kube-controller-manager"],
    ["leader-elect-lease-duration", goDuration(s.leaderElection.leaseDurationSeconds)],
    ["leader-elect-renew-deadline", goDuration(s.leaderElection.renewDeadlineSeconds)],
    ["leader-elect-retry-period", goDuration(s.leaderElection.retryPeriodSeconds)],
    ["cluster-name", s.clusterName],
    // The active CA's certificate with its key; ca.crt is every trusted CA (rotations).
    ["cluster-signing-cert-file", `${K8S_PKI}/signing-ca.crt`],
    ["cluster-signing-key-file", `${K8S_PKI}/ca.key`],
    ["root-ca-file", `${K8S_PKI}/ca.crt`],
    ["service-account-private-key-file", `${K8S_PKI}/sa.key`],
    ["use-service-account-credentials", true],
    ["controllers", "*,bootstrapsigner,tokencleaner"],
    ["allocate-node-cidrs", true],
    ["cluster-cidr", s.podCidr],
    ["service-cluster-ip-range", s.serviceCidr],
    ["requestheader-client-ca-file", `${K8S_PKI}/front-proxy-ca.crt`],
    ["terminated-pod-gc-threshold", TERMINATED_POD_GC_THRESHOLD],
    ["profiling", false],
  ];
}

export function controllerManagerUnit(s: ControllerManagerSettings): string {
  return renderUnit({
    description: "Kubernetes controller manager (hakube)",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/",
    binary: "/usr/local/bin/kube-controller-manager",
    flags: controllerManagerFlags(s),
    after: ["kube-apiserver.service"],
  });
}

export function schedulerConfig(leaderElection: LeaderElection): string {
  return [
    "apiVersion: kubescheduler.config.k8s.io/v1",
    "kind: KubeSchedulerConfiguration",
    "clientConnection:",
    `  kubeconfig: ${SCHED_KUBECONFIG}`,
    // With --config, the scheduler takes profiling from here and ignores --profiling.
    "enableProfiling: false",
    "enableContentionProfiling: false",
    "leaderElection:",
    "  leaderElect: true",
    "  resourceLock: leases",
    "  resourceNamespace: kube-system",
    "  resourceName: kube-scheduler",
    `  leaseDuration: ${goDuration(leaderElection.leaseDurationSeconds)}`,
    `  renewDeadline: ${goDuration(leaderElection.renewDeadlineSeconds)}`,
    `  retryPeriod: ${goDuration(leaderElection.retryPeriodSeconds)}`,
    "",
  ].join("\n");
}

export function schedulerFlags(): Flag[] {
  return [
    ["config", SCHED_CONFIG],
    ["authentication-kubeconfig", SCHED_KUBECONFIG],
    ["authorization-kubeconfig", SCHED_KUBECONFIG],
    ...secureServingFlags,
    // Ignored with --config (the file says the same); kept for scanners that read flags.
    ["profiling", false],
  ];
}

export function schedulerUnit(): string {
  return renderUnit({
    description: "Kubernetes scheduler (hakube)",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/",
    binary: "/usr/local/bin/kube-scheduler",
    flags: schedulerFlags(),
    after: ["kube-apiserver.service"],
  });
}

const UNITS = "kube-controller-manager.service kube-scheduler.service";

export const controllersCreateScript = `systemctl daemon-reload
systemctl enable ${UNITS} >/dev/null 2>&1
if [ -n "$HAKUBE_CHANGED" ] || ! systemctl is-active --quiet kube-controller-manager.service || ! systemctl is-active --quiet kube-scheduler.service; then
  systemctl restart ${UNITS}
fi
echo "hakube: controller-manager and scheduler running"`;

/** Update (one host at a time): restart, then wait until both answer /healthz locally. */
export function controllersUpdateScript(attempts: number): string {
  return `systemctl daemon-reload
systemctl enable ${UNITS} >/dev/null 2>&1
systemctl restart ${UNITS}
hakube_retry ${attempts} 2 "kube-controller-manager /healthz" -- curl --silent --fail --max-time 3 --insecure https://127.0.0.1:10257/healthz -o /dev/null
hakube_retry ${attempts} 2 "kube-scheduler /healthz" -- curl --silent --fail --max-time 3 --insecure https://127.0.0.1:10259/healthz -o /dev/null
echo "hakube: controllers restarted and healthy"`;
}

/**
 * `hakube_lease_held <kubeconfig> <lease>`: the Lease in kube-system has a holder. A
 * function, so that each attempt of the retry asks the API again.
 */
export const leaseHeldFunction = shellFunction(
  "hakube_lease_held",
  `local holder
holder=$(kubectl --kubeconfig "$1" --request-timeout=3s -n kube-system get lease "$2" -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null) || return 1
[ -n "$holder" ]`,
);

/** A Lease renewed in the last $3 seconds (after a restore, a Lease from the backup has a holder that is long gone). */
export const leaseFreshFunction = shellFunction(
  "hakube_lease_fresh",
  `local renewed
renewed=$(kubectl --kubeconfig "$1" --request-timeout=3s -n kube-system get lease "$2" -o 'jsonpath={.spec.renewTime}' 2>/dev/null) || return 1
[ -n "$renewed" ] && [ $(( $(date +%s) - $(date -d "$renewed" +%s) )) -le "$3" ]`,
);

/**
 * The gate: both Leases have a holder (bounded wait); with `freshWithinSeconds`, a holder
 * that renewed it that recently.
 */
export function controllersGateScript(attempts: number, delaySeconds = 2, freshWithinSeconds?: number): string {
  const r = { attempts, delaySeconds };
  const check = (kubeconfig: string, lease: string) =>
    freshWithinSeconds === undefined ? ["hakube_lease_held", kubeconfig, lease] : ["hakube_lease_fresh", kubeconfig, lease, String(freshWithinSeconds)];
  return `${freshWithinSeconds === undefined ? leaseHeldFunction : leaseFreshFunction}
${retry(r, "kube-controller-manager Lease holder", check(CM_KUBECONFIG, "kube-controller-manager"))}
${retry(r, "kube-scheduler Lease holder", check(SCHED_KUBECONFIG, "kube-scheduler"))}
echo "hakube: leases held"`;
}

export const controllersDeleteScript = `systemctl disable --now ${UNITS}
rm -f /etc/systemd/system/kube-controller-manager.service /etc/systemd/system/kube-scheduler.service
systemctl daemon-reload`;
