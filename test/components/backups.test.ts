import assert from "node:assert/strict";
import { before, test } from "node:test";
import * as pulumi from "@pulumi/pulumi";
import { byName, decodeBundle, ETCD_DIGEST, hosts, isSecret, nameOf, program, recorded, valueOf } from "../helpers/mocks";
import { BACKUP_USER_CONF, HaControlPlane, planControlPlane } from "../../components";

// Two control planes: one with backups, one that also restores in this `pulumi up`.
const LOOPBACK_PORT = 9;
let withBackups: HaControlPlane;
before(async () => {
  [withBackups] = await program(() => {
    const storage = {
      endpoint: `https://127.0.0.1:${LOOPBACK_PORT}`, // nothing listens: reading the last backup fails on loopback
      bucket: "hakube-backups",
      prefix: "test/etcd",
      credentials: { accessKeyId: pulumi.secret("AKIDEXAMPLE"), secretAccessKey: pulumi.secret("very-secret-key") },
      caCertificate: "-----BEGIN CERTIFICATE-----\nstorage\n-----END CERTIFICATE-----\n",
    };
    return [
      new HaControlPlane("b3", {
        controlPlaneHosts: hosts(3),
        loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
        binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
        backups: { storage, intervalMinutes: 15, keep: 10 },
      }),
      new HaControlPlane("r3", {
        controlPlaneHosts: hosts(3, "cp", 110),
        loadBalancer: { keepalived: { virtualIp: "10.0.0.200" } },
        binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } },
        backups: { storage, restore: { from: "latest" } },
      }),
    ];
  });
});

const deps = (name: string) => byName(name).dependsOn.map(nameOf);

test("backups: one step per etcd host after etcd is ready, with the program, its timer and the storage settings", async () => {
  const steps = recorded.filter((r) => /^b3-backups-cp-\d$/.test(r.name));
  assert.equal(steps.length, 3);
  for (const s of steps) assert.ok(deps(s.name).includes("b3-etcd-ready"), `${s.name} waits for etcd`);
  const files = decodeBundle(await valueOf<string>(steps[0].props.stdin));
  assert.equal(files.get("/usr/local/sbin/hakube-etcd-backup")?.mode, "0755");
  assert.match(files.get("/etc/systemd/system/hakube-etcd-backup.timer")!.content, /OnUnitActiveSec=15min/);
  const env = files.get("/etc/hakube/backup/backup.env")!.content;
  assert.match(env, /HAKUBE_BACKUP_ENDPOINT=https:\/\/127.0.0.1:9\n/);
  assert.match(env, /HAKUBE_BACKUP_KEEP=10\n/);
  assert.match(env, /HAKUBE_BACKUP_CLUSTER=[0-9a-f]{16}\n/);
  assert.doesNotMatch(env, /very-secret-key|AKIDEXAMPLE/, "no credential in the plain settings");
  // The credentials: a 0600 file, in the secret bundle only; the hosts get the backup certificate, never its key.
  assert.equal(files.get(BACKUP_USER_CONF)?.mode, "0600");
  assert.equal(await isSecret(steps[0].props.stdin), true);
  assert.ok(![...files.keys()].some((p) => /backup\.key/.test(p)), "no backup key on a host without a restore");
  assert.equal(await isSecret(withBackups.backups!.backupKey), true);
  // The signing key (0600, so secret) and its public half, which a restore checks with.
  assert.equal(files.get("/etc/hakube/backup/signing.key")?.mode, "0600");
  assert.equal(files.get("/etc/hakube/backup/signing.pub")?.mode, "0644");
  assert.equal(files.get("/etc/hakube/backup/signing.pub")?.content, await valueOf<string>(withBackups.backups!.backupVerifyKey));
  assert.match(await valueOf<string>(byName(steps[0].name).props.create), /#   \/etc\/hakube\/backup\/signing\.key \(secret\)/, "listed by path only");
});

test("restore: check on every etcd host, then stop the API side, then replace the data; etcd's own steps, the finish and the apiservers follow", () => {
  const etcdHosts = ["cp-1", "cp-2", "cp-3"];
  for (const h of etcdHosts) {
    assert.ok(deps(`r3-etcd-restore-data-${h}`).includes("r3-etcd-restore-check-cp-1"));
    for (const c of etcdHosts) assert.ok(deps(`r3-etcd-restore-stop-${c}`).includes(`r3-etcd-restore-check-${c}`), `stop waits for every check`);
    for (const c of etcdHosts) assert.ok(deps(`r3-etcd-restore-data-${h}`).includes(`r3-etcd-restore-stop-${c}`), "data waits for every stop");
    assert.ok(deps(`r3-etcd-${h}`).includes(`r3-etcd-restore-data-${h}`), "the member's step follows the restore");
    assert.ok(deps(`r3-apiserver-${h}`).includes("r3-etcd-restore-finish"), "apiservers start after the stale entries are gone");
    assert.ok(deps(`r3-etcd-restore-start-${h}`).includes("r3-etcd-restore-finish"));
  }
  assert.ok(deps("r3-etcd-restore-check-cp-2").includes("r3-etcd-restore-check-cp-1"), "the first host resolves latest for the others");
  assert.ok(deps("r3-etcd-restore-finish").includes("r3-etcd-ready"));
  // The plain restore steps carry the request in their triggers: the same request again runs nothing.
  const triggers = byName("r3-etcd-restore-data-cp-1").props.triggers;
  assert.equal(triggers.length, 1);
  assert.equal(byName("r3-etcd-restore-stop-cp-1").props.triggers[0], triggers[0]);
  // The gates once more after the start, before the up is done and before the first backup.
  for (const h of ["cp-1", "cp-2", "cp-3"]) assert.ok(deps("r3-restore-ready").includes(`r3-etcd-restore-start-${h}`));
  assert.equal(byName("r3-restore-ready").props.triggers[0], triggers[0]);
  assert.ok(deps("r3-backups-cp-1").includes("r3-restore-ready"), "the first backup after a restore waits for the restored control plane");
});

test("restore: the ready gate checks every apiserver and its Service entry, Leases renewed since, and /readyz through the VIP", async () => {
  const script = await valueOf<string>(byName("r3-restore-ready").props.create);
  for (const a of ["10.0.0.111", "10.0.0.112", "10.0.0.113"]) {
    assert.match(script, new RegExp(`kube-apiserver ${a.replace(/\./g, "\\.")} /readyz`));
    assert.match(script, new RegExp(`kubernetes Service lists ${a.replace(/\./g, "\\.")}`));
  }
  assert.match(script, /hakube_lease_fresh \S+ kube-controller-manager 30/);
  assert.match(script, /hakube_lease_fresh \S+ kube-scheduler 30/);
  assert.match(script, /\/readyz through 10\.0\.0\.200:/);
});

test("restore: the key is written for the check only (0600, secret), and the data step restores with a new token and bumped revisions", async () => {
  const files = decodeBundle(await valueOf<string>(byName("r3-etcd-restore-check-cp-1").props.stdin));
  assert.equal(files.get("/var/lib/hakube/restore/backup.key")?.mode, "0600");
  assert.equal(await isSecret(byName("r3-etcd-restore-check-cp-1").props.stdin), true);
  // The check verifies with the public half of the signing key; the signing key itself is
  // for the hosts that make backups only.
  assert.equal(files.get("/etc/hakube/backup/signing.pub")?.mode, "0644");
  assert.match(files.get("/etc/hakube/backup/signing.pub")!.content, /mock-r3-backups-signing-key/);
  assert.equal(files.has("/etc/hakube/backup/signing.key"), false);
  const data = await valueOf<string>(byName("r3-etcd-restore-data-cp-2").props.create);
  assert.match(data, /etcdutl snapshot restore \/var\/lib\/hakube\/restore\/snapshot.db --name cp-2 /);
  assert.match(data, /--initial-cluster cp-1=https:\/\/10.0.0.111:2380,cp-2=https:\/\/10.0.0.112:2380,cp-3=https:\/\/10.0.0.113:2380/);
  assert.match(data, /--initial-cluster-token r3-etcd-restore-[0-9a-f]{8} /);
  assert.match(data, /--bump-revision 1000000000 --mark-compacted/);
  assert.match(data, /before-restore-/, "the old data is moved aside, not deleted");
  assert.doesNotMatch(data, /PRIVATE KEY/);
});

test("backups and restore: bad input is refused at preview, naming the argument", () => {
  const base = {
    controlPlaneHosts: hosts(3),
    loadBalancer: { keepalived: { virtualIp: "10.0.0.100" } },
  } as const;
  const storage = { endpoint: "https://x", bucket: "b", credentials: "instance-profile" as const };
  assert.doesNotThrow(() => planControlPlane(undefined, { ...base, backups: { storage } }));
  const make = (backups: any) => () =>
    new HaControlPlane("bad", { ...base, binaries: { etcd: { kind: "release", digest: ETCD_DIGEST } }, backups });
  assert.throws(make({ storage, intervalMinutes: 0 }), /backups\.intervalMinutes.*0.*an integer from 1 to 1440/);
  assert.throws(make({ storage, keep: 1000 }), /backups\.keep.*1000.*an integer from 1 to 400/);
  assert.throws(make({ storage: { ...storage, prefix: "/abs/" } }), /backups\.storage\.prefix/);
  assert.throws(make({ storage, restore: { from: "yesterday" } }), /backups\.restore\.from.*yesterday.*"latest" or a backup name/);
});

test("backups: the last backup is read from storage as the program runs; a storage that does not answer is an error in it, not a failed program", async () => {
  const last = await valueOf<any>(withBackups.backups!.lastBackup!);
  assert.equal(last.backup, undefined);
  // Refused at once, or (on a machine so busy that the event loop stalls past the timeout)
  // reported as no answer: either way an error naming the storage, in the output.
  assert.match(last.error, /ECONNREFUSED|connect|no answer from 127\.0\.0\.1:9 /);
  assert.ok(Date.parse(last.checkedAt) > 0);
  assert.equal(await isSecret(withBackups.backups!.lastBackup!), false, "the summary is no secret (the access key only signs the request)");
});
