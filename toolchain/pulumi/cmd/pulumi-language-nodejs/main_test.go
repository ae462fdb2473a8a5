package main

// Tests of hakube's Node.js language host through its gRPC methods (served in-process),
// with a stand-in `node` on PATH that records how it was started. What they pin comes
// from upstream's host, pulumi/pulumi sdk/nodejs/cmd/pulumi-language-nodejs/main.go:
//
//   - execRuntime: exit code 32 (nodeJSProcessExitedAfterShowingUserActionableMessage,
//     which @pulumi/pulumi's cmd/run uses once it has logged the error) returns
//     RunResponse{Bail: true} and no error text, so the engine adds no line of its
//     own; any other code is "Program exited with non-zero exit code: N"; a program
//     that could not be started is "Problem executing program (could not run language
//     executor): ...".
//   - constructArguments: node [nodeargs] <@pulumi/pulumi/cmd/run> --monitor --engine
//     --organization --project --root-directory --stack --pwd [--dry-run] ... <entry>
//     <args...>; constructConfig: PULUMI_CONFIG is JSON with keys in the old
//     `<namespace>:config:<name>` form ("{}" for no config); constructConfigSecretKeys:
//     PULUMI_CONFIG_SECRET_KEYS is a JSON list ("[]" for none); parseOptions:
//     typescript defaults to true and PULUMI_NODEJS_TYPESCRIPT=true is set only then,
//     tsconfig goes to PULUMI_NODEJS_TSCONFIG_PATH.
//   - GetRequiredPackages / getPackageInfo / getPluginName / getPluginVersion: every
//     package.json inside node_modules with "pulumi": {"resource": true} is a resource
//     plugin, named pulumi.name or, for @pulumi/<x>, <x> (a third-party package without
//     pulumi.name is left out), versioned pulumi.version or the package's version, with
//     a "v" in front, and pulumi.server passed on.
//
// Deliberate differences (hakube's choice, pinned here too): the entry point goes to
// cmd/run as an absolute path, never ".", because given "." cmd/run (run.js) resolves
// the entry point from package.json's exports/main, which in hakube's repository is the
// built library; and plugins are looked up in node_modules of the program directory and
// of every folder above it (hakube's program is stacks/, its node_modules the repo's),
// where upstream searches only below the program directory.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

var ctx = context.Background()

// serve runs h behind an in-process gRPC server and returns a client for it.
func serve(t *testing.T, h *host) pulumirpc.LanguageRuntimeClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	pulumirpc.RegisterLanguageRuntimeServer(gs, h)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pulumirpc.NewLanguageRuntimeClient(conn)
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

// fakeNode puts a `node` on PATH that records its arguments, environment and working
// directory into out/ and exits with $FAKE_NODE_EXIT.
func fakeNode(t *testing.T, script string) (out string) {
	t.Helper()
	bin, out := t.TempDir(), t.TempDir()
	if script == "" {
		script = `#!/bin/sh
printf '%s\n' "$@" > "$FAKE_NODE_OUT/args"
printf '%s' "$PULUMI_CONFIG" > "$FAKE_NODE_OUT/config"
printf '%s' "$PULUMI_CONFIG_SECRET_KEYS" > "$FAKE_NODE_OUT/secret_keys"
printf '%s' "${PULUMI_NODEJS_TYPESCRIPT-unset}" > "$FAKE_NODE_OUT/typescript"
printf '%s' "${PULUMI_NODEJS_TSCONFIG_PATH-unset}" > "$FAKE_NODE_OUT/tsconfig"
pwd > "$FAKE_NODE_OUT/cwd"
exit "${FAKE_NODE_EXIT:-0}"
`
	}
	write(t, filepath.Join(bin, "node"), script)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	t.Setenv("FAKE_NODE_OUT", out)
	t.Setenv("PULUMI_NODEJS_TYPESCRIPT", "")
	os.Unsetenv("PULUMI_NODEJS_TYPESCRIPT")
	t.Setenv("PULUMI_NODEJS_TSCONFIG_PATH", "")
	os.Unsetenv("PULUMI_NODEJS_TSCONFIG_PATH")
	return out
}

func recorded(t *testing.T, out, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(out, name))
	if err != nil {
		t.Fatalf("the stand-in node did not record %s: %v", name, err)
	}
	return string(b)
}

// project makes a program directory (stacks/ under a root holding node_modules with
// @pulumi/pulumi's cmd/run), as hakube's repository is laid out.
func project(t *testing.T) (root, prog string) {
	t.Helper()
	root = t.TempDir()
	prog = filepath.Join(root, "stacks")
	write(t, filepath.Join(root, "node_modules", "@pulumi", "pulumi", "cmd", "run", "index.js"), "")
	write(t, filepath.Join(prog, "index.ts"), "")
	return root, prog
}

func runRequest(root, prog string) *pulumirpc.RunRequest {
	opts, _ := structpb.NewStruct(map[string]any{"typescript": true})
	return &pulumirpc.RunRequest{
		MonitorAddress:   "127.0.0.1:4001",
		Project:          "hakube",
		Stack:            "local",
		Organization:     "org",
		Pwd:              prog,
		DryRun:           true,
		Config:           map[string]string{"hakube:sshKey": "k", "aws:region": "eu-west-1"},
		ConfigSecretKeys: []string{"hakube:sshKey"},
		Args:             []string{"extra"},
		Info:             &pulumirpc.ProgramInfo{RootDirectory: root, ProgramDirectory: prog, EntryPoint: ".", Options: opts},
	}
}

func TestRunPassesArgumentsConfigAndOptions(t *testing.T) {
	out := fakeNode(t, "")
	root, prog := project(t)
	c := serve(t, newHost())
	if _, err := c.Handshake(ctx, &pulumirpc.LanguageHandshakeRequest{EngineAddress: "127.0.0.1:4002"}); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Run(ctx, runRequest(root, prog))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetError() != "" || resp.GetBail() {
		t.Fatalf("run: %+v", resp)
	}
	args := strings.Split(strings.TrimSuffix(recorded(t, out, "args"), "\n"), "\n")
	if want := filepath.Join(root, "node_modules", "@pulumi", "pulumi", "cmd", "run"); args[0] != want {
		t.Errorf("first argument %q, want the run script %q", args[0], want)
	}
	flag := func(name string) string {
		i := slices.Index(args, "--"+name)
		if i < 0 || i+1 >= len(args) {
			return "<missing>"
		}
		return args[i+1]
	}
	for name, want := range map[string]string{"monitor": "127.0.0.1:4001", "engine": "127.0.0.1:4002", "project": "hakube",
		"stack": "local", "organization": "org", "root-directory": root, "pwd": prog} {
		if got := flag(name); got != want {
			t.Errorf("--%s %q, want %q", name, got, want)
		}
	}
	if !slices.Contains(args, "--dry-run") {
		t.Error("no --dry-run for a preview")
	}
	if n := len(args); n < 2 || args[n-2] != prog || args[n-1] != "extra" {
		t.Errorf("arguments end with %q, want the program directory (absolute) then the program's arguments", args)
	}

	var cfg map[string]string
	if err := json.Unmarshal([]byte(recorded(t, out, "config")), &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg) != 2 || cfg["hakube:config:sshKey"] != "k" || cfg["aws:config:region"] != "eu-west-1" {
		t.Errorf("PULUMI_CONFIG %v, want keys in the <namespace>:config:<name> form", cfg)
	}
	if got := recorded(t, out, "secret_keys"); got != `["hakube:sshKey"]` {
		t.Errorf("PULUMI_CONFIG_SECRET_KEYS %s", got)
	}
	if got := recorded(t, out, "typescript"); got != "true" {
		t.Errorf("PULUMI_NODEJS_TYPESCRIPT %q", got)
	}
	if got := strings.TrimSpace(recorded(t, out, "cwd")); got != prog {
		t.Errorf("node ran in %q, want %q", got, prog)
	}
}

func TestRunDefaultsAndOptions(t *testing.T) {
	out := fakeNode(t, "")
	root, prog := project(t)
	c := serve(t, newHost())

	req := runRequest(root, prog)
	req.Config, req.ConfigSecretKeys, req.DryRun = nil, nil, false
	opts, _ := structpb.NewStruct(map[string]any{"typescript": false, "tsconfig": "tsconfig.stacks.json", "nodeargs": "--max-old-space-size=4096 --trace-warnings"})
	req.Info.Options = opts
	req.Info.EntryPoint = "main.ts"
	if resp, err := c.Run(ctx, req); err != nil || resp.GetError() != "" {
		t.Fatalf("run: %v %v", resp, err)
	}
	if got := recorded(t, out, "config"); got != "{}" {
		t.Errorf("PULUMI_CONFIG %q, want {}", got)
	}
	if got := recorded(t, out, "secret_keys"); got != "[]" {
		t.Errorf("PULUMI_CONFIG_SECRET_KEYS %q, want []", got)
	}
	if got := recorded(t, out, "typescript"); got != "unset" {
		t.Errorf("typescript false: PULUMI_NODEJS_TYPESCRIPT %q, want it unset", got)
	}
	if got := recorded(t, out, "tsconfig"); got != "tsconfig.stacks.json" {
		t.Errorf("PULUMI_NODEJS_TSCONFIG_PATH %q", got)
	}
	args := strings.Split(strings.TrimSuffix(recorded(t, out, "args"), "\n"), "\n")
	if len(args) < 3 || args[0] != "--max-old-space-size=4096" || args[1] != "--trace-warnings" || !strings.HasSuffix(args[2], "cmd/run") {
		t.Errorf("arguments %q, want node's arguments before the run script", args)
	}
	if slices.Contains(args, "--dry-run") {
		t.Error("--dry-run for an update")
	}
	if n := len(args); args[n-2] != filepath.Join(prog, "main.ts") {
		t.Errorf("entry %q, want %q", args[n-2], filepath.Join(prog, "main.ts"))
	}

	// No options at all: typescript is on.
	req.Info.Options = nil
	if resp, err := c.Run(ctx, req); err != nil || resp.GetError() != "" {
		t.Fatalf("run: %v %v", resp, err)
	}
	if got := recorded(t, out, "typescript"); got != "true" {
		t.Errorf("default PULUMI_NODEJS_TYPESCRIPT %q, want true", got)
	}
}

func TestRunExitCodes(t *testing.T) {
	fakeNode(t, "")
	root, prog := project(t)
	c := serve(t, newHost())
	cases := []struct {
		exit  string
		bail  bool
		error string
	}{
		{"0", false, ""},
		{"32", true, ""},
		{"1", false, "Program exited with non-zero exit code: 1"},
		{"2", false, "Program exited with non-zero exit code: 2"},
	}
	for _, tc := range cases {
		t.Setenv("FAKE_NODE_EXIT", tc.exit)
		resp, err := c.Run(ctx, runRequest(root, prog))
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetBail() != tc.bail || resp.GetError() != tc.error {
			t.Errorf("exit %s: bail=%v error=%q, want bail=%v error=%q", tc.exit, resp.GetBail(), resp.GetError(), tc.bail, tc.error)
		}
	}
}

func TestRunCannotStart(t *testing.T) {
	fakeNode(t, "#!/nonexistent/interpreter\n")
	root, prog := project(t)
	resp, err := serve(t, newHost()).Run(ctx, runRequest(root, prog))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.GetError(), "Problem executing program (could not run language executor): ") || resp.GetBail() {
		t.Errorf("run: %+v", resp)
	}
}

func TestRunWithoutPulumiPackage(t *testing.T) {
	fakeNode(t, "")
	prog := t.TempDir()
	resp, err := serve(t, newHost()).Run(ctx, runRequest(prog, prog))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(resp.GetError(), "npm ci") {
		t.Errorf("error %q, want a hint to run npm ci", resp.GetError())
	}
}

func TestRequiredPackagesFromNodeModules(t *testing.T) {
	root, prog := project(t)
	nm := filepath.Join(root, "node_modules")
	write(t, filepath.Join(nm, "@pulumi", "pulumi", "package.json"), `{"name":"@pulumi/pulumi","version":"3.248.0"}`)
	write(t, filepath.Join(nm, "@pulumi", "command", "package.json"),
		`{"name":"@pulumi/command","version":"1.2.1","pulumi":{"resource":true,"name":"command","version":"1.2.1"}}`)
	write(t, filepath.Join(nm, "@pulumi", "tls", "package.json"), `{"name":"@pulumi/tls","version":"5.6.1","pulumi":{"resource":true}}`)
	write(t, filepath.Join(nm, "@acme", "unnamed", "package.json"), `{"name":"@acme/unnamed","version":"1.0.0","pulumi":{"resource":true}}`)
	write(t, filepath.Join(nm, "@acme", "named", "package.json"),
		`{"name":"@acme/named","version":"0.1.0","pulumi":{"resource":true,"name":"acme","version":"v2.0.0","server":"https://plugins.example"}}`)
	write(t, filepath.Join(nm, "lib", "package.json"), `{"name":"lib","version":"1.0.0"}`)
	write(t, filepath.Join(nm, "lib", "node_modules", "@pulumi", "random", "package.json"),
		`{"name":"@pulumi/random","version":"4.16.0","pulumi":{"resource":true}}`)
	write(t, filepath.Join(prog, "node_modules", "@pulumi", "local-only", "package.json"),
		`{"name":"@pulumi/local-only","version":"0.0.1","pulumi":{"resource":true}}`)

	want := map[string]string{"command": "v1.2.1", "tls": "v5.6.1", "acme": "v2.0.0", "random": "v4.16.0", "local-only": "v0.0.1"}
	c := serve(t, newHost())
	resp, err := c.GetRequiredPackages(ctx, &pulumirpc.GetRequiredPackagesRequest{Info: &pulumirpc.ProgramInfo{
		RootDirectory: root, ProgramDirectory: prog, EntryPoint: "."}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range resp.GetPackages() {
		got[p.GetName()] = p.GetVersion()
		if p.GetKind() != "resource" {
			t.Errorf("%s: kind %q", p.GetName(), p.GetKind())
		}
		if p.GetName() == "acme" && p.GetServer() != "https://plugins.example" {
			t.Errorf("acme: server %q", p.GetServer())
		}
	}
	if len(got) != len(want) {
		t.Errorf("packages %v, want %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s: version %q, want %q", name, got[name], v)
		}
	}

	plugins, err := c.GetRequiredPlugins(ctx, &pulumirpc.GetRequiredPluginsRequest{Info: &pulumirpc.ProgramInfo{
		RootDirectory: root, ProgramDirectory: prog, EntryPoint: "."}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plugins.GetPlugins()) != len(want) {
		t.Errorf("plugins %v, want the same %d as the packages", plugins.GetPlugins(), len(want))
	}
}

func TestParseArgs(t *testing.T) {
	h := newHost()
	h.parseArgs([]string{"-tracing=http://zipkin", "-typescript=false", "--nodeargs=--inspect", "-verbose", "127.0.0.1:5000"})
	if h.engineAddress != "127.0.0.1:5000" || h.tracing != "http://zipkin" {
		t.Errorf("engine %q, tracing %q", h.engineAddress, h.tracing)
	}
	if v, _ := h.option(nil, "typescript"); v != "false" {
		t.Errorf("typescript flag %q", v)
	}
	if v, _ := h.option(nil, "nodeargs"); v != "--inspect" {
		t.Errorf("nodeargs flag %q", v)
	}
	if v, _ := h.option(nil, "verbose"); v != "true" {
		t.Errorf("a flag without a value: %q", v)
	}
	// Options in the request win over flags.
	opts, _ := structpb.NewStruct(map[string]any{"typescript": true})
	if v, _ := h.option(opts, "typescript"); v != "true" {
		t.Errorf("request option %q", v)
	}
}

func TestRunPluginRefusesOtherKinds(t *testing.T) {
	stream, err := serve(t, newHost()).RunPlugin(ctx, &pulumirpc.RunPluginRequest{Kind: "resource", Pwd: t.TempDir()})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("RunPlugin(resource): %v, want Unimplemented", err)
	}
}

func TestRunPluginStartsPolicyPack(t *testing.T) {
	out := fakeNode(t, `#!/bin/sh
printf '%s\n' "$@" > "$FAKE_NODE_OUT/args"
pwd > "$FAKE_NODE_OUT/cwd"
echo 12345
echo warming >&2
exit 3
`)
	pack := t.TempDir()
	write(t, filepath.Join(pack, "node_modules", "@pulumi", "pulumi", "cmd", "run-policy-pack", "index.js"), "")
	stream, err := serve(t, newHost()).RunPlugin(ctx, &pulumirpc.RunPluginRequest{Kind: "analyzer", Pwd: pack,
		Args: []string{"127.0.0.1:7000"}, Env: append(os.Environ(), "FAKE_NODE_OUT="+out),
		Info: &pulumirpc.ProgramInfo{RootDirectory: pack, ProgramDirectory: pack, EntryPoint: "."}})
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	code := int32(-1)
	for {
		msg, err := stream.Recv()
		if err != nil {
			break
		}
		stdout.Write(msg.GetStdout())
		stderr.Write(msg.GetStderr())
		if _, ok := msg.GetOutput().(*pulumirpc.RunPluginResponse_Exitcode); ok {
			code = msg.GetExitcode()
		}
	}
	if stdout.String() != "12345\n" || stderr.String() != "warming\n" || code != 3 {
		t.Errorf("stdout %q, stderr %q, exit %d", stdout.String(), stderr.String(), code)
	}
	args := strings.Split(strings.TrimSpace(recorded(t, out, "args")), "\n")
	if len(args) != 3 || !strings.HasSuffix(args[0], "cmd/run-policy-pack") || args[1] != "127.0.0.1:7000" || args[2] != pack {
		t.Errorf("arguments %q, want <run-policy-pack> <engine args> <pack>", args)
	}
	if got := strings.TrimSpace(recorded(t, out, "cwd")); got != pack {
		t.Errorf("ran in %q", got)
	}
}
