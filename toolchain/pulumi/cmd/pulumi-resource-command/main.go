// Command pulumi-resource-command is hakube's own implementation of the resources of
// the `command` Pulumi package that the @pulumi/command Node.js SDK drives:
// local.Command, remote.Command (over SSH), remote.CopyToRemote and the local.run
// function, with the SDK's property names and the upstream provider's semantics:
// create runs on create; a change of any input but `triggers` (the connection too) is
// an update that runs `update` (or `create` when there is no update command); a change
// of `triggers` replaces; `delete` runs on delete; with addPreviousOutputInEnv (default
// true) the previous stdout and stderr, when not empty, are in PULUMI_COMMAND_STDOUT
// and PULUMI_COMMAND_STDERR. remote.CopyToRemote copies again only when its source or
// remotePath changed. Unlike upstream, every SSH connection verifies the host's key:
// connection.hostKey is required and the host must present exactly that key (see
// dial); a change of the connection that changes nothing but hostKey (a new pin for the
// same host: hostKey added to a stack made before it was required, or a host's key
// rotated) is stored but runs no command and copies nothing. The upstream provider's
// module is not served by the Go module proxy here; see toolchain/README.md.
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
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"hakube.local/toolchain/pulumi/internal/provkit"
)

var version = "0.0.0-dev"

type V = provkit.Values

// Inputs whose change is an in-place update (which runs `update`, or `create`, except
// for a remote command's new hostKey pin alone: see onlyHostKeyChanged); `triggers`
// replaces (the SDK also sets replaceOnChanges on it).
var commandUpdatable = []string{"create", "update", "delete", "environment", "dir", "interpreter", "stdin",
	"logging", "addPreviousOutputInEnv", "connection", "assetPaths", "archivePaths"}

func main() {
	if err := provkit.Main(newServer(localRunner, remoteRunner, copyToRemote)); err != nil {
		fmt.Fprintf(os.Stderr, "pulumi-resource-command: %v\n", err)
		os.Exit(1)
	}
}

// newServer builds the provider from its transports: how a command runs locally and
// remotely, and how a remote copy is made.
func newServer(local, remote runner, copier func(context.Context, V) error) *provkit.Server {
	return &provkit.Server{
		Name:    "command",
		Version: version,
		Kinds: map[string]*provkit.Kind{
			"command:local:Command": {
				Updatable: commandUpdatable,
				Create:    func(ctx context.Context, _ string, in V) (string, V, error) { return runCreate(ctx, in, local) },
				Update: func(ctx context.Context, _, _ string, st, _, ni V, _ []string) (V, error) {
					return runUpdate(ctx, st, ni, local)
				},
				Delete: func(ctx context.Context, _, _ string, st V) error { return runDelete(ctx, st, local) },
			},
			"command:remote:Command": {
				Updatable: commandUpdatable,
				Validate:  validateConnection,
				Secrets:   []string{"connection"},
				Create:    func(ctx context.Context, _ string, in V) (string, V, error) { return runCreate(ctx, in, remote) },
				Update: func(ctx context.Context, _, _ string, st, oi, ni V, ch []string) (V, error) {
					if onlyHostKeyChanged(oi, ni, ch) {
						return previousOutputs(st), nil
					}
					return runUpdate(ctx, st, ni, remote)
				},
				Delete: func(ctx context.Context, _, _ string, st V) error { return runDelete(ctx, st, remote) },
			},
			"command:remote:CopyToRemote": {
				Updatable: []string{"source", "remotePath", "connection"},
				Validate:  validateCopy,
				Secrets:   []string{"connection"},
				Create: func(ctx context.Context, _ string, in V) (string, V, error) {
					return newID(), V{}, copier(ctx, in)
				},
				// As upstream: copy again only when the source or the destination changed;
				// a new connection alone (another address or key for the machine, or a new
				// hostKey pin) copies nothing, and the new connection is stored.
				Update: func(ctx context.Context, _, _ string, _, _, ni V, ch []string) (V, error) {
					for _, c := range ch {
						if c == "source" || c == "remotePath" {
							return V{}, copier(ctx, ni)
						}
					}
					return nil, nil
				},
			},
		},
		Invokes: map[string]func(context.Context, V) (V, error){
			"command:local:run": func(ctx context.Context, in V) (V, error) {
				stdout, stderr, err := local(ctx, in, provkit.Str(in, "command"), nil)
				if err != nil {
					return nil, err
				}
				return V{"stdout": stdout, "stderr": stderr}, nil
			},
		},
	}
}

func newID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runner runs one command and returns its stdout and stderr (one trailing newline
// trimmed, as upstream does).
type runner func(ctx context.Context, in V, cmd string, extraEnv map[string]string) (string, string, error)

// previousEnv holds the outputs of the previous run for the next one, as upstream
// passes them: only when addPreviousOutputInEnv (of the inputs in force) is not false,
// and each only when it is not empty.
func previousEnv(in, state V) map[string]string {
	if !provkit.Bool(in, "addPreviousOutputInEnv", true) {
		return nil
	}
	env := map[string]string{}
	if s := provkit.Str(state, "stdout"); s != "" {
		env["PULUMI_COMMAND_STDOUT"] = s
	}
	if s := provkit.Str(state, "stderr"); s != "" {
		env["PULUMI_COMMAND_STDERR"] = s
	}
	return env
}

// previousOutputs are the outputs of the state, kept when nothing runs.
func previousOutputs(state V) V {
	return V{"stdout": provkit.Str(state, "stdout"), "stderr": provkit.Str(state, "stderr")}
}

// onlyHostKeyChanged says whether the change from the old inputs to the new ones is a new
// pin of the host's key and nothing else: `connection` is the only input that changed,
// and of its fields only hostKey (added or changed; a field set to null counts as
// absent). The host is the same, so nothing needs to run on it again; the new
// connection is stored all the same, and used from then on (by Delete too).
func onlyHostKeyChanged(oldIn, newIn V, changed []string) bool {
	if len(changed) != 1 || changed[0] != "connection" {
		return false
	}
	o, oOK := oldIn["connection"].(map[string]any)
	n, nOK := newIn["connection"].(map[string]any)
	if !oOK || !nOK {
		return false
	}
	withoutHostKey := func(conn V) V {
		out := V{}
		for k, v := range conn {
			if k != "hostKey" && v != nil {
				out[k] = v
			}
		}
		return out
	}
	return reflect.DeepEqual(withoutHostKey(o), withoutHostKey(n))
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

// runUpdate runs on every update, whichever input changed (the engine calls it only
// when Diff found a change; a remote command whose connection changed only in hostKey
// does not call it): `update`, or `create` when there is no update command; with
// neither, the previous outputs stay.
func runUpdate(ctx context.Context, state, in V, run runner) (V, error) {
	prev := previousOutputs(state)
	c := provkit.Str(in, "update")
	if c == "" {
		c = provkit.Str(in, "create")
	}
	if c == "" {
		return prev, nil
	}
	stdout, stderr, err := run(ctx, in, c, previousEnv(in, prev))
	if err != nil {
		return nil, err
	}
	return V{"stdout": stdout, "stderr": stderr}, nil
}

func runDelete(ctx context.Context, state V, run runner) error {
	c := provkit.Str(state, "delete")
	if c == "" {
		return nil
	}
	_, _, err := run(ctx, state, c, previousEnv(state, state))
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
	p := map[string]string{}
	if h, ok := conn["host"]; ok && h == "" {
		p["connection.host"] = "is required"
	}
	if _, ok := conn["proxy"].(map[string]any); ok {
		p["connection.proxy"] = "is not supported by hakube's command provider"
	}
	// The failure is on connection.hostKey, not on connection: the engine prints the
	// value of the property that failed, and the connection holds the private key.
	// Present but nil is a value unknown at preview: it is checked once known.
	if hk, present := conn["hostKey"]; !present || hk != nil {
		if _, err := hostKeyOf(conn); err != nil {
			p["connection.hostKey"] = err.Error()
		}
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// hostKeyFormat says what connection.hostKey holds.
const hostKeyFormat = `the host's public SSH key in authorized_keys format ("ssh-ed25519 AAAA...", as in the host's /etc/ssh/ssh_host_ed25519_key.pub)`

// hostKeyOf reads connection.hostKey, the one key the host must present. Its errors
// complete "connection.hostKey ..." and never repeat the value (it may be a private key
// given by mistake).
func hostKeyOf(conn V) (ssh.PublicKey, error) {
	v, present := conn["hostKey"]
	s, isString := v.(string)
	switch {
	case !present || v == nil || isString && strings.TrimSpace(s) == "":
		return nil, errors.New("is required: " + hostKeyFormat + "; hakube verifies every host's key and connects to no host without it")
	case !isString:
		return nil, errors.New("must be a string: " + hostKeyFormat)
	}
	pk, _, options, rest, err := ssh.ParseAuthorizedKey([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("must be %s: %v", hostKeyFormat, err)
	}
	if len(options) > 0 {
		// Also a known_hosts line, whose host names parse as options.
		return nil, errors.New("must be the key alone, without options or host names before it: " + hostKeyFormat)
	}
	if _, _, _, _, err := ssh.ParseAuthorizedKey(rest); err == nil {
		return nil, errors.New("holds more than one key: give the one key the host must present, " + hostKeyFormat)
	}
	return pk, nil
}

// hostKeyAlgorithms are the host key algorithms to offer for a pinned key: only those
// of its type, so that a server with several host keys (OpenSSH has an RSA, an ECDSA
// and an ed25519 key by default) presents the pinned one. An RSA key signs with
// SHA-512, SHA-256 or, for old servers, SHA-1.
func hostKeyAlgorithms(pk ssh.PublicKey) []string {
	switch pk.Type() {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.CertAlgoRSAv01:
		return []string{ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01, ssh.CertAlgoRSAv01}
	}
	return []string{pk.Type()}
}

// validateCopy checks a CopyToRemote's connection and source: an asset from a file or
// a text, or an archive from a path, as upstream's Check requires.
func validateCopy(in V) map[string]string {
	p := validateConnection(in)
	if p == nil {
		p = map[string]string{}
	}
	switch src := in["source"].(type) {
	case provkit.Asset:
		if src.URI != "" {
			p["source"] = "the asset must be a file asset or a text asset"
		}
	case provkit.Archive:
		if src.Path == "" {
			p["source"] = "the archive must be a path to a file or a directory"
		}
	case nil:
		if _, present := in["source"]; !present {
			p["source"] = "either an asset or an archive must be set"
		}
	default:
		p["source"] = "either an asset or an archive must be set"
	}
	return p
}

// dial connects over SSH with the connection's retry policy (dialErrorLimit tries,
// -1 for no limit, perDialTimeout seconds each), for machines that are still booting.
// The host must present connection.hostKey; a host that does not is refused at once
// (it is not retried) and is sent nothing: the key is checked in the key exchange,
// before any authentication.
func dial(ctx context.Context, in V) (*ssh.Client, error) {
	conn := provkit.Obj(in, "connection")
	host := provkit.Str(conn, "host")
	port := int(provkit.Num(conn, "port", 22))
	user := provkit.Str(conn, "user")
	if user == "" {
		user = "root"
	}
	if _, ok := conn["proxy"].(map[string]any); ok {
		return nil, provkit.Errorf("connection.proxy is not supported by hakube's command provider")
	}
	pinned, err := hostKeyOf(conn)
	if err != nil {
		return nil, provkit.Errorf("connection.hostKey %v", err)
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
	// refused is why the host's key was not accepted; such a host is not tried again.
	var refused error
	fixed := ssh.FixedHostKey(pinned)
	checkHostKey := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := fixed(hostname, remote, key); err != nil {
			refused = fmt.Errorf("the host presented the key %s %s, which did not match connection.hostKey (%s %s)",
				key.Type(), ssh.FingerprintSHA256(key), pinned.Type(), ssh.FingerprintSHA256(pinned))
			return refused
		}
		return nil
	}
	timeout := time.Duration(provkit.Num(conn, "perDialTimeout", 15)) * time.Second
	cfg := &ssh.ClientConfig{User: user, Auth: auths, HostKeyCallback: checkHostKey,
		HostKeyAlgorithms: hostKeyAlgorithms(pinned), Timeout: timeout}
	limit := int(provkit.Num(conn, "dialErrorLimit", 10))
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	var lastErr error
	for attempt := 1; limit < 0 || attempt <= limit; attempt++ {
		client, err := ssh.Dial("tcp", addr, cfg)
		if err == nil {
			return client, nil
		}
		lastErr = err
		var negotiation *ssh.AlgorithmNegotiationError
		if refused == nil && errors.As(err, &negotiation) && negotiation.What == "host key" {
			refused = fmt.Errorf("the host has no %s host key (it offers %s), so it cannot present connection.hostKey (%s)",
				pinned.Type(), strings.Join(negotiation.RequestedAlgorithms, ", "), ssh.FingerprintSHA256(pinned))
		}
		if refused != nil {
			return nil, provkit.Errorf("ssh to %s@%s refused: %v; nothing was sent to the host", user, addr, refused)
		}
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
	stdin, _ := in["stdin"].(string)
	if stdin != "" {
		sess.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(full) }()
	select {
	case err = <-done:
		// Run gives io.EOF only when the command exited 0 and the channel closed before all
		// of stdin was written (the command did not read it all, e.g. `true`): it succeeded.
		if stdin != "" && err == io.EOF {
			err = nil
		}
	case <-ctx.Done():
		_ = sess.Signal(ssh.SIGTERM)
		err = ctx.Err()
	}
	if err != nil {
		return "", "", commandError(command, err, stdout.String(), stderr.String())
	}
	return trimNL(stdout.String()), trimNL(stderr.String()), nil
}

// copyToRemote copies the source to remotePath with upstream's placement rules:
//
//	source         remotePath is a dir    remotePath is missing   remotePath is a file
//	file           remotePath/<file>      remotePath              overwritten
//	text asset     error                  remotePath              overwritten
//	dir            remotePath/<dir>/...   remotePath/<dir>/...    error
//	dir/           remotePath/...         remotePath/...          error
//
// Only the last element of remotePath is created; an archive file (.tar, .tgz...) is
// copied as it is, not unpacked. Files travel through `cat`, directories as a tar
// stream.
func copyToRemote(ctx context.Context, in V) error {
	dest := provkit.Str(in, "remotePath")
	if dest == "" {
		return provkit.Errorf("remotePath is required")
	}
	q := shellQuote
	fileCmd := func(local string) string {
		return fmt.Sprintf("if [ -d %s ]; then cat > %s; else cat > %s; fi", q(dest), q(path.Join(dest, filepath.Base(local))), q(dest))
	}
	openFile := func(p string) (io.Reader, func(), error) {
		f, err := os.Open(p)
		if err != nil {
			return nil, nil, provkit.Errorf("source: %v", err)
		}
		return f, func() { f.Close() }, nil
	}
	var data io.Reader
	var cmd string
	switch src := in["source"].(type) {
	case provkit.Asset:
		switch {
		case src.Path != "":
			r, done, err := openFile(src.Path)
			if err != nil {
				return err
			}
			defer done()
			data, cmd = r, fileCmd(src.Path)
		case src.URI != "":
			return provkit.Errorf("source: remote (URI) assets are not supported by hakube's command provider")
		default:
			data = strings.NewReader(src.Text)
			cmd = fmt.Sprintf("if [ -d %s ]; then echo %s >&2; exit 1; fi; cat > %s", q(dest),
				q("remote path "+dest+" is a directory; when using a text asset, remotePath must be a file path"), q(dest))
		}
	case provkit.Archive:
		if src.Path == "" {
			return provkit.Errorf("source: only path archives (FileArchive) are supported by hakube's command provider")
		}
		st, err := os.Stat(src.Path)
		if err != nil {
			return provkit.Errorf("source: %v", err)
		}
		if !st.IsDir() {
			r, done, err := openFile(src.Path)
			if err != nil {
				return err
			}
			defer done()
			data, cmd = r, fileCmd(src.Path)
			break
		}
		buf, err := tarDir(src.Path)
		if err != nil {
			return provkit.Errorf("source: %v", err)
		}
		target := dest
		if !strings.HasSuffix(src.Path, "/") {
			target = path.Join(dest, filepath.Base(src.Path))
		}
		mkdir := func(d string) string {
			return fmt.Sprintf("if [ -e %s ] && [ ! -d %s ]; then echo %s >&2; exit 1; fi; [ -d %s ] || mkdir %s || exit 1; ",
				q(d), q(d), q("remote path "+d+" exists but is not a directory"), q(d), q(d))
		}
		cmd = mkdir(dest)
		if target != dest {
			cmd += mkdir(target)
		}
		cmd += "tar -x -f - -C " + q(target)
		data = buf
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

// tarDir packs the contents of a directory.
func tarDir(p string) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.Walk(p, func(file string, fi os.FileInfo, err error) error {
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
