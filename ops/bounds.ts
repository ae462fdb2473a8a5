// The availability bound a loss scenario must stay under, derived from the stack's timings
// (not fitted to measurements). When a machine is lost, three things happen in parallel:
// - VRRP: the survivors stop hearing adverts and the best one takes the VIP after the
//   master-down interval, 3 adverts plus a skew below one advert (RFC 5798): < 4 x advert;
// - HAProxy marks the lost apiserver down after `fall` failed checks `inter` apart (until
//   then a connect to it times out after 500 ms and is redispatched to another);
// - etcd: if the lost member led, the survivors elect a new leader after an election
//   timeout randomized in [1, 2) x electionTimeout, plus a pre-vote and a vote round trip.
// The API is back once all three are done: outage <= max of them. A failure window (first
// failed request to the next success) can add one probe timeout (a request sent into the
// outage just before it ends fails only at its timeout), and we allow 1 s for scheduling
// on a loaded 2-core host.
import { HealthCheck, haproxyDetectionSeconds } from "../components/loadbalancer/render";

export interface Timings {
  readonly advertIntervalSeconds: number;
  readonly healthCheck?: HealthCheck;
  readonly electionTimeoutMs: number;
  readonly probeTimeoutMs: number;
}

export interface Bound {
  readonly ms: number;
  /** How it was derived, for the report. */
  readonly parts: { readonly vrrpMs: number; readonly haproxyMs: number; readonly etcdElectionMs: number; readonly probeTimeoutMs: number; readonly marginMs: number };
}

export function availabilityBound(t: Timings): Bound {
  const parts = {
    vrrpMs: Math.round(4 * t.advertIntervalSeconds * 1000),
    haproxyMs: haproxyDetectionSeconds(t.healthCheck) * 1000,
    etcdElectionMs: 2 * t.electionTimeoutMs + 100,
    probeTimeoutMs: t.probeTimeoutMs,
    marginMs: 1000,
  };
  return { ms: Math.max(parts.vrrpMs, parts.haproxyMs, parts.etcdElectionMs) + parts.probeTimeoutMs + parts.marginMs, parts };
}
