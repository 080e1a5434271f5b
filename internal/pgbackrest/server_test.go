package pgbackrest_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/pgbackrest"
)

// TestServerCommand starts the TLS server a primary's member runs for its partner's backups:
// it listens where its configuration says, and ends, with its process group, when the
// context is cancelled.
func TestServerCommand(t *testing.T) {
	bin, err := pgbackrest.FindBinary("")
	if err != nil {
		t.Skipf("pgBackRest is not installed (CI installs Debian's pgbackrest): %v", err)
	}
	dir := t.TempDir()
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue([]string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"ca.crt": ca.CertPEM, "server.crt": cert, "server.key": key}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t, "127.0.0.1")
	cfg := pgbackrest.Config{Stanza: "s1", Repos: []pgbackrest.Repo{{Path: filepath.Join(dir, "repo")}},
		PG: pgbackrest.PG{Path: filepath.Join(dir, "pgdata")}, SpoolPath: filepath.Join(dir, "spool"), LockPath: filepath.Join(dir, "lock"),
		Server: &pgbackrest.Server{Address: "127.0.0.1", Port: port, CAFile: filepath.Join(dir, "ca.crt"),
			CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key"), Auth: map[string][]string{"repl.partner": {"s1"}}}}
	text, err := cfg.Render()
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "server.conf")
	if err := os.WriteFile(conf, text, 0o600); err != nil {
		t.Fatal(err)
	}
	d := &pgbackrest.Driver{Bin: bin, Config: conf}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := d.ServerCommand(ctx)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("the server does not listen on %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("the server did not end when its context was cancelled")
	}
	// Nothing of its process group is left (what it forked for connections included). A
	// look at the port would not do: another test's server may take it as soon as it is free.
	// What it forked (the child that served the probe's connection) got the same SIGTERM and
	// may take a moment longer.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := syscall.Kill(-cmd.Process.Pid, 0)
		if errors.Is(err, syscall.ESRCH) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a process of the server's group is still there 10 s after it ended (kill -0: %v)", err)
		}
	}
}
