// Package e2e tests Fog end to end: real PostgreSQL processes started by a real Fog, driven
// through the HTTPS API, the CLI and PostgreSQL clients on loopback.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/api"
	"github.com/fogdb/fog/internal/cli"
	"github.com/fogdb/fog/internal/daemon"
	"github.com/fogdb/fog/internal/fogclient"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/server"
	"github.com/jackc/pgx/v5"
)

const (
	sub      = server.DefaultSubscription
	apiVer   = fogclient.APIVersion
	password = "Str0ng-Password-123!"
)

var fogBinary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fog-e2e-bin")
	if err != nil {
		panic(err)
	}
	fogBinary = filepath.Join(dir, "fog")
	out, err := exec.Command("go", "build", "-o", fogBinary, "../../cmd/fog").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build fog: %v\n%s", err, out)
		os.Exit(1)
	}
	// Fog makes an OS user per instance when root; the users this run's Fogs make (in this
	// process and the ones it starts) carry its tag, and only those are removed when it ends:
	// another run on the machine may have instances of its own.
	tag := fmt.Sprintf("e2e-%d-%d", os.Getpid(), time.Now().UnixNano())
	os.Setenv(postgres.UserTagEnv, tag)
	code := m.Run()
	postgres.RemoveTaggedUsers(tag)
	os.RemoveAll(dir)
	os.Exit(code)
}

// waitBound marks a test that spends most of its time waiting out a grace period or a lease
// rather than working: such tests run in parallel with each other (go test's -parallel,
// two at once on a two-core machine), after the package's other tests. Each has its own
// loopback range, network-namespace lab and directories.
func waitBound(t *testing.T) { t.Parallel() }

// nextBase hands each Fog of the run its own loopback range, so tests never share addresses.
var nextBase atomic.Int32

func addressBase() string { return fmt.Sprintf("127.%d.%d.1", runOctet, 100+nextBase.Add(1)) }

// runOctet is the second octet of this run's loopback addresses: two runs of the package on
// one machine (a developer's and a helper's, or two -run subsets) do not take each other's.
var runOctet = 1 + os.Getpid()%200

// fog is a running deployment and a client for its API.
type fog struct {
	t       *testing.T
	dataDir string
	base    string
	// dns is the DNS server's address, when the test asked for one.
	dns  string
	info server.ClientConfig
	// api is the API client; hc is an HTTP client that trusts Fog's CA, for the clients
	// that bring their own protocol (the Azure SDK, a browser).
	api  *fogclient.Client
	hc   *http.Client
	stop func()
}

// withBackups turns on the backups startFog leaves off: instances archive WAL into their
// region's repository and take the schedule's backups, as with fog up's defaults.
func withBackups(c *server.Config) { c.Agent.Backup.Off, c.Agent.Backup.OffReason = false, "" }

// withQuickBackups is withBackups with the leader's backup schedule run every 3 s rather
// than 30 s: for the tests about backups, which wait for an instance's first one.
func withQuickBackups(c *server.Config) {
	withBackups(c)
	c.Controller.BackupTick = 3 * time.Second
}

// startFog runs a Fog in this process on dataDir (a new one when ""), until the test ends.
func startFog(t *testing.T, dataDir string, mutate ...func(*server.Config)) *fog {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	logf, err := os.OpenFile(filepath.Join(dataDir, "fog.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{
		DataDir: dataDir, API: api.Config{Listen: "127.0.0.1:0"}, AddressBase: addressBase(),
		// Backups are off unless the test asks for them (withBackups): each instance's first
		// full backup and its archiving cost seconds of the machine's two cores, and the
		// tests that are not about backups or failovers do not need them. A Fog started as
		// a process (fog up) has them, as a user's does.
		Agent: agent.Config{GuardCommand: []string{fogBinary, "guard"},
			Backup: agent.BackupConfig{Off: true, OffReason: "backups are off in this test"}},
		Log: slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan server.Info, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, func(i server.Info) { ready <- i }) }()
	f := &fog{t: t, dataDir: dataDir, base: cfg.AddressBase}
	select {
	case info := <-ready:
		f.info, f.dns = info.Client, info.DNSAddr
	case err := <-done:
		cancel()
		t.Fatalf("fog did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("fog did not start within 30s")
	}
	var once bool
	f.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("fog stopped with %v", err)
			}
		case <-time.After(2 * time.Minute):
			t.Error("fog did not stop within 2 minutes")
		}
		logf.Close()
	}
	t.Cleanup(func() {
		f.stop()
		if left := leftovers(dataDir); len(left) > 0 {
			t.Errorf("fog left PostgreSQL processes running after it stopped: %v", left)
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dataDir, "fog.log"))
			t.Logf("fog log (tail):\n%s", tail(grepOut(string(b), "level=DEBUG"), 40))
		}
	})
	f.hc, f.api = httpClient(t, f.info.CACert), apiClient(t, f.info)
	return f
}

// apiClient is the API client of a deployment, polling operations every 100ms.
func apiClient(t *testing.T, cc server.ClientConfig) *fogclient.Client {
	c, err := fogclient.New(cc, fogclient.WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func httpClient(t *testing.T, caPEM string) *http.Client {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		t.Fatal("client config has no CA certificate")
	}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// response is an API answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("response body %q is not a JSON object: %v", r.Body, err)
	}
	return m
}

// code returns the ARM error code of an error response.
func (r response) code() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// call sends a request with the admin token. path is relative to the API unless absolute;
// api-version is added when the path has none.
func (f *fog) call(method, path string, body any) response {
	f.t.Helper()
	return f.callWith(method, path, body, "Bearer "+f.info.Token)
}

func (f *fog) callWith(method, path string, body any, auth string) response {
	f.t.Helper()
	r, err := f.tryWith(method, path, body, auth)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// try is call that returns a transport error (the server died before it answered) instead
// of failing the test.
func (f *fog) try(method, path string, body any) (response, error) {
	f.t.Helper()
	return f.tryWith(method, path, body, "Bearer "+f.info.Token)
}

func (f *fog) tryWith(method, path string, body any, auth string) (response, error) {
	f.t.Helper()
	// The tests send bodies the API must refuse too: Content-Type is always JSON.
	h := http.Header{"Authorization": {auth}, "Content-Type": {"application/json"}}
	r, err := f.api.Send(context.Background(), fogclient.Request{Method: method, Path: path, Body: body, Header: h})
	if err != nil {
		return response{}, err
	}
	return response{Status: r.Status, Header: r.Header, Body: r.Body}, nil
}

func miPath(rg, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Sql/managedInstances/%s", sub, rg, name)
}

func miBody(location string, props map[string]any) map[string]any {
	p := map[string]any{"administratorLogin": "fogadmin", "administratorLoginPassword": password}
	for k, v := range props {
		if v == nil {
			delete(p, k)
		} else {
			p[k] = v
		}
	}
	return map[string]any{"location": location, "properties": p}
}

// wait polls an operation's Azure-AsyncOperation URL until it ends and returns its status body.
func (f *fog) wait(r response) map[string]any {
	f.t.Helper()
	if r.Status != http.StatusAccepted {
		f.t.Fatalf("status = %d (%s), want 202", r.Status, r.Body)
	}
	u := r.Header.Get("Azure-AsyncOperation")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, st, err := f.api.PollStatus(ctx, u, nil)
	if errors.Is(err, context.DeadlineExceeded) {
		f.t.Fatalf("operation %s did not finish in 2 minutes", u)
	}
	if err != nil {
		f.t.Fatalf("GET operation status: %v", err)
	}
	return response{Status: st.Status, Header: st.Header, Body: st.Body}.json(f.t)
}

// mustSucceed waits for an operation and fails the test unless it succeeded.
func (f *fog) mustSucceed(r response) {
	f.t.Helper()
	if m := f.wait(r); m["status"] != "Succeeded" {
		f.t.Fatalf("operation ended %v, want Succeeded", m)
	}
}

// createInstance creates an instance and returns its GET body.
func (f *fog) createInstance(rg, name, location string, props map[string]any) map[string]any {
	f.t.Helper()
	f.mustSucceed(f.call("PUT", miPath(rg, name), miBody(location, props)))
	got := f.call("GET", miPath(rg, name), nil)
	if got.Status != http.StatusOK {
		f.t.Fatalf("GET %s = %d %s", name, got.Status, got.Body)
	}
	return got.json(f.t)
}

func props(m map[string]any) map[string]any { return m["properties"].(map[string]any) }

// connect opens a TLS connection (verifying the Fog CA) to an instance as its admin.
func connect(t *testing.T, ca string, inst map[string]any, user, pw, db string) (*pgx.Conn, error) {
	t.Helper()
	p := props(inst)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%v user=%s dbname=%s sslmode=verify-full connect_timeout=10", p["host"], p["port"], user, db))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = pw
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca))
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: p["host"].(string)}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

func mustConnect(t *testing.T, ca string, inst map[string]any, db string) *pgx.Conn {
	t.Helper()
	c, err := connect(t, ca, inst, "fogadmin", password, db)
	if err != nil {
		t.Fatalf("connect to %s/%s as admin: %v", props(inst)["host"], db, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// runCLI runs the fog command line in process against f and returns stdout, stderr, error.
func (f *fog) runCLI(stdin string, args ...string) (string, string, error) {
	var out, errb bytes.Buffer
	if len(args) == 0 || !slices.Contains([]string{"up", "server", "agent", "guard"}, args[0]) {
		// The client's flags belong to the client commands.
		args = append([]string{"--config", filepath.Join(f.dataDir, "client.json")}, args...)
	}
	err := cli.Run(context.Background(), args, cli.IO{In: strings.NewReader(stdin), Out: &out, Err: &errb}, daemon.Commands)
	return out.String(), errb.String(), err
}

// fogProcess is `fog up` run as a separate process, for tests that kill or signal it.
type fogProcess struct {
	cmd    *exec.Cmd
	client server.ClientConfig
	stderr *bytes.Buffer
}

// startFogProcess runs `fog up` on dataDir as a process of its own; env is added to its
// environment (failpoints).
func startFogProcess(t *testing.T, dataDir, base string, env ...string) *fogProcess {
	t.Helper()
	cmd := exec.Command(fogBinary, "up", "--data-dir", dataDir, "--listen", "127.0.0.1:0", "--address-base", base)
	cmd.Env = append(os.Environ(), env...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &fogProcess{cmd: cmd, stderr: &stderr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}
		if t.Failed() {
			t.Logf("fog process stderr (tail):\n%s", tail(stderr.String(), 30))
		}
	})
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok || !strings.HasPrefix(l, "Fog API: ") {
			t.Fatalf("fog up printed %q, want the API line; stderr: %s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("fog up did not start; stderr: %s", stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &p.client); err != nil {
		t.Fatal(err)
	}
	return p
}

// asFog wraps a process's API in the same helpers as an in-process Fog.
func (p *fogProcess) asFog(t *testing.T, dataDir string) *fog {
	return &fog{t: t, dataDir: dataDir, info: p.client, hc: httpClient(t, p.client.CACert), api: apiClient(t, p.client)}
}

// grepOut drops the lines containing s.
func grepOut(text, s string) string {
	var keep []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.Contains(l, s) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// leftovers kills and returns the processes still running from dir (postmasters whose data
// directory is under it). Fog must stop all of them when it stops.
func leftovers(dir string) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), dir+"/") {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || !alive(pid) {
			continue
		}
		pids = append(pids, pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pids
}
