package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// LinkRow describes a failover group's replication link, for the link-status view.
type LinkRow struct {
	ID, Name, PrimaryServer, SecondaryServer string
	// AllowConnections is 2 (All) for a readable geo secondary, 0 (No) for a standby.
	AllowConnections int
}

// linkViewSQL creates fog.geo_replication_link_status, PostgreSQL's counterpart of
// sys.dm_geo_replication_link_status: one row per link, the same columns and codes
// (replication_state 1 SEEDING, 2 CATCH_UP, 4 SUSPENDED; role 0 PRIMARY, 1 SECONDARY), read
// from pg_stat_replication on the primary and pg_stat_wal_receiver on the secondary. The link
// table replicates with the database, so the secondary shows the same link.
const linkViewSQL = `
CREATE SCHEMA IF NOT EXISTS fog;
CREATE TABLE IF NOT EXISTS fog.link (
	link_guid uuid PRIMARY KEY,
	fog_name text NOT NULL,
	primary_server text NOT NULL,
	secondary_server text NOT NULL,
	secondary_allow_connections int NOT NULL
);
CREATE OR REPLACE VIEW fog.geo_replication_link_status AS
WITH rep AS (
	SELECT reply_time, flush_lag, state FROM pg_stat_replication
	WHERE application_name LIKE 'fog\_%' ORDER BY reply_time DESC NULLS LAST LIMIT 1
), rcv AS (
	SELECT status, last_msg_receipt_time FROM pg_stat_wal_receiver LIMIT 1
), st AS (
	SELECT CASE
		WHEN pg_is_in_recovery() THEN CASE WHEN (SELECT status FROM rcv) = 'streaming' THEN 2 ELSE 4 END
		ELSE CASE (SELECT state FROM rep) WHEN 'streaming' THEN 2 WHEN 'catchup' THEN 2
			WHEN 'backup' THEN 1 WHEN 'startup' THEN 1 ELSE 4 END
	END AS s
)
SELECT l.link_guid,
	CASE WHEN pg_is_in_recovery() THEN l.primary_server ELSE l.secondary_server END::name AS partner_server,
	current_database()::name AS partner_database,
	CASE WHEN pg_is_in_recovery() THEN NULL ELSE (SELECT reply_time FROM rep) END AS last_replication,
	CASE WHEN pg_is_in_recovery() THEN NULL
		ELSE coalesce(ceil(extract(epoch FROM (SELECT flush_lag FROM rep))), 0)::int END AS replication_lag_sec,
	st.s::smallint AS replication_state,
	CASE st.s WHEN 1 THEN 'SEEDING' WHEN 2 THEN 'CATCH_UP' ELSE 'SUSPENDED' END AS replication_state_desc,
	CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END::smallint AS role,
	CASE WHEN pg_is_in_recovery() THEN 'SECONDARY' ELSE 'PRIMARY' END AS role_desc,
	l.secondary_allow_connections::smallint AS secondary_allow_connections,
	CASE l.secondary_allow_connections WHEN 0 THEN 'No' ELSE 'All' END AS secondary_allow_connections_desc,
	(pg_last_committed_xact()).timestamp AS last_commit
FROM fog.link l, st;
GRANT USAGE ON SCHEMA fog TO PUBLIC;
GRANT SELECT ON fog.geo_replication_link_status TO PUBLIC;
GRANT SELECT ON fog.link TO PUBLIC;
` + copySyncSQL

// ErrForeignObject means a name Fog keeps its own objects under in a database (the schema
// fog and what is in it) belongs to someone else, or carries something Fog did not put there:
// Fog acts on it as a superuser, so it refuses to touch it at all.
var ErrForeignObject = errors.New("postgres: an object Fog keeps belongs to another role")

// foreignFogObjects lists what in the schema fog is not Fog's: the schema itself, relations,
// functions and types owned by another role, and triggers, rules and row-level policies on
// its relations that the view's definition does not account for. A tenant who made the
// schema fog before Fog reached a new database (or who owns a database Fog enters) could
// otherwise have Fog's superuser fire its trigger, rule or policy. It runs with the pinned
// search_path of every Fog session and qualifies every operator.
const foreignFogObjects = `
WITH me AS (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) pg_catalog.session_user()),
ns AS (SELECT oid, nspowner FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) 'fog'::pg_catalog.name)
SELECT 'schema fog owned by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(ns.nspowner)::text
	FROM ns WHERE ns.nspowner OPERATOR(pg_catalog.<>) (SELECT oid FROM me)
UNION ALL
SELECT 'relation fog.' OPERATOR(pg_catalog.||) c.relname::text OPERATOR(pg_catalog.||) ' owned by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(c.relowner)::text
	FROM pg_catalog.pg_class c, ns WHERE c.relnamespace OPERATOR(pg_catalog.=) ns.oid AND c.relowner OPERATOR(pg_catalog.<>) (SELECT oid FROM me)
UNION ALL
SELECT 'function fog.' OPERATOR(pg_catalog.||) p.proname::text OPERATOR(pg_catalog.||) ' owned by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(p.proowner)::text
	FROM pg_catalog.pg_proc p, ns WHERE p.pronamespace OPERATOR(pg_catalog.=) ns.oid AND p.proowner OPERATOR(pg_catalog.<>) (SELECT oid FROM me)
UNION ALL
SELECT 'type fog.' OPERATOR(pg_catalog.||) t.typname::text OPERATOR(pg_catalog.||) ' owned by ' OPERATOR(pg_catalog.||) pg_catalog.pg_get_userbyid(t.typowner)::text
	FROM pg_catalog.pg_type t, ns WHERE t.typnamespace OPERATOR(pg_catalog.=) ns.oid AND t.typowner OPERATOR(pg_catalog.<>) (SELECT oid FROM me)
UNION ALL
SELECT 'trigger ' OPERATOR(pg_catalog.||) g.tgname::text OPERATOR(pg_catalog.||) ' on fog.' OPERATOR(pg_catalog.||) c.relname::text
	FROM pg_catalog.pg_trigger g JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) g.tgrelid, ns
	WHERE c.relnamespace OPERATOR(pg_catalog.=) ns.oid AND NOT g.tgisinternal
UNION ALL
SELECT 'rule ' OPERATOR(pg_catalog.||) r.rulename::text OPERATOR(pg_catalog.||) ' on fog.' OPERATOR(pg_catalog.||) c.relname::text
	FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) r.ev_class, ns
	WHERE c.relnamespace OPERATOR(pg_catalog.=) ns.oid AND r.rulename OPERATOR(pg_catalog.<>) '_RETURN'::pg_catalog.name
UNION ALL
SELECT 'policy ' OPERATOR(pg_catalog.||) p.polname::text OPERATOR(pg_catalog.||) ' on fog.' OPERATOR(pg_catalog.||) c.relname::text
	FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.polrelid, ns
	WHERE c.relnamespace OPERATOR(pg_catalog.=) ns.oid
UNION ALL
SELECT 'fog.link is not a plain table' FROM pg_catalog.pg_class c, ns
	WHERE c.relnamespace OPERATOR(pg_catalog.=) ns.oid AND c.relname OPERATOR(pg_catalog.=) 'link'::pg_catalog.name
	AND (c.relkind OPERATOR(pg_catalog.<>) 'r'::"char" OR c.relrowsecurity)`

// checkFogObjects returns ErrForeignObject, naming what it found, when the schema fog of the
// connected database holds anything that is not Fog's.
func checkFogObjects(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) error {
	rows, err := q.Query(ctx, foreignFogObjects)
	if err != nil {
		return fmt.Errorf("check the schema fog: %w", err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("check the schema fog: %w", err)
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s; Fog installs its link-status view and fog.wait_for_copy_sync only in a schema fog of its own (rename or drop this one)",
			ErrForeignObject, strings.Join(found, ", "))
	}
	return nil
}

// EnsureLinkView installs the view in the connected database and sets its link row; a nil
// link empties it (the group was deleted, so the row disappears, as in SQL Server). It runs
// as Fog's superuser in databases the tenant owns, so it creates its objects only where they
// are absent or already Fog's, and checks again, with fog.link locked, before it writes the
// row: between the two checks nobody but a superuser can change the owner of what Fog owns.
func EnsureLinkView(ctx context.Context, conn *pgx.Conn, link *LinkRow) error {
	if err := checkFogObjects(ctx, conn); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, linkViewSQL); err != nil {
		return fmt.Errorf("create link view: %w", err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE fog.link IN EXCLUSIVE MODE"); err != nil {
		return err
	}
	if err := checkFogObjects(ctx, tx); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "DELETE FROM fog.link"); err != nil {
		return err
	}
	if link != nil {
		_, err := tx.Exec(ctx, `INSERT INTO fog.link VALUES ($1::pg_catalog.uuid, $2::pg_catalog.text, $3::pg_catalog.text, $4::pg_catalog.text, $5::pg_catalog.int4)`,
			link.ID, link.Name, link.PrimaryServer, link.SecondaryServer, link.AllowConnections)
		if err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}
