package e2e

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// TestWaitForCopySync: fog.wait_for_copy_sync() returns once the secondary has the session's
// commits, for any user who can connect; with the secondary's WAL receiver stopped it waits,
// and returns once the receiver goes on, or fails cleanly at its timeout; on a secondary and
// outside a group it says why.
func TestWaitForCopySync(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "cs")
	p.create(t, nil)
	p.setupTable(t)
	ctx := context.Background()
	admin := mustConnect(t, f.info.CACert, p.prim, "app")
	if _, err := admin.Exec(ctx, "CREATE ROLE app_user LOGIN PASSWORD '"+password+"'; GRANT INSERT, SELECT ON w TO app_user"); err != nil {
		t.Fatal(err)
	}
	user, err := connect(t, f.info.CACert, p.prim, "app_user", password, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer user.Close(ctx)
	sec := mustConnect(t, f.info.CACert, p.sec, "app")
	onSecondary := func(id int) bool {
		var n int
		_ = sec.QueryRow(ctx, "SELECT count(*) FROM w WHERE id = $1", id).Scan(&n)
		return n == 1
	}

	if _, err := user.Exec(ctx, "INSERT INTO w (id) VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var lsn string
	if err := user.QueryRow(ctx, "SELECT fog.wait_for_copy_sync()::text").Scan(&lsn); err != nil {
		t.Fatalf("wait_for_copy_sync as a plain user: %v", err)
	}
	// Flushed on the secondary; replay follows within moments.
	eventually(t, 5*time.Second, "row 1 replayed on the secondary", func() bool { return onSecondary(1) })

	// The secondary's WAL receiver stops: the call waits, and returns when it goes on.
	recv := childrenOf(postmasterOf(t, f, p.sec), "walreceiver")
	if len(recv) != 1 {
		t.Fatalf("walreceiver: %v", recv)
	}
	_ = syscall.Kill(recv[0], syscall.SIGSTOP)
	defer syscall.Kill(recv[0], syscall.SIGCONT)
	if _, err := user.Exec(ctx, "INSERT INTO w (id) VALUES (2)"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = user.Exec(ctx, "SELECT fog.wait_for_copy_sync(interval '1 second')")
	took := time.Since(start)
	if sqlState(err) != "57014" || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("with the receiver stopped: %v (SQLSTATE %s), want a timeout (57014)", err, sqlState(err))
	}
	if took < time.Second || took > 3*time.Second {
		t.Errorf("the 1 s timeout took %s", took)
	}
	done := make(chan error, 1)
	go func() {
		_, err := user.Exec(ctx, "SELECT fog.wait_for_copy_sync(interval '30 seconds')")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("wait_for_copy_sync returned (%v) while the secondary's receiver was stopped", err)
	case <-time.After(700 * time.Millisecond):
	}
	if onSecondary(2) {
		t.Fatal("row 2 is on the secondary although its receiver is stopped")
	}
	_ = syscall.Kill(recv[0], syscall.SIGCONT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after the receiver went on: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("wait_for_copy_sync did not return after the receiver went on")
	}
	eventually(t, 5*time.Second, "row 2 on the secondary", func() bool { return onSecondary(2) })

	if _, err := sec.Exec(ctx, "SELECT fog.wait_for_copy_sync()"); sqlState(err) != "25006" {
		t.Errorf("on the secondary: %v, want SQLSTATE 25006", err)
	}
	if _, err := user.Exec(ctx, "SELECT fog.wait_for_copy_sync(interval '-1 second')"); sqlState(err) != "22023" {
		t.Errorf("a negative timeout: %v, want SQLSTATE 22023", err)
	}
	solo := f.createInstance("rg-p", "cs-solo", "eastus", nil)
	f.mustSucceed(f.call("PUT", miPath("rg-p", "cs-solo")+"/databases/app", map[string]any{}))
	var soloErr error
	eventually(t, 30*time.Second, "fog.wait_for_copy_sync on an instance outside any group", func() bool {
		c := mustConnect(t, f.info.CACert, solo, "app")
		_, soloErr = c.Exec(ctx, "SELECT fog.wait_for_copy_sync()")
		return sqlState(soloErr) == "55000"
	})
}
