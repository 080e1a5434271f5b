package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/safedir"
)

// A database restored to a point in time (docs/backups.md) goes through a scratch cluster:
// pgBackRest restores the instance's backup into it, limited to the one database, and
// PostgreSQL recovers it to the time and pauses there as a read-only standby. pg_dump reads
// the database from it and pg_restore loads the dump into a new database of the instance.

// ScratchPort names the scratch cluster's socket (.s.PGSQL.<port>); it listens on no TCP
// port, and its socket directory is its own.
const ScratchPort = 5432

// scratchSettings replace the instance's settings in a scratch cluster's fog.conf: no TCP,
// no TLS (only Fog connects, over the socket), little memory, and never any archiving (a
// scratch copy must not push WAL into the stanza it came from). max_connections,
// max_worker_processes, max_wal_senders, max_prepared_transactions and
// max_locks_per_transaction stay as the instance had them: a hot standby with lower values
// than the server that wrote the WAL pauses recovery before the target (PostgreSQL's
// "insufficient parameter settings"), which would look like having reached it.
var scratchSettings = map[string]string{
	"listen_addresses":     "''",
	"ssl":                  "off",
	"archive_mode":         "off",
	"archive_command":      "''",
	"shared_buffers":       "'32MB'",
	"work_mem":             "'4MB'",
	"maintenance_work_mem": "'16MB'",
	"wal_buffers":          "'1MB'",
	// Nothing streams from it.
	"max_slot_wal_keep_size": "'64MB'",
	"log_min_messages":       "'warning'",
}

// scratchHBA admits Fog's own OS user as the system role over the socket, nothing else.
const scratchHBA = "# Written by Fog: a scratch copy for a restore.\nlocal   all   " + SystemUser + "   peer map=fog\n"

// PrepareScratch makes the scratch cluster's directory (root's, 0711, as an instance's) and
// its data directory (the cluster's OS user's, 0700) if missing, and reports whether the
// data directory holds anything (a restore redone over a partial one needs --delta). A
// partial one that holds neither PG_VERSION nor backup.manifest is emptied first:
// pgBackRest turns --delta off without them ("unable to find 'PG_VERSION' or
// 'backup.manifest' ... to confirm that this is a valid $PGDATA directory", restore.c) and
// then refuses a directory with files in it, so a restore killed before it wrote either
// would fail every time it is redone.
func (c *Cluster) PrepareScratch() (nonEmpty bool, err error) {
	if err := c.makeDataDir(); err != nil {
		return false, err
	}
	check := func() error {
		return c.inDir(func(d *safedir.Dir) error {
			pg, err := d.OpenDir("pgdata")
			if err != nil {
				return err
			}
			defer pg.Close()
			names, err := pg.Names()
			nonEmpty = len(names) > 0 && (slices.Contains(names, "PG_VERSION") || slices.Contains(names, "backup.manifest"))
			if err == nil && len(names) > 0 && !nonEmpty {
				err = errPartialScratch
			}
			return err
		})
	}
	if err = check(); errors.Is(err, errPartialScratch) {
		// The scratch's directory is root's: RemoveAll removes a link in it, never its target.
		if err = os.RemoveAll(c.DataDir()); err == nil {
			if err = c.makeDataDir(); err == nil {
				err = check()
			}
		}
	}
	return nonEmpty, err
}

var errPartialScratch = errors.New("a partial scratch data directory pgBackRest cannot restore over")

// WriteMarker and HasMarker keep, in the cluster's directory (root's), which steps of a
// restore are complete, so that a restore redone after a crash skips them.
func (c *Cluster) WriteMarker(name string) error { return c.WriteRootFile(name, nil) }

// RemoveMarker undoes WriteMarker(name).
func (c *Cluster) RemoveMarker(name string) error {
	return c.inDir(func(d *safedir.Dir) error {
		if err := d.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// HasMarker reports whether WriteMarker(name) was done.
func (c *Cluster) HasMarker(name string) bool {
	ok := false
	_ = c.inDir(func(d *safedir.Dir) error { ok = d.IsRegular(name); return nil })
	return ok
}

// ScratchLocale is how a database was created: what a copy of it is created with.
type ScratchLocale struct {
	Encoding, Collate, Ctype string
	// Provider is "c" (libc) or "i" (ICU, with ICULocale).
	Provider, ICULocale string
}

// DatabaseLocale reads how database name was created.
func DatabaseLocale(ctx context.Context, conn *pgx.Conn, name string) (ScratchLocale, error) {
	var l ScratchLocale
	err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_encoding_to_char(encoding)::pg_catalog.text, datcollate::pg_catalog.text,
		datctype::pg_catalog.text, datlocprovider::pg_catalog.text, coalesce(daticulocale, ''::pg_catalog.text)
		FROM pg_catalog.pg_database WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name`, name).
		Scan(&l.Encoding, &l.Collate, &l.Ctype, &l.Provider, &l.ICULocale)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("database %s is not in the restored copy", name)
	}
	return l, err
}

// FogSchemaIsFogs reports whether the connected database has a schema fog that belongs to
// the system role: Fog's own link-status objects, which a dump leaves out (the instance
// installs its own in the new database), unlike a tenant's schema of that name.
func FogSchemaIsFogs(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace
		WHERE nspname OPERATOR(pg_catalog.=) 'fog'::pg_catalog.name
		AND nspowner OPERATOR(pg_catalog.=) (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::pg_catalog.name))`,
		SystemUser).Scan(&ok)
	return ok, err
}

// RecoveryPaused reports whether the connected server is in recovery and paused there: a
// scratch cluster that reached its target (recovery_target_action = pause).
func RecoveryPaused(ctx context.Context, conn *pgx.Conn) (inRecovery, paused bool, err error) {
	var state string
	err = conn.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery(),
		CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_get_wal_replay_pause_state() ELSE ''::pg_catalog.text END`).
		Scan(&inRecovery, &state)
	return inRecovery, state == "paused", err
}

// conninfoValue quotes a libpq connection-string value.
func conninfoValue(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// clientCommand runs a PostgreSQL client program (pg_dump, pg_restore) as Fog's own OS user,
// in a process group of its own, with an environment of nothing but what it needs: it talks
// to servers over their sockets as the system role (peer authentication maps Fog's OS user
// to it) and must not read a ~/.pgpass, a service file or a PG* variable of Fog's.
func (r *Runner) clientCommand(ctx context.Context, env []string, program string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(r.Bin, program), args...)
	// SIGTERM when the agent dies too (Pdeathsig): a pg_dump left running on its own would
	// keep writing the dump directory that the restarted agent removes and dumps into again.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "LC_ALL=C.UTF-8", "HOME=/nonexistent", "PGSYSCONFDIR=/nonexistent",
		"PGPASSFILE=/nonexistent", "PGCONNECT_TIMEOUT=10"}, env...)
	cmd.Dir = "/"
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// runClient runs cmd and returns an error with the last lines of its output when it fails.
func runClient(cmd *exec.Cmd) error {
	var out cappedBuffer
	out.max = 1 << 20
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", filepath.Base(cmd.Path), err, lastLines(out.String(), 5))
	}
	return nil
}

// cappedBuffer keeps the first max bytes written to it: what a program prints about a
// database the tenant shaped is read up to a bound.
type cappedBuffer struct {
	bytes.Buffer
	max int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// DumpDatabase writes database db of the (scratch) cluster into dir with pg_dump's directory
// format and jobs parallel jobs, as Fog's own OS user over the socket, as the system role:
// pg_dump only reads. Foreign tables' data is never read (no --include-foreign-data): that
// would connect to wherever the tenant's servers point. excludeSchemas are left out. dir must
// not exist.
func (c *Cluster) DumpDatabase(ctx context.Context, db, dir string, jobs int, excludeSchemas ...string) error {
	conninfo := fmt.Sprintf("host=%s port=%d user=%s dbname=%s application_name=fog-restore",
		conninfoValue(c.SocketDir), c.Port, conninfoValue(SystemUser), conninfoValue(db))
	args := []string{"--format=directory", "--jobs=" + strconv.Itoa(max(jobs, 1)), "--file=" + dir, "--no-sync", "--dbname=" + conninfo}
	for _, s := range excludeSchemas {
		args = append(args, "--exclude-schema="+pgx.Identifier{s}.Sanitize())
	}
	return runClient(c.R.clientCommand(ctx, nil, "pg_dump", args...))
}

// Login is a role's password login to a server over TCP.
type Login struct {
	Host     string
	Port     int
	User     string
	Password string
	Database string
}

// LoadDump restores the dump in dir (DumpDatabase's) into l.Database with pg_restore and jobs
// parallel jobs, as Fog's own OS user, logged in as l over TLS and acting as role: every
// object it makes belongs to role (--no-owner --role). l must not be a superuser: the dump
// comes from a server the tenant's OS user runs, and what it says (a RESET ROLE among it)
// must run with the tenant's rights only. The password goes to pg_restore in a file of
// root's (0600) in passDir, removed when it ends; it is never on a command line.
func (r *Runner) LoadDump(ctx context.Context, dir string, l Login, role string, jobs int, passDir string) error {
	pass, err := os.CreateTemp(passDir, ".pgpass-*")
	if err != nil {
		return err
	}
	defer os.Remove(pass.Name())
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	// host:port:database:username:password
	line := strings.Join([]string{"*", "*", "*", esc.Replace(l.User), esc.Replace(l.Password)}, ":") + "\n"
	_, err = pass.WriteString(line)
	if cerr := pass.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	list, err := restoreList(ctx, r, dir, passDir)
	if err != nil {
		return err
	}
	defer os.Remove(list)
	conninfo := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=require gssencmode=disable application_name=fog-restore",
		conninfoValue(l.Host), l.Port, conninfoValue(l.User), conninfoValue(l.Database))
	// Any error fails the restore: a database missing part of its dump must not pass for a
	// restored one.
	args := []string{"--format=directory", "--jobs=" + strconv.Itoa(max(jobs, 1)), "--no-owner", "--role=" + role,
		"--exit-on-error", "--no-tablespaces", "--no-security-labels", "--no-subscriptions",
		"--use-list=" + list, "--dbname=" + conninfo, dir}
	return runClient(r.clientCommand(ctx, []string{"PGPASSFILE=" + pass.Name()}, "pg_restore", args...))
}

// extensionComment is the table of contents' line of an extension's comment:
// "3365; 0 0 COMMENT - EXTENSION pgcrypto ". Only an extension's owner may comment on it, and
// an extension the admin had Fog create (fog_guard.extensions) is the system role's; CREATE
// EXTENSION sets the same comment from the extension's control file anyway.
var extensionComment = regexp.MustCompile(`^\d+; \d+ \d+ COMMENT - EXTENSION `)

// restoreList writes, into a file of root's in dir, the dump's table of contents without
// what a non-superuser cannot restore and needs no restore (extensionComment), for
// pg_restore --use-list, and returns its path.
func restoreList(ctx context.Context, r *Runner, dump, dir string) (string, error) {
	cmd := r.clientCommand(ctx, nil, "pg_restore", "--list", dump)
	out := &cappedBuffer{max: 256 << 20}
	var stderr cappedBuffer
	stderr.max = 1 << 20
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("pg_restore --list: %w: %s", err, lastLines(stderr.String(), 5))
	}
	var keep strings.Builder
	for _, line := range strings.SplitAfter(out.String(), "\n") {
		if !extensionComment.MatchString(line) {
			keep.WriteString(line)
		}
	}
	f, err := os.CreateTemp(dir, ".restore-list-*")
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(keep.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// ErrDatabaseExists means a database of the name asked for exists already.
var ErrDatabaseExists = errors.New("postgres: the database exists already")

// DatabaseExists reports whether database name exists.
func DatabaseExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_database
		WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name)`, name).Scan(&ok)
	return ok, err
}

// CreateDatabaseFrom creates name owned by owner from template0 with the locale l: a copy of
// a database restored from a dump gets nothing of template1, which a tenant may have added
// to, and the collation its data was sorted by.
func CreateDatabaseFrom(ctx context.Context, conn *pgx.Conn, name, owner string, l ScratchLocale) error {
	q := "CREATE DATABASE " + ident(name) + " OWNER " + ident(owner) + " TEMPLATE template0"
	if l.Encoding != "" {
		q += " ENCODING " + quote(l.Encoding) + " LC_COLLATE " + quote(l.Collate) + " LC_CTYPE " + quote(l.Ctype)
	}
	if l.Provider == "i" {
		q += " LOCALE_PROVIDER icu ICU_LOCALE " + quote(l.ICULocale)
	}
	if _, err := conn.Exec(ctx, q); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// EnsureLoginRole creates role, or updates it, as a LOGIN role with password that is a
// member of member and nothing else (no superuser, no CREATEDB, no CREATEROLE), valid until
// until: a crash that never drops it leaves a role nobody can log in as for long. Only the
// SCRAM verifier reaches the server, so the password is in no statement a log could keep.
func EnsureLoginRole(ctx context.Context, conn *pgx.Conn, role, password, member string, until time.Time) error {
	verb := "CREATE"
	if ok, err := roleExists(ctx, conn, role); err != nil {
		return err
	} else if ok {
		verb = "ALTER"
	}
	v := pgtypes.SCRAMVerifier(password)
	stmts := []string{
		fmt.Sprintf("%s ROLE %s WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT PASSWORD '%s' VALID UNTIL '%s'",
			verb, ident(role), strings.ReplaceAll(v, "'", "''"), until.UTC().Format(time.RFC3339)),
		"GRANT " + ident(member) + " TO " + ident(role),
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("restore role %s: %w", role, err)
		}
	}
	return nil
}

// DropRole drops role if it exists, after ending its sessions.
func DropRole(ctx context.Context, conn *pgx.Conn, role string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
		WHERE usename OPERATOR(pg_catalog.=) $1::pg_catalog.name`, role); err != nil {
		return fmt.Errorf("end the sessions of %s: %w", role, err)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident(role)); err != nil {
		return fmt.Errorf("drop role %s: %w", role, err)
	}
	return nil
}

// DropOwned drops what role owns in the connected database and revokes what it was granted
// there (DROP OWNED BY), so that the role can be dropped.
func DropOwned(ctx context.Context, conn *pgx.Conn, role string) error {
	if ok, err := roleExists(ctx, conn, role); err != nil || !ok {
		return err
	}
	if _, err := conn.Exec(ctx, "DROP OWNED BY "+ident(role)); err != nil {
		return fmt.Errorf("drop what %s owns: %w", role, err)
	}
	return nil
}

// RenameDatabase renames from to to, ending the sessions connected to from first (PostgreSQL
// renames no database in use). A database named to already there is ErrDatabaseExists.
func RenameDatabase(ctx context.Context, conn *pgx.Conn, from, to string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity
		WHERE datname OPERATOR(pg_catalog.=) $1::pg_catalog.name AND pid OPERATOR(pg_catalog.<>) pg_catalog.pg_backend_pid()`, from); err != nil {
		return fmt.Errorf("end the sessions of database %s: %w", from, err)
	}
	_, err := conn.Exec(ctx, "ALTER DATABASE "+ident(from)+" RENAME TO "+ident(to))
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42P04" { // duplicate_database
		return fmt.Errorf("%w: %s", ErrDatabaseExists, to)
	}
	if err != nil {
		return fmt.Errorf("rename database %s to %s: %w", from, to, err)
	}
	return nil
}

// EnsureRestorable makes the instance's WAL reach past target, and returns the WAL segment
// that must be in the repository before a recovery to target can end. PostgreSQL stops a
// recovery to a time at the first commit after it, and fails one whose WAL ends before such
// a commit ("recovery ended before configured recovery target was reached"): when the
// instance's last commit is not after target, a transaction that only takes an id commits
// now. The WAL is then switched, so that the segment holding that commit is archived now
// rather than at archive_timeout: one segment per restore, which pgBackRest compresses to
// almost nothing, where finding the first commit after target would mean reading the WAL.
// A switch with nothing written since the last one does nothing. conn is the system role's,
// on a primary.
func EnsureRestorable(ctx context.Context, conn *pgx.Conn, target time.Time) (segment string, err error) {
	var inRecovery bool
	var last *time.Time
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_is_in_recovery(), (pg_catalog.pg_last_committed_xact()).timestamp`).Scan(&inRecovery, &last); err != nil {
		return "", err
	}
	if inRecovery {
		return "", errors.New("the instance is not a primary: a database is restored into its group's primary")
	}
	if last == nil || !last.After(target) {
		// txid_current() assigns a transaction id, so its commit writes a commit record,
		// timed now: after target, which is not in the future.
		if _, err := conn.Exec(ctx, "SELECT pg_catalog.txid_current()"); err != nil {
			return "", fmt.Errorf("write a commit after the restore point: %w", err)
		}
	}
	// pg_switch_wal returns the end of the segment it completed, or, with nothing written
	// since the last switch, the start of the current one: a segment boundary either way,
	// for which pg_walfile_name names the segment before it, the one that holds the end of
	// WAL so far.
	if err := conn.QueryRow(ctx, "SELECT pg_catalog.pg_walfile_name(pg_catalog.pg_switch_wal())").Scan(&segment); err != nil {
		return "", fmt.Errorf("switch WAL: %w", err)
	}
	return segment, nil
}

// PrepareRestore readies the data directory for a restore of the region's repository into
// it (a standby seeded from a backup instead of its primary): the server stopped at once
// (the data is about to be replaced), the files that connect to the upstream written, and
// the data directory made. It reports whether the directory holds a cluster pgBackRest can
// restore over with --delta (rewriting only the files that differ, so a seed interrupted
// resumes); a partial one, which pgBackRest refuses, is emptied first.
func (c *Cluster) PrepareRestore(ctx context.Context, u *Upstream) (delta bool, err error) {
	if err := c.StopNow(ctx, true); err != nil {
		return false, err
	}
	if err := c.WriteUpstreamFiles(u); err != nil {
		return false, err
	}
	return c.PrepareScratch()
}

// ClearRestoreSettings removes from postgresql.auto.conf the recovery settings a pgBackRest
// restore wrote there (restore_command, recovery_target_*): postgresql.auto.conf is read
// after fog.conf, so they would override what Fog configures for the standby from then on.
func (c *Cluster) ClearRestoreSettings() error {
	return c.inDir(func(d *safedir.Dir) error {
		b, err := d.ReadFile("pgdata/postgresql.auto.conf", 1<<20)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var out []string
		for _, l := range strings.Split(string(b), "\n") {
			t := strings.TrimSpace(l)
			if strings.HasPrefix(t, "restore_command") || strings.HasPrefix(t, "recovery_target") ||
				strings.HasPrefix(t, "# Recovery settings generated by pgBackRest") {
				continue
			}
			out = append(out, l)
		}
		kept := strings.Join(out, "\n")
		if kept == string(b) {
			return nil
		}
		return d.WriteFile("pgdata/postgresql.auto.conf", []byte(kept), 0o600, c.owner())
	})
}
