package e2e

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
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
	if err := runner.Chown(conf); err != nil {
		t.Fatal(err)
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
	check("migrated instance")
}
