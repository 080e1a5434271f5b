package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"pgregory.net/rapid"

	"github.com/fogdb/fog/internal/pgtypes"
)

// guardAdminPassword is the password of the admin login of the guarded test instances.
const guardAdminPassword = "Very-Secret-Passw0rd!"

// fogRoleNames are Fog's roles in every instance; hostRoleNames the predefined roles that
// reach the host's files and programs. fog_guard.c keeps the same lists.
var (
	fogRoleNames  = []string{"fog_system", "fog_replication", "fog_admin", "fog_monitor", "fog_backup"}
	hostRoleNames = []string{"pg_execute_server_program", "pg_read_server_files", "pg_write_server_files"}
)

// guardedInstance is a running instance with the guard loaded, Fog's roles as the agent makes
// them, the admin login fogadmin (EnsureAdmin) and its database app.
type guardedInstance struct {
	c     *Cluster
	sys   *pgx.Conn // the system role, database postgres
	admin *pgx.ConnConfig
}

func startGuardedInstance(ctx context.Context, t *testing.T) *guardedInstance {
	t.Helper()
	c, ca, sys := startGuardedCluster(ctx, t)
	if err := EnsureAdmin(ctx, sys, "fogadmin", pgtypes.SCRAMVerifier(guardAdminPassword), true); err != nil {
		t.Fatal(err)
	}
	if err := EnsureReplicationRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	// fog_monitor as the agent makes it: a login of the socket alone, in pg_monitor.
	for _, q := range []string{
		`DO $$ BEGIN
			IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'fog_monitor') THEN
				CREATE ROLE fog_monitor LOGIN;
			END IF;
		END $$`,
		"GRANT pg_monitor TO fog_monitor",
	} {
		if _, err := sys.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.EnsureSystemDB(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := c.EnsureBackupRole(ctx, sys); err != nil {
		t.Fatal(err)
	}
	if err := CreateDatabase(ctx, sys, "app", "fogadmin"); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=fogadmin dbname=app sslmode=verify-full", c.Host, c.Port))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = guardAdminPassword
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: c.Host}
	return &guardedInstance{c: c, sys: sys, admin: cfg}
}

// connectAdmin connects as the admin login to the app database.
func (g *guardedInstance) connectAdmin(ctx context.Context, t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.ConnectConfig(ctx, g.admin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// protectedStateQuery is everything about the protected roles (Fog's, the host roles, the
// superusers) a statement could change, one line per fact, sorted: their attributes and
// password, their memberships and the memberships in them, their settings and the global
// ones, comments and labels on them, and what they own or hold privileges on in any database
// (pg_shdepend; the bootstrap superuser is pinned and has no rows there). Lines starting
// "admin-member" are the members of fog_admin, which its members manage.
var protectedStateQuery = `
WITH p AS (SELECT oid FROM pg_catalog.pg_authid
           WHERE rolsuper OR rolname OPERATOR(pg_catalog.=) ANY (ARRAY[` + sqlNames(append(append([]string{}, fogRoleNames...), hostRoleNames...)) + `]::pg_catalog.name[]))
SELECT coalesce(pg_catalog.string_agg(x, E'\n' ORDER BY x), '') FROM (
  SELECT 'role ' || a.oid || ' ' || ROW(a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb,
         a.rolcanlogin, a.rolreplication, a.rolbypassrls, a.rolconnlimit, a.rolpassword, a.rolvaliduntil)::text
  FROM pg_catalog.pg_authid a WHERE a.oid IN (SELECT oid FROM p)
  UNION ALL
  SELECT CASE WHEN m.roleid::regrole::text = 'fog_admin' THEN 'admin-member ' ELSE 'member ' END
         || m.roleid::regrole::text || ' ' || m.member::regrole::text || ' ' || m.admin_option
  FROM pg_catalog.pg_auth_members m WHERE m.roleid IN (SELECT oid FROM p) OR m.member IN (SELECT oid FROM p)
  UNION ALL
  SELECT 'setting ' || s.setdatabase || ' ' || s.setrole || ' ' || s.setconfig::text
  FROM pg_catalog.pg_db_role_setting s
  WHERE s.setrole IN (SELECT oid FROM p) OR (s.setrole = 0 AND s.setdatabase = 0)
  UNION ALL
  SELECT 'comment ' || d.objoid || ' ' || d.description FROM pg_catalog.pg_shdescription d
  WHERE d.classoid = 'pg_catalog.pg_authid'::regclass AND d.objoid IN (SELECT oid FROM p)
  UNION ALL
  SELECT 'label ' || l.objoid || ' ' || l.provider || ' ' || l.label FROM pg_catalog.pg_shseclabel l
  WHERE l.classoid = 'pg_catalog.pg_authid'::regclass AND l.objoid IN (SELECT oid FROM p)
  UNION ALL
  SELECT 'depends ' || d.dbid || ' ' || d.classid || ' ' || d.objid || ' ' || d.objsubid || ' ' || d.refobjid || ' ' || d.deptype::text
  FROM pg_catalog.pg_shdepend d
  WHERE d.refclassid = 'pg_catalog.pg_authid'::regclass AND d.refobjid IN (SELECT oid FROM p)
) q(x)`

func sqlNames(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return strings.Join(q, ", ")
}

func protectedState(ctx context.Context, t testing.TB, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, protectedStateQuery).Scan(&s); err != nil {
		t.Fatalf("protected roles' state: %v", err)
	}
	return s
}

// guardFixtures are what the statements of the tests name: a table, a schema, two roles of
// the admin's and a foreign server of postgres_fdw.
var guardFixtures = []string{
	"CREATE TABLE t (id int PRIMARY KEY, v text)",
	"CREATE SCHEMA s",
	"CREATE ROLE app_group",
	"CREATE ROLE app_user LOGIN PASSWORD 'App-Passw0rd-1'",
	"CREATE EXTENSION postgres_fdw",
	"CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'app')",
}

// roleTargetForms change the role %s names (or make it a member, a grantee or an owner).
var roleTargetForms = []string{
	"ALTER ROLE %s WITH LOGIN PASSWORD 'Evil-Passw0rd-1'",
	"ALTER ROLE %s NOINHERIT",
	"ALTER ROLE %s CONNECTION LIMIT 1",
	"ALTER USER %s VALID UNTIL '2000-01-01'",
	"ALTER ROLE %s SUPERUSER",
	"ALTER ROLE %s NOCREATEROLE",
	"ALTER ROLE %s SET search_path = evil",
	"ALTER ROLE %s SET role = app_user",
	"ALTER ROLE %s RESET ALL",
	"ALTER USER %s RESET work_mem",
	"ALTER ROLE %s IN DATABASE app SET work_mem = '1MB'",
	"ALTER ROLE %s IN DATABASE app RESET ALL",
	"DROP ROLE %s",
	"DROP USER IF EXISTS %s",
	"DROP GROUP app_group, %s",
	"GRANT app_group TO %s",
	"GRANT pg_monitor TO %s",
	"GRANT fog_admin TO %s",
	"GRANT app_group TO app_user, %s WITH ADMIN OPTION",
	"REVOKE pg_monitor FROM %s",
	"REVOKE pg_read_all_data FROM %s CASCADE",
	"REVOKE ADMIN OPTION FOR pg_signal_backend FROM %s",
	"REVOKE fog_admin FROM %s",
	"GRANT app_group TO app_user GRANTED BY %s",
	"GRANT SELECT ON t TO %s",
	"REVOKE ALL ON t FROM %s",
	"GRANT USAGE ON SCHEMA s TO %s",
	"GRANT ALL ON ALL TABLES IN SCHEMA public TO %s",
	"GRANT USAGE ON FOREIGN SERVER loopback TO %s",
	"REVOKE CONNECT ON DATABASE app FROM %s",
	"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO %s",
	"ALTER DEFAULT PRIVILEGES FOR ROLE %s GRANT SELECT ON TABLES TO app_group",
	"ALTER DEFAULT PRIVILEGES FOR ROLE %s REVOKE ALL ON TABLES FROM PUBLIC",
	"ALTER GROUP %s ADD USER app_user",
	"ALTER GROUP %s DROP USER app_user",
	"ALTER GROUP app_group ADD USER %s",
	"ALTER GROUP app_group DROP USER app_user, %s",
	"ALTER ROLE app_group USER %s",
	"ALTER ROLE %s USER app_user",
	"CREATE ROLE new_role ROLE %s",
	"CREATE ROLE new_role ADMIN %s",
	"CREATE USER new_role IN GROUP app_group USER app_user, %s",
	"REASSIGN OWNED BY %s TO app_group",
	"REASSIGN OWNED BY app_user TO %s",
	"DROP OWNED BY %s",
	"DROP OWNED BY app_user, %s CASCADE",
	"ALTER TABLE t OWNER TO %s",
	"ALTER SCHEMA s OWNER TO %s",
	"ALTER DATABASE app OWNER TO %s",
	"ALTER SERVER loopback OWNER TO %s",
	"CREATE SCHEMA s2 AUTHORIZATION %s",
	"CREATE SCHEMA AUTHORIZATION %s",
	"CREATE USER MAPPING FOR %s SERVER loopback OPTIONS (user 'x', password 'y')",
	"ALTER USER MAPPING FOR %s SERVER loopback OPTIONS (ADD password 'y')",
	"DROP USER MAPPING IF EXISTS FOR %s SERVER loopback",
}

// roleNameForms take only a role's name, not CURRENT_USER and the like.
var roleNameForms = []string{
	"ALTER ROLE %s RENAME TO renamed",
	"ALTER GROUP %s RENAME TO renamed",
	"COMMENT ON ROLE %s IS 'mine'",
	"SECURITY LABEL ON ROLE %s IS 'mine'",
	"CREATE DATABASE new_db OWNER %s",
	"CREATE DATABASE new_db OWNER = %s",
}

// grantedForms grant or revoke the role %s.
var grantedForms = []string{
	"GRANT %s TO app_user",
	"GRANT %s TO CURRENT_USER",
	"GRANT %s TO CURRENT_ROLE",
	"GRANT %s TO SESSION_USER",
	"GRANT %s TO PUBLIC",
	"GRANT %s TO app_user WITH ADMIN OPTION",
	"GRANT pg_monitor, %s TO app_group",
	"REVOKE %s FROM app_user",
	"REVOKE %s FROM PUBLIC",
	"CREATE ROLE new_role IN ROLE %s",
	"CREATE ROLE new_role LOGIN IN GROUP app_group, %s",
	"CREATE GROUP new_role IN ROLE %s",
	"ALTER GROUP %s ADD USER app_user",
}

// uEscape spells name as a Unicode-escaped quoted identifier, every other character escaped.
func uEscape(name string) string {
	var b strings.Builder
	b.WriteString(`U&"`)
	for i, r := range name {
		if i%2 == 0 {
			fmt.Fprintf(&b, `\%04x`, r)
		} else {
			b.WriteRune(r)
		}
	}
	b.WriteString(`"`)
	return b.String()
}

type guardCase struct {
	setRole string // SET ROLE before the statement, when not ""
	sql     string
	byPG    bool // refused by PostgreSQL's own rule, not the guard's
}

// guardAttacks are the statements no admin may run: every form against every protected role
// (by name, spelt several ways, and as CURRENT_USER / CURRENT_ROLE after SET ROLE fog_admin).
func guardAttacks() []guardCase {
	var cases []guardCase
	protected := append(append([]string{}, fogRoleNames...), hostRoleNames...)
	for _, r := range protected {
		spellings := []string{r, strings.ToUpper(r), `"` + r + `"`, uEscape(r)}
		if r != "fog_admin" {
			spellings = spellings[:1]
		}
		for _, sp := range spellings {
			for _, f := range append(append([]string{}, roleTargetForms...), roleNameForms...) {
				cases = append(cases, guardCase{sql: fmt.Sprintf(f, sp)})
			}
		}
		if r != "fog_admin" {
			for _, f := range grantedForms {
				cases = append(cases, guardCase{sql: fmt.Sprintf(f, r)})
			}
		}
		for _, v := range []string{"CREATE ROLE %s", "CREATE USER %s LOGIN PASSWORD 'Evil-Passw0rd-1'", "ALTER ROLE app_user RENAME TO %s"} {
			if strings.HasPrefix(r, "fog_") {
				cases = append(cases, guardCase{sql: fmt.Sprintf(v, r)})
			}
		}
	}
	// After SET ROLE fog_admin, CURRENT_USER and CURRENT_ROLE are fog_admin.
	for _, spec := range []string{"CURRENT_USER", "CURRENT_ROLE"} {
		for _, f := range roleTargetForms {
			cases = append(cases, guardCase{setRole: "fog_admin", sql: fmt.Sprintf(f, spec)})
		}
		for _, r := range protected {
			if r != "fog_admin" {
				cases = append(cases, guardCase{setRole: "fog_admin", sql: fmt.Sprintf("GRANT %s TO %s", r, spec)})
			}
		}
	}
	// PostgreSQL's own rules, which the guard leaves to it.
	for _, q := range []string{
		"ALTER ROLE ALL SET work_mem = '1MB'",
		"ALTER USER ALL RESET ALL",
		"SET ROLE fog_system",
		"SET ROLE fog_replication",
		"SET ROLE fog_monitor",
		"SET SESSION AUTHORIZATION fog_system",
		"CREATE ROLE evil SUPERUSER",
		"CREATE ROLE evil REPLICATION",
		"CREATE ROLE evil BYPASSRLS",
	} {
		cases = append(cases, guardCase{sql: q, byPG: true})
	}
	cases = append(cases, guardCase{setRole: "fog_admin", sql: "ALTER ROLE ALL IN DATABASE postgres SET work_mem = '1MB'", byPG: true})
	return cases
}

// TestGuardRefusesChangesToProtectedRoles: an admin login (a member of fog_admin with
// CREATEROLE) runs every form of role statement against every Fog role, host role and
// superuser, by name and through CURRENT_USER after SET ROLE fog_admin: each is refused with
// insufficient_privilege by the guard (or by PostgreSQL where its own rule applies), and
// nothing about those roles changed. The admin's ordinary work still succeeds.
func TestGuardRefusesChangesToProtectedRoles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := startGuardedInstance(ctx, t)
	admin := g.connectAdmin(ctx, t)
	for _, q := range guardFixtures {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("admin: %s: %v", q, err)
		}
	}
	before := protectedState(ctx, t, g.sys)
	if !strings.Contains(before, "(fog_monitor,") {
		t.Fatalf("the state of the protected roles does not name fog_monitor:\n%s", before)
	}

	cases := guardAttacks()
	for _, c := range cases {
		if c.setRole != "" {
			if _, err := admin.Exec(ctx, "SET ROLE "+c.setRole); err != nil {
				t.Fatalf("SET ROLE %s: %v", c.setRole, err)
			}
		}
		_, err := admin.Exec(ctx, c.sql)
		var pe *pgconn.PgError
		switch {
		case err == nil:
			t.Errorf("admin (role %q) could: %s", c.setRole, c.sql)
		case !errors.As(err, &pe) || pe.Code != "42501":
			t.Errorf("admin (role %q): %s: %v, want SQLSTATE 42501", c.setRole, c.sql, err)
		case !c.byPG && !strings.Contains(pe.Detail, "Fog"):
			t.Errorf("admin (role %q): %s: refused by %q (%s), want the guard's refusal", c.setRole, c.sql, pe.Message, pe.Detail)
		}
		if _, err := admin.Exec(ctx, "RESET ROLE"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d statements refused", len(cases))
	if after := protectedState(ctx, t, g.sys); after != before {
		t.Errorf("the protected roles changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	var exists bool
	if err := g.sys.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) 'new_db')").Scan(&exists); err != nil || exists {
		t.Errorf("new_db exists: %v %v", exists, err)
	}

	// What an admin does, with roles of its own, still works.
	for _, q := range []string{
		"CREATE ROLE app LOGIN PASSWORD 'App-Passw0rd-2' CONNECTION LIMIT 3",
		"GRANT fog_admin TO app",
		"REVOKE fog_admin FROM app",
		"GRANT fog_admin TO app WITH ADMIN OPTION",
		"CREATE ROLE app2 IN ROLE fog_admin, app_group",
		"CREATE ROLE app3 ROLE app ADMIN app2",
		"GRANT pg_read_all_data, pg_monitor TO app",
		"GRANT SELECT ON t TO app",
		"GRANT USAGE ON SCHEMA s TO app_group",
		"ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app_group",
		"ALTER ROLE app NOLOGIN",
		"ALTER ROLE app SET work_mem = '8MB'",
		"ALTER ROLE app IN DATABASE app SET statement_timeout = '5s'",
		"ALTER ROLE app RESET ALL",
		"ALTER ROLE CURRENT_USER SET work_mem = '4MB'",
		"ALTER ROLE SESSION_USER RESET work_mem",
		"ALTER GROUP app_group ADD USER app",
		"ALTER GROUP app_group DROP USER app",
		"COMMENT ON ROLE app IS 'an application'",
		"ALTER ROLE app3 RENAME TO app4",
		"GRANT app TO CURRENT_USER",
		"GRANT USAGE, CREATE ON SCHEMA s TO app",
		"SET ROLE app",
		"CREATE TABLE s.app_t (id int)",
		"RESET ROLE",
		"REASSIGN OWNED BY app TO CURRENT_USER",
		"ALTER TABLE s.app_t OWNER TO app",
		"DROP OWNED BY app",
		"CREATE USER MAPPING FOR app SERVER loopback OPTIONS (user 'app', password 'App-Passw0rd-2')",
		"DROP USER MAPPING FOR app SERVER loopback",
		"REVOKE fog_admin FROM app2",
		"SET ROLE fog_admin",
		"CREATE ROLE made_as_fog_admin",
		"GRANT app_group TO made_as_fog_admin",
		"RESET ROLE",
		"DROP ROLE app, app2, app4, made_as_fog_admin",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Errorf("admin: %s: %v", q, err)
		}
	}
	if after := protectedState(ctx, t, g.sys); after != before {
		t.Errorf("the protected roles changed by the admin's ordinary work:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestGuardForeignDataWrappers: an admin creates postgres_fdw (run elevated by the guard, so
// the wrapper is the bootstrap superuser's) and can use it: the wrapper is granted to
// fog_admin, so the admin defines a server, a user mapping with its password and foreign
// tables, and reads through them over TLS to the same instance. Over the socket the wrapper
// cannot log in as fog_system: the server's OS user is not mapped to Fog's roles, and
// PostgreSQL's rule that a non-superuser's connection must use a password stands behind
// that; dblink likewise.
func TestGuardForeignDataWrappers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := startGuardedInstance(ctx, t)
	admin := g.connectAdmin(ctx, t)
	for _, q := range []string{
		"CREATE TABLE remote_src (id int PRIMARY KEY, v text)",
		"INSERT INTO remote_src VALUES (1, 'one'), (2, 'two')",
		"CREATE EXTENSION postgres_fdw",
		"CREATE EXTENSION IF NOT EXISTS postgres_fdw",
		fmt.Sprintf("CREATE SERVER loopback FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '%s', port '%d', dbname 'app', sslmode 'require')", g.c.Host, g.c.Port),
		fmt.Sprintf("CREATE USER MAPPING FOR CURRENT_USER SERVER loopback OPTIONS (user 'fogadmin', password '%s')", guardAdminPassword),
		"CREATE SCHEMA remote",
		"IMPORT FOREIGN SCHEMA public LIMIT TO (remote_src) FROM SERVER loopback INTO remote",
		"CREATE FOREIGN TABLE ft (id int, v text) SERVER loopback OPTIONS (table_name 'remote_src')",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("admin: %s: %v", q, err)
		}
	}
	var owner string
	var usage bool
	if err := admin.QueryRow(ctx, `SELECT fdwowner::regrole::text, has_foreign_data_wrapper_privilege('fog_admin', oid, 'USAGE')
		FROM pg_foreign_data_wrapper WHERE fdwname = 'postgres_fdw'`).Scan(&owner, &usage); err != nil || owner != SystemUser || !usage {
		t.Errorf("postgres_fdw: owner %q, fog_admin's USAGE %v, %v; want %s, true", owner, usage, err, SystemUser)
	}
	var v string
	if err := admin.QueryRow(ctx, "SELECT v FROM remote.remote_src WHERE id = 2").Scan(&v); err != nil || v != "two" {
		t.Errorf("through the imported foreign table: %q %v, want two", v, err)
	}
	var n int
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM ft").Scan(&n); err != nil || n != 2 {
		t.Errorf("through the foreign table: %d %v, want 2", n, err)
	}

	// As a superuser over the socket: the server's own OS user is not mapped to Fog's system
	// role (identConf maps it to the backup role alone, in the system database alone), so the
	// login itself fails (08001); were it mapped, PostgreSQL's rule for non-superusers would
	// still refuse a connection that used no password (2F003). Fog's own sessions never read
	// a tenant's foreign tables, through which the mapping would otherwise be reached.
	for _, q := range []string{
		fmt.Sprintf("CREATE SERVER sock FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '%s', port '%d', dbname 'postgres')", g.c.SocketDir, g.c.Port),
		"CREATE USER MAPPING FOR CURRENT_USER SERVER sock OPTIONS (user 'fog_system', password 'anything')",
		"CREATE FOREIGN TABLE sock_roles (rolname name) SERVER sock OPTIONS (schema_name 'pg_catalog', table_name 'pg_authid')",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("admin: %s: %v", q, err)
		}
	}
	if err := admin.QueryRow(ctx, "SELECT count(*) FROM sock_roles").Scan(&n); err == nil {
		t.Errorf("the admin read pg_authid as fog_system through postgres_fdw over the socket (%d rows)", n)
	} else if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || (pe.Code != "08001" && pe.Code != "2F003") {
		t.Errorf("postgres_fdw over the socket: %v, want SQLSTATE 08001 (no login) or 2F003 (password is required)", err)
	}
	// As the backup role, which the server's OS user is mapped to: no password, so 2F003;
	// and in any database but the system one pg_hba.conf has no line for it (08001).
	for _, db := range []string{SystemDB, "app"} {
		for _, q := range []string{
			fmt.Sprintf("CREATE SERVER bk_%s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '%s', port '%d', dbname '%s')", db, g.c.SocketDir, g.c.Port, db),
			fmt.Sprintf("CREATE USER MAPPING FOR CURRENT_USER SERVER bk_%s OPTIONS (user '%s')", db, BackupUser),
			fmt.Sprintf("CREATE FOREIGN TABLE bk_settings_%s (name text) SERVER bk_%s OPTIONS (schema_name 'pg_catalog', table_name 'pg_settings')", db, db),
		} {
			if _, err := admin.Exec(ctx, q); err != nil {
				t.Fatalf("admin: %s: %v", q, err)
			}
		}
		if err := admin.QueryRow(ctx, "SELECT count(*) FROM bk_settings_"+db).Scan(&n); err == nil {
			t.Errorf("the admin read pg_settings as %s in %s through postgres_fdw over the socket", BackupUser, db)
		} else if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || (pe.Code != "08001" && pe.Code != "2F003") {
			t.Errorf("postgres_fdw as %s in %s: %v, want SQLSTATE 08001 or 2F003", BackupUser, db, err)
		}
	}
	// A mapping without a password: PostgreSQL's rule, kept.
	if _, err := admin.Exec(ctx, "CREATE SERVER nopw FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', dbname 'app')"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "CREATE USER MAPPING FOR CURRENT_USER SERVER nopw OPTIONS (user 'fogadmin')"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "IMPORT FOREIGN SCHEMA public LIMIT TO (remote_src) FROM SERVER nopw INTO remote"); err == nil {
		t.Error("postgres_fdw connected for a non-superuser without a password")
	} else if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "2F003" {
		t.Errorf("postgres_fdw without a password: %v, want SQLSTATE 2F003 (password is required)", err)
	}

	if _, err := admin.Exec(ctx, "CREATE EXTENSION dblink"); err != nil {
		t.Fatalf("admin: CREATE EXTENSION dblink: %v", err)
	}
	if err := admin.QueryRow(ctx, `SELECT has_foreign_data_wrapper_privilege('fog_admin', 'dblink_fdw', 'USAGE')`).Scan(&usage); err != nil || !usage {
		t.Errorf("dblink_fdw: fog_admin's USAGE %v %v", usage, err)
	}
	if err := admin.QueryRow(ctx, fmt.Sprintf(`SELECT v FROM dblink('host=%s port=%d dbname=app sslmode=require user=fogadmin password=%s',
		'SELECT v FROM remote_src WHERE id = 1') AS r(v text)`, g.c.Host, g.c.Port, guardAdminPassword)).Scan(&v); err != nil || v != "one" {
		t.Errorf("through dblink: %q %v, want one", v, err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("SELECT dblink_connect('host=%s port=%d dbname=postgres user=fog_system password=anything')", g.c.SocketDir, g.c.Port)); err == nil {
		t.Error("the admin connected as fog_system through dblink over the socket")
	} else if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || (pe.Code != "08001" && pe.Code != "2F003") {
		t.Errorf("dblink over the socket: %v, want SQLSTATE 08001 (no login) or 2F003 (password is required)", err)
	}
	// The guard's grant went to fog_admin alone, without GRANT OPTION.
	var acl string
	if err := admin.QueryRow(ctx, "SELECT fdwacl::text FROM pg_foreign_data_wrapper WHERE fdwname = 'postgres_fdw'").Scan(&acl); err != nil ||
		acl != fmt.Sprintf("{%s=U/%s,fog_admin=U/%s}", SystemUser, SystemUser, SystemUser) {
		t.Errorf("postgres_fdw's ACL = %q %v", acl, err)
	}
}

// TestGuardRoleStatementsProperty generates role statements from a grammar (ALTER ROLE /
// USER / GROUP, ... SET, DROP, GRANT and REVOKE of roles, CREATE ROLE with its membership
// options, RENAME, COMMENT, REASSIGN and DROP OWNED, SET ROLE), naming roles in every
// spelling PostgreSQL reads as the same name (unquoted in any case, quoted, U& escapes with
// either escape character) or as another (quoted in upper case), and through CURRENT_USER,
// CURRENT_ROLE, SESSION_USER and PUBLIC, with keywords in any case and any whitespace or
// comment between tokens. Each sequence runs as the admin in a transaction that is rolled
// back; after every statement that succeeded, nothing about the protected roles differs
// from the start (but fog_admin's members, which its members manage), and a statement that
// changes a protected role, or grants one other than fog_admin, must fail with
// insufficient_privilege. -rapid.checks sets how many sequences run (300 by default).
func TestGuardRoleStatementsProperty(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := startGuardedInstance(ctx, t)
	admin := g.connectAdmin(ctx, t)
	for _, q := range guardFixtures {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("admin: %s: %v", q, err)
		}
	}
	// The state as seen inside the admin's transaction: a function of the system role's,
	// in a schema only it may create in.
	sysApp, err := g.c.Connect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer sysApp.Close(ctx)
	for _, q := range []string{
		"CREATE SCHEMA fogtest",
		`CREATE FUNCTION fogtest.protected_state() RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
			SET search_path = pg_catalog, pg_temp AS $body$` + protectedStateQuery + `$body$`,
		"GRANT USAGE ON SCHEMA fogtest TO PUBLIC",
	} {
		if _, err := sysApp.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	state := func(rt *rapid.T) string {
		var s string
		if err := admin.QueryRow(ctx, "SELECT fogtest.protected_state()").Scan(&s); err != nil {
			rt.Fatalf("protected roles' state: %v", err)
		}
		var kept []string
		for _, l := range strings.Split(s, "\n") {
			if !strings.HasPrefix(l, "admin-member ") {
				kept = append(kept, l)
			}
		}
		return strings.Join(kept, "\n")
	}
	before := protectedState(ctx, t, g.sys)
	var base string
	var ran, refused, succeeded int
	// About a second by default; a mutant guard that lost CURRENT_USER took ~90 sequences.
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		_ = f.Value.Set("300")
		defer func() { _ = f.Value.Set("100") }()
	}
	rapid.Check(t, func(rt *rapid.T) {
		if _, err := admin.Exec(ctx, "BEGIN"); err != nil {
			rt.Fatal(err)
		}
		defer func() {
			if _, err := admin.Exec(ctx, "ROLLBACK"); err != nil {
				rt.Fatal(err)
			}
		}()
		if base == "" {
			base = state(rt)
		}
		asAdmin := false // the session's current role is fog_admin (SET ROLE)
		if rapid.Bool().Draw(rt, "SET ROLE fog_admin first") {
			if _, err := admin.Exec(ctx, "SET ROLE fog_admin"); err != nil {
				rt.Fatal(err)
			}
			asAdmin = true
		}
		for i := range rapid.IntRange(1, 6).Draw(rt, "statements") {
			st := genRoleStatement(rt, fmt.Sprint(i), asAdmin)
			if _, err := admin.Exec(ctx, "SAVEPOINT sp"); err != nil {
				rt.Fatal(err)
			}
			_, err := admin.Exec(ctx, st.sql)
			ran++
			var pe *pgconn.PgError
			switch {
			case err == nil:
				succeeded++
				if _, err := admin.Exec(ctx, "RELEASE SAVEPOINT sp"); err != nil {
					rt.Fatal(err)
				}
				if st.mustRefuse {
					rt.Fatalf("admin (fog_admin %v) could: %s", asAdmin, st.sql)
				}
				if now := state(rt); now != base {
					rt.Fatalf("admin (fog_admin %v): %s changed the protected roles:\nbefore:\n%s\nafter:\n%s", asAdmin, st.sql, base, now)
				}
				if st.setRole != nil {
					asAdmin = *st.setRole
				}
			case !errors.As(err, &pe):
				rt.Fatalf("admin: %s: %v", st.sql, err)
			case pe.Code == "42601" && strings.HasPrefix(pe.Message, "syntax error"):
				rt.Fatalf("the generator wrote a syntax error: %s: %v", st.sql, err)
			default:
				if pe.Code == "42501" {
					refused++
				}
				if st.mustRefuse && pe.Code != "42501" {
					rt.Fatalf("admin (fog_admin %v): %s: %v, want SQLSTATE 42501", asAdmin, st.sql, err)
				}
				if _, err := admin.Exec(ctx, "ROLLBACK TO SAVEPOINT sp"); err != nil {
					rt.Fatal(err)
				}
			}
		}
	})
	t.Logf("%d statements: %d succeeded, %d refused for privileges", ran, succeeded, refused)
	if after := protectedState(ctx, t, g.sys); after != before {
		t.Errorf("the protected roles changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// genStatement is a generated statement and what the guard must make of it.
type genStatement struct {
	sql        string
	mustRefuse bool  // it would change a protected role, or grant one other than fog_admin
	setRole    *bool // a SET ROLE: whether the current role becomes fog_admin
}

// genRole is a role as a generated statement names it.
type genRole struct {
	sql       string
	protected bool // reads as a Fog role, a host role or a superuser
	admin     bool // reads as fog_admin
}

var genRoleNames = append(append(append([]string{}, fogRoleNames...), hostRoleNames...),
	"app_user", "app_group", "pg_monitor", "pg_read_all_data", "ghost")

type genBuilder struct {
	rt    *rapid.T
	label string
	kcase int // keywords: 0 upper, 1 lower, 2 mixed
	parts []string
	st    genStatement
}

func (b *genBuilder) draw(name string) string { return b.label + " " + name }

// kw appends keywords in the statement's case.
func (b *genBuilder) kw(words string) {
	for _, w := range strings.Fields(words) {
		switch b.kcase {
		case 1:
			w = strings.ToLower(w)
		case 2:
			w = mixCase(w, rapid.Uint64().Draw(b.rt, b.draw("keyword case")))
		}
		b.parts = append(b.parts, w)
	}
}

func (b *genBuilder) raw(s string) { b.parts = append(b.parts, s) }

func (b *genBuilder) oneOf(choices ...string) string {
	return rapid.SampledFrom(choices).Draw(b.rt, b.draw("choice"))
}

// target appends a role the statement changes.
func (b *genBuilder) target(r genRole) {
	b.raw(r.sql)
	if r.protected {
		b.st.mustRefuse = true
	}
}

// granted appends a role the statement grants or revokes.
func (b *genBuilder) granted(r genRole) {
	b.raw(r.sql)
	if r.protected && !r.admin {
		b.st.mustRefuse = true
	}
}

// list appends one to three roles, comma-separated.
func (b *genBuilder) list(add func(genRole), draw func() genRole) {
	for i := range rapid.IntRange(1, 3).Draw(b.rt, b.draw("list")) {
		if i > 0 {
			b.raw(",")
		}
		add(draw())
	}
}

// name draws a role name in one of its spellings.
func (b *genBuilder) name() genRole {
	n := rapid.SampledFrom(genRoleNames).Draw(b.rt, b.draw("role"))
	sql, same := b.spell(n)
	p := same && (slices.Contains(fogRoleNames, n) || slices.Contains(hostRoleNames, n))
	return genRole{sql: sql, protected: p, admin: same && n == "fog_admin"}
}

// spec draws a role specification: a name, CURRENT_USER, CURRENT_ROLE, SESSION_USER or
// PUBLIC. After SET ROLE fog_admin the current user and role are fog_admin; the session
// user is always the admin login.
func (b *genBuilder) spec(asAdmin bool) genRole {
	switch rapid.IntRange(0, 9).Draw(b.rt, b.draw("spec")) {
	case 0, 1:
		w := b.oneOf("CURRENT_USER", "CURRENT_ROLE")
		b.kcaseOf(&w)
		return genRole{sql: w, protected: asAdmin, admin: asAdmin}
	case 2:
		return genRole{sql: "SESSION_USER"}
	case 3:
		return genRole{sql: b.oneOf("PUBLIC", "public", `"public"`)}
	}
	return b.name()
}

func (b *genBuilder) kcaseOf(w *string) {
	if b.kcase == 1 {
		*w = strings.ToLower(*w)
	}
}

// spell writes name as PostgreSQL reads it back (same) or as another name.
func (b *genBuilder) spell(name string) (sql string, same bool) {
	mask := rapid.Uint64().Draw(b.rt, b.draw("spelling mask"))
	switch rapid.IntRange(0, 5).Draw(b.rt, b.draw("spelling")) {
	case 1: // unquoted identifiers are folded to lower case (scan.l, downcase_identifier)
		return mixCase(name, mask), true
	case 2:
		return `"` + name + `"`, true
	case 3: // quoted, case is kept: another role (a missing one)
		return `"` + mixCase(name, mask|1) + `"`, false
	case 4, 5: // Unicode escapes, \XXXX or \+XXXXXX, or with another escape character
		esc := `\`
		if rapid.Bool().Draw(b.rt, b.draw("uescape")) {
			esc = "!"
		}
		var s strings.Builder
		s.WriteString(`U&"`)
		for i, r := range name {
			switch (mask >> (2 * (i % 32))) & 3 {
			case 1:
				fmt.Fprintf(&s, "%s%04X", esc, r)
			case 2:
				fmt.Fprintf(&s, "%s+%06x", esc, r)
			default:
				s.WriteRune(r)
			}
		}
		s.WriteString(`"`)
		if esc != `\` {
			s.WriteString(" UESCAPE '" + esc + "'")
		}
		return s.String(), true
	}
	return name, true
}

func mixCase(s string, mask uint64) string {
	out := []byte(s)
	for i := range out {
		if mask>>(i%64)&1 == 1 {
			out[i] = byte(strings.ToUpper(string(out[i]))[0])
		}
	}
	return string(out)
}

// newName draws the name of a role to create: a fresh one, or one of Fog's in any spelling.
func (b *genBuilder) newName() {
	if rapid.Bool().Draw(b.rt, b.draw("fresh")) {
		b.raw(b.oneOf("fz_new", `"Fz New"`))
		return
	}
	n := rapid.SampledFrom(fogRoleNames).Draw(b.rt, b.draw("fog name"))
	sql, same := b.spell(n)
	b.raw(sql)
	if same {
		b.st.mustRefuse = true
	}
}

var genSeparators = []string{" ", "  ", "\t", "\n", "\r\n", " /* c */ ", "/**/", "\n-- c\n"}

func genRoleStatement(rt *rapid.T, label string, asAdmin bool) genStatement {
	b := &genBuilder{rt: rt, label: label, kcase: rapid.IntRange(0, 2).Draw(rt, label+" keyword style")}
	spec := func() genRole { return b.spec(asAdmin) }
	switch rapid.IntRange(0, 13).Draw(rt, label+" form") {
	case 0: // ALTER ROLE attributes, and USER: members (user.c, AlterRole "rolemembers")
		b.kw("ALTER " + b.oneOf("ROLE", "USER"))
		b.target(spec())
		if rapid.Bool().Draw(rt, b.draw("with")) {
			b.kw("WITH")
		}
		for range rapid.IntRange(1, 3).Draw(rt, b.draw("attributes")) {
			switch a := b.oneOf("LOGIN", "NOLOGIN", "INHERIT", "NOINHERIT", "CREATEDB", "NOCREATEDB",
				"CREATEROLE", "NOCREATEROLE", "CONNECTION LIMIT", "PASSWORD", "ENCRYPTED PASSWORD",
				"PASSWORD NULL", "VALID UNTIL", "SUPERUSER", "REPLICATION", "BYPASSRLS", "USER"); a {
			case "CONNECTION LIMIT":
				b.kw(a)
				b.raw("2")
			case "PASSWORD", "ENCRYPTED PASSWORD":
				b.kw(a)
				b.raw("'Fuzz-Passw0rd-1'")
			case "VALID UNTIL":
				b.kw(a)
				b.raw("'infinity'")
			case "USER":
				b.kw(a)
				b.list(b.target, spec)
			default:
				b.kw(a)
			}
		}
	case 1: // ALTER ROLE ... SET / RESET
		b.kw("ALTER " + b.oneOf("ROLE", "USER"))
		all := rapid.IntRange(0, 4).Draw(rt, b.draw("all")) == 0
		db := b.oneOf("", "app", "postgres")
		if all {
			b.kw("ALL")
			// Global settings are a superuser's (user.c, AlterRoleSet); ALL IN DATABASE is
			// the database owner's, as ALTER DATABASE ... SET.
			if db == "" {
				b.st.mustRefuse = true
			}
		} else {
			b.target(spec())
		}
		if db != "" {
			b.kw("IN DATABASE")
			b.raw(db)
		}
		switch b.oneOf("set", "search_path", "role", "reset", "reset all") {
		case "set":
			b.kw("SET")
			b.raw("work_mem")
			b.raw(b.oneOf("=", "TO"))
			b.raw("'2MB'")
		case "search_path":
			b.kw("SET")
			b.raw("search_path")
			b.raw("=")
			b.raw("evil, public")
		case "role":
			b.kw("SET")
			b.raw("role")
			b.raw("=")
			b.raw("app_user")
		case "reset":
			b.kw("RESET")
			b.raw("work_mem")
		default:
			b.kw("RESET ALL")
		}
	case 2:
		b.kw("DROP " + b.oneOf("ROLE", "USER", "GROUP"))
		if rapid.Bool().Draw(rt, b.draw("if exists")) {
			b.kw("IF EXISTS")
		}
		b.list(b.target, spec)
	case 3:
		b.kw("GRANT")
		b.list(b.granted, b.name)
		b.kw("TO")
		b.list(b.target, spec)
		if rapid.Bool().Draw(rt, b.draw("admin option")) {
			b.kw("WITH ADMIN OPTION")
		}
		if rapid.IntRange(0, 3).Draw(rt, b.draw("granted by")) == 0 {
			b.kw("GRANTED BY")
			b.target(spec())
		}
	case 4:
		b.kw("REVOKE")
		if rapid.Bool().Draw(rt, b.draw("admin option")) {
			b.kw("ADMIN OPTION FOR")
		}
		b.list(b.granted, b.name)
		b.kw("FROM")
		b.list(b.target, spec)
		if rapid.IntRange(0, 3).Draw(rt, b.draw("granted by")) == 0 {
			// PostgreSQL 15 parses and ignores it (gram.y, RevokeRoleStmt).
			b.kw("GRANTED BY")
			b.raw(spec().sql)
		}
		b.kw(b.oneOf("", "CASCADE", "RESTRICT"))
	case 5:
		b.kw("CREATE " + b.oneOf("ROLE", "USER", "GROUP"))
		b.newName()
		if rapid.Bool().Draw(rt, b.draw("with")) {
			b.kw("WITH")
		}
		for range rapid.IntRange(0, 3).Draw(rt, b.draw("options")) {
			switch o := b.oneOf("LOGIN", "IN ROLE", "IN GROUP", "ROLE", "USER", "ADMIN"); o {
			case "LOGIN":
				b.kw(o)
			case "IN ROLE", "IN GROUP": // the new role becomes a member of these
				b.kw(o)
				b.list(b.granted, spec)
			default: // these become members of the new role
				b.kw(o)
				b.list(b.target, spec)
			}
		}
	case 6:
		b.kw("ALTER GROUP")
		b.target(spec())
		b.kw(b.oneOf("ADD", "DROP") + " USER")
		b.list(b.target, spec)
	case 7:
		b.kw("ALTER " + b.oneOf("ROLE", "USER", "GROUP"))
		b.target(b.name())
		b.kw("RENAME TO")
		b.newName()
	case 8:
		b.kw("COMMENT ON ROLE")
		b.target(b.name())
		b.kw("IS")
		b.raw(b.oneOf("'fuzz'", "NULL"))
	case 9:
		b.kw("REASSIGN OWNED BY")
		b.list(b.target, spec)
		b.kw("TO")
		b.target(spec())
	case 10:
		b.kw("DROP OWNED BY")
		b.list(b.target, spec)
		b.kw(b.oneOf("", "CASCADE"))
	case 11: // object privileges and owners
		switch b.oneOf("grant", "revoke", "owner", "defaults") {
		case "grant":
			b.kw("GRANT SELECT ON t TO")
			b.list(b.target, spec)
		case "revoke":
			b.kw("REVOKE ALL ON t FROM")
			b.list(b.target, spec)
		case "owner":
			b.kw("ALTER " + b.oneOf("TABLE t", "SCHEMA s", "SERVER loopback") + " OWNER TO")
			b.target(spec())
		default:
			b.kw("ALTER DEFAULT PRIVILEGES FOR ROLE")
			b.list(b.target, spec)
			b.kw("GRANT SELECT ON TABLES TO")
			b.list(b.target, spec)
		}
	default: // SET ROLE, RESET ROLE
		if rapid.Bool().Draw(rt, b.draw("reset")) {
			b.kw(b.oneOf("RESET ROLE", "SET ROLE NONE"))
			f := false
			b.st.setRole = &f
			break
		}
		b.kw("SET ROLE")
		r := b.name()
		if rapid.Bool().Draw(rt, b.draw("as string")) && !strings.ContainsAny(r.sql, `"&`) {
			r.sql = "'" + strings.ToLower(r.sql) + "'"
		}
		b.raw(r.sql)
		admin := r.admin
		b.st.setRole = &admin
	}
	var s strings.Builder
	for i, p := range b.parts {
		if p == "" {
			continue
		}
		if i > 0 {
			s.WriteString(rapid.SampledFrom(genSeparators).Draw(rt, b.draw("whitespace")))
		}
		s.WriteString(p)
	}
	b.st.sql = s.String()
	return b.st
}

// TestGuardRefusesControlCharactersInDatabaseNames: pgBackRest writes database names into
// its backup manifest unquoted, so a name with a line break would make every backup of the
// instance unrestorable while it reports success; the guard refuses such a name in CREATE
// DATABASE and in a rename, and accepts any other.
func TestGuardRefusesControlCharactersInDatabaseNames(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g := startGuardedInstance(ctx, t)
	admin := g.connectAdmin(ctx, t)
	for _, q := range []string{
		"CREATE DATABASE \"nl\nx={}\n[backup]\"",
		"CREATE DATABASE \"tab\there\"",
		"CREATE DATABASE \"del\x7f\"",
		"ALTER DATABASE app RENAME TO \"cr\rx\"",
	} {
		_, err := admin.Exec(ctx, q)
		if pe := (*pgconn.PgError)(nil); !errors.As(err, &pe) || pe.Code != "42602" {
			t.Errorf("%q: %v, want SQLSTATE 42602 (invalid name)", q, err)
		}
	}
	for _, q := range []string{
		`CREATE DATABASE "odd = name [with] 'quotes' ""and"" ünïcode"`,
		`ALTER DATABASE "odd = name [with] 'quotes' ""and"" ünïcode" RENAME TO "still=fine"`,
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}
