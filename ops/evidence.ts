// Evidence recorded while a fault scenario runs, so a long failure window explains itself:
// on every machine a small sampler (bounded, every 500 ms; etcd's view every 2 s) writes what that machine saw,
// whether it holds the VIP, its apiserver's /readyz, HAProxy's view of each apiserver,
// its etcd member's leader and raft term, its load; on the host, CPU steal and the run
// queue from /proc/stat. Only changes are kept, as a timeline relative to the fault.
import * as fs from "fs";
import { Credentials, LocalHost } from "./localStack";

const LOG = "/run/hakube-evidence.log";
const PID = "/run/hakube-evidence.pid";
// The sampler's own cost counts, on the host that runs every machine and during exactly
// the scenarios it explains: each sample starts curl (a TLS handshake), perl, ip, grep,
// cut and date, and etcdctl (a Go binary and another handshake) every ETCD_EVERY samples.
// At 250 ms with etcdctl every other sample that was some 140 programs and 10 etcdctl
// runs a second across five machines; at 500 ms and every fourth, 70 and 2.5.
const INTERVAL_MS = 500;
/** etcd's leader and term are read every this many samples. */
const ETCD_EVERY = 4;

/** The sampler run on a machine (in the background, at most `samples` iterations). */
export function samplerScript(virtualIp: string, samples: number): string {
  return `rm -f ${LOG}
nohup bash -c '
etcd_env=/etc/etcd/etcdctl.env
etcd=-
for i in $(seq 1 ${samples}); do
  t=$(date +%s%3N)
  vip=0; ip -o -4 addr show dev eth0 2>/dev/null | grep -q " ${virtualIp}/" && vip=1
  rz=$(curl -sk -o /dev/null -w "%{http_code}" --max-time 0.5 https://127.0.0.1:6443/readyz 2>/dev/null)
  hap=$(timeout 0.5 perl -MIO::Socket::UNIX -e "\\$s=IO::Socket::UNIX->new(Peer=>q{/run/haproxy/admin.sock}) or exit 1; print \\$s qq{show stat\\n}; while (<\\$s>) { @f=split /,/; print qq{\\$f[1]:\\$f[17] } if \\$f[0] eq q{kube-apiservers} && \\$f[1] ne q{BACKEND} }" 2>/dev/null)
  [ $((i % ${ETCD_EVERY})) = 1 ] || { echo "$t vip=$vip readyz=\${rz:-000} hap=[\${hap% }] etcd=$etcd load=$(cut -d" " -f1 /proc/loadavg)"; sleep ${INTERVAL_MS / 1000}; continue; }
  etcd=-
  if [ -f "$etcd_env" ]; then
    st=$(set -a; . "$etcd_env"; set +a; ETCDCTL_ENDPOINTS=https://127.0.0.1:2379 ETCDCTL_COMMAND_TIMEOUT=400ms ETCDCTL_DIAL_TIMEOUT=300ms timeout 0.6 etcdctl endpoint status -w json 2>/dev/null)
    leader=$(printf "%s" "$st" | grep -o "\\"leader\\":[0-9]*" | cut -d: -f2)
    term=$(printf "%s" "$st" | grep -o "\\"raft_term\\":[0-9]*" | cut -d: -f2)
    etcd="\${leader:-none}/\${term:-?}"
  fi
  echo "$t vip=$vip readyz=\${rz:-000} hap=[\${hap% }] etcd=$etcd load=$(cut -d" " -f1 /proc/loadavg)"
  sleep ${INTERVAL_MS / 1000}
done >> ${LOG} 2>/dev/null
' >/dev/null 2>&1 &
echo $! > ${PID}
echo started`;
}

export interface EvidenceLine {
  readonly at: number;
  readonly host: string;
  readonly state: string;
}

/** Parses a sampler log into lines where the state changed (the load is kept but ignored for changes). */
export function changes(host: string, log: string): EvidenceLine[] {
  const out: EvidenceLine[] = [];
  let last = "";
  for (const line of log.split("\n")) {
    const m = /^(\d+) (.*) load=(\S+)$/.exec(line.trim());
    if (!m) continue;
    if (m[2] !== last) {
      out.push({ at: Number(m[1]), host, state: `${m[2]} load=${m[3]}` });
      last = m[2];
    }
  }
  return out;
}

/** CPU steal and the run queue on this host, from /proc/stat, sampled by the caller. */
export interface CpuSample {
  readonly at: number;
  /** Share of the interval stolen by the hypervisor, 0..1. */
  readonly steal: number;
  /** Runnable processes (procs_running). */
  readonly running: number;
}

function readStat(): { total: number; steal: number; running: number } {
  const text = fs.readFileSync("/proc/stat", "utf8");
  const cpu = text.split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  const running = Number(/^procs_running (\d+)$/m.exec(text)?.[1] ?? 0);
  return { total: cpu.slice(0, 8).reduce((a, b) => a + b, 0), steal: cpu[7] ?? 0, running };
}

export class Evidence {
  private cpu: CpuSample[] = [];
  private sampling = false;
  private cpuLoop?: Promise<void>;

  constructor(
    private readonly cred: Credentials,
    private readonly hosts: readonly LocalHost[],
    private readonly virtualIp: string,
  ) {}

  /** Starts the samplers for at most `maxMs`. */
  async start(maxMs: number): Promise<void> {
    const samples = Math.ceil(maxMs / INTERVAL_MS);
    await Promise.all(this.hosts.map((h) => this.cred.sshAsync(h.address, samplerScript(this.virtualIp, samples), 15_000)));
    this.sampling = true;
    this.cpuLoop = (async () => {
      let prev = readStat();
      for (let i = 0; this.sampling && i < samples; i++) {
        await new Promise((r) => setTimeout(r, INTERVAL_MS));
        const now = readStat();
        const dt = now.total - prev.total;
        this.cpu.push({ at: Date.now(), steal: dt > 0 ? (now.steal - prev.steal) / dt : 0, running: now.running });
        prev = now;
      }
    })();
  }

  /** Stops sampling; returns each machine's changes (machines that cannot be reached give none) and the host's CPU samples. */
  async stop(): Promise<{ timeline: EvidenceLine[]; cpu: CpuSample[] }> {
    this.sampling = false;
    await this.cpuLoop;
    const logs = await Promise.all(
      this.hosts.map(async (h) => {
        const r = await this.cred.sshAsync(h.address, `kill "$(cat ${PID} 2>/dev/null)" 2>/dev/null; cat ${LOG} 2>/dev/null; rm -f ${LOG} ${PID}`, 20_000);
        return changes(h.name, r.status === 0 ? r.stdout : "");
      }),
    );
    return { timeline: logs.flat().sort((a, b) => a.at - b.at), cpu: this.cpu };
  }
}

/** The evidence around a window [from, to] (ms since epoch), as text lines relative to `zero`. */
export function evidenceAround(
  e: { timeline: EvidenceLine[]; cpu: CpuSample[] },
  zero: number,
  from: number,
  to: number,
): { timeline: string[]; maxSteal: number; maxRunning: number } {
  const inWindow = e.cpu.filter((s) => s.at >= from - 1000 && s.at <= to + 1000);
  // Each machine's last state before the span (only changes are kept), then the changes in it.
  const hosts = [...new Set(e.timeline.map((l) => l.host))];
  const before = hosts
    .map((h) => e.timeline.filter((l) => l.host === h && l.at < from - 3000).pop())
    .filter((l): l is EvidenceLine => l !== undefined);
  const lines = [...before, ...e.timeline.filter((l) => l.at >= from - 3000 && l.at <= to + 3000)].sort((a, b) => a.at - b.at);
  return {
    timeline: lines.map((l) => `${l.at - zero} ${l.host} ${l.state}`),
    maxSteal: Math.max(0, ...inWindow.map((s) => s.steal)),
    maxRunning: Math.max(0, ...inWindow.map((s) => s.running)),
  };
}
