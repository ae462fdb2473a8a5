import * as pulumi from "@pulumi/pulumi";
import { ApiEndpoint, Host } from "../types";
import { ApiServerPool } from "../apiserver/apiServerPool";
import { ClusterPki } from "../pki/clusterPki";
import { gateStep, hostStep } from "../remote/hostStep";
import { isIpv4 } from "../net";
import { ObservedNetwork } from "../observe/ssh";
import { BalancerPeers } from "./peers";
import { invalid, knownValue, requireHosts, requireInteger, requireNumber } from "../validation";
import {
  balancerCreateScript,
  balancerDeleteScript,
  balancerGateScript,
  defaultHealthCheck,
  HAPROXY_CA,
  haproxyDetectionSeconds,
  HealthCheck,
  KEEPALIVED_CHECK,
  renderHaproxyConfig,
  renderKeepalivedCheck,
  renderKeepalivedConfig,
} from "./render";

export interface KeepalivedLoadBalancerArgs {
  /**
   * Hosts running keepalived and HAProxy: hosts of their own, or the control-plane hosts. At
   * least 2, on one network segment: each takes VRRP adverts only from the others, sent to it
   * directly (TTL 255).
   */
  readonly hosts: readonly Host[];
  /** The apiservers HAProxy forwards to. */
  readonly apiServers: ApiServerPool;
  /** HAProxy verifies the apiservers' certificates against the cluster CA. */
  readonly pki: ClusterPki;
  /** The virtual IP, on the hosts' subnet, not any host's address. */
  readonly virtualIp: string;
  /** @default 32 */
  readonly virtualIpPrefixLength?: number;
  /**
   * Port HAProxy listens on (all addresses, including the VIP).
   * @default 6443, or 8443 when the balancer shares hosts with the apiservers
   */
  readonly port?: number;
  /** @default "eth0" */
  readonly interface?: string;
  /** VRRP router id, unique on the network segment. @default 51 */
  readonly virtualRouterId?: number;
  /**
   * VRRP advertisement interval (VRRPv3 accepts fractions). A backup takes the VIP after
   * about 3 intervals without adverts. @default 0.5
   */
  readonly advertIntervalSeconds?: number;
  /** One per host, distinct, 1-254; the highest takes the VIP first. @default 150, 140, 130, ... */
  readonly priorities?: readonly number[];
  /** Let a returning higher-priority host take the VIP back (one more failover). @default false */
  readonly preempt?: boolean;
  /** HAProxy's HTTPS check of each apiserver's /readyz. @default { intervalMs: 500, fall: 2, rise: 2 } */
  readonly healthCheck?: HealthCheck;
  /** Close client connections to an apiserver once it is marked down. @default true */
  readonly shutdownSessionsOnDown?: boolean;
  /** HAProxy's connect timeout to an apiserver before it retries on another. @default 500 */
  readonly connectTimeoutMs?: number;
  /** Local port of HAProxy's monitor endpoint keepalived tracks. @default 8404 */
  readonly monitorPort?: number;
  /** How long the gate waits for /readyz through the VIP. @default 120 */
  readonly readyTimeoutSeconds?: number;
  /**
   * On a local stack, the bridge the hosts are reached through: a host leaving the balancers
   * is told to stop keepalived over SSH only while it carries their subnet.
   */
  readonly network?: ObservedNetwork;
}

/**
 * One stable API endpoint on bare metal: a virtual IP held by keepalived (VRRP over
 * unicast) and HAProxy on every balancer host forwarding TCP to every apiserver that
 * passes an HTTPS check of /readyz. keepalived drops the VIP where HAProxy is unhealthy.
 */
export class KeepalivedLoadBalancer extends pulumi.ComponentResource implements ApiEndpoint {
  public readonly endpoint: pulumi.Output<string>;
  public readonly port: pulumi.Output<number>;
  /** Worst-case seconds for HAProxy to stop using a failing apiserver. */
  public readonly detectionTimeSeconds: number;
  /** Completes when /readyz answers through the VIP. */
  public readonly ready: pulumi.Resource;

  constructor(name: string, args: KeepalivedLoadBalancerArgs, opts?: pulumi.ComponentResourceOptions) {
    super("hakube:index:KeepalivedLoadBalancer", name, {}, opts);
    requireHosts(this, "hosts", args.hosts);
    if (args.hosts.length < 2) {
      invalid(this, "hosts", `${args.hosts.length} host(s)`, "at least 2 balancer hosts (one is a single point of failure)");
    }
    if (!isIpv4(args.virtualIp ?? "")) {
      invalid(this, "virtualIp", args.virtualIp, "an IPv4 address");
    }
    for (const host of [...args.hosts, ...args.apiServers.hosts]) {
      if (knownValue(host.address) === args.virtualIp) {
        invalid(this, "virtualIp", args.virtualIp, `an address no host uses (it is ${host.name}'s address)`);
      }
    }
    const apiServerHostNames = new Set(args.apiServers.hosts.map((h) => h.name));
    const shared = args.hosts.some((h) => apiServerHostNames.has(h.name));
    const port = requireInteger(this, "port", args.port ?? (shared ? 8443 : 6443), 1, 65535);
    if (shared && port === args.apiServers.securePort) {
      invalid(this, "port", port, `a port other than the apiservers' (${args.apiServers.securePort}) when the balancer shares their hosts`);
    }
    const monitorPort = requireInteger(this, "monitorPort", args.monitorPort ?? 8404, 1, 65535);
    if (monitorPort === port || (shared && monitorPort === args.apiServers.securePort)) {
      invalid(this, "monitorPort", monitorPort, "a port not used by HAProxy's frontend or the apiservers");
    }
    const prefix = requireInteger(this, "virtualIpPrefixLength", args.virtualIpPrefixLength ?? 32, 8, 32);
    const iface = args.interface ?? "eth0";
    if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(iface)) {
      invalid(this, "interface", iface, "a network interface name such as eth0");
    }
    const routerId = requireInteger(this, "virtualRouterId", args.virtualRouterId ?? 51, 1, 255);
    const advert = requireNumber(this, "advertIntervalSeconds", args.advertIntervalSeconds ?? 0.5, 0.01, 40.95);
    if (Math.round(advert * 100) !== advert * 100) {
      invalid(this, "advertIntervalSeconds", advert, "a multiple of 0.01 s (VRRPv3 centiseconds)");
    }
    const priorities = args.priorities ?? args.hosts.map((_, i) => 150 - 10 * i);
    if (priorities.length !== args.hosts.length) {
      invalid(this, "priorities", priorities, `one priority per host (${args.hosts.length})`);
    }
    priorities.forEach((p, i) => requireInteger(this, `priorities[${i}]`, p, 1, 254));
    if (new Set(priorities).size !== priorities.length) {
      invalid(this, "priorities", priorities, "distinct priorities");
    }
    const healthCheck = { ...defaultHealthCheck, ...(args.healthCheck ?? {}) };
    requireInteger(this, "healthCheck.intervalMs", healthCheck.intervalMs, 100, 60000);
    requireInteger(this, "healthCheck.fall", healthCheck.fall, 1, 100);
    requireInteger(this, "healthCheck.rise", healthCheck.rise, 1, 100);
    const readyAttempts = requireInteger(this, "readyTimeoutSeconds", args.readyTimeoutSeconds ?? 120, 5, 3600);
    const connectTimeoutMs = requireInteger(this, "connectTimeoutMs", args.connectTimeoutMs ?? 500, 10, 60000);
    this.detectionTimeSeconds = haproxyDetectionSeconds(healthCheck);

    const backendHosts = args.apiServers.hosts;
    const backends = pulumi
      .all(backendHosts.map((h) => h.address))
      .apply((as) => backendHosts.map((h, i) => ({ name: h.name, address: as[i], port: args.apiServers.securePort })));
    const haproxyConfig = backends.apply((bs) =>
      renderHaproxyConfig({
        port,
        monitorPort,
        backends: bs,
        healthCheck,
        shutdownSessionsOnDown: args.shutdownSessionsOnDown ?? true,
        connectTimeoutMs,
      }),
    );
    const addresses = pulumi.all(args.hosts.map((h) => h.address));
    // A host leaving the set stops keepalived before the staying hosts drop it from their
    // peers (./peers.ts: otherwise it takes the VIP too until its step is deleted).
    const peers = new BalancerPeers(`${name}-peers`, { hosts: args.hosts, network: args.network }, { parent: this });

    const steps = args.hosts.map((host, i) =>
      hostStep(
        `${name}-${host.name}`,
        {
          host,
          files: [
            { path: HAPROXY_CA, mode: "0644", content: args.pki.clusterCaBundle },
            { path: "/etc/haproxy/haproxy.cfg", mode: "0644", content: haproxyConfig },
            { path: KEEPALIVED_CHECK, mode: "0755", content: renderKeepalivedCheck(monitorPort) },
            {
              path: "/etc/keepalived/keepalived.conf",
              mode: "0644",
              content: addresses.apply((as) =>
                renderKeepalivedConfig({
                  routerId: host.name,
                  interface: iface,
                  virtualRouterId: routerId,
                  priority: priorities[i],
                  advertIntervalSeconds: advert,
                  preempt: args.preempt ?? false,
                  selfAddress: as[i],
                  peerAddresses: as.filter((_, j) => j !== i),
                  virtualIp: args.virtualIp,
                  virtualIpPrefixLength: prefix,
                }),
              ),
            },
          ],
          create: balancerCreateScript,
          delete: balancerDeleteScript,
          component: { name: "balancer", units: ["haproxy.service", "keepalived.service"] },
        },
        { parent: this, dependsOn: [peers] },
      ),
    );

    this.ready = gateStep(
      `${name}-ready`,
      { host: args.hosts[0], script: balancerGateScript(args.virtualIp, port, HAPROXY_CA, readyAttempts), guards: steps, after: [args.apiServers.ready] },
      { parent: this },
    );
    this.endpoint = pulumi.output(args.virtualIp);
    this.port = pulumi.output(port);
    this.registerOutputs({ endpoint: this.endpoint, port: this.port });
  }
}
