package postgres

import (
	"context"
	"fmt"

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

// EnsureLinkView installs the view in the connected database and sets its link row; a nil
// link empties it (the group was deleted, so the row disappears, as in SQL Server).
func EnsureLinkView(ctx context.Context, conn *pgx.Conn, link *LinkRow) error {
	if _, err := conn.Exec(ctx, linkViewSQL); err != nil {
		return fmt.Errorf("create link view: %w", err)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM fog.link"); err != nil {
		return err
	}
	if link == nil {
		return nil
	}
	_, err := conn.Exec(ctx, `INSERT INTO fog.link VALUES ($1, $2, $3, $4, $5)`,
		link.ID, link.Name, link.PrimaryServer, link.SecondaryServer, link.AllowConnections)
	return err
}
