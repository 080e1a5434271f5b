package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/pgtypes"
)

// trapBody is the body of every function a hostile admin plants: when a superuser (or any
// role but the admin) calls it, it makes the admin a superuser and records who called it;
// either way it returns what the catalog function it stands in for would, so nothing looks
// amiss.
const trapBody = `
BEGIN
	IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
		EXECUTE 'ALTER ROLE hostile SUPERUSER';
	END IF;
	INSERT INTO public.sprung VALUES (current_user, '{NAME}');
	RETURN {RESULT};
EXCEPTION WHEN OTHERS THEN
	RETURN {RESULT};
END`

// hostileSetup is what the admin runs in a database it can shape: a table that records which
// trap fired, and overloads of every operator and function Fog's privileged SQL uses, for the
// argument types Fog passes, in public (first in the default search_path).
func hostileSetup() []string {
	q := []string{
		"CREATE TABLE IF NOT EXISTS public.sprung (who text, what text)",
		"GRANT ALL ON public.sprung TO PUBLIC",
	}
	fn := func(name, args, ret, result string) {
		body := strings.NewReplacer("{NAME}", name, "{RESULT}", result).Replace(trapBody)
		q = append(q, fmt.Sprintf("CREATE OR REPLACE FUNCTION public.%s(%s) RETURNS %s LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $trap$%s$trap$",
			name, args, ret, body))
	}
	// Operators: text concatenation with every type Fog concatenates, and comparisons of
	// names with the types a parameter may be resolved to.
	for _, o := range []struct{ fn, l, r, ret, res, op string }{
		{"cat_text_oid", "text", "oid", "text", "a::text || b::text", "||"},
		{"cat_text_text", "text", "text", "text", "a::text || b::text", "||"},
		{"cat_text_int", "text", "integer", "text", "a::text || b::text", "||"},
		{"eq_name_text", "name", "text", "boolean", "a::text = b::text", "="},
		{"eq_name_name", "name", "name", "boolean", "a::text = b::text", "="},
		{"eq_oid_oid", "oid", "oid", "boolean", "a::bigint = b::bigint", "="},
		{"ne_name_name", "name", "name", "boolean", "a::text <> b::text", "<>"},
		{"ne_name_text", "name", "text", "boolean", "a::text <> b::text", "<>"},
		{"ne_text_text", "text", "text", "boolean", "a::text <> b::text", "<>"},
		{"ge_lsn", "pg_lsn", "pg_lsn", "boolean", "a::text >= b::text", ">="},
	} {
		fn(o.fn, "a "+o.l+", b "+o.r, o.ret, strings.NewReplacer("a::", "$1::", "b::", "$2::").Replace(o.res))
		q = append(q, fmt.Sprintf("CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.%s)", o.op, o.l, o.r, o.fn))
	}
	// Functions Fog calls, with the argument types it passes.
	fn("pg_stat_file", "text, boolean", "record", "pg_catalog.pg_stat_file($1, $2)")
	fn("now", "", "timestamptz", "pg_catalog.now()")
	fn("substr", "text, integer, integer", "text", "pg_catalog.substr($1, $2, $3)")
	fn("quote_ident", "text", "text", "pg_catalog.quote_ident($1)")
	fn("pg_create_physical_replication_slot", "text, boolean", "record", "pg_catalog.pg_create_physical_replication_slot($1, $2)")
	fn("pg_drop_replication_slot", "text", "text", "pg_catalog.pg_drop_replication_slot($1)::text")
	fn("pg_is_in_recovery", "", "boolean", "pg_catalog.pg_is_in_recovery()")
	fn("pg_current_wal_lsn", "", "pg_lsn", "pg_catalog.pg_current_wal_lsn()")
	fn("pg_walfile_name", "pg_lsn", "text", "pg_catalog.pg_walfile_name($1)")
	fn("current_setting", "text", "text", "pg_catalog.current_setting($1)")
	fn("pg_filenode_relation", "oid, oid", "regclass", "pg_catalog.pg_filenode_relation($1, $2)")
	fn("current_database", "", "name", "pg_catalog.current_database()")
	fn("pg_conf_load_time", "", "timestamptz", "pg_catalog.pg_conf_load_time()")
	// Tables and views Fog reads, shadowed in public.
	for _, v := range []string{"pg_roles", "pg_database", "pg_replication_slots", "pg_stat_replication", "pg_stat_wal_receiver", "pg_class", "pg_namespace"} {
		q = append(q, fmt.Sprintf("CREATE OR REPLACE VIEW public.%s AS SELECT * FROM pg_catalog.%s", v, v))
	}
	return q
}

// TestHostileAdminSQL plays an instance admin who shapes every database it can reach for
// Fog's privileged SQL: overloads of every operator and function it uses, a schema fog with a
// trigger in a new database, ALTER DATABASE ... SET search_path and role. It first shows that
// the traps work (a superuser session without Fog's pinned settings springs them), then runs
// what the agent runs and checks that no trap fired as a privileged role and that nothing of
// the tenant's was acted on.
func TestHostileAdminSQL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, ca, sys := startGuardedCluster(ctx, t)
	const pw = "Hostile-Passw0rd!"
	for _, step := range []func() error{
		func() error { return EnsureAdmin(ctx, sys, "hostile", pgtypes.SCRAMVerifier(pw), true) },
		func() error { return EnsureReplicationRole(ctx, sys) },
		func() error { return EnsureMonitorRole(ctx, sys) },
		func() error { return CreateDatabase(ctx, sys, "app", "hostile") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	admin := func(db string) *pgx.Conn {
		t.Helper()
		cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=hostile password=%s dbname=%s sslmode=verify-full", c.Host, c.Port, pw, db))
		cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: c.Host}
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		return conn
	}
	exec := func(conn *pgx.Conn, qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := conn.Exec(ctx, q); err != nil {
				t.Fatalf("admin: %s: %v", q, err)
			}
		}
	}
	// Fog's own database: the admin cannot connect to it.
	if err := c.EnsureSystemDB(ctx, sys); err != nil {
		t.Fatal(err)
	}
	{
		cfg, _ := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=hostile password=%s dbname=%s sslmode=verify-full", c.Host, c.Port, pw, SystemDB))
		cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: c.Host}
		if conn, err := pgx.ConnectConfig(ctx, cfg); err == nil {
			conn.Close(ctx)
			t.Errorf("the admin connected to %s", SystemDB)
		}
	}
	// The postgres database: traps in public, as in its own databases; it cannot set the
	// database's search_path (it does not own it).
	pg := admin("postgres")
	exec(pg, hostileSetup()...)
	if _, err := pg.Exec(ctx, "ALTER DATABASE postgres SET search_path = public"); err == nil {
		t.Error("the admin set the postgres database's search_path")
	}
	// Its own database, shaped for Fog's sessions.
	app := admin("app")
	exec(app, hostileSetup()...)
	exec(app, "ALTER DATABASE app SET search_path = public, pg_catalog", "CREATE TABLE data (id int)")
	// A database with a schema fog of the tenant's, a trigger on its fog.link that fires on
	// the DELETE Fog's view upkeep runs, a rule, and a policy.
	exec(app, "CREATE DATABASE trap")
	trap := admin("trap")
	exec(trap, hostileSetup()...)
	exec(trap,
		"CREATE SCHEMA fog",
		"CREATE TABLE fog.link (link_guid uuid PRIMARY KEY, fog_name text NOT NULL, primary_server text NOT NULL, secondary_server text NOT NULL, secondary_allow_connections int NOT NULL)",
		`CREATE FUNCTION fog.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) THEN
				EXECUTE 'ALTER ROLE hostile SUPERUSER';
			END IF;
			INSERT INTO public.sprung VALUES (current_user, 'fog.link trigger');
			RETURN OLD;
		END $$`,
		"CREATE TRIGGER t BEFORE DELETE ON fog.link FOR EACH ROW EXECUTE FUNCTION fog.escalate()",
		"CREATE TRIGGER s BEFORE DELETE ON fog.link FOR EACH STATEMENT EXECUTE FUNCTION fog.escalate()",
		"INSERT INTO fog.link VALUES (gen_random_uuid(), 'x', 'a', 'b', 0)",
	)
	// The role setting a database's owner may attach: a superuser's session would run as the
	// admin there, and what Fog creates would be the admin's.
	if _, err := app.Exec(ctx, "ALTER DATABASE app SET role = hostile"); err != nil {
		t.Logf("ALTER DATABASE app SET role: %v", err)
	}
	superusers := func() []string {
		t.Helper()
		rows, err := sys.Query(ctx, "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolsuper ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}

	// The control: a superuser session with the database's own settings springs the traps.
	ctl, err := pgx.ConnectConfig(ctx, func() *pgx.ConnConfig {
		cfg, _ := pgx.ParseConfig("")
		cfg.Host, cfg.Port, cfg.User, cfg.Database = c.SocketDir, uint16(c.Port), SystemUser, "app"
		cfg.RuntimeParams = map[string]string{"role": "none"}
		return cfg
	}())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Exec(ctx, "SELECT 'base/' || oid || '/PG_VERSION' FROM pg_database"); err != nil {
		t.Fatal(err)
	}
	ctl.Close(ctx)
	if got := superusers(); !strings.Contains(strings.Join(got, ","), "hostile") {
		t.Fatalf("the control did not spring the trap (superusers %v): the test proves nothing", got)
	}
	if _, err := sys.Exec(ctx, "ALTER ROLE hostile NOSUPERUSER"); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{"postgres", "app", "trap"} {
		conn, err := c.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "TRUNCATE public.sprung"); err != nil {
			t.Fatal(err)
		}
		conn.Close(ctx)
	}

	// What the agent runs, in every database it enters.
	for _, db := range []string{SystemDB, "postgres", "app", "trap", "template1"} {
		for _, connect := range []func(context.Context, string) (*pgx.Conn, error){c.Connect, c.ConnectMonitor} {
			conn, err := connect(ctx, db)
			if err != nil {
				t.Fatalf("connect to %s: %v", db, err)
			}
			var user, path string
			if err := conn.QueryRow(ctx, "SELECT current_user::text, current_setting('search_path')").Scan(&user, &path); err != nil {
				t.Fatal(err)
			}
			if user == "hostile" || path != "pg_catalog, pg_temp" {
				t.Errorf("Fog's session in %s runs as %s with search_path %q", db, user, path)
			}
			// The monitoring role may stat files in the postgres database, where the agent
			// lists databases (a function's grants live in each database's pg_proc).
			if _, err := ListDatabases(ctx, conn); err != nil && (db == SystemDB || conn.Config().User == SystemUser) {
				t.Errorf("ListDatabases in %s: %v", db, err)
			}
			if _, err := ReplicationState(ctx, conn); err != nil {
				t.Errorf("ReplicationState in %s: %v", db, err)
			}
			conn.Close(ctx)
		}
		conn, err := c.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if err := EnsureSlot(ctx, conn, "fog_hostile"); err != nil {
			t.Errorf("EnsureSlot in %s: %v", db, err)
		}
		if err := DropSlot(ctx, conn, "fog_hostile"); err != nil {
			t.Errorf("DropSlot in %s: %v", db, err)
		}
		err = EnsureLinkView(ctx, conn, &LinkRow{ID: "6f1d3a52-5f55-4d0e-8b3b-9bd1c0a1e001", Name: "fg", PrimaryServer: "a", SecondaryServer: "b"})
		switch {
		case db == "trap" && !errors.Is(err, ErrForeignObject):
			t.Errorf("EnsureLinkView in a database with the tenant's schema fog = %v, want ErrForeignObject", err)
		case db == SystemDB:
		case db != "trap" && err != nil:
			t.Errorf("EnsureLinkView in %s: %v", db, err)
		}
		if err := EnsureAdmin(ctx, conn, "hostile", pgtypes.SCRAMVerifier(pw), true); err != nil && db == SystemDB {
			t.Errorf("EnsureAdmin: %v", err)
		}
		conn.Close(ctx)
	}
	c.ResolveRelations(ctx, []string{"0/1/1"})

	if got := superusers(); len(got) != 1 || got[0] != SystemUser {
		t.Errorf("superusers after Fog's SQL = %v, want only %s", got, SystemUser)
	}
	for _, db := range []string{"postgres", "app", "trap"} {
		conn, err := c.Connect(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		var sprung []string
		rows, err := conn.Query(ctx, "SELECT who || ': ' || what FROM public.sprung")
		if err == nil {
			sprung, _ = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if len(sprung) > 0 {
			t.Errorf("traps fired in %s: %v", db, sprung)
		}
		var owner string
		err = conn.QueryRow(ctx, "SELECT pg_catalog.pg_get_userbyid(nspowner)::text FROM pg_catalog.pg_namespace WHERE nspname = 'fog'").Scan(&owner)
		want := SystemUser
		if db == "trap" {
			want = "hostile"
		}
		if err != nil || owner != want {
			t.Errorf("schema fog in %s owned by %q (%v), want %s", db, owner, err, want)
		}
		var links int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM fog.link").Scan(&links); err != nil || links != 1 {
			t.Errorf("fog.link in %s has %d rows (%v), want 1 (Fog's in app, the tenant's untouched in trap)", db, links, err)
		}
		conn.Close(ctx)
	}
	// The monitoring role can read what the agent reads every second, and nothing it
	// should not.
	mon, err := c.ConnectMonitor(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close(ctx)
	if _, err := mon.Exec(ctx, "SELECT pg_catalog.pg_read_file('postgresql.conf')"); err == nil {
		t.Error("the monitoring role read a file of the data directory")
	}
	if _, err := mon.Exec(ctx, "CREATE TABLE monitor_wrote (id int)"); err == nil {
		t.Error("the monitoring role created a table")
	}
}
