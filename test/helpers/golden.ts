// Golden files: rendered output is compared with test/golden/<name>; run with
// UPDATE_GOLDEN=1 to rewrite them after an intended change (and review the diff).
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";

const DIR = path.resolve(__dirname, "..", "..", "..", "test", "golden");

export function assertGolden(name: string, actual: string): void {
  const file = path.join(DIR, name);
  if (process.env.UPDATE_GOLDEN === "1") {
    fs.mkdirSync(DIR, { recursive: true });
    fs.writeFileSync(file, actual);
    return;
  }
  assert.ok(fs.existsSync(file), `golden file ${file} is missing; run UPDATE_GOLDEN=1 npm test`);
  assert.equal(actual, fs.readFileSync(file, "utf8"), `${name} differs from its golden file`);
}
