// Traffic safety (../shared/TESTBED.md): a local stack's addresses exist only while its
// bridge does. A packet to a VIP or machine address sent while the bridge is missing
// leaves the host by its default route, toward a network that is not ours. Every tool
// here (status, tests, probes, SSH, kubectl) asks `assertSafeDestination` first: loopback
// is always fine; any other address must lie in the subnet of a stack network registered
// with `allowStackNetwork`, and the kernel must route that subnet through that stack's
// bridge right now (read fresh from /proc/net/route on every call, about 50 µs).
import * as fs from "fs";
import { parseCidr } from "../components/net";
import { destinationProblem, parseRoutes, StackNetwork } from "../components/routes";

export { Route, StackNetwork, parseRoutes, destinationProblem } from "../components/routes";

const allowed: StackNetwork[] = [];

/** Registers a stack's bridge and subnet as a place tools may send to (while it is routed). */
export function allowStackNetwork(stack: string, bridge: string, subnet: string): void {
  const cidr = parseCidr(subnet);
  if (!cidr || !/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) {
    throw new Error(`allowStackNetwork: bad bridge ${JSON.stringify(bridge)} or subnet ${JSON.stringify(subnet)}`);
  }
  if (!allowed.some((n) => n.bridge === bridge && n.subnet.text === cidr.text)) {
    allowed.push({ stack, bridge, subnet: cidr });
  }
}

export class TrafficRefused extends Error {}

/** Throws `TrafficRefused` unless a packet to `address` is safe to send now. */
export function assertSafeDestination(address: string): void {
  const problem = destinationProblem(
    address,
    allowed,
    parseRoutes(fs.readFileSync("/proc/net/route", "utf8")),
    (name) => fs.existsSync(`/sys/class/net/${name}/bridge`),
  );
  if (problem) {
    throw new TrafficRefused(`traffic safety: ${problem}`);
  }
}

/** The host of an https:// URL, checked with `assertSafeDestination`. */
export function assertSafeUrl(url: string): void {
  assertSafeDestination(new URL(url).hostname);
}
