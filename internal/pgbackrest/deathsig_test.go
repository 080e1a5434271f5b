package pgbackrest_test

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/pgbackrest"
)

// TestCommandEndsWithTheAgent: a pgBackRest command ends when the process that runs it (the
// agent) is killed with SIGKILL. Left running on its own, a backup keeps the stanza's lock,
// so the backup the restarted agent runs again fails ([050]), and a restore keeps writing
// into the scratch directory the restarted agent restores into again.
func TestCommandEndsWithTheAgent(t *testing.T) {
	if os.Getenv("FOG_TEST_PGBACKREST_PARENT") != "" {
		// The agent's part: run a backup through the driver until killed.
		d := &pgbackrest.Driver{Bin: os.Getenv("FOG_TEST_PGBACKREST_PARENT"), Config: "/nonexistent.conf", Stanza: "s"}
		_, err := d.Backup(context.Background(), pgbackrest.Full, pgbackrest.BackupOptions{})
		fmt.Println(err)
		os.Exit(1)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// A pgbackrest that notes its pid and runs for long.
	bin := filepath.Join(dir, "pgbackrest")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := osexec.Command(os.Args[0], "-test.run=^TestCommandEndsWithTheAgent$")
	parent.Env = append(os.Environ(), "FOG_TEST_PGBACKREST_PARENT="+bin)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()
	pid := waitPID(t, pidFile)
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	if !endsWithin(pid, 10*time.Second) {
		t.Errorf("pgbackrest (pid %d) still runs 10s after the process that ran it was killed", pid)
	}
}

func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(file); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the command did not start within 10s")
	return 0
}

// endsWithin reports whether pid ends (or is a zombie no one reaped yet) within d.
func endsWithin(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if _, rest, _ := strings.Cut(string(b), ") "); strings.HasPrefix(rest, "Z") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
