// Command pulumi-language-nodejs is hakube's own, minimal Node.js language host for
// the Pulumi engine. The upstream host lives in a module that the Go module proxy
// does not serve here (see toolchain/README.md), so this one does what a `pulumi up`
// of a Node.js program needs: it runs the program through @pulumi/pulumi's own
// `cmd/run` entry point and reports the provider plugins the installed packages need.
// It also starts Node.js policy packs (RunPlugin, kind "analyzer"). It does not install
// dependencies, generate code or pack packages.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/config"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// version is stamped by toolchain/build.sh (-X main.version=...).
var version = "0.0.0-dev"

// Exit code with which @pulumi/pulumi's run script says it already reported the error.
const alreadyReportedExitCode = 32

type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer
	engineAddress string
	tracing       string
	flagOptions   map[string]string // runtime options passed as -name=value flags

	mu       sync.Mutex
	children map[*os.Process]struct{}
}

func newHost() *host {
	return &host{flagOptions: map[string]string{}, children: map[*os.Process]struct{}{}}
}

// parseArgs reads the host's command line: flags (-tracing=..., and runtime options
// from Pulumi.yaml such as -typescript=false, kept by name; unknown flags are kept
// rather than rejected; a flag without a value is "true"), then the engine's address.
func (h *host) parseArgs(args []string) {
	var positional []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			if !hasValue {
				value = "true"
			}
			if name == "tracing" {
				h.tracing = value
			} else {
				h.flagOptions[name] = value
			}
			continue
		}
		positional = append(positional, a)
	}
	if len(positional) > 0 {
		h.engineAddress = positional[0]
	}
}

func main() {
	h := newHost()
	h.parseArgs(os.Args[1:])
	if v, ok := h.flagOptions["version"]; ok && v == "true" {
		fmt.Println(version)
		return
	}

	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Init: func(srv *grpc.Server) error {
			pulumirpc.RegisterLanguageRuntimeServer(srv, h)
			return nil
		},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: could not start the gRPC server: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%d\n", handle.Port)
	if err := <-handle.Done; err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-language-nodejs: %v\n", err)
		os.Exit(1)
	}
}

func (h *host) Handshake(_ context.Context, req *pulumirpc.LanguageHandshakeRequest) (*pulumirpc.LanguageHandshakeResponse, error) {
	if req.GetEngineAddress() != "" {
		h.engineAddress = req.GetEngineAddress()
	}
	return &pulumirpc.LanguageHandshakeResponse{}, nil
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: strings.TrimPrefix(version, "v")}, nil
}

func (h *host) RuntimeOptionsPrompts(context.Context, *pulumirpc.RuntimeOptionsRequest) (*pulumirpc.RuntimeOptionsResponse, error) {
	return &pulumirpc.RuntimeOptionsResponse{}, nil
}

func (h *host) About(context.Context, *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "node is not on PATH")
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		return nil, err
	}
	return &pulumirpc.AboutResponse{Executable: node, Version: strings.TrimSpace(string(out))}, nil
}

func (h *host) InstallDependencies(req *pulumirpc.InstallDependenciesRequest, stream grpc.ServerStreamingServer[pulumirpc.InstallDependenciesResponse]) error {
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetDirectory()
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err == nil {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition,
		"%s has no node_modules: run `npm ci` there (this language host does not install packages)", dir)
}

func (h *host) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p := range h.children {
		_ = p.Signal(syscall.SIGINT)
	}
	return &emptypb.Empty{}, nil
}

// packageJSON holds the fields of a package.json that matter here.
type packageJSON struct {
	Name         string            `json:"name"`
	Version      string            `json:"version"`
	Main         string            `json:"main"`
	Dependencies map[string]string `json:"dependencies"`
	Pulumi       *struct {
		Resource bool   `json:"resource"`
		Name     string `json:"name"`
		Version  string `json:"version"`
		Server   string `json:"server"`
	} `json:"pulumi"`
}

func readPackageJSON(path string) (*packageJSON, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var p packageJSON
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &p, nil
}

// pluginPackages walks every node_modules folder from dir up to the root and lists
// the packages that declare `"pulumi": {"resource": true}`, as the upstream host
// does: such a package needs a resource plugin of its name and version.
func pluginPackages(dir string) ([]*pulumirpc.PackageDependency, error) {
	seen := map[string]*pulumirpc.PackageDependency{}
	var walk func(nm string, depth int) error
	walk = func(nm string, depth int) error {
		if depth > 8 {
			return nil
		}
		entries, err := os.ReadDir(nm)
		if err != nil {
			return nil
		}
		for _, e := range entries {
			name := e.Name()
			if strings.HasPrefix(name, ".") {
				continue
			}
			full := filepath.Join(nm, name)
			if strings.HasPrefix(name, "@") {
				scoped, _ := os.ReadDir(full)
				for _, s := range scoped {
					if err := visit(filepath.Join(full, s.Name()), seen, walk, depth); err != nil {
						return err
					}
				}
				continue
			}
			if err := visit(full, seen, walk, depth); err != nil {
				return err
			}
		}
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		if err := walk(filepath.Join(d, "node_modules"), 0); err != nil {
			return nil, err
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]*pulumirpc.PackageDependency, 0, len(keys))
	for _, k := range keys {
		out = append(out, seen[k])
	}
	return out, nil
}

func visit(pkgDir string, seen map[string]*pulumirpc.PackageDependency, walk func(string, int) error, depth int) error {
	p, err := readPackageJSON(filepath.Join(pkgDir, "package.json"))
	if err != nil {
		return nil // not a package (or unreadable): nothing to report
	}
	if p.Pulumi != nil && p.Pulumi.Resource {
		// As upstream: the plugin's name is pulumi.name, or for a package of the @pulumi
		// scope its simple name; a third-party package without pulumi.name names no
		// plugin (upstream reports that as an error and leaves the package out).
		name := p.Pulumi.Name
		if name == "" && strings.HasPrefix(p.Name, "@pulumi/") {
			name = strings.TrimPrefix(p.Name, "@pulumi/")
		}
		v := p.Pulumi.Version
		if v == "" {
			v = p.Version
		}
		v = strings.TrimPrefix(v, "v")
		if name != "" && v != "" {
			seen[name+"@"+v] = &pulumirpc.PackageDependency{Name: name, Kind: "resource", Version: "v" + v, Server: p.Pulumi.Server}
		}
	}
	return walk(filepath.Join(pkgDir, "node_modules"), depth+1)
}

func (h *host) GetRequiredPackages(_ context.Context, req *pulumirpc.GetRequiredPackagesRequest) (*pulumirpc.GetRequiredPackagesResponse, error) {
	deps, err := pluginPackages(req.GetInfo().GetProgramDirectory())
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetRequiredPackagesResponse{Packages: deps}, nil
}

func (h *host) GetRequiredPlugins(_ context.Context, req *pulumirpc.GetRequiredPluginsRequest) (*pulumirpc.GetRequiredPluginsResponse, error) {
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetPwd()
	}
	deps, err := pluginPackages(dir)
	if err != nil {
		return nil, err
	}
	plugins := make([]*pulumirpc.PluginDependency, 0, len(deps))
	for _, d := range deps {
		plugins = append(plugins, &pulumirpc.PluginDependency{Name: d.Name, Kind: d.Kind, Version: d.Version, Server: d.Server})
	}
	return &pulumirpc.GetRequiredPluginsResponse{Plugins: plugins}, nil
}

func (h *host) GetProgramDependencies(_ context.Context, req *pulumirpc.GetProgramDependenciesRequest) (*pulumirpc.GetProgramDependenciesResponse, error) {
	dir := req.GetInfo().GetProgramDirectory()
	p, err := readPackageJSON(filepath.Join(dir, "package.json"))
	if err != nil {
		return &pulumirpc.GetProgramDependenciesResponse{}, nil
	}
	var out []*pulumirpc.DependencyInfo
	for name := range p.Dependencies {
		if dp, err := readPackageJSON(filepath.Join(dir, "node_modules", name, "package.json")); err == nil {
			out = append(out, &pulumirpc.DependencyInfo{Name: name, Version: dp.Version})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return &pulumirpc.GetProgramDependenciesResponse{Dependencies: out}, nil
}

// option reads a runtime option (Pulumi.yaml `runtime.options`), from the request
// or from the flags the engine started this host with.
func (h *host) option(opts *structpb.Struct, name string) (string, bool) {
	if opts != nil {
		if v, ok := opts.GetFields()[name]; ok {
			switch k := v.GetKind().(type) {
			case *structpb.Value_StringValue:
				return k.StringValue, true
			case *structpb.Value_BoolValue:
				return strconv.FormatBool(k.BoolValue), true
			case *structpb.Value_NumberValue:
				return strconv.FormatFloat(k.NumberValue, 'f', -1, 64), true
			}
		}
	}
	v, ok := h.flagOptions[name]
	return v, ok
}

// findRunScript finds @pulumi/pulumi's cmd/run from the program directory upwards.
func findRunScript(dir string) (string, error) {
	return findSDKCommand(dir, "run")
}

// findSDKCommand finds the folder of one of @pulumi/pulumi's entry points (cmd/<name>)
// the way Node.js resolves the package: in node_modules of dir or of a folder above.
func findSDKCommand(dir, name string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		p := filepath.Join(d, "node_modules", "@pulumi", "pulumi", "cmd", name)
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("cannot find node_modules/@pulumi/pulumi/cmd/%s in %s or above: run `npm ci` in the project", name, dir)
		}
	}
}

// wait waits for a started child, which Cancel can signal meanwhile.
func (h *host) wait(cmd *exec.Cmd) error {
	h.mu.Lock()
	h.children[cmd.Process] = struct{}{}
	h.mu.Unlock()
	err := cmd.Wait()
	h.mu.Lock()
	delete(h.children, cmd.Process)
	h.mu.Unlock()
	return err
}

func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	info := req.GetInfo()
	progDir := info.GetProgramDirectory()
	if progDir == "" {
		progDir = req.GetPwd()
	}
	entry := info.GetEntryPoint()
	if entry == "" {
		entry = req.GetProgram() //nolint:staticcheck // older engines
	}
	if entry == "" {
		entry = "."
	}
	runScript, err := findRunScript(progDir)
	if err != nil {
		return &pulumirpc.RunResponse{Error: err.Error()}, nil
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return &pulumirpc.RunResponse{Error: "node is not on PATH: install Node.js >= 20"}, nil
	}

	var args []string
	if nodeargs, ok := h.option(info.GetOptions(), "nodeargs"); ok && nodeargs != "" {
		args = append(args, strings.Fields(nodeargs)...)
	}
	args = append(args, runScript,
		"--monitor", req.GetMonitorAddress(),
		"--engine", h.engineAddress,
		"--project", req.GetProject(),
		"--stack", req.GetStack(),
		"--pwd", req.GetPwd(),
	)
	if req.GetOrganization() != "" {
		args = append(args, "--organization", req.GetOrganization())
	}
	if info.GetRootDirectory() != "" {
		args = append(args, "--root-directory", info.GetRootDirectory())
	}
	if req.GetDryRun() {
		args = append(args, "--dry-run")
	}
	if req.GetParallel() > 1 {
		args = append(args, "--parallel", strconv.Itoa(int(req.GetParallel())))
	}
	if h.tracing != "" {
		args = append(args, "--tracing", h.tracing)
	}
	// The entry point goes as an absolute path, never as ".": given ".", @pulumi/pulumi's
	// run script would look for the entry point in package.json's exports/main, which in
	// a library's repository (hakube's) names the built library, not the program.
	if entry != "." && !filepath.IsAbs(entry) {
		entry = filepath.Join(progDir, entry)
	} else if entry == "." {
		entry = progDir
	}
	args = append(args, entry)
	args = append(args, req.GetArgs()...)

	cfgJSON, err := runConfig(req.GetConfig())
	if err != nil {
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("failed to serialize configuration: %v", err)}, nil
	}
	secretKeys := req.GetConfigSecretKeys()
	if secretKeys == nil {
		secretKeys = []string{}
	}
	secrets, err := json.Marshal(secretKeys)
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "PULUMI_CONFIG="+cfgJSON, "PULUMI_CONFIG_SECRET_KEYS="+string(secrets))
	// As upstream: typescript defaults to true and is passed only when true.
	if ts, ok := h.option(info.GetOptions(), "typescript"); !ok || ts == "true" {
		env = append(env, "PULUMI_NODEJS_TYPESCRIPT=true")
	}
	if tsconfig, ok := h.option(info.GetOptions(), "tsconfig"); ok && tsconfig != "" {
		env = append(env, "PULUMI_NODEJS_TSCONFIG_PATH="+tsconfig)
	}

	cmd := exec.Command(node, args...)
	cmd.Dir = req.GetPwd()
	cmd.Env = env
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err = cmd.Start(); err == nil {
		err = h.wait(cmd)
	}
	return runResult(err), nil
}

// runResult turns how the program ended into the answer for the engine, as upstream's
// host does: exit code 32 means @pulumi/pulumi already reported the error, so the
// run bails (the engine then prints no "exited with non-zero exit code" line of its
// own); any other code is an error naming the code; a program that could not even
// start is a problem of the executor.
func runResult(err error) *pulumirpc.RunResponse {
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}
	case errors.As(err, &exitErr) && exitErr.ExitCode() == alreadyReportedExitCode:
		return &pulumirpc.RunResponse{Bail: true}
	case errors.As(err, &exitErr) && exitErr.ExitCode() == 0:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited unexpectedly: %v", err)}
	case errors.As(err, &exitErr):
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Program exited with non-zero exit code: %d", exitErr.ExitCode())}
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("Problem executing program (could not run language executor): %v", err)}
	}
}

// runConfig is PULUMI_CONFIG for the program: the configuration as JSON, with keys in
// the old `<namespace>:config:<name>` form, as upstream's host passes them
// (@pulumi/pulumi reads both forms).
func runConfig(cfg map[string]string) (string, error) {
	out := make(map[string]string, len(cfg))
	for k, v := range cfg {
		key, err := config.ParseKey(k)
		if err != nil {
			return "", err
		}
		out[key.Namespace()+":config:"+key.Name()] = v
	}
	b, err := json.Marshal(out)
	return string(b), err
}

// RunPlugin runs a plugin written in Node.js for the engine. Only policy packs
// (kind "analyzer") are supported: when the Node.js language host is present, the
// engine starts a `--policy-pack` folder through this call rather than through the
// older `pulumi-analyzer-policy` launcher. The pack runs under @pulumi/pulumi's
// `cmd/run-policy-pack` (found from the pack's folder upwards) with the arguments
// `<engine args...> <pack folder>`, in the pack's folder; the analyzer it serves
// prints its port on stdout, which travels back to the engine on this stream
// together with stderr, followed by the exit code.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, stream grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]) error {
	if req.GetKind() != "analyzer" {
		return status.Errorf(codes.Unimplemented,
			"hakube's pulumi-language-nodejs runs only policy packs (analyzer plugins), not %q plugins", req.GetKind())
	}
	dir := req.GetInfo().GetProgramDirectory()
	if dir == "" {
		dir = req.GetPwd()
	}
	script, err := findSDKCommand(dir, "run-policy-pack")
	if err != nil {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return status.Error(codes.FailedPrecondition, "node is not on PATH: install Node.js >= 20")
	}

	// Node options come from the pack's PulumiPolicy.yaml only, not from the program's
	// Pulumi.yaml (whose options this host got as flags).
	var args []string
	if nodeargs := req.GetInfo().GetOptions().GetFields()["nodeargs"].GetStringValue(); nodeargs != "" {
		args = append(args, strings.Fields(nodeargs)...)
	}
	args = append(args, script)
	args = append(args, req.GetArgs()...)
	args = append(args, dir)
	env := req.GetEnv()
	if len(env) == 0 {
		env = os.Environ()
	}

	out := &pluginOutput{stream: stream}
	cmd := exec.CommandContext(stream.Context(), node, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out.writer(false)
	cmd.Stderr = out.writer(true)
	// When the engine is done with the pack it cancels the call: stop node politely
	// first, then for good.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return status.Errorf(codes.Internal, "could not start node: %v", err)
	}
	err = h.wait(cmd)

	code := 0
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case stream.Context().Err() != nil:
		return nil // the engine hung up; nobody is left to tell
	default:
		return status.Errorf(codes.Internal, "policy pack: %v", err)
	}
	return out.send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
}

// pluginOutput forwards a plugin's stdout and stderr to the engine. exec copies the two
// pipes on goroutines of their own, and a gRPC stream takes one Send at a time.
type pluginOutput struct {
	mu     sync.Mutex
	stream grpc.ServerStreamingServer[pulumirpc.RunPluginResponse]
}

func (o *pluginOutput) send(msg *pulumirpc.RunPluginResponse) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stream.Send(msg)
}

type pluginWriter struct {
	out    *pluginOutput
	stderr bool
}

func (o *pluginOutput) writer(stderr bool) *pluginWriter {
	return &pluginWriter{out: o, stderr: stderr}
}

func (w *pluginWriter) Write(p []byte) (int, error) {
	data := append([]byte(nil), p...)
	msg := &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: data}}
	if w.stderr {
		msg = &pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: data}}
	}
	if err := w.out.send(msg); err != nil {
		return 0, err
	}
	return len(p), nil
}
