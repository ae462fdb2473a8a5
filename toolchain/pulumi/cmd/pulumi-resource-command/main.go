// Command pulumi-resource-command is hakube's own implementation of the resources of
// the `command` Pulumi package that the @pulumi/command Node.js SDK drives:
// local.Command, remote.Command (over SSH), remote.CopyToRemote and the local.run
// function, with the SDK's property names and the upstream provider's semantics:
// create runs on create; a change of any input but `triggers` (the connection too) is
// an update that runs `update` (or `create` when there is no update command); a change
// of `triggers` replaces; `delete` runs on delete; with addPreviousOutputInEnv (default
// true) the previous stdout and stderr, when not empty, are in PULUMI_COMMAND_STDOUT
// and PULUMI_COMMAND_STDERR. remote.CopyToRemote copies again only when its source or
// remotePath changed. A connection may go through a jump host (connection.proxy, as
// `ssh -J`). Unlike upstream, every SSH connection verifies the host's key, and the
// jump host's: connection.hostKey (connection.proxy.hostKey) is required and the host
// (jump host) must present exactly that key (see dial); a change of the connection that
// changes nothing but those pins (a new pin for the same host: hostKey added to a stack
// made before it was required, or a host's key rotated) is stored but runs no command
// and copies nothing. The upstream provider's module is not served by the Go module
// proxy here; see toolchain/README.md.
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
// pin of the host's key, or of its jump host's, and nothing else: `connection` is the
// only input that changed, and of its fields only hostKey and proxy.hostKey (added or
// changed; a field set to null counts as absent). The hosts are the same, so nothing
// needs to run again; the new connection is stored all the same, and used from then
// on (by Delete too).
func onlyHostKeyChanged(oldIn, newIn V, changed []string) bool {
	if len(changed) != 1 || changed[0] != "connection" {
		return false
	}
	o, oOK := oldIn["connection"].(map[string]any)
	n, nOK := newIn["connection"].(map[string]any)
	if !oOK || !nOK {
		return false
	}
	var withoutHostKey func(conn V) V
	withoutHostKey = func(conn V) V {
		out := V{}
		for k, v := range conn {
			if k == "hostKey" || v == nil {
				continue
			}
			if proxy, ok := v.(map[string]any); ok && k == "proxy" {
				v = withoutHostKey(proxy)
			}
			out[k] = v
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
// when Diff found a change; a remote command whose connection changed only in its pins,
// hostKey and proxy.hostKey, does not call it): `update`, or `create` when there is no
// update command; with neither, the previous outputs stay.
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
	checkHop(p, "connection", conn)
	// connection.proxy, the jump host, is pinned like the host. Nil is no jump host, or
	// one unknown at preview.
	switch proxy := conn["proxy"].(type) {
	case map[string]any:
		checkHop(p, "connection.proxy", proxy)
	case nil:
	default:
		p["connection.proxy"] = "must be an object: the jump host's host, port, user, privateKey or password, and hostKey"
	}
	if len(p) == 0 {
		return nil
	}
	return p
}

// checkHop adds the problems of one hop's connection (the host's, or the jump host's
// in connection.proxy), by property below field. The failure is on field.hostKey, not
// on field: the engine prints the value of the property that failed, and the
// connection holds the private key. Present but nil is a value unknown at preview: it
// is checked once known.
func checkHop(p map[string]string, field string, conn V) {
	if h, ok := conn["host"]; ok && h == "" {
		p[field+".host"] = "is required"
	}
	if hk, present := conn["hostKey"]; !present || hk != nil {
		if _, err := hostKeyOf(conn); err != nil {
			p[field+".hostKey"] = err.Error()
		}
	}
}

// hostKeyFormat says what connection.hostKey (and connection.proxy.hostKey) holds.
const hostKeyFormat = `the host's public SSH key in authorized_keys format ("ssh-ed25519 AAAA...", as in the host's /etc/ssh/ssh_host_ed25519_key.pub)`

// hostKeyOf reads the hostKey of a hop's connection (connection or connection.proxy),
// the one key the host (or jump host) must present. Its errors complete
// "connection.hostKey ..." and never repeat the value (it may be a private key given
// by mistake).
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

// hop is one SSH connection of a dial: to the host, or to the jump host in front of it
// (connection.proxy), with its own credentials, pinned key, timeout and retry limit.
type hop struct {
	field   string // the connection's property: "connection" or "connection.proxy"
	what    string // "the host" or "the jump host", in messages
	user    string
	addr    string // host:port
	pinned  ssh.PublicKey
	cfg     *ssh.ClientConfig
	limit   int           // dialErrorLimit: tries, -1 for no limit
	timeout time.Duration // perDialTimeout, per try
	// refused is why the hop's key was not accepted (set by the host key callback); such
	// a hop is not tried again.
	refused error
}

// hopOf reads one hop's connection: host, port (22), user (root), hostKey, privateKey
// (with privateKeyPassword) or password, dialErrorLimit (10), perDialTimeout (15 s),
// with upstream's defaults for the host and the jump host alike. It connects to
// nothing.
func hopOf(conn V, field, what string) (*hop, error) {
	h := &hop{field: field, what: what, user: provkit.Str(conn, "user")}
	if h.user == "" {
		h.user = "root"
	}
	h.addr = net.JoinHostPort(provkit.Str(conn, "host"), strconv.Itoa(int(provkit.Num(conn, "port", 22))))
	pinned, err := hostKeyOf(conn)
	if err != nil {
		return nil, provkit.Errorf("%s.hostKey %v", field, err)
	}
	h.pinned = pinned
	var auths []ssh.AuthMethod
	if k := provkit.Str(conn, "privateKey"); k != "" {
		var signer ssh.Signer
		if pw := provkit.Str(conn, "privateKeyPassword"); pw != "" {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(k), []byte(pw))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(k))
		}
		if err != nil {
			return nil, provkit.Errorf("%s.privateKey: %v", field, err)
		}
		auths = append(auths, ssh.PublicKeys(signer))
	}
	if pw := provkit.Str(conn, "password"); pw != "" {
		auths = append(auths, ssh.Password(pw))
	}
	if len(auths) == 0 {
		return nil, provkit.Errorf("%s: give privateKey or password (SSH agents are not supported by hakube's command provider)", field)
	}
	fixed := ssh.FixedHostKey(pinned)
	checkHostKey := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		if err := fixed(hostname, remote, key); err != nil {
			h.refused = fmt.Errorf("%s presented the key %s %s, which did not match %s.hostKey (%s %s)",
				what, key.Type(), ssh.FingerprintSHA256(key), field, pinned.Type(), ssh.FingerprintSHA256(pinned))
			return h.refused
		}
		return nil
	}
	h.timeout = time.Duration(provkit.Num(conn, "perDialTimeout", 15)) * time.Second
	h.cfg = &ssh.ClientConfig{User: h.user, Auth: auths, HostKeyCallback: checkHostKey,
		HostKeyAlgorithms: hostKeyAlgorithms(pinned), Timeout: h.timeout}
	h.limit = int(provkit.Num(conn, "dialErrorLimit", 10))
	if h.limit == 0 {
		h.limit = 1 // one try at least
	}
	return h, nil
}

// hopError is why a hop could not be connected: refused (its key was not accepted, so
// it was sent nothing) or failed (the last try's error).
type hopError struct {
	refused bool
	err     error
}

func (e *hopError) Error() string { return e.err.Error() }

// connect makes the hop's connection with try, up to dialErrorLimit times, waiting 1,
// 2, 4, then 8 s between tries (not after the last): a machine that is still booting (no route, connection
// refused, a timeout; through a jump host, a host it cannot reach yet) is tried again.
// What cannot pass with time is not: a host key that does not match (or no host key of
// the pinned type), a failed authentication, a jump host that refuses to forward.
func (h *hop) connect(ctx context.Context, try func() (*ssh.Client, error)) (*ssh.Client, error) {
	var lastErr error
	for attempt := 1; h.limit < 0 || attempt <= h.limit; attempt++ {
		client, err := try()
		if err == nil {
			return client, nil
		}
		lastErr = err
		var negotiation *ssh.AlgorithmNegotiationError
		if h.refused == nil && errors.As(err, &negotiation) && negotiation.What == "host key" {
			h.refused = fmt.Errorf("%s has no %s host key (it offers %s), so it cannot present %s.hostKey (%s)",
				h.what, h.pinned.Type(), strings.Join(negotiation.RequestedAlgorithms, ", "), h.field, ssh.FingerprintSHA256(h.pinned))
		}
		if h.refused != nil {
			return nil, &hopError{refused: true, err: h.refused}
		}
		var authErr *ssh.ServerAuthError
		if errors.As(err, &authErr) || strings.Contains(err.Error(), "unable to authenticate") {
			break
		}
		var openErr *ssh.OpenChannelError
		if errors.As(err, &openErr) && openErr.Reason == ssh.Prohibited {
			lastErr = fmt.Errorf("%w: the jump host does not forward connections to %s (see its sshd's AllowTcpForwarding, PermitOpen)",
				err, h.addr)
			break
		}
		if attempt == h.limit {
			break // no wait after the last try
		}
		wait := time.Duration(1<<min(attempt-1, 3)) * time.Second
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
	}
	return nil, &hopError{err: lastErr}
}

// through connects to the hop over a connection the jump host forwards (a direct-tcpip
// channel), within perDialTimeout: the channel has no deadlines, so a handshake that
// takes longer is ended by closing it.
func (h *hop) through(ctx context.Context, jump *ssh.Client) (*ssh.Client, error) {
	dctx, cancel := ctx, context.CancelFunc(func() {})
	if h.timeout > 0 {
		dctx, cancel = context.WithTimeout(ctx, h.timeout)
	}
	defer cancel()
	nc, err := jump.DialContext(dctx, "tcp", h.addr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("the jump host opened no connection to %s within %v", h.addr, h.timeout)
		}
		return nil, err
	}
	expired := func() bool { return false }
	if h.timeout > 0 {
		timer := time.AfterFunc(h.timeout, func() { nc.Close() })
		expired = func() bool { return !timer.Stop() }
	}
	c, chans, reqs, err := ssh.NewClientConn(nc, h.addr, h.cfg)
	if expired() {
		if err == nil {
			c.Close()
		}
		return nil, fmt.Errorf("no SSH handshake with %s within %v", h.addr, h.timeout)
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// sshClient is a connection to the host; through a jump host it holds the jump host's
// connection too, which Close closes with it.
type sshClient struct {
	*ssh.Client
	jump *ssh.Client
}

func (c *sshClient) Close() error {
	err := c.Client.Close()
	if c.jump != nil {
		if jerr := c.jump.Close(); err == nil {
			err = jerr
		}
	}
	return err
}

// dial connects over SSH, directly or through the jump host of connection.proxy (as
// `ssh -J`: an SSH connection to the jump host, then one to the host over a channel it
// forwards), each hop with its own retry policy (dialErrorLimit tries, -1 for no limit,
// perDialTimeout seconds each), for machines that are still booting. Each hop must
// present its hostKey (connection.hostKey, connection.proxy.hostKey); one that does not
// is refused at once (it is not retried) and is sent nothing: the key is checked in the
// key exchange, before any authentication. Both hops' settings are read before
// anything is dialed, and a refused jump host means the host is not even reached.
func dial(ctx context.Context, in V) (*sshClient, error) {
	conn := provkit.Obj(in, "connection")
	host, err := hopOf(conn, "connection", "the host")
	if err != nil {
		return nil, err
	}
	var jump *hop
	switch proxy := conn["proxy"].(type) {
	case map[string]any:
		if jump, err = hopOf(proxy, "connection.proxy", "the jump host"); err != nil {
			return nil, err
		}
	case nil:
	default:
		return nil, provkit.Errorf("connection.proxy must be an object: the jump host's connection")
	}
	if jump == nil {
		client, err := host.connect(ctx, func() (*ssh.Client, error) { return ssh.Dial("tcp", host.addr, host.cfg) })
		if err != nil {
			return nil, hopFailure(err, fmt.Sprintf("ssh to %s@%s", host.user, host.addr), "; nothing was sent to the host")
		}
		return &sshClient{Client: client}, nil
	}
	jumpClient, err := jump.connect(ctx, func() (*ssh.Client, error) { return ssh.Dial("tcp", jump.addr, jump.cfg) })
	if err != nil {
		what := fmt.Sprintf("ssh to the jump host %s (user %s, connection.proxy) for %s@%s",
			jump.addr, jump.user, host.user, host.addr)
		return nil, hopFailure(err, what, fmt.Sprintf("; nothing was sent to it, and %s was not reached", host.addr))
	}
	client, err := host.connect(ctx, func() (*ssh.Client, error) { return host.through(ctx, jumpClient) })
	if err != nil {
		jumpClient.Close()
		what := fmt.Sprintf("ssh to %s@%s through the jump host %s", host.user, host.addr, jump.addr)
		return nil, hopFailure(err, what, "; nothing was sent to the host")
	}
	return &sshClient{Client: client, jump: jumpClient}, nil
}

// hopFailure is the error of a hop that could not be connected: "<what> refused:
// <why><nothingSent>" or "<what> failed: <error>"; a cancellation as it is.
func hopFailure(err error, what, nothingSent string) error {
	var he *hopError
	if !errors.As(err, &he) {
		return err
	}
	if he.refused {
		return provkit.Errorf("%s refused: %v%s", what, he.err, nothingSent)
	}
	return provkit.Errorf("%s failed: %v", what, he.err)
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
