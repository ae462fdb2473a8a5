// TCP settings of a control-plane host. A connection that outlived a network partition
// (no reset: the link was only down) keeps doubling its retransmission timeout while the
// partition lasts: 0.2, 0.4, ... 12.8 s. Once the partition heals, nothing goes through it
// until the next retransmission, and etcd does not notice (its writes go into the socket
// buffer). If the etcd leader is lost in that time, the two survivors' votes sit in such a
// connection and no leader is elected: measured, a 24 s outage (docs/design/first-machine-loss.md).
// Capping the retransmission timeout at 1 s makes a healed link carry traffic again within
// a second. Linux 6.15 and later have the cap (`net.ipv4.tcp_rto_max_ms`, per network
// namespace); older kernels drop such a connection sooner instead (`tcp_retries2`), so etcd
// dials a new one.
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { Host } from "../types";
import { hostStep } from "../remote/hostStep";
import { quote } from "../remote/shell";

export interface HostNetworkSettings {
  /** `net.ipv4.tcp_rto_max_ms` (1000-120000, the kernel's range). */
  readonly tcpRtoMaxMs: number;
  /** `net.ipv4.tcp_retries2` on kernels without the cap (Linux < 6.15). */
  readonly fallbackTcpRetries2: number;
}

export const defaultHostNetwork: HostNetworkSettings = { tcpRtoMaxMs: 1000, fallbackTcpRetries2: 5 };

export const HOST_NETWORK_SCRIPT = "/usr/local/sbin/hakube-host-network";
export const HOST_NETWORK_UNIT = "hakube-host-network.service";

/**
 * The script that applies the settings, at every boot (its unit) and from the step. It
 * writes /proc/sys itself rather than through sysctl.d: systemd-sysctl skips containers
 * whose /proc/sys is read-only even when /proc/sys/net is writable.
 */
export function renderHostNetworkScript(s: HostNetworkSettings): string {
  return `#!/bin/bash
# Managed by hakube; changes are overwritten by the next \`pulumi up\`.
# Caps TCP's retransmission timeout, so a connection that outlived a network partition
# carries traffic again soon after the partition heals (etcd's votes travel in them).
set -u
sys=\${HAKUBE_PROC_SYS:-/proc/sys}
hakube_sysctl() {
  local key=$1 value=$2 path=$sys/\${1//.//}
  if [ "$(cat "$path")" != "$value" ] && ! printf '%s\\n' "$value" 2>/dev/null > "$path"; then
    echo "hakube: cannot set $key to $value: $path is read-only (a container without a writable /proc/sys/net?)" >&2
    return 1
  fi
  echo "hakube: $key = $(cat "$path")"
}
if [ -e "$sys/net/ipv4/tcp_rto_max_ms" ]; then
  hakube_sysctl net.ipv4.tcp_rto_max_ms ${quote(s.tcpRtoMaxMs)}
else
  echo "hakube: this kernel has no net.ipv4.tcp_rto_max_ms (Linux < 6.15): stalled connections are dropped sooner instead"
  hakube_sysctl net.ipv4.tcp_retries2 ${quote(s.fallbackTcpRetries2)}
fi
`;
}

/** Runs the script at boot, before the control-plane services open their connections. */
export function renderHostNetworkUnit(): string {
  return `# Managed by hakube; changes are overwritten by the next \`pulumi up\`.
[Unit]
Description=hakube TCP settings for the control plane
After=systemd-sysctl.service
Before=network-online.target etcd.service kube-apiserver.service kube-controller-manager.service kube-scheduler.service haproxy.service keepalived.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=${HOST_NETWORK_SCRIPT}

[Install]
WantedBy=multi-user.target
`;
}

/**
 * The settings apply to connections opened after them: on creation the step runs before
 * every other step on the host; on a host that already runs the control plane, each
 * service's connections get them at its next restart (an upgrade, a repair, a reboot).
 */
export const hostNetworkCreateScript = `systemctl daemon-reload
systemctl enable ${HOST_NETWORK_UNIT} >/dev/null 2>&1
${HOST_NETWORK_SCRIPT}
systemctl restart ${HOST_NETWORK_UNIT}`;

export const hostNetworkDeleteScript = `systemctl disable ${HOST_NETWORK_UNIT} >/dev/null 2>&1
rm -f /etc/systemd/system/${HOST_NETWORK_UNIT} ${HOST_NETWORK_SCRIPT}
systemctl daemon-reload`;

/** The host's network step; every other step on the host waits for it (`Host.after`). */
export function hostNetworkStep(name: string, host: Host, s: HostNetworkSettings, opts: pulumi.CustomResourceOptions): command.remote.Command {
  return hostStep(
    name,
    {
      host,
      files: [
        { path: HOST_NETWORK_SCRIPT, mode: "0755", content: renderHostNetworkScript(s) },
        { path: `/etc/systemd/system/${HOST_NETWORK_UNIT}`, mode: "0644", content: renderHostNetworkUnit() },
      ],
      create: hostNetworkCreateScript,
      delete: hostNetworkDeleteScript,
      component: { name: "network", units: [HOST_NETWORK_UNIT] },
    },
    opts,
  );
}
