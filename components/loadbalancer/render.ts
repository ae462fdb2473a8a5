// HAProxy and keepalived rendering (pure).
import { OPENSSL_CIPHERS } from "../tls";

export interface HealthCheck {
  /** @default 500 */
  readonly intervalMs?: number;
  /** Failed checks before a backend is marked down. @default 2 */
  readonly fall?: number;
  /** Passed checks before a backend is marked up. @default 2 */
  readonly rise?: number;
}

export const defaultHealthCheck: Required<HealthCheck> = { intervalMs: 500, fall: 2, rise: 2 };

/** Worst-case seconds for HAProxy to stop using an apiserver whose /readyz fails. */
export function haproxyDetectionSeconds(check: HealthCheck | undefined): number {
  const c = { ...defaultHealthCheck, ...(check ?? {}) };
  return Math.ceil((c.intervalMs * c.fall) / 1000);
}

export const HAPROXY_CA = "/etc/hakube/haproxy/ca.crt";
/**
 * What HAProxy asks each apiserver in turn: `ready`, every readiness check but `shutdown`
 * (failing, the apiserver is marked down); then `stopping`, every check (failing while
 * `ready` passes: only `shutdown` fails, and the apiserver gets no new connection but keeps
 * the ones it has). Both are paths anonymous requests may ask for (`/readyz/shutdown` is not).
 */
export const READYZ_PATHS = { ready: "/readyz?exclude=shutdown", stopping: "/readyz" } as const;
export const HAPROXY_MONITOR_PATH = "/hakube-healthz";
export const KEEPALIVED_CHECK = "/etc/keepalived/hakube-check-haproxy.sh";
/** The backend keepalived's check counts: apiservers that answer TLS, ready or not. */
export const ALIVE_BACKEND = "kube-apiservers-alive";

export interface HaproxySettings {
  readonly port: number;
  readonly monitorPort: number;
  readonly backends: readonly { readonly name: string; readonly address: string; readonly port: number }[];
  readonly healthCheck: Required<HealthCheck>;
  /** Close client connections to a backend once it is marked down. */
  readonly shutdownSessionsOnDown: boolean;
  /**
   * Time to connect to an apiserver before trying another (every retry redispatches):
   * a machine that vanished costs a client this long, not a failed request.
   */
  readonly connectTimeoutMs: number;
  /** HAProxy's own config check needs a CA file path that exists; tests point it elsewhere. */
  readonly caFile?: string;
}

export function renderHaproxyConfig(s: HaproxySettings): string {
  const c = s.healthCheck;
  // Both backends check over TLS against the cluster CA at the same pace; the /readyz one
  // also checks faster while a server changes state, and closes sessions when it goes down.
  const checks = (extra: readonly string[]) =>
    ["check", "check-ssl", "verify required", `ca-file ${s.caFile ?? HAPROXY_CA}`, `inter ${c.intervalMs}ms`, ...extra, `fall ${c.fall}`, `rise ${c.rise}`].join(" ");
  const serverOptions = [
    checks([`fastinter ${Math.max(100, Math.floor(c.intervalMs / 2))}ms`, `downinter ${c.intervalMs}ms`]),
    ...(s.shutdownSessionsOnDown ? ["on-marked-down shutdown-sessions"] : []),
  ].join(" ");
  const aliveOptions = checks([]);
  return [
    "# Managed by hakube; changes are overwritten by the next `pulumi up`.",
    "global",
    "  log /dev/log local0 notice",
    "  maxconn 4000",
    "  stats socket /run/haproxy/admin.sock mode 600 level admin",
    "  user haproxy",
    "  group haproxy",
    // HAProxy's own TLS (its health checks of the apiservers): TLS 1.2 or newer, AEAD ciphers.
    "  ssl-server-verify required",
    "  ssl-default-server-options ssl-min-ver TLSv1.2",
    `  ssl-default-server-ciphers ${OPENSSL_CIPHERS.join(":")}`,
    "",
    "defaults",
    "  mode tcp",
    "  log global",
    "  option tcplog",
    "  option dontlognull",
    `  timeout connect ${s.connectTimeoutMs}ms`,
    "  timeout client 1h",
    "  timeout server 1h",
    "  timeout check 2s",
    "  retries 3",
    "  option redispatch 1",
    "",
    // keepalived asks this: is HAProxy up and does some apiserver answer TLS at all? Not
    // whether one is ready: when none is ready anywhere (etcd electing a leader), moving
    // the VIP helps no one and taking it away everywhere only adds VRRP's time to the outage.
    "frontend hakube-monitor",
    "  mode http",
    `  bind 127.0.0.1:${s.monitorPort}`,
    `  monitor-uri ${HAPROXY_MONITOR_PATH}`,
    `  monitor fail if { nbsrv(${ALIVE_BACKEND}) lt 1 }`,
    "",
    "frontend kube-apiserver",
    `  bind :${s.port}`,
    "  default_backend kube-apiservers",
    "",
    "backend kube-apiservers",
    "  balance roundrobin",
    "  option httpchk",
    // Two checks in turn, each on its own connection (HAProxy's checks do not keep a
    // connection alive). First every readiness check but `shutdown`: a failure (etcd's
    // among them) marks the apiserver down after `fall` checks, and shutdown-sessions then
    // closes its connections. Then every check: failing now means `shutdown` fails, i.e. an
    // apiserver that was told to stop and still serves through --shutdown-delay-duration;
    // HAProxy then takes it out of the rotation at once without marking it down (NOLB, as
    // `disable-on-404` would): no new connection goes to it, the ones it holds finish their
    // requests. It is marked down only when it closes its listener (the first check's
    // connection is refused), after it ended its connections with an HTTP/2 GOAWAY, so
    // shutdown-sessions cuts no request in flight.
    "  http-check connect default",
    `  http-check send meth GET uri ${READYZ_PATHS.ready} ver HTTP/1.1 hdr Host kubernetes`,
    "  http-check expect status 200",
    "  http-check connect default",
    `  http-check send meth GET uri ${READYZ_PATHS.stopping} ver HTTP/1.1 hdr Host kubernetes`,
    "  http-check expect status 200 error-status L7OKC",
    `  default-server ${serverOptions}`,
    ...s.backends.map((b) => `  server ${b.name} ${b.address}:${b.port}`),
    "",
    // Only checked, never sent to: a TLS handshake with a certificate of the cluster CA.
    `backend ${ALIVE_BACKEND}`,
    `  default-server ${aliveOptions}`,
    ...s.backends.map((b) => `  server ${b.name} ${b.address}:${b.port}`),
    "",
  ].join("\n");
}

export interface KeepalivedSettings {
  readonly routerId: string;
  readonly interface: string;
  readonly virtualRouterId: number;
  readonly priority: number;
  readonly advertIntervalSeconds: number;
  readonly preempt: boolean;
  readonly selfAddress: string;
  readonly peerAddresses: readonly string[];
  readonly virtualIp: string;
  readonly virtualIpPrefixLength: number;
  readonly checkScript?: string;
}

export function renderKeepalivedConfig(s: KeepalivedSettings): string {
  return [
    "# Managed by hakube; changes are overwritten by the next `pulumi up`.",
    "global_defs {",
    `  router_id ${s.routerId}`,
    "  vrrp_version 3",
    "  enable_script_security",
    "  script_user root",
    // While it holds the VIP, re-announce it every second: a neighbour whose ARP entry
    // still points at another machine (the lost holder, or a backup that was master for a
    // moment when two took over at once) learns the holder within a second.
    "  vrrp_garp_master_refresh 1",
    "  vrrp_garp_master_refresh_repeat 1",
    // A master stepping down for a higher priority first sends one advert, so the winner
    // re-sends its gratuitous ARPs after the loser's last ones.
    "  vrrp_higher_prio_send_advert true",
    "}",
    "",
    "vrrp_script hakube_haproxy {",
    `  script "${s.checkScript ?? KEEPALIVED_CHECK}"`,
    "  interval 1",
    "  timeout 2",
    "  fall 2",
    "  rise 2",
    "}",
    "",
    "vrrp_instance hakube_api {",
    "  state BACKUP",
    `  interface ${s.interface}`,
    `  virtual_router_id ${s.virtualRouterId}`,
    `  priority ${s.priority}`,
    `  advert_int ${s.advertIntervalSeconds}`,
    ...(s.preempt ? [] : ["  nopreempt"]),
    `  unicast_src_ip ${s.selfAddress}`,
    // VRRPv3 has no authentication: keepalived would act on an advert from any address
    // (a worker, a pod), and a higher priority takes the VIP. It takes adverts only from
    // the other balancer hosts, and only with the TTL 255 they are sent with: one that
    // crossed a router (a pod's, forwarded by its node) arrives with less.
    "  check_unicast_src",
    "  unicast_peer {",
    ...s.peerAddresses.map((p) => `    ${p} min_ttl 255`),
    "  }",
    "  virtual_ipaddress {",
    `    ${s.virtualIp}/${s.virtualIpPrefixLength} dev ${s.interface}`,
    "  }",
    "  track_script {",
    "    hakube_haproxy",
    "  }",
    "}",
    "",
  ].join("\n");
}

/** keepalived gives up the VIP when HAProxy stops answering or reaches no apiserver at all. */
export function renderKeepalivedCheck(monitorPort: number): string {
  return [
    "#!/bin/sh",
    "# Managed by hakube: healthy when HAProxy answers and reaches at least one apiserver.",
    `exec curl --silent --fail --max-time 1 -o /dev/null http://127.0.0.1:${monitorPort}${HAPROXY_MONITOR_PATH}`,
    "",
  ].join("\n");
}

export const balancerCreateScript = `if ! command -v haproxy >/dev/null || ! command -v keepalived >/dev/null || ! command -v curl >/dev/null; then
  echo "hakube: installing haproxy, keepalived and curl"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq haproxy keepalived curl >/dev/null
fi
haproxy -c -q -f /etc/haproxy/haproxy.cfg
keepalived -t -f /etc/keepalived/keepalived.conf
systemctl enable haproxy.service keepalived.service >/dev/null 2>&1
if systemctl is-active --quiet haproxy.service; then systemctl reload haproxy.service; else systemctl restart haproxy.service; fi
if systemctl is-active --quiet keepalived.service; then systemctl reload keepalived.service; else systemctl restart keepalived.service; fi
echo "hakube: haproxy and keepalived running"`;

export const balancerDeleteScript = `systemctl disable --now keepalived.service haproxy.service`;

/** The gate: /readyz answers through the VIP (bounded wait). */
export function balancerGateScript(virtualIp: string, port: number, caPath: string, attempts: number): string {
  return `hakube_retry ${attempts} 1 "/readyz through ${virtualIp}:${port}" -- curl --silent --fail --max-time 3 --cacert ${caPath} https://${virtualIp}:${port}/readyz -o /dev/null
echo "hakube: API ready at https://${virtualIp}:${port}"`;
}
