import { test } from "node:test";
import assert from "node:assert/strict";
import { retryFunction, scriptPrologue } from "../../components/remote/files";
import {
  CONFIRM_HEALTHY,
  isBackupRequest,
  restoreCheckScript,
  restoreDataScript,
  restoreFinishScript,
  restoreStartScript,
  restoreStopScript,
} from "../../components/backup/restore";
import { etcdUpdateScript, RESTORE_START_PENDING } from "../../components/etcd/render";
import { run, tempDir } from "../helpers/tools";
import * as fs from "fs";
import * as path from "path";
import { RESTORE_DIR } from "../../components/backup/restore";
import { ETCDCTL_ENV } from "../../components/etcd/render";
import { BACKUP_PROGRAM } from "../../components/backup/render";

const settings = { clusterToken: "local-etcd", dataDir: "/var/lib/etcd", clientPort: 2379, peerPort: 2380, heartbeatIntervalMs: 100, electionTimeoutMs: 1000 };
const members = [1, 2, 3].map((i) => ({ name: `cp-${i}`, address: `10.0.0.1${i}` }));

function parses(script: string): void {
  const r = run("bash", ["-n"], { input: `${scriptPrologue}\n${retryFunction}\n${script}` });
  assert.equal(r.status, 0, r.stderr);
}

test("restore requests: latest or a backup name, nothing else", () => {
  assert.equal(isBackupRequest("latest"), true);
  assert.equal(isBackupRequest("etcd-20261201T120000Z-r1234"), true);
  for (const bad of ["", "yesterday", "etcd-2026-r1", "../etcd-20261201T120000Z-r1", "etcd-20261201T120000Z-r1;rm"]) assert.equal(isBackupRequest(bad), false, bad);
});

test("restore scripts parse as bash; the check refuses a cluster with quorum unless confirmed, and removes the key", () => {
  const check = restoreCheckScript("latest", undefined);
  parses(check);
  assert.match(check, /refusing to restore: etcd still has quorum/);
  assert.match(check, new RegExp(`'' != ${CONFIRM_HEALTHY}`));
  assert.match(restoreCheckScript("latest", CONFIRM_HEALTHY), new RegExp(`${CONFIRM_HEALTHY} != ${CONFIRM_HEALTHY}`));
  assert.match(check, /rm -f \/var\/lib\/hakube\/restore\/backup.key/);
  // The backup is checked with the public key the stack wrote, not one from storage.
  assert.match(check, / HAKUBE_BACKUP_VERIFY_KEY=\/etc\/hakube\/backup\/signing\.pub \/usr\/local\/sbin\/hakube-etcd-backup fetch latest /);
  // The name travels as one quoted word.
  assert.match(restoreCheckScript("etcd-20261201T120000Z-r5", undefined), / fetch etcd-20261201T120000Z-r5 \/var\/lib\/hakube\/restore\/snapshot.db/);
  for (const s of [restoreStopScript, restoreStartScript, restoreFinishScript(10)]) parses(s);
  assert.match(restoreFinishScript(10), /etcdctl del --prefix \/registry\/masterleases\//);
});

test("the check leaves no backup key behind on any path, and a decrypted snapshot only when it passed: refused for quorum, a fetch that fails, and a good one", () => {
  const dir = tempDir("restore-check");
  try {
    const bin = path.join(dir, "bin");
    fs.mkdirSync(bin);
    // etcdctl answers health for three endpoints, healthy or not as HEALTHY says.
    fs.writeFileSync(path.join(bin, "etcdctl"), `#!/bin/bash\nfor e in a b c; do if [ "$HEALTHY" = 1 ]; then echo "$e is healthy"; else echo "$e is unhealthy"; fi; done\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, "backup-program"), `#!/bin/bash\n[ -r "$HAKUBE_BACKUP_KEY_FILE" ] || exit 9\n[ "$FETCH" = ok ] || { echo "cannot be decrypted" >&2; exit 1; }\necho 'snapshot' > "$3"; echo '{"name":"etcd-x"}'\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(dir, "etcdctl.env"), "ETCDCTL_ENDPOINTS=https://a:2379,https://b:2379,https://c:2379\n");
    const restoreDir = path.join(dir, "restore");
    const key = path.join(restoreDir, "backup.key");
    const snapshot = path.join(restoreDir, "snapshot.db");
    const script = restoreCheckScript("latest", undefined)
      .replaceAll(RESTORE_DIR, restoreDir)
      .replaceAll(ETCDCTL_ENV, path.join(dir, "etcdctl.env"))
      .replaceAll(BACKUP_PROGRAM, path.join(dir, "backup-program"));
    for (const [label, healthy, fetch, status] of [
      ["refused: etcd has quorum", "1", "ok", 1],
      ["the fetch fails", "0", "bad", 1],
      ["checked", "0", "ok", 0],
    ] as const) {
      fs.mkdirSync(restoreDir, { recursive: true });
      fs.writeFileSync(key, "PRIVATE KEY", { mode: 0o600 });
      // A snapshot left by an earlier request whose later steps failed.
      fs.writeFileSync(snapshot, "an earlier snapshot", { mode: 0o600 });
      // The prologue as on a host, but with the stand-ins first on PATH.
      const prologue = scriptPrologue.replace(/^export PATH=.*$/m, "");
      const r = run("bash", ["-c", `${prologue}\n${retryFunction}\n${script}`], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, HEALTHY: healthy, FETCH: fetch } });
      assert.equal(r.status, status, `${label}: ${r.stderr}`);
      assert.equal(fs.existsSync(key), false, `${label}: the backup key is gone`);
      assert.equal(fs.existsSync(snapshot), status === 0, `${label}: a decrypted snapshot only after a check that passed`);
      if (status === 0) assert.equal(fs.readFileSync(snapshot, "utf8"), "snapshot\n", "the one just checked");
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("restore data: the old data is moved aside, the snapshot restored with the member's name, a new token and bumped revisions", () => {
  const data = restoreDataScript(members[1], members, settings, "local-etcd-restore-abcd1234");
  parses(data);
  assert.match(data, /mv \/var\/lib\/etcd "\$aside"/);
  assert.match(data, /--name cp-2 --data-dir \/var\/lib\/etcd --initial-cluster cp-1=https:\/\/10.0.0.11:2380,cp-2=https:\/\/10.0.0.12:2380,cp-3=https:\/\/10.0.0.13:2380/);
  assert.match(data, /--initial-cluster-token local-etcd-restore-abcd1234 --initial-advertise-peer-urls https:\/\/10.0.0.12:2380 --bump-revision 1000000000 --mark-compacted/);
  assert.match(data, new RegExp(`touch ${RESTORE_START_PENDING}`), "a new machine's member is started by its own step");
});

test("a restored member on a new machine is started by its step without waiting (the others must start too)", () => {
  const update = etcdUpdateScript(10, 2379);
  parses(update);
  const pending = update.indexOf(`if [ -f ${RESTORE_START_PENDING} ]`);
  assert.ok(pending >= 0 && pending < update.indexOf("No data here"), "checked before anything else");
  assert.match(update, /systemctl restart --no-block etcd.service\n  echo "hakube: restored etcd member starting"/);
});
