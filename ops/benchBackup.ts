// The backup and restore benchmark on the running local stack (npm run bench:backup):
//   1. about 10,000 objects: ConfigMaps of 1 KiB written through the endpoint
//   2. a backup on demand: its duration, the snapshot's size, encrypted size and key count
//   3. the restore: every member's data destroyed while a probe writes, then the restore's
//      `pulumi up --refresh`; RTO is the time from that `pulumi up` to the first /readyz
//      answered through the endpoint; RPO is the window of acknowledged writes lost (from
//      the first lost one to the last one acknowledged before the data was destroyed)
// Results go to bench/results/backup.json. Everything it writes is deleted at the end, and
// the restore request removed from the stack config.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { pulumi, pulumiAsync, ROOT, stackOutputs } from "./localStack";
import { backupNow, destroyEtcdData, setRestoreRequest } from "./backups";
import { Cluster, cluster, sleep, waitFor, waitHealthy } from "./scenarios";
import { httpsRequest, lostWrites, Probe } from "./probe";

const OBJECTS = Number(process.env.HAKUBE_BENCH_OBJECTS ?? 10_000);
const NAMESPACE = "hakube-bench-backup";
const PROBE = "rpo";
const say = (m: string) => console.log(`hakube: bench:backup: ${m}`);

async function createAll(c: Cluster, count: number): Promise<number> {
  const started = Date.now();
  const payload = "x".repeat(1024);
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < count) {
      const n = next++;
      const body = JSON.stringify({ apiVersion: "v1", kind: "ConfigMap", metadata: { name: `obj-${n}` }, data: { n: String(n), payload } });
      let done = false;
      for (let attempt = 0; attempt < 3 && !done; attempt++) {
        const a = await httpsRequest(c.outputs.endpoint, c.client, "POST", `/api/v1/namespaces/${NAMESPACE}/configmaps`, { body, timeoutMs: 10_000 }).catch(() => undefined);
        done = a?.status === 201 || a?.status === 409;
      }
      if (!done) failed++;
      if (n > 0 && n % 2000 === 0) say(`${n} of ${count} objects written`);
    }
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  if (failed) throw new Error(`${failed} of ${count} objects could not be written`);
  return (Date.now() - started) / 1000;
}

async function countObjects(c: Cluster): Promise<number> {
  let total = 0;
  let token = "";
  for (let page = 0; page < 100; page++) {
    const a = await httpsRequest(c.outputs.endpoint, c.client, "GET", `/api/v1/namespaces/${NAMESPACE}/configmaps?limit=2000${token ? `&continue=${encodeURIComponent(token)}` : ""}`, { timeoutMs: 30_000 });
    if (a.status !== 200) throw new Error(`listing the objects: HTTP ${a.status}`);
    const list = JSON.parse(a.body);
    total += list.items.filter((i: any) => i.metadata.name.startsWith("obj-")).length;
    token = list.metadata?.continue ?? "";
    if (!token) return total;
  }
  throw new Error("more than 100 pages of objects");
}

async function main(): Promise<void> {
  const outputs = stackOutputs();
  if (!outputs.backupStorage) throw new Error("the stack has no backup storage (backups are off?)");
  const c = cluster(outputs);
  const results: Record<string, unknown> = {
    machine: { date: new Date().toISOString(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    objects: OBJECTS,
  };
  try {
    await waitHealthy(c);
    const ns = await httpsRequest(outputs.endpoint, c.client, "POST", "/api/v1/namespaces", { body: JSON.stringify({ apiVersion: "v1", kind: "Namespace", metadata: { name: NAMESPACE } }) });
    if (ns.status !== 201 && ns.status !== 409) throw new Error(`creating namespace ${NAMESPACE}: HTTP ${ns.status} ${ns.body.slice(0, 200)}`);
    say(`writing ${OBJECTS} ConfigMaps of 1 KiB through ${outputs.endpoint} (16 at a time)`);
    results.writeSeconds = await createAll(c, OBJECTS);

    // A probe writes before, during and after the backup, until the data is destroyed.
    const probe = new Probe({ name: PROBE, kind: "per-request", endpoint: outputs.endpoint, credentials: c.client, namespace: NAMESPACE, intervalMs: 100, maxRequests: 20_000, maxDurationMs: 900_000 });
    probe.start();
    await sleep(5000);
    say("backup on demand (npm run backups -- now)");
    const started = Date.now();
    const backup = await backupNow(c.cred, outputs);
    const member = outputs.hosts.find((h) => h.name === backup.member);
    const line = member ? c.cred.ssh(member.address, `journalctl -u hakube-etcd-backup.service --no-pager -o cat | grep -F 'backup ${backup.name}:' | tail -n 1`).stdout : "";
    const programSeconds = Number(/, (\d+) s$/m.exec(line)?.[1] ?? NaN);
    results.backup = {
      name: backup.name,
      onDemandSeconds: (Date.now() - started) / 1000,
      programSeconds: Number.isFinite(programSeconds) ? programSeconds : null,
      dbSizeBytes: backup.dbSize,
      encryptedBytes: backup.size,
      keys: backup.totalKey,
      revision: backup.revision,
    };
    say(`backup ${backup.name}: ${(results.backup as { onDemandSeconds: number }).onDemandSeconds.toFixed(1)} s, ${backup.dbSize} bytes, ${backup.size} encrypted, ${backup.totalKey} keys`);
    await sleep(10_000);

    say("every member's data destroyed (etcd stopped, data directory deleted)");
    const destroyedAt = Date.now();
    await destroyEtcdData(c.cred, outputs);
    await sleep(2000);
    const report = await probe.stop();

    say(`restore: pulumi up --refresh with hakube:restoreFrom=${backup.name}`);
    setRestoreRequest(backup.name);
    const upStarted = Date.now();
    const up = pulumiAsync(["up", "--yes", "--skip-preview", "--refresh"], 1_500_000);
    let upEnded: number | undefined;
    void up.then(() => (upEnded = Date.now()));
    // RTO: until /readyz answers through the endpoint, also when that is after the up ended.
    let lastNotReady = "";
    const ready = await waitFor("/readyz through the endpoint", 1_800_000, 500, async () => {
      const a = await httpsRequest(outputs.endpoint, c.client, "GET", "/readyz?verbose", { timeoutMs: 2000 }).catch((e: Error) => ({ status: 0, body: e.message }));
      if (a.status === 200) return Date.now();
      if (upEnded) lastNotReady = a.body.split("\n").filter((l) => l.startsWith("[-]")).join(", ") || a.body.slice(0, 200);
      return undefined;
    });
    const r = await up;
    if (r.status !== 0) throw new Error(`the restore's pulumi up failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-1000)}`);
    await waitHealthy(c);
    const lost = new Set(await lostWrites(outputs.endpoint, c.client, NAMESPACE, PROBE, report.acknowledgedWrites));
    const restoredCount = await countObjects(c);
    // When each acknowledged write was sent; the lost ones are the newest.
    const writesAt = new Map(report.records.filter((x) => x.op === "write" && x.ok && x.name).map((x) => [x.name!, x.at]));
    const lostNames = report.acknowledgedWrites.filter((n) => lost.has(n));
    const firstLost = lostNames.length ? Math.min(...lostNames.map((n) => writesAt.get(n) ?? Infinity)) : undefined;
    const lastAcked = Math.max(...report.acknowledgedWrites.map((n) => writesAt.get(n) ?? 0));
    results.restore = {
      upSeconds: r.seconds,
      rtoSeconds: (ready.value - upStarted) / 1000,
      readyAfterUpEndedSeconds: upEnded !== undefined && ready.value > upEnded ? (ready.value - upEnded) / 1000 : 0,
      notReadyAfterUpBecause: lastNotReady || undefined,
      objectsBack: restoredCount,
      acknowledgedWrites: report.acknowledgedWrites.length,
      acknowledgedWritesLost: lostNames.length,
      rpoSeconds: firstLost !== undefined ? (lastAcked - firstLost) / 1000 : 0,
      lostAfterBackupOnly: lostNames.every((n) => (writesAt.get(n) ?? 0) >= started),
      secondsFromBackupToDataLoss: (destroyedAt - started) / 1000,
    };
  } finally {
    setRestoreRequest();
    const clean = pulumi(["up", "--yes", "--skip-preview"], 900_000);
    if (clean.status !== 0) console.error(`hakube: bench:backup: the run without the restore request failed:\n${clean.stdout.slice(-2000)}`);
    await httpsRequest(outputs.endpoint, c.client, "DELETE", `/api/v1/namespaces/${NAMESPACE}`, { timeoutMs: 30_000 }).catch(() => undefined);
    c.cred.dispose();
  }
  const out = path.join(ROOT, "bench", "results", "backup.json");
  fs.writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(JSON.stringify(results, null, 2));
  say(`results in ${path.relative(ROOT, out)}`);
}

main().catch((e) => {
  console.error(`hakube: bench:backup: ${(e as Error).message}`);
  process.exitCode = 1;
});
