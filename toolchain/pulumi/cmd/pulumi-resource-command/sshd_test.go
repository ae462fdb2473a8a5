package main

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testSSHD is a small SSH server for the tests (no sshd is needed on the machine): it
// accepts one client key (and a password when one is set), runs each `exec` request
// with /bin/sh on this machine, connects stdin, stdout and stderr, reports the exit
// status, and accepts `env` requests only when acceptEnv is set (like sshd's
// AcceptEnv). As a jump host it opens `direct-tcpip` channels (RFC 4254 7.2, what
// `ssh -J` and connection.proxy use), to 127.0.0.1 only: the tests' own servers. It
// holds one host key per type it was started with (an ed25519 key unless told
// otherwise; dropHostKey retires one), and counts what clients got to do: TCP
// connections, authentication attempts, sessions and forwarded channels, so a test can
// see that a refused host was sent nothing, or that a jump host only forwarded.
type testSSHD struct {
	addr      string
	port      int
	keyPEM    string // the client's private key (OpenSSH PEM)
	acceptEnv bool
	password  string // accepted as well as the key when not empty
	// hostKey is the public half of the server's first host key in authorized_keys
	// format, as connection.hostKey wants it; hostKeys has every host key by type
	// ("ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa").
	hostKey  string
	hostKeys map[string]string

	mu       sync.Mutex
	signers  []ssh.Signer // the host keys presented to new connections, in order
	execs    []string     // commands run, in order
	auths    int          // authentication attempts (key or password), accepted or not
	sessions int          // session channels opened
	conns    int          // TCP connections accepted
	open     int          // of those, the ones not closed yet
	forwards []string     // direct-tcpip channels asked for ("host:port"), opened or not
}

// dropHostKey makes the server stop presenting its host key of type typ to new
// connections, as a host whose old key was removed after a rotation.
func (s *testSSHD) dropHostKey(typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.signers[:0]
	for _, signer := range s.signers {
		if signer.PublicKey().Type() != typ {
			kept = append(kept, signer)
		}
	}
	s.signers = kept
}

func (s *testSSHD) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

// contacts returns how many authentication attempts and sessions clients made.
func (s *testSSHD) contacts() (auths, sessions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.auths, s.sessions
}

// connections returns how many TCP connections the server accepted, and how many of
// them are still open.
func (s *testSSHD) connections() (accepted, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.open
}

// forwarded returns the destinations of the direct-tcpip channels clients asked for.
func (s *testSSHD) forwarded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.forwards...)
}

type sshdOptions struct {
	acceptEnv bool
	password  string
	// hostKeyTypes are the host keys to make, in the order the server offers them:
	// "ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa". Default: one ed25519 key.
	hostKeyTypes []string
}

func startSSHD(t *testing.T, acceptEnv bool) *testSSHD {
	t.Helper()
	return startSSHDWith(t, sshdOptions{acceptEnv: acceptEnv})
}

// newHostKey makes a private key of an SSH key type.
func newHostKey(t *testing.T, typ string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch typ {
	case ssh.KeyAlgoED25519:
		_, k, err = ed25519.GenerateKey(rand.Reader)
	case ssh.KeyAlgoECDSA256:
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ssh.KeyAlgoRSA:
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		t.Fatalf("no host key type %q in the test server", typ)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// authorizedKey is the public half of k as one authorized_keys line (no newline).
func authorizedKey(t *testing.T, k crypto.Signer) string {
	t.Helper()
	pub, err := ssh.NewPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
}

func startSSHDWith(t *testing.T, o sshdOptions) *testSSHD {
	t.Helper()
	if len(o.hostKeyTypes) == 0 {
		o.hostKeyTypes = []string{ssh.KeyAlgoED25519}
	}
	s := &testSSHD{addr: "127.0.0.1", acceptEnv: o.acceptEnv, password: o.password, hostKeys: map[string]string{}}
	for _, typ := range o.hostKeyTypes {
		k := newHostKey(t, typ)
		signer, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		s.signers = append(s.signers, signer)
		s.hostKeys[typ] = authorizedKey(t, k)
		if s.hostKey == "" {
			s.hostKey = s.hostKeys[typ]
		}
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	s.keyPEM = string(pem.EncodeToMemory(block))
	// Each connection gets the host keys the server holds when it is accepted.
	config := func() *ssh.ServerConfig {
		cfg := &ssh.ServerConfig{
			PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
				s.countAuth()
				if bytes.Equal(key.Marshal(), allowed.Marshal()) {
					return nil, nil
				}
				return nil, errors.New("unknown key")
			},
			PasswordCallback: func(_ ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
				s.countAuth()
				if s.password != "" && string(password) == s.password {
					return nil, nil
				}
				return nil, errors.New("wrong password")
			},
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, signer := range s.signers {
			cfg.AddHostKey(signer)
		}
		return cfg
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	s.port = lis.Addr().(*net.TCPAddr).Port
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go s.serve(c, config())
		}
	}()
	return s
}

func (s *testSSHD) countAuth() {
	s.mu.Lock()
	s.auths++
	s.mu.Unlock()
}

func (s *testSSHD) serve(c net.Conn, cfg *ssh.ServerConfig) {
	s.mu.Lock()
	s.conns++
	s.open++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.open--
		s.mu.Unlock()
	}()
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
		case "direct-tcpip":
			s.directTCPIP(nc)
			continue
		default:
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions and direct-tcpip")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.sessions++
		s.mu.Unlock()
		go s.session(ch, creqs)
	}
}

// directTCPIP opens a direct-tcpip channel: a TCP connection from the server to the
// host and port its payload names (RFC 4254 7.2), to 127.0.0.1 only, with the bytes
// copied both ways until either side closes.
func (s *testSSHD) directTCPIP(nc ssh.NewChannel) {
	var payload struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(nc.ExtraData(), &payload); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip payload: "+err.Error())
		return
	}
	dest := net.JoinHostPort(payload.Host, strconv.FormatUint(uint64(payload.Port), 10))
	s.mu.Lock()
	s.forwards = append(s.forwards, dest)
	s.mu.Unlock()
	if payload.Host != "127.0.0.1" {
		_ = nc.Reject(ssh.Prohibited, "the test server forwards to 127.0.0.1 only")
		return
	}
	tc, err := net.Dial("tcp", dest)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, creqs, err := nc.Accept()
	if err != nil {
		tc.Close()
		return
	}
	go ssh.DiscardRequests(creqs)
	go func() {
		done := make(chan struct{}, 2)
		go func() { _, _ = io.Copy(tc, ch); done <- struct{}{} }()
		go func() { _, _ = io.Copy(ch, tc); done <- struct{}{} }()
		<-done
		ch.Close()
		tc.Close()
	}()
}

// sshString reads one SSH wire-format string from b.
func sshString(b []byte) (string, []byte, bool) {
	if len(b) < 4 {
		return "", nil, false
	}
	n := binary.BigEndian.Uint32(b)
	if uint32(len(b)-4) < n {
		return "", nil, false
	}
	return string(b[4 : 4+n]), b[4+n:], true
}

func (s *testSSHD) session(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	env := os.Environ()
	for req := range reqs {
		switch req.Type {
		case "env":
			name, rest, ok1 := sshString(req.Payload)
			value, _, ok2 := sshString(rest)
			if ok1 && ok2 && s.acceptEnv {
				env = append(env, name+"="+value)
				_ = req.Reply(true, nil)
			} else {
				_ = req.Reply(false, nil)
			}
		case "exec":
			command, _, ok := sshString(req.Payload)
			if !ok {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.execs = append(s.execs, command)
			s.mu.Unlock()
			cmd := exec.Command("/bin/sh", "-c", command)
			cmd.Env = env
			cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
			status := uint32(0)
			if err := cmd.Run(); err != nil {
				status = 255
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					status = uint32(ee.ExitCode())
				}
			}
			_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
			return
		default:
			if req.WantReply {
				_ = req.Reply(false, nil)
			}
		}
	}
}

// connection is the remote connection input for this server, as the SDK sends it,
// pinning the server's (first) host key.
func (s *testSSHD) connection() map[string]any {
	return map[string]any{"host": s.addr, "port": float64(s.port), "user": "root", "hostKey": s.hostKey,
		"privateKey": s.keyPEM, "dialErrorLimit": float64(1), "perDialTimeout": float64(5)}
}

// proxyConnection is connection.proxy for this server as a jump host, with the fields
// AwsMachines sends (components/aws/awsMachines.ts): no dialErrorLimit or
// perDialTimeout, so the defaults apply.
func (s *testSSHD) proxyConnection() map[string]any {
	return map[string]any{"host": s.addr, "port": float64(s.port), "user": "root", "privateKey": s.keyPEM,
		"hostKey": s.hostKey}
}
