// Command probe is hakube's in-cluster test tool, run in pods on the worker nodes (and
// packed into the image hakube/probe by toolchain/build.sh). Subcommands:
//
//	probe serve [-port 8080]          answer GET / with this pod's host name
//	probe get URL                     one GET (3 s timeout); prints the body
//	probe resolve NAME                the addresses NAME resolves to (the pod's resolv.conf)
//	probe api PATH                    one GET of PATH through https://kubernetes.default.svc
//	                                  with the pod's service-account token; prints the body
//	probe loop [-interval 100ms] [-timeout 2s] [-max-requests N] [-max-seconds S]
//	           [-per-request] [-out FILE] [-path PATH]
//	                                  GET PATH through the kubernetes Service at a fixed
//	                                  rate, one JSON line per request to FILE:
//	                                  {"at": ms since epoch, "ms": duration, "op": "read",
//	                                   "ok": bool, "status": code, "error": text,
//	                                   "retryAfter": seconds of a Retry-After header}
//
// Every loop is bounded in count and in time.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const (
	serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	apiBase           = "https://kubernetes.default.svc"
)

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: probe serve|get|resolve|api|loop ... (see the source's doc comment)"))
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "serve":
		err = serve(args)
	case "get":
		err = get(args)
	case "resolve":
		err = resolve(args)
	case "api":
		err = api(args)
	case "loop":
		err = loop(args)
	default:
		err = fmt.Errorf("unknown subcommand %q (want serve, get, resolve, api or loop)", cmd)
	}
	if err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "probe:", err)
	os.Exit(1)
}

func one(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("want exactly one argument, %s; got %d", what, len(args))
	}
	return args[0], nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	port := fs.Int("port", 8080, "TCP port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	name, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, name) })
	srv := &http.Server{Addr: fmt.Sprintf(":%d", *port), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

func get(args []string) error {
	url, err := one(args, "a URL")
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	_, err = os.Stdout.Write(body)
	return err
}

func resolve(args []string) error {
	name, err := one(args, "a host name")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err != nil {
		return err
	}
	fmt.Println(strings.Join(addrs, "\n"))
	return nil
}

// apiClient is an HTTPS client for the API through the kubernetes Service, trusting the
// cluster CA the pod was given. fresh: no connection is kept between requests.
func apiClient(timeout time.Duration, fresh bool) (*http.Client, error) {
	ca, err := os.ReadFile(serviceAccountDir + "/ca.crt")
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("no certificate in " + serviceAccountDir + "/ca.crt")
	}
	transport := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   !fresh,
		DisableKeepAlives:   fresh,
		TLSHandshakeTimeout: timeout,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
	}
	return &http.Client{Timeout: timeout, Transport: transport}, nil
}

// apiGet sends one GET with the pod's token (read on every request: the kubelet rotates it).
func apiGet(client *http.Client, path string) (int, []byte, error) {
	status, body, _, err := apiGetWithHeader(client, path)
	return status, body, err
}

// apiGetWithHeader is apiGet that also returns the answer's headers (nil on an error).
func apiGetWithHeader(client *http.Client, path string) (int, []byte, http.Header, error) {
	token, err := os.ReadFile(serviceAccountDir + "/token")
	if err != nil {
		return 0, nil, nil, err
	}
	req, err := http.NewRequest(http.MethodGet, apiBase+path, nil)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, body, resp.Header, err
}

func api(args []string) error {
	path, err := one(args, "an API path such as /api/v1/namespaces")
	if err != nil {
		return err
	}
	client, err := apiClient(5*time.Second, true)
	if err != nil {
		return err
	}
	status, body, err := apiGet(client, path)
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %s", path, status, strings.TrimSpace(string(body)))
	}
	_, err = os.Stdout.Write(body)
	return err
}

type record struct {
	At     int64  `json:"at"`
	Ms     int64  `json:"ms"`
	Op     string `json:"op"`
	Ok     bool   `json:"ok"`
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// RetryAfter is the seconds a failed answer's Retry-After header asked for (client-go
	// sends a 429 or 5xx carrying one again on its own).
	RetryAfter *int `json:"retryAfter,omitempty"`
}

func loop(args []string) error {
	fs := flag.NewFlagSet("loop", flag.ContinueOnError)
	interval := fs.Duration("interval", 100*time.Millisecond, "time between requests")
	timeout := fs.Duration("timeout", 2*time.Second, "a request not answered in this time fails")
	maxRequests := fs.Int("max-requests", 6000, "stop after this many requests")
	maxSeconds := fs.Int("max-seconds", 600, "stop after this many seconds")
	perRequest := fs.Bool("per-request", false, "a new connection for every request (default: one kept-alive HTTP/2 connection)")
	out := fs.String("out", "/tmp/probe.jsonl", "file the records are appended to")
	path := fs.String("path", "/api/v1/namespaces/default", "API path to read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *interval <= 0 || *timeout <= 0 || *maxRequests <= 0 || *maxSeconds <= 0 {
		return errors.New("-interval, -timeout, -max-requests and -max-seconds must be positive")
	}
	client, err := apiClient(*timeout, *perRequest)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	deadline := time.Now().Add(time.Duration(*maxSeconds) * time.Second)
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 0; n < *maxRequests && time.Now().Before(deadline); n++ {
		start := time.Now()
		status, _, header, err := apiGetWithHeader(client, *path)
		r := record{At: start.UnixMilli(), Ms: time.Since(start).Milliseconds(), Op: "read", Status: status}
		if v, convErr := strconv.Atoi(strings.TrimSpace(header.Get("Retry-After"))); convErr == nil && status != http.StatusOK {
			r.RetryAfter = &v
		}
		switch {
		case err != nil:
			r.Error = err.Error()
		case status != http.StatusOK:
			r.Error = fmt.Sprintf("HTTP %d", status)
		default:
			r.Ok = true
		}
		if err := enc.Encode(r); err != nil {
			return err
		}
		<-tick.C
	}
	return nil
}
