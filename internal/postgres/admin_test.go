package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fogdb/fog/internal/pgtypes"
)

// TestAdminCannotReachTheHost: the instance admin (a member of fog_admin, not a superuser)
// manages roles, databases, sessions, checkpoints and allowed extensions, and nothing in SQL
// takes it to a file or a program of the host or to Fog's own roles.
func TestAdminCannotReachTheHost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, ca, sys := startGuardedCluster(ctx, t)
	var lib string
	if err := sys.QueryRow(ctx, "SELECT split_part(current_setting('shared_preload_libraries'), ',', 2)").Scan(&lib); err != nil {
		t.Fatal(err)
	}
	lib = strings.Trim(lib, `" `)
	host := c.Host
	guarded, err := GuardLoaded(ctx, sys)
	if err != nil || !guarded {
		t.Fatalf("guard loaded = %v %v", guarded, err)
	}
	// An admin made a superuser by an older Fog loses it.
	if _, err := sys.Exec(ctx, "CREATE ROLE fogadmin LOGIN SUPERUSER"); err != nil {
		t.Fatal(err)
	}
	const pw = "Very-Secret-Passw0rd!"
	if err := EnsureAdmin(ctx, sys, "fogadmin", pgtypes.SCRAMVerifier(pw), guarded); err != nil {
		t.Fatal(err)
	}
	if err := EnsureReplicationRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := CreateDatabase(ctx, sys, "app", "fogadmin"); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=fogadmin password=%s dbname=app sslmode=verify-full", host, c.Port, pw))
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host}
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)

	var super, createRole bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&super, &createRole); err != nil || super || !createRole {
		t.Fatalf("admin: superuser %v, createrole %v, %v; want false, true", super, createRole, err)
	}
	// What an admin of a managed service does.
	for _, q := range []string{
		"CREATE TABLE t (id int PRIMARY KEY, v text)",
		"INSERT INTO t VALUES (1, 'x')",
		"CREATE ROLE app_user LOGIN PASSWORD 'App-Passw0rd-1'",
		"GRANT pg_read_all_data TO app_user",
		"GRANT SELECT ON t TO app_user",
		"ALTER ROLE app_user CONNECTION LIMIT 5",
		"CREATE DATABASE admin_db",
		"CREATE EXTENSION pgcrypto",           // trusted: a database owner's right
		"CREATE EXTENSION pg_stat_statements", // allow-listed
		"CREATE EXTENSION pg_buffercache",
		"SELECT count(*) FROM pg_stat_statements",
		"CHECKPOINT",
		"SELECT count(*) FROM pg_stat_activity",
		"GRANT fog_admin TO app_user",
		"REVOKE fog_admin FROM app_user",
		"REVOKE SELECT ON t FROM app_user",
		"DROP ROLE app_user",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Errorf("admin: %s: %v", q, err)
		}
	}
	pcfg := cfg.Copy()
	pcfg.Database = "postgres"
	inPostgres, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	// The postgres database is the admin's to use as on a managed service (Fog's own
	// superuser sessions run in SystemDB, which the admin cannot even connect to).
	for _, q := range []string{"CREATE TABLE in_postgres (id int)", "CREATE SCHEMA app", "CREATE TABLE app.in_postgres (id int)"} {
		if _, err := inPostgres.Exec(ctx, q); err != nil {
			t.Errorf("admin in the postgres database: %s: %v", q, err)
		}
	}
	if _, err := inPostgres.Exec(ctx, "DROP DATABASE postgres"); err == nil {
		t.Error("admin dropped the postgres database")
	}
	inPostgres.Close(ctx)
	// Ending another session (pg_signal_backend).
	other, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	_ = other.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	var ended bool
	if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&ended); err != nil || !ended {
		t.Errorf("terminate another session: %v %v", ended, err)
	}
	other.Close(ctx)

	secret := filepath.Join(t.TempDir(), "fog-secret")
	if err := os.WriteFile(secret, []byte("token"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What would reach the host, or Fog's roles.
	for _, q := range []string{
		"COPY (SELECT 1) TO PROGRAM 'id'",
		"COPY t FROM PROGRAM 'cat /etc/passwd'",
		"COPY t FROM '" + secret + "'",
		"COPY t TO '/tmp/fog-admin-wrote-this'",
		"SELECT pg_read_file('" + secret + "')",
		"SELECT pg_read_binary_file('server.key')",
		"SELECT pg_ls_dir('.')",
		"SELECT lo_import('/etc/passwd')",
		"GRANT pg_execute_server_program TO fogadmin",
		"GRANT pg_read_server_files TO fogadmin",
		"GRANT pg_write_server_files TO fogadmin",
		"GRANT fog_replication TO fogadmin",
		"CREATE ROLE sneaky IN ROLE pg_execute_server_program",
		"CREATE ROLE sneaky2 IN ROLE fog_replication",
		"ALTER GROUP pg_read_server_files ADD USER fogadmin",
		"ALTER ROLE fog_replication PASSWORD 'x'",
		"ALTER ROLE fog_replication SET search_path = evil",
		"ALTER ROLE fog_admin LOGIN",
		"ALTER ROLE fog_system NOSUPERUSER",
		"ALTER ROLE fogadmin SUPERUSER",
		"DROP ROLE fog_replication",
		"DROP ROLE fog_admin",
		"ALTER ROLE fog_replication RENAME TO r2",
		"REVOKE pg_monitor FROM fog_admin",
		"CREATE ROLE r REPLICATION",
		"CREATE EXTENSION file_fdw",
		"CREATE EXTENSION adminpack",
		"ALTER SYSTEM SET shared_preload_libraries = ''",
		"LOAD '" + lib + "'",
		"SET SESSION AUTHORIZATION fog_system",
		"CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION pg_catalog.now()",
	} {
		_, err := admin.Exec(ctx, q)
		var pe *pgconn.PgError
		if err == nil {
			t.Errorf("admin could: %s", q)
		} else if !errors.As(err, &pe) || (pe.Code != "42501" && pe.Code != "0A000" && pe.Code != "58P01" && pe.Code != "42883") {
			t.Errorf("admin: %s: %v (want a permission error)", q, err)
		}
	}
	if _, err := os.Stat("/tmp/fog-admin-wrote-this"); err == nil {
		t.Error("the admin wrote a file of the host")
	}
	if _, err := admin.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	var members int
	if err := sys.QueryRow(ctx, `SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid
		WHERE r.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files', 'fog_replication')`).Scan(&members); err != nil || members != 0 {
		t.Fatalf("members of the host roles: %d %v", members, err)
	}
	// The allow-listed extension was created by the admin's request and belongs to it there.
	var owner string
	if err := admin.QueryRow(ctx, "SELECT d.datdba::regrole::text FROM pg_database d WHERE datname = 'admin_db'").Scan(&owner); err != nil || owner != "fogadmin" {
		t.Errorf("a database the admin created belongs to %q %v", owner, err)
	}
}
