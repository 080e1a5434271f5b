package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fogdb/fog/internal/devca"
	"github.com/fogdb/fog/internal/freeport"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/jackc/pgx/v5"
)

func freePort(t *testing.T, host string) int {
	t.Helper()
	p, err := freeport.PortOn(host)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// testRunner finds the PostgreSQL binaries and a runner for them (as the postgres user when
// the tests run as root).
func testRunner(ctx context.Context, t *testing.T) (string, *Runner) {
	t.Helper()
	bin, err := FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRunner(bin, "postgres", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	return bin, r
}

// startTestCluster initialises and starts the cluster "i1" under dir on 127.0.0.1, with a
// server certificate from a new CA in dir; cfg gives the rest of its configuration. The
// cluster is removed when the test ends.
func startTestCluster(ctx context.Context, t *testing.T, r *Runner, dir string, cfg Config) (*Cluster, *devca.CA) {
	t.Helper()
	host := "127.0.0.1"
	c := &Cluster{Dir: dir + "/i1", SocketDir: SocketDirFor(dir), Host: host, Port: freePort(t, host), R: r}
	if err := c.Init(ctx, "C.UTF-8"); err != nil {
		t.Fatal(err)
	}
	ca, err := devca.LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name = "i1"
	if cfg.CertPEM, cfg.KeyPEM, err = ca.Issue([]string{"i1.test"}, []net.IP{net.ParseIP(host)}); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err, c.LogTail(10))
	}
	t.Cleanup(func() { c.Stop(context.Background(), "immediate"); c.Remove() })
	return c, ca
}

// startGuardedCluster is startTestCluster with the fog_guard library built and loaded, and
// a connection of the system role to the postgres database, closed when the test ends.
func startGuardedCluster(ctx context.Context, t *testing.T) (*Cluster, *devca.CA, *pgx.Conn) {
	t.Helper()
	bin, r := testRunner(ctx, t)
	dir := t.TempDir()
	lib, err := BuildGuard(ctx, bin, filepath.Join(dir, "lib"))
	if err != nil {
		t.Fatalf("build the guard library (CI installs postgresql-server-dev and gcc): %v", err)
	}
	if again, err := BuildGuard(ctx, bin, filepath.Join(dir, "lib")); err != nil || again != lib {
		t.Fatalf("a second build = %q %v, want the same library", again, err)
	}
	if err := r.EnsureTraversable(filepath.Dir(lib)); err != nil {
		t.Fatal(err)
	}
	c, ca := startTestCluster(ctx, t, r, dir, Config{Timezone: "UTC", FogUser: "root", GuardLibrary: lib})
	sys, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sys.Close(context.Background()) })
	return c, ca, sys
}

func TestClusterLifecycle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, r := testRunner(ctx, t)
	c, ca := startTestCluster(ctx, t, r, t.TempDir(), Config{Timezone: "America/Los_Angeles", FogUser: "root"})
	host := c.Host

	sys, err := c.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close(ctx)
	const pw = "Very-Secret-Passw0rd!"
	if err := EnsureAdmin(ctx, sys, "fogadmin", pgtypes.SCRAMVerifier(pw), false); err != nil {
		t.Fatal(err)
	}
	if err := CreateDatabase(ctx, sys, "app", "fogadmin"); err != nil {
		t.Fatal(err)
	}
	if err := CreateDatabase(ctx, sys, "app", "fogadmin"); err != nil {
		t.Fatalf("second CreateDatabase = %v, want nil (idempotent)", err)
	}

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	dsn := fmt.Sprintf("host=%s port=%d user=fogadmin password=%s dbname=app sslmode=verify-full", host, c.Port, pw)
	cfg, _ := pgx.ParseConfig(dsn)
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("admin over TLS: %v", err)
	}
	defer conn.Close(ctx)
	var tz string
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT current_setting('TimeZone'), ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&tz, &ssl); err != nil {
		t.Fatal(err)
	}
	if tz != "America/Los_Angeles" || !ssl {
		t.Fatalf("TimeZone, ssl = %q, %v; want America/Los_Angeles, true", tz, ssl)
	}

	// Wrong password and plaintext connections are refused.
	bad, _ := pgx.ParseConfig(strings.Replace(dsn, pw, "wrong-password-xx", 1))
	bad.TLSConfig = cfg.TLSConfig
	if c, err := pgx.ConnectConfig(ctx, bad); err == nil {
		c.Close(ctx)
		t.Fatal("connect with a wrong password succeeded")
	}
	plain, _ := pgx.ParseConfig(strings.Replace(dsn, "verify-full", "disable", 1))
	if c, err := pgx.ConnectConfig(ctx, plain); err == nil {
		c.Close(ctx)
		t.Fatal("connect without TLS succeeded")
	}

	dbs, err := ListDatabases(ctx, sys)
	if err != nil || len(dbs) != 1 || dbs[0].Name != "app" {
		t.Fatalf("ListDatabases = %+v, %v; want [app]", dbs, err)
	}
	if err := DropDatabase(ctx, sys, "app"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, "fast"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.PID(); ok {
		t.Fatal("postmaster still running after Stop")
	}
}
