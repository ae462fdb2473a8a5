// A bootstrap token (kubernetes.io: "Authenticating with Bootstrap Tokens"): the secret a
// new worker's kubelet presents once, to ask for its client certificate. Made at random
// in the state (a secret), with an expiry; renewed by a `pulumi up` once less than half
// of its lifetime is left, so a join or a re-bootstrap in any `up` finds a valid one, and
// made anew at once when its `epoch` changes (what makes a kubelet bootstrap again).
import * as pulumi from "@pulumi/pulumi";

export interface BootstrapTokenArgs {
  /** Lifetime in hours. */
  readonly ttlHours: number;
  /**
   * A value whose change makes a new token (for a node: a digest of its machine and the
   * cluster's CA bundle, whose change makes its kubelet bootstrap again). @default ""
   */
  readonly epoch?: pulumi.Input<string>;
}

interface TokenInputs {
  readonly ttlHours: number;
  readonly epoch?: string;
}

interface TokenOutputs extends TokenInputs {
  readonly tokenId: string;
  readonly tokenSecret: string;
  /** RFC 3339, as the token Secret's `expiration` wants it. */
  readonly expiration: string;
}

/** Is a token with this expiry due for renewal at `now` (less than half its lifetime left)? */
export function tokenDue(expiration: string, ttlHours: number, now: number): boolean {
  const end = Date.parse(expiration);
  return !Number.isFinite(end) || end - now < (ttlHours * 3600 * 1000) / 2;
}

export const bootstrapTokenProvider: pulumi.dynamic.ResourceProvider = {
  async diff(_id: string, olds: TokenOutputs, news: TokenInputs) {
    // `tokenDue` is captured by value when the provider is serialized; Date.now() is the
    // preview's time, so the renewal shows in the preview that would do it.
    const due = tokenDue(olds.expiration, olds.ttlHours, Date.now());
    const renew = due || olds.ttlHours !== news.ttlHours;
    const epoch = (olds.epoch ?? "") !== (news.epoch ?? "");
    const replaces = [...(renew ? ["ttlHours"] : []), ...(epoch ? ["epoch"] : [])];
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: false };
  },
  async create(inputs: TokenInputs) {
    // Token ids and secrets are [a-z0-9]{6} and [a-z0-9]{16} (the bootstrap token format).
    const { randomInt } = await import("crypto");
    const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
    const pick = (n: number) => Array.from({ length: n }, () => alphabet[randomInt(alphabet.length)]).join("");
    const tokenId = pick(6);
    const expiration = new Date(Date.now() + inputs.ttlHours * 3600 * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
    const outs: TokenOutputs = { ttlHours: inputs.ttlHours, epoch: inputs.epoch ?? "", tokenId, tokenSecret: pick(16), expiration };
    return { id: tokenId, outs };
  },
};

/** A bootstrap token: `token` is `<id>.<secret>` (secret). */
export class BootstrapToken extends pulumi.dynamic.Resource {
  declare public readonly tokenId: pulumi.Output<string>;
  declare public readonly tokenSecret: pulumi.Output<string>;
  declare public readonly expiration: pulumi.Output<string>;

  constructor(name: string, args: BootstrapTokenArgs, opts?: pulumi.CustomResourceOptions) {
    super(
      bootstrapTokenProvider,
      name,
      { ttlHours: args.ttlHours, epoch: args.epoch ?? "", tokenId: undefined, tokenSecret: undefined, expiration: undefined },
      { ...opts, additionalSecretOutputs: ["tokenSecret"] },
    );
  }

  /** `<id>.<secret>`, as kubelets present it (secret). */
  public get token(): pulumi.Output<string> {
    return pulumi.secret(pulumi.interpolate`${this.tokenId}.${this.tokenSecret}`);
  }
}
