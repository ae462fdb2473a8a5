// Restore of every etcd member from one backup, as steps of one `pulumi up` (pure
// rendering here; the resources are in EtcdRestore). In order:
//   check    every etcd host downloads, verifies (this stack's signature, with the public
//            key from the stack), decrypts and checks the same backup (the first host
//            resolves "latest" to a name, the others fetch that name). Nothing is stopped
//            yet: a missing, unsigned, corrupt or foreign backup or a wrong key fails here.
//            A cluster that still has quorum is refused unless the restore is confirmed.
//   stop     controller-manager, scheduler and apiserver stop on every control-plane host
//   data     each etcd host stops etcd, moves its data directory aside (kept), restores
//            the snapshot with a new cluster token and --bump-revision/--mark-compacted
//            (watch caches must not go back in time), starts etcd without waiting
//   (etcd)   the etcd cluster's own steps and gate follow: every member healthy
//   finish   the stale apiserver entries under /registry/masterleases/ are removed
//   start    apiservers, then controllers start again
//   ready    (HaControlPlane) every apiserver ready and in the kubernetes Service, both
//            Leases renewed since, the endpoint answering /readyz: only then is the up done
import { command, quote, shellFunction } from "../remote/shell";
import { ETCDCTL_ENV, EtcdMember, EtcdSettings, initialCluster, peerUrl, RESTORE_START_PENDING } from "../etcd/render";
import { BACKUP_PROGRAM, BACKUP_VERIFY_KEY } from "./render";
import { apiServerGateScript } from "../apiserver/render";
import { controllersGateScript } from "../controllers/render";
import { balancerGateScript } from "../loadbalancer/render";

export const RESTORE_DIR = "/var/lib/hakube/restore";
export const RESTORE_KEY = `${RESTORE_DIR}/backup.key`;
export const RESTORE_KEY_CERT = `${RESTORE_DIR}/backup.crt`;
export const RESTORE_SNAPSHOT = `${RESTORE_DIR}/snapshot.db`;
/** The value `restore.confirm` must have to restore over a cluster that still has quorum. */
export const CONFIRM_HEALTHY = "replace-a-healthy-cluster";

const loadEtcdctl = `if [ -r ${ETCDCTL_ENV} ]; then set -a; . ${ETCDCTL_ENV}; set +a; fi`;

/** The backup name a request resolves to: a name as given, or "latest" (resolved by the first host). */
export function isBackupRequest(from: string): boolean {
  return from === "latest" || /^etcd-\d{8}T\d{6}Z-r\d+$/.test(from);
}

/**
 * check: fetch and verify the backup into RESTORE_SNAPSHOT; prints its manifest. `confirm`
 * as given in the config; a cluster whose members still form a quorum is refused without it.
 */
export function restoreCheckScript(from: string, confirm: string | undefined): string {
  return `install -d -m 0700 ${RESTORE_DIR}
# The backup key (written with this step's files) goes on every way out: a refusal, a
# backup that does not check, a success. A decrypted snapshot stays only when the check
# passed (the data step restores from it, and removes it).
checked=
trap 'rm -f ${RESTORE_KEY}; [ -n "$checked" ] || rm -f ${RESTORE_SNAPSHOT}' EXIT
rm -f ${RESTORE_SNAPSHOT}
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=120 install -y -qq openssl >/dev/null
${loadEtcdctl}
${shellFunction(
  "hakube_quorum_now",
  `[ -n "\${ETCDCTL_ENDPOINTS:-}" ] || return 1
local total healthy
total=$(printf '%s' "$ETCDCTL_ENDPOINTS" | tr ',' '\\n' | grep -c .)
healthy=$(etcdctl endpoint health -w simple 2>/dev/null | grep -c 'is healthy' || true)
[ "$healthy" -gt $(( total / 2 )) ]`,
)}
if hakube_quorum_now; then
  if [ ${quote(confirm ?? "")} != ${quote(CONFIRM_HEALTHY)} ]; then
    echo "hakube: refusing to restore: etcd still has quorum (a restore throws away every write since the backup)." >&2
    echo "hakube: set restore.confirm (hakube:restoreConfirm) to '${CONFIRM_HEALTHY}' to restore anyway." >&2
    exit 1
  fi
  echo "hakube: etcd still has quorum; restoring anyway, as confirmed"
fi
${command(["env", `HAKUBE_BACKUP_KEY_FILE=${RESTORE_KEY}`, `HAKUBE_BACKUP_KEY_CERT=${RESTORE_KEY_CERT}`, `HAKUBE_BACKUP_VERIFY_KEY=${BACKUP_VERIFY_KEY}`, BACKUP_PROGRAM, "fetch", from, RESTORE_SNAPSHOT])} > ${RESTORE_DIR}/manifest.json
rm -f ${RESTORE_KEY}
echo "hakube-restore-manifest $(cat ${RESTORE_DIR}/manifest.json)"
checked=1`;
}

/** stop: the API side, before etcd's data is replaced. */
export const restoreStopScript = `for u in kube-controller-manager.service kube-scheduler.service kube-apiserver.service; do
  if systemctl cat "$u" >/dev/null 2>&1; then systemctl stop "$u"; echo "hakube: stopped $u for the restore"; fi
done`;

/** data: this member's data from the snapshot checked before, the old data kept aside. */
export function restoreDataScript(self: EtcdMember, members: readonly EtcdMember[], s: EtcdSettings, token: string): string {
  return `[ -s ${RESTORE_SNAPSHOT} ] || { echo "hakube: no checked snapshot at ${RESTORE_SNAPSHOT} (the check step did not run?)" >&2; exit 1; }
if systemctl cat etcd.service >/dev/null 2>&1; then systemctl stop etcd.service; fi
if [ -d ${quote(s.dataDir)} ] && [ -n "$(ls -A ${quote(s.dataDir)} 2>/dev/null)" ]; then
  aside=${quote(s.dataDir)}.before-restore-$(date -u +%Y%m%dT%H%M%SZ)
  mv ${quote(s.dataDir)} "$aside"
  echo "hakube: the old data of ${self.name} is kept at $aside (remove it once the restore is good)"
fi
${command([
  "etcdutl", "snapshot", "restore", RESTORE_SNAPSHOT,
  "--name", self.name,
  "--data-dir", s.dataDir,
  "--initial-cluster", initialCluster(members, s),
  "--initial-cluster-token", token,
  "--initial-advertise-peer-urls", peerUrl(self, s),
  "--bump-revision", "1000000000",
  "--mark-compacted",
])} >/dev/null
chmod 0700 ${quote(s.dataDir)}
rm -f ${RESTORE_SNAPSHOT}
echo "hakube: ${self.name} restored ($(sed -n 's/.*"name":"\\([^"]*\\)".*/\\1/p' ${RESTORE_DIR}/manifest.json))"
if systemctl cat etcd.service >/dev/null 2>&1; then
  systemctl start --no-block etcd.service
else
  # A new machine: the member's own step installs etcd and starts it (without waiting).
  touch ${RESTORE_START_PENDING}
fi`;
}

/** finish: every member healthy, then the stale apiserver endpoints removed. */
export function restoreFinishScript(attempts: number): string {
  return `${loadEtcdctl}
hakube_retry ${attempts} 2 "every etcd member healthy after the restore" -- etcdctl endpoint health
removed=$(etcdctl del --prefix /registry/masterleases/)
echo "hakube: removed $removed stale apiserver entries under /registry/masterleases/"`;
}

/** start: the API side again, apiservers before controllers. */
export const restoreStartScript = `for u in kube-apiserver.service kube-controller-manager.service kube-scheduler.service; do
  if systemctl cat "$u" >/dev/null 2>&1; then systemctl start "$u"; echo "hakube: started $u"; fi
done`;

/**
 * ready: the control plane's gates once more after a restore (the components' own gates
 * run only when their steps change, and a restore changes none of them). The Leases must
 * be renewed since the restore: the ones in the backup name holders that are long gone.
 */
export function restoreReadyScript(a: {
  readonly apiAddresses: readonly string[];
  readonly apiPort: number;
  /** The keepalived VIP and port, checked through the balancer too. */
  readonly balancer?: { readonly virtualIp: string; readonly port: number; readonly caPath: string };
  readonly attempts: number;
}): string {
  return [
    apiServerGateScript(a.apiAddresses, a.apiPort, a.attempts),
    controllersGateScript(a.attempts, 2, 30),
    ...(a.balancer ? [balancerGateScript(a.balancer.virtualIp, a.balancer.port, a.balancer.caPath, a.attempts)] : []),
    `echo "hakube: the restored control plane is ready"`,
  ].join("\n");
}
