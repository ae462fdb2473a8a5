// What a host looks like now, against what the state knows of it (pure, tested without a
// host). A step records, when it succeeds, the files it wrote (their sha256) and the units
// it runs, in STEPS_DIR on the host; the observe script checks exactly those, so nothing
// has to pass rendered content to the observation.
import { quote, shellFunction } from "../remote/shell";

/** The parts of a host a repair can run again: "host" runs every step on it. */
export const COMPONENTS = ["host", "network", "etcd", "apiserver", "controllers", "balancer", "backup"] as const;
export type Component = (typeof COMPONENTS)[number];
export type Repairs = Record<Component, string>;

/** Where each step records what it set up (root only). */
export const STEPS_DIR = "/var/lib/hakube/steps";

/**
 * `hakube_record_step <component> <unit>... -- <file>...`: run at the end of a step that
 * succeeded; the observation later checks that the files are unchanged and the units active.
 */
export const recordStepFunction = shellFunction(
  "hakube_record_step",
  `local c=$1 units=() d=\${HAKUBE_STEPS_DIR:-${quote(STEPS_DIR)}}
shift
while [ "$#" -gt 0 ] && [ "$1" != -- ]; do units+=("$1"); shift; done
[ "$#" -gt 0 ] && shift
install -d -m 0700 "$d"
if [ "$#" -gt 0 ]; then sha256sum -- "$@" > "$d/$c.sha256.tmp"; else : > "$d/$c.sha256.tmp"; fi
printf '%s\\n' "\${units[@]}" > "$d/$c.units.tmp"
mv -f "$d/$c.sha256.tmp" "$d/$c.sha256"
mv -f "$d/$c.units.tmp" "$d/$c.units"`,
);

/** Prints `machine-id <id>`, then `drift <component> <reason>` per problem found. */
export const OBSERVE_SCRIPT = `set -u
echo "machine-id $(cat /etc/machine-id 2>/dev/null)"
d=\${HAKUBE_STEPS_DIR:-${quote(STEPS_DIR)}}
for m in "$d"/*.sha256; do
  [ -e "$m" ] || continue
  c=$(basename "$m" .sha256)
  bad=$(sha256sum -c "$m" 2>/dev/null | grep -v ': OK$' | sed 's/: [^:]*$//' | head -n 3 | paste -s -d ' ' - || true)
  [ -z "$bad" ] || echo "drift $c changed or missing: $bad"
  [ -f "$d/$c.units" ] || continue
  while read -r u; do
    [ -n "$u" ] || continue
    s=$(systemctl is-active "$u" 2>/dev/null || true)
    if [ "$s" != active ]; then
      # A restart in progress is not drift: look again once.
      sleep 2
      s=$(systemctl is-active "$u" 2>/dev/null || true)
    fi
    [ "$s" = active ] || echo "drift $c $u is \${s:-unknown}"
  done < "$d/$c.units"
done
exit 0`;

export interface Observation {
  readonly machineId: string;
  /** Per component, the first problem seen. */
  readonly drift: Partial<Record<Component, string>>;
}

export function parseObservation(stdout: string): Observation | undefined {
  const id = /^machine-id (\S*)$/m.exec(stdout)?.[1];
  if (id === undefined) return undefined;
  const drift: Partial<Record<Component, string>> = {};
  for (const m of stdout.matchAll(/^drift (\S+) (.*)$/gm)) {
    const c = m[1] as Component;
    if ((COMPONENTS as readonly string[]).includes(c) && drift[c] === undefined) {
      drift[c] = m[2].slice(0, 200);
    }
  }
  return { machineId: id, drift };
}

/** The next generation after `previous` ("0" or "<n> <reason>") for a problem seen now. */
export function bump(previous: string | undefined, reason: string): string {
  const n = Number(/^(\d+)/.exec(previous ?? "0")?.[1] ?? 0);
  return `${n + 1} ${reason}`;
}

export function noRepairs(): Repairs {
  return { host: "0", network: "0", etcd: "0", apiserver: "0", controllers: "0", balancer: "0", backup: "0" };
}

export interface Known {
  readonly machineId: string;
  readonly repairs: Repairs;
}

/**
 * What the state should hold after a look at the host: the same object when nothing is
 * wrong (a refresh then changes nothing), else the generations of what needs running again.
 * `seen` is the observation, or a string saying why the host could not be looked at.
 */
export function judge(known: Known, seen: Observation | string): Known {
  if (typeof seen === "string") {
    return { ...known, repairs: { ...known.repairs, host: bump(known.repairs.host, seen) } };
  }
  let repairs = known.repairs;
  let machineId = known.machineId;
  if (seen.machineId !== known.machineId) {
    machineId = seen.machineId;
    if (known.machineId !== "") {
      const short = (s: string) => (s ? s.slice(0, 8) : "none");
      repairs = { ...repairs, host: bump(repairs.host, `a different machine (machine-id ${short(known.machineId)} -> ${short(seen.machineId)})`) };
    }
  }
  for (const c of COMPONENTS) {
    const reason = seen.drift[c];
    if (reason !== undefined) {
      repairs = { ...repairs, [c]: bump(repairs[c], reason) };
    }
  }
  return repairs === known.repairs && machineId === known.machineId ? known : { machineId, repairs };
}

/** The header line a step of `component` carries for its repairs ("" while there are none). */
export function repairLine(repairs: Partial<Repairs> | undefined, component: Component): string {
  const own = repairs?.[component] ?? "0";
  return own === "0" ? "" : `repair ${component} ${own}`;
}
