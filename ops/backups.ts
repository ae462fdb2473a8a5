// Backups of the local stack's etcd: `npm run backups -- [list|now|latest]`.
//   list    every backup in storage (name, time, revision, size), oldest first
//   latest  the newest backup's manifest (JSON)
//   now     an on-demand backup: the timer's job started on every etcd machine (only the
//           member whose turn it is takes it), waited for, and its result printed
import { etcdHosts, Credentials, LocalOutputs, pulumi, stackOutputs } from "./localStack";
import { BACKUP_PROGRAM, BACKUP_STATE_DIR, BACKUP_UNIT } from "../components/backup/render";

export interface BackupManifest {
  name: string;
  cluster: string;
  time: string;
  member: string;
  revision: number;
  totalKey: number;
  dbSize: number;
  size: number;
  sha256: string;
}

export interface BackupStatus {
  /** The newest backup in storage, or undefined when there is none (yet). */
  latest?: BackupManifest;
  /** Seconds since the newest backup was taken. */
  ageSeconds?: number;
  /** A failed run newer than the newest success, per machine that recorded one. */
  failures: { host: string; time: string; error: string }[];
  /** Why storage could not be asked, if it could not. */
  error?: string;
}

/** Runs `script` on the first etcd machine that answers. */
function onAnEtcdHost(cred: Credentials, outputs: LocalOutputs, script: string, timeoutMs = 60_000) {
  let last = "no etcd machine answered SSH";
  for (const h of etcdHosts(outputs)) {
    const r = cred.ssh(h.address, script, timeoutMs);
    if (r.status === 0) return r.stdout;
    last = `${h.name}: ${r.stderr.trim().split("\n").pop() ?? `exit ${r.status}`}`;
  }
  throw new Error(last);
}

export function backupList(cred: Credentials, outputs: LocalOutputs): BackupManifest[] {
  const out = onAnEtcdHost(cred, outputs, `${BACKUP_PROGRAM} list`);
  return out.split("\n").filter((l) => l.trim().startsWith("{")).map((l) => JSON.parse(l) as BackupManifest);
}

export function backupStatus(cred: Credentials, outputs: LocalOutputs, now = Date.now()): BackupStatus {
  const status: BackupStatus = { failures: [] };
  try {
    const list = backupList(cred, outputs);
    status.latest = list[list.length - 1];
    if (status.latest) status.ageSeconds = Math.round((now - Date.parse(status.latest.time)) / 1000);
  } catch (e) {
    status.error = (e as Error).message;
  }
  for (const h of etcdHosts(outputs)) {
    // The program's own record of a failed run, and the unit's result (a run systemd could
    // not even start leaves no record of the program's).
    const r = cred.ssh(h.address, `cat ${BACKUP_STATE_DIR}/last-failure.json 2>/dev/null || true
echo "unit $(systemctl show -P Result ${BACKUP_UNIT}.service) $(systemctl show -P ExecMainStatus ${BACKUP_UNIT}.service)"`, 15_000);
    if (r.status !== 0) continue;
    const record = r.stdout.split("\n").find((l) => l.startsWith("{"));
    const f = record ? (JSON.parse(record) as { time: string; error: string }) : undefined;
    if (f && (!status.latest || Date.parse(f.time) > Date.parse(status.latest.time))) {
      status.failures.push({ host: h.name, ...f });
      continue;
    }
    // 219/CGROUP (systemd could not start it; see backupNow) is a fault of systemd-nspawn
    // machines on a cgroup v1 host, not of the backup: the next round starts normally.
    const unit = /^unit (\S+) (\S*)$/m.exec(r.stdout);
    if (unit && unit[1] !== "success" && unit[2] !== "219") {
      status.failures.push({ host: h.name, time: new Date(now).toISOString(), error: `the last run of ${BACKUP_UNIT}.service failed (result ${unit[1]}, exit status ${unit[2]})` });
    }
  }
  return status;
}

export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** One line for the status summary. */
export function formatBackupStatus(b: BackupStatus): string {
  if (b.error) return `unknown (${b.error})`;
  const last = b.latest
    ? `${b.latest.name}, ${b.latest.time} (${formatAge(b.ageSeconds ?? 0)} ago), revision ${b.latest.revision}, ${b.latest.totalKey} keys, ${b.latest.size} bytes encrypted`
    : "none yet";
  return b.failures.length ? `${last}; LAST RUN FAILED on ${b.failures.map((f) => `${f.host} (${f.error})`).join(", ")}` : last;
}

/** Starts the timer's job on every etcd machine, waits for it, and returns the new newest backup. */
export async function backupNow(cred: Credentials, outputs: LocalOutputs): Promise<BackupManifest> {
  const before = backupList(cred, outputs).map((m) => m.name);
  // A run in progress (the timer's, or the one after a deployment) is waited for first:
  // a start would only join it, and its backup may be older than this request.
  const script = `for i in $(seq 1 900); do [ "$(systemctl is-active ${BACKUP_UNIT}.service)" = activating ] || break; sleep 1; done
fail() { journalctl -u ${BACKUP_UNIT}.service -n 12 --no-pager -o cat >&2; exit 1; }
for attempt in 1 2 3; do
  systemctl start ${BACKUP_UNIT}.service && exit 0
  # 219/CGROUP: systemd could not set up the unit's cgroup, so the program never ran. Seen
  # inside systemd-nspawn machines on a cgroup v1 host, after a run whose cgroup could not
  # be killed ("Input/output error"); a new start works.
  [ "$(systemctl show -P ExecMainStatus ${BACKUP_UNIT}.service)" = 219 ] || fail
  echo "hakube: ${BACKUP_UNIT}.service could not get its cgroup (219/CGROUP); starting it again" >&2
  systemctl reset-failed ${BACKUP_UNIT}.service
  sleep 1
done
fail`;
  // On every etcd machine at once, as the timer runs it (probes and timers go on meanwhile).
  const results = await Promise.all(etcdHosts(outputs).map(async (h) => ({ h, r: await cred.sshAsync(h.address, script, 30 * 60_000) })));
  const failed = results.filter((x) => x.r.status !== 0);
  if (failed.length) {
    const why = failed.map((x) => `${x.h.name}:\n${x.r.stderr.trim().split("\n").slice(-12).join("\n")}`).join("\n");
    throw new Error(`the backup failed on ${failed.map((x) => x.h.name).join(", ")} (journalctl -u ${BACKUP_UNIT} there):\n${why}`);
  }
  const after = backupList(cred, outputs);
  const made = after.filter((m) => !before.includes(m.name));
  if (made.length !== 1) throw new Error(`expected one new backup, storage has ${made.length} new ones`);
  return made[0];
}

/**
 * The restore request on the next `pulumi up` of the local stack, as stack config
 * (`hakube:restoreFrom`, `hakube:restoreConfirm`); undefined removes a setting.
 */
export function setRestoreRequest(from?: string, confirm?: string): void {
  for (const [key, value] of [["restoreFrom", from], ["restoreConfirm", confirm]] as const) {
    if (value === undefined) {
      pulumi(["config", "rm", `hakube:${key}`], 60_000); // absent already: nothing to remove
      continue;
    }
    const r = pulumi(["config", "set", `hakube:${key}`, value], 60_000);
    if (r.status !== 0) throw new Error(`pulumi config set hakube:${key}: ${r.stderr.trim()}`);
  }
}

/** Every etcd member's data lost: etcd stopped and its data directory deleted on every etcd machine. */
export async function destroyEtcdData(cred: Credentials, outputs: LocalOutputs): Promise<void> {
  const runs = await Promise.all(etcdHosts(outputs).map(async (h) => ({ h, r: await cred.sshAsync(h.address, "systemctl stop etcd.service && rm -rf /var/lib/etcd", 60_000) })));
  const failed = runs.filter((x) => x.r.status !== 0);
  if (failed.length) throw new Error(`could not destroy etcd's data on ${failed.map((x) => `${x.h.name} (${x.r.stderr.trim()})`).join(", ")}`);
}

async function main(what: string): Promise<void> {
  let cred: Credentials | undefined;
  try {
    const outputs = stackOutputs();
    cred = new Credentials(outputs);
    if (what === "list") {
      for (const m of backupList(cred, outputs)) console.log(`${m.name}  ${m.time}  revision ${m.revision}  ${m.totalKey} keys  ${m.size} bytes  from ${m.member}`);
    } else if (what === "latest") {
      console.log(JSON.stringify(backupStatus(cred, outputs).latest ?? null, null, 2));
    } else if (what === "now") {
      console.log("hakube: backup on demand: starting hakube-etcd-backup.service on every etcd machine (one takes the snapshot)");
      const m = await backupNow(cred, outputs);
      console.log(`hakube: backup ${m.name} taken on ${m.member}: revision ${m.revision}, ${m.size} bytes`);
    } else {
      throw new Error(`unknown command '${what}' (list, latest or now)`);
    }
  } catch (e) {
    console.error(`hakube: backups: ${(e as Error).message}`);
    process.exitCode = 1;
  } finally {
    cred?.dispose();
  }
}

if (require.main === module) void main(process.argv[2] ?? "list");
