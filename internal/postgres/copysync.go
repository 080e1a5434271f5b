package postgres

// copySyncSQL creates fog.wait_for_copy_sync(timeout), Fog's counterpart of Azure SQL's
// sp_wait_for_database_copy_sync: called on the primary right after a commit, it returns
// once the secondary has flushed (not necessarily replayed) all WAL written up to the call,
// which includes everything the session committed. It reads the position the secondary
// confirms to the primary's replication slot (a physical slot's restart_lsn is the standby's
// flush position): at once, 30 more times straight away, then every millisecond. It needs no privilege beyond connecting: everything it
// reads is readable by all, so it is not SECURITY DEFINER.
const copySyncSQL = `
CREATE OR REPLACE FUNCTION fog.wait_for_copy_sync(timeout interval DEFAULT interval '30 seconds')
RETURNS pg_lsn LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
	target pg_lsn;
	flushed pg_lsn;
	connected bool;
	deadline timestamptz;
	spins int := 0;
BEGIN
	IF pg_is_in_recovery() THEN
		RAISE EXCEPTION 'fog.wait_for_copy_sync() runs on the primary of a failover group; this server is its secondary'
			USING ERRCODE = '25006', HINT = 'Call it through the read-write listener, right after your commit.';
	END IF;
	IF NOT EXISTS (SELECT 1 FROM fog.link) THEN
		RAISE EXCEPTION 'fog.wait_for_copy_sync(): this instance is not in a failover group, so there is no secondary to wait for'
			USING ERRCODE = '55000';
	END IF;
	IF timeout IS NULL OR timeout < interval '0' THEN
		RAISE EXCEPTION 'fog.wait_for_copy_sync(): the timeout must be an interval of zero or more, such as interval ''5 seconds'''
			USING ERRCODE = '22023';
	END IF;
	deadline := clock_timestamp() + timeout;
	target := pg_current_wal_lsn();
	LOOP
		SELECT s.restart_lsn, s.active INTO flushed, connected FROM pg_replication_slots s
			WHERE s.slot_type = 'physical' AND s.slot_name LIKE 'fog\_%'
			ORDER BY s.restart_lsn DESC NULLS LAST LIMIT 1;
		IF flushed IS NOT NULL AND flushed >= target THEN
			RETURN flushed;
		END IF;
		IF clock_timestamp() >= deadline THEN
			RAISE EXCEPTION 'fog.wait_for_copy_sync() timed out after %: the secondary has flushed WAL up to %, not yet up to % (%)',
				timeout, coalesce(flushed::text, 'nothing'), target,
				CASE WHEN connected THEN 'it is connected but behind' ELSE 'it is not connected' END
				USING ERRCODE = '57014', HINT = 'The commit is durable on the primary; it is not yet on the secondary.';
		END IF;
		-- The secondary usually confirms within half a millisecond, and pg_sleep cannot sleep
		-- less than one: look again at once 30 times (longer spinning takes the CPU the WAL
		-- sender and receiver need, on a small machine), then sleep between looks.
		spins := spins + 1;
		IF spins > 30 THEN
			PERFORM pg_sleep(0.001);
		END IF;
	END LOOP;
END
$fn$;
GRANT EXECUTE ON FUNCTION fog.wait_for_copy_sync(interval) TO PUBLIC;
`
