// When a leaf certificate is issued anew. The tls provider decides renewal only when it reads
// a certificate, which `pulumi up` does not do (pulumi/pulumi-tls#39: certificates expire
// although `earlyRenewalHours` is set), so hakube keeps the decision itself: one small
// record per certificate holds when it was issued; once the certificate is inside its renewal
// window, the record's generation moves on, and the certificate, whose `replacementTrigger`
// is that generation, is issued anew in the same `pulumi up` (a preview shows it).
import * as pulumi from "@pulumi/pulumi";

export interface RenewalState {
  readonly validityHours: number;
  readonly earlyRenewalHours: number;
  /** RFC 3339: when the current certificate was issued (about: its record's last change). */
  readonly issuedAt: string;
  /** Moves on at each renewal; the certificate's `replacementTrigger`. */
  readonly generation: number;
}

/** Whether a certificate issued at `issuedAt` is inside its renewal window at `now`. Pure. */
export function renewalDue(s: Pick<RenewalState, "validityHours" | "earlyRenewalHours" | "issuedAt">, now: number): boolean {
  const issued = Date.parse(s.issuedAt);
  if (Number.isNaN(issued)) return true;
  return now >= issued + (s.validityHours - s.earlyRenewalHours) * 3_600_000;
}

/**
 * The record after a `pulumi up` at `now`: a new generation when the certificate is due or
 * its validity changed (the tls provider issues it anew then as well). Pure.
 */
export function nextRenewal(old: RenewalState, news: { validityHours: number; earlyRenewalHours: number }, now: number): RenewalState {
  const renew = old.validityHours !== news.validityHours || renewalDue({ ...old, earlyRenewalHours: news.earlyRenewalHours }, now);
  return renew
    ? { ...news, issuedAt: new Date(now).toISOString(), generation: old.generation + 1 }
    : { ...news, issuedAt: old.issuedAt, generation: old.generation };
}

/** What a renewal record is given: the certificate's validity and early-renewal window (hours). */
export interface RenewalInputs {
  readonly validityHours: number;
  readonly earlyRenewalHours: number;
}

/** Serialized into the state by Pulumi. */
export const certificateRenewalProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: RenewalState, news: RenewalInputs) {
    const next = nextRenewal(olds, news, Date.now());
    const changes = next.generation !== olds.generation || next.earlyRenewalHours !== olds.earlyRenewalHours;
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: RenewalInputs) {
    return { id: "renewal", outs: { ...inputs, issuedAt: new Date().toISOString(), generation: 1 } };
  },
  async update(_id: string, olds: RenewalState, news: RenewalInputs) {
    return { outs: nextRenewal(olds, news, Date.now()) };
  },
};

/** The renewal record of one certificate (see the module comment). */
export class CertificateRenewal extends pulumi.dynamic.Resource {
  declare public readonly generation: pulumi.Output<number>;
  declare public readonly issuedAt: pulumi.Output<string>;

  constructor(name: string, args: RenewalInputs, opts?: pulumi.CustomResourceOptions) {
    super(certificateRenewalProvider, name, { ...args, generation: undefined, issuedAt: undefined }, opts);
  }
}
