// The versions a control plane runs, kept in the state so that the next preview can refuse
// an upgrade the version-skew policy does not allow (skipping a minor, going back).
import * as pulumi from "@pulumi/pulumi";
import { upgradeProblem } from "../version";

export interface DeployedVersionsArgs {
  /** Canonical Kubernetes version, e.g. "v1.37.1". */
  readonly kubernetesVersion: string;
  /** Canonical etcd version, e.g. "v3.6.16". */
  readonly etcdVersion: string;
}

interface Versions {
  readonly kubernetesVersion?: string;
  readonly etcdVersion?: string;
}

/** Argument names as users know them, for the messages. */
const ARGUMENTS: readonly (readonly [keyof Versions, string])[] = [
  ["kubernetesVersion", "kubernetesVersion"],
  ["etcdVersion", "etcdVersion"],
];

/**
 * The checks run in the provider's Check, which the engine calls at preview with the
 * inputs in the state (the deployed versions) and the new ones; a failure stops the
 * preview (and `up`) before any step runs. Only plain values and the pure
 * `upgradeProblem` are captured, so the provider serializes small.
 */
export const deployedVersionsProvider: pulumi.dynamic.ResourceProvider = {
  async check(olds: Versions, news: Versions) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    for (const [key, argument] of ARGUMENTS) {
      const problem = upgradeProblem(olds?.[key], news[key] ?? "");
      if (problem) {
        failures.push({
          property: "",
          reason: `invalid argument ${argument}: got ${JSON.stringify(news[key])}; expected a version the deployed cluster can move to: ${problem}`,
        });
      }
    }
    return { inputs: news, failures };
  },
  async diff(_id: string, olds: Versions, news: Versions) {
    const changed = ARGUMENTS.map(([key]) => key).filter((key) => olds[key] !== news[key]);
    return { changes: changed.length > 0, replaces: [], deleteBeforeReplace: false };
  },
  async create(inputs: Versions) {
    return { id: "deployed-versions", outs: { kubernetesVersion: inputs.kubernetesVersion, etcdVersion: inputs.etcdVersion } };
  },
  async update(_id: string, _olds: Versions, news: Versions) {
    return { outs: { kubernetesVersion: news.kubernetesVersion, etcdVersion: news.etcdVersion } };
  },
};

/**
 * Records the Kubernetes and etcd versions of a control plane. HaControlPlane registers it
 * before anything else, so a refused upgrade stops before any host is touched; the
 * recorded versions move when the upgrade starts (a failed upgrade can be re-run to the
 * same version, but not rolled back).
 */
export class DeployedVersions extends pulumi.dynamic.Resource {
  // `declare`: no class field, which (ES2022) would overwrite the output the base class set.
  declare public readonly kubernetesVersion: pulumi.Output<string>;
  declare public readonly etcdVersion: pulumi.Output<string>;

  constructor(name: string, args: DeployedVersionsArgs, opts?: pulumi.CustomResourceOptions) {
    super(deployedVersionsProvider, name, { kubernetesVersion: args.kubernetesVersion, etcdVersion: args.etcdVersion }, opts);
  }
}
