// Package azuritetest starts Azurite, Microsoft's Blob Storage emulator (npm package
// azurite), for a test: on loopback, on a free port, over HTTPS with a certificate of a CA
// made for the test, with an account whose key is random, in a directory of its own, and
// stops it when the test ends. A test skips when Azurite is not installed.
package azuritetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/blob"
	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/freeport"
)

// EnvBin names the azurite-blob executable (.ci/run sets it where it installed Azurite).
const EnvBin = "FOG_AZURITE_BLOB"

// DefaultBin is where .ci/run installs Azurite when EnvBin is not set.
const DefaultBin = "/opt/fog-ci/azurite/node_modules/.bin/azurite-blob"

// Account is the emulator's one storage account.
const Account = "fogtest"

// Azurite is a running emulator.
type Azurite struct {
	// Host is a name its certificate carries ("localhost": pgBackRest 2.45 matches DNS
	// names only) and Port its port, on 127.0.0.1.
	Host string
	Port int
	// Key is the account's shared key (base64), random for each start; CAPEM is the
	// certificate of the CA that signed the emulator's.
	Key   string
	CAPEM []byte
	// Client is the account's blob.Client, trusting CAPEM.
	Client *blob.Client
	// HTTP is an HTTP client trusting CAPEM.
	HTTP *http.Client
}

// Endpoint is the account's URL, path-style.
func (a *Azurite) Endpoint() string { return blob.Endpoint(Account, a.Host, a.Port, true) }

// Bin returns the azurite-blob executable, or "" when it is not installed.
func Bin() string {
	if p := os.Getenv(EnvBin); p != "" {
		return p
	}
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p
	}
	if _, err := os.Stat(DefaultBin); err == nil {
		return DefaultBin
	}
	return ""
}

// Start starts Azurite for the test, or skips the test when it is not installed.
func Start(ctx context.Context, t *testing.T) *Azurite {
	t.Helper()
	bin := Bin()
	if bin == "" {
		t.Skipf("Azurite is not installed (npm install azurite; .ci/run installs it and sets %s)", EnvBin)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skipf("Azurite needs node: %v", err)
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "ca"), 0o700); err != nil {
		t.Fatal(err)
	}
	ca, err := devca.LoadOrCreate(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "azurite.crt"), filepath.Join(dir, "azurite.key")
	if err := errors.Join(os.WriteFile(certFile, cert, 0o600), os.WriteFile(keyFile, key, 0o600)); err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	a := &Azurite{Host: "localhost", Key: base64.StdEncoding.EncodeToString(raw), CAPEM: caPEM}

	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca", "ca.crt")
	if a.HTTP, err = blob.HTTPClient(caFile); err != nil {
		t.Fatal(err)
	}
	// A port that was free a moment ago may be taken by the time Azurite binds it: try a few.
	for attempt := 0; ; attempt++ {
		a.Port = freePort(t)
		err := a.run(ctx, t, bin, data, certFile, keyFile)
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("Azurite did not start: %v", err)
		}
	}
	if a.Client, err = blob.New(Account, a.Key, a.Endpoint(), a.HTTP); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *Azurite) run(ctx context.Context, t *testing.T, bin, data, certFile, keyFile string) error {
	pctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(pctx, bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.Port),
		"--location", data, "--cert", certFile, "--key", keyFile, "--silent", "--disableTelemetry")
	// The account and its key replace Azurite's well-known development account; Azurite
	// reads them from its environment only.
	cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS="+Account+":"+a.Key)
	cmd.Dir = data
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := os.Create(filepath.Join(data, "..", "azurite.log"))
	if err != nil {
		cancel()
		return err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		out.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); out.Close() }()
	stop := func() { cancel(); <-exited }

	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(a.Port))
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Cleanup(stop)
			return nil
		}
		select {
		case err := <-exited:
			cancel()
			log, _ := os.ReadFile(filepath.Join(data, "..", "azurite.log"))
			return errors.Join(errors.New("Azurite exited: "+strings.ReplaceAll(string(log), a.Key, "<key>")), err)
		case <-deadline.C:
			stop()
			return errors.New("Azurite did not listen within 30s")
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
