// Release versions ("v1.36.3", "3.6.16") as used in download paths and triggers.

export interface Version {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** Canonical text with a leading "v", e.g. "v1.36.3". */
  readonly text: string;
}

export function parseVersion(text: string): Version | undefined {
  const match = /^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/.exec(text.trim());
  if (!match) {
    return undefined;
  }
  const [major, minor, patch] = match.slice(1, 4).map(Number);
  return { major, minor, patch, text: `v${major}.${minor}.${patch}` };
}

export function compareVersions(a: Version, b: Version): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

/** The newest Kubernetes release whose server tarball digest hakube pins (see `pinnedReleaseDigests`). */
export const DEFAULT_KUBERNETES_VERSION = "v1.37.1";

/** The oldest Kubernetes minor hakube renders flags and configuration for (and tests). */
export const MINIMUM_KUBERNETES_VERSION = "v1.36.0";

/** Kubernetes since 1.31 expects the health endpoints of etcd 3.5.11 (or 3.4.29). */
export const MINIMUM_ETCD_VERSION = "v3.5.11";

/**
 * Why moving a running cluster from `from` to `to` is not allowed, or undefined when it
 * is. Kubernetes' version-skew policy upgrades a control plane one minor release at a
 * time (1.36 -> 1.37, never 1.36 -> 1.38), and neither Kubernetes nor etcd supports going
 * back to an earlier release once newer components have written to the cluster; etcd
 * likewise moves one minor at a time (3.5 -> 3.6). Patch releases within a minor are
 * free to move forward. An unknown or unparsable `from` (nothing deployed yet) allows
 * anything.
 */
export function upgradeProblem(from: string | undefined, to: string): string | undefined {
  const a = from === undefined ? undefined : parseVersion(from);
  const b = parseVersion(to);
  if (!a || !b) {
    return undefined;
  }
  const order = compareVersions(b, a);
  if (order === 0) {
    return undefined;
  }
  const next = `v${a.major}.${a.minor + 1}.x`;
  if (order < 0) {
    return `going back from the deployed ${a.text} to ${b.text} is not supported; stay at ${a.text} or upgrade (to v${a.major}.${a.minor}.x or ${next})`;
  }
  if (b.major !== a.major || b.minor > a.minor + 1) {
    return `an upgrade from the deployed ${a.text} to ${b.text} skips a minor release; upgrade to ${next} first, then on from there`;
  }
  return undefined;
}
