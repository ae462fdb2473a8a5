// A set of named keys, one of them active, kept in the state so that a preview can refuse a
// rotation step that would break the cluster. The Secrets encryption key and the
// service-account signing key rotate the same way, in three `pulumi up`s:
//   1. add:    keys [old, new], active old  -> every apiserver can read (verify) with new;
//   2. switch: keys [old, new], active new  -> writes (signatures) use new; old still reads;
//   3. drop:   keys [new],      active new  -> old is gone.
// Check refuses a switch to a key that is not deployed yet (an apiserver not yet restarted
// could not read what the others write), a switch and a drop at once, and a drop while
// something still needs the old key: a Secret in etcd still encrypted with it (looked at
// over SSH, only when a key is dropped) or a token signed with it that may not have expired.
import * as pulumi from "@pulumi/pulumi";
import { HostConnection } from "../types";
import { ObservedNetwork, runWhereRoutable, SshTarget, sshTarget } from "../observe/ssh";
import { invalid } from "../validation";

/** What a key ring holds, as configured. */
export interface KeyRingSpec {
  /** Key names, oldest first. */
  readonly keys: readonly string[];
  /** The key that encrypts (signs); the others only decrypt (verify). Default: the first. */
  readonly active: string;
}

/** What the state knows of the deployed ring. */
export interface DeployedKeyRing extends KeyRingSpec {
  /** RFC 3339: when `active` became the active key. */
  readonly activeSince?: string;
}

const KEY_NAME = /^[a-z][a-z0-9-]{0,30}$/;

/**
 * The key ring for `argument` ({ keys, active }), defaults applied and checked: names are
 * lowercase words, unique, and the active one is among them. Throws (at preview) otherwise.
 */
export function resolveKeyRing(
  parent: pulumi.Resource | undefined,
  argument: string,
  given: { readonly keys?: readonly string[]; readonly active?: string } | undefined,
  defaultKey = "key1",
): KeyRingSpec {
  const keys = given?.keys ?? [defaultKey];
  if (!Array.isArray(keys) || keys.length === 0 || keys.length > 5) {
    invalid(parent, `${argument}.keys`, keys, "a list of 1 to 5 key names, oldest first");
  }
  keys.forEach((k, i) => {
    if (typeof k !== "string" || !KEY_NAME.test(k)) {
      invalid(parent, `${argument}.keys[${i}]`, k, "a key name: a lowercase letter, then up to 30 lowercase letters, digits or '-'");
    }
    if (keys.indexOf(k) !== i) invalid(parent, `${argument}.keys[${i}]`, k, "a name not already in the list");
  });
  const active = given?.active ?? keys[0];
  if (!keys.includes(active)) {
    invalid(parent, `${argument}.active`, active, `one of keys (${keys.join(", ")})`);
  }
  return { keys: [...keys], active };
}

/** Per key name, how many objects it protects now (from a usage script's `uses <key>` lines). */
export function parseKeyUsage(stdout: string): Record<string, number> {
  const uses: Record<string, number> = {};
  for (const m of stdout.matchAll(/^uses (\S+)$/gm)) uses[m[1]] = (uses[m[1]] ?? 0) + 1;
  return uses;
}

/**
 * Why changing the ring from `deployed` to `desired` is unsafe now; undefined when it is
 * safe (or the first deployment). `usage`: what still uses each key (or why it could not be
 * looked at), asked only when a key is dropped; `retireAfterSeconds`: how long a key must
 * stay after it stopped being active (the longest token lifetime; 0: no wait). Pure.
 */
export function keyRingChangeProblem(
  argument: string,
  what: string,
  deployed: DeployedKeyRing | undefined,
  desired: KeyRingSpec,
  now: number,
  retireAfterSeconds: number,
  usage?: Record<string, number> | string,
): string | undefined {
  if (!deployed) return undefined;
  const got = `got keys [${desired.keys.join(", ")}] with ${desired.active} active`;
  const had = `deployed: keys [${deployed.keys.join(", ")}] with ${deployed.active} active`;
  const dropped = deployed.keys.filter((k) => !desired.keys.includes(k));
  const switching = desired.active !== deployed.active;
  if (switching && !deployed.keys.includes(desired.active)) {
    return (
      `invalid argument ${argument}: ${got} (${had}); expected the active key to be one every apiserver already holds: ` +
      `add ${desired.active} to keys with ${deployed.active} still active in one pulumi up, then make it active in the next ` +
      `(an apiserver not restarted yet could not use ${what} the others already use)`
    );
  }
  if (switching && dropped.length > 0) {
    return `invalid argument ${argument}: ${got} (${had}); expected one step at a time: make ${desired.active} active in one pulumi up, drop ${dropped.join(", ")} in a later one`;
  }
  if (dropped.length === 0) return undefined;
  if (retireAfterSeconds > 0) {
    const since = Date.parse(deployed.activeSince ?? "");
    const until = Number.isNaN(since) ? Number.NaN : since + retireAfterSeconds * 1000;
    if (Number.isNaN(until) || now < until) {
      const when = Number.isNaN(until) ? "an unknown time" : new Date(until).toISOString();
      return (
        `invalid argument ${argument}: ${got} (${had}); expected ${dropped.join(", ")} to be dropped only once every token ` +
        `signed with it has expired: ${deployed.active} became active at ${deployed.activeSince ?? "an unknown time"}, ` +
        `tokens last at most ${retireAfterSeconds} s, so drop it after ${when}`
      );
    }
  }
  if (usage !== undefined) {
    if (typeof usage === "string") {
      return `invalid argument ${argument}: ${got} (${had}); expected to check that nothing still uses ${dropped.join(", ")} before dropping it, but could not look: ${usage}`;
    }
    const still = dropped.filter((k) => (usage[k] ?? 0) > 0).map((k) => `${usage[k]} with ${k}`);
    if (still.length > 0) {
      return (
        `invalid argument ${argument}: ${got} (${had}); expected no Secret still encrypted with a key to drop, found ${still.join(", ")}: ` +
        `the rewrite after the switch did not finish; run pulumi up (it rewrites them) and drop the key after it succeeds`
      );
    }
  }
  return undefined;
}

interface KeyRingInputs {
  readonly argument: string;
  readonly what: string;
  readonly keys: readonly string[];
  readonly active: string;
  readonly retireAfterSeconds: number;
  /** Where and how to count what each key protects (secret: the SSH key). */
  readonly usage?: { readonly connection: SshTarget; readonly network?: ObservedNetwork; readonly script: string };
  /**
   * When the active key became active. Set by check, not by the caller: Pulumi gives check
   * the old inputs (not the outputs), so the time has to travel as an input to be seen by the
   * next preview.
   */
  readonly activeSince?: string;
  /**
   * A value fixed when the ring is first deployed and kept through every rotation (the
   * cluster CA's ring keeps the first CA's certificate: the backups' cluster ID).
   */
  readonly identity?: string;
}

/**
 * The time the active key became active: kept from the deployed inputs while the active key
 * stays, `now` when it changes or on the first deployment. Pure.
 */
export function keyRingActiveSince(olds: { readonly active?: string; readonly activeSince?: string } | undefined, active: string, now: number): string {
  if (olds?.active === active && olds.activeSince) return olds.activeSince;
  return new Date(now).toISOString();
}

async function lookAtUsage(u: KeyRingInputs["usage"]): Promise<Record<string, number> | string | undefined> {
  if (!u) return undefined;
  if (!u.connection || typeof u.connection.host !== "string") return "no connection in the state";
  const r = await runWhereRoutable(u.connection, u.network, u.script, 60000);
  if (!("stdout" in r)) return r.unreachable;
  if (!/^usage done$/m.test(r.stdout)) return `the usage check did not finish (${r.stdout.trim().slice(-200) || "no output"})`;
  return parseKeyUsage(r.stdout);
}

/** Serialized into the state by Pulumi. */
export const keyRingProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: KeyRingInputs, news: KeyRingInputs) {
    const inputs = {
      ...news,
      activeSince: keyRingActiveSince(olds, news.active, Date.now()),
      ...(olds?.identity !== undefined ? { identity: olds.identity } : {}),
    };
    if (!olds?.keys) return { inputs, failures: [] };
    const dropping = olds.keys.some((k) => !news.keys.includes(k));
    const usage = dropping && news.active === olds.active ? await lookAtUsage(olds.usage ?? news.usage) : undefined;
    const problem = keyRingChangeProblem(news.argument, news.what, olds, news, Date.now(), olds.retireAfterSeconds ?? news.retireAfterSeconds, usage);
    return { inputs, failures: problem ? [{ property: "", reason: problem }] : [] };
  },
  async diff(_id: string, olds: KeyRingInputs, news: KeyRingInputs) {
    const changes = JSON.stringify([olds.keys, olds.active, olds.retireAfterSeconds, olds.usage, olds.identity]) !== JSON.stringify([news.keys, news.active, news.retireAfterSeconds, news.usage, news.identity]);
    return { changes, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: KeyRingInputs) {
    return { id: "key-ring", outs: { ...inputs, activeSince: inputs.activeSince ?? keyRingActiveSince(undefined, inputs.active, Date.now()) } };
  },
  async update(_id: string, olds: KeyRingInputs, news: KeyRingInputs) {
    return { outs: { ...news, activeSince: news.activeSince ?? keyRingActiveSince(olds, news.active, Date.now()) } };
  },
};

/**
 * The deployed state of one key ring ({@link keyRingChangeProblem}); registered before the
 * steps that use its keys, so a refused step stops before any host is touched.
 */
export class KeyRing extends pulumi.dynamic.Resource {
  declare public readonly activeSince: pulumi.Output<string>;
  /** The `identity` given when the ring was first deployed (undefined when none was given). */
  declare public readonly identity: pulumi.Output<string | undefined>;

  constructor(
    name: string,
    args: {
      readonly argument: string;
      readonly what: string;
      readonly spec: KeyRingSpec;
      readonly retireAfterSeconds?: number;
      readonly usage?: { readonly connection: pulumi.Input<HostConnection>; readonly network?: ObservedNetwork; readonly script: string };
      /** A value kept from the first deployment on: later values are ignored (e.g. the first CA, which names the cluster for its backups). */
      readonly identity?: pulumi.Input<string>;
    },
    opts?: pulumi.CustomResourceOptions,
  ) {
    const usage = args.usage
      ? pulumi.secret(
          pulumi.output(args.usage.connection).apply((c: pulumi.Unwrap<HostConnection>) => ({
            connection: sshTarget(c),
            ...(args.usage!.network ? { network: args.usage!.network } : {}),
            script: args.usage!.script,
          })),
        )
      : undefined;
    super(
      keyRingProvider,
      name,
      {
        argument: args.argument,
        what: args.what,
        keys: args.spec.keys,
        active: args.spec.active,
        retireAfterSeconds: args.retireAfterSeconds ?? 0,
        usage,
        activeSince: undefined,
        identity: args.identity,
      },
      { ...opts, additionalSecretOutputs: ["usage"] },
    );
  }
}
