// Package agenttest is an in-memory PostgreSQL for tests of the agent and of what drives it:
// the agent.Server and agent.Session the agent's worker acts through, with a role, a
// timeline, LSNs and a running postmaster, standbys that receive their upstream's WAL, and
// a call that can be made to fail. Servers of one Net find each other by address, as
// standbys find their upstream.
package agenttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fogdb/fog/internal/agent"
	"github.com/fogdb/fog/internal/instance"
	"github.com/fogdb/fog/internal/pgtypes"
	"github.com/fogdb/fog/internal/postgres"
	"github.com/fogdb/fog/internal/proc"
)

// ErrInjected is the error of a call made to fail.
var ErrInjected = errors.New("agenttest: injected failure")

// Net is a set of fake servers, one per instance.
type Net struct {
	dir string

	mu      sync.Mutex
	servers map[string]*PG
	// calls counts every call to any server; failAt is the call that fails (0: none).
	calls, failAt int
	failOp        string
	failed        string // the call that failed
	// writers is how many servers accept writes now; mostWriters the most there ever were.
	writers, mostWriters int
}

// NewNet returns a net whose instances keep their directories (the seen epoch) under dir.
func NewNet(dir string) *Net { return &Net{dir: dir, servers: map[string]*PG{}} }

// Server is the server of instance s, made on first use (no data directory, down).
func (n *Net) Server(s instance.Spec) agent.Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.servers[s.UID]
	if p == nil {
		p = &PG{n: n, uid: s.UID, dir: filepath.Join(n.dir, s.UID), files: map[string][]byte{}}
		n.servers[s.UID] = p
	}
	p.addr = net.JoinHostPort(s.Host, strconv.Itoa(s.Port))
	return p
}

// PG returns the fake server of instance uid, nil before the agent asked for it.
func (n *Net) PG(uid string) *PG {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.servers[uid]
}

// FailCall makes the k-th call from now (1 is the next) to any server fail with
// ErrInjected, and only that one; 0 clears it.
func (n *Net) FailCall(k int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failAt, n.failOp = 0, ""
	if k > 0 {
		n.failAt = n.calls + k
	}
}

// FailNext makes the next call named op fail with ErrInjected.
func (n *Net) FailNext(op string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.failAt, n.failOp = 0, op
}

// Failed names the call that was made to fail, "" before it.
func (n *Net) Failed() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.failed
}

// MostWriters is the most servers that ever accepted writes at once.
func (n *Net) MostWriters() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mostWriters
}

// Calls is how many calls the servers have had.
func (n *Net) Calls() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.calls
}

// PG is one fake PostgreSQL server. Its fields are read and written under its net's lock
// (Do).
type PG struct {
	n         *Net
	uid, dir  string
	addr      string
	peer      *postgres.Peer
	files     map[string][]byte
	upstream  string // the address it follows
	slot      string // the slot it streams through
	history   string
	cleanStop bool

	// Data: the data directory exists. Running: the postmaster runs.
	Data, Running bool
	// StandbySignal: configured as a standby; Recovery: running as one.
	StandbySignal, Recovery bool
	// Drained: pg_hba.conf refuses clients.
	Drained  bool
	Timeline int
	// LSN is the end of its WAL; Received what a standby has of its upstream's.
	LSN, Received int64
	Slots         []string
	Databases     []string
	// Stanza is the backup stanza created in the repository; Taken the backups taken
	// there; ArchiveCommand what ConfigureBackup handed the server.
	Stanza         string
	Taken          []instance.Backup
	ArchiveCommand string
	// DroppedAt and DroppedWAL are the last drop from the bounded archive queue.
	DroppedAt  time.Time
	DroppedWAL string
	// VerifyError is what verifying the repository finds (nil: nothing wrong).
	VerifyError error
	// BackupGate, when set, holds each backup until it is closed (or the backup cancelled).
	BackupGate chan struct{}
	// Serving is the partner whose backups the instance serves ("": none); BackedUpFrom
	// the primaries a standby's backups were taken through.
	Serving      string
	BackedUpFrom []instance.BackupServed
	// ConfiguredStanza is the stanza ConfigureBackup was given.
	ConfiguredStanza string
	// RestoreGate, when set, holds each restore halfway until it is closed (or the restore
	// cancelled); Restores counts the restores that began, Ended the EndRestore calls by
	// command id (true: discarded).
	RestoreGate chan struct{}
	Restores    int
	Ended       map[string]bool
	// RepoBackup is the newest backup of the instance's stanza in its region's repository
	// ("": none); RepoHistories the timelines whose history file is archived there;
	// RepoStalls makes a standby restored from it never stream (its primary no longer has
	// the WAL after the archive's end). RestoredFrom lists the backups restored as a
	// standby; RestoreCommand is the restore_command the last configuration set.
	// LostSlots are slots of the server that show wal_status lost.
	LostSlots      []string
	RepoBackup     string
	RepoHistories  []int
	RepoStalls     bool
	RestoredFrom   []string
	RestoreCommand string
	stalled        bool
	// Log lists the calls that changed something, in order.
	Log []string
}

// Do runs fn with the server's state locked.
func (p *PG) Do(fn func(p *PG)) {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	fn(p)
}

// Write is a client's commit: the end of WAL moves on if the server accepts writes.
func (p *PG) Write() bool {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	if !p.writable() {
		return false
	}
	p.LSN++
	p.n.stream()
	return true
}

func (p *PG) writable() bool { return p.Running && !p.Recovery && !p.Drained }

// call counts a call named op, fails it if it is the one to fail, and brings every standby
// up to date with its upstream. The caller holds the lock.
func (p *PG) call(op string) error {
	n := p.n
	n.calls++
	n.stream()
	if n.failAt == n.calls || n.failOp == op {
		n.failAt, n.failOp, n.failed = 0, "", op+" "+p.uid
		return fmt.Errorf("%s %s: %w", op, p.uid, ErrInjected)
	}
	return nil
}

// done notes a change and counts the writers.
func (p *PG) done(op string) {
	p.Log = append(p.Log, op)
	p.n.stream()
	w := 0
	for _, s := range p.n.servers {
		if s.writable() {
			w++
		}
	}
	p.n.writers, p.n.mostWriters = w, max(p.n.mostWriters, w)
}

func (n *Net) byAddr(addr string) *PG {
	for _, s := range n.servers {
		if s.addr == addr {
			return s
		}
	}
	return nil
}

// stream gives every running standby the WAL of its running upstream: a drained primary's
// WAL sender ships on, and so does a standby's (cascading) once it has it.
func (n *Net) stream() {
	for _, s := range n.servers {
		if up := s.up(); up != nil && s.Timeline <= up.Timeline {
			s.Received = max(s.Received, up.LSN)
			s.Timeline = up.Timeline
		}
	}
}

// up is the server a running standby streams from now, or nil.
func (p *PG) up() *PG {
	if !p.Running || !p.Recovery || p.upstream == "" || p.stalled {
		return nil
	}
	up := p.n.byAddr(p.upstream)
	if up == nil || !up.Running || up.Recovery {
		return nil
	}
	return up
}

// Dir implements agent.Server.
func (p *PG) Dir() string { return p.dir }

// Guarded implements agent.Server.
func (p *PG) Guarded() (string, proc.Want) { return filepath.Join(p.dir, "pgdata"), proc.Want{} }

// OSUser implements agent.Server.
func (p *PG) OSUser() string { return "postgres" }

// SetPeer implements agent.Server.
func (p *PG) SetPeer(peer *postgres.Peer) { p.Do(func(p *PG) { p.peer = peer }) }

// Peer implements agent.Server.
func (p *PG) Peer() (peer *postgres.Peer) {
	p.Do(func(p *PG) { peer = p.peer })
	return peer
}

// Initialized implements agent.Server.
func (p *PG) Initialized() (ok bool) {
	p.Do(func(p *PG) { ok = p.Data })
	return ok
}

func (p *PG) op(op string, fn func() error) error {
	p.n.mu.Lock()
	defer p.n.mu.Unlock()
	if err := p.call(op); err != nil {
		return err
	}
	if err := fn(); err != nil {
		return fmt.Errorf("%s %s: %w", op, p.uid, err)
	}
	p.done(op)
	return nil
}

// Init implements agent.Server.
func (p *PG) Init(ctx context.Context, locale string) error {
	return p.op("Init", func() error {
		if p.Data {
			return errors.New("data directory is not empty")
		}
		if err := os.MkdirAll(p.dir, 0o700); err != nil {
			return err
		}
		p.Data, p.Timeline, p.LSN, p.cleanStop = true, 1, 100, true
		return nil
	})
}

// Adopt implements agent.Server.
func (p *PG) Adopt(ctx context.Context) (bool, error) {
	return false, p.op("Adopt", func() error { return nil })
}

// Remove implements agent.Server.
func (p *PG) Remove() error {
	return p.op("Remove", func() error {
		*p = PG{n: p.n, uid: p.uid, dir: p.dir, addr: p.addr, files: map[string][]byte{}}
		return os.RemoveAll(p.dir)
	})
}

// RemoveUser implements agent.Server.
func (p *PG) RemoveUser() {}

// PID implements agent.Server.
func (p *PG) PID() (pid int, running bool) {
	p.Do(func(p *PG) { running = p.Running })
	if running {
		pid = 4242
	}
	return pid, running
}

// IsStandby implements agent.Server.
func (p *PG) IsStandby() (standby bool) {
	p.Do(func(p *PG) { standby = p.StandbySignal })
	return standby
}

func (p *PG) start() error {
	if !p.Data {
		return errors.New("no data directory")
	}
	if p.Running {
		return errors.New("another server might be running")
	}
	p.Running, p.Recovery, p.cleanStop = true, p.StandbySignal, false
	return nil
}

// Start implements agent.Server.
func (p *PG) Start(ctx context.Context) error { return p.op("Start", p.start) }

// Launch implements agent.Server.
func (p *PG) Launch(ctx context.Context) error { return p.op("Launch", p.start) }

// WaitReady implements agent.Server.
func (p *PG) WaitReady(ctx context.Context, timeout time.Duration) error {
	return p.op("WaitReady", func() error {
		if !p.Running {
			return errors.New("server is not running")
		}
		return nil
	})
}

func (p *PG) stop(clean bool) func() error {
	return func() error {
		if p.Running {
			p.Running, p.Recovery, p.Drained, p.cleanStop = false, false, false, clean
		}
		return nil
	}
}

// Stop implements agent.Server.
func (p *PG) Stop(ctx context.Context, mode string) error {
	return p.op("Stop", p.stop(mode != "immediate"))
}

// StopNow implements agent.Server.
func (p *PG) StopNow(ctx context.Context, immediate bool) error {
	return p.op("StopNow", p.stop(!immediate))
}

// Reload implements agent.Server.
func (p *PG) Reload(ctx context.Context) error {
	return p.op("Reload", func() error {
		if !p.Running {
			return errors.New("server is not running")
		}
		return nil
	})
}

// WriteConfig implements agent.Server.
func (p *PG) WriteConfig(cfg postgres.Config) error {
	return p.op("WriteConfig", func() error {
		p.StandbySignal, p.Drained, p.upstream, p.slot = cfg.Standby != nil, false, "", ""
		p.RestoreCommand = ""
		if cfg.Recovery != nil {
			p.RestoreCommand = cfg.Recovery.Command
		}
		if cfg.Standby != nil {
			p.upstream, p.slot = net.JoinHostPort(cfg.Standby.Host, strconv.Itoa(cfg.Standby.Port)), cfg.Standby.Slot
			p.files["replication.crt"], p.files["replication.key"] = cfg.Standby.CertPEM, cfg.Standby.KeyPEM
		}
		return nil
	})
}

// WriteHBA implements agent.Server.
func (p *PG) WriteHBA(drained bool) error {
	return p.op("WriteHBA", func() error { p.Drained = drained; return nil })
}

// ReadFile implements agent.Server.
func (p *PG) ReadFile(name string, max int64) (b []byte, err error) {
	p.Do(func(p *PG) {
		var ok bool
		if b, ok = p.files[name]; !ok {
			err = os.ErrNotExist
		}
	})
	return b, err
}

// BaseBackup implements agent.Server.
func (p *PG) BaseBackup(ctx context.Context, up *postgres.Upstream, progress func(float64)) error {
	return p.op("BaseBackup", func() error {
		src := p.n.byAddr(net.JoinHostPort(up.Host, strconv.Itoa(up.Port)))
		if src == nil || !src.Running {
			return errors.New("could not connect to the upstream")
		}
		// The data is about to be replaced: the server is stopped at once first.
		p.Running, p.Recovery, p.Drained = false, false, false
		p.Data, p.StandbySignal, p.Timeline = true, true, src.Timeline
		p.LSN, p.Received, p.history = src.LSN, src.LSN, src.history
		p.upstream, p.slot = net.JoinHostPort(up.Host, strconv.Itoa(up.Port)), up.Slot
		p.stalled = false
		progress(100)
		return nil
	})
}

// SeedBackup implements agent.Server.
func (p *PG) SeedBackup(ctx context.Context, tli int) (label string, err error) {
	return label, p.op("SeedBackup", func() error { label = p.RepoBackup; return nil })
}

// ArchivedHistory implements agent.Server.
func (p *PG) ArchivedHistory(ctx context.Context, tli int) (ok bool, err error) {
	return ok, p.op("ArchivedHistory", func() error { ok = slices.Contains(p.RepoHistories, tli); return nil })
}

// RestoreStandby implements agent.Server: the data becomes the repository's backup, behind
// the primary, on the primary's history; it catches up once it streams (RepoStalls: never).
func (p *PG) RestoreStandby(ctx context.Context, set string, up *postgres.Upstream, progress func(float64)) (string, error) {
	return "pgbackrest archive-get %f \"%p\"", p.op("RestoreStandby", func() error {
		src := p.n.byAddr(net.JoinHostPort(up.Host, strconv.Itoa(up.Port)))
		if set == "" || set != p.RepoBackup || src == nil {
			return errors.New("no such backup")
		}
		p.Running, p.Recovery, p.Drained = false, false, false
		p.Data, p.StandbySignal, p.Timeline = true, true, src.Timeline
		p.LSN, p.Received, p.history = 0, 0, src.history
		p.stalled = p.RepoStalls
		p.RestoredFrom = append(p.RestoredFrom, set)
		progress(100)
		return nil
	})
}

// LatestCheckpoint implements agent.Server.
func (p *PG) LatestCheckpoint(ctx context.Context) (lsn, state string, err error) {
	err = p.op("LatestCheckpoint", func() error {
		lsn, state = pgtypes.LSN(max(p.LSN, p.Received)).String(), "in production"
		if p.cleanStop {
			state = "shut down"
		}
		return nil
	})
	return lsn, state, err
}

// CrashRecover implements agent.Server.
func (p *PG) CrashRecover(ctx context.Context) error {
	return p.op("CrashRecover", func() error { p.cleanStop = true; return nil })
}

// CopyWAL implements agent.Server.
func (p *PG) CopyWAL(dir string) error { return p.op("CopyWAL", func() error { return nil }) }

// ControlData implements agent.Server.
func (p *PG) ControlData(ctx context.Context) (cd map[string]string, err error) {
	err = p.op("ControlData", func() error {
		cd = map[string]string{"Latest checkpoint's TimeLineID": strconv.Itoa(p.Timeline)}
		return nil
	})
	return cd, err
}

// DecodeLostWAL implements agent.Server: the fake's lost WAL holds no transaction.
func (p *PG) DecodeLostWAL(ctx context.Context, tli int, from, to string) (*postgres.LostTransactions, error) {
	return &postgres.LostTransactions{}, p.op("DecodeLostWAL", func() error { return nil })
}

// Rewind implements agent.Server: the server's history becomes its upstream's.
func (p *PG) Rewind(ctx context.Context, up *postgres.Upstream) (string, error) {
	return "", p.op("Rewind", func() error {
		src := p.n.byAddr(net.JoinHostPort(up.Host, strconv.Itoa(up.Port)))
		if src == nil || !src.Running {
			return errors.New("could not connect to the source server")
		}
		if p.Running {
			return errors.New("target server must be shut down cleanly")
		}
		p.Timeline, p.LSN, p.Received, p.history = src.Timeline, src.LSN, src.LSN, src.history
		return nil
	})
}

// ResolveRelations implements agent.Server.
func (p *PG) ResolveRelations(ctx context.Context, keys []string) map[string]string {
	return map[string]string{}
}

// ConnectSystem implements agent.Server.
func (p *PG) ConnectSystem(ctx context.Context) (agent.Session, error) {
	return p.connect("ConnectSystem", postgres.SystemUser)
}

// ConnectReader implements agent.Server.
func (p *PG) ConnectReader(ctx context.Context) (agent.Session, error) {
	return p.connect("ConnectReader", postgres.SystemUser)
}

// Connect implements agent.Server.
func (p *PG) Connect(ctx context.Context, db string) (agent.Session, error) {
	return p.connect("Connect", postgres.SystemUser)
}

func (p *PG) connect(op, user string) (agent.Session, error) {
	var s agent.Session
	err := p.op(op, func() error {
		if !p.Running {
			return errors.New("connection refused")
		}
		s = &session{p: p, user: user}
		return nil
	})
	return s, err
}

// session is a fake connection.
type session struct {
	p    *PG
	user string
}

func (s *session) User() string { return s.user }
func (s *session) Close()       {}

// q runs a query: it fails when the server is down.
func (s *session) q(op string, fn func(p *PG) error) error {
	p := s.p
	return p.op(op, func() error {
		if !p.Running {
			return errors.New("terminating connection")
		}
		return fn(p)
	})
}

func (s *session) InRecovery(ctx context.Context) (r bool, err error) {
	return r, s.q("InRecovery", func(p *PG) error { r = p.Recovery; return nil })
}

func (s *session) ReceivedLSN(ctx context.Context) (l string, err error) {
	return l, s.q("ReceivedLSN", func(p *PG) error { l = pgtypes.LSN(p.Received).String(); return nil })
}

func (s *session) ReceiverStatus(ctx context.Context) (st string, err error) {
	return st, s.q("ReceiverStatus", func(p *PG) error {
		if p.up() != nil {
			st = "streaming"
		}
		return nil
	})
}

func (s *session) Drain(ctx context.Context, clusterName string) (l pgtypes.LSN, err error) {
	return l, s.q("Drain", func(p *PG) error {
		if p.Recovery {
			return errors.New("recovery is in progress")
		}
		p.Drained, l = true, pgtypes.LSN(p.LSN)
		return nil
	})
}

func (s *session) Promote(ctx context.Context) error {
	return s.q("Promote", func(p *PG) error {
		if !p.Recovery {
			return errors.New("recovery is not in progress")
		}
		from := max(p.LSN, p.Received)
		p.history += fmt.Sprintf("%d\t%s\tno recovery target specified\n", p.Timeline, pgtypes.LSN(from))
		p.Recovery, p.StandbySignal, p.upstream = false, false, ""
		p.Timeline, p.LSN = p.Timeline+1, from
		return nil
	})
}

func (s *session) TimelineHistory(ctx context.Context) (h string, err error) {
	return h, s.q("TimelineHistory", func(p *PG) error { h = p.history; return nil })
}

func (s *session) Checkpoint(ctx context.Context) error {
	return s.q("Checkpoint", func(p *PG) error { return nil })
}

func (s *session) NeedsRestart(ctx context.Context, libraries, archiveMode string) (bool, error) {
	return false, s.q("NeedsRestart", func(p *PG) error { return nil })
}

func (s *session) ReplicationState(ctx context.Context) (r pgtypes.Replication, err error) {
	return r, s.q("ReplicationState", func(p *PG) error {
		r = pgtypes.Replication{InRecovery: p.Recovery, Timeline: p.Timeline, CurrentLSN: pgtypes.LSN(p.LSN).String()}
		if p.Recovery {
			r.CurrentLSN = pgtypes.LSN(p.Received).String()
			if p.up() != nil {
				r.ReceiverStatus = "streaming"
			}
			return nil
		}
		for _, sl := range p.Slots {
			slot := pgtypes.Slot{Name: sl, WALStatus: "reserved"}
			if slices.Contains(p.LostSlots, sl) {
				slot.WALStatus = "lost"
			}
			for _, o := range p.n.servers {
				if o.up() == p && o.slot == sl {
					slot.Active = true
					r.Replicas = append(r.Replicas, pgtypes.Replica{AppName: sl, State: "streaming", FlushLSN: pgtypes.LSN(o.Received).String()})
				}
			}
			r.Slots = append(r.Slots, slot)
		}
		return nil
	})
}

func (s *session) GuardLoaded(ctx context.Context) (bool, error) {
	return false, s.q("GuardLoaded", func(p *PG) error { return nil })
}

func (s *session) EnsureAdmin(ctx context.Context, login, verifier string, guarded bool) error {
	return s.q("EnsureAdmin", func(p *PG) error { return nil })
}

func (s *session) EnsureReplicationRole(ctx context.Context) error {
	return s.q("EnsureReplicationRole", func(p *PG) error { return nil })
}

func (s *session) EnsureMonitorRole(ctx context.Context) error {
	return s.q("EnsureMonitorRole", func(p *PG) error { return nil })
}

func (s *session) EnsureSystemDB(ctx context.Context) error {
	return s.q("EnsureSystemDB", func(p *PG) error { return nil })
}

func (s *session) ServerVersion(ctx context.Context) (string, error) {
	return "17.0", s.q("ServerVersion", func(p *PG) error { return nil })
}

func (s *session) EnsureSlot(ctx context.Context, name string) error {
	return s.q("EnsureSlot", func(p *PG) error {
		if !slices.Contains(p.Slots, name) {
			p.Slots = append(p.Slots, name)
		}
		return nil
	})
}

func (s *session) DropSlot(ctx context.Context, name string) error {
	return s.q("DropSlot", func(p *PG) error {
		p.Slots = slices.DeleteFunc(p.Slots, func(n string) bool { return n == name })
		return nil
	})
}

func (s *session) ListDatabases(ctx context.Context) (dbs []postgres.Database, err error) {
	return dbs, s.q("ListDatabases", func(p *PG) error {
		for _, d := range p.Databases {
			dbs = append(dbs, postgres.Database{Name: d})
		}
		return nil
	})
}

func (s *session) CurrentWAL(ctx context.Context) (postgres.WALPosition, error) {
	return postgres.WALPosition{LSN: "0/1000000", Timeline: 1, CatalogNode: 1262}, s.q("CurrentWAL", func(p *PG) error { return nil })
}

func (s *session) EnsureLinkView(ctx context.Context, row *postgres.LinkRow) error {
	return s.q("EnsureLinkView", func(p *PG) error { return nil })
}

func (s *session) CreateDatabase(ctx context.Context, name, owner string) error {
	return s.q("CreateDatabase", func(p *PG) error {
		if !slices.Contains(p.Databases, name) {
			p.Databases = append(p.Databases, name)
		}
		return nil
	})
}

func (s *session) DropDatabase(ctx context.Context, name string) error {
	return s.q("DropDatabase", func(p *PG) error {
		p.Databases = slices.DeleteFunc(p.Databases, func(n string) bool { return n == name })
		return nil
	})
}

var _ agent.Server = (*PG)(nil)

// ConfigureBackup implements agent.Server.
func (p *PG) ConfigureBackup(b instance.BackupSpec) (string, error) {
	cmd := "pgbackrest --stanza=" + b.Stanza + " archive-push %p"
	return cmd, p.op("ConfigureBackup", func() error { p.ArchiveCommand, p.ConfiguredStanza = cmd, b.Stanza; return nil })
}

// StanzaCreate implements agent.Server: the stanza is made once.
func (p *PG) StanzaCreate(ctx context.Context) (string, error) {
	return "", p.op("StanzaCreate", func() error {
		if !p.Data {
			return errors.New("no data directory")
		}
		p.Stanza = "created"
		return nil
	})
}

// Backup implements agent.Server: a backup of seq already there is not taken again; one is
// held while BackupGate is open. A standby's (from set) needs its primary to serve
// (BackedUpFrom records it).
func (p *PG) Backup(ctx context.Context, typ string, seq int64, from *instance.BackupServed) error {
	var gate chan struct{}
	p.Do(func(p *PG) { gate = p.BackupGate })
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return p.op("Backup", func() error {
		if !p.Running || p.Recovery != (from != nil) {
			return errors.New("the server is not a running primary, or a standby backed up from its primary")
		}
		if from != nil {
			p.BackedUpFrom = append(p.BackedUpFrom, *from)
		}
		for _, b := range p.Taken {
			if b.Seq == seq {
				return nil
			}
		}
		now := time.Now().UTC()
		p.Taken = append(p.Taken, instance.Backup{Label: fmt.Sprintf("b%d", seq), Type: typ, Start: now, Stop: now, Seq: seq})
		return nil
	})
}

// ServeBackups implements agent.Server.
func (p *PG) ServeBackups(ctx context.Context, partner string) (*instance.BackupServed, error) {
	var served *instance.BackupServed
	return served, p.op("ServeBackups", func() error {
		if !p.Running {
			return errors.New("the server is not running")
		}
		p.Serving = partner
		served = &instance.BackupServed{Host: "127.0.0.1", Port: 7432, PGPort: 6432, Stanza: p.ConfiguredStanza, DataDir: "/data", SocketDir: "/sock", Config: "/served.conf"}
		return nil
	})
}

// StopServingBackups implements agent.Server.
func (p *PG) StopServingBackups() {
	p.Do(func(p *PG) { p.Serving = "" })
}

// VerifyBackups implements agent.Server: VerifyError, when set, is what it finds.
func (p *PG) VerifyBackups(ctx context.Context) error {
	return p.op("VerifyBackups", func() error { return p.VerifyError })
}

// Backups implements agent.Server.
func (p *PG) Backups(ctx context.Context) (list []instance.Backup, err error) {
	return list, p.op("Backups", func() error { list = slices.Clone(p.Taken); return nil })
}

func (s *session) EnsureBackupRole(ctx context.Context) error {
	return s.q("EnsureBackupRole", func(p *PG) error { return nil })
}

func (s *session) Archiver(ctx context.Context) (a postgres.Archiver, err error) {
	return a, s.q("Archiver", func(p *PG) error { return nil })
}

// FindDatabaseDrop implements agent.Server: the fake's databases have no oids, and no WAL.
func (p *PG) FindDatabaseDrop(ctx context.Context, oid uint32, from, to postgres.WALPosition) (postgres.DatabaseDrop, bool, error) {
	return postgres.DatabaseDrop{}, false, p.op("FindDatabaseDrop", func() error { return nil })
}

// DisownBackups implements agent.Server.
func (p *PG) DisownBackups() error { return p.op("DisownBackups", func() error { return nil }) }

// LastArchiveDrop implements agent.Server.
func (p *PG) LastArchiveDrop() (at time.Time, seg string, err error) {
	return at, seg, p.op("LastArchiveDrop", func() error { at, seg = p.DroppedAt, p.DroppedWAL; return nil })
}

// RestoreDatabase implements agent.Server: the new database appears, unless its name is
// taken (postgres.ErrDatabaseExists); a restore is held halfway while RestoreGate is open.
func (p *PG) RestoreDatabase(ctx context.Context, r agent.RestoreRequest, progress func(float64)) error {
	var gate chan struct{}
	p.Do(func(p *PG) { gate = p.RestoreGate; p.Restores++ })
	if err := p.op("RestoreDatabase", func() error {
		if !p.Running || p.Recovery {
			return errors.New("the server is not a running primary")
		}
		if slices.Contains(p.Databases, r.Database) {
			return fmt.Errorf("%w: %s", postgres.ErrDatabaseExists, r.Database)
		}
		return nil
	}); err != nil {
		return err
	}
	progress(40)
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	progress(75)
	return p.op("RestoreDatabase", func() error {
		if slices.Contains(p.Databases, r.Database) {
			return fmt.Errorf("%w: %s", postgres.ErrDatabaseExists, r.Database)
		}
		p.Databases = append(p.Databases, r.Database)
		return nil
	})
}

// EndRestore implements agent.Server.
func (p *PG) EndRestore(ctx context.Context, r agent.RestoreRequest, discard bool) error {
	return p.op("EndRestore", func() error {
		if p.Ended == nil {
			p.Ended = map[string]bool{}
		}
		p.Ended[r.ID] = p.Ended[r.ID] || discard
		if discard {
			return os.RemoveAll(r.Dir)
		}
		return nil
	})
}
