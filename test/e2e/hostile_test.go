package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/postgres"
)

// The instance admin of TestHostileTenant (miBody's login) and the application_name of the
// test's own superuser session, whose springing of the traps is expected.
const (
	hostileAdmin      = "fogadmin"
	hostileControlApp = "fog-hostile-control"
)

// hostileSpringSQL is what every planted trap calls: it records who ran it (in a table when
// the session can write, and always in the server log, which a standby also writes), and
// when a superuser runs it, makes the admin a superuser. Its own search_path keeps it from
// springing itself.
const hostileSpringSQL = `
CREATE TABLE IF NOT EXISTS public.sprung (who text, what text, app text, at timestamptz DEFAULT pg_catalog.clock_timestamp());
GRANT ALL ON public.sprung TO PUBLIC;
CREATE OR REPLACE FUNCTION public.fogtrap_spring(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $spring$
BEGIN
	BEGIN
		INSERT INTO public.sprung (who, what, app) VALUES (current_user::text, what, current_setting('application_name'));
	EXCEPTION WHEN OTHERS THEN NULL;
	END;
	RAISE WARNING 'FOGTRAP who=% app=% db=% what=%', current_user, current_setting('application_name'), current_database(), what;
	IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper) THEN
		BEGIN
			EXECUTE 'ALTER ROLE ` + hostileAdmin + ` SUPERUSER';
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'FOGTRAP escalation failed: %', SQLERRM;
		END;
	END IF;
END
$spring$;
CREATE OR REPLACE FUNCTION public.fogtrap_trigger() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $t$ BEGIN PERFORM public.fogtrap_spring('trigger ' || TG_NAME); RETURN NULL; END $t$;
CREATE OR REPLACE FUNCTION public.fogtrap_true(what text) RETURNS boolean LANGUAGE sql
SET search_path = pg_catalog, pg_temp AS $t$ SELECT public.fogtrap_spring(what); SELECT true $t$;
`

// hostileFunctions are the catalog functions Fog's privileged SQL calls (anywhere, qualified
// or not), and a few it might: every overload of each is shadowed in public with the
// catalog's own signature, so the shadow is the exact match an unqualified call resolves to.
var hostileFunctions = []string{
	"pg_stat_file", "now", "substr", "quote_ident", "pg_create_physical_replication_slot",
	"pg_drop_replication_slot", "pg_is_in_recovery", "pg_current_wal_lsn", "pg_current_wal_flush_lsn",
	"pg_current_wal_insert_lsn", "pg_walfile_name", "current_setting", "set_config", "pg_filenode_relation",
	"current_database", "pg_conf_load_time", "pg_reload_conf", "pg_promote", "txid_current",
	"pg_control_checkpoint", "pg_last_wal_receive_lsn", "pg_last_wal_replay_lsn", "pg_last_committed_xact",
	"pg_get_userbyid", "pg_sleep", "ceil", "pg_ls_dir", "pg_read_file", "pg_read_binary_file",
	"pg_backend_pid", "pg_terminate_backend", "clock_timestamp", "gen_random_uuid", "version",
	"pg_postmaster_start_time", "date_part", "extract", "has_foreign_data_wrapper_privilege",
}

// hostileShadowFunctionsSQL makes the shadows: a SQL function that springs and then returns
// what the catalog function returns (SELECT * FROM passes records and sets through).
func hostileShadowFunctionsSQL() string {
	names := make([]string, len(hostileFunctions))
	for i, n := range hostileFunctions {
		names[i] = "'" + n + "'"
	}
	return `DO $gen$
DECLARE
	p record;
	args text;
BEGIN
	FOR p IN
		SELECT f.oid, f.proname, f.pronargs FROM pg_catalog.pg_proc f
		WHERE f.pronamespace = 'pg_catalog'::regnamespace AND f.prokind = 'f' AND f.provariadic = 0
		  AND f.proname = ANY (ARRAY[` + strings.Join(names, ", ") + `]::name[])
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.unnest(f.proargtypes::oid[]) a
		                  JOIN pg_catalog.pg_type ty ON ty.oid = a WHERE ty.typtype = 'p')
		  AND (f.prorettype IN ('record'::regtype, 'void'::regtype)
		       OR (SELECT ty.typtype FROM pg_catalog.pg_type ty WHERE ty.oid = f.prorettype) <> 'p')
	LOOP
		SELECT coalesce(string_agg('$' || i, ', ' ORDER BY i), '') INTO args FROM generate_series(1, p.pronargs) i;
		EXECUTE format('CREATE OR REPLACE FUNCTION public.%I(%s) RETURNS %s LANGUAGE sql SET search_path = pg_catalog, pg_temp AS %L',
			p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
			format('SELECT public.fogtrap_spring(%L); SELECT * FROM pg_catalog.%I(%s)',
				p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.proname, args));
	END LOOP;
END
$gen$`
}

// hostileOperators are the operators Fog's SQL applies, for the operand types it passes
// (including those only an implicit cast or a polymorphic operator serves in pg_catalog, where
// a shadow with the exact types wins).
var hostileOperators = []struct{ op, l, r, ret string }{
	{"||", "text", "text", "text"}, {"||", "text", "oid", "text"}, {"||", "text", "integer", "text"},
	{"||", "text", "name", "text"}, {"||", "name", "text", "text"},
	{"=", "name", "name", "boolean"}, {"=", "name", "text", "boolean"}, {"=", "text", "name", "boolean"},
	{"=", "text", "text", "boolean"}, {"=", "oid", "oid", "boolean"}, {"=", "oid", "regclass", "boolean"},
	{"=", `"char"`, `"char"`, "boolean"}, {"=", "uuid", "uuid", "boolean"},
	{"<>", "name", "name", "boolean"}, {"<>", "name", "text", "boolean"}, {"<>", "text", "text", "boolean"},
	{"<>", "oid", "oid", "boolean"}, {"<>", `"char"`, `"char"`, "boolean"},
	{">=", "pg_lsn", "pg_lsn", "boolean"}, {">=", "timestamptz", "timestamptz", "boolean"},
	{"<", "interval", "interval", "boolean"}, {"+", "timestamptz", "interval", "timestamptz"},
	{"~~", "text", "text", "boolean"}, {"~~", "name", "text", "boolean"},
}

// hostileSetup is what the admin runs in every database it can shape: the spring, shadows of
// every function and operator above and of the max aggregates, and of the catalog relations
// Fog reads (public comes first once the database's search_path says so).
func hostileSetup() []string {
	q := []string{hostileSpringSQL, hostileShadowFunctionsSQL()}
	for i, o := range hostileOperators {
		fn := fmt.Sprintf("fogtrap_op%d", i)
		what := fmt.Sprintf("operator %s %s %s", o.l, o.op, o.r)
		q = append(q,
			fmt.Sprintf(`CREATE FUNCTION public.%s(%s, %s) RETURNS %s LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$ SELECT public.fogtrap_spring(%s); SELECT $1 OPERATOR(pg_catalog.%s) $2 $f$`,
				fn, o.l, o.r, o.ret, quoteLiteral(what), o.op),
			fmt.Sprintf("CREATE OPERATOR public.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = public.%s)", o.op, o.l, o.r, fn))
	}
	for _, a := range []struct{ typ, larger string }{
		{"text", "text_larger"}, {"timestamptz", "timestamptz_larger"}, {"integer", "int4larger"}, {"pg_lsn", "pg_lsn_larger"},
	} {
		fn := "fogtrap_max_" + strings.ReplaceAll(a.typ, " ", "_")
		q = append(q,
			fmt.Sprintf(`CREATE FUNCTION public.%s(%s) RETURNS %s LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $f$ SELECT public.fogtrap_spring('max(%s)'); SELECT $1 $f$`, fn, a.typ, a.typ, a.typ),
			fmt.Sprintf("CREATE AGGREGATE public.max(%s) (SFUNC = pg_catalog.%s, STYPE = %s, FINALFUNC = public.%s)", a.typ, a.larger, a.typ, fn))
	}
	for _, v := range []string{"pg_roles", "pg_database", "pg_replication_slots", "pg_stat_replication", "pg_stat_wal_receiver",
		"pg_stat_activity", "pg_settings", "pg_class", "pg_namespace", "pg_proc", "pg_type", "pg_trigger", "pg_rewrite", "pg_policy"} {
		// The scalar subquery is an InitPlan: one spring per scan, not one per row.
		q = append(q, fmt.Sprintf("CREATE VIEW public.%s AS SELECT * FROM pg_catalog.%s WHERE (SELECT public.fogtrap_true('view %s'))", v, v, v))
	}
	// Types Fog names without a keyword (fog.link's columns, the view's casts): a domain of
	// the same name whose check springs on every value stored or cast.
	for _, typ := range []string{"uuid", "text", "name"} {
		q = append(q, fmt.Sprintf("CREATE DOMAIN public.%s AS pg_catalog.%s CHECK (public.fogtrap_true('domain %s'))", typ, typ, typ))
	}
	return q
}

// hostileDatabaseSettings steer every session of a database that does not pin them: the
// tenant's public first, a superuser's session run as the admin, and writes refused.
func hostileDatabaseSettings(db string) []string {
	id := pgx.Identifier{db}.Sanitize()
	return []string{
		"ALTER DATABASE " + id + " SET search_path = public, pg_catalog",
		"ALTER DATABASE " + id + " SET role = " + hostileAdmin,
		"ALTER DATABASE " + id + " SET default_transaction_read_only = on",
	}
}

// hostileTrapLink is the row the tenant keeps in its own fog.link.
const hostileTrapLink = "6f1d3a52-5f55-4d0e-8b3b-9bd1c0a1e0ff"

// hostileTrapSchemaSQL makes a schema fog of the tenant's in a new database, as Fog's would
// look, with everything that fires when a superuser deletes from or reads fog.link: BEFORE
// DELETE triggers for each row and statement, a rule and a row-level policy. It runs as one
// implicit transaction, so Fog sees all of it or none.
const hostileTrapSchemaSQL = `
CREATE SCHEMA fog;
` + hostileSpringSQL + `
CREATE TABLE fog.link (link_guid uuid PRIMARY KEY, fog_name text NOT NULL, primary_server text NOT NULL,
	secondary_server text NOT NULL, secondary_allow_connections int NOT NULL);
CREATE FUNCTION fog.escalate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM public.fogtrap_spring('fog.link trigger ' || TG_NAME);
	RETURN OLD;
END $$;
CREATE TRIGGER fogtrap_row BEFORE DELETE ON fog.link FOR EACH ROW EXECUTE FUNCTION fog.escalate();
CREATE TRIGGER fogtrap_stmt BEFORE DELETE ON fog.link FOR EACH STATEMENT EXECUTE FUNCTION fog.escalate();
CREATE RULE fogtrap_rule AS ON DELETE TO fog.link DO ALSO SELECT public.fogtrap_true('fog.link rule');
ALTER TABLE fog.link ENABLE ROW LEVEL SECURITY;
CREATE POLICY fogtrap_policy ON fog.link USING (public.fogtrap_true('fog.link policy'));
CREATE VIEW fog.geo_replication_link_status AS SELECT link_guid FROM fog.link WHERE public.fogtrap_true('fog view');
CREATE FUNCTION fog.wait_for_copy_sync(timeout interval DEFAULT interval '30 seconds') RETURNS pg_lsn LANGUAGE sql
	AS $$ SELECT public.fogtrap_spring('fog.wait_for_copy_sync'); SELECT '0/0'::pg_lsn $$;
GRANT USAGE ON SCHEMA fog TO PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON fog.link TO PUBLIC;
INSERT INTO fog.link VALUES ('` + hostileTrapLink + `', 'tenant', 'a', 'b', 0);
`

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// hostileConnect connects to an instance as its admin over TLS with SCRAM, through the
// instance's address, with extra startup settings.
func hostileConnect(ctx context.Context, ca string, inst map[string]any, db string, params map[string]string) (*pgx.Conn, error) {
	p := props(inst)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%v user=%s dbname=%s sslmode=verify-full connect_timeout=10", p["host"], p["port"], hostileAdmin, db))
	if err != nil {
		return nil, err
	}
	cfg.Password = password
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(ca))
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: p["host"].(string)}
	cfg.Fallbacks = nil
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// hostileSafe are the settings the test's own admin sessions use to look at what happened:
// the catalog's objects, never the tenant's shadows, and writes allowed.
var hostileSafe = map[string]string{"search_path": "pg_catalog, pg_temp", "default_transaction_read_only": "off"}

// hostileInstance is where an instance lives on this machine.
type hostileInstance struct {
	name    string
	inst    map[string]any
	dir     string // the instance's directory (pgdata/ and postgres.log)
	sockDir string
	port    int
}

// findHostileInstance finds the instance's directory: the one whose postmaster.pid names its
// port and address.
func findHostileInstance(t *testing.T, f *fog, inst map[string]any) hostileInstance {
	t.Helper()
	p := props(inst)
	files, _ := filepath.Glob(filepath.Join(f.dataDir, "regions", inst["location"].(string), "*", "pgdata", "postmaster.pid"))
	for _, file := range files {
		b, _ := os.ReadFile(file)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 5 && lines[3] == fmt.Sprint(p["port"]) && strings.Contains(string(b), p["host"].(string)) {
			dir := filepath.Dir(filepath.Dir(file))
			return hostileInstance{
				name: inst["name"].(string), inst: inst, dir: dir,
				sockDir: postgres.SocketDirFor(filepath.Base(dir)), port: int(p["port"].(float64)),
			}
		}
	}
	t.Fatalf("no running instance directory found for %v among %v", inst["name"], files)
	return hostileInstance{}
}

// system connects as Fog's bootstrap superuser over the instance's socket, as the agent does
// (peer authentication maps the OS user Fog runs as, this process's, to it), with the given
// startup settings only: nothing of Fog's pinned ones unless they are given.
func (h hostileInstance) system(ctx context.Context, db string, params map[string]string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Database = h.sockDir, uint16(h.port), postgres.SystemUser, db
	cfg.TLSConfig, cfg.Fallbacks, cfg.ConnectTimeout = nil, nil, 10*time.Second
	cfg.RuntimeParams = map[string]string{"application_name": hostileControlApp}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// hostileCanary is a root-owned file outside every instance's directory, with known content.
type hostileCanary struct {
	path    string
	content []byte
}

func plantCanaries(t *testing.T, dirs ...string) []hostileCanary {
	t.Helper()
	var out []hostileCanary
	for i, d := range dirs {
		c := hostileCanary{path: filepath.Join(d, "hostile-canary"), content: fmt.Appendf(nil, "canary %d of TestHostileTenant\n", i)}
		if err := os.WriteFile(c.path, c.content, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(c.path, 0, 0); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(c.path, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func (c hostileCanary) check(t *testing.T) {
	t.Helper()
	fi, err := os.Lstat(c.path)
	if err != nil {
		t.Errorf("canary %s: %v", c.path, err)
		return
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("canary %s is now %v owned by %d:%d, want a regular file 0600 owned by 0:0", c.path, fi.Mode(), st.Uid, st.Gid)
	}
	if b, err := os.ReadFile(c.path); err != nil || !bytes.Equal(b, c.content) {
		t.Errorf("canary %s now holds %q (%v), want %q", c.path, b, err, c.content)
	}
}

// trapLine is what the spring writes to the server log.
var trapLine = regexp.MustCompile(`FOGTRAP who=(\S+) app=(.*?) db=(\S+) what=(.*)$`)

// TestHostileTenant plays an instance's admin who prepares everything it can reach before
// Fog's operations run (overloads of every operator and function Fog's privileged SQL uses,
// catalog views shadowed in public, domains named like the types Fog names, whose checks
// spring, ALTER DATABASE ... SET search_path, role and
// default_transaction_read_only, a schema fog of its own with triggers, a rule and a policy
// in a database made from template0 racing the agent) and tries to change Fog's roles by
// keyword forms; it shows that the traps fire for a superuser session without Fog's pinned
// settings, then runs Fog's operations (a database through the API, a failover group across
// two regions, a planned failover, a forced failover that loses a transaction of the
// tenant's database, delete) and checks that no trap fired for a role of Fog's, that nobody
// but Fog's system role is a superuser, that Fog's objects are Fog's and the tenant's schema
// fog untouched, and that no file outside the instances changed.
func TestHostileTenant(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the canaries are root's, and the control connects as Fog's system role over the socket")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	f := startFog(t, dataDir)
	pr := newPair(t, f, "hx")
	prim, sec := findHostileInstance(t, f, pr.prim), findHostileInstance(t, f, pr.sec)
	ca := f.info.CACert
	t.Logf("instances up after %s", time.Since(start).Round(time.Millisecond))

	canaries := plantCanaries(t, t.TempDir(), dataDir,
		filepath.Dir(prim.dir), filepath.Dir(sec.dir)) // next to the instances' directories

	admin := func(inst map[string]any, db string, params map[string]string) *pgx.Conn {
		t.Helper()
		var c *pgx.Conn
		var err error
		// Connecting is retried briefly: an instance may be restarting after a failover.
		deadline := time.Now().Add(15 * time.Second)
		for c, err = hostileConnect(ctx, ca, inst, db, params); err != nil && time.Now().Before(deadline); c, err = hostileConnect(ctx, ca, inst, db, params) {
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("connect to %v/%s as the admin: %v", inst["name"], db, err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	exec := func(c *pgx.Conn, qs ...string) {
		t.Helper()
		for _, q := range qs {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("admin in %s: %.200s: %v", c.Config().Database, q, err)
			}
		}
	}
	shape := func(inst map[string]any, db string) {
		t.Helper()
		c := admin(inst, db, hostileSafe)
		exec(c, hostileSetup()...)
		exec(c, hostileDatabaseSettings(db)...)
		c.Close(ctx)
	}

	superusers := func(inst map[string]any) []string {
		t.Helper()
		c := admin(inst, "postgres", hostileSafe)
		defer c.Close(ctx)
		rows, err := c.Query(ctx, "SELECT rolname::text FROM pg_catalog.pg_roles WHERE rolsuper ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		return names
	}

	// The tenant prepares, on the primary, before Fog's operations.
	pg := admin(pr.prim, "postgres", nil)
	f.mustSucceed(f.call("PUT", miPath("rg-p", "hx-p")+"/databases/apidb", map[string]any{}))
	shape(pr.prim, "apidb")
	exec(admin(pr.prim, "apidb", hostileSafe), "CREATE TABLE public.w (id int)")
	exec(pg, "CREATE DATABASE own")
	shape(pr.prim, "own")
	// bare: no schema fog, shaped in one transaction the moment it exists, so that Fog most
	// likely makes its own objects there only after (its types and functions resolved in the
	// tenant's search_path, were it not pinned).
	exec(pg, "CREATE DATABASE bare TEMPLATE template0")
	func() {
		c := admin(pr.prim, "bare", nil)
		defer c.Close(ctx)
		var fogFirst bool
		if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'fog')").Scan(&fogFirst); err != nil {
			t.Fatal(err)
		}
		exec(c, strings.Join(append(hostileSetup(), hostileDatabaseSettings("bare")...), ";\n"))
		if fogFirst {
			t.Log("the agent made its schema fog in bare before the tenant could shape it")
		}
	}()
	// The trap: schema fog made the moment the database exists, racing the agent, which
	// installs its own in every new database. If the agent wins (its schema fog is there
	// first), the tenant tries again under another name.
	trapDB := ""
	for i := 1; i <= 5 && trapDB == ""; i++ {
		name := fmt.Sprintf("trap%d", i)
		exec(pg, "CREATE DATABASE "+name+" TEMPLATE template0")
		c, err := hostileConnect(ctx, ca, pr.prim, name, nil)
		if err != nil {
			t.Fatalf("connect to the new %s: %v", name, err)
		}
		_, err = c.Exec(ctx, hostileTrapSchemaSQL)
		if err == nil {
			trapDB = name
			exec(c, hostileSetup()...)
			exec(c, hostileDatabaseSettings(name)...)
		} else {
			var owner string
			_ = c.QueryRow(ctx, "SELECT pg_catalog.pg_get_userbyid(nspowner)::text FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'fog'").Scan(&owner)
			if owner != postgres.SystemUser {
				t.Fatalf("the tenant's schema fog in %s: %v (schema fog owned by %q)", name, err, owner)
			}
			t.Logf("the agent made schema fog in %s before the tenant could (%v); trying another database", name, err)
		}
		c.Close(ctx)
	}
	if trapDB == "" {
		t.Fatal("the agent won every race for schema fog; the tenant's schema fog was never planted")
	}
	// The databases Fog must not be steered in, and the ones it manages (its schema fog).
	shaped := []string{"apidb", "own", "bare", trapDB}
	managed := []string{"postgres", "template1", "apidb", "own", "bare"}
	// The postgres database is the system role's. Whether the admin may create in its public
	// schema is a choice of design (Fog's own sessions pin search_path wherever they run);
	// where it may, it plants there too: shadows with the exact operand types win over
	// pg_catalog's polymorphic operators even with pg_catalog searched first.
	if _, err := pg.Exec(ctx, "CREATE FUNCTION public.fogtrap_probe() RETURNS int LANGUAGE sql AS 'SELECT 1'"); err == nil {
		exec(admin(pr.prim, "postgres", hostileSafe), hostileSetup()...)
		shaped = append(shaped, "postgres")
		t.Log("the admin may create in postgres.public: it is shaped like the admin's own databases")
	} else if sqlState(err) != "42501" {
		t.Errorf("as the admin in postgres: CREATE FUNCTION public.fogtrap_probe() = %v, want success or SQLSTATE 42501", err)
	}
	// A database only Fog's roles may enter, if the instance has one, is closed to the admin.
	if c, err := hostileConnect(ctx, ca, pr.prim, postgres.SystemUser, hostileSafe); err == nil {
		c.Close(ctx)
		t.Errorf("the admin connected to the database %s", postgres.SystemUser)
	}

	// Nothing may have sprung while the tenant prepared (the agent enters new databases at once).
	if got := superusers(pr.prim); len(got) != 1 || got[0] != postgres.SystemUser {
		t.Errorf("superusers while the tenant prepares = %v, want only %s", got, postgres.SystemUser)
	}
	// What the tenant cannot do at all: shape Fog's databases, touch Fog's objects in its own
	// databases, or change Fog's roles by any spelling. Each must fail for lack of privilege.
	for _, a := range []struct{ db, setRole, sql string }{
		{"postgres", "", "ALTER DATABASE postgres SET search_path = public, pg_catalog"},
		{"template1", "", "CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS 'SELECT pg_catalog.now()'"},
		{"template1", "", "ALTER DATABASE template1 SET search_path = public, pg_catalog"},
		{"own", "", "DROP SCHEMA fog CASCADE"},
		{"own", "", "ALTER SCHEMA fog RENAME TO fog_old"},
		{"own", "", "CREATE TRIGGER t BEFORE DELETE ON fog.link FOR EACH STATEMENT EXECUTE FUNCTION public.fogtrap_trigger()"},
		{"own", "", "CREATE OR REPLACE VIEW fog.geo_replication_link_status AS SELECT 1"},
		{"postgres", "fog_admin", "ALTER ROLE CURRENT_USER CONNECTION LIMIT 100"},
		{"postgres", "fog_admin", "ALTER ROLE CURRENT_USER SET work_mem = '8MB'"},
		{"postgres", "fog_admin", "ALTER ROLE CURRENT_ROLE NOCREATEDB"},
		{"postgres", "fog_admin", "ALTER USER CURRENT_USER VALID UNTIL 'infinity'"},
		{"postgres", "fog_admin", "REVOKE pg_monitor FROM CURRENT_USER"},
		{"postgres", "fog_admin", "REVOKE pg_read_all_data FROM CURRENT_ROLE"},
		{"postgres", "fog_admin", "GRANT pg_execute_server_program TO CURRENT_USER"},
		{"postgres", "fog_admin", "GRANT pg_read_server_files TO CURRENT_ROLE"},
		{"postgres", "", "GRANT pg_execute_server_program TO CURRENT_USER"},
		{"postgres", "", "GRANT pg_write_server_files TO SESSION_USER"},
		{"postgres", "", "GRANT fog_monitor TO CURRENT_USER"},
		{"postgres", "", "GRANT fog_replication TO CURRENT_USER"},
		{"postgres", "", "GRANT fog_admin TO fog_monitor"},
		{"postgres", "", "CREATE ROLE hostile_helper IN ROLE pg_execute_server_program"},
		{"postgres", "", "ALTER ROLE fog_system SET search_path = public, pg_catalog"},
		{"postgres", "", "ALTER ROLE fog_monitor IN DATABASE apidb SET search_path = public, pg_catalog"},
		{"postgres", "", `ALTER ROLE "fog_monitor" SET role = ` + hostileAdmin},
	} {
		c := admin(pr.prim, a.db, hostileSafe)
		if a.setRole != "" {
			exec(c, "SET ROLE "+a.setRole)
		}
		_, err := c.Exec(ctx, a.sql)
		if got := sqlState(err); got != "42501" {
			// Said with whether the admin is a superuser right now: a trap sprung by Fog
			// would make every attempt succeed.
			var super bool
			_ = c.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user").Scan(&super)
			t.Errorf("as the admin in %s (role %q): %s = %v (SQLSTATE %q), want SQLSTATE 42501 (the admin is a superuser: %v)", a.db, a.setRole, a.sql, err, got, super)
		}
		c.Close(ctx)
	}
	// Fog's agent must refuse a schema fog it does not own, and say so in its log.
	eventually(t, 30*time.Second, "the agent refuses the tenant's schema fog", func() bool {
		b, _ := os.ReadFile(filepath.Join(dataDir, "fog.log"))
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "refusing to install the link-status view") && strings.Contains(l, "database="+trapDB) {
				return true
			}
		}
		return false
	})
	t.Logf("tenant prepared after %s", time.Since(start).Round(time.Millisecond))

	// The control: the traps spring for a superuser session that lacks Fog's pinned
	// settings (the agent's own user, over the socket, as the agent connects).
	pinned := map[string]string{"search_path": "pg_catalog, pg_temp", "role": "none", "default_transaction_read_only": "off"}
	func() {
		// ALTER DATABASE ... SET role: a superuser's session that does not pin role runs as the admin.
		c, err := prim.system(ctx, "own", nil)
		if err != nil {
			t.Fatalf("connect as %s over %s: %v", postgres.SystemUser, prim.sockDir, err)
		}
		var user string
		if err := c.QueryRow(ctx, "SELECT current_user::text").Scan(&user); err != nil || user != hostileAdmin {
			t.Errorf("control: a superuser session in own without role pinned runs as %q (%v), want %s", user, err, hostileAdmin)
		}
		c.Close(ctx)
		// search_path: the agent's kind of query, with the database's search_path.
		c, err = prim.system(ctx, "own", map[string]string{"role": "none", "default_transaction_read_only": "off"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Exec(ctx, "SELECT 'base/' || oid FROM pg_database"); err != nil {
			t.Fatalf("control query: %v", err)
		}
		c.Close(ctx)
		if got := superusers(pr.prim); !slices.Contains(got, hostileAdmin) {
			t.Fatalf("the control did not spring the traps (superusers %v): the test proves nothing", got)
		}
		// The tenant's fog.link: its triggers and rule spring for a superuser's DELETE (its
		// policy springs for a role that does not bypass row security, so not here). Rolled
		// back, so the row stays.
		c, err = prim.system(ctx, trapDB, pinned)
		if err != nil {
			t.Fatal(err)
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "DELETE FROM fog.link"); err != nil {
			t.Fatalf("control DELETE in %s: %v", trapDB, err)
		}
		var fired []string
		rows, err := tx.Query(ctx, "SELECT what FROM public.sprung WHERE who OPERATOR(pg_catalog.=) $1::text ORDER BY what", postgres.SystemUser)
		if err == nil {
			fired, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil || len(fired) < 3 {
			t.Fatalf("control in %s: traps sprung by a superuser's DELETE: %v (%v), want the two triggers and the rule", trapDB, fired, err)
		}
		_ = tx.Rollback(ctx)
		c.Close(ctx)
		// Undo the control, with Fog's settings.
		c, err = prim.system(ctx, "postgres", pinned)
		if err != nil {
			t.Fatal(err)
		}
		exec(c, "ALTER ROLE "+hostileAdmin+" NOSUPERUSER")
		c.Close(ctx)
		c, err = prim.system(ctx, "own", pinned)
		if err != nil {
			t.Fatal(err)
		}
		exec(c, "TRUNCATE public.sprung")
		c.Close(ctx)
		if got := superusers(pr.prim); len(got) != 1 || got[0] != postgres.SystemUser {
			t.Fatalf("superusers after undoing the control = %v", got)
		}
	}()

	// Fog's operations.
	f.mustSucceed(f.call("PUT", miPath("rg-p", "hx-p")+"/databases/late", map[string]any{}))
	shape(pr.prim, "late")
	shaped = append(shaped, "late")
	managed = append(managed, "late")
	pr.create(t, nil)
	pr.waitState(t, "CATCH_UP", 60*time.Second)
	// The secondary has caught up: every database is there, and Fog's link view, written in
	// the tenant's shaped databases, answers on both sides.
	type dbOn struct {
		inst map[string]any
		db   string
	}
	var viewsToCheck []dbOn
	for _, inst := range []map[string]any{pr.prim, pr.sec} {
		for _, db := range []string{"apidb", "own", "bare", "late"} {
			viewsToCheck = append(viewsToCheck, dbOn{inst, db})
		}
	}
	// waitAll polls every database until ok holds in each, and reports those where it never
	// did: what Fog failed to do in a shaped database is a finding, and the checks of what
	// escaped still run after it.
	waitAll := func(what string, ok func(c *pgx.Conn, inst map[string]any) bool) {
		t.Helper()
		left := slices.Clone(viewsToCheck)
		for deadline := time.Now().Add(30 * time.Second); len(left) > 0; time.Sleep(100 * time.Millisecond) {
			left = slices.DeleteFunc(left, func(d dbOn) bool {
				c, err := hostileConnect(ctx, ca, d.inst, d.db, hostileSafe)
				if err != nil {
					return false
				}
				defer c.Close(ctx)
				return ok(c, d.inst)
			})
			if time.Now().After(deadline) {
				for _, d := range left {
					t.Errorf("%s in %s on %v: not within 30s", what, d.db, d.inst["name"])
				}
				return
			}
		}
	}
	waitAll("link view", func(c *pgx.Conn, inst map[string]any) bool {
		want := "PRIMARY"
		if inst["name"] == pr.sec["name"] {
			want = "SECONDARY"
		}
		var role string
		err := c.QueryRow(ctx, "SELECT role_desc FROM fog.geo_replication_link_status").Scan(&role)
		return err == nil && role == want
	})
	t.Logf("group replicating after %s", time.Since(start).Round(time.Millisecond))

	pr.failover(t, false) // the secondary (westus) becomes the primary
	pr.waitState(t, "CATCH_UP", 60*time.Second)
	t.Logf("planned failover done after %s", time.Since(start).Round(time.Millisecond))

	// Forced failover back to eastus, losing commits of the tenant's apidb: the new primary's
	// WAL sender is paused, so what it acknowledges now never leaves; then it is killed. The
	// old primary is rewound, and Fog names the lost transactions' relations from the tenant's
	// catalogs.
	sender := walSenderPID(t, ca, pr.sec)
	if err := syscall.Kill(sender, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	w := admin(pr.sec, "apidb", hostileSafe)
	for i := range 3 {
		exec(w, fmt.Sprintf("INSERT INTO public.w VALUES (%d)", i))
	}
	w.Close(ctx)
	if err := syscall.Kill(postmasterOf(t, f, pr.sec), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = syscall.Kill(sender, syscall.SIGKILL)
	pr.failover(t, true)
	pr.waitState(t, "CATCH_UP", 90*time.Second)
	t.Logf("forced failover done after %s", time.Since(start).Round(time.Millisecond))
	// The lost transactions are named once the rewound instance runs again (a hot standby
	// answers from the tenant's catalogs, in the tenant's shaped database).
	var lostState string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		lf, _ := props(pr.get(t, "rg-p", "eastus"))["lastForcedFailover"].(map[string]any)
		lw, _ := lf["lostWal"].(map[string]any)
		txs, _ := lw["transactions"].([]any)
		var named []string
		for _, x := range txs {
			rels, _ := x.(map[string]any)["relations"].([]any)
			for _, r := range rels {
				if s := fmt.Sprint(r); strings.HasPrefix(s, "apidb") {
					named = append(named, s)
				}
			}
		}
		slices.Sort(named)
		named = slices.Compact(named)
		lostState = fmt.Sprintf("lostWalKnown %v, %d transactions, relations in apidb %v", lf["lostWalKnown"], len(txs), named)
		if lf["lostWalKnown"] == true && len(txs) == 0 {
			t.Log("the forced failover lost no transaction; the naming of lost relations was not exercised")
			break
		}
		if lf["lostWalKnown"] == true && len(named) == 1 && named[0] == "apidb.public.w" {
			t.Logf("lost WAL: %s", lostState)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after the forced failover: %s; want the lost commits' relation named apidb.public.w", lostState)
			break
		}
	}

	d := f.call("DELETE", groupPath("rg-p", "eastus", pr.name), nil)
	f.mustSucceed(d)
	waitAll("link row gone", func(c *pgx.Conn, _ map[string]any) bool {
		var n int
		return c.QueryRow(ctx, "SELECT count(*) FROM fog.link").Scan(&n) == nil && n == 0
	})
	if r := f.call("GET", groupPath("rg-p", "eastus", pr.name), nil); r.Status != http.StatusNotFound {
		t.Errorf("GET group after delete = %d", r.Status)
	}
	t.Logf("group deleted after %s", time.Since(start).Round(time.Millisecond))

	// Nothing escaped.
	for _, h := range []hostileInstance{prim, sec} {
		if got := superusers(h.inst); len(got) != 1 || got[0] != postgres.SystemUser {
			t.Errorf("%s: superusers = %v, want only %s", h.name, got, postgres.SystemUser)
		}
		c := admin(h.inst, "postgres", hostileSafe)
		rows, err := c.Query(ctx, `SELECT r FROM pg_catalog.unnest(ARRAY['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files']) r
			WHERE pg_catalog.pg_has_role($1::pg_catalog.name, r::pg_catalog.name, 'MEMBER')`, hostileAdmin)
		if err != nil {
			t.Fatal(err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(held) > 0 {
			t.Errorf("%s: the admin is a member of %v (%v)", h.name, held, err)
		}
		c.Close(ctx)

		for _, db := range shaped {
			c := admin(h.inst, db, hostileSafe)
			rows, err := c.Query(ctx, `SELECT who || ' (' || app || '): ' || what || ' x' || count(*) FROM public.sprung
				WHERE who <> $1::text AND app IS DISTINCT FROM $2::text GROUP BY who, app, what ORDER BY 1`, hostileAdmin, hostileControlApp)
			if err != nil {
				t.Fatalf("%s/%s: %v", h.name, db, err)
			}
			sprung, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil || len(sprung) > 0 {
				t.Errorf("%s/%s: traps sprung by another role than the admin: %v (%v)", h.name, db, sprung, err)
			}
			c.Close(ctx)
		}
		// The log has what the table could not keep (a standby cannot write).
		b, err := os.ReadFile(filepath.Join(h.dir, "postgres.log"))
		if err != nil {
			t.Fatal(err)
		}
		var logged []string
		for _, l := range strings.Split(string(b), "\n") {
			if m := trapLine.FindStringSubmatch(l); m != nil && m[1] != hostileAdmin && m[2] != hostileControlApp {
				logged = append(logged, l)
			}
		}
		if len(logged) > 0 {
			t.Errorf("%s: %d traps sprung by another role than the admin in the server log, first: %s", h.name, len(logged), strings.Join(logged[:min(len(logged), 5)], "\n"))
		}

		// Fog's objects in the databases it manages are Fog's, and its view answers.
		for _, db := range managed {
			c := admin(h.inst, db, hostileSafe)
			var schema, link, view, fn string
			err := c.QueryRow(ctx, `SELECT
				(SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'fog'),
				(SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'fog.link'::regclass),
				(SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'fog.geo_replication_link_status'::regclass),
				(SELECT pg_get_userbyid(proowner)::text FROM pg_proc WHERE oid = 'fog.wait_for_copy_sync(interval)'::regprocedure)`).Scan(&schema, &link, &view, &fn)
			if err != nil {
				t.Errorf("%s/%s: Fog's objects: %v", h.name, db, err)
			} else if want := postgres.SystemUser; schema != want || link != want || view != want || fn != want {
				t.Errorf("%s/%s: schema fog, fog.link, the view and fog.wait_for_copy_sync owned by %s, %s, %s, %s; want %s", h.name, db, schema, link, view, fn, want)
			}
			var extra int
			err = c.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_trigger WHERE tgrelid = 'fog.link'::regclass AND NOT tgisinternal)
				+ (SELECT count(*) FROM pg_rewrite WHERE ev_class = 'fog.link'::regclass)
				+ (SELECT count(*) FROM pg_policy WHERE polrelid = 'fog.link'::regclass)`).Scan(&extra)
			if err != nil || extra != 0 {
				t.Errorf("%s/%s: %d triggers, rules or policies on Fog's fog.link (%v)", h.name, db, extra, err)
			}
			// Nothing of Fog's was bound to the tenant's objects when it was made: no
			// dependency of an object in schema fog (or of the view's rule) leads outside
			// pg_catalog and fog. Built-in objects are pinned and have no pg_depend rows, so
			// any row found is a user's object.
			rows, err := c.Query(ctx, `WITH fogobj AS (
					SELECT 'pg_class'::regclass AS classid, c.oid AS objid FROM pg_class c WHERE c.relnamespace = 'fog'::regnamespace
					UNION ALL SELECT 'pg_rewrite'::regclass, r.oid FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class WHERE c.relnamespace = 'fog'::regnamespace
					UNION ALL SELECT 'pg_proc'::regclass, p.oid FROM pg_proc p WHERE p.pronamespace = 'fog'::regnamespace
					UNION ALL SELECT 'pg_type'::regclass, t.oid FROM pg_type t WHERE t.typnamespace = 'fog'::regnamespace)
				SELECT pg_describe_object(d.classid, d.objid, d.objsubid) || ' -> ' || pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid)
				FROM pg_depend d JOIN fogobj o ON o.classid = d.classid AND o.objid = d.objid
				WHERE CASE d.refclassid
					WHEN 'pg_proc'::regclass THEN (SELECT pronamespace FROM pg_proc WHERE oid = d.refobjid)
					WHEN 'pg_operator'::regclass THEN (SELECT oprnamespace FROM pg_operator WHERE oid = d.refobjid)
					WHEN 'pg_type'::regclass THEN (SELECT typnamespace FROM pg_type WHERE oid = d.refobjid)
					WHEN 'pg_class'::regclass THEN (SELECT relnamespace FROM pg_class WHERE oid = d.refobjid)
					WHEN 'pg_namespace'::regclass THEN d.refobjid
					ELSE 'pg_catalog'::regnamespace END NOT IN ('pg_catalog'::regnamespace, 'fog'::regnamespace)
				ORDER BY 1`)
			var deps []string
			if err == nil {
				deps, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err != nil || len(deps) > 0 {
				t.Errorf("%s/%s: Fog's objects depend on objects outside pg_catalog and fog: %v (%v)", h.name, db, deps, err)
			}
			var config []string
			if err := c.QueryRow(ctx, "SELECT coalesce(proconfig, '{}') FROM pg_proc WHERE oid = 'fog.wait_for_copy_sync(interval)'::regprocedure").Scan(&config); err != nil ||
				!slices.Contains(config, "search_path=pg_catalog, pg_temp") {
				t.Errorf("%s/%s: fog.wait_for_copy_sync runs with settings %v (%v), want search_path pinned", h.name, db, config, err)
			}
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM fog.geo_replication_link_status").Scan(&n); err != nil || n != 0 {
				t.Errorf("%s/%s: the link view after delete: %d rows, %v; want it to answer with none", h.name, db, n, err)
			}
			c.Close(ctx)
		}

		// The tenant's schema fog is as the tenant left it: Fog refused it.
		c = admin(h.inst, trapDB, hostileSafe)
		var owner string
		var links []string
		err = c.QueryRow(ctx, "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'fog'").Scan(&owner)
		if err == nil {
			var rows pgx.Rows
			rows, err = c.Query(ctx, "SELECT link_guid::text FROM fog.link")
			if err == nil {
				links, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
		}
		if err != nil || owner != hostileAdmin || len(links) != 1 || links[0] != hostileTrapLink {
			t.Errorf("%s/%s: the tenant's schema fog is owned by %q with fog.link rows %v (%v); want the tenant's, untouched", h.name, trapDB, owner, links, err)
		}
		c.Close(ctx)
	}

	for _, c := range canaries {
		c.check(t)
	}
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}
