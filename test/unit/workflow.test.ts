// The CI workflow (.github/workflows/preview.yml) against the review of 2026-12-07 (H4): a
// pull request's preview runs the branch's program, which can print any secret it can
// decrypt, so each stack's secrets (its passphrase, its AWS role) are environment secrets
// of that stack's own environment, and no job that a pull request starts sees another
// stack's. The environments' protection (required reviewers on aws-prod-preview, main only
// on aws-dev) is a repository setting; the README says how to set it.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";

const ROOT = path.join(__dirname, "..", "..", "..");
const workflow = yaml.load(fs.readFileSync(path.join(ROOT, ".github", "workflows", "preview.yml"), "utf8")) as any;
const SECRET = /secrets\.(PULUMI_CONFIG_PASSPHRASE|AWS_[A-Z_]*ROLE_ARN)\b/g;

/** The stacks a job runs for: its matrix, or the stack named in its steps. */
function stacksOf(job: any): string[] {
  if (job.strategy?.matrix?.stack) return job.strategy.matrix.stack;
  const text = JSON.stringify(job.steps);
  return [...new Set([...text.matchAll(/stack-name":"(aws-[a-z]+)"/g)].map((m) => m[1]))];
}

/** The environment a job runs in for `stack` (a matrix expression resolved). */
function environmentOf(job: any, stack: string): string | undefined {
  const e = typeof job.environment === "string" ? job.environment : job.environment?.name;
  return e?.replace(/\$\{\{\s*matrix\.stack\s*\}\}/g, stack);
}

test("every job that touches a stack's secrets runs in that stack's own environment, one per stack, so a pull request's preview of aws-dev never holds aws-prod's passphrase", () => {
  const environments = new Map<string, string>();
  for (const [name, job] of Object.entries<any>(workflow.jobs)) {
    const secrets = [...JSON.stringify(job).matchAll(SECRET)].map((m) => m[1]);
    if (secrets.length === 0) continue;
    for (const stack of stacksOf(job)) {
      const env = environmentOf(job, stack);
      assert.ok(env, `job ${name} reads ${[...new Set(secrets)].join(", ")} for ${stack} outside an environment (repository secrets are the same for every stack)`);
      assert.ok(env.startsWith(`${stack}`), `job ${name}: ${stack}'s secrets come from an environment of its own, not ${env}`);
      const holder = environments.get(env);
      assert.ok(!holder || holder === stack, `environment ${env} serves ${holder} and ${stack}`);
      environments.set(env, stack);
    }
  }
  assert.ok([...environments.values()].includes("aws-prod"), "aws-prod is previewed (in its protected environment)");
});

test("pull requests reach aws-prod only through an environment whose name says it is protected, and deploy nothing", () => {
  for (const [name, job] of Object.entries<any>(workflow.jobs)) {
    if (!stacksOf(job).includes("aws-prod")) continue;
    assert.equal(environmentOf(job, "aws-prod"), "aws-prod-preview", `job ${name}`);
    assert.doesNotMatch(JSON.stringify(job.steps), /command":"(up|destroy|refresh)"/, `job ${name} only previews aws-prod`);
  }
});
