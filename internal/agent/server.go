package agent

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/ltr"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/proc"
)

// Server is what a worker does to one PostgreSQL instance: its files, its processes, and
// the programs that seed and rewind it. The agent runs it against a real cluster (package
// postgres); tests run the same worker against an in-memory one (package agenttest).
type Server interface {
	// Dir is the instance's directory, where the seen epoch is kept (checkEpoch).
	Dir() string
	// Guarded is what the lease keeper's guard needs to stop the server on its own.
	Guarded() (dataDir string, server proc.Want)
	// OSUser is the OS user the server runs as.
	OSUser() string
	// SetPeer names the failover-group partner pg_hba.conf admits for replication; Peer
	// says which it is.
	SetPeer(p *postgres.Peer)
	Peer() *postgres.Peer

	Initialized() bool
	Init(ctx context.Context, locale string) error
	Adopt(ctx context.Context) (moved bool, err error)
	// Remove deletes the instance's data and its OS user.
	Remove() error
	RemoveUser()

	PID() (int, bool)
	IsStandby() bool
	Start(ctx context.Context) error
	Launch(ctx context.Context) error
	WaitReady(ctx context.Context, timeout time.Duration) error
	Stop(ctx context.Context, mode string) error
	StopNow(ctx context.Context, immediate bool) error
	Reload(ctx context.Context) error
	WriteConfig(cfg postgres.Config) error
	WriteHBA(drained bool) error
	ReadFile(name string, max int64) ([]byte, error)

	BaseBackup(ctx context.Context, up *postgres.Upstream, progress func(float64)) error
	LatestCheckpoint(ctx context.Context) (lsn, state string, err error)
	CrashRecover(ctx context.Context) error
	CopyWAL(dir string) error
	ControlData(ctx context.Context) (map[string]string, error)
	DecodeLostWAL(ctx context.Context, tli int, from, to string) (*postgres.LostTransactions, error)
	Rewind(ctx context.Context, up *postgres.Upstream) (string, error)
	ResolveRelations(ctx context.Context, keys []string) map[string]string

	// Backups (docs/backups.md). ConfigureBackup writes the instance's pgBackRest
	// configuration for b in the region's repository and returns the archive_command that
	// pushes its WAL there; StanzaCreate creates b's stanza there from pg_control (and sets
	// aside, under the name it returns, a stanza of that name that is another system's); Backup
	// takes a backup of typ for sequence number seq and returns once it can be restored;
	// Backups lists the stanza's backups there, oldest first.
	ConfigureBackup(b instance.BackupSpec) (archiveCommand string, err error)
	StanzaCreate(ctx context.Context) (aside string, err error)
	Backup(ctx context.Context, typ string, seq int64, from *instance.BackupServed) error
	// ServeBackups runs the instance's pgBackRest TLS server for its partner (the instance
	// of that UID), if it does not run as asked, and returns what the partner's backups
	// need; StopServingBackups ends it.
	ServeBackups(ctx context.Context, partner string) (*instance.BackupServed, error)
	StopServingBackups()
	// VerifyBackups checks every backup and WAL segment of the stanza in the region's
	// repository (pgBackRest's verify).
	VerifyBackups(ctx context.Context) error
	Backups(ctx context.Context) ([]instance.Backup, error)
	// LastArchiveDrop is when pgBackRest last dropped WAL from the instance's bounded push
	// queue (zero: never), and the segment.
	LastArchiveDrop() (time.Time, string, error)
	// RestoreDatabase restores a database of the instance's backups to a point in time as a
	// new database of the instance (restore.go), reporting progress from 0 to 100; called
	// again after a crash it resumes from r.Dir. EndRestore stops its scratch cluster and,
	// with discard, removes what it made but the new database.
	RestoreDatabase(ctx context.Context, r RestoreRequest, progress func(float64)) error
	EndRestore(ctx context.Context, r RestoreRequest, discard bool) error
	// FindDatabaseDrop reads the instance's WAL from from to to for the drop of the database
	// with oid.
	FindDatabaseDrop(ctx context.Context, oid uint32, from, to postgres.WALPosition) (postgres.DatabaseDrop, bool, error)
	// Seeding from the region's repository (seed.go). SeedBackup writes the instance's
	// pgBackRest configuration for its stanza (a copy of the stanza there that another OS
	// user owns is set aside, never read) and names the newest backup of the stanza there
	// on timeline tli or an earlier one ("": none); ArchivedHistory reports whether timeline tli's history file is in the
	// stanza's archive there; RestoreStandby stops the server, restores backup set into the
	// data directory as a standby (delta: an interrupted seed resumes), reporting progress
	// from 0 to 100, and returns the restore_command that reads the region's archive.
	SeedBackup(ctx context.Context, tli int) (string, error)
	ArchivedHistory(ctx context.Context, tli int) (bool, error)
	RestoreStandby(ctx context.Context, set string, up *postgres.Upstream, progress func(float64)) (restoreCommand string, err error)
	// DisownBackups gives root the repository's directories of the instance's OS user,
	// before that user is removed (its uid may be given to the next one).
	DisownBackups() error

	// ConnectSystem, ConnectReader and Connect open a session as the system role, as the
	// least role that can read (the monitoring role where it exists), and as the system
	// role to database db.
	ConnectSystem(ctx context.Context) (Session, error)
	ConnectReader(ctx context.Context) (Session, error)
	Connect(ctx context.Context, db string) (Session, error)
}

// Session is one connection to a running server and what the worker asks through it.
type Session interface {
	// User is the role the session runs as.
	User() string
	Close()

	InRecovery(ctx context.Context) (bool, error)
	// ReceivedLSN is the furthest WAL a standby has, received or replayed.
	ReceivedLSN(ctx context.Context) (string, error)
	// ReceiverStatus is pg_stat_wal_receiver's status, "" without a receiver.
	ReceiverStatus(ctx context.Context) (string, error)
	Drain(ctx context.Context, clusterName string) (pgtypes.LSN, error)
	Promote(ctx context.Context) error
	// TimelineHistory is the history file of the timeline the server writes on.
	TimelineHistory(ctx context.Context) (string, error)
	Checkpoint(ctx context.Context) error
	// NeedsRestart: the server runs with other shared_preload_libraries or archive_mode than
	// these, which only a restart changes.
	NeedsRestart(ctx context.Context, libraries, archiveMode string) (bool, error)

	ReplicationState(ctx context.Context) (pgtypes.Replication, error)
	GuardLoaded(ctx context.Context) (bool, error)
	EnsureAdmin(ctx context.Context, login, verifier string, guarded bool) error
	EnsureReplicationRole(ctx context.Context) error
	EnsureMonitorRole(ctx context.Context) error
	EnsureSystemDB(ctx context.Context) error
	ServerVersion(ctx context.Context) (string, error)
	EnsureSlot(ctx context.Context, name string) error
	DropSlot(ctx context.Context, name string) error
	ListDatabases(ctx context.Context) ([]postgres.Database, error)
	// CurrentWAL is a primary's WAL write position.
	CurrentWAL(ctx context.Context) (postgres.WALPosition, error)
	EnsureLinkView(ctx context.Context, row *postgres.LinkRow) error
	CreateDatabase(ctx context.Context, name, owner string) error
	DropDatabase(ctx context.Context, name string) error
	// EnsureBackupRole creates or updates the role pgBackRest connects as; Archiver reads
	// pg_stat_archiver.
	EnsureBackupRole(ctx context.Context) error
	Archiver(ctx context.Context) (postgres.Archiver, error)
}

// server is the instance of spec s, as the agent's configuration makes it.
func (a *Agent) server(s instance.Spec) Server {
	if a.cfg.Servers != nil {
		return a.cfg.Servers(s)
	}
	return &pgServer{Cluster: a.cluster(s), uid: s.UID, a: a, backup: s.Backup, keep: s.BackupKeep}
}

// pgServer is a Server that is a real PostgreSQL cluster.
type pgServer struct {
	*postgres.Cluster
	uid    string
	a      *Agent
	backup *instance.BackupSpec
	// keep are the full backups long-term retention keeps (Spec.BackupKeep).
	keep []ltr.Keep
}

func (p *pgServer) Dir() string                  { return p.Cluster.Dir }
func (p *pgServer) Guarded() (string, proc.Want) { return p.DataDir(), p.R.Server() }
func (p *pgServer) OSUser() string               { return p.R.Username }
func (p *pgServer) SetPeer(peer *postgres.Peer)  { p.Cluster.Peer = peer }
func (p *pgServer) Peer() *postgres.Peer         { return p.Cluster.Peer }
func (p *pgServer) RemoveUser()                  { p.R.RemoveInstanceUser(p.uid) }

func (p *pgServer) ConnectSystem(ctx context.Context) (Session, error) {
	return p.session(p.Cluster.ConnectSystem(ctx))
}

func (p *pgServer) ConnectReader(ctx context.Context) (Session, error) {
	return p.session(p.Cluster.ConnectReader(ctx, ""))
}

func (p *pgServer) Connect(ctx context.Context, db string) (Session, error) {
	return p.session(p.Cluster.Connect(ctx, db))
}

func (p *pgServer) session(conn *pgx.Conn, err error) (Session, error) {
	if err != nil {
		return nil, err
	}
	return &pgSession{c: p.Cluster, conn: conn}, nil
}

// pgSession is a Session on a pgx connection.
type pgSession struct {
	c    *postgres.Cluster
	conn *pgx.Conn
}

func (s *pgSession) User() string { return s.conn.Config().User }
func (s *pgSession) Close()       { s.conn.Close(context.Background()) }

func (s *pgSession) InRecovery(ctx context.Context) (bool, error) {
	var inRecovery bool
	err := s.conn.QueryRow(ctx, "SELECT pg_catalog.pg_is_in_recovery()").Scan(&inRecovery)
	return inRecovery, err
}

func (s *pgSession) ReceivedLSN(ctx context.Context) (string, error) {
	var got string
	// After a restart the receive position is unknown until the receiver connects, but WAL
	// received before the restart is in pg_wal and replayed: either position will do.
	err := s.conn.QueryRow(ctx, "SELECT greatest(coalesce(pg_catalog.pg_last_wal_receive_lsn(), '0/0'::pg_catalog.pg_lsn), coalesce(pg_catalog.pg_last_wal_replay_lsn(), '0/0'::pg_catalog.pg_lsn))::pg_catalog.text").Scan(&got)
	return got, err
}

func (s *pgSession) ReceiverStatus(ctx context.Context) (string, error) {
	var status string
	err := s.conn.QueryRow(ctx, "SELECT coalesce((SELECT status FROM pg_catalog.pg_stat_wal_receiver), ''::pg_catalog.text)").Scan(&status)
	return status, err
}

func (s *pgSession) Drain(ctx context.Context, clusterName string) (pgtypes.LSN, error) {
	return s.c.Drain(ctx, s.conn, clusterName)
}

func (s *pgSession) Promote(ctx context.Context) error { return postgres.Promote(ctx, s.conn) }

func (s *pgSession) TimelineHistory(ctx context.Context) (string, error) {
	var history string
	// The control file names the new timeline only after the next checkpoint; the name of the
	// current WAL file names it at once.
	err := s.conn.QueryRow(ctx, `SELECT pg_catalog.pg_read_file('pg_wal/'::text OPERATOR(pg_catalog.||)
		pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8) OPERATOR(pg_catalog.||) '.history'::text)`).Scan(&history)
	return history, err
}

func (s *pgSession) Checkpoint(ctx context.Context) error { return postgres.Checkpoint(ctx, s.conn) }

func (s *pgSession) NeedsRestart(ctx context.Context, libraries, archiveMode string) (bool, error) {
	return postgres.NeedsRestart(ctx, s.conn, libraries, archiveMode)
}

func (s *pgSession) ReplicationState(ctx context.Context) (pgtypes.Replication, error) {
	return postgres.ReplicationState(ctx, s.conn)
}

func (s *pgSession) GuardLoaded(ctx context.Context) (bool, error) {
	return postgres.GuardLoaded(ctx, s.conn)
}

func (s *pgSession) EnsureAdmin(ctx context.Context, login, verifier string, guarded bool) error {
	return postgres.EnsureAdmin(ctx, s.conn, login, verifier, guarded)
}

func (s *pgSession) EnsureReplicationRole(ctx context.Context) error {
	return postgres.EnsureReplicationRole(ctx, s.conn)
}

func (s *pgSession) EnsureMonitorRole(ctx context.Context) error {
	return postgres.EnsureMonitorRole(ctx, s.conn)
}

func (s *pgSession) EnsureSystemDB(ctx context.Context) error { return s.c.EnsureSystemDB(ctx, s.conn) }

func (s *pgSession) ServerVersion(ctx context.Context) (string, error) {
	return postgres.ServerVersion(ctx, s.conn)
}

func (s *pgSession) EnsureSlot(ctx context.Context, name string) error {
	return postgres.EnsureSlot(ctx, s.conn, name)
}

func (s *pgSession) DropSlot(ctx context.Context, name string) error {
	return postgres.DropSlot(ctx, s.conn, name)
}

func (s *pgSession) ListDatabases(ctx context.Context) ([]postgres.Database, error) {
	return postgres.ListDatabases(ctx, s.conn)
}

func (s *pgSession) CurrentWAL(ctx context.Context) (postgres.WALPosition, error) {
	return postgres.CurrentWAL(ctx, s.conn)
}

func (s *pgSession) EnsureLinkView(ctx context.Context, row *postgres.LinkRow) error {
	return postgres.EnsureLinkView(ctx, s.conn, row)
}

func (s *pgSession) CreateDatabase(ctx context.Context, name, owner string) error {
	return postgres.CreateDatabase(ctx, s.conn, name, owner)
}

func (s *pgSession) DropDatabase(ctx context.Context, name string) error {
	return postgres.DropDatabase(ctx, s.conn, name)
}
