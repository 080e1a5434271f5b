package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/postgres"
)

// TestShowConnectionString: every form the CLI prints connects as it is (psql with libpq's
// keyword and URI forms, pgx with its URL), with verify-full against the CA's absolute path:
// to an instance, to each listener, and to both instances at once with libpq choosing the
// primary (writes) or the standby (reads).
func TestShowConnectionString(t *testing.T) {
	f := startFog(t, "")
	p := newPair(t, f, "conn")
	p.create(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	bin, err := postgres.FindBinaries(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	cs := func(args ...string) string {
		t.Helper()
		out, _, err := f.runCLI("", args...)
		if err != nil {
			t.Fatalf("fog %v: %v", args, err)
		}
		s := strings.TrimSpace(out)
		if !strings.Contains(s, "verify-full") || !strings.Contains(s, filepath.Join(f.dataDir, "ca.crt")) || !filepath.IsAbs(filepath.Join(f.dataDir, "ca.crt")) {
			t.Fatalf("fog %v = %q: no verify-full with the CA's absolute path", args, s)
		}
		return s
	}
	psql := func(conn, sql string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "psql"), conn, "-XAtq", "-c", sql)
		cmd.Env = append(os.Environ(), "PGPASSWORD="+password)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql %q: %v %s", conn, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	inst := []string{"sql", "mi", "show-connection-string", "-g", "rg-p", "-n", "conn-p"}
	if got := psql(cs(inst...), "SELECT current_user"); got != "fogadmin" {
		t.Errorf("instance, psql form: %q", got)
	}
	if got := psql(cs(append(inst, "--client", "uri")...), "SELECT 1"); got != "1" {
		t.Errorf("instance, URI form: %q", got)
	}
	cfg, err := pgx.ParseConfig(cs(append(inst, "--client", "pgx")...))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = password
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("instance, pgx form: %v", err)
	}
	conn.Close(ctx)
	if j := cs(append(inst, "--client", "jdbc")...); !strings.HasPrefix(j, "jdbc:postgresql://") || !strings.Contains(j, "sslmode=verify-full") {
		t.Errorf("JDBC form: %q", j)
	}
	grp := []string{"sql", "instance-failover-group", "show-connection-string", "-g", "rg-p", "-l", "eastus", "-n", p.name}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listener", "read-write"}, "f"},
		{[]string{"--listener", "read-only"}, "t"},
		{[]string{"--listener", "read-write", "--multi-host"}, "f"},
		{[]string{"--listener", "read-only", "--multi-host"}, "t"},
	} {
		s := cs(append(grp, c.args...)...)
		if got := psql(s, "SELECT pg_is_in_recovery()"); got != c.want {
			t.Errorf("group %v: in recovery %q, want %q (%s)", c.args, got, c.want, s)
		}
	}
	if s := cs(append(grp, "--multi-host")...); !strings.Contains(s, "target_session_attrs=read-write") || strings.Count(s, "127.") < 2 {
		t.Errorf("multi-host form: %q", s)
	}
	if _, _, err := f.runCLI("", append(grp, "--listener", "both")...); err == nil || !strings.Contains(err.Error(), "--listener") {
		t.Errorf("a bad --listener: %v", err)
	}
}
