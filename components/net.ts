// IPv4 helpers used by validation and by the PKI (SANs, first service IP).
// Pure functions; no Pulumi here.

export interface Cidr {
  readonly network: number; // network address as an unsigned 32-bit integer
  readonly prefix: number;
  readonly text: string;
}

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/** Parses dotted-quad IPv4 text; returns undefined when it is not one. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p))) {
    return undefined;
  }
  return parts.reduce((acc, p) => acc * 256 + Number(p), 0);
}

export function isIpv4(text: string): boolean {
  return parseIpv4(text) !== undefined;
}

export function formatIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join(".");
}

/** Parses "a.b.c.d/n"; the address must be the network address (no host bits set). */
export function parseCidr(text: string): Cidr | undefined {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text);
  if (!match) {
    return undefined;
  }
  const address = parseIpv4(match[1]);
  const prefix = Number(match[2]);
  if (address === undefined || prefix > 32) {
    return undefined;
  }
  const size = 2 ** (32 - prefix);
  if (address % size !== 0) {
    return undefined;
  }
  return { network: address, prefix, text };
}

export function cidrSize(cidr: Cidr): number {
  return 2 ** (32 - cidr.prefix);
}

export function cidrContains(cidr: Cidr, address: number): boolean {
  return address >= cidr.network && address < cidr.network + cidrSize(cidr);
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return cidrContains(a, b.network) || cidrContains(b, a.network);
}

/** The first usable address of a range: the ClusterIP of the `kubernetes` Service. */
export function firstHostAddress(cidr: Cidr): string {
  return formatIpv4(cidr.network + 1);
}

/** A DNS name as accepted for certificate SANs (RFC 1123 labels, optional wildcard). */
export function isDnsName(text: string): boolean {
  if (text.length === 0 || text.length > 253) {
    return false;
  }
  return text
    .split(".")
    .every((label, i) => (i === 0 && label === "*") || /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/i.test(label));
}
