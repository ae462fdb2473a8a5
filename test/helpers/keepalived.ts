// Reads what matters for VRRP's trust out of a rendered keepalived.conf: each
// vrrp_instance's source address, its unicast peers (with their options) and whether it
// checks that an advert comes from one of them.

export interface VrrpInstance {
  readonly name: string;
  readonly sourceAddress?: string;
  /** Each `unicast_peer` line: the address, then its options (`min_ttl 255`, ...). */
  readonly peers: readonly { readonly address: string; readonly options: string }[];
  /** `check_unicast_src` in the instance, or `vrrp_check_unicast_src` in global_defs. */
  readonly checksUnicastSource: boolean;
}

/** The text between the first `{` at or after `from` and its matching `}`. */
function blockAfter(text: string, from: number): string {
  const open = text.indexOf("{", from);
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "{") depth++;
    if (text[i] === "}" && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error(`unbalanced braces after offset ${from}`);
}

const lines = (block: string) => block.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#") && !l.startsWith("!"));

export function vrrpInstances(config: string): VrrpInstance[] {
  const globalAt = config.search(/^\s*global_defs\s*\{/m);
  const globalCheck = globalAt >= 0 && lines(blockAfter(config, globalAt)).includes("vrrp_check_unicast_src");
  const found: VrrpInstance[] = [];
  for (const m of config.matchAll(/^\s*vrrp_instance\s+(\S+)\s*\{/gm)) {
    const body = blockAfter(config, m.index!);
    const peerAt = body.search(/^\s*unicast_peer\s*\{/m);
    const peers = peerAt < 0 ? [] : lines(blockAfter(body, peerAt)).map((l) => {
      const [address, ...options] = l.split(/\s+/);
      return { address, options: options.join(" ") };
    });
    // Only the instance's own lines, not those of its nested blocks.
    const own = lines(body.replace(/\{[^{}]*\}/g, "{}"));
    found.push({
      name: m[1],
      sourceAddress: own.find((l) => l.startsWith("unicast_src_ip "))?.split(/\s+/)[1],
      peers,
      checksUnicastSource: globalCheck || own.includes("check_unicast_src"),
    });
  }
  return found;
}
