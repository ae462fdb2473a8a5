// The rogue VRRP sender of the end-to-end test 3b (ops/scenarios.ts): its perl compiles,
// it is bounded, and it leaves nothing behind. (What it sends was checked against
// keepalived 2.2.7 itself: an advert from a peer's address is obeyed, from another
// address dropped as "not a unicast peer".)
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { rogueAdvertsCleanup, rogueAdvertsScript } from "../../ops/scenarios";
import { run, tempDir } from "../helpers/tools";

const script = rogueAdvertsScript({
  source: "10.0.0.71",
  virtualRouterId: 51,
  priority: 254,
  advertIntervalSeconds: 0.5,
  virtualIp: "10.0.0.100",
  peers: ["10.0.0.11", "10.0.0.12", "10.0.0.13"],
  seconds: 6,
});

test("rogue adverts: 12 rounds 0.5 s apart to every peer, bounded by timeout, the program removed after", () => {
  assert.match(script, /^timeout 16 perl \/run\/hakube-rogue-vrrp\.pl 10\.0\.0\.71 51 254 50 10\.0\.0\.100 12 0\.5 10\.0\.0\.11 10\.0\.0\.12 10\.0\.0\.13 \|\| status=\$\?$/m);
  assert.match(script, /^rm -f \/run\/hakube-rogue-vrrp\.pl \/run\/hakube-rogue-vrrp\.pid\nexit \$status$/m);
  assert.match(rogueAdvertsCleanup, /grep -qa \/run\/hakube-rogue-vrrp\.pl \/proc\/"\$pid"\/cmdline .* kill "\$pid"/);
  assert.match(rogueAdvertsCleanup, /rm -f \/run\/hakube-rogue-vrrp\.pl \/run\/hakube-rogue-vrrp\.pid$/);
});

test("rogue adverts: the perl program compiles, with TTL 255 as a packed int", () => {
  const program = /<<'HAKUBE_PERL'\n([\s\S]*?)HAKUBE_PERL\n/.exec(script)?.[1];
  assert.ok(program, "the program's heredoc");
  assert.match(program, /IP_TTL, pack\("i", 255\)/);
  const dir = tempDir("rogue-vrrp");
  try {
    const file = path.join(dir, "rogue.pl");
    fs.writeFileSync(file, program);
    const r = run("perl", ["-c", file]);
    assert.equal(r.status, 0, r.stderr);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
