package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/postgres"
)

// TestAdminIsNotSuperuser: through fog up, an instance's admin is a member of fog_admin with
// CREATEROLE and no SUPERUSER, and cannot run a program. An instance left by an older Fog (a
// superuser admin, no guard library loaded) is migrated when fog starts: restarted with the
// guard, its admin stripped of SUPERUSER.
func TestAdminIsNotSuperuser(t *testing.T) {
	dir := t.TempDir()
	f := startFog(t, dir)
	inst := f.createInstance("rg-adm", "adm1", "eastus", nil)
	check := func(stage string) {
		t.Helper()
		c := mustConnect(t, f.info.CACert, inst, "postgres")
		var super, createRole bool
		var preload string
		if err := c.QueryRow(context.Background(), "SELECT rolsuper, rolcreaterole, current_setting('shared_preload_libraries') FROM pg_roles WHERE rolname = current_user").Scan(&super, &createRole, &preload); err != nil {
			t.Fatal(err)
		}
		if super || !createRole || !strings.Contains(preload, "fog_guard") {
			t.Fatalf("%s: superuser %v, createrole %v, preload %q; want false, true, the guard", stage, super, createRole, preload)
		}
		if _, err := c.Exec(context.Background(), "COPY (SELECT 1) TO PROGRAM 'id'"); err == nil || !strings.Contains(err.Error(), "42501") {
			t.Fatalf("%s: COPY TO PROGRAM = %v, want a permission error", stage, err)
		}
		c.Close(context.Background())
	}
	check("new instance")

	// Make it an instance of an older Fog: stop fog (it stops its instances), start the
	// server without the guard and make the admin a superuser again.
	f.stop()
	dirs, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*", "pgdata"))
	if len(dirs) != 1 {
		t.Fatalf("instance data directories: %v", dirs)
	}
	idir := filepath.Dir(dirs[0])
	conf := filepath.Join(dirs[0], "fog.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`(?m)^(shared_preload_libraries|fog_guard\.extensions) = .*$`).ReplaceAllString(string(b), "")
	if err := os.WriteFile(conf, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := postgres.FindBinaries(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	runner, err := postgres.NewRunner(bin, "postgres", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// An older Fog ran every instance as the one postgres user.
	if out, err := exec.Command("chown", "-R", "postgres:", idir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	c := &postgres.Cluster{Dir: idir, SocketDir: postgres.SocketDirFor(filepath.Base(idir)), Host: props(inst)["host"].(string), Port: int(props(inst)["port"].(float64)), R: runner}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err, c.LogTail(10))
	}
	sys, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Exec(ctx, "ALTER ROLE fogadmin SUPERUSER NOCREATEROLE"); err != nil {
		t.Fatal(err)
	}
	var preload string
	_ = sys.QueryRow(ctx, "SELECT current_setting('shared_preload_libraries')").Scan(&preload)
	sys.Close(ctx)
	if strings.Contains(preload, "fog_guard") {
		t.Fatalf("the old-style server loads %q", preload)
	}

	f = startFog(t, dir)
	started := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := connect(t, f.info.CACert, inst, "fogadmin", password, "postgres")
		if err == nil {
			var super bool
			var preload string
			err = conn.QueryRow(ctx, "SELECT rolsuper, current_setting('shared_preload_libraries') FROM pg_roles WHERE rolname = current_user").Scan(&super, &preload)
			conn.Close(context.Background())
			if err == nil && !super && strings.Contains(preload, "fog_guard") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old instance was not migrated within 60 s: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("migrated %v after fog started", time.Since(started).Round(time.Millisecond))
	check("migrated instance")
	if os.Geteuid() == 0 {
		fi, _ := os.Stat(dirs[0])
		pgUser, _ := user.Lookup("postgres")
		if fmt.Sprint(fi.Sys().(*syscall.Stat_t).Uid) == pgUser.Uid {
			t.Error("the migrated instance's files still belong to the shared postgres user")
		}
	}
}

// TestInstanceIsolation: with fog as root, each instance's PostgreSQL runs as an OS user of its
// own, which cannot read another instance's files nor Fog's store, CA key or client config;
// deleting the instance removes its user.
func TestInstanceIsolation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: fog makes an OS user per instance only as root")
	}
	dir := t.TempDir()
	f := startFog(t, dir)
	f.createInstance("rg-iso", "iso1", "eastus", nil)
	f.createInstance("rg-iso", "iso2", "eastus", nil)
	dirs, _ := filepath.Glob(filepath.Join(dir, "regions", "eastus", "*", "pgdata"))
	if len(dirs) != 2 {
		t.Fatalf("data directories: %v", dirs)
	}
	owner := func(p string) (uint32, uint32) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		st := fi.Sys().(*syscall.Stat_t)
		return st.Uid, st.Gid
	}
	u1, g1 := owner(dirs[0])
	u2, _ := owner(dirs[1])
	pgUser, _ := user.Lookup("postgres")
	if u1 == u2 || u1 == 0 || fmt.Sprint(u1) == pgUser.Uid || fmt.Sprint(u2) == pgUser.Uid {
		t.Fatalf("instance owners %d and %d (postgres is %s): want two users of their own", u1, u2, pgUser.Uid)
	}
	// The postmaster runs as its instance's user.
	pidLine, err := os.ReadFile(filepath.Join(dirs[0], "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile("/proc/" + strings.SplitN(string(pidLine), "\n", 2)[0] + "/status")
	if !strings.Contains(string(status), fmt.Sprintf("Uid:\t%d\t", u1)) {
		t.Errorf("the postmaster does not run as uid %d:\n%s", u1, status)
	}
	readAs := func(path string) error {
		cmd := exec.Command("cat", path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u1, Gid: g1}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := readAs(filepath.Join(dirs[0], "PG_VERSION")); err != nil {
		t.Fatalf("the instance's user cannot read its own files: %v", err)
	}
	for _, p := range []string{
		filepath.Join(dirs[1], "PG_VERSION"),
		filepath.Join(filepath.Dir(dirs[1]), "replication.key"),
		filepath.Join(dirs[1], "server.key"),
		filepath.Join(dir, "ca.key"),
		filepath.Join(dir, "client.json"),
		filepath.Join(dir, "fog.db"),
	} {
		if _, err := os.Stat(p); err != nil {
			if strings.HasPrefix(p, filepath.Dir(dirs[1])) {
				continue // a standalone instance has no replication key
			}
			t.Fatalf("%s: %v", p, err)
		}
		if err := readAs(p); err == nil || !strings.Contains(err.Error(), "Permission denied") {
			t.Errorf("instance iso's OS user read %s: %v", p, err)
		}
	}
	// Deleting the instance removes its OS user.
	name := ""
	if u, err := user.LookupId(fmt.Sprint(u2)); err == nil {
		name = u.Username
	}
	for _, n := range []string{"iso1", "iso2"} {
		f.mustSucceed(f.call("DELETE", miPath("rg-iso", n), nil))
	}
	if _, err := user.Lookup(name); err == nil {
		t.Errorf("the OS user %s of a deleted instance is still there", name)
	}
}
