package guard

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/fogdb/fog/internal/lease"
	"github.com/fogdb/fog/internal/proc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func writeState(t *testing.T, file string, gs lease.GuardState) {
	t.Helper()
	b, _ := json.Marshal(gs)
	if err := os.WriteFile(file+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
}

// TestGuardFencesPastDeadline runs the guard against a stand-in postmaster (a process named
// postgres with a postmaster.pid naming it): nothing happens while the agent keeps moving the
// deadline, the process is stopped once the deadline passes, and the guard exits when the
// agent disarms it.
func TestGuardFencesPastDeadline(t *testing.T) {
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "pgdata")
	if err := os.Mkdir(pgdata, 0o700); err != nil {
		t.Fatal(err)
	}
	pm := &exec.Cmd{Path: "/bin/sleep", Args: []string{"postgres", "60"}, Dir: pgdata}
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = pm.Wait(); close(exited) }()
	defer func() { _ = pm.Process.Kill(); <-exited }()
	if err := os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", pm.Process.Pid, pgdata), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "guard.json")
	writeState(t, file, lease.GuardState{Armed: true, Entries: []lease.GuardEntry{{DataDir: pgdata, UID: os.Getuid(), Exe: proc.Exe("/bin/sleep"), Deadline: lease.Monotonic() + int64(time.Hour)}}})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, file, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	time.Sleep(300 * time.Millisecond)
	if !lease.GuardRunning(file) {
		t.Error("GuardRunning = false while the guard runs")
	}
	select {
	case <-exited:
		t.Fatal("the guard stopped a primary whose deadline had not passed")
	default:
	}
	writeState(t, file, lease.GuardState{Armed: true, Entries: []lease.GuardEntry{{DataDir: pgdata, UID: os.Getuid(), Exe: proc.Exe("/bin/sleep"), Deadline: lease.Monotonic() - 1}}})
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the guard did not stop the primary after its deadline")
	}
	writeState(t, file, lease.GuardState{Armed: false})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the guard did not exit when disarmed")
	}
}

// TestGuardSignalsOnlyTheServer: postmaster.pid is the instance's OS user's to write. A pid
// of another program in it (one whose command line even says postgres) is never signalled;
// the real postmaster, found by its user, binary and working directory, still is.
func TestGuardSignalsOnlyTheServer(t *testing.T) {
	dir := t.TempDir()
	pgdata := filepath.Join(dir, "pgdata")
	if err := os.Mkdir(pgdata, 0o700); err != nil {
		t.Fatal(err)
	}
	start := func(c *exec.Cmd) (*exec.Cmd, chan struct{}) {
		t.Helper()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = c.Wait(); close(exited) }()
		t.Cleanup(func() { _ = c.Process.Kill(); <-exited })
		return c, exited
	}
	// The foreign process: another binary, its command line naming postgres.
	foreign, foreignExited := start(&exec.Cmd{Path: "/bin/sh", Args: []string{"postgres", "-c", "sleep 60"}})
	pm, pmExited := start(&exec.Cmd{Path: "/bin/sleep", Args: []string{"postgres", "60"}, Dir: pgdata})
	if err := os.WriteFile(filepath.Join(pgdata, "postmaster.pid"), fmt.Appendf(nil, "%d\n%s\n", foreign.Process.Pid, pgdata), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "guard.json")
	writeState(t, file, lease.GuardState{Armed: true, Entries: []lease.GuardEntry{{DataDir: pgdata, UID: os.Getuid(), Exe: proc.Exe("/bin/sleep"), Deadline: lease.Monotonic() - 1}}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, file, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	select {
	case <-pmExited:
	case <-time.After(5 * time.Second):
		t.Fatal("the guard did not stop the postmaster its pid file does not name")
	}
	select {
	case <-foreignExited:
		t.Fatal("the guard signalled the foreign process postmaster.pid named")
	case <-time.After(300 * time.Millisecond):
	}
	// A link in the pid file's place, and a FIFO: nothing hangs, nothing is signalled.
	_ = os.Remove(filepath.Join(pgdata, "postmaster.pid"))
	if err := os.Symlink("/proc/self/stat", filepath.Join(pgdata, "postmaster.pid")); err != nil {
		t.Fatal(err)
	}
	writeState(t, file, lease.GuardState{Armed: false})
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the guard did not exit when disarmed")
	}
	select {
	case <-foreignExited:
		t.Fatal("the foreign process was signalled")
	default:
	}
	_ = pm
}
