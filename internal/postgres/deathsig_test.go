package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClientEndsWithTheAgent: pg_dump and pg_restore end when the process that runs them
// (the agent, restoring a database) is killed with SIGKILL. Left running on their own, a
// pg_dump keeps writing the dump directory the restarted agent removes and writes again.
func TestClientEndsWithTheAgent(t *testing.T) {
	if bin := os.Getenv("FOG_TEST_CLIENT_PARENT"); bin != "" {
		// The agent's part: run pg_dump until killed.
		r := &Runner{Bin: bin}
		fmt.Println(runClient(r.clientCommand(context.Background(), nil, "pg_dump")))
		os.Exit(1)
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	// A pg_dump that notes its pid and runs for long.
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte("#!/bin/sh\necho $$ > "+pidFile+"\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestClientEndsWithTheAgent$")
	parent.Env = append(os.Environ(), "FOG_TEST_CLIENT_PARENT="+dir)
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = parent.Process.Kill(); _ = parent.Wait() }()
	var pid int
	deadline := time.Now().Add(10 * time.Second)
	for pid == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid == 0 {
		t.Fatal("pg_dump did not start within 10s")
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	ended := false
	for deadline := time.Now().Add(10 * time.Second); !ended && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		_, rest, _ := strings.Cut(string(b), ") ")
		ended = err != nil || strings.HasPrefix(rest, "Z")
	}
	if !ended {
		t.Errorf("pg_dump (pid %d) still runs 10s after the process that ran it was killed", pid)
	}
}
