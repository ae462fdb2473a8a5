// The backup program against the real things, on loopback only: an etcd member, a
// versitygw S3 server with TLS (both from the toolchain cache), openssl and curl.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as path from "path";
import {
  BACKUP_DIR,
  BACKUP_STATE_DIR,
  renderBackupEnv,
  renderBackupProgram,
  renderUserConf,
} from "../../components/backup/render";
import { readLastBackup } from "../../components/backup/lastBackup";
import { run, tempDir } from "../helpers/tools";

const TOOLCHAIN = process.env.HAKUBE_TOOLCHAIN_DIR ?? "/var/cache/hakube/toolchain";
const BIN = path.join(TOOLCHAIN, "bin");
const dir = tempDir("backup");
const base = 30000 + (process.pid % 10000) * 3;
const [etcdPort, peerPort, s3Port] = [base, base + 1, base + 2];
const children: ChildProcess[] = [];
const env = { ...process.env, PATH: `${BIN}:${process.env.PATH}` };
const ACCESS = "hakubetestaccess";
const SECRET = "hakube-test-secret/with+chars";

function etcdctl(...args: string[]) {
  return run(path.join(BIN, "etcdctl"), [`--endpoints=http://127.0.0.1:${etcdPort}`, ...args], { env });
}

function openssl(...args: string[]) {
  const r = run("openssl", args);
  assert.equal(r.status, 0, r.stderr);
}

/** The program with its paths moved into the test's folder (the same text otherwise). */
function program(cluster = "cluster-a", keep = 2): string {
  const root = path.join(dir, "root");
  for (const d of ["etc/hakube/backup", "etc/etcd", "var/lib/hakube/backup", "run"]) fs.mkdirSync(path.join(root, d), { recursive: true });
  fs.writeFileSync(
    path.join(root, "etc/hakube/backup/backup.env"),
    renderBackupEnv({
      storage: {
        endpoint: `https://127.0.0.1:${s3Port}`,
        bucket: "backups",
        prefix: "test/etcd",
        region: "us-east-1",
        credentials: "static",
        customCa: true,
      },
      clusterId: cluster,
      intervalMinutes: 30,
      keep,
    }).replace(BACKUP_DIR, path.join(root, "etc/hakube/backup")),
  );
  fs.writeFileSync(path.join(root, "etc/hakube/backup/s3-user.conf"), renderUserConf(ACCESS, SECRET), { mode: 0o600 });
  fs.copyFileSync(path.join(dir, "s3.crt"), path.join(root, "etc/hakube/backup/storage-ca.crt"));
  fs.copyFileSync(path.join(dir, "backup.crt"), path.join(root, "etc/hakube/backup/recipient.crt"));
  // The stack's signing key (made by the test: no key material is tracked), and its public half.
  fs.copyFileSync(path.join(dir, "signing.key"), path.join(root, "etc/hakube/backup/signing.key"));
  fs.chmodSync(path.join(root, "etc/hakube/backup/signing.key"), 0o600);
  fs.copyFileSync(path.join(dir, "signing.pub"), path.join(root, "etc/hakube/backup/signing.pub"));
  fs.writeFileSync(path.join(root, "etc/etcd/etcdctl.env"), `ETCDCTL_ENDPOINTS=http://127.0.0.1:${etcdPort}\n`);
  fs.writeFileSync(
    path.join(root, "etc/etcd/member.env"),
    `HAKUBE_ETCD_NAME=m1\nHAKUBE_ETCD_CLIENT_URL=http://127.0.0.1:${etcdPort}\n`,
  );
  const text = renderBackupProgram()
    .split(BACKUP_DIR).join(path.join(root, "etc/hakube/backup"))
    .split(BACKUP_STATE_DIR).join(path.join(root, "var/lib/hakube/backup"))
    .split("/etc/etcd/").join(path.join(root, "etc/etcd") + "/")
    .split("/run/hakube-etcd-backup").join(path.join(root, "run/hakube-etcd-backup"));
  const file = path.join(dir, `hakube-etcd-backup-${cluster}-${keep}`);
  fs.writeFileSync(file, text, { mode: 0o755 });
  return file;
}

function backup(args: string[], opts: { cluster?: string; keep?: number; key?: string } = {}) {
  return run("bash", [program(opts.cluster, opts.keep), ...args], {
    env: { ...env, ...(opts.key ? { HAKUBE_BACKUP_KEY_FILE: opts.key, HAKUBE_BACKUP_KEY_CERT: path.join(dir, opts.key.includes("other") ? "other.crt" : "backup.crt") } : {}) },
  });
}

/** A request to storage with its write key, as whoever holds that key (the planted-backup test's attacker). */
function s3(method: string, key: string, file: { body?: string; out?: string } = {}): void {
  const r = run("curl", [
    "-sS", "--fail", "--max-time", "30", "-K", path.join(dir, "root/etc/hakube/backup/s3-user.conf"), "--cacert", path.join(dir, "s3.crt"),
    "--aws-sigv4", "aws:amz:us-east-1:s3", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD", "-X", method,
    ...(file.body ? ["-T", file.body] : []), ...(file.out ? ["-o", file.out] : ["-o", "/dev/null"]),
    `https://127.0.0.1:${s3Port}/backups/test/etcd/${key}`,
  ]);
  assert.equal(r.status, 0, `${method} ${key}: ${r.stderr}`);
}

/** What the runs leave in the staging places: nothing, once a run has ended (whatever its end). */
function leftovers(): string[] {
  const root = path.join(dir, "root");
  return [
    ...fs.readdirSync(path.join(root, "var/lib/hakube/backup")).filter((f) => !/^last-(success|failure)\.json$/.test(f)).map((f) => `var/lib/hakube/backup/${f}`),
    ...fs.readdirSync(path.join(root, "run")).map((f) => `run/${f}`),
  ];
}

async function waitFor(what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 80; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.fail(`${what} did not come up within 20 s`);
}

before(async () => {
  // The storage's TLS certificate, and the backup key pair (a certificate to encrypt to).
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=127.0.0.1",
    "-addext", "subjectAltName=IP:127.0.0.1", "-days", "1", "-keyout", path.join(dir, "s3.key"), "-out", path.join(dir, "s3.crt"));
  for (const k of ["backup", "other"]) {
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", `/CN=hakube-${k}`, "-days", "1",
      "-keyout", path.join(dir, `${k}.key`), "-out", path.join(dir, `${k}.crt`));
  }
  // The stack's signing key pair, and an attacker's.
  for (const k of ["signing", "attacker"]) {
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path.join(dir, `${k}.key`));
    openssl("pkey", "-in", path.join(dir, `${k}.key`), "-pubout", "-out", path.join(dir, `${k}.pub`));
  }
  fs.mkdirSync(path.join(dir, "s3data", "backups"), { recursive: true });
  children.push(
    spawn(path.join(BIN, "versitygw"), ["--port", `127.0.0.1:${s3Port}`, "--cert", path.join(dir, "s3.crt"), "--key", path.join(dir, "s3.key"), "posix", path.join(dir, "s3data")], {
      env: { ...env, ROOT_ACCESS_KEY_ID: ACCESS, ROOT_SECRET_ACCESS_KEY: SECRET },
      stdio: "ignore",
    }),
    spawn(path.join(BIN, "etcd"), [
      "--name", "m1", "--data-dir", path.join(dir, "etcd"),
      "--listen-client-urls", `http://127.0.0.1:${etcdPort}`, "--advertise-client-urls", `http://127.0.0.1:${etcdPort}`,
      "--listen-peer-urls", `http://127.0.0.1:${peerPort}`, "--initial-advertise-peer-urls", `http://127.0.0.1:${peerPort}`,
      "--initial-cluster", `m1=http://127.0.0.1:${peerPort}`,
    ], { env, stdio: "ignore" }),
  );
  await waitFor("etcd", () => etcdctl("endpoint", "health").status === 0);
  await waitFor("versitygw", () => run("curl", ["-sS", "--cacert", path.join(dir, "s3.crt"), "-o", "/dev/null", `https://127.0.0.1:${s3Port}/`]).status === 0);
});

after(() => {
  for (const c of children) c.kill("SIGKILL");
  fs.rmSync(dir, { recursive: true, force: true });
});

test("backup program: a snapshot is checked, encrypted and uploaded with its manifest; retention keeps the newest", () => {
  for (let i = 0; i < 50; i++) assert.equal(etcdctl("put", `/registry/test/k${i}`, `value-${i}`).status, 0);
  const names: string[] = [];
  for (let i = 0; i < 3; i++) {
    assert.equal(etcdctl("put", "/registry/test/round", String(i)).status, 0);
    const r = backup(["run"]);
    assert.equal(r.status, 0, r.stderr);
    const m = /backup (etcd-\d{8}T\d{6}Z-r\d+): revision \d+/.exec(r.stdout);
    assert.ok(m, r.stdout);
    names.push(m[1]);
  }
  const listed = backup(["list"]);
  assert.equal(listed.status, 0, listed.stderr);
  const manifests = listed.stdout.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(manifests.map((m) => m.name), names.slice(1), "keep 2: the oldest was removed");
  const latest = JSON.parse(backup(["latest"]).stdout);
  assert.equal(latest.name, names[2]);
  assert.equal(latest.cluster, "cluster-a");
  assert.ok(latest.totalKey >= 51 && latest.revision > 50 && latest.size > 0, JSON.stringify(latest));
  // What storage holds is ciphertext: no key or value of etcd in it.
  const stored = fs.readFileSync(path.join(dir, "s3data", "backups", "test", "etcd", `${names[2]}.db.cms`));
  assert.equal(stored.includes(Buffer.from("value-7")), false);
  assert.equal(fs.existsSync(path.join(dir, "s3data", "backups", "test", "etcd", `${names[0]}.db.cms`)), false);
  // Each backup's manifest is signed (the signature goes with it when retention removes it).
  assert.ok(fs.existsSync(path.join(dir, "s3data", "backups", "test", "etcd", `${names[2]}.sig`)));
  assert.equal(fs.existsSync(path.join(dir, "s3data", "backups", "test", "etcd", `${names[0]}.sig`)), false);
  assert.deepEqual(leftovers(), [], "nothing staged is left after a success");
});

test("last backup: the stack program's signed S3 reader finds the newest manifest; a wrong secret or a missing bucket is an error, not a throw", async () => {
  const latest = JSON.parse(backup(["latest"]).stdout);
  const access = { endpoint: `https://127.0.0.1:${s3Port}`, bucket: "backups", prefix: "test/etcd", region: "us-east-1", accessKeyId: ACCESS, secretAccessKey: SECRET, caCertificate: fs.readFileSync(path.join(dir, "s3.crt"), "utf8") };
  const last = await readLastBackup(access);
  assert.equal(last.error, undefined);
  assert.equal(last.backup?.name, latest.name);
  assert.equal(last.backup?.revision, latest.revision);
  assert.equal(last.backup?.size, latest.size);
  assert.ok(last.ageSeconds !== undefined && last.ageSeconds >= 0 && last.ageSeconds < 600);
  assert.match((await readLastBackup({ ...access, secretAccessKey: "wrong" })).error ?? "", /HTTP 403/);
  assert.match((await readLastBackup({ ...access, bucket: "nope" })).error ?? "", /HTTP 404/);
  assert.deepEqual((await readLastBackup({ ...access, prefix: "empty/etcd" })).backup, undefined);
});

test("backup program: fetch decrypts and checks a backup, and etcdutl restores every key from it", () => {
  const out = path.join(dir, "fetched.db");
  const r = backup(["fetch", "latest", out], { key: path.join(dir, "backup.key") });
  assert.equal(r.status, 0, r.stderr);
  const restored = path.join(dir, "restored");
  const rr = run(path.join(BIN, "etcdutl"), ["snapshot", "restore", out, "--data-dir", restored, "--name", "m1",
    "--initial-cluster", "m1=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:1",
    "--bump-revision", "1000000000", "--mark-compacted"], { env });
  assert.equal(rr.status, 0, rr.stderr);
  const status = run(path.join(BIN, "etcdutl"), ["snapshot", "status", out, "-w", "json"], { env });
  assert.ok(JSON.parse(status.stdout).totalKey >= 51);
});

test("backup program: refuses a missing backup, a wrong key, a corrupt or truncated file and another cluster's backup, writing nothing", () => {
  const out = path.join(dir, "refused.db");
  const key = path.join(dir, "backup.key");
  const expect = (r: ReturnType<typeof backup>, message: RegExp) => {
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stderr, message);
    assert.equal(fs.existsSync(out), false, "nothing written");
  };
  expect(backup(["fetch", "etcd-20000101T000000Z-r1", out], { key }), /backup 'etcd-20000101T000000Z-r1' does not exist/);
  expect(backup(["fetch", "../../etc/passwd", out], { key }), /is not a backup name/);
  expect(backup(["fetch", "latest", out], { key: path.join(dir, "other.key") }), /was encrypted to another backup key \(certificate serial [0-9A-F]+; this key's is [0-9A-F]+\)/);
  const mismatched = run("bash", [program(), "fetch", "latest", out], {
    env: { ...env, HAKUBE_BACKUP_KEY_FILE: path.join(dir, "other.key"), HAKUBE_BACKUP_KEY_CERT: path.join(dir, "backup.crt") },
  });
  expect(mismatched, /the key given does not belong to the backup certificate/);
  expect(backup(["fetch", "latest", out], { key, cluster: "cluster-b" }), /is of another cluster \(cluster-a, this is cluster-b\)/);
  const latest = JSON.parse(backup(["latest"]).stdout).name as string;
  const object = path.join(dir, "s3data", "backups", "test", "etcd", `${latest}.db.cms`);
  const good = fs.readFileSync(object);
  try {
    const corrupt = Buffer.from(good);
    corrupt[Math.floor(corrupt.length / 2)] ^= 1;
    fs.writeFileSync(object, corrupt);
    expect(backup(["fetch", "latest", out], { key }), /does not match its signed manifest \(the encrypted file's sha256 differs\): the file is corrupt, truncated or replaced/);
    fs.writeFileSync(object, good.subarray(0, Math.floor(good.length / 3)));
    expect(backup(["fetch", "latest", out], { key }), /does not match its signed manifest \(the encrypted file's sha256 differs\): the file is corrupt, truncated or replaced/);
  } finally {
    fs.writeFileSync(object, good);
  }
  assert.deepEqual(leftovers(), [], "nothing staged is left after a refusal");
  assert.equal(backup(["fetch", "latest", out], { key }).status, 0, "the intact file is accepted again");
  fs.rmSync(out);
});

test("backup program: a planted backup (a real snapshot encrypted to the backup certificate, a manifest that matches it) is refused unless this stack signed it; the genuine one is accepted", () => {
  const out = path.join(dir, "planted-out.db");
  const key = path.join(dir, "backup.key");
  const genuine = JSON.parse(backup(["latest"]).stdout);
  // What whoever may write the prefix can make: an etcd snapshot of their choosing (here with
  // a key of their own), encrypted to the public backup certificate, and a manifest naming
  // this cluster and the certificate's serial with the right sha256, under a name that sorts last.
  assert.equal(etcdctl("put", "/registry/clusterrolebindings/planted", "backdoor").status, 0);
  const snap = path.join(dir, "planted.db");
  assert.equal(etcdctl("snapshot", "save", snap).status, 0);
  assert.equal(etcdctl("del", "/registry/clusterrolebindings/planted").status, 0);
  const cms = path.join(dir, "planted.cms");
  openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", "-in", snap, "-out", cms, path.join(dir, "backup.crt"));
  const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
  const name = "etcd-99991231T000000Z-r1";
  const manifest = path.join(dir, "planted.json");
  fs.writeFileSync(
    manifest,
    JSON.stringify({ ...genuine, name, time: "9999-12-31T00:00:00Z", size: fs.statSync(cms).size, dbSize: fs.statSync(snap).size, sha256: sha(snap), cmsSha256: sha(cms) }) + "\n",
  );
  const refused = (r: ReturnType<typeof backup>, message: RegExp) => {
    assert.notEqual(r.status, 0, `the planted backup was accepted: ${r.stdout}`);
    assert.match(r.stderr, message);
    assert.equal(fs.existsSync(out), false, "nothing written");
  };
  s3("PUT", `${name}.db.cms`, { body: cms });
  s3("PUT", `${name}.json`, { body: manifest });
  try {
    // Unsigned: as latest and by its name.
    refused(backup(["fetch", "latest", out], { key }), /backup 'etcd-99991231T000000Z-r1' is not signed/);
    refused(backup(["fetch", name, out], { key }), /backup 'etcd-99991231T000000Z-r1' is not signed/);
    // Signed, with another key.
    const sig = path.join(dir, "planted.sig");
    openssl("dgst", "-sha256", "-sign", path.join(dir, "attacker.key"), "-out", sig, manifest);
    s3("PUT", `${name}.sig`, { body: sig });
    refused(backup(["fetch", "latest", out], { key }), /backup 'etcd-99991231T000000Z-r1' does not carry a valid signature of this stack's backup signing key/);
    // The genuine backup's signed manifest and its ciphertext, copied under the later name:
    // what is signed names the other backup.
    for (const ext of [".json", ".sig", ".db.cms"]) {
      s3("GET", `${genuine.name}${ext}`, { out: path.join(dir, `copied${ext}`) });
      s3("PUT", `${name}${ext}`, { body: path.join(dir, `copied${ext}`) });
    }
    refused(backup(["fetch", "latest", out], { key }), new RegExp(`backup 'etcd-99991231T000000Z-r1' is signed as backup '${genuine.name}'`));
    // The genuine signed manifest with another ciphertext (the planted one) under its name.
    s3("PUT", `${name}.db.cms`, { body: cms });
    s3("GET", `${genuine.name}.db.cms`, { out: path.join(dir, "genuine.cms") });
    s3("PUT", `${genuine.name}.db.cms`, { body: cms });
    try {
      refused(backup(["fetch", genuine.name, out], { key }), new RegExp(`backup '${genuine.name}' does not match its signed manifest \\(the encrypted file's sha256 differs\\)`));
    } finally {
      s3("PUT", `${genuine.name}.db.cms`, { body: path.join(dir, "genuine.cms") });
    }
  } finally {
    for (const ext of [".json", ".sig", ".db.cms"]) s3("DELETE", `${name}${ext}`);
  }
  // The genuine backup: accepted, as latest and by name.
  for (const want of ["latest", genuine.name]) {
    const r = backup(["fetch", want, out], { key });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).name, genuine.name);
    fs.rmSync(out);
  }
});

test("backup program: the snapshot key travels with RSA-OAEP (SHA-256); a PKCS#1 v1.5 backup, as made before, still decrypts", () => {
  const genuine = JSON.parse(backup(["latest"]).stdout);
  const stored = path.join(dir, "s3data", "backups", "test", "etcd", `${genuine.name}.db.cms`);
  const printed = run("openssl", ["cms", "-cmsout", "-print", "-noout", "-inform", "DER", "-in", stored]);
  assert.equal(printed.status, 0, printed.stderr);
  assert.match(printed.stdout, /keyEncryptionAlgorithm:\s*\n\s*algorithm: rsaesOaep/);
  assert.match(printed.stdout, /OBJECT\s*:sha256/);
  // The same snapshot encrypted as the program did before (PKCS#1 v1.5), signed by the
  // stack: the decryption reads the padding from the message.
  const key = path.join(dir, "backup.key");
  const plain = path.join(dir, "v15-plain.db");
  assert.equal(backup(["fetch", genuine.name, plain], { key }).status, 0);
  const cms = path.join(dir, "v15.cms");
  openssl("cms", "-encrypt", "-binary", "-aes-256-gcm", "-stream", "-outform", "DER", "-in", plain, "-out", cms, path.join(dir, "backup.crt"));
  assert.match(run("openssl", ["cms", "-cmsout", "-print", "-noout", "-inform", "DER", "-in", cms]).stdout, /algorithm: rsaEncryption/);
  const name = genuine.name.replace(/^etcd-\d{8}T\d{6}Z/, "etcd-20000102T000000Z");
  const manifest = path.join(dir, "v15.json");
  const sha = (f: string) => crypto.createHash("sha256").update(fs.readFileSync(f)).digest("hex");
  fs.writeFileSync(manifest, JSON.stringify({ ...genuine, name, size: fs.statSync(cms).size, cmsSha256: sha(cms) }) + "\n");
  const sig = path.join(dir, "v15.sig");
  openssl("dgst", "-sha256", "-sign", path.join(dir, "signing.key"), "-out", sig, manifest);
  const out = path.join(dir, "v15-out.db");
  try {
    s3("PUT", `${name}.db.cms`, { body: cms });
    s3("PUT", `${name}.sig`, { body: sig });
    s3("PUT", `${name}.json`, { body: manifest });
    const r = backup(["fetch", name, out], { key });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(sha(out), genuine.sha256);
  } finally {
    for (const ext of [".json", ".sig", ".db.cms"]) s3("DELETE", `${name}${ext}`);
    fs.rmSync(out, { force: true });
    fs.rmSync(plain, { force: true });
  }
});

test("backup program: a failed upload fails the run, says why and records the failure", () => {
  const r = run("bash", [program("cluster-a", 2), "run"], {
    env: { ...env },
  });
  assert.equal(r.status, 0, r.stderr);
  // Storage refuses these credentials.
  const conf = path.join(dir, "root/etc/hakube/backup/s3-user.conf");
  const bad = program("cluster-a", 2);
  fs.writeFileSync(conf, renderUserConf(ACCESS, "not-the-secret"), { mode: 0o600 });
  const failed = run("bash", [bad, "run"], { env });
  assert.notEqual(failed.status, 0);
  assert.match(failed.stderr, /upload of etcd-\S+ failed/);
  const recorded = JSON.parse(fs.readFileSync(path.join(dir, "root/var/lib/hakube/backup/last-failure.json"), "utf8"));
  assert.match(recorded.error, /upload of etcd-\S+ failed/);
  fs.writeFileSync(conf, renderUserConf(ACCESS, SECRET), { mode: 0o600 });
  assert.deepEqual(leftovers(), [], "nothing staged is left after a failure");
});

test("backup program: snapshots are staged on disk under the state directory, never in /run (tmpfs)", () => {
  const text = renderBackupProgram();
  assert.match(text, new RegExp(`HB_TMP=\\$\\(mktemp -d ${BACKUP_STATE_DIR}/stage\\.XXXXXX\\)`));
  assert.doesNotMatch(text, /HB_TMP=\$\(mktemp -d \/run/);
  assert.match(text, /snap=\$HB_TMP\/snapshot\.db/);
});

test("backup program: a disk without room for the snapshot and its ciphertext is refused before the snapshot, and recorded", () => {
  const fake = path.join(dir, "small-disk-bin");
  fs.mkdirSync(fake, { recursive: true });
  // df reports 1 MiB free wherever it is asked.
  fs.writeFileSync(path.join(fake, "df"), "#!/bin/sh\nprintf 'Avail\\n1048576\\n'\n", { mode: 0o755 });
  const before = backup(["latest"]).stdout;
  const r = run("bash", [program(), "run"], { env: { ...env, PATH: `${fake}:${env.PATH}` } });
  assert.notEqual(r.status, 0, r.stdout);
  assert.match(r.stderr, /not enough free space for the backup under \/\S+\/var\/lib\/hakube\/backup: \d+ MiB free, \d+ MiB needed \(the database is \d+ MiB/);
  const recorded = JSON.parse(fs.readFileSync(path.join(dir, "root/var/lib/hakube/backup/last-failure.json"), "utf8"));
  assert.match(recorded.error, /not enough free space/);
  assert.equal(backup(["latest"]).stdout, before, "nothing uploaded");
  assert.deepEqual(leftovers(), []);
});

test("backup program: a run stopped by SIGTERM mid-snapshot (systemd's timeout) leaves nothing staged", () => {
  const fake = path.join(dir, "slow-bin");
  fs.mkdirSync(fake, { recursive: true });
  fs.writeFileSync(
    path.join(fake, "etcdctl"),
    `#!/bin/bash\nif [ "$1 $2" = "snapshot save" ]; then head -c 65536 /dev/zero > "$3"; sleep 30; exit 1; fi\nexec ${path.join(BIN, "etcdctl")} "$@"\n`,
    { mode: 0o755 },
  );
  const r = run("timeout", ["-s", "TERM", "3", "bash", program(), "run"], { env: { ...env, PATH: `${fake}:${env.PATH}` } });
  assert.equal(r.status, 124, `stopped by the timeout: ${r.stderr}`);
  assert.deepEqual(leftovers(), []);
  // A stage left by a run killed outright (SIGKILL, a crash) goes once it is 4 hours old;
  // a younger one may be a run still going.
  const stages = path.join(dir, "root/var/lib/hakube/backup");
  fs.mkdirSync(path.join(stages, "stage.killed"));
  fs.mkdirSync(path.join(stages, "stage.running"));
  const fiveHoursAgo = new Date(Date.now() - 5 * 3600_000);
  fs.utimesSync(path.join(stages, "stage.killed"), fiveHoursAgo, fiveHoursAgo);
  assert.equal(backup(["latest"]).status, 0);
  assert.deepEqual(leftovers(), ["var/lib/hakube/backup/stage.running"]);
  fs.rmdirSync(path.join(stages, "stage.running"));
});

test("backup program: etcdctl's status fields are as the turn check reads them (member id, leader, learner, endpoint)", () => {
  const r = etcdctl("endpoint", "status", "-w", "fields");
  assert.equal(r.status, 0, r.stderr);
  const f = Object.fromEntries(r.stdout.trim().split("\n").map((l) => l.split(" : ")));
  assert.equal(f['"Endpoint"'], `"http://127.0.0.1:${etcdPort}"`);
  assert.equal(f['"Leader"'], f['"MemberID"'], "a single member leads");
  assert.equal(f['"IsLearner"'], "false");
  const keys = Object.keys(f);
  assert.ok(keys.indexOf('"IsLearner"') < keys.indexOf('"Endpoint"') && keys.indexOf('"Leader"') < keys.indexOf('"Endpoint"'), "the endpoint ends each record");
});

test("backup program: the turn goes to the first follower by URL; the leader and the others skip", () => {
  const fake = path.join(dir, "fake-bin");
  fs.mkdirSync(fake, { recursive: true });
  const me = `http://127.0.0.1:${etcdPort}`;
  const write = (lines: string[]) =>
    fs.writeFileSync(
      path.join(fake, "etcdctl"),
      // The cluster-wide status only: the program asks this member alone for its database size.
      `#!/bin/bash\nif [ "$1 $2 $3" = "endpoint status --cluster" ]; then\ncat <<'OUT'\n${lines.join("\n")}\nOUT\nexit 0\nfi\nexec ${path.join(BIN, "etcdctl")} "$@"\n`,
      { mode: 0o755 },
    );
  let id = 0;
  const line = (url: string, leader: boolean, learner = false) => {
    id++;
    return [`"MemberID" : ${id}`, `"Leader" : ${leader ? id : 999}`, `"IsLearner" : ${learner}`, `"Endpoint" : "${url}"`].join("\n");
  };
  const runWith = () => run("bash", [program("cluster-a", 5), "run"], { env: { ...env, PATH: `${fake}:${env.PATH}` } });
  // This member leads while a follower answers: not its turn.
  write([line(me, true), line("https://10.0.0.12:2379", false), line("https://10.0.0.13:2379", false)]);
  let r = runWith();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /not this member's turn/);
  // A learner does not count; this member is the first follower by URL: its turn.
  write([line("https://10.0.0.12:2379", true), line(me, false), line("http://127.0.0.0:1", false, true)]);
  r = runWith();
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /backup etcd-\S+: revision/);
  // The only member answering is the leader: it takes the snapshot itself.
  write([line(me, true)]);
  r = runWith();
  assert.match(r.stdout, /backup etcd-\S+: revision/);
});
