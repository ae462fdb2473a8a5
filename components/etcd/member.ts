// Joining a member to an etcd cluster that already runs, as shell functions (pure text).
// A member whose data directory is empty (a new or replaced machine, a resize) joins as a
// learner: a dead earlier incarnation of it is removed first (never a healthy member),
// it is added with `member add --learner`, starts with `initial-cluster-state existing`
// and is promoted once it has caught up with the leader. Every branch is re-entrant: a run
// that stopped after the remove adds, after the add finds its learner, after the start
// promotes. Facts: etcd's runtime-reconfiguration guide (../shared/DAY2.md).
import { shellFunction } from "../remote/shell";

/** Read by etcd at its first start, in place of the --initial-cluster* flags. */
export const INITIAL_CLUSTER_ENV = "/etc/etcd/initial-cluster.env";

/** The bootstrap values of INITIAL_CLUSTER_ENV: every member, a new cluster. */
export function initialClusterEnv(initialCluster: string): string {
  return `ETCD_INITIAL_CLUSTER=${initialCluster}\nETCD_INITIAL_CLUSTER_STATE=new\n`;
}

/**
 * Shell functions (etcdctl's environment loaded, hakube_retry defined):
 *   hakube_etcd_others <own-client-url>      ETCDCTL_ENDPOINTS without this member
 *   hakube_etcd_quorum <endpoints>           some other member answers a quorum read
 *   hakube_etcd_entry <endpoints> <peer-url> [name]   this member's `member list` line (by peer URL,
 *                                            or by name: a replaced machine may have a new address)
 *   hakube_etcd_join <name> <peer-url> <client-url> <data-dir> <attempts> <delay> <env-file>
 *   hakube_etcd_leave <name> <peer-url> <client-url> <data-dir> [attempts delay]   (a member removed from the cluster)
 */
export const memberFunctions = [
  shellFunction(
    "hakube_etcd_others",
    `printf '%s\\n' "$ETCDCTL_ENDPOINTS" | tr ',' '\\n' | grep -v -x -F -e "$1" | paste -s -d, -`,
  ),
  shellFunction(
    "hakube_etcd_quorum",
    `local e
for e in $(printf '%s\\n' "$1" | tr ',' ' '); do
  if ETCDCTL_ENDPOINTS=$e etcdctl endpoint health >/dev/null 2>&1; then return 0; fi
done
return 1`,
  ),
  // `member list -w simple`: ID, status, name, peer URL, client URL, is learner (hakube's
// members advertise one peer and one client URL each, so the fields split on commas).
  shellFunction(
    "hakube_etcd_entry",
    `ETCDCTL_ENDPOINTS=$1 etcdctl member list -w simple | tr -d ' ' | awk -F, -v peer="$2" -v name="\${3:-}" '$4 == peer || (name != "" && $3 == name)'`,
  ),
  shellFunction(
    "hakube_etcd_promote",
    `local id
id=$(hakube_etcd_entry "$1" "$2" | cut -d, -f1)
[ -n "$id" ] || return 1
[ "$(hakube_etcd_entry "$1" "$2" | cut -d, -f6)" = false ] && return 0
ETCDCTL_ENDPOINTS=$1 etcdctl member promote "$id" >/dev/null 2>&1`,
  ),
  // Adds a learner unless it is there already (an add whose answer was lost is not repeated).
  shellFunction(
    "hakube_etcd_add_learner",
    `[ -n "$(hakube_etcd_entry "$1" "$3")" ] && return 0
ETCDCTL_ENDPOINTS=$1 etcdctl member add "$2" --peer-urls="$3" --learner >/dev/null`,
  ),
  // Removes a member unless it is gone already.
  shellFunction(
    "hakube_etcd_remove",
    `[ -z "$(ETCDCTL_ENDPOINTS=$1 etcdctl member list -w simple | tr -d ' ' | awk -F, -v id="$2" '$1 == id')" ] && return 0
ETCDCTL_ENDPOINTS=$1 etcdctl member remove "$2" >/dev/null`,
  ),
  shellFunction(
    "hakube_etcd_join",
    `local name=$1 peer=$2 client=$3 data=$4 attempts=$5 delay=$6 envfile=$7 others entry id learner clients cluster
others=$(hakube_etcd_others "$client")
if [ -z "$others" ] || ! hakube_etcd_quorum "$others"; then
  echo "hakube: etcd member $name has no data and no other member answers with a quorum: it cannot join (every member lost? restore from a backup); see the README, Backups and restore (hakube:restoreFrom, or backups.restore)" >&2
  return 1
fi
# Nothing of this member may answer at its own address while the cluster is asked about it.
systemctl stop etcd.service 2>/dev/null || true
if [ -n "$(ETCDCTL_ENDPOINTS=$others etcdctl member list -w simple | tr -d ' ' | awk -F, -v peer="$peer" '$6 == "true" && $4 != peer')" ]; then
  echo "hakube: another learner is pending in the etcd cluster; one membership change at a time" >&2
  return 1
fi
entry=$(hakube_etcd_entry "$others" "$peer" "$name")
id=$(printf '%s' "$entry" | cut -d, -f1)
clients=$(printf '%s' "$entry" | cut -d, -f5)
learner=$(printf '%s' "$entry" | cut -d, -f6)
if [ -n "$entry" ] && [ "$learner" != true ] && [ -n "$clients" ]; then
  # An earlier incarnation of this member, started before, whose data is gone. Remove it
  # only when it is dead (its etcd here is stopped, so nothing else may answer for it)
  # and every other member is healthy.
  if hakube_retry 3 1 "the old member $name answering" -- env ETCDCTL_ENDPOINTS="$clients" etcdctl endpoint health >/dev/null 2>&1; then
    echo "hakube: refusing to remove etcd member $name ($id): it answers healthy at $clients" >&2
    return 1
  fi
  if ! ETCDCTL_ENDPOINTS=$others etcdctl endpoint health >/dev/null 2>&1; then
    echo "hakube: not removing etcd member $name ($id): another member is unhealthy (etcdctl endpoint health on $others)" >&2
    return 1
  fi
  echo "hakube: removing the dead etcd member $name ($id), whose data is gone"
  ETCDCTL_ENDPOINTS=$others etcdctl member remove "$id" >/dev/null
  entry=""
fi
if [ -n "$entry" ] && [ "$learner" != true ]; then
  echo "hakube: etcd member $name is listed but never started: starting it as part of the new cluster"
  systemctl start --no-block etcd.service
  return 0
fi
if [ -d "$data" ] && [ -n "$(ls -A "$data" 2>/dev/null)" ]; then
  rm -rf "$data.hakube-old"
  mv "$data" "$data.hakube-old"
fi
install -d -m 0700 "$data"
if [ -z "$entry" ]; then
  echo "hakube: adding $name to the etcd cluster as a learner"
  # etcd accepts a member only once the member asked has been connected to every voter
  # for 5 s (strict reconfiguration check: "unhealthy cluster" right after a promotion).
  hakube_retry 20 "$delay" "etcd member add $name" -- hakube_etcd_add_learner "$others" "$name" "$peer"
fi
# Every member as name=peer URL; this one is unnamed in the list until it starts.
cluster=$(ETCDCTL_ENDPOINTS=$others etcdctl member list -w simple | tr -d ' ' | awk -F, -v peer="$peer" -v self="$name" '{ n = ($3 == "" && $4 == peer) ? self : $3; printf "%s%s=%s", sep, n, $4; sep = "," }')
umask 022
printf 'ETCD_INITIAL_CLUSTER=%s\\nETCD_INITIAL_CLUSTER_STATE=existing\\n' "$cluster" > "$envfile.tmp"
mv -f "$envfile.tmp" "$envfile"
systemctl start --no-block etcd.service
hakube_retry "$attempts" "$delay" "learner $name promoted (in sync with the leader)" -- hakube_etcd_promote "$others" "$peer"
echo "hakube: etcd member $name joined and was promoted"`,
  ),
  // A member leaving the cluster (a resize down, or the last step of a destroy): leadership
  // handed to another started voter first, then `member remove` through the others (etcd's
  // strict reconfiguration check refuses one that would cost quorum; then this fails and
  // the member keeps running), and only then is it stopped and its data moved aside. A member
  // with no other member answering (the last one, or a cluster already lost) just stops.
  shellFunction(
    "hakube_etcd_leave",
    `local name=$1 peer=$2 client=$3 data=$4 attempts=\${5:-10} delay=\${6:-2} others entry id status me leader target
others=$(hakube_etcd_others "$client")
if [ -n "$others" ] && hakube_etcd_quorum "$others"; then
  entry=$(hakube_etcd_entry "$others" "$peer" "$name")
  id=$(printf '%s' "$entry" | cut -d, -f1)
  if [ -n "$id" ]; then
    status=$(ETCDCTL_ENDPOINTS=https://127.0.0.1:\${client##*:} etcdctl endpoint status -w json 2>/dev/null || true)
    me=$(printf '%s' "$status" | grep -o '"member_id":[0-9]*' | head -n 1 | cut -d: -f2)
    leader=$(printf '%s' "$status" | grep -o '"leader":[0-9]*' | head -n 1 | cut -d: -f2)
    if [ -n "$me" ] && [ "$me" = "$leader" ]; then
      target=$(ETCDCTL_ENDPOINTS=$others etcdctl member list -w simple | tr -d ' ' | awk -F, -v self="$id" '$1 != self && $2 == "started" && $6 == "false" { print $1; exit }')
      if [ -n "$target" ]; then
        echo "hakube: etcd member $name leads: handing leadership to $target first"
        ETCDCTL_ENDPOINTS=https://127.0.0.1:\${client##*:} etcdctl move-leader "$target" >/dev/null
      fi
    fi
    echo "hakube: removing etcd member $name ($id) from the cluster"
    # Retried: right after another change etcd may answer "unhealthy cluster" for a few seconds.
    if ! hakube_retry "$attempts" "$delay" "etcd member remove $name" -- hakube_etcd_remove "$others" "$id"; then
      echo "hakube: etcd refused to remove member $name ($id): removing it would cost quorum (another member is unhealthy?); it keeps running. Repair the cluster first (pulumi up --refresh)" >&2
      return 1
    fi
  fi
else
  echo "hakube: no other etcd member answers with a quorum: stopping $name without a membership change"
fi
systemctl disable --now etcd.service 2>/dev/null || true
# Moved aside, never deleted here: no member may start from it again (a later join starts
# from an empty folder), and it is still there should the change have been a mistake.
if [ -n "$data" ] && [ "$data" != / ] && [ -e "$data" ]; then
  aside="$data.left-$(date -u +%Y%m%dT%H%M%SZ)"
  mv "$data" "$aside"
  echo "hakube: etcd member $name stopped; its data moved aside to $aside"
else
  echo "hakube: etcd member $name stopped"
fi`,
  ),
].join("\n");
