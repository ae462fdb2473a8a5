import * as pulumi from "@pulumi/pulumi";
import { ApiEndpoint, endpointUrl, Host } from "../types";
import { ApiServerPool } from "../apiserver/apiServerPool";
import { ClusterPki } from "../pki/clusterPki";
import { K8S_PKI } from "../apiserver/render";
import { BinarySource } from "../binaries/source";
import { installBinaries, planBinaries } from "../binaries/install";
import { gateStep, hostStep } from "../remote/hostStep";
import {
  invalid,
  LeaderElectionTimings,
  requireCidr,
  requireHosts,
  requireInteger,
  resolveLeaderElection,
} from "../validation";
import {
  CM_KUBECONFIG,
  controllerManagerUnit,
  controllersCreateScript,
  controllersDeleteScript,
  controllersGateScript,
  controllersUpdateScript,
  SCHED_CONFIG,
  SCHED_KUBECONFIG,
  schedulerConfig,
  schedulerUnit,
} from "./render";

export interface LeaderElectedControllersArgs {
  /** Control-plane hosts; one controller-manager and one scheduler on each. */
  readonly hosts: readonly Host[];
  readonly pki: ClusterPki;
  /** The controllers start once these apiservers are ready. */
  readonly apiServers: ApiServerPool;
  /**
   * How the controllers reach the API: "local" (the apiserver on the same host) or
   * "balanced" (through `endpoint`).
   * @default "local"
   */
  readonly apiAccess?: "local" | "balanced";
  /** Required when apiAccess is "balanced". */
  readonly endpoint?: ApiEndpoint;
  /** Lease timings, shared by both. @default { leaseDurationSeconds: 15, renewDeadlineSeconds: 10, retryPeriodSeconds: 2 } */
  readonly leaderElection?: LeaderElectionTimings;
  /** Pod network. @default "10.244.0.0/16" */
  readonly podCidr?: string;
  /** @default "10.96.0.0/12" */
  readonly serviceCidr?: string;
  /** @default "hakube" */
  readonly clusterName?: string;
  /** @default the apiservers' binaries source */
  readonly binaries?: BinarySource;
  /** How long the gate waits for both Leases to have a holder. @default 180 */
  readonly readyTimeoutSeconds?: number;
}

/**
 * kube-controller-manager and kube-scheduler on every control-plane host; exactly one
 * of each is active at a time, through Lease-based leader election (the holder is
 * `spec.holderIdentity` of the Leases kube-system/kube-controller-manager and
 * kube-system/kube-scheduler).
 */
export class LeaderElectedControllers extends pulumi.ComponentResource {
  public readonly ready: pulumi.Resource;
  public readonly leaderElection: Required<LeaderElectionTimings>;

  constructor(name: string, args: LeaderElectedControllersArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:LeaderElectedControllers", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    this.leaderElection = resolveLeaderElection(this, "leaderElection", args.leaderElection);
    const apiAccess = args.apiAccess ?? "local";
    if (apiAccess !== "local" && apiAccess !== "balanced") {
      invalid(this, "apiAccess", apiAccess, '"local" or "balanced"');
    }
    if (apiAccess === "balanced" && !args.endpoint) {
      invalid(this, "endpoint", null, 'an ApiEndpoint (a load balancer) when apiAccess is "balanced"');
    }
    const apiServerNames = new Set(args.apiServers.hosts.map((h) => h.name));
    const missing = args.hosts.find((h) => !apiServerNames.has(h.name));
    if (missing) {
      invalid(this, "hosts", missing.name, "control-plane hosts that also run an apiserver of apiServers (binaries and the local API)");
    }
    const podCidr = requireCidr(this, "podCidr", args.podCidr ?? "10.244.0.0/16");
    const serviceCidr = requireCidr(this, "serviceCidr", args.serviceCidr ?? "10.96.0.0/12");
    const clusterName = args.clusterName ?? "hakube";
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(clusterName)) {
      invalid(this, "clusterName", clusterName, "a lowercase DNS label");
    }
    const readyAttempts = Math.ceil(requireInteger(this, "readyTimeoutSeconds", args.readyTimeoutSeconds ?? 180, 10, 3600) / 2);
    const plan = planBinaries(
      this,
      "binaries",
      "kubernetes",
      args.apiServers.kubernetesVersion,
      ["kube-controller-manager", "kube-scheduler"],
      args.binaries ?? args.apiServers.binaries.source,
    );
    const server =
      apiAccess === "balanced" ? endpointUrl(args.endpoint!) : pulumi.output(`https://127.0.0.1:${args.apiServers.securePort}`);
    const pki = args.pki;
    const cmKubeconfig = pki.kubeconfig(pki.controllerManagerClient, "system:kube-controller-manager", server, clusterName);
    const schedKubeconfig = pki.kubeconfig(pki.schedulerClient, "system:kube-scheduler", server, clusterName);
    const settings = {
      clusterName,
      podCidr: podCidr.text,
      serviceCidr: serviceCidr.text,
      leaderElection: this.leaderElection,
    };

    let previous: pulumi.Resource | undefined;
    const steps = args.hosts.map((host) => {
      // After every apiserver is ready: in an upgrade the version-skew policy wants the
      // apiservers on the new version before any controller-manager or scheduler.
      const binaries = installBinaries(`${name}-${host.name}-binaries`, host, "controllers", plan, {
        parent: this,
        dependsOn: [args.apiServers.ready],
      });
      const step = hostStep(
        `${name}-${host.name}`,
        {
          host,
          files: [
            { path: `${K8S_PKI}/ca.crt`, mode: "0600", secret: false, content: pki.clusterCaBundle },
            { path: `${K8S_PKI}/signing-ca.crt`, mode: "0600", secret: false, content: pki.clusterCa.certPem },
            { path: `${K8S_PKI}/ca.key`, mode: "0600", content: pki.clusterCa.keyPem },
            { path: `${K8S_PKI}/sa.key`, mode: "0600", content: pki.serviceAccount.privateKeyPem },
            { path: `${K8S_PKI}/front-proxy-ca.crt`, mode: "0600", secret: false, content: pki.frontProxyCaBundle },
            { path: CM_KUBECONFIG, mode: "0600", content: cmKubeconfig },
            { path: SCHED_KUBECONFIG, mode: "0600", content: schedKubeconfig },
            { path: SCHED_CONFIG, mode: "0600", secret: false, content: schedulerConfig(this.leaderElection) },
            { path: "/etc/systemd/system/kube-controller-manager.service", mode: "0600", secret: false, content: controllerManagerUnit(settings) },
            { path: "/etc/systemd/system/kube-scheduler.service", mode: "0600", secret: false, content: schedulerUnit() },
          ],
          create: controllersCreateScript,
          update: controllersUpdateScript(readyAttempts),
          delete: controllersDeleteScript,
          identity: [`binaries ${plan.identity}`],
          component: { name: "controllers", units: ["kube-controller-manager.service", "kube-scheduler.service"] },
        },
        {
          parent: this,
          dependsOn: [
            args.apiServers.ready,
            binaries,
            ...(apiAccess === "balanced" && args.endpoint?.ready ? [args.endpoint.ready] : []),
            ...(previous ? [previous] : []),
          ],
        },
      );
      previous = step;
      return step;
    });

    this.ready = gateStep(
      `${name}-ready`,
      { host: args.hosts[0], script: controllersGateScript(readyAttempts), guards: steps },
      { parent: this },
    );
    this.registerOutputs({ leaderElection: this.leaderElection });
  }
}
