package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testSSHD is a small SSH server for the tests (no sshd is needed on the machine): it
// accepts one client key, runs each `exec` request with /bin/sh on this machine,
// connects stdin, stdout and stderr, reports the exit status, and accepts `env`
// requests only when acceptEnv is set (like sshd's AcceptEnv).
type testSSHD struct {
	addr      string
	port      int
	keyPEM    string // the client's private key (OpenSSH PEM)
	acceptEnv bool

	mu    sync.Mutex
	execs []string // commands run, in order
}

func (s *testSSHD) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.execs...)
}

func startSSHD(t *testing.T, acceptEnv bool) *testSSHD {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
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
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(hostSigner)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	s := &testSSHD{addr: "127.0.0.1", port: lis.Addr().(*net.TCPAddr).Port,
		keyPEM: string(pem.EncodeToMemory(block)), acceptEnv: acceptEnv}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go s.serve(c, cfg)
		}
	}()
	return s
}

func (s *testSSHD) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		go s.session(ch, creqs)
	}
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

// connection is the remote connection input for this server, as the SDK sends it.
func (s *testSSHD) connection() map[string]any {
	return map[string]any{"host": s.addr, "port": float64(s.port), "user": "root",
		"privateKey": s.keyPEM, "dialErrorLimit": float64(1), "perDialTimeout": float64(5)}
}
