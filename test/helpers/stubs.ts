// Stub commands for running hakube's remote scripts on the test machine: each stub is a
// small executable in a folder put first on PATH; it counts its calls in a file and
// answers from a list (fail twice, then succeed, and so on). Scripts run without the
// standard prologue, whose fixed PATH would hide the stubs.
import { spawnSync } from "child_process";
import { after } from "node:test";
import * as fs from "fs";
import * as path from "path";
import { retryFunction, scriptPrologue } from "../../components/remote/files";
import { tempDir } from "./tools";

/** One answer of a stub: what it prints and its exit code. */
export interface Answer {
  readonly stdout?: string;
  readonly exitCode?: number;
}

/** Fails (exit 1, no output) `failures` times, then answers `then` from then on. */
export function failTimesThen(failures: number, then: Answer): Answer[] {
  return [...Array.from({ length: failures }, () => ({ exitCode: 1 })), then];
}

export interface Stubs {
  readonly dir: string;
  /** How many times each stub ran. */
  calls(name: string): number;
  /** The arguments of each call, one array per call. */
  argv(name: string): string[][];
  /** Runs a script body with the stubs first on PATH and the retry helper defined. */
  run(body: string, env?: Record<string, string>): { status: number | null; stdout: string; stderr: string };
  dispose(): void;
}

/**
 * Stubs for the named commands. The last answer repeats once the list is used up. Every
 * command the script needs that is not stubbed comes from the machine's own PATH.
 */
export function stubCommands(answers: Record<string, Answer[]>): Stubs {
  const dir = tempDir("stubs");
  const bin = path.join(dir, "bin");
  fs.mkdirSync(bin);
  for (const [name, list] of Object.entries(answers)) {
    if (!/^[a-z][a-z0-9-]*$/.test(name) || list.length === 0) throw new Error(`bad stub ${name}`);
    list.forEach((a, i) => {
      fs.writeFileSync(path.join(dir, `${name}.${i}.out`), a.stdout ?? "");
    });
    const script = `#!/bin/bash
n=$(cat ${dir}/${name}.count 2>/dev/null || echo 0)
echo $((n + 1)) > ${dir}/${name}.count
printf '%s\\0' "$@" >> ${dir}/${name}.argv
printf '\\n' >> ${dir}/${name}.argv
i=$n; [ "$i" -lt ${list.length} ] || i=${list.length - 1}
codes=(${list.map((a) => a.exitCode ?? 0).join(" ")})
cat ${dir}/${name}.$i.out
exit \${codes[$i]}
`;
    fs.writeFileSync(path.join(bin, name), script, { mode: 0o755 });
  }
  return {
    dir,
    calls: (name) => Number(fs.existsSync(path.join(dir, `${name}.count`)) ? fs.readFileSync(path.join(dir, `${name}.count`), "utf8").trim() : 0),
    argv: (name) =>
      fs.existsSync(path.join(dir, `${name}.argv`))
        ? fs
            .readFileSync(path.join(dir, `${name}.argv`), "utf8")
            .split("\n")
            .filter((l) => l !== "")
            .map((l) => l.split("\0").filter((w, i, all) => i < all.length - 1 || w !== ""))
        : [],
    run(body, env = {}) {
      // The prologue's strictness and umask, without its PATH.
      const prologue = scriptPrologue.split("\n").filter((l) => !l.startsWith("export PATH=")).join("\n");
      const r = spawnSync("bash", ["-c", `${prologue}\n${retryFunction}\n${body}`], {
        encoding: "utf8",
        env: { ...process.env, ...env, PATH: `${bin}:${process.env.PATH}` },
        timeout: 60_000,
      });
      return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "" };
    },
    dispose: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** `stubCommands` for one test file: every stub made is disposed after the file's tests. */
export function stubsDisposedAfterTests(): (answers: Record<string, Answer[]>) => Stubs {
  const made: Stubs[] = [];
  after(() => made.forEach((s) => s.dispose()));
  return (answers) => {
    const s = stubCommands(answers);
    made.push(s);
    return s;
  };
}
