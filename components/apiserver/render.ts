// kube-apiserver rendering (pure): flags, unit, encryption, audit and authentication
// configuration, and the scripts that start it and wait for /readyz.
import { Flag, mergeFlags, renderUnit } from "../systemd";
import { KUBERNETES_TLS_MIN_VERSION, TLS_CIPHER_SUITES } from "../tls";
import { quote as quoteWord, shellFunction } from "../remote/shell";

export const K8S_PKI = "/etc/kubernetes/pki";
export const ENCRYPTION_CONFIG = "/etc/kubernetes/encryption-config.yaml";
export const AUDIT_POLICY = "/etc/kubernetes/audit-policy.yaml";
export const AUTHENTICATION_CONFIG = "/etc/kubernetes/authentication-config.yaml";
export const AUDIT_LOG = "/var/log/kubernetes/audit/audit.log";
export const ADMISSION_CONFIG = "/etc/kubernetes/admission-config.yaml";

/**
 * Admission plugins on top of the defaults: NodeRestriction (kubelets change only their
 * own Node and its pods), DenyServiceExternalIPs (no Service may claim an external IP,
 * CVE-2020-8554) and EventRateLimit (a flood of Events cannot swamp the apiserver and
 * etcd), as the CIS Kubernetes Benchmark asks.
 */
export const ADMISSION_PLUGINS: readonly string[] = ["NodeRestriction", "DenyServiceExternalIPs", "EventRateLimit"];

/** Events accepted per second (and burst) for the whole server and per namespace. */
export const EVENT_RATE_LIMITS = {
  server: { qps: 100, burst: 200 },
  namespace: { qps: 50, burst: 100 },
} as const;

export interface ApiServerSettings {
  readonly securePort: number;
  readonly etcdServers: readonly string[];
  readonly serviceCidr: string;
  readonly serviceAccountIssuer: string;
  /** The longest a service-account token may last (the signing key's retirement waits for it). */
  readonly serviceAccountTokenMaxSeconds: number;
  readonly shutdownDelayDurationSeconds: number;
  readonly audit: { readonly maxAgeDays: number; readonly maxBackups: number; readonly maxSizeMb: number };
  readonly extraFlags?: Readonly<Record<string, string>>;
}

export function apiServerFlags(advertiseAddress: string, s: ApiServerSettings): Flag[] {
  const defaults: Flag[] = [
    ["advertise-address", advertiseAddress],
    ["bind-address", "0.0.0.0"],
    ["secure-port", s.securePort],
    ["authorization-mode", "Node,RBAC"],
    ["enable-admission-plugins", ADMISSION_PLUGINS.join(",")],
    ["admission-control-config-file", ADMISSION_CONFIG],
    ["allow-privileged", true],
    ["authentication-config", AUTHENTICATION_CONFIG],
    ["enable-bootstrap-token-auth", true],
    ["client-ca-file", `${K8S_PKI}/ca.crt`],
    ["tls-cert-file", `${K8S_PKI}/apiserver.crt`],
    ["tls-private-key-file", `${K8S_PKI}/apiserver.key`],
    ["tls-min-version", KUBERNETES_TLS_MIN_VERSION],
    ["tls-cipher-suites", TLS_CIPHER_SUITES.join(",")],
    ["etcd-servers", s.etcdServers.join(",")],
    ["etcd-cafile", `${K8S_PKI}/etcd-ca.crt`],
    ["etcd-certfile", `${K8S_PKI}/apiserver-etcd-client.crt`],
    ["etcd-keyfile", `${K8S_PKI}/apiserver-etcd-client.key`],
    ["kubelet-client-certificate", `${K8S_PKI}/apiserver-kubelet-client.crt`],
    ["kubelet-client-key", `${K8S_PKI}/apiserver-kubelet-client.key`],
    ["kubelet-preferred-address-types", "InternalIP,ExternalIP,Hostname"],
    // kubelets serve with certificates the cluster CA signed (after hakube's approver checked them).
    ["kubelet-certificate-authority", `${K8S_PKI}/ca.crt`],
    ["service-cluster-ip-range", s.serviceCidr],
    ["service-account-issuer", s.serviceAccountIssuer],
    ["service-account-key-file", `${K8S_PKI}/sa.pub`],
    ["service-account-signing-key-file", `${K8S_PKI}/sa.key`],
    ["service-account-lookup", true],
    // Projected tokens are valid for what was asked (an hour for the kubelet's), not a year.
    ["service-account-extend-token-expiration", false],
    ["service-account-max-token-expiration", `${s.serviceAccountTokenMaxSeconds}s`],
    ["encryption-provider-config", ENCRYPTION_CONFIG],
    ["audit-policy-file", AUDIT_POLICY],
    ["audit-log-path", AUDIT_LOG],
    ["audit-log-maxage", s.audit.maxAgeDays],
    ["audit-log-maxbackup", s.audit.maxBackups],
    ["audit-log-maxsize", s.audit.maxSizeMb],
    ["requestheader-client-ca-file", `${K8S_PKI}/front-proxy-ca.crt`],
    ["requestheader-allowed-names", "front-proxy-client"],
    ["requestheader-extra-headers-prefix", "X-Remote-Extra-"],
    ["requestheader-group-headers", "X-Remote-Group"],
    ["requestheader-username-headers", "X-Remote-User"],
    ["proxy-client-cert-file", `${K8S_PKI}/front-proxy-client.crt`],
    ["proxy-client-key-file", `${K8S_PKI}/front-proxy-client.key`],
    ["endpoint-reconciler-type", "lease"],
    ["shutdown-delay-duration", `${s.shutdownDelayDurationSeconds}s`],
    // After the shutdown delay, keep listening (answering new requests with 429 and
    // Retry-After) until the requests in flight drained, then close with a 2 s timeout.
    // `false` closes the listener at once but waits up to the request timeout (60 s) for
    // open watches: measured, every apiserver restart took a minute longer, for no fewer
    // failed requests (README, Measured).
    ["shutdown-send-retry-after", true],
    ["profiling", false],
  ];
  return mergeFlags(defaults, s.extraFlags);
}

export function apiServerUnit(advertiseAddress: string, s: ApiServerSettings): string {
  return renderUnit({
    description: "Kubernetes API server (hakube)",
    documentation: "https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/",
    binary: "/usr/local/bin/kube-apiserver",
    flags: apiServerFlags(advertiseAddress, s),
    after: ["etcd.service"],
    // The apiserver keeps serving for the shutdown delay after SIGTERM; give it time to drain.
    timeoutStopSec: s.shutdownDelayDurationSeconds + 60,
  });
}

/**
 * Secrets are encrypted with secretbox: the first key encrypts, every key decrypts (the
 * active one first, then the others oldest first, during a rotation), identity last so
 * data written before encryption still reads.
 */
export function encryptionConfig(keys: string | readonly { readonly name: string; readonly secret: string }[]): string {
  const list = typeof keys === "string" ? [{ name: "key1", secret: keys }] : keys;
  if (list.length === 0) throw new Error("encryptionConfig: no key");
  for (const k of list) {
    if (Buffer.from(k.secret, "base64").length !== 32) {
      throw new Error(`the encryption key ${k.name} must be 32 bytes, base64 encoded`);
    }
  }
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: EncryptionConfiguration",
    "resources:",
    "- resources:",
    "  - secrets",
    "  providers:",
    "  - secretbox:",
    "      keys:",
    ...list.flatMap((k) => [`      - name: ${k.name}`, `        secret: ${k.secret}`]),
    "  - identity: {}",
    "",
  ].join("\n");
}

/** The prefix of a Secret's value in etcd when `key` (secretbox) encrypted it. */
export function secretboxPrefix(key: string): string {
  return `k8s:enc:secretbox:v1:${key}:`;
}

/**
 * Run on an etcd host: one line `uses <key>` per Secret in etcd (`identity` for one stored
 * in plain, `other` for another provider), then `usage done`. Reads only each value's head.
 */
export function secretKeyUsageScript(clientPort: number): string {
  return `set -u
[ -f /etc/etcd/etcdctl.env ] || { echo "no etcd here" >&2; exit 1; }
set -a; . /etc/etcd/etcdctl.env; set +a
export ETCDCTL_ENDPOINTS=${quoteWord(`https://127.0.0.1:${clientPort}`)}
names=$(etcdctl get /registry/secrets/ --prefix --keys-only) || { echo "etcdctl get failed" >&2; exit 1; }
for k in $names; do
  v=$(etcdctl get "$k" --print-value-only | head -c 64 | tr -c 'a-zA-Z0-9:._-' '.' || true)
  case $v in
    k8s:enc:secretbox:v1:*) n=\${v#k8s:enc:secretbox:v1:}; echo "uses \${n%%:*}" ;;
    k8s:enc:*) echo "uses other" ;;
    *) echo "uses identity" ;;
  esac
done
echo "usage done"`;
}

/**
 * Run on an apiserver host with an admin kubeconfig at \`kubeconfig\` (removed at the end):
 * every Secret read and written back, so the active key encrypts it (kubernetes.io's
 * procedure); a conflict (a Secret changed meanwhile) is retried.
 */
export function rewriteSecretsScript(kubeconfig: string, activeKey: string): string {
  const kc = quoteWord(kubeconfig);
  return `trap 'rm -f ${kc}' EXIT
hakube_rewrite_secrets() {
  local n
  n=$(kubectl --kubeconfig ${kc} get secrets --all-namespaces --no-headers 2>/dev/null | wc -l)
  kubectl --kubeconfig ${kc} get secrets --all-namespaces -o json | kubectl --kubeconfig ${kc} replace -f - >/dev/null || return 1
  echo "hakube: rewrote $n Secrets, now encrypted with ${activeKey}"
}
hakube_retry 5 3 "rewriting every Secret" -- hakube_rewrite_secrets`;
}

/**
 * After the rewrite, on an etcd host: fails unless every Secret in etcd carries the active
 * key's prefix (the count of the others is named).
 */
export function secretsEncryptedGateScript(clientPort: number, activeKey: string): string {
  return `${shellFunction("hakube_secret_usage", secretKeyUsageScript(clientPort))}
out=$(hakube_secret_usage) || { echo "hakube: could not read the Secrets in etcd" >&2; exit 1; }
case $out in *"usage done"*) ;; *) echo "hakube: the Secrets check did not finish" >&2; exit 1 ;; esac
total=$(printf '%s\n' "$out" | grep -c '^uses ' || true)
other=$(printf '%s\n' "$out" | grep '^uses ' | grep -vcx ${quoteWord(`uses ${activeKey}`)} || true)
if [ "$other" -gt 0 ]; then
  echo "hakube: $other of $total Secrets in etcd are not encrypted with ${activeKey}:" >&2
  printf '%s\n' "$out" | grep '^uses ' | sort | uniq -c >&2
  exit 1
fi
echo "hakube: all $total Secrets in etcd are encrypted with ${activeKey}"`;
}

/** The admission plugins' configuration: EventRateLimit's limits, inline. */
export function admissionConfig(): string {
  const limit = (type: string, l: { qps: number; burst: number }) => [`        - type: ${type}`, `          qps: ${l.qps}`, `          burst: ${l.burst}`];
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: AdmissionConfiguration",
    "plugins:",
    "  - name: EventRateLimit",
    "    configuration:",
    "      apiVersion: eventratelimit.admission.k8s.io/v1alpha1",
    "      kind: Configuration",
    "      limits:",
    ...limit("Server", EVENT_RATE_LIMITS.server),
    ...limit("Namespace", EVENT_RATE_LIMITS.namespace),
    "",
  ].join("\n");
}

/** Metadata for everything, nothing for health probes, no request bodies (they hold secrets). */
export function auditPolicy(): string {
  return [
    "apiVersion: audit.k8s.io/v1",
    "kind: Policy",
    "omitStages:",
    "- RequestReceived",
    "rules:",
    "- level: None",
    "  nonResourceURLs:",
    "  - /healthz*",
    "  - /livez*",
    "  - /readyz*",
    "  - /version",
    "- level: None",
    "  users:",
    "  - system:kube-controller-manager",
    "  - system:kube-scheduler",
    "  verbs:",
    "  - get",
    "  - update",
    "  resources:",
    "  - group: coordination.k8s.io",
    "    resources:",
    "    - leases",
    "- level: Metadata",
    "",
  ].join("\n");
}

/** Anonymous requests are authenticated only for the health endpoints. */
export function authenticationConfig(): string {
  return [
    "apiVersion: apiserver.config.k8s.io/v1",
    "kind: AuthenticationConfiguration",
    "anonymous:",
    "  enabled: true",
    "  conditions:",
    "  - path: /livez",
    "  - path: /readyz",
    "  - path: /healthz",
    "",
  ].join("\n");
}

export const apiServerCreateScript = `mkdir -p /var/log/kubernetes/audit && chmod 0700 /var/log/kubernetes/audit
systemctl daemon-reload
systemctl enable kube-apiserver.service >/dev/null 2>&1
if [ -n "$HAKUBE_CHANGED" ] || ! systemctl is-active --quiet kube-apiserver.service; then
  systemctl restart --no-block kube-apiserver.service
fi
echo "hakube: kube-apiserver starting"`;

/** A single /readyz probe of one apiserver, verified against the cluster CA. */
export const readyzCheck = (address: string, port: number) =>
  `curl --silent --fail --max-time 3 --cacert ${K8S_PKI}/ca.crt https://${address}:${port}/readyz -o /dev/null`;

/**
 * Update (rolling, one host at a time): restart (the old process drains for the
 * shutdown delay), wait for local /readyz, then give the balancer time to see it up.
 */
export function apiServerUpdateScript(port: number, attempts: number, balancerRiseSeconds: number): string {
  return `mkdir -p /var/log/kubernetes/audit && chmod 0700 /var/log/kubernetes/audit
systemctl daemon-reload
systemctl enable kube-apiserver.service >/dev/null 2>&1
systemctl restart kube-apiserver.service
hakube_retry ${attempts} 2 "kube-apiserver /readyz" -- ${readyzCheck("127.0.0.1", port)}
sleep ${balancerRiseSeconds}
echo "hakube: kube-apiserver restarted and ready"`;
}

/**
 * The readiness gate: /readyz of every member answers 200, then the `kubernetes`
 * Service's EndpointSlice lists every member (each apiserver adds itself a moment after
 * it turns ready, and the lease reconciler may need one interval, 10 s, to settle), so
 * that in-cluster clients see every apiserver when the gate completes. Both waits are
 * bounded. The slice is read from the local apiserver with its kubelet-client
 * certificate (files on the host, nothing on the command line).
 */
export function apiServerGateScript(addresses: readonly string[], port: number, attempts: number): string {
  const slice = `https://127.0.0.1:${port}/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes`;
  return [
    ...addresses.map((a) => `hakube_retry ${attempts} 2 "kube-apiserver ${a} /readyz" -- ${readyzCheck(a, port)}`),
    `hakube_slice_lists() {
  curl --silent --fail --max-time 3 --cacert ${K8S_PKI}/ca.crt \\
    --cert ${K8S_PKI}/apiserver-kubelet-client.crt --key ${K8S_PKI}/apiserver-kubelet-client.key \\
    ${slice} | grep -q -F "\\"$1\\""
}`,
    ...addresses.map((a) => `hakube_retry ${attempts} 2 "kubernetes Service lists ${a}" -- hakube_slice_lists ${a}`),
    `echo "hakube: ${addresses.length} apiservers ready and listed in the kubernetes Service"`,
  ].join("\n");
}

export const apiServerDeleteScript = `systemctl disable --now kube-apiserver.service
rm -f /etc/systemd/system/kube-apiserver.service
systemctl daemon-reload`;
