package postgres

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// asInstanceUser runs a shell script as the instance's OS user: what a tenant who became the
// instance's PostgreSQL superuser can do with COPY ... FROM PROGRAM.
func asInstanceUser(t *testing.T, r *Runner, script string) error {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.uid), Gid: uint32(r.gid)}}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// TestHostileInstanceUser plays the instance's OS user against what Fog's root does in the
// instance's directory: every path root writes or reads in the data directory is replaced by
// a link to a root-owned canary (and the temporary names root writes through), WAL segments
// are links, the names of the instance's directory are attacked too (they are root's), and
// postmaster.pid names a foreign process. Then Fog writes its configuration, reads the log,
// copies the WAL a forced failover discards, stops, drains and restarts the server: the
// canary is unchanged and no foreign process is signalled.
func TestHostileInstanceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the instance's OS user differs from fog's only when fog runs as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, r := testRunner(ctx, t)
	dir := t.TempDir()
	cfg := Config{Timezone: "UTC", FogUser: "root"}
	c, ca := startTestCluster(ctx, t, r, dir, cfg)
	cfg.Name = "i1"
	cfg.CertPEM, cfg.KeyPEM, _ = ca.Issue([]string{"i1.test"}, nil)

	// The canary: root's, 0600, in a directory only root may enter.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.MkdirAll(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	canary := filepath.Join(secret, "canary")
	if err := os.WriteFile(canary, []byte("root's secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The link must lead somewhere root can reach but the instance's user cannot: a
	// world-traversable directory holding the root-only file.
	if err := os.Chmod(filepath.Dir(secret), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(secret, 0o711); err != nil {
		t.Fatal(err)
	}
	checkCanary := func(what string) {
		t.Helper()
		b, err := os.ReadFile(canary)
		st, err2 := os.Stat(canary)
		if err != nil || err2 != nil {
			t.Fatalf("%s: the canary is gone: %v %v", what, err, err2)
		}
		sys := st.Sys().(*syscall.Stat_t)
		if string(b) != "root's secret\n" || st.Mode().Perm() != 0o600 || sys.Uid != 0 || sys.Gid != 0 {
			t.Fatalf("%s: the canary changed: %q mode %v owner %d:%d", what, b, st.Mode(), sys.Uid, sys.Gid)
		}
	}
	checkCanary("before")

	// The instance's directory and the socket directories' base are root's: the instance's
	// user can add, remove or replace nothing there.
	for _, p := range []string{"postgres.log", "pgdata"} {
		if err := asInstanceUser(t, r, fmt.Sprintf("mv %[1]s %[1]s.moved", filepath.Join(c.Dir, p))); err == nil {
			t.Errorf("the instance's user renamed %s in the instance's directory", p)
		}
	}
	for _, p := range []string{"replication.crt", "ca.crt", "fog-epoch.json", "lost-wal-epoch-9"} {
		if err := asInstanceUser(t, r, fmt.Sprintf("ln -s %s %s", canary, filepath.Join(c.Dir, p))); err == nil {
			t.Errorf("the instance's user made %s in the instance's directory", p)
		}
	}
	if err := asInstanceUser(t, r, fmt.Sprintf("ln -s %s %s", canary, filepath.Join(filepath.Dir(c.SocketDir), "fog-planted"))); err == nil {
		t.Error("the instance's user made a name in the socket directories' base")
	}

	// Every name root touches in the data directory, and the temporary names it writes
	// through, become links to the canary; so do the WAL segments.
	var script strings.Builder
	pg := c.DataDir()
	for _, f := range []string{"fog.conf", "pg_hba.conf", "pg_ident.conf", "server.crt", "server.key", "standby.signal", "postgresql.conf"} {
		fmt.Fprintf(&script, "cp %[1]s/%[2]s %[1]s/%[2]s.orig 2>/dev/null; ln -sfn %[3]s %[1]s/%[2]s; ln -sfn %[3]s %[1]s/.%[2]s.fog-tmp; ln -sfn %[3]s %[1]s/%[2]s.tmp\n", pg, f, canary)
	}
	fmt.Fprintf(&script, "for f in %s/pg_wal/0*; do ln -sfn %s \"$f.planted\"; done\n", pg, canary)
	fmt.Fprintf(&script, "ln -sfn %s %s/pg_wal/000000010000000000000099\n", canary, pg)
	fmt.Fprintf(&script, "mkfifo %s/pg_wal/00000001000000000000009A\n", pg)
	if err := asInstanceUser(t, r, script.String()); err != nil {
		t.Fatal(err)
	}
	// postgresql.conf must be the real one for the server to start again: the planted link
	// stays only long enough for Fog's reads of it.
	if c.IsStandby() {
		t.Error("a link named standby.signal made the cluster a standby")
	}
	if err := c.appendInclude(); err == nil {
		t.Error("Fog appended to postgresql.conf through a link")
	}
	if err := asInstanceUser(t, r, fmt.Sprintf("rm %[1]s/postgresql.conf; mv %[1]s/postgresql.conf.orig %[1]s/postgresql.conf", pg)); err != nil {
		t.Fatal(err)
	}
	// Fog writes its configuration over the links.
	if err := c.WriteConfig(cfg); err != nil {
		t.Fatalf("WriteConfig: %v", err)
	}
	if err := c.WriteHBA(true); err != nil {
		t.Fatalf("WriteHBA: %v", err)
	}
	if err := c.WriteHBA(false); err != nil {
		t.Fatalf("WriteHBA: %v", err)
	}
	checkCanary("after WriteConfig")
	for _, f := range []string{"fog.conf", "pg_hba.conf", "pg_ident.conf", "server.crt", "server.key"} {
		st, err := os.Lstat(filepath.Join(pg, f))
		if err != nil || !st.Mode().IsRegular() {
			t.Errorf("%s after WriteConfig: %v %v, want a regular file", f, st.Mode(), err)
		}
	}
	if tail := c.LogTail(5); strings.Contains(tail, "secret") {
		t.Errorf("LogTail read the canary: %s", tail)
	}
	// The WAL a forced failover discards: links and FIFOs are not copied.
	lost := filepath.Join(c.Dir, "lost-wal-epoch-9")
	done := make(chan error, 1)
	go func() { done <- c.CopyWAL(lost) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("CopyWAL: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("CopyWAL hung on a FIFO in pg_wal")
	}
	names, _ := filepath.Glob(filepath.Join(lost, "*"))
	if len(names) == 0 {
		t.Error("CopyWAL copied nothing")
	}
	for _, n := range names {
		if b, _ := os.ReadFile(n); strings.Contains(string(b), "root's secret") {
			t.Errorf("CopyWAL copied the canary into %s", n)
		}
	}
	if err := c.CopyWAL("/tmp/elsewhere"); err == nil {
		t.Error("CopyWAL wrote outside the instance's directory")
	}
	checkCanary("after CopyWAL")

	// A foreign pid in postmaster.pid: root's sleep, and one of another user.
	foreign := []*exec.Cmd{exec.Command("sleep", "300"), exec.Command("sleep", "300")}
	foreign[1].SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	for _, f := range foreign {
		if err := f.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = f.Process.Kill(); _, _ = f.Process.Wait() }()
	}
	alive := func(what string) {
		t.Helper()
		for _, f := range foreign {
			if err := syscall.Kill(f.Process.Pid, 0); err != nil {
				t.Errorf("%s: the foreign process %d was signalled: %v", what, f.Process.Pid, err)
			}
		}
	}
	real, ok := c.PID()
	if !ok {
		t.Fatal("the server is not running")
	}
	plant := func(pid int) {
		t.Helper()
		if err := asInstanceUser(t, r, fmt.Sprintf("sed -i '1s/.*/%d/' %s/postmaster.pid", pid, pg)); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range foreign {
		plant(f.Process.Pid)
		if pid, ok := c.PID(); ok {
			t.Errorf("PID() = %d with postmaster.pid naming a foreign process, want not running", pid)
		}
	}
	// Fencing does not depend on the file: the real postmaster is found and stopped.
	if err := c.StopNow(ctx, false); err != nil {
		t.Fatalf("StopNow: %v", err)
	}
	alive("StopNow")
	if c.isServer(real) {
		t.Errorf("the postmaster %d still runs after StopNow", real)
	}
	// A start with a foreign pid in a stale postmaster.pid: the file goes, the process stays.
	if err := asInstanceUser(t, r, fmt.Sprintf("echo %d > %s/postmaster.pid", foreign[0].Process.Pid, pg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start after a foreign postmaster.pid: %v (%s)", err, c.LogTail(5))
	}
	alive("Start")
	conn, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	plantLater := func() { plant(foreign[1].Process.Pid) }
	if _, err := c.Drain(ctx, conn, "i1"); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	conn.Close(ctx)
	plantLater()
	if err := c.Stop(ctx, "fast"); err == nil {
		// pg_ctl reads the pid file too, and signals only as the instance's user: it
		// cannot reach root's process, and another user's only as that user could.
		t.Log("pg_ctl stop with a foreign postmaster.pid returned no error")
	}
	alive("Drain and pg_ctl stop")
	_ = c.StopNow(ctx, true)
	alive("StopNow immediate")
	checkCanary("at the end")
	if st, err := os.Stat(c.Dir); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 || st.Mode().Perm() != 0o711 {
		t.Errorf("the instance's directory: %v %v, want root's, 0711", st.Mode(), err)
	}
}

// TestInstanceUserIsOnlyTheBackupRole: over the socket, the instance's OS user (whom
// pgBackRest runs as, and whom a tenant who escaped the server would be) logs in as
// BackupUser and as none of Fog's other roles, and BackupUser reads no file.
func TestInstanceUserIsOnlyTheBackupRole(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the instance's OS user differs from fog's only when fog runs as root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, r := testRunner(ctx, t)
	c, _ := startTestCluster(ctx, t, r, t.TempDir(), Config{Timezone: "UTC", FogUser: "root"})
	sys, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(ctx)
	for _, step := range []func() error{
		func() error { return EnsureMonitorRole(ctx, sys) },
		func() error { return c.EnsureSystemDB(ctx, sys) },
		func() error { return c.EnsureBackupRole(ctx, sys) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	psql := func(user, sql string) error {
		return asInstanceUser(t, r, fmt.Sprintf("%s -X -At -v ON_ERROR_STOP=1 'host=%s port=%d user=%s dbname=%s' -c %q",
			filepath.Join(bin, "psql"), c.SocketDir, c.Port, user, SystemDB, sql))
	}
	if err := psql(BackupUser, "SELECT pg_catalog.pg_switch_wal()"); err != nil {
		t.Errorf("the instance's user as %s: %v, want a login that may switch WAL", BackupUser, err)
	}
	for _, role := range []string{SystemUser, MonitorUser, ReplicationUser, AdminRole} {
		if err := psql(role, "SELECT 1"); err == nil {
			t.Errorf("the instance's user logged in as %s over the socket", role)
		}
	}
	if err := psql(BackupUser, "SELECT pg_catalog.pg_read_file('postgresql.conf')"); err == nil {
		t.Errorf("%s read a file of the data directory through SQL", BackupUser)
	}
}
