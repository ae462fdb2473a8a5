// etcd rendering (pure): flags, unit, etcdctl environment and health scripts.
import { command, quote, shellFunction } from "../remote/shell";
import { INITIAL_CLUSTER_ENV, memberFunctions } from "./member";
import { Flag, renderUnit } from "../systemd";
import { readyzCheck } from "../apiserver/render";
import { ETCD_TLS_MIN_VERSION, TLS_CIPHER_SUITES } from "../tls";

/**
 * The account etcd runs as (not root), owner of its data directory and its own keys. The
 * unit hands them over before each start, so data a root process wrote (a restore, a
 * join, an upgrade from a cluster whose etcd ran as root) is etcd's when it starts.
 */
export const ETCD_USER = "etcd";

export const ETCD_PKI = "/etc/etcd/pki";
export const ETCDCTL_ENV = "/etc/etcd/etcdctl.env";

export interface EtcdMember {
  readonly name: string;
  readonly address: string;
}

export interface EtcdSettings {
  readonly clusterToken: string;
  readonly dataDir: string;
  readonly clientPort: number;
  readonly peerPort: number;
  readonly heartbeatIntervalMs: number;
  readonly electionTimeoutMs: number;
}

export const clientUrl = (m: EtcdMember, s: EtcdSettings) => `https://${m.address}:${s.clientPort}`;
export const peerUrl = (m: EtcdMember, s: EtcdSettings) => `https://${m.address}:${s.peerPort}`;

export function initialCluster(members: readonly EtcdMember[], s: EtcdSettings): string {
  return members.map((m) => `${m.name}=${peerUrl(m, s)}`).join(",");
}

export function etcdFlags(self: EtcdMember, members: readonly EtcdMember[], s: EtcdSettings): Flag[] {
  return [
    ["name", self.name],
    ["data-dir", s.dataDir],
    ["listen-client-urls", `${clientUrl(self, s)},https://127.0.0.1:${s.clientPort}`],
    ["advertise-client-urls", clientUrl(self, s)],
    ["listen-peer-urls", peerUrl(self, s)],
    ["initial-advertise-peer-urls", peerUrl(self, s)],
    ["initial-cluster-token", s.clusterToken],
    ["client-cert-auth", true],
    ["trusted-ca-file", `${ETCD_PKI}/ca.crt`],
    ["cert-file", `${ETCD_PKI}/server.crt`],
    ["key-file", `${ETCD_PKI}/server.key`],
    ["peer-client-cert-auth", true],
    ["peer-trusted-ca-file", `${ETCD_PKI}/ca.crt`],
    ["peer-cert-file", `${ETCD_PKI}/peer.crt`],
    ["peer-key-file", `${ETCD_PKI}/peer.key`],
    ["heartbeat-interval", s.heartbeatIntervalMs],
    ["election-timeout", s.electionTimeoutMs],
    ["tls-min-version", ETCD_TLS_MIN_VERSION],
    ["cipher-suites", TLS_CIPHER_SUITES.join(",")],
    ["listen-metrics-urls", `http://127.0.0.1:${s.clientPort + 2}`],
    ["strict-reconfig-check", true],
  ];
}

export function etcdUnit(self: EtcdMember, members: readonly EtcdMember[], s: EtcdSettings): string {
  return renderUnit({
    description: `etcd member ${self.name} (hakube)`,
    documentation: "https://etcd.io/docs/",
    binary: "/usr/local/bin/etcd",
    type: "notify",
    // --initial-cluster and --initial-cluster-state come from this file: a new cluster's
    // members at bootstrap, the running cluster's when a member joins (see member.ts).
    environmentFiles: [INITIAL_CLUSTER_ENV],
    flags: etcdFlags(self, members, s),
    user: ETCD_USER,
    privilegedPreStart: [
      ["/usr/bin/install", "-d", "-m", "0700", "-o", ETCD_USER, "-g", ETCD_USER, s.dataDir],
      ["/usr/bin/chown", "-R", `${ETCD_USER}:${ETCD_USER}`, s.dataDir, `${ETCD_PKI}/server.key`, `${ETCD_PKI}/peer.key`],
      // Files are written under umask 077: the folders must let etcd reach its certificates.
      ["/usr/bin/chmod", "0755", "/etc/etcd", ETCD_PKI],
    ],
    timeoutStartSec: 300,
  });
}

/** Environment for etcdctl on a host: `set -a; . /etc/etcd/etcdctl.env; set +a`. */
export function etcdctlEnv(members: readonly EtcdMember[], s: EtcdSettings): string {
  return [
    `ETCDCTL_ENDPOINTS=${members.map((m) => clientUrl(m, s)).join(",")}`,
    `ETCDCTL_CACERT=${ETCD_PKI}/ca.crt`,
    `ETCDCTL_CERT=${ETCD_PKI}/healthcheck-client.crt`,
    `ETCDCTL_KEY=${ETCD_PKI}/healthcheck-client.key`,
    "ETCDCTL_DIAL_TIMEOUT=3s",
    "ETCDCTL_COMMAND_TIMEOUT=5s",
    "",
  ].join("\n");
}

const loadEnv = `set -a; . ${ETCDCTL_ENV}; set +a`;

/** This member's name and URLs, for the scripts (written by the step, like every file). */
export const MEMBER_ENV = "/etc/etcd/member.env";

export function memberEnv(self: EtcdMember, s: EtcdSettings): string {
  return `HAKUBE_ETCD_NAME=${self.name}\nHAKUBE_ETCD_PEER_URL=${peerUrl(self, s)}\nHAKUBE_ETCD_CLIENT_URL=${clientUrl(self, s)}\n`;
}

/**
 * `hakube_etcd_needs_restart`: whether the running etcd must restart to take this step's
 * changes: a changed file it reads (anything in HAKUBE_CHANGED but etcdctl's environment,
 * the member file and the bootstrap cluster list), or its binary replaced since it started.
 */
export const needsRestartFunction = shellFunction(
  "hakube_etcd_needs_restart",
  `local f pid exe
while IFS= read -r f; do
  case "$f" in
    "" | ${ETCDCTL_ENV} | ${MEMBER_ENV} | ${INITIAL_CLUSTER_ENV}) ;;
    *) return 0 ;;
  esac
done <<< "\${HAKUBE_CHANGED:-}"
pid=$(systemctl show -p MainPID --value etcd.service 2>/dev/null || true)
if [ -n "$pid" ] && [ "$pid" != 0 ] && exe=$(readlink "/proc/$pid/exe" 2>/dev/null); then
  [ "$exe" = "$(readlink -f /usr/local/bin/etcd)" ] || return 0
fi
return 1`,
);

/** The system account etcd runs as, made once (before the unit that names it starts). */
export const etcdAccountScript = `if ! id -u ${ETCD_USER} >/dev/null 2>&1; then
  ${command(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", ETCD_USER])}
  echo "hakube: made the ${ETCD_USER} account"
fi`;

/** Loads etcdctl's environment, this member's, and the membership functions. */
const memberPrologue = `${loadEnv}
. ${MEMBER_ENV}
${memberFunctions}
${needsRestartFunction}`;

/** Waits until this member answers healthy (etcdctl refuses a flag that shadows its environment: the variable is overridden instead). */
function localHealthWait(attempts: number, clientPort: number): string {
  return `ETCDCTL_ENDPOINTS=https://127.0.0.1:${clientPort} hakube_retry ${attempts} 2 "etcd member health" -- etcdctl endpoint health`;
}

/**
 * A member that is still a learner (an earlier run added it, and its promotion timed out
 * or the run stopped) is promoted now, once in sync (bounded): without this the member set
 * stays with a pending learner, which every later change refuses, and nothing would ever
 * finish it. A voter, or a cluster that does not answer, is left alone.
 */
function finishPromotion(attempts: number): string {
  return `others=$(hakube_etcd_others "$HAKUBE_ETCD_CLIENT_URL")
if [ -n "$others" ] && [ "$(hakube_etcd_entry "$others" "$HAKUBE_ETCD_PEER_URL" 2>/dev/null | cut -d, -f6)" = true ]; then
  echo "hakube: etcd member $HAKUBE_ETCD_NAME is still a learner (an earlier promotion did not finish): promoting it once it is in sync"
  hakube_retry ${attempts} 2 "learner $HAKUBE_ETCD_NAME promoted (in sync with the leader)" -- hakube_etcd_promote "$others" "$HAKUBE_ETCD_PEER_URL"
  echo "hakube: etcd member $HAKUBE_ETCD_NAME promoted"
fi`;
}

/** Joins this member to the running cluster (it has no data), then waits until it is healthy. */
function joinScript(dataDir: string, attempts: number, clientPort: number): string {
  return `hakube_etcd_join "$HAKUBE_ETCD_NAME" "$HAKUBE_ETCD_PEER_URL" "$HAKUBE_ETCD_CLIENT_URL" ${quote(dataDir)} ${attempts} 2 ${INITIAL_CLUSTER_ENV}
${localHealthWait(attempts, clientPort)}`;
}

/**
 * Why a member with no data must not start when no other member answers, though the state
 * says its cluster is deployed: started, it would bootstrap a new, empty cluster
 * (`initial-cluster-state new`) in place of the deployed one.
 */
function refuseNewCluster(): string {
  return `echo "hakube: etcd member $HAKUBE_ETCD_NAME has no data and no other member answers with a quorum; refusing to start it as a new, empty cluster: the stack says this etcd cluster is deployed already ($HAKUBE_ETCD_NAME is not one of the members it was first deployed with)." >&2
echo "hakube: if the other members are only down, bring them back (pulumi up --refresh) and run again; if their data is lost, restore from a backup; see the README, Backups and restore (hakube:restoreFrom, or backups.restore)" >&2
exit 1`;
}

/**
 * Create: the member's data directory (private). A member without data whose peers already
 * hold a quorum (a replaced machine, a resize) joins the running cluster as a learner;
 * otherwise it (re)starts without waiting (members of a new cluster start together).
 * `bootstrap`: whether this member is one of those a brand-new cluster is first deployed
 * with (EtcdMembership's `bootstrap`); only such a member, with no data and no quorum
 * around it, may start a new cluster. Any other refuses (it would start an empty one).
 */
export function etcdCreateScript(dataDir: string, attempts = 150, clientPort = 2379, bootstrap = false): string {
  const noData = `[ ! -d ${quote(`${dataDir}/member`)} ]`;
  return `${etcdAccountScript}
${command(["install", "-d", "-m", "0700", dataDir])}
systemctl daemon-reload
systemctl enable etcd.service >/dev/null 2>&1
${memberPrologue}
others=$(hakube_etcd_others "$HAKUBE_ETCD_CLIENT_URL")
if ${noData} && [ -n "$others" ] && hakube_etcd_quorum "$others"; then
  ${joinScript(dataDir, attempts, clientPort).replace(/\n/g, "\n  ")}
${bootstrap ? "" : `elif ${noData}; then
  ${refuseNewCluster().replace(/\n/g, "\n  ")}
`}elif [ -n "$HAKUBE_CHANGED" ] || ! systemctl is-active --quiet etcd.service; then
  systemctl restart --no-block etcd.service
fi
if [ -d ${quote(`${dataDir}/member`)} ]; then
  ${finishPromotion(attempts).replace(/\n/g, "\n  ")}
fi
echo "hakube: etcd starting"`;
}

/**
 * Update (rolling, one member at a time): restart, then wait until this member is healthy.
 * On a stacked host the local kube-apiserver (which talks only to this member) is
 * stopped first, so it drains through its shutdown delay and the balancer stops using it,
 * and started again once the member is healthy.
 */
/**
 * Left by a restore on a member whose etcd unit did not exist yet (a new machine): the
 * member's own step then starts it without waiting, as every restored member must start
 * before any can be healthy; the etcd gate waits for all of them.
 */
export const RESTORE_START_PENDING = "/var/lib/hakube/restore/start-pending";

export function etcdUpdateScript(
  attempts: number,
  clientPort: number,
  localApiServer?: { readonly securePort: number; readonly settleSeconds: number },
  dataDir = "/var/lib/etcd",
): string {
  const drain = localApiServer
    ? `  if systemctl is-active --quiet kube-apiserver.service; then
    echo "hakube: draining the local kube-apiserver before restarting etcd"
    systemctl stop kube-apiserver.service
    drained=1
  fi
`
    : "";
  const undrain = localApiServer
    ? `  if [ "$drained" = 1 ]; then
    systemctl start kube-apiserver.service
    hakube_retry ${attempts} 2 "kube-apiserver /readyz" -- ${readyzCheck("127.0.0.1", localApiServer.securePort)}
    sleep ${localApiServer.settleSeconds}
  fi
`
    : "";
  return `${etcdAccountScript}
systemctl daemon-reload
systemctl enable etcd.service >/dev/null 2>&1
${memberPrologue}
if [ -f ${RESTORE_START_PENDING} ]; then
  # Restored from a backup on a new machine: start it; the others start the same way.
  rm -f ${RESTORE_START_PENDING}
  systemctl restart --no-block etcd.service
  echo "hakube: restored etcd member starting"
elif [ ! -d ${quote(`${dataDir}/member`)} ]; then
  # No data here (a new disk): join the running cluster instead of restarting.
  ${command(["install", "-d", "-m", "0700", dataDir])}
  ${joinScript(dataDir, attempts, clientPort).replace(/\n/g, "\n  ")}
  echo "hakube: etcd member joined and healthy"
elif ! systemctl is-active --quiet etcd.service; then
  # Stopped or failed (a repair): its apiserver serves nothing without it, so there is
  # nothing to drain; start it and wait until it is healthy.
  echo "hakube: etcd is not running: starting it"
  systemctl reset-failed etcd.service 2>/dev/null || true
  systemctl start etcd.service
  ${localHealthWait(attempts, clientPort)}
  echo "hakube: etcd member started and healthy"
  ${finishPromotion(attempts).replace(/\n/g, "\n  ")}
elif ! hakube_etcd_needs_restart; then
  # Only files etcd does not read changed (etcdctl's environment, the scripts' member
  # file, the bootstrap cluster list a member with data ignores): a resize or a repair
  # of another part restarts nothing here.
  echo "hakube: etcd runs as configured (nothing it reads changed): not restarted"
  ${finishPromotion(attempts).replace(/\n/g, "\n  ")}
else
  drained=0
${drain}  systemctl restart etcd.service
  ${localHealthWait(attempts, clientPort)}
${undrain}  echo "hakube: etcd member restarted and healthy"
  ${finishPromotion(attempts).replace(/\n/g, "\n  ")}
fi`;
}

/** The readiness gate: every member reports healthy (bounded wait). */
export function etcdGateScript(attempts: number): string {
  return `${loadEnv}
hakube_retry ${attempts} 2 "etcd cluster health" -- etcdctl endpoint health
etcdctl endpoint status --write-out=table`;
}

/**
 * The strict part of an etcd member's delete: it leaves the cluster (leadership handed
 * over, removed through the others) before it is stopped; a refusal fails the delete.
 */
export function etcdLeaveScript(dataDir: string): string {
  return `if [ -f ${ETCDCTL_ENV} ] && [ -f ${MEMBER_ENV} ]; then
${memberPrologue}
hakube_etcd_leave "$HAKUBE_ETCD_NAME" "$HAKUBE_ETCD_PEER_URL" "$HAKUBE_ETCD_CLIENT_URL" ${quote(dataDir)}
fi`;
}

export const etcdDeleteScript = `systemctl disable --now etcd.service
rm -f /etc/systemd/system/etcd.service
systemctl daemon-reload`;
