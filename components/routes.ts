// The kernel's IPv4 routes (/proc/net/route) and whether a packet to an address would stay
// on a stack's bridge (traffic safety, ../shared/TESTBED.md). Pure: callers read the files.
import { Cidr, cidrContains, formatIpv4, parseIpv4 } from "./net";

export interface Route {
  readonly iface: string;
  /** Network address and prefix length of the route's destination. */
  readonly destination: number;
  readonly prefixLength: number;
  /** True for a route with a gateway (RTF_GATEWAY): traffic would leave the link. */
  readonly viaGateway: boolean;
  /** True for an unreachable/prohibit/blackhole route (RTF_REJECT). */
  readonly reject: boolean;
  readonly metric: number;
}

/** /proc/net/route holds addresses as little-endian hex words. */
function hexAddress(hex: string): number {
  const n = parseInt(hex, 16);
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | ((n >>> 24) & 0xff)) >>> 0;
}

function prefixOf(mask: number): number {
  let bits = 0;
  for (let m = mask; m & 0x80000000; m = (m << 1) >>> 0) bits++;
  return bits;
}

/** The IPv4 routes of /proc/net/route (main table). */
export function parseRoutes(text: string): Route[] {
  return text
    .split("\n")
    .slice(1)
    .map((line) => line.trim().split(/\s+/))
    .filter((f) => f.length >= 8)
    .map((f) => ({
      iface: f[0],
      destination: hexAddress(f[1]),
      prefixLength: prefixOf(hexAddress(f[7])),
      viaGateway: (parseInt(f[3], 16) & 0x2) !== 0,
      reject: (parseInt(f[3], 16) & 0x200) !== 0,
      metric: Number(f[6]),
    }));
}

export interface StackNetwork {
  readonly stack: string;
  readonly bridge: string;
  readonly subnet: Cidr;
}

/**
 * Why a packet to `address` must not be sent, or undefined when it may: loopback, or an
 * address in a stack's subnet while that subnet is routed, on the link, through the
 * stack's bridge (and the bridge exists).
 */
export function destinationProblem(
  address: string,
  networks: readonly StackNetwork[],
  routes: readonly Route[],
  bridgeExists: (name: string) => boolean,
): string | undefined {
  const ip = parseIpv4(address);
  if (ip === undefined) {
    return `${JSON.stringify(address)} is not an IPv4 address`;
  }
  if (ip >>> 24 === 127) {
    return undefined;
  }
  const network = networks.find((n) => cidrContains(n.subnet, ip));
  if (!network) {
    return `${address} is in no local stack's subnet (${networks.map((n) => `${n.stack} ${n.subnet.text}`).join(", ") || "none known"})`;
  }
  const where = `stack ${network.stack}: bridge ${network.bridge} with ${network.subnet.text}`;
  if (!bridgeExists(network.bridge)) {
    return `${where} is missing; refusing to send to ${address} (it would leave the host by the default route). Bring the stack up again (scripts/local-up.sh) or clean it up (scripts/local-down.sh)`;
  }
  // The most specific route for the address must be the bridge's own link route.
  const best = routes
    .filter((r) => r.prefixLength === 0 || cidrContains({ network: r.destination, prefix: r.prefixLength, text: "" }, ip))
    .sort((a, b) => b.prefixLength - a.prefixLength || a.metric - b.metric)[0];
  if (!best || best.reject || best.iface !== network.bridge || best.viaGateway || best.prefixLength !== network.subnet.prefix || best.destination !== network.subnet.network) {
    const found = best ? `${formatIpv4(best.destination)}/${best.prefixLength} via ${best.iface}${best.viaGateway ? " (gateway)" : ""}` : "no route";
    return `${where} does not carry ${address} (the kernel routes it by ${found}); refusing to send`;
  }
  return undefined;
}

