import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { Host } from "../types";
import { ClusterPki } from "../pki/clusterPki";
import { EtcdCluster } from "../etcd/etcdCluster";
import { BinarySource, defaultBinarySource } from "../binaries/source";
import { BinaryPlan, installBinaries, planBinaries } from "../binaries/install";
import { gateStep, hostStep, onceStep, StepFile } from "../remote/hostStep";
import { invalid, requireCidr, requireHosts, requireInteger, requireVersion } from "../validation";
import { isDnsName } from "../net";
import { KeyRing, resolveKeyRing } from "../pki/keyRing";
import type { ObservedNetwork } from "../observe/ssh";
import { DEFAULT_KUBERNETES_VERSION, MINIMUM_KUBERNETES_VERSION, parseVersion } from "../version";
import {
  ADMISSION_CONFIG,
  admissionConfig,
  apiServerCreateScript,
  apiServerDeleteScript,
  apiServerGateScript,
  ApiServerSettings,
  apiServerUnit,
  apiServerUpdateScript,
  AUDIT_POLICY,
  auditPolicy,
  AUTHENTICATION_CONFIG,
  authenticationConfig,
  ENCRYPTION_CONFIG,
  encryptionConfig,
  K8S_PKI,
  rewriteSecretsScript,
  secretKeyUsageScript,
  secretsEncryptedGateScript,
} from "./render";

/** Where the rewrite of every Secret finds an admin kubeconfig for its run (removed after). */
const REWRITE_KUBECONFIG = "/run/hakube/rewrite-secrets.kubeconfig";

const FORBIDDEN_FLAGS = ["insecure-port", "insecure-bind-address", "apiserver-count", "anonymous-auth"];

/**
 * The update of a Secrets encryption key's command: the key in the state, printed again
 * (the provider hands the previous stdout over in the environment, never on a command line).
 * Without it, an update would run `create` again and make a new key: every Secret written
 * with the old one unreadable. With no key in the state it fails, making none.
 */
export const KEEP_ENCRYPTION_KEY = `if [ -n "\${PULUMI_COMMAND_STDOUT:-}" ]; then printf '%s' "$PULUMI_COMMAND_STDOUT"; else echo "hakube: refusing to make a new Secrets encryption key on an update: the state holds no previous key (every Secret written with it would be unreadable)" >&2; exit 1; fi`;

export interface ApiServerPoolArgs {
  /** One kube-apiserver per host. */
  readonly hosts: readonly Host[];
  readonly pki: ClusterPki;
  /** Apiservers start once this cluster is ready, and store their data in it. */
  readonly etcd: EtcdCluster;
  /** @default "v1.37.1" (`DEFAULT_KUBERNETES_VERSION`) */
  readonly kubernetesVersion?: string;
  /** @default { kind: "release" } */
  readonly binaries?: BinarySource;
  /** @default 6443 */
  readonly securePort?: number;
  /** Must match the ClusterPki's. @default "10.96.0.0/12" */
  readonly serviceCidr?: string;
  /** @default "cluster.local" */
  readonly clusterDomain?: string;
  /**
   * How long the balancer takes to stop sending new connections to an apiserver whose
   * /readyz fails (HAProxy: interval x fall; NLB: interval x unhealthy threshold).
   * @default 3
   */
  readonly balancerDetectionSeconds?: number;
  /**
   * How long a stopping apiserver keeps serving after /readyz turns red; must exceed
   * `balancerDetectionSeconds` so the balancer stops using it before it closes.
   * @default balancerDetectionSeconds + 5
   */
  readonly shutdownDelayDurationSeconds?: number;
  /** @default { maxAgeDays: 30, maxBackups: 10, maxSizeMb: 100 } (the CIS Kubernetes Benchmark's minimums) */
  readonly audit?: { readonly maxAgeDays?: number; readonly maxBackups?: number; readonly maxSizeMb?: number };
  /** Extra or overriding kube-apiserver flags (name without "--"). @default {} */
  readonly extraFlags?: Readonly<Record<string, string>>;
  /** How long the readiness gate waits for every /readyz. @default 300 */
  readonly readyTimeoutSeconds?: number;
  /**
   * Which etcd members an apiserver talks to. "local": only the member on its own host
   * (stacked topology, as kubeadm does): losing another machine never leaves an
   * apiserver with requests or watches stuck on an unreachable member, and an apiserver
   * whose member is down fails /readyz, so the balancer stops using it. "cluster": every
   * member (external topology).
   * @default "local" when every apiserver host runs an etcd member, else "cluster"
   */
  readonly etcdAccess?: "local" | "cluster";
  /** Other resources every apiserver step waits for (an etcd restore's end). */
  readonly after?: readonly pulumi.Resource[];
  /**
   * The Secrets encryption keys (secretbox, 32 random bytes each, made once and kept as
   * secrets in the state), by name, oldest first, and the one that encrypts. Rotation is
   * three `pulumi up`s: add a key (`keys: ["key1", "key2"]`), make it active
   * (`active: "key2"`: after the last apiserver restarted, every Secret is rewritten and
   * checked in etcd), drop the old one (`keys: ["key2"]`). A preview refuses a step out of
   * that order, and a drop while a Secret in etcd still uses the key.
   * @default { keys: ["key1"], active: the first key }
   */
  readonly secretsEncryption?: { readonly keys?: readonly string[]; readonly active?: string };
  /** On a local stack, the bridge the hosts are reached through when a preview looks at etcd. */
  readonly network?: ObservedNetwork;
}

/**
 * kube-apiserver on every host: etcd over TLS, Node and RBAC authorization, one
 * service-account key pair everywhere, Secrets encrypted at rest with a generated key,
 * audit log, anonymous access only to health endpoints, and a graceful shutdown longer
 * than the balancer's detection time. `ready` completes when every /readyz answers and
 * the `kubernetes` Service's EndpointSlice lists every apiserver.
 */
export class ApiServerPool extends pulumi.ComponentResource {
  public readonly ready: pulumi.Resource;
  public readonly securePort: number;
  public readonly kubernetesVersion: string;
  /** `address:port` of every apiserver (the balancer's backends). */
  public readonly backends: pulumi.Output<string[]>;
  public readonly hosts: readonly Host[];
  public readonly binaries: BinaryPlan;
  /** The Secrets encryption keys, as resolved. */
  public readonly encryptionKeys: { readonly keys: readonly string[]; readonly active: string };
  /** Completes when every Secret in etcd is encrypted with the active key. */
  public readonly secretsEncrypted: pulumi.Resource;

  constructor(name: string, args: ApiServerPoolArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:ApiServerPool", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    this.hosts = args.hosts;
    this.kubernetesVersion = requireVersion(
      this,
      "kubernetesVersion",
      args.kubernetesVersion ?? DEFAULT_KUBERNETES_VERSION,
      parseVersion(MINIMUM_KUBERNETES_VERSION),
    ).text;
    this.securePort = requireInteger(this, "securePort", args.securePort ?? 6443, 1, 65535);
    const serviceCidr = requireCidr(this, "serviceCidr", args.serviceCidr ?? "10.96.0.0/12");
    const clusterDomain = args.clusterDomain ?? "cluster.local";
    if (!isDnsName(clusterDomain)) {
      invalid(this, "clusterDomain", clusterDomain, 'a DNS domain such as "cluster.local"');
    }
    const detection = requireInteger(this, "balancerDetectionSeconds", args.balancerDetectionSeconds ?? 3, 0, 600);
    const shutdownDelay = requireInteger(this, "shutdownDelayDurationSeconds", args.shutdownDelayDurationSeconds ?? detection + 5, 0, 600);
    if (shutdownDelay <= detection) {
      invalid(
        this,
        "shutdownDelayDurationSeconds",
        shutdownDelay,
        `more than balancerDetectionSeconds (${detection}), so the balancer stops using a stopping apiserver before it closes`,
      );
    }
    const audit = {
      maxAgeDays: requireInteger(this, "audit.maxAgeDays", args.audit?.maxAgeDays ?? 30, 1, 3650),
      maxBackups: requireInteger(this, "audit.maxBackups", args.audit?.maxBackups ?? 10, 1, 1000),
      maxSizeMb: requireInteger(this, "audit.maxSizeMb", args.audit?.maxSizeMb ?? 100, 1, 100000),
    };
    for (const flag of Object.keys(args.extraFlags ?? {})) {
      if (FORBIDDEN_FLAGS.includes(flag) || !/^[a-z][a-z0-9-]*$/.test(flag)) {
        invalid(this, `extraFlags.${flag}`, args.extraFlags![flag], `a flag name without "--", other than ${FORBIDDEN_FLAGS.join(", ")}`);
      }
      if (/[\s"'\\]/.test(args.extraFlags![flag]) || args.extraFlags![flag] === "") {
        invalid(this, `extraFlags.${flag}`, args.extraFlags![flag], "a non-empty value without spaces or quotes");
      }
    }
    const readyAttempts = Math.ceil(requireInteger(this, "readyTimeoutSeconds", args.readyTimeoutSeconds ?? 300, 10, 3600) / 2);
    this.binaries = planBinaries(this, "binaries", "kubernetes", this.kubernetesVersion, ["kube-apiserver", "kubectl"], args.binaries ?? defaultBinarySource);

    // Each key: 32 random bytes made once on the machine running Pulumi, kept as a secret
    // in state. The first key keeps the name it had before rotations existed. An update of
    // the command (its script or options changed) keeps the key (KEEP_ENCRYPTION_KEY).
    const ring = resolveKeyRing(this, "secretsEncryption", args.secretsEncryption);
    this.encryptionKeys = ring;
    const keyMaterial = ring.keys.map(
      (k) =>
        new command.local.Command(
          k === "key1" ? `${name}-encryption-key` : `${name}-encryption-key-${k}`,
          { create: "head -c 32 /dev/urandom | base64 -w0", update: KEEP_ENCRYPTION_KEY, logging: "none" },
          // Retained on delete: a removal from the program (a rename without aliases, a
          // rotation's drop) never runs anything for it (it has no delete script either).
          { parent: this, additionalSecretOutputs: ["stdout"], retainOnDelete: true },
        ),
    );
    // The active key first (it encrypts), then the others, oldest first (they decrypt).
    const order = [ring.active, ...ring.keys.filter((k) => k !== ring.active)];
    const encryptionFile = pulumi.secret(
      pulumi
        .all(keyMaterial.map((c) => c.stdout))
        .apply((secrets) => encryptionConfig(order.map((k) => ({ name: k, secret: secrets[ring.keys.indexOf(k)].trim() })))),
    );
    const keyRing = new KeyRing(
      `${name}-encryption-keys`,
      {
        argument: "secretsEncryption",
        what: "the Secrets encryption key",
        spec: ring,
        usage: { connection: args.etcd.hosts[0].connection, network: args.network, script: secretKeyUsageScript(args.etcd.clientPort) },
      },
      { parent: this },
    );

    const etcdMembers = new Set(args.etcd.memberNames);
    const stacked = args.hosts.every((h) => etcdMembers.has(h.name));
    const etcdAccess = args.etcdAccess ?? (stacked ? "local" : "cluster");
    if (etcdAccess !== "local" && etcdAccess !== "cluster") {
      invalid(this, "etcdAccess", etcdAccess, '"local" or "cluster"');
    }
    if (etcdAccess === "local" && !stacked) {
      const missing = args.hosts.find((h) => !etcdMembers.has(h.name))!;
      invalid(this, "etcdAccess", etcdAccess, `"cluster": host ${missing.name} runs no etcd member`);
    }
    const localEtcd = [`https://127.0.0.1:${args.etcd.clientPort}`];
    const settings = args.etcd.clientEndpoints.apply(
      (clusterEndpoints): Omit<ApiServerSettings, "etcdServers"> & { clusterEndpoints: string[] } => ({
        securePort: this.securePort,
        clusterEndpoints,
        serviceCidr: serviceCidr.text,
        serviceAccountIssuer: `https://kubernetes.default.svc.${clusterDomain}`,
        serviceAccountTokenMaxSeconds: args.pki.serviceAccountKeys.tokenMaxSeconds,
        shutdownDelayDurationSeconds: shutdownDelay,
        audit,
        extraFlags: args.extraFlags,
      }),
    );
    const pki = args.pki;
    for (const host of args.hosts) {
      if (!pki.apiServerServing[host.name]) {
        invalid(this, "pki", host.name, "a ClusterPki whose controlPlaneHosts include every apiserver host");
      }
    }
    const sharedFiles: StepFile[] = [
      { path: `${K8S_PKI}/ca.crt`, mode: "0600", secret: false, content: pki.clusterCaBundle },
      { path: `${K8S_PKI}/etcd-ca.crt`, mode: "0600", secret: false, content: pki.etcdCaBundle },
      { path: `${K8S_PKI}/apiserver-etcd-client.crt`, mode: "0600", secret: false, content: pki.apiServerEtcdClient.certPem },
      { path: `${K8S_PKI}/apiserver-etcd-client.key`, mode: "0600", content: pki.apiServerEtcdClient.keyPem },
      { path: `${K8S_PKI}/apiserver-kubelet-client.crt`, mode: "0600", secret: false, content: pki.apiServerKubeletClient.certPem },
      { path: `${K8S_PKI}/apiserver-kubelet-client.key`, mode: "0600", content: pki.apiServerKubeletClient.keyPem },
      { path: `${K8S_PKI}/front-proxy-ca.crt`, mode: "0600", secret: false, content: pki.frontProxyCaBundle },
      { path: `${K8S_PKI}/front-proxy-client.crt`, mode: "0600", secret: false, content: pki.frontProxyClient.certPem },
      { path: `${K8S_PKI}/front-proxy-client.key`, mode: "0600", content: pki.frontProxyClient.keyPem },
      { path: `${K8S_PKI}/sa.pub`, mode: "0600", secret: false, content: pki.serviceAccount.publicKeyPem },
      { path: `${K8S_PKI}/sa.key`, mode: "0600", content: pki.serviceAccount.privateKeyPem },
      { path: ENCRYPTION_CONFIG, mode: "0600", content: encryptionFile },
      { path: AUDIT_POLICY, mode: "0600", secret: false, content: auditPolicy() },
      { path: AUTHENTICATION_CONFIG, mode: "0600", secret: false, content: authenticationConfig() },
      { path: ADMISSION_CONFIG, mode: "0600", secret: false, content: admissionConfig() },
    ];

    // Chained like etcd: an update restarts one apiserver at a time and waits for it.
    let previous: pulumi.Resource | undefined;
    const steps = args.hosts.map((host) => {
      const binaries = installBinaries(`${name}-${host.name}-binaries`, host, "apiserver", this.binaries, { parent: this });
      const step = hostStep(
        `${name}-${host.name}`,
        {
          host,
          files: [
            ...sharedFiles,
            { path: `${K8S_PKI}/apiserver.crt`, mode: "0600", secret: false, content: pki.apiServerServing[host.name].certPem },
            { path: `${K8S_PKI}/apiserver.key`, mode: "0600", content: pki.apiServerServing[host.name].keyPem },
            {
              path: "/etc/systemd/system/kube-apiserver.service",
              mode: "0600",
              secret: false,
              content: pulumi
                .all([host.address, settings])
                .apply(([address, { clusterEndpoints, ...s }]) =>
                  apiServerUnit(address, { ...s, etcdServers: etcdAccess === "local" ? localEtcd : clusterEndpoints }),
                ),
            },
          ],
          create: apiServerCreateScript,
          update: apiServerUpdateScript(this.securePort, readyAttempts, detection + 2),
          delete: apiServerDeleteScript,
          identity: [`binaries ${this.binaries.identity}`],
          component: { name: "apiserver", units: ["kube-apiserver.service"] },
        },
        { parent: this, dependsOn: [args.etcd.ready, keyRing, binaries, ...(previous ? [previous] : []), ...(args.after ?? [])] },
      );
      previous = step;
      return step;
    });

    const addresses = pulumi.all(args.hosts.map((h) => h.address));
    this.backends = addresses.apply((as) => as.map((a) => `${a}:${this.securePort}`));
    this.ready = gateStep(
      `${name}-ready`,
      { host: args.hosts[0], script: addresses.apply((as) => apiServerGateScript(as, this.securePort, readyAttempts)), guards: steps },
      { parent: this },
    );
    // Once every apiserver encrypts with the active key: every Secret rewritten with it, then
    // checked in etcd. Runs when the active key changes (and once on creation).
    const rewrite = onceStep(
      `${name}-rewrite-secrets`,
      {
        host: args.hosts[0],
        files: [{ path: REWRITE_KUBECONFIG, mode: "0600", content: pki.kubeconfig(pki.adminClient, "hakube-admin", `https://127.0.0.1:${this.securePort}`) }],
        create: rewriteSecretsScript(REWRITE_KUBECONFIG, ring.active),
        triggers: [`secrets encrypted with ${ring.active}`],
      },
      { parent: this, dependsOn: [this.ready] },
    );
    this.secretsEncrypted = onceStep(
      `${name}-secrets-encrypted`,
      { host: args.etcd.hosts[0], create: secretsEncryptedGateScript(args.etcd.clientPort, ring.active), triggers: [`secrets encrypted with ${ring.active}`] },
      { parent: this, dependsOn: [rewrite] },
    );
    this.registerOutputs({ backends: this.backends, kubernetesVersion: this.kubernetesVersion });
  }
}
