// Command pulumi-resource-command is hakube's own implementation of the resources of
// the `command` Pulumi package that the @pulumi/command Node.js SDK drives:
// local.Command, remote.Command (over SSH), remote.CopyToRemote and the local.run
// function, with the SDK's property names and the upstream provider's semantics:
// create runs on create; a change of any input but `triggers` is an update that runs
// `update` (or `create` when there is no update command); `delete` runs on delete;
// with addPreviousOutputInEnv (default true) the previous stdout and stderr are in
// PULUMI_COMMAND_STDOUT and PULUMI_COMMAND_STDERR. The upstream provider's module is
// not served by the Go module proxy here; see toolchain/README.md.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"hakube.local/toolchain/pulumi/internal/provkit"
)

var version = "0.0.0-dev"

type V = provkit.Values

// Inputs whose change only re-runs the update; `triggers` replaces (the SDK also sets
// replaceOnChanges on it).
var commandUpdatable = []string{"create", "update", "delete", "environment", "dir", "interpreter", "stdin",
	"logging", "addPreviousOutputInEnv", "connection", "assetPaths", "archivePaths"}

func main() {
	s := &provkit.Server{
		Name:    "command",
		Version: version,
		Kinds: map[string]*provkit.Kind{
			"command:local:Command": {
				Updatable: commandUpdatable,
				Create:    func(ctx context.Context, _ string, in V) (string, V, error) { return runCreate(ctx, in, localRunner) },
				Update: func(ctx context.Context, _, _ string, st, oi, ni V, ch []string) (V, error) {
					return runUpdate(ctx, st, ni, ch, localRunner)
				},
				Delete: func(ctx context.Context, _, _ string, st V) error { return runDelete(ctx, st, localRunner) },
			},
			"command:remote:Command": {
				Updatable: commandUpdatable,
				Validate:  validateConnection,
				Create:    func(ctx context.Context, _ string, in V) (string, V, error) { return runCreate(ctx, in, remoteRunner) },
				Update: func(ctx context.Context, _, _ string, st, oi, ni V, ch []string) (V, error) {
					return runUpdate(ctx, st, ni, ch, remoteRunner)
				},
				Delete: func(ctx context.Context, _, _ string, st V) error { return runDelete(ctx, st, remoteRunner) },
			},
			"command:remote:CopyToRemote": {
				Updatable: []string{"source", "remotePath", "connection"},
				Validate:  validateConnection,
				Create: func(ctx context.Context, _ string, in V) (string, V, error) {
					return newID(), V{}, copyToRemote(ctx, in)
				},
				Update: func(ctx context.Context, _, _ string, _, _, ni V, ch []string) (V, error) {
					if onlyConnection(ch) {
						return nil, nil
					}
					return V{}, copyToRemote(ctx, ni)
				},
			},
		},
		Invokes: map[string]func(context.Context, V) (V, error){
			"command:local:run": func(ctx context.Context, in V) (V, error) {
				stdout, stderr, err := localRunner(ctx, in, provkit.Str(in, "command"), nil)
				if err != nil {
					return nil, err
				}
				return V{"stdout": stdout, "stderr": stderr}, nil
			},
		},
	}
	if err := provkit.Main(s); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func onlyConnection(changed []string) bool {
	for _, c := range changed {
		if c != "connection" {
			return false
		}
	}
	return true
}

// runner runs one command and returns its stdout and stderr (one trailing newline
// trimmed, as upstream does).
type runner func(ctx context.Context, in V, cmd string, extraEnv map[string]string) (string, string, error)

func previousEnv(state V) map[string]string {
	if !provkit.Bool(state, "addPreviousOutputInEnv", true) {
		return nil
	}
	return map[string]string{
		"PULUMI_COMMAND_STDOUT": provkit.Str(state, "stdout"),
		"PULUMI_COMMAND_STDERR": provkit.Str(state, "stderr"),
	}
}

func runCreate(ctx context.Context, in V, run runner) (string, V, error) {
	out := V{"stdout": "", "stderr": ""}
	if c := provkit.Str(in, "create"); c != "" {
		stdout, stderr, err := run(ctx, in, c, nil)
		if err != nil {
			return "", nil, err
		}
		out["stdout"], out["stderr"] = stdout, stderr
	}
	return newID(), out, nil
}

// Changes that do not re-run anything: the delete command, logging, flags, and the
// connection (a new address or key for the same machine).
var noRerun = map[string]bool{"delete": true, "logging": true, "addPreviousOutputInEnv": true, "connection": true}

func runUpdate(ctx context.Context, state, in V, changed []string, run runner) (V, error) {
	rerun := false
	for _, c := range changed {
		if !noRerun[c] {
			rerun = true
		}
	}
	if !rerun {
		return V{"stdout": provkit.Str(state, "stdout"), "stderr": provkit.Str(state, "stderr")}, nil
	}
	c := provkit.Str(in, "update")
	if c == "" {
		c = provkit.Str(in, "create")
	}
	if c == "" {
		return V{"stdout": "", "stderr": ""}, nil
	}
	env := previousEnv(mergeFlag(state, in))
	stdout, stderr, err := run(ctx, in, c, env)
	if err != nil {
		return nil, err
	}
	return V{"stdout": stdout, "stderr": stderr}, nil
}

func mergeFlag(state, in V) V {
	m := V{"stdout": state["stdout"], "stderr": state["stderr"]}
	if v, ok := in["addPreviousOutputInEnv"]; ok {
		m["addPreviousOutputInEnv"] = v
	}
	return m
}

func runDelete(ctx context.Context, state V, run runner) error {
	c := provkit.Str(state, "delete")
	if c == "" {
		return nil
	}
	_, _, err := run(ctx, state, c, previousEnv(state))
	return err
}

func trimNL(s string) string { return strings.TrimSuffix(s, "\n") }

func commandError(cmd string, err error, stdout, stderr string) error {
	tail := func(s string) string {
		s = strings.TrimSpace(s)
		if len(s) > 4000 {
			s = "..." + s[len(s)-4000:]
		}
		return s
	}
	return provkit.Errorf("command failed: %v\ncommand: %s\nstdout:\n%s\nstderr:\n%s", err, firstLine(cmd), tail(stdout), tail(stderr))
}

func firstLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 3 {
		return strings.Join(lines[:3], "\n") + "\n..."
	}
	return strings.Join(lines, "\n")
}

func envList(in V, extra map[string]string) []string {
	var out []string
	for k, v := range provkit.Obj(in, "environment") {
		if s, ok := v.(string); ok {
			out = append(out, k+"="+s)
		}
	}
	for k, v := range extra {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func localRunner(ctx context.Context, in V, command string, extra map[string]string) (string, string, error) {
	interp := provkit.Strs(in, "interpreter")
	if len(interp) == 0 {
		interp = []string{"/bin/sh", "-c"}
	}
	args := append(append([]string{}, interp[1:]...), command)
	c := exec.CommandContext(ctx, interp[0], args...)
	c.Dir = provkit.Str(in, "dir")
	c.Env = append(os.Environ(), envList(in, extra)...)
	if stdin, ok := in["stdin"].(string); ok && stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return "", "", commandError(command, err, stdout.String(), stderr.String())
	}
	return trimNL(stdout.String()), trimNL(stderr.String()), nil
}

func validateConnection(in V) map[string]string {
	conn, ok := in["connection"].(map[string]any)
	if !ok {
		if in["connection"] == nil {
			if _, present := in["connection"]; !present {
				return map[string]string{"connection": "is required"}
			}
		}
		return nil
	}
	if h, ok := conn["host"]; ok && h == "" {
		return map[string]string{"connection.host": "is required"}
	}
	if _, ok := conn["proxy"].(map[string]any); ok {
		return map[string]string{"connection.proxy": "is not supported by hakube's command provider"}
	}
	return nil
}

// dial connects over SSH with the connection's retry policy (dialErrorLimit tries,
// -1 for no limit, perDialTimeout seconds each), for machines that are still booting.
func dial(ctx context.Context, in V) (*ssh.Client, error) {
	conn := provkit.Obj(in, "connection")
	host := provkit.Str(conn, "host")
	port := int(provkit.Num(conn, "port", 22))
	user := provkit.Str(conn, "user")
	if user == "" {
		user = "root"
	}
	var auths []ssh.AuthMethod
	if k := provkit.Str(conn, "privateKey"); k != "" {
		var signer ssh.Signer
		var err error
		if pw := provkit.Str(conn, "privateKeyPassword"); pw != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(k), []byte(pw))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(k))
		}
		if err != nil {
			return nil, provkit.Errorf("connection.privateKey: %v", err)
		}
		auths = append(auths, ssh.PublicKeys(signer))
	}
	if pw := provkit.Str(conn, "password"); pw != "" {
		auths = append(auths, ssh.Password(pw))
	}
	if len(auths) == 0 {
		return nil, provkit.Errorf("connection: give privateKey or password (SSH agents are not supported by hakube's command provider)")
	}
	hostKey := ssh.InsecureIgnoreHostKey()
	if hk := provkit.Str(conn, "hostKey"); hk != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(hk))
		if err != nil {
			return nil, provkit.Errorf("connection.hostKey: %v", err)
		}
		hostKey = ssh.FixedHostKey(pk)
	}
	timeout := time.Duration(provkit.Num(conn, "perDialTimeout", 15)) * time.Second
	cfg := &ssh.ClientConfig{User: user, Auth: auths, HostKeyCallback: hostKey, Timeout: timeout}
	limit := int(provkit.Num(conn, "dialErrorLimit", 10))
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var lastErr error
	for attempt := 1; limit < 0 || attempt <= limit; attempt++ {
		client, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return client, nil
		}
		lastErr = err
		var authErr *ssh.ServerAuthError
		if errors.As(err, &authErr) || strings.Contains(err.Error(), "unable to authenticate") {
			break
		}
		wait := time.Duration(1<<min(attempt-1, 3)) * time.Second
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil, provkit.Errorf("ssh to %s@%s failed: %v", user, addr, lastErr)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func remoteRunner(ctx context.Context, in V, command string, extra map[string]string) (string, string, error) {
	client, err := dial(ctx, in)
	if err != nil {
		return "", "", err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return "", "", provkit.Errorf("ssh session: %v", err)
	}
	defer sess.Close()
	// Environment: through the SSH protocol where the server accepts it (AcceptEnv),
	// otherwise exported at the start of the command.
	var prefix []string
	for _, kv := range envList(in, extra) {
		k, v, _ := strings.Cut(kv, "=")
		if err := sess.Setenv(k, v); err != nil {
			prefix = append(prefix, "export "+k+"="+shellQuote(v))
		}
	}
	full := command
	if len(prefix) > 0 {
		full = strings.Join(prefix, "\n") + "\n" + command
	}
	if stdin, ok := in["stdin"].(string); ok && stdin != "" {
		sess.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(full) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		err = ctx.Err()
	}
	if err != nil {
		return "", "", commandError(command, err, stdout.String(), stderr.String())
	}
	return trimNL(stdout.String()), trimNL(stderr.String()), nil
}

// copyToRemote copies a file asset or a path archive to remotePath: a file through
// `cat`, a directory or archive as a tar stream unpacked under remotePath.
func copyToRemote(ctx context.Context, in V) error {
	dest := provkit.Str(in, "remotePath")
	if dest == "" {
		return provkit.Errorf("remotePath is required")
	}
	var data io.Reader
	var cmd string
	switch src := in["source"].(type) {
	case provkit.Asset:
		switch {
		case src.Path != "":
			f, err := os.Open(src.Path)
			if err != nil {
				return provkit.Errorf("source: %v", err)
			}
			defer f.Close()
			data = f
		case src.URI != "":
			return provkit.Errorf("source: remote (URI) assets are not supported by hakube's command provider")
		default:
			data = strings.NewReader(src.Text)
		}
		cmd = "cat > " + shellQuote(dest)
	case provkit.Archive:
		if src.Path == "" {
			return provkit.Errorf("source: only path archives (FileArchive) are supported by hakube's command provider")
		}
		buf, err := tarPath(src.Path)
		if err != nil {
			return provkit.Errorf("source: %v", err)
		}
		data = buf
		cmd = "mkdir -p " + shellQuote(dest) + " && tar -x -f - -C " + shellQuote(dest)
	default:
		return provkit.Errorf("source: an asset or an archive is required")
	}
	client, err := dial(ctx, in)
	if err != nil {
		return err
	}
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return provkit.Errorf("ssh session: %v", err)
	}
	defer sess.Close()
	var stderr bytes.Buffer
	sess.Stdin, sess.Stderr = data, &stderr
	if err := sess.Run(cmd); err != nil {
		return provkit.Errorf("copying to %s: %v: %s", dest, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// tarPath packs a directory (its contents) or passes a .tar file through.
func tarPath(p string) (io.Reader, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if strings.HasSuffix(p, ".tar") {
			return os.Open(p)
		}
		return nil, fmt.Errorf("%s: only directories and .tar files are supported", p)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err = filepath.Walk(p, func(file string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(p, file)
		if rel == "." {
			return nil
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		hdr.Name = path.Clean(filepath.ToSlash(rel))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			f, err := os.Open(file)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}
