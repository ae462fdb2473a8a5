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
