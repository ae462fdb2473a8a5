// Fault-injection scenarios on the running local stack. Each one runs two probes through
// the VIP (a new connection per request, and one long-lived HTTP/2 connection), injects
// a fault, observes the control plane, undoes the fault, waits for full recovery, and
// returns facts (for the tests to assert) and figures (for the benchmark to report).
// Faults and probes touch only the machines of this stack and the host's own links.
import * as fs from "fs";
import * as os from "os";
import { controlPlaneHosts, Credentials, etcdHosts, LocalHost, LocalOutputs, pulumiAsync, Run, runAsync, stackOutputs } from "./localStack";
import { assertSafeDestination } from "./guard";
import { EtcdEndpointStatus, EtcdHealth, hostOfEndpoint, LOAD_ETCDCTL_ENV, isEtcdLeader, readyAddresses, slowestSteps } from "./parse";
import { ClientCredentials, credentialsFromKubeconfig, deleteProbeWrites, httpsRequest, lostWrites, Probe, ProbeReport } from "./probe";
import { Evidence, evidenceAround } from "./evidence";
import { InClusterProbe, InClusterReport } from "./inCluster";

export const PROBE_NAMESPACE = "hakube-probe";

export interface Cluster {
  outputs: LocalOutputs;
  cred: Credentials;
  client: ClientCredentials;
}

export function cluster(outputs: LocalOutputs): Cluster {
  return { outputs, cred: new Credentials(outputs), client: credentialsFromKubeconfig(outputs.kubeconfig) };
}

export interface ScenarioResult {
  name: string;
  failedRequests: number;
  /** Failed requests whose answer asked to be retried (Retry-After): client-go clients send these again. */
  failedWithRetryAfter: number;
  /** Requests the HTTP/2 probe sent again after the server refused their stream unprocessed (as Go's transport does). */
  retriedUnprocessed: number;
  longestFailureMs: number;
  acknowledgedWritesLost: number;
  acknowledgedWrites: number;
  requests: number;
  slowRequests: number;
  probes: Omit<ProbeReport, "records">[];
  /** Scenario-specific observations (booleans for tests, figures for the benchmark). */
  facts: Record<string, unknown>;
  /** Probe records, for per-phase checks. */
  records: { probe: string; at: number; ok: boolean; op: string; ms: number; status?: number; error?: string; retryAfterSeconds?: number; retriedUnprocessed?: number }[];
  /**
   * The in-cluster probe's reports (a pod on a worker reading through the `kubernetes`
   * Service), on a stack with workers; its failures are not in the figures above.
   */
  inCluster?: InClusterReport[];
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until check() returns a value (not undefined), at most `timeoutMs`. */
export async function waitFor<T>(what: string, timeoutMs: number, intervalMs: number, check: () => Promise<T | undefined>): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  const attempts = Math.ceil(timeoutMs / intervalMs) + 1;
  for (let i = 0; i < attempts; i++) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return { value, ms: Date.now() - start };
    await sleep(intervalMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** GET through an address with the admin client certificate (no blocking). */
export function apiGet(c: Cluster, baseUrl: string, path: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return httpsRequest(baseUrl, c.client, "GET", path, { timeoutMs });
}

export async function ensureProbeNamespace(c: Cluster): Promise<void> {
  assertSafeDestination(c.outputs.virtualIp);
  const r = await runAsync("bash", ["-c", `KUBECONFIG=${c.cred.kubeconfig} ${kubectlPath()} create namespace ${PROBE_NAMESPACE} --dry-run=client -o yaml | KUBECONFIG=${c.cred.kubeconfig} ${kubectlPath()} apply -f -`]);
  if (r.status !== 0) throw new Error(`cannot create namespace ${PROBE_NAMESPACE}: ${r.stderr}`);
}

function kubectlPath(): string {
  return `${process.env.HAKUBE_TOOLCHAIN_DIR ?? "/var/cache/hakube/toolchain"}/bin/kubectl`;
}

/** The machine whose eth0 holds the VIP (read from the host, through the namespace). */
export async function vipHolder(c: Cluster, among: readonly LocalHost[] = c.outputs.hosts): Promise<LocalHost | undefined> {
  for (const h of among) {
    const r = await runAsync("ip", ["-n", h.netns, "-o", "-4", "addr", "show", "dev", "eth0"], { timeoutMs: 5000 });
    if (r.stdout.includes(` ${c.outputs.virtualIp}/`)) return h;
  }
  return undefined;
}

/** Where the rogue advert sender keeps its program and its process id on a machine. */
const ROGUE_VRRP = "/run/hakube-rogue-vrrp";

/**
 * Perl (every machine has perl-base) that sends VRRPv3 adverts as a rogue machine would:
 * from `src` (its own address), TTL 255 as keepalived sends them, one advert to every
 * peer per round, rounds `every` seconds apart. Arguments: src vrid priority
 * advert-centiseconds vip rounds every peer... The checksum covers the IPv4 pseudo-header
 * (RFC 5798, 5.2.8). IP_TTL takes a packed int: perl would pass "255" as three bytes.
 */
const ROGUE_VRRP_PERL = String.raw`use strict;
use Socket qw(PF_INET SOCK_RAW IPPROTO_IP IP_TTL inet_aton pack_sockaddr_in);
my ($src, $vrid, $priority, $centis, $vip, $rounds, $every, @peers) = @ARGV;
open(my $pid, ">", "${ROGUE_VRRP}.pid") or die "pid file: $!\n";
print $pid "$$\n";
close($pid);
socket(my $s, PF_INET, SOCK_RAW, 112) or die "socket: $!\n";
setsockopt($s, IPPROTO_IP, IP_TTL, pack("i", 255)) or die "IP_TTL: $!\n";
bind($s, pack_sockaddr_in(0, inet_aton($src))) or die "bind $src: $!\n";
sub ones_complement {
  my $sum = 0;
  $sum += $_ for unpack("n*", $_[0]);
  $sum = ($sum & 0xffff) + ($sum >> 16) while $sum > 0xffff;
  return ~$sum & 0xffff;
}
my $sent = 0;
for my $round (1 .. $rounds) {
  for my $peer (@peers) {
    my $head = pack("CCCCn", 0x31, $vrid, $priority, 1, $centis & 0x0fff);
    my $pseudo = inet_aton($src) . inet_aton($peer) . pack("CCn", 0, 112, 12);
    my $sum = ones_complement($pseudo . $head . pack("n", 0) . inet_aton($vip));
    send($s, $head . pack("n", $sum) . inet_aton($vip), 0, pack_sockaddr_in(0, inet_aton($peer))) or die "send to $peer: $!\n";
    $sent++;
  }
  select(undef, undef, undef, $every) if $round < $rounds;
}
print "sent $sent adverts\n";
`;

export interface RogueAdverts {
  /** The rogue machine's own address (the adverts' source). */
  readonly source: string;
  readonly virtualRouterId: number;
  readonly priority: number;
  readonly advertIntervalSeconds: number;
  readonly virtualIp: string;
  readonly peers: readonly string[];
  /** How long to send (bounded again on the machine by `timeout`). */
  readonly seconds: number;
}

/** A bash script that sends a rogue machine's VRRP adverts for `seconds`, then removes its program. */
export function rogueAdvertsScript(r: RogueAdverts): string {
  const rounds = Math.max(1, Math.ceil(r.seconds / r.advertIntervalSeconds));
  const args = [r.source, r.virtualRouterId, r.priority, Math.round(r.advertIntervalSeconds * 100), r.virtualIp, rounds, r.advertIntervalSeconds, ...r.peers];
  return `set -eu
cat > ${ROGUE_VRRP}.pl <<'HAKUBE_PERL'
${ROGUE_VRRP_PERL}HAKUBE_PERL
status=0
timeout ${Math.ceil(r.seconds) + 10} perl ${ROGUE_VRRP}.pl ${args.join(" ")} || status=$?
rm -f ${ROGUE_VRRP}.pl ${ROGUE_VRRP}.pid
exit $status`;
}

/** Stops a rogue sender still running (by its process id, checked to be the sender) and removes its files. */
export const rogueAdvertsCleanup = `pid=$(cat ${ROGUE_VRRP}.pid 2>/dev/null || true)
if [ -n "$pid" ] && grep -qa ${ROGUE_VRRP}.pl /proc/"$pid"/cmdline 2>/dev/null; then kill "$pid"; fi
rm -f ${ROGUE_VRRP}.pl ${ROGUE_VRRP}.pid`;

export interface LeaseState {
  holder: string;
  acquireTime?: string;
  renewTime?: string;
}

export async function lease(c: Cluster, name: string, baseUrl = c.outputs.endpoint): Promise<LeaseState | undefined> {
  const r = await apiGet(c, baseUrl, `/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/${name}`);
  if (r.status !== 200) return undefined;
  const spec = JSON.parse(r.body).spec ?? {};
  return { holder: spec.holderIdentity ?? "", acquireTime: spec.acquireTime, renewTime: spec.renewTime };
}

export function hostOfHolder(c: Cluster, holder: string): LocalHost | undefined {
  return c.outputs.hosts.find((h) => holder.startsWith(`${h.name}_`));
}

export async function serviceEndpoints(c: Cluster): Promise<string[] | undefined> {
  const r = await apiGet(c, c.outputs.endpoint, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dkubernetes");
  if (r.status !== 200) return undefined;
  return readyAddresses(r.body);
}

export async function apiserverReady(c: Cluster, address: string): Promise<boolean> {
  try {
    const r = await apiGet(c, `https://${address}:6443`, "/readyz", 2000);
    return r.status === 200;
  } catch {
    return false;
  }
}

/** Health of every etcd member as seen from one reachable machine. */
export async function etcdHealth(c: Cluster, from: LocalHost): Promise<Record<string, boolean> | undefined> {
  const r = await c.cred.sshAsync(from.address, `${LOAD_ETCDCTL_ENV}; etcdctl endpoint health -w json 2>/dev/null || true`, 20_000);
  if (r.status !== 0 || !r.stdout.trim()) return undefined;
  const list = JSON.parse(r.stdout) as EtcdHealth[];
  return Object.fromEntries(etcdHosts(c.outputs).map((h) => [h.name, list.some((e) => hostOfEndpoint([h], e.endpoint) && e.health)]));
}

/** The machine whose etcd member leads (asked from a reachable machine). */
export async function etcdLeader(c: Cluster, from: LocalHost): Promise<LocalHost | undefined> {
  const r = await c.cred.sshAsync(from.address, `${LOAD_ETCDCTL_ENV}; etcdctl endpoint status -w json 2>/dev/null || true`, 20_000);
  if (r.status !== 0 || !r.stdout.trim()) return undefined;
  const leader = (JSON.parse(r.stdout) as EtcdEndpointStatus[]).find(isEtcdLeader);
  return leader && hostOfEndpoint(c.outputs.hosts, leader.Endpoint);
}

export async function setLink(host: LocalHost, up: boolean): Promise<void> {
  const r = await runAsync("ip", ["link", "set", host.veth, up ? "up" : "down"], { timeoutMs: 5000 });
  if (r.status !== 0) throw new Error(`ip link set ${host.veth} failed: ${r.stderr}`);
}

/** HAProxy's view of each apiserver on a machine (`name` -> `UP`, `DOWN`, `UP 1/2`, ...), from its admin socket. */
export async function balancerView(c: Cluster, host: LocalHost): Promise<Record<string, string>> {
  const perl = `$s = IO::Socket::UNIX->new(Peer => "/run/haproxy/admin.sock") or exit 1; print $s "show stat\\n"; ` +
    `while (<$s>) { @f = split /,/; print "$f[1]=$f[17]\\n" if $f[0] eq "kube-apiservers" && $f[1] ne "BACKEND" }`;
  const r = await c.cred.sshAsync(host.address, `timeout 5 perl -MIO::Socket::UNIX -e '${perl}'`, 15_000);
  return Object.fromEntries(r.stdout.split("\n").filter((l) => l.includes("=")).map((l) => l.split("=", 2) as [string, string]));
}

/**
 * Waits until the control plane is fully healthy, twice in a row a second apart: every
 * apiserver in the kubernetes Service and ready itself, every etcd member healthy, both
 * Leases held, and the balancer holding the VIP sending to every apiserver (each UP in its
 * HAProxy, none in a transition). Returns the time it took.
 */
export async function waitHealthy(c: Cluster, timeoutMs = 120_000, passesWanted = 2): Promise<number> {
  const all = controlPlaneHosts(c.outputs).map((h) => h.address).sort().join(",");
  const names = controlPlaneHosts(c.outputs).map((h) => h.name).sort();
  let passes = 0;
  const { ms } = await waitFor("the control plane to be fully healthy", timeoutMs, 1000, async () => {
    passes = (await healthyNow()) ? passes + 1 : 0;
    return passes >= passesWanted ? true : undefined;
  });
  return ms;

  async function healthyNow(): Promise<boolean> {
    const eps = await serviceEndpoints(c);
    if (eps?.join(",") !== all) return false;
    const health = await etcdHealth(c, etcdHosts(c.outputs)[0]);
    if (!health || !Object.values(health).every(Boolean)) return false;
    // Every apiserver ready itself: after a quorum loss the Service can list an apiserver
    // (its lease outlived the outage) before its own etcd connection is back.
    for (const h of controlPlaneHosts(c.outputs)) if (!(await apiserverReady(c, h.address))) return false;
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      const l = await lease(c, name);
      if (!l || !hostOfHolder(c, l.holder)) return false;
    }
    const holder = await vipHolder(c);
    if (!holder) return false;
    const view = await balancerView(c, holder);
    return JSON.stringify(Object.keys(view).sort()) === JSON.stringify(names) && Object.values(view).every((s) => s === "UP");
  }
}

/**
 * Cuts the VIP holder's link and waits until a survivor holds the VIP; records `cutAt`,
 * `newVipHolder` and `vipFailoverMs` in the facts.
 */
async function cutVipHolder(c: Cluster, victim: LocalHost, facts: Record<string, unknown>): Promise<{ cutAt: number; moved: { value: LocalHost }; survivors: LocalHost[] }> {
  const cutAt = Date.now();
  facts.cutAt = cutAt;
  await setLink(victim, false);
  const survivors = c.outputs.hosts.filter((h) => h !== victim);
  const moved = await waitFor("the VIP to move", 60_000, 50, () => vipHolder(c, survivors));
  facts.vipFailoverMs = Date.now() - cutAt;
  facts.newVipHolder = moved.value.name;
  return { cutAt, moved, survivors };
}

/** How many times each scenario has run in this process. */
const runsOf = new Map<string, number>();

/** Runs `during` with both probes running; returns their combined result. */
export async function withProbes(
  c: Cluster,
  name: string,
  during: (facts: Record<string, unknown>) => Promise<void>,
  opts: { maxDurationMs?: number; evidence?: boolean } = {},
): Promise<ScenarioResult> {
  await ensureProbeNamespace(c);
  const facts: Record<string, unknown> = {};
  // What every machine and the host saw, kept for the longest failure window.
  // Loss scenarios record it by default.
  const evidence = (opts.evidence ?? /^(lose|kill)-/.test(name)) ? new Evidence(c.cred, c.outputs.hosts, c.outputs.virtualIp) : undefined;
  await evidence?.start(opts.maxDurationMs ?? 300_000);
  const startedAt = Date.now();
  facts.startedAt = startedAt;
  // How busy the host is as the scenario starts: a suite whose later scenarios run slower
  // shows here whether something stayed behind (load, processes, the machines' processes).
  Object.assign(facts, hostBusy("AtStart"));
  // A scenario run again (a benchmark's repetitions) writes ConfigMaps of its own names.
  const run = (runsOf.get(name) ?? 0) + 1;
  runsOf.set(name, run);
  const probes = (["per-request", "http2"] as const).map(
    (kind) =>
      new Probe({
        name: run === 1 ? `${name}-${kind}` : `${name}-${kind}-${run}`,
        kind,
        endpoint: c.outputs.endpoint,
        credentials: c.client,
        namespace: PROBE_NAMESPACE,
        maxDurationMs: opts.maxDurationMs ?? 300_000,
        maxRequests: Math.ceil((opts.maxDurationMs ?? 300_000) / 100) + 10,
      }),
  );
  // On a stack with workers, a pod reads the API through the kubernetes Service as well.
  const maxSeconds = Math.ceil((opts.maxDurationMs ?? 300_000) / 1000) + 60;
  const inCluster = (c.outputs.workers?.length ?? 0) > 0 ? new InClusterProbe(c.cred, c.outputs, run === 1 ? `${name}-in-cluster` : `${name}-in-cluster-${run}`, PROBE_NAMESPACE, maxSeconds) : undefined;
  await inCluster?.start();
  probes.forEach((p) => p.start());
  let error: unknown;
  try {
    await during(facts);
  } catch (e) {
    error = e;
  }
  const reports = await Promise.all(probes.map((p) => p.stop()));
  const inClusterReports = await inCluster?.stop();
  const seen = await evidence?.stop();
  if (error) throw error;
  const windows = reports.flatMap((r) => r.failureWindows).sort((a, b) => b.end - b.start - (a.end - a.start));
  if (seen && windows.length > 0) {
    const zero = (facts.cutAt as number | undefined) ?? startedAt;
    facts.longestWindow = { startMs: windows[0].start - zero, endMs: windows[0].end - zero };
    facts.longestWindowEvidence = evidenceAround(seen, zero, windows[0].start, windows[0].end);
  }
  // A scenario may name a span of its own to keep the evidence of (facts.evidenceSpan: [from, to]).
  const span = facts.evidenceSpan as [number, number] | undefined;
  if (seen && span) facts.evidenceInSpan = evidenceAround(seen, span[0], span[0], span[1]);
  let lost = 0;
  for (const r of reports) {
    lost += (await lostWrites(c.outputs.endpoint, c.client, PROBE_NAMESPACE, r.name, r.acknowledgedWrites)).length;
    // Checked: the writes go (a later scenario must not carry this one's objects).
    if (!(await deleteProbeWrites(c.outputs.endpoint, c.client, PROBE_NAMESPACE, r.name))) facts.probeWritesLeft = true;
  }
  return {
    name,
    failedRequests: reports.reduce((a, r) => a + r.failedRequests, 0),
    failedWithRetryAfter: reports.reduce((a, r) => a + r.failedWithRetryAfter, 0),
    retriedUnprocessed: reports.reduce((a, r) => a + r.retriedUnprocessed, 0),
    longestFailureMs: reports.reduce((a, r) => Math.max(a, r.longestFailureMs), 0),
    acknowledgedWritesLost: lost,
    acknowledgedWrites: reports.reduce((a, r) => a + r.acknowledgedWrites.length, 0),
    requests: reports.reduce((a, r) => a + r.requests, 0),
    slowRequests: reports.reduce((a, r) => a + r.slowRequests, 0),
    probes: reports.map(({ records: _records, ...rest }) => rest),
    facts,
    records: reports.flatMap((r) => r.records.map((x) => ({ probe: r.kind, at: x.at, ok: x.ok, op: x.op, ms: x.ms, status: x.status, error: x.error, retryAfterSeconds: x.retryAfterSeconds, retriedUnprocessed: x.retriedUnprocessed }))),
    inCluster: inClusterReports,
  };
}

/** Requests sent in [from, to) (ms since epoch). */
export function between(result: ScenarioResult, from: number, to: number) {
  return result.records.filter((r) => r.at >= from && r.at < to);
}

// ---------------------------------------------------------------------------------------

/** A machine that holds neither the VIP nor a Lease, nor (if it can be helped) etcd leadership. */
async function quietMachine(c: Cluster): Promise<{ victim: LocalHost; ledEtcd: boolean }> {
  const vip = await vipHolder(c);
  const etcdLeaderHost = await etcdLeader(c, etcdHosts(c.outputs)[0]);
  const holders = await Promise.all(["kube-controller-manager", "kube-scheduler"].map((l) => lease(c, l)));
  const leaseHosts = holders.map((l) => l && hostOfHolder(c, l.holder));
  const quiet = (h: LocalHost) => h !== vip && !leaseHosts.includes(h);
  const victim = c.outputs.hosts.find((h) => quiet(h) && h !== etcdLeaderHost) ?? c.outputs.hosts.find(quiet);
  if (!victim) throw new Error("every machine holds the VIP or a lease; cannot pick a quiet one");
  return { victim, ledEtcd: victim === etcdLeaderHost };
}

/** Waits until another machine than `victim` holds the Lease; its name and the takeover time from `cutAt` (the new holder's acquire time, same host clock). */
async function leaseTakeover(c: Cluster, name: string, victim: LocalHost, cutAt: number, intervalMs: number): Promise<{ holder?: string; ms?: number }> {
  const taken = await waitFor(`a new holder of ${name}`, 120_000, intervalMs, async () => {
    const l = await lease(c, name);
    const h = l && hostOfHolder(c, l.holder);
    return l && h && h !== victim ? l : undefined;
  });
  const acquired = Date.parse(taken.value.acquireTime ?? taken.value.renewTime ?? "");
  return { holder: hostOfHolder(c, taken.value.holder)?.name, ms: Number.isFinite(acquired) ? acquired - cutAt : undefined };
}

/**
 * What a failed `pulumi up` says, short enough for an assertion message: its Diagnostics
 * section (each resource's error, which the long Outputs section after it pushes out of a
 * plain tail), then the output's end (the resource summary) and stderr's.
 */
export function upReport(up: { stdout: string; stderr: string }): string {
  const out = up.stdout;
  const diag = out.indexOf("\nDiagnostics:");
  const end = diag < 0 ? -1 : out.indexOf("\nOutputs:", diag);
  const diagnostics = diag < 0 ? "" : out.slice(diag, end < 0 ? undefined : end).slice(0, 8000);
  return `${diagnostics}\n${out.slice(-4000)}\n${up.stderr.slice(-2000)}`;
}

/** The host's 1-minute load average and its process count, named with `suffix`. */
export function hostBusy(suffix: string): Record<string, number> {
  const processes = fs.readdirSync("/proc").filter((f) => /^\d+$/.test(f)).length;
  return { [`hostLoad${suffix}`]: Math.round(os.loadavg()[0] * 100) / 100, [`hostProcesses${suffix}`]: processes };
}

/**
 * `pulumi up` with `args`, then a bounded wait until the control plane is healthy; records
 * upSeconds, upOk, upOutput (upReport) and healthyAfterMs (-1, with notHealthy, if it is not).
 * `then` runs between the two (e.g. to read the stack's outputs again).
 */
async function upUntilHealthy(c: Cluster, facts: Record<string, unknown>, args: string[], timeoutMs: number, then?: () => void): Promise<void> {
  const start = Date.now();
  const up = await pulumiAsync(["up", "--yes", "--skip-preview", ...args], timeoutMs);
  facts.upSeconds = up.seconds;
  facts.upOk = up.status === 0;
  facts.upOutput = upReport(up);
  facts.slowestSteps = slowestSteps(up.stdout);
  then?.();
  try {
    await waitHealthy(c, 180_000);
    facts.healthyAfterMs = Date.now() - start;
  } catch (e) {
    facts.healthyAfterMs = -1;
    facts.notHealthy = (e as Error).message;
  }
}

const machineIdOf = async (c: Cluster, h: LocalHost) => (await c.cred.sshAsync(h.address, "cat /etc/machine-id", 15_000)).stdout.trim();

/** A machine that came back under its name: its new machine-id and etcd member, asked from `other`. */
async function rejoinFacts(c: Cluster, victim: LocalHost, other: LocalHost, result: ScenarioResult): Promise<ScenarioResult> {
  result.facts.machineIdAfter = await machineIdOf(c, victim);
  const members = await etcdMembers(c, other);
  result.facts.membersAfter = members;
  result.facts.memberIdAfter = members.find((m) => m.name === victim.name)?.id;
  return result;
}

/**
 * 1. A machine that holds neither the VIP nor a lease (nor etcd's leadership, whose loss
 * stalls writes for an election) loses its link.
 */
export async function loseQuietMachine(c: Cluster): Promise<ScenarioResult> {
  const { victim, ledEtcd } = await quietMachine(c);
  const others = c.outputs.hosts.filter((h) => h !== victim);
  return withProbes(c, "lose-quiet-machine", async (facts) => {
    facts.victim = victim.name;
    facts.victimLedEtcd = ledEtcd;
    await sleep(3000);
    facts.cutAt = Date.now();
    await setLink(victim, false);
    const dropped = await waitFor("the kubernetes Service to drop the lost apiserver", 90_000, 500, async () => {
      const eps = await serviceEndpoints(c);
      return eps && !eps.includes(victim.address) && eps.length === others.length ? eps : undefined;
    });
    facts.endpointsDroppedMs = dropped.ms;
    facts.endpointsWhileLost = dropped.value;
    const health = await etcdHealth(c, others[0]);
    facts.etcdQuorumKept = health !== undefined && others.every((h) => health[h.name]);
    await sleep(5000);
    facts.restoreAt = Date.now();
    await setLink(victim, true);
    const back = await waitFor("the lost apiserver to rejoin the kubernetes Service", 120_000, 500, async () => {
      const eps = await serviceEndpoints(c);
      return eps?.includes(victim.address) ? eps : undefined;
    });
    facts.rejoinedMs = back.ms;
    facts.endpointsAfter = back.value;
    facts.healthyAfterMs = await waitHealthy(c);
    await sleep(2000);
  });
}

/** 2. The machine holding the controller-manager (and scheduler) lease loses its link. */
export async function loseLeaseHolder(c: Cluster, label: string): Promise<ScenarioResult> {
  const cm = await lease(c, "kube-controller-manager");
  const victim = cm && hostOfHolder(c, cm.holder);
  if (!victim) throw new Error(`no holder of kube-controller-manager: ${JSON.stringify(cm)}`);
  return withProbes(c, `lose-lease-holder-${label}`, async (facts) => {
    facts.victim = victim.name;
    await sleep(2000);
    const cutAt = Date.now();
    facts.cutAt = cutAt;
    const heldByVictim: Record<string, boolean> = {};
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      const l = await lease(c, name);
      heldByVictim[name] = l !== undefined && hostOfHolder(c, l.holder) === victim;
    }
    await setLink(victim, false);
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      // Only a lease the lost machine held has a takeover to measure.
      if (!heldByVictim[name]) {
        facts[`${name}HeldByVictim`] = false;
        continue;
      }
      const taken = await leaseTakeover(c, name, victim, cutAt, 200);
      facts[`${name}HeldByVictim`] = true;
      facts[`${name}NewHolder`] = taken.holder;
      facts[`${name}TakeoverMs`] = taken.ms;
    }
    await sleep(2000);
    await setLink(victim, true);
    facts.healthyAfterMs = await waitHealthy(c);
  });
}

/** 3. The machine holding the VIP loses its link. */
export async function loseVipHolder(c: Cluster): Promise<ScenarioResult> {
  const victim = await vipHolder(c);
  if (!victim) throw new Error("no machine holds the VIP");
  const macs = await machineMacs(c);
  return withProbes(c, "lose-vip-holder", async (facts) => {
    facts.victim = victim.name;
    // Which machine this host's ARP entry for the VIP points at, sampled every 200 ms
    // (changes only, ms from the cut): shows why a client could not reach the new holder.
    const neighbour: string[] = [];
    facts.vipNeighbour = neighbour;
    let sampling = true;
    const sampler = (async () => {
      let last = "";
      for (let i = 0; sampling && i < 600; i++) {
        const r = await runAsync("ip", ["neigh", "show", c.outputs.virtualIp], { timeoutMs: 2000 });
        const mac = / lladdr ([0-9a-f:]+)/.exec(r.stdout)?.[1];
        const state = r.stdout.trim().split(/\s+/).pop() ?? "";
        const seen = `${mac ? (macs[mac] ?? mac) : "none"} ${state}`;
        if (seen !== last) {
          neighbour.push(`${Date.now() - ((facts.cutAt as number | undefined) ?? Date.now())} ${seen}`);
          last = seen;
        }
        await sleep(200);
      }
    })();
    try {
      await sleep(3000);
      const { moved, survivors } = await cutVipHolder(c, victim, facts);
      const movedAt = Date.now();
      await sleep(4000);
      // Mid-outage evidence: can the survivors serve at all (their /readyz, etcd as seen
      // from the new holder)?
      facts.midOutageReadyz = Object.fromEntries(
        await Promise.all(survivors.map(async (h) => [h.name, await apiserverReady(c, h.address)] as const)),
      );
      facts.midOutageEtcdHealth = (await etcdHealth(c, moved.value)) ?? "unknown";
      await sleep(Math.max(0, movedAt + 10_000 - Date.now()));
      facts.restoreAt = Date.now();
      await setLink(victim, true);
      facts.healthyAfterMs = await waitHealthy(c);
      await sleep(3000);
    } finally {
      sampling = false;
      await sampler;
    }
  });
}

/** MAC address of each machine's eth0, by MAC. */
async function machineMacs(c: Cluster): Promise<Record<string, string>> {
  const macs: Record<string, string> = {};
  for (const h of c.outputs.hosts) {
    const r = await runAsync("ip", ["-n", h.netns, "-o", "link", "show", "dev", "eth0"], { timeoutMs: 5000 });
    const mac = / link\/ether ([0-9a-f:]+)/.exec(r.stdout)?.[1];
    if (mac) macs[mac] = h.name;
  }
  return macs;
}

async function apiserverPid(c: Cluster, host: LocalHost): Promise<string> {
  const r = await c.cred.sshAsync(host.address, "systemctl show -p MainPID --value kube-apiserver.service", 15_000);
  return r.stdout.trim();
}

/** What runs on a host: each control-plane unit's start time and the version of its running binary. */
export interface RunningComponent {
  readonly host: string;
  readonly unit: string;
  /** CLOCK_MONOTONIC of the unit's last start, in µs: one clock for every machine (one kernel). */
  readonly startedUs: number;
  readonly version: string;
}

const CONTROL_PLANE_UNITS = ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/** Asks systemd for each unit's start time and runs the process's own binary (`/proc/<pid>/exe --version`). */
export async function runningComponents(c: Cluster): Promise<RunningComponent[]> {
  const script = `for u in ${CONTROL_PLANE_UNITS.join(" ")}; do
  pid=$(systemctl show -p MainPID --value "$u.service")
  t=$(systemctl show -p ActiveEnterTimestampMonotonic --value "$u.service")
  v=$( [ "$pid" -gt 0 ] 2>/dev/null && timeout 10 "/proc/$pid/exe" --version 2>/dev/null | head -n 1 || echo none)
  echo "$u $t $v"
done`;
  const all = await Promise.all(
    c.outputs.hosts.map(async (h) => {
      const r = await c.cred.sshAsync(h.address, script, 30_000);
      return r.stdout
        .trim()
        .split("\n")
        .filter(Boolean)
        .map((line) => {
          const [unit, started, ...version] = line.split(" ");
          return { host: h.name, unit, startedUs: Number(started), version: version.join(" ").replace(/^Kubernetes /, "") };
        });
    }),
  );
  return all.flat();
}

/** 4. kill -9 of kube-apiserver on one machine; systemd restarts it. */
export async function killApiserver(c: Cluster): Promise<ScenarioResult> {
  const vip = await vipHolder(c);
  const victim = c.outputs.hosts.find((h) => h !== vip) ?? c.outputs.hosts[0];
  return withProbes(c, "kill-apiserver", async (facts) => {
    facts.victim = victim.name;
    const before = await apiserverPid(c, victim);
    facts.pidBefore = before;
    await sleep(3000);
    const killedAt = Date.now();
    await c.cred.sshAsync(victim.address, "kill -9 $(systemctl show -p MainPID --value kube-apiserver.service)", 15_000);
    const restarted = await waitFor("systemd to restart kube-apiserver", 60_000, 250, async () => {
      const pid = await apiserverPid(c, victim);
      return pid && pid !== "0" && pid !== before ? pid : undefined;
    });
    facts.pidAfter = restarted.value;
    const ready = await waitFor("the restarted kube-apiserver to be ready", 90_000, 250, async () => ((await apiserverReady(c, victim.address)) ? true : undefined));
    facts.readyAgainMs = Date.now() - killedAt;
    void ready;
    await sleep(5000);
  });
}

async function etcd(c: Cluster, host: LocalHost, action: "stop" | "start"): Promise<Run> {
  return c.cred.sshAsync(host.address, `systemctl ${action === "start" ? "start --no-block" : "stop"} etcd.service`, 60_000);
}

/** 5. etcd: stop 1 of 3 (writes go on), stop 2 of 3 (writes fail), start both (recovers). */
export async function etcdQuorum(c: Cluster): Promise<ScenarioResult> {
  const [a, b, survivor] = c.outputs.hosts;
  const result = await withProbes(c, "etcd-quorum", async (facts) => {
    await sleep(3000);
    facts.oneStoppedAt = Date.now();
    await etcd(c, a, "stop");
    await sleep(15_000);
    // Quorum is gone once the second stop has returned (systemd waits for etcd to exit): a
    // write sent after it cannot be committed. Before it (the stop can take seconds over SSH
    // on a loaded host) writes may still succeed.
    facts.twoStopSentAt = Date.now();
    const second = await etcd(c, b, "stop");
    facts.twoStoppedAt = Date.now();
    facts.twoStopStatus = second.status;
    await sleep(12_000);
    const show = await c.cred.sshAsync(survivor.address, "systemctl show -p NRestarts -p ActiveState etcd.service", 15_000);
    facts.survivorEtcd = show.stdout.trim().replace(/\n/g, " ");
    facts.survivorNoCrashLoop = /NRestarts=0/.test(show.stdout) && /ActiveState=active/.test(show.stdout);
    facts.restartAt = Date.now();
    await etcd(c, a, "start");
    await etcd(c, b, "start");
    facts.healthyAfterMs = await waitHealthy(c, 180_000);
    const recoveredAt = Date.now();
    facts.recoveredAt = recoveredAt;
    facts.evidenceSpan = [recoveredAt, recoveredAt + 5000];
    await sleep(5000);
  }, { evidence: true });
  // Every member holds the same data (compared at the same revision, after the probes stopped).
  const hashes = await c.cred.sshAsync(
    survivor.address,
    `${LOAD_ETCDCTL_ENV}
rev=$(ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl endpoint status -w json | sed -n 's/.*"revision":\\([0-9]*\\).*/\\1/p')
etcdctl endpoint hashkv --rev="$rev" -w json`,
    30_000,
  );
  const list = JSON.parse(hashes.stdout || "[]") as { HashKV: { hash: number } }[];
  result.facts.hashKvMembers = list.length;
  result.facts.hashKvEqual = list.length === c.outputs.hosts.length && new Set(list.map((x) => x.HashKV.hash)).size === 1;
  return result;
}

/** The etcd members as `member list` gives them (name, id, learner), asked from a reachable machine. */
export async function etcdMembers(c: Cluster, from: LocalHost): Promise<{ id: string; name: string; learner: boolean; started: boolean }[]> {
  const r = await c.cred.sshAsync(from.address, `${LOAD_ETCDCTL_ENV}; etcdctl member list -w simple`, 20_000);
  return r.stdout
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => line.split(",").map((f) => f.trim()))
    .map(([id, status, name, , , learner]) => ({ id, name, learner: learner === "true", started: status === "started" }));
}

/**
 * 7. Replace a machine (the VIP holder) with the documented procedure,
 * `pulumi up --replace <urn of its machine>`, while the probes run: the old machine goes,
 * a new one (new disk, new machine-id) comes up under the same name, and every step on
 * it runs again: its etcd member (no data) is removed from the cluster and joins again as
 * a learner, then is promoted; its apiserver, balancer and controllers start.
 */
export async function replaceMachine(c: Cluster, upArgs: string[], pick?: (c: Cluster) => Promise<LocalHost>, label = "replace-machine"): Promise<ScenarioResult> {
  const victim = pick ? await pick(c) : ((await vipHolder(c)) ?? c.outputs.hosts[0]);
  const other = etcdHosts(c.outputs).find((h) => h !== victim)!;
  const before = { machineId: await machineIdOf(c, victim), members: await etcdMembers(c, other) };
  const stack = process.env.HAKUBE_STACK ?? "local";
  const urn = `urn:pulumi:${stack}::hakube::hakube:index:LocalMachines$command:local:Command::local-${victim.name}`;
  return withProbes(
    c,
    label,
    async (facts) => {
      facts.victim = victim.name;
      facts.machineIdBefore = before.machineId;
      facts.memberIdBefore = before.members.find((m) => m.name === victim.name)?.id;
      await sleep(2000);
      await upUntilHealthy(c, facts, ["--replace", urn, ...upArgs], 900_000);
      await sleep(3000);
    },
    { maxDurationMs: 900_000 },
  ).then((result) => rejoinFacts(c, victim, other, result));
}

/** Samples each apiserver's own /readyz while `pulumi up` runs; returns not-ready intervals. */
export async function rollingUp(c: Cluster, label: string, upArgs: string[], env?: NodeJS.ProcessEnv): Promise<ScenarioResult> {
  const pidsBefore = await Promise.all(c.outputs.hosts.map((h) => apiserverPid(c, h)));
  return withProbes(
    c,
    `rolling-${label}`,
    async (facts) => {
      const samples: { at: number; ready: boolean[]; etcdHealthy?: number }[] = [];
      let done = false;
      const sampler = (async () => {
        for (let i = 0; i < 4000 && !done; i++) {
          const ready = await Promise.all(c.outputs.hosts.map((h) => apiserverReady(c, h.address)));
          samples.push({ at: Date.now(), ready });
          await sleep(200);
        }
      })();
      const etcdSampler = (async () => {
        let minHealthy = c.outputs.hosts.length;
        for (let i = 0; i < 400 && !done; i++) {
          const h = await etcdHealth(c, c.outputs.hosts[i % c.outputs.hosts.length]);
          if (h) minHealthy = Math.min(minHealthy, Object.values(h).filter(Boolean).length);
          await sleep(1500);
        }
        return minHealthy;
      })();
      await sleep(2000);
      const up = await pulumiAsync(["up", "--yes", "--skip-preview", ...upArgs], 900_000, env);
      facts.upSeconds = up.seconds;
      facts.upOk = up.status === 0;
      facts.slowestSteps = slowestSteps(up.stdout);
      if (up.status !== 0) facts.upOutput = upReport(up);
      await sleep(3000);
      done = true;
      await sampler;
      facts.etcdMinHealthyMembers = await etcdSampler;
      facts.maxApiserversNotReadyAtOnce = samples.reduce((m, s) => Math.max(m, s.ready.filter((r) => !r).length), 0);
      const order: string[] = [];
      for (const s of samples) {
        s.ready.forEach((r, i) => {
          const n = c.outputs.hosts[i].name;
          if (!r && order[order.length - 1] !== n) order.push(n);
        });
      }
      facts.notReadyOrder = order;
      facts.samples = samples.length;
    },
    { maxDurationMs: 900_000 },
  ).then(async (result) => {
    const pidsAfter = await Promise.all(c.outputs.hosts.map((h) => apiserverPid(c, h)));
    result.facts.apiserversRestarted = pidsAfter.filter((p, i) => p !== pidsBefore[i]).length;
    const versions = await Promise.all(
      c.outputs.hosts.map(async (h) => {
        const r = await apiGet(c, `https://${h.address}:6443`, "/version");
        return JSON.parse(r.body).gitVersion as string;
      }),
    );
    result.facts.versionsAfter = versions;
    return result;
  });
}

/**
 * A machine lost for good, as a dead disk: its nspawn process killed, its network namespace
 * and its files deleted. The stack's state still names it.
 */
/** Whether a process is gone (or only a zombie waiting to be reaped). */
function processGone(pid: string): boolean {
  try {
    return /^\d+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
}

/**
 * Stops a machine at once, as pulling its power: SIGKILL to its nspawn process and to every
 * process in its network namespace (the machine's init and services, which can outlive
 * nspawn), then waits (bounded) until they are gone, and removes its namespace and link.
 * Its files are kept. Throws when a process survives 30 s.
 */
export async function killMachine(victim: LocalHost): Promise<void> {
  const pidFile = `${victim.dir}.pid`;
  const nspawn = fs.existsSync(pidFile) ? fs.readFileSync(pidFile, "utf8").trim() : "";
  if (nspawn !== "" && !/^\d+$/.test(nspawn)) throw new Error(`no pid in ${pidFile}`);
  const inside = (await runAsync("ip", ["netns", "pids", victim.netns], { timeoutMs: 10_000 })).stdout.split(/\s+/).filter((p) => /^\d+$/.test(p));
  const pids = [...(nspawn ? [nspawn] : []), ...inside];
  if (pids.length > 0) await runAsync("kill", ["-KILL", ...pids], { timeoutMs: 10_000 });
  const deadline = Date.now() + 30_000;
  while (!pids.every(processGone)) {
    if (Date.now() > deadline) throw new Error(`machine ${victim.name}: processes ${pids.filter((p) => !processGone(p)).join(" ")} still alive 30 s after SIGKILL`);
    await sleep(250);
  }
  await runAsync("ip", ["netns", "del", victim.netns], { timeoutMs: 10_000 });
  await runAsync("ip", ["link", "del", victim.veth], { timeoutMs: 10_000 });
}

/** A machine lost with its disk: stopped at once (`killMachine`), then its files deleted. */
export async function destroyMachine(victim: LocalHost): Promise<void> {
  if (!victim.dir) throw new Error("the stack's outputs name no machine folder (hosts[].dir)");
  await killMachine(victim);
  fs.rmSync(victim.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
}

/**
 * 8. A machine lost for good: its nspawn process killed and its files deleted (as a dead
 * disk). `pulumi preview --refresh` must show the machine and its steps as changes; the
 * repair command `pulumi up --refresh` makes it anew, its etcd member rejoins.
 */
export async function loseMachineForGood(c: Cluster, upArgs: string[]): Promise<ScenarioResult> {
  const { victim } = await quietMachine(c);
  const other = etcdHosts(c.outputs).find((h) => h !== victim)!;
  const before = { machineId: await machineIdOf(c, victim), members: await etcdMembers(c, other) };
  return withProbes(
    c,
    "lose-machine-for-good",
    async (facts) => {
      facts.victim = victim.name;
      facts.machineIdBefore = before.machineId;
      facts.memberIdBefore = before.members.find((m) => m.name === victim.name)?.id;
      await sleep(2000);
      facts.lostAt = Date.now();
      await destroyMachine(victim);
      const preview = await pulumiAsync(["preview", "--refresh", ...upArgs], 300_000);
      facts.previewOk = preview.status === 0;
      facts.previewSeconds = preview.seconds;
      // The resources the preview would update or replace ("~" / "+-" lines).
      facts.previewChanges = [...preview.stdout.matchAll(/^ (?:~|\+-) +\S+ (\S+) (?:update|replace)\b/gm)].map((m) => m[1]);
      // From here on the work is planned: the repair (ops/availability.ts holds it to its budget).
      facts.plannedFrom = Date.now();
      await upUntilHealthy(c, facts, ["--refresh", ...upArgs], 900_000);
      await sleep(3000);
    },
    { maxDurationMs: 900_000 },
  ).then((result) => rejoinFacts(c, victim, other, result));
}

/**
 * 9. Services stopped by hand (etcd on one host, kube-scheduler on another): a refresh shows
 * exactly their steps, and `pulumi up --refresh` starts them again.
 */
export async function repairStoppedServices(c: Cluster, upArgs: string[]): Promise<ScenarioResult> {
  const { victim: etcdHost } = await quietMachine(c);
  const schedulerHost = c.outputs.hosts.find((h) => h !== etcdHost)!;
  return withProbes(
    c,
    "repair-stopped-services",
    async (facts) => {
      facts.etcdHost = etcdHost.name;
      facts.schedulerHost = schedulerHost.name;
      await sleep(2000);
      await c.cred.sshAsync(etcdHost.address, "systemctl stop etcd.service", 60_000);
      await c.cred.sshAsync(schedulerHost.address, "systemctl stop kube-scheduler.service", 60_000);
      const preview = await pulumiAsync(["preview", "--refresh", ...upArgs], 300_000);
      facts.previewOk = preview.status === 0;
      facts.previewSeconds = preview.seconds;
      facts.previewUpdates = [...preview.stdout.matchAll(/^ ~ +\S+ (\S+) update\b/gm)].map((m) => m[1]);
      facts.plannedFrom = Date.now();
      const up = await pulumiAsync(["up", "--yes", "--skip-preview", "--refresh", ...upArgs], 900_000);
      facts.upSeconds = up.seconds;
      facts.upOk = up.status === 0;
      facts.upOutput = upReport(up);
      facts.slowestSteps = slowestSteps(up.stdout);
      const active = async (h: LocalHost, unit: string) =>
        (await c.cred.sshAsync(h.address, `systemctl is-active ${unit} || true`, 15_000)).stdout.trim();
      facts.etcdAfter = await active(etcdHost, "etcd.service");
      facts.schedulerAfter = await active(schedulerHost, "kube-scheduler.service");
      await waitHealthy(c, 120_000);
      const again = await pulumiAsync(["preview", "--refresh", "--expect-no-changes", ...upArgs], 300_000);
      facts.healthyRefreshNoChanges = again.status === 0;
      facts.healthyRefreshPreviewSeconds = again.seconds;
      facts.healthyRefreshOutput = again.stdout.slice(-2000);
      await sleep(2000);
    },
    { maxDurationMs: 900_000 },
  );
}

/**
 * 10. A resize of the stacked control plane (and so of etcd) to `count` machines with one
 * `pulumi up --refresh`; the cluster's outputs are read again afterwards (the hosts change).
 */
export async function resizeControlPlane(c: Cluster, count: number, upArgs: string[]): Promise<ScenarioResult> {
  const before = c.outputs.hosts.map((h) => h.name);
  return withProbes(
    c,
    `resize-${before.length}-to-${count}`,
    async (facts) => {
      facts.before = before;
      await sleep(2000);
      // The hosts change: the outputs are read again before waiting for them.
      await upUntilHealthy(c, facts, ["--refresh", "--config", `hakube:controlPlaneCount=${count}`, ...upArgs], 1_500_000, () => {
        c.outputs = stackOutputs();
        facts.after = c.outputs.hosts.map((h) => h.name);
      });
      await sleep(3000);
    },
    { maxDurationMs: 1_500_000, evidence: true },
  ).then(async (result) => {
    result.facts.membersAfter = await etcdMembers(c, etcdHosts(c.outputs)[0]);
    result.facts.serviceAfter = await serviceEndpoints(c);
    return result;
  });
}

/**
 * Puts the VIP, both Leases and etcd leadership on one machine (the VIP holder): the
 * controllers on the other machines stop until it holds both Leases, then start again as
 * standbys; etcd leadership moves to it with `move-leader`. Returns it.
 */
export async function gatherEverything(c: Cluster): Promise<LocalHost> {
  const victim = await vipHolder(c);
  if (!victim) throw new Error("no machine holds the VIP");
  const others = controlPlaneHosts(c.outputs).filter((h) => h !== victim);
  const leases = ["kube-controller-manager", "kube-scheduler"];
  const holds = async () => (await Promise.all(leases.map((l) => lease(c, l)))).every((l) => l && hostOfHolder(c, l.holder) === victim);
  if (!(await holds())) {
    const units = "kube-controller-manager.service kube-scheduler.service";
    await Promise.all(others.map((h) => c.cred.sshAsync(h.address, `systemctl stop ${units}`, 60_000)));
    try {
      await waitFor(`${victim.name} to hold both Leases`, 90_000, 500, async () => ((await holds()) ? true : undefined));
    } finally {
      await Promise.all(others.map((h) => c.cred.sshAsync(h.address, `systemctl start ${units}`, 60_000)));
    }
  }
  const leader = await etcdLeader(c, victim);
  if (leader !== victim) {
    const members = await etcdMembers(c, victim);
    const id = members.find((m) => m.name === victim.name)?.id;
    if (!id || !leader) throw new Error(`cannot move etcd leadership: members ${JSON.stringify(members)}, leader ${leader?.name}`);
    const r = await c.cred.sshAsync(leader.address, `${LOAD_ETCDCTL_ENV}; ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 etcdctl move-leader ${id}`, 30_000);
    if (r.status !== 0) throw new Error(`etcdctl move-leader failed: ${r.stderr}`);
    await waitFor(`${victim.name} to lead etcd`, 30_000, 300, async () => ((await etcdLeader(c, victim)) === victim ? true : undefined));
  }
  return victim;
}

/**
 * 11. The worst case: the machine holding the VIP, both Leases and etcd leadership at once
 * loses its link. Everything moves at the same time: the VIP (VRRP), etcd leadership (an
 * election among the survivors), HAProxy's view of the lost apiserver, both Leases.
 */
export async function loseEverythingHolder(c: Cluster): Promise<ScenarioResult> {
  const victim = await gatherEverything(c);
  return withProbes(c, "lose-everything-holder", async (facts) => {
    facts.victim = victim.name;
    facts.heldBeforeCut = {
      vip: (await vipHolder(c))?.name,
      etcdLeader: (await etcdLeader(c, victim))?.name,
      leases: await Promise.all(["kube-controller-manager", "kube-scheduler"].map(async (l) => hostOfHolder(c, (await lease(c, l))?.holder ?? "")?.name)),
    };
    await sleep(3000);
    const { cutAt, moved } = await cutVipHolder(c, victim, facts);
    const led = await waitFor("a new etcd leader", 60_000, 200, async () => {
      const l = await etcdLeader(c, moved.value);
      return l && l !== victim ? l : undefined;
    });
    facts.etcdLeaderAfterMs = Date.now() - cutAt;
    facts.newEtcdLeader = led.value.name;
    for (const name of ["kube-controller-manager", "kube-scheduler"]) {
      facts[`${name}TakeoverMs`] = (await leaseTakeover(c, name, victim, cutAt, 500)).ms;
    }
    await sleep(2000);
    facts.restoreAt = Date.now();
    await setLink(victim, true);
    facts.healthyAfterMs = await waitHealthy(c);
    await sleep(3000);
  }, { maxDurationMs: 400_000 });
}
