package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/proc"
	"github.com/fogdb/fog/internal/safedir"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sys/unix"
)

// ReplicationUser is the role standbys stream as, and pg_rewind reads its source as.
const ReplicationUser = "fog_replication"

// EnsureReplicationRole creates or updates the replication role. It has no password: the
// partner authenticates with its client certificate (see hbaConf), so there is no secret to
// store, send or leak. pg_rewind needs to read files of its source server; the grants are
// the ones its documentation lists for a non-superuser.
func EnsureReplicationRole(ctx context.Context, conn *pgx.Conn) error {
	return ensureRole(ctx, conn, ReplicationUser, "LOGIN REPLICATION NOSUPERUSER NOCREATEROLE NOCREATEDB PASSWORD NULL",
		"GRANT EXECUTE ON function pg_catalog.pg_ls_dir(text, boolean, boolean) TO "+ident(ReplicationUser),
		"GRANT EXECUTE ON function pg_catalog.pg_stat_file(text, boolean) TO "+ident(ReplicationUser),
		"GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text) TO "+ident(ReplicationUser),
		"GRANT EXECUTE ON function pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO "+ident(ReplicationUser),
		// CHECKPOINT on a newly promoted primary before pg_rewind reads it.
		"GRANT pg_checkpoint TO "+ident(ReplicationUser))
}

// ensureRole creates role with attrs, or gives an existing one attrs, then runs grants.
func ensureRole(ctx context.Context, conn *pgx.Conn, role, attrs string, grants ...string) error {
	exists, err := roleExists(ctx, conn, role)
	if err != nil {
		return err
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	for _, q := range append([]string{verb + " ROLE " + ident(role) + " WITH " + attrs}, grants...) {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("ensure role %s: %w", role, err)
		}
	}
	return nil
}

// MonitorUser is the role Fog reads a server's state as: what the agent asks every second
// (replication, slots, databases) and the catalogs of user databases (naming the relations
// of lost transactions). It is a member of pg_monitor and may stat files under the data
// directory (a database's PG_VERSION, for its creation time), nothing more: SQL a tenant
// steers into its session reaches no more than the tenant's own statistics views do.
const MonitorUser = "fog_monitor"

// SystemDB is the database of Fog's own sessions: the system role's and the monitoring
// role's. Like Amazon RDS's rdsadmin database, nobody else may connect to it, so nothing in
// it can be shaped by a tenant; it holds nothing and is hidden from the database list.
const SystemDB = "fog_system"

// EnsureSystemDB creates SystemDB where it is missing, lets only Fog's roles connect to it,
// and lets MonitorUser stat files there (a function's grants live in each database's own
// pg_proc). conn is the system role's; it runs on a primary (a standby has it by
// replication).
func (c *Cluster) EnsureSystemDB(ctx context.Context, conn *pgx.Conn) error {
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database
		WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name)`, SystemDB).Scan(&exists); err != nil {
		return err
	}
	if !exists {
		if err := CreateDatabase(ctx, conn, SystemDB, SystemUser); err != nil {
			return err
		}
	}
	for _, q := range []string{
		"REVOKE ALL ON DATABASE " + ident(SystemDB) + " FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " + ident(SystemDB) + " TO " + ident(MonitorUser),
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("ensure %s: %w", SystemDB, err)
		}
	}
	sys, err := c.Connect(ctx, SystemDB)
	if err != nil {
		return err
	}
	defer sys.Close(context.Background())
	for _, q := range []string{
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO " + ident(MonitorUser),
	} {
		if _, err := sys.Exec(ctx, q); err != nil {
			return fmt.Errorf("ensure %s: %w", SystemDB, err)
		}
	}
	return nil
}

// EnsureMonitorRole creates or updates MonitorUser. It logs in only over the socket, by
// peer authentication of Fog's OS user (hbaConf), so it has no password.
func EnsureMonitorRole(ctx context.Context, conn *pgx.Conn) error {
	return ensureRole(ctx, conn, MonitorUser, "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD NULL",
		"GRANT pg_monitor TO "+ident(MonitorUser),
		"GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO "+ident(MonitorUser))
}

// BackupUser is the role pgBackRest connects as: it starts and stops backups, switches WAL
// segments, creates restore points, runs the checkpoint a backup from a standby starts with,
// and reads the settings pgBackRest checks (data_directory, archive_command), nothing more.
// It logs in only over the socket, by peer authentication of the instance's OS user
// (identConf), in SystemDB, where no tenant connects; fog_guard keeps the admin from changing
// it or granting it.
const BackupUser = "fog_backup"

// EnsureBackupRole creates or updates BackupUser. conn is the system role's; SystemDB must
// exist (EnsureSystemDB). A function's grants live in each database's own pg_proc, so they
// are made in SystemDB, the database pgBackRest connects to.
func (c *Cluster) EnsureBackupRole(ctx context.Context, conn *pgx.Conn) error {
	var version int
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.current_setting('server_version_num')::pg_catalog.int4").Scan(&version); err != nil {
		return fmt.Errorf("ensure role %s: %w", BackupUser, err)
	}
	grants := []string{
		"GRANT pg_read_all_settings TO " + ident(BackupUser),
		"GRANT CONNECT ON DATABASE " + ident(SystemDB) + " TO " + ident(BackupUser),
	}
	// PostgreSQL 15 renamed the functions of a non-exclusive backup, and lets a role that
	// is not a superuser run CHECKPOINT (pg_checkpoint).
	start, stop := "pg_catalog.pg_backup_start(text, boolean)", "pg_catalog.pg_backup_stop(boolean)"
	if version >= 150000 {
		grants = append(grants, "GRANT pg_checkpoint TO "+ident(BackupUser))
	} else {
		start, stop = "pg_catalog.pg_start_backup(text, boolean, boolean)", "pg_catalog.pg_stop_backup(boolean, boolean)"
	}
	if err := ensureRole(ctx, conn, BackupUser, "LOGIN NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION NOBYPASSRLS PASSWORD NULL", grants...); err != nil {
		return err
	}
	sys, err := c.Connect(ctx, SystemDB)
	if err != nil {
		return err
	}
	defer sys.Close(context.Background())
	for _, fn := range []string{start, stop, "pg_catalog.pg_switch_wal()", "pg_catalog.pg_create_restore_point(text)"} {
		if _, err := sys.Exec(ctx, "GRANT EXECUTE ON FUNCTION "+fn+" TO "+ident(BackupUser)); err != nil {
			return fmt.Errorf("ensure role %s: %w", BackupUser, err)
		}
	}
	return nil
}

// EnsureSlot creates a physical replication slot if it does not exist. immediately reserve
// WAL, so that WAL a standby has not received yet is kept from the moment the slot exists.
func EnsureSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_create_physical_replication_slot($1::pg_catalog.name, true)
		WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1::pg_catalog.name)`, name)
	if err != nil {
		return fmt.Errorf("create slot %s: %w", name, err)
	}
	return nil
}

// DropSlot drops a slot if it exists and is not in use.
func DropSlot(ctx context.Context, conn *pgx.Conn, name string) error {
	_, err := conn.Exec(ctx, `SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots
		WHERE slot_name OPERATOR(pg_catalog.=) $1::pg_catalog.name AND NOT active`, name)
	return err
}

// ReplicationState reads the replication view of the server.
func ReplicationState(ctx context.Context, conn *pgx.Conn) (pgtypes.Replication, error) {
	var r pgtypes.Replication
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(),
		CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint())
			ELSE ('x'::text OPERATOR(pg_catalog.||) pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::pg_catalog.bit(32)::pg_catalog.int4 END,
		CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text ELSE pg_current_wal_lsn()::text END,
		coalesce(pg_last_wal_replay_lsn()::text, '')`).Scan(&r.InRecovery, &r.Timeline, &r.CurrentLSN, &r.ReplayLSN)
	if err != nil {
		return r, fmt.Errorf("replication state: %w", err)
	}
	if r.InRecovery {
		var status *string
		var last *time.Time
		var tli *int
		err := conn.QueryRow(ctx, `SELECT max(status), max(last_msg_receipt_time), max(received_tli) FROM pg_stat_wal_receiver`).Scan(&status, &last, &tli)
		if err != nil {
			return r, fmt.Errorf("wal receiver: %w", err)
		}
		if status != nil {
			r.ReceiverStatus = *status
		}
		r.LastMessage = last
		if tli != nil && *tli > r.Timeline {
			r.Timeline = *tli
		}
		return r, nil
	}
	rows, err := conn.Query(ctx, `SELECT application_name, state,
		coalesce(sent_lsn::text, ''), coalesce(write_lsn::text, ''), coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, ''),
		coalesce(extract(epoch FROM flush_lag), 0)::float8, reply_time
		FROM pg_stat_replication ORDER BY application_name`)
	if err != nil {
		return r, fmt.Errorf("pg_stat_replication: %w", err)
	}
	r.Replicas, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (pgtypes.Replica, error) {
		var x pgtypes.Replica
		err := row.Scan(&x.AppName, &x.State, &x.SentLSN, &x.WriteLSN, &x.FlushLSN, &x.ReplayLSN, &x.FlushLag, &x.ReplyTime)
		return x, err
	})
	if err != nil {
		return r, err
	}
	rows, err = conn.Query(ctx, `SELECT slot_name, active, coalesce(wal_status, ''), coalesce(restart_lsn::text, '')
		FROM pg_catalog.pg_replication_slots WHERE slot_type OPERATOR(pg_catalog.=) 'physical'::text ORDER BY slot_name`)
	if err != nil {
		return r, fmt.Errorf("pg_replication_slots: %w", err)
	}
	r.Slots, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (pgtypes.Slot, error) {
		var s pgtypes.Slot
		err := row.Scan(&s.Name, &s.Active, &s.WALStatus, &s.RestartLSN)
		return s, err
	})
	return r, err
}

// Checkpoint runs CHECKPOINT.
func Checkpoint(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, "CHECKPOINT")
	return err
}

// Drain makes sure no client can write any more and returns the flushed end of WAL: every
// commit a client was told of lies before it. pg_hba.conf is rewritten to refuse clients
// (Fog's own socket and replication stay) and reloaded; once this session sees the reload,
// the postmaster has applied it too (it forwards SIGHUP to its children only after reloading),
// so no process forked from then on can authenticate as a client. Every child of the
// postmaster that serves a client, or is still authenticating one (pg_stat_activity does not
// show those), is then ended with SIGTERM, as pg_terminate_backend does, and waited for.
// Finally a commit with an xid flushes all WAL before it, asynchronous commits included.
func (c *Cluster) Drain(ctx context.Context, conn *pgx.Conn, clusterName string) (pgtypes.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.WriteHBA(true); err != nil {
		return 0, err
	}
	var before, after time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_conf_load_time()").Scan(&before); err != nil {
		return 0, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_reload_conf()"); err != nil {
		return 0, err
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for after = before; !after.After(before); {
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("the server did not reload pg_hba.conf: %w", ctx.Err())
		case <-tick.C:
		}
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_conf_load_time()").Scan(&after); err != nil {
			return 0, err
		}
	}
	pm, ok := c.PID()
	if !ok {
		return 0, errors.New("the server is not running")
	}
	clients, err := clientProcesses(pm, clusterName)
	if err != nil {
		return 0, err
	}
	child := func(pid int) bool { return c.isChildOf(pid, pm) }
	for _, pid := range clients {
		_ = proc.Signal(pid, unix.SIGTERM, child)
	}
	for len(clients) > 0 {
		clients = slices.DeleteFunc(clients, func(pid int) bool { return !child(pid) })
		if len(clients) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("client sessions did not end: %w", ctx.Err())
		case <-tick.C:
		}
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	if _, err := tx.Exec(ctx, "SET LOCAL synchronous_commit = local"); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.txid_current()"); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_current_wal_flush_lsn()::pg_catalog.text").Scan(&lsn); err != nil {
		return 0, err
	}
	return pgtypes.ParseLSN(lsn)
}

// auxiliary are the process titles of the postmaster's children that serve no client
// (PostgreSQL's postmaster.c and the titles they set with init_ps_display).
var auxiliary = []string{"checkpointer", "background writer", "walwriter", "autovacuum launcher", "autovacuum worker",
	"logical replication launcher", "archiver", "stats collector", "walsender", "startup", "walreceiver",
	"logical replication worker", "logical replication apply worker", "parallel worker", "io worker", "walsummarizer"}

// clientProcesses lists the children of postmaster pm that serve a client, or are starting
// to, other than Fog's own role. It reads process titles (update_process_title is on by
// default on Linux): "postgres: [cluster: ]user database host(port) state".
func clientProcesses(pm int, clusterName string) ([]int, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(b), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 2 || fields[1] != strconv.Itoa(pm) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		if err != nil {
			continue
		}
		title := strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))
		title = strings.TrimPrefix(title, "postgres: ")
		title = strings.TrimPrefix(title, clusterName+": ")
		if strings.HasPrefix(title, SystemUser+" ") || slices.ContainsFunc(auxiliary, func(a string) bool { return strings.HasPrefix(title, a) }) {
			continue
		}
		out = append(out, pid)
	}
	return out, nil
}

// Promote ends recovery and waits until the server accepts writes. It checks first, so a
// repeated promote is harmless; pg_promote(false) returns at once and Fog polls every few
// milliseconds instead of pg_ctl's 100.
func Promote(ctx context.Context, conn *pgx.Conn) error {
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return err
	}
	if !inRecovery {
		return nil
	}
	if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_promote(false)"); err != nil {
		return fmt.Errorf("pg_promote: %w", err)
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery); err != nil {
			return err
		}
		if !inRecovery {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promotion did not finish: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// StopNow shuts the server down with SIGINT (fast) or SIGQUIT (immediate) and polls for the
// postmaster's exit every few milliseconds, where pg_ctl -w would poll every 100 ms.
//
// The pid comes from postmaster.pid only if that process is this instance's server; if the
// file names another process while this instance's postmaster runs (its user rewrote it),
// the postmaster is found through /proc, so that fencing does not depend on the file.
func (c *Cluster) StopNow(ctx context.Context, immediate bool) error {
	pid, ok := c.PID()
	if !ok {
		if _, named := c.lockPID(); named {
			pid, ok = c.findPostmaster()
		}
	}
	if !ok {
		c.removeSocketDir()
		return nil
	}
	sig := unix.SIGINT
	if immediate {
		sig = unix.SIGQUIT
	}
	if err := proc.Signal(pid, sig, c.isServer); err != nil {
		return fmt.Errorf("signal postmaster: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		if !c.isServer(pid) {
			c.removeSocketDir()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("postmaster %d did not exit: %w", pid, ctx.Err())
		case <-tick.C:
		}
	}
}

// Bounds of the programs Fog runs: none may hold an agent's worker forever.
const (
	controlDataTimeout = 30 * time.Second
	// Crash recovery and pg_rewind are size-of-WAL, not size-of-data; an hour is far beyond
	// any that completes.
	recoveryTimeout = time.Hour
	// BasebackupStall ends a pg_basebackup whose progress has not moved for this long (a dead
	// upstream or a network that drops packets without resetting the connection).
	BasebackupStall = 2 * time.Minute
)

// ControlData returns pg_controldata's fields.
func (c *Cluster) ControlData(ctx context.Context) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, controlDataTimeout)
	defer cancel()
	out, err := c.R.Run(ctx, "pg_controldata", "-D", c.DataDir())
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// LatestCheckpoint returns the location of the last checkpoint and the cluster state.
func (c *Cluster) LatestCheckpoint(ctx context.Context) (lsn, state string, err error) {
	m, err := c.ControlData(ctx)
	if err != nil {
		return "", "", err
	}
	return m["Latest checkpoint location"], m["Database cluster state"], nil
}

var progressRe = regexp.MustCompile(`(\d+)/(\d+) kB \((\d+)%\)`)

// BaseBackup replaces the data directory with a copy of the upstream taken with pg_basebackup,
// streaming WAL, through slot (created if missing), over TLS. progress is called with the
// percentage done.
func (c *Cluster) BaseBackup(ctx context.Context, u *Upstream, progress func(float64)) error {
	// The data is about to be replaced: no shutdown checkpoint is worth waiting for.
	if err := c.StopNow(ctx, true); err != nil {
		return err
	}
	if err := c.WriteUpstreamFiles(u); err != nil {
		return err
	}
	// PostgreSQL refuses to back up into a non-empty directory. The old data is moved aside
	// and deleted while the copy runs, not before it: deleting a large directory takes a
	// while. Leftovers of a seed interrupted earlier go the same way.
	// The instance's directory is root's (prepareDir), so these paths lead nowhere else, and
	// RemoveAll never follows a link.
	if d, err := c.prepareDir(); err != nil {
		return err
	} else {
		d.Close()
	}
	old, _ := filepath.Glob(c.DataDir() + ".discard-*")
	if _, err := os.Lstat(c.DataDir()); err == nil {
		aside := fmt.Sprintf("%s.discard-%d", c.DataDir(), time.Now().UnixNano())
		if err := os.Rename(c.DataDir(), aside); err != nil {
			return err
		}
		old = append(old, aside)
	}
	go func() {
		for _, d := range old {
			_ = os.RemoveAll(d)
		}
	}()
	if err := c.makeDataDir(); err != nil {
		return err
	}
	args := []string{"-D", c.DataDir(), "-d", c.ConnInfo(u, ""), "-X", "stream", "--checkpoint=fast", "--progress", "--verbose", "-S", u.Slot}
	exists, err := prepareSlot(ctx, c, u)
	if err != nil {
		return err
	}
	if !exists {
		args = append(args, "-C")
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cmd := c.R.Command(ctx, "pg_basebackup", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pg_basebackup: %w", err)
	}
	// A stall watchdog: every line pg_basebackup prints (its progress every second) moves it.
	stall := time.AfterFunc(BasebackupStall, func() {
		cancel(fmt.Errorf("pg_basebackup made no progress for %s", BasebackupStall))
	})
	defer stall.Stop()
	var tailBuf []string
	rd := bufio.NewReader(stderr)
	for {
		// --progress ends its updates with \r, other messages with \n.
		line, err := rd.ReadString('\r')
		stall.Reset(BasebackupStall)
		for _, l := range strings.Split(line, "\n") {
			if m := progressRe.FindStringSubmatch(l); m != nil && progress != nil {
				done, _ := strconv.ParseFloat(m[1], 64)
				total, _ := strconv.ParseFloat(m[2], 64)
				if total > 0 {
					progress(100 * done / total)
				}
			} else if t := strings.TrimSpace(l); t != "" {
				tailBuf = append(tailBuf, t)
				if len(tailBuf) > 5 {
					tailBuf = tailBuf[1:]
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			err = cause
		}
		return fmt.Errorf("pg_basebackup: %w: %s", err, strings.Join(tailBuf, " | "))
	}
	return nil
}

// prepareSlot asks the upstream whether the slot is there, so pg_basebackup -C is passed only
// when it must create it (it fails if the slot exists). A slot the upstream invalidated
// (max_slot_wal_keep_size) keeps nothing and cannot be used: it is dropped, to be created anew.
func prepareSlot(ctx context.Context, c *Cluster, u *Upstream) (bool, error) {
	cfg, err := pgx.ParseConfig(c.ConnInfo(u, "postgres"))
	if err != nil {
		return false, err
	}
	// The replication role reads server files for pg_rewind: its session, too, is pinned
	// against what a tenant can shape in the upstream's postgres database.
	for k, v := range pinnedSettings {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("connect to upstream: %w", err)
	}
	defer conn.Close(context.Background())
	var status *string
	err = conn.QueryRow(ctx, "SELECT wal_status FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1::pg_catalog.name", u.Slot).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if status != nil && *status == "lost" {
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.pg_drop_replication_slot($1::pg_catalog.name)", u.Slot); err != nil {
			return false, fmt.Errorf("drop invalidated slot %s: %w", u.Slot, err)
		}
		return false, nil
	}
	return true, nil
}

// CrashRecover brings a data directory that was not shut down cleanly to a consistent,
// cleanly shut down state by running the server in single-user mode, which replays WAL to
// its end and writes a shutdown checkpoint. It listens on nothing, so no client can write.
func (c *Cluster) CrashRecover(ctx context.Context) error {
	if err := c.removeStaleLocks(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	cmd := c.R.Command(ctx, "postgres", "--single", "-D", c.DataDir(), "-c", "listen_addresses=", "-c", "archive_mode=off", "postgres")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("crash recovery: %w: %s", err, lastLines(string(out), 5))
	}
	return nil
}

// Rewind makes the data directory a copy of source's timeline history with pg_rewind. The
// server must be shut down cleanly (see CrashRecover).
func (c *Cluster) Rewind(ctx context.Context, u *Upstream) (string, error) {
	if err := c.WriteUpstreamFiles(u); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, recoveryTimeout)
	defer cancel()
	out, err := c.R.Run(ctx, "pg_rewind", "-D", c.DataDir(), "--source-server", c.ConnInfo(u, "postgres"), "--progress")
	if err != nil {
		return string(out), fmt.Errorf("pg_rewind: %w", err)
	}
	return string(out), nil
}

// CopyWAL copies the WAL segments of the data directory to dir, a directory of the
// instance's directory, root's, to keep what a forced failover discards. pg_wal is the
// instance's user's: only regular files are copied, opened without following a link.
func (c *Cluster) CopyWAL(dir string) error {
	if filepath.Dir(dir) != filepath.Clean(c.Dir) {
		return fmt.Errorf("copy WAL: %s is not a directory of the instance's directory %s", dir, c.Dir)
	}
	d, err := c.prepareDir()
	if err != nil {
		return err
	}
	defer d.Close()
	name := filepath.Base(dir)
	if err := d.Mkdir(name, 0o700, safedir.Owner{UID: os.Geteuid(), GID: os.Getegid()}); err != nil {
		return err
	}
	dst, err := d.OpenDir(name)
	if err != nil {
		return err
	}
	defer dst.Close()
	wal, err := d.OpenDir("pgdata/pg_wal")
	if err != nil {
		return err
	}
	defer wal.Close()
	names, err := wal.Names()
	if err != nil {
		return err
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "0") || !wal.IsRegular(n) {
			continue
		}
		if err := wal.CopyFile(n, dst, n, 0o600); err != nil {
			return err
		}
	}
	return nil
}
